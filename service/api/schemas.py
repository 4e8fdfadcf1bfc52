"""Request and response bodies of the HTTP service (pydantic), with their OpenAPI examples.

An open order is checked here field by field, so a 422 names every failing field and why.
The rules are those of :func:`model.schema.validate_open_orders` (the batch path): ISO
3166-1 country codes, ISO 8601 dates (a date-time with an offset counts in UTC), no negative
numbers, no deadline / delivery / dispute before shipment, no shipment after ``as_of``. The
orders that pass are turned into the same typed frame that validation gives the batch path
(:mod:`service.api.frames`), and scored by the one scoring function.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from model.events import MILESTONES
from model.schema import MAX_DATE, MIN_DATE, iso_country_codes

__all__ = [
    "MAX_DATE",
    "MIN_DATE",
    "BatchRequest",
    "BatchResponse",
    "CountryLag",
    "CountryList",
    "ErrorResponse",
    "IsoDate",
    "OpenOrder",
    "Reason",
    "Recommendation",
    "RecommendationRequest",
    "ReloadRequest",
    "ReloadResponse",
    "TrackingEvent",
    "today_utc",
]

MAX_TEXT = 200  # characters of an id, method or region
MAX_DESCRIPTION = 1000  # characters of a scan's description
MAX_EXTENSIONS = 10_000
MAX_EVENTS = 200  # scans per order


def today_utc() -> date:
    return datetime.now(UTC).date()


def _naive_utc(moment: datetime) -> datetime:
    """``moment`` in UTC without its offset; one before year 1 in UTC gives
    ``datetime.min`` (out of the supported range like any date before 1900)."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return datetime.min


def _iso_date(value: Any) -> date:
    """An ISO 8601 date (``YYYY-MM-DD``) or date-time; a date-time with an offset is taken
    in UTC, then its date is used (as the batch path does)."""
    if isinstance(value, datetime):
        parsed = _naive_utc(value).date()
    elif isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10 and text[4] == "-" and text[7] == "-":
                parsed = date.fromisoformat(text)
            elif len(text) > 10 and text[10] in "T ":
                moment = datetime.fromisoformat(text)
                parsed = _naive_utc(moment).date()
            else:
                raise ValueError(text)
        except (ValueError, IndexError):
            raise PydanticCustomError(
                "date_format", "{value} is not an ISO 8601 date", {"value": repr(value[:40])}
            ) from None
    else:
        raise PydanticCustomError("date_type", "must be an ISO 8601 date string (YYYY-MM-DD)", {})
    if not MIN_DATE <= parsed <= MAX_DATE:
        raise PydanticCustomError(
            "date_range",
            "date out of the supported range {low} to {high}",
            {"low": MIN_DATE.isoformat(), "high": MAX_DATE.isoformat()},
        )
    return parsed


IsoDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "description": "ISO 8601 date (YYYY-MM-DD); a date-time is taken in UTC.",
        }
    ),
]


def _iso_datetime(value: Any) -> datetime:
    """An ISO 8601 date or date-time as a naive UTC date-time (an offset is converted to
    UTC; a date alone is its midnight), as the batch path reads ``event_at``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10 and text[4] == "-" and text[7] == "-":
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
            elif len(text) > 10 and text[10] in "T ":
                moment = datetime.fromisoformat(text)
            else:
                raise ValueError(text)
        except (ValueError, IndexError):
            raise PydanticCustomError(
                "datetime_format",
                "{value} is not an ISO 8601 date or datetime",
                {"value": repr(value[:40])},
            ) from None
    else:
        raise PydanticCustomError("datetime_type", "must be an ISO 8601 date-time string", {})
    moment = _naive_utc(moment)
    if not MIN_DATE <= moment.date() <= MAX_DATE:
        raise PydanticCustomError(
            "date_range",
            "date out of the supported range {low} to {high}",
            {"low": MIN_DATE.isoformat(), "high": MAX_DATE.isoformat()},
        )
    return moment


IsoDateTime = Annotated[
    datetime,
    BeforeValidator(_iso_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 date-time (or date); an offset is converted to UTC.",
        }
    ),
]


def _milestone(value: Any) -> Any:
    """Milestones match case-insensitively (as in events files)."""
    return value.strip().lower() if isinstance(value, str) else value


Milestone = Annotated[
    Literal[MILESTONES],  # type: ignore[valid-type]
    BeforeValidator(_milestone),
]


def _country_code(value: str) -> str:
    if value not in iso_country_codes():
        raise PydanticCustomError(
            "country_code",
            "{value} is not an ISO 3166-1 alpha-2 country code",
            {"value": repr(value[:40])},
        )
    return value


def _not_negative(what: str) -> Any:
    def check(value: Any) -> Any:
        if value is not None and value < 0:
            raise PydanticCustomError("negative", what, {})
        return value

    return AfterValidator(check)


def _blank_is_none(value: str | None) -> str | None:
    return value if value else None


Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT)]
OptionalLower = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=MAX_TEXT)]
    | None,
    AfterValidator(_blank_is_none),
]
OptionalUpper = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, max_length=MAX_TEXT)]
    | None,
    AfterValidator(_blank_is_none),
]
# Strict numbers: JSON numbers only (no booleans, no numeric strings), as the schema says.
Money = Annotated[
    float | None, Strict(), Field(allow_inf_nan=False), _not_negative("negative value")
]

_DATE_ADAPTER: TypeAdapter[date] = TypeAdapter(IsoDate)
_EVENT_AT_ADAPTER: TypeAdapter[datetime] = TypeAdapter(IsoDateTime)
_DATE_FIELDS = ("shipped_at", "deadline", "delivered_at", "ordered_at", "dispute_opened_at")

ORDER_EXAMPLE: dict[str, Any] = {
    "order_id": "A-1001",
    "destination_country": "BR",
    "shipping_method": "cainiao_super_economy",
    "shipped_at": "2026-08-20",
    "deadline": "2026-11-04",
    "extensions": 0,
    "destination_region": "SP",
    "weight_g": 180,
    "declared_value_usd": 12.5,
}
RECOMMENDATION_EXAMPLE: dict[str, Any] = {
    "order_id": "A-1001",
    "action": "extend",
    "extend_by_days": 30,
    "new_deadline": "2026-12-04",
    "days_remaining": 3,
    "p_late": 0.62,
    "p_late_after_extension": 0.08,
    "respond_by": None,
    "reasons": [
        {
            "code": "within_5_days",
            "message": "Fewer than 5 days remain before the deadline: time to decide.",
        },
        {
            "code": "structural_lag",
            "message": "This destination routinely arrives late (structural lag).",
        },
        {
            "code": "late_but_coming",
            "message": "Likely late, but likely to arrive within the extension.",
        },
    ],
    "model_version": "20261101-07bf84e232",
    "last_milestone": None,
    "days_since_last_scan": None,
}


def date_order_problems(values: Mapping[str, Any], as_of: date | None) -> list[tuple[str, str]]:
    """(field, reason) for each date that contradicts the shipment date or ``as_of``."""
    shipped = values.get("shipped_at")
    if not isinstance(shipped, date):
        return []
    deadline = values.get("deadline")
    if (
        isinstance(deadline, date)
        and deadline >= shipped
        and values.get("delivered_at") is None
        and values.get("dispute_opened_at") is None
        and values.get("ordered_at") is None
        and (as_of is None or shipped <= as_of)
    ):
        return []  # the usual open order: nothing to compare
    problems = []
    for field, relation in (
        ("deadline", "deadline before shipped_at"),
        ("delivered_at", "delivered_at before shipped_at"),
        ("dispute_opened_at", "dispute_opened_at before shipped_at"),
    ):
        value = values.get(field)
        if isinstance(value, date) and value < shipped:
            problems.append((field, relation))
    ordered = values.get("ordered_at")
    if isinstance(ordered, date) and ordered > shipped:
        problems.append(("ordered_at", "ordered_at after shipped_at"))
    if as_of is not None and shipped > as_of:
        problems.append(("shipped_at", f"as_of ({as_of.isoformat()}) before shipped_at"))
    return problems


def _parsed_dates(data: Any, skip: set[Any]) -> dict[str, date]:
    """The dates of a raw order that parse on their own (fields in ``skip`` excluded)."""
    if not isinstance(data, Mapping):
        return {}
    parsed = {}
    for field in (*_DATE_FIELDS, "as_of"):
        value = data.get(field)
        if field in skip or value is None:
            continue
        try:
            parsed[field] = _DATE_ADAPTER.validate_python(value)
        except ValidationError:
            continue
    return parsed


def _error_details(errors: list[Any]) -> list[InitErrorDetails]:
    return [
        InitErrorDetails(
            type=PydanticCustomError(str(e["type"]), str(e["msg"])),
            loc=tuple(e["loc"]),
            input=e.get("input"),
        )
        for e in errors
    ]


def _problem_details(problems: list[tuple[str, str]], data: Any) -> list[InitErrorDetails]:
    raw = data if isinstance(data, Mapping) else {}
    return [
        InitErrorDetails(
            type=PydanticCustomError("date_order", reason), loc=(field,), input=raw.get(field)
        )
        for field, reason in problems
    ]


class TrackingEvent(BaseModel):
    """One carrier scan of the order (the events schema, without ``order_id``)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "event_at": "2026-10-28T09:14:00-03:00",
                    "milestone": "customs_cleared",
                    "location": "Curitiba, BR",
                    "description": "Fiscalização aduaneira finalizada",
                }
            ]
        },
    )

    event_at: IsoDateTime = Field(description="When the scan happened.")
    milestone: Milestone = Field(description="One of the product's milestones.")
    # Free text, stripped; blank counts as absent (see ``key``). No per-field Python
    # validators: a request may carry 200 scans.
    carrier: Text | None = None
    location: Text | None = None
    description: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_DESCRIPTION)] | None
    ) = None

    def key(self) -> tuple[datetime, str, str | None, str | None, str | None]:
        """What makes two scans exact duplicates (blank free text is no text)."""
        return (
            self.event_at,
            self.milestone,
            self.carrier or None,
            self.location or None,
            self.description or None,
        )


def event_problems(
    events: Any, shipped: date | None, prefix: tuple[Any, ...] = ()
) -> list[InitErrorDetails]:
    """Scans dated before the order's shipment, located as ``events[i].event_at``."""
    if not isinstance(shipped, date) or not isinstance(events, list):
        return []
    problems = []
    for index, event in enumerate(events):
        raw = event.event_at if isinstance(event, TrackingEvent) else None
        if raw is None and isinstance(event, Mapping):
            try:
                raw = _EVENT_AT_ADAPTER.validate_python(event.get("event_at"))
            except ValidationError:
                continue
        if isinstance(raw, datetime) and raw.date() < shipped:
            problems.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "date_order",
                        f"scan dated {raw.date().isoformat()}, before the order's shipped_at"
                        f" ({shipped.isoformat()})",
                    ),
                    loc=(*prefix, "events", index, "event_at"),
                    input=raw.isoformat(),
                )
            )
    return problems


class OpenOrder(BaseModel):
    """One open order: the open-orders columns; optional fields may be omitted or null.
    ``events`` are its carrier scans (optional; only those dated by ``as_of`` are used)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [ORDER_EXAMPLE]}
    )

    order_id: Annotated[Text, Field(min_length=1, description="Your order reference.")]
    destination_country: Annotated[
        str,
        StringConstraints(strip_whitespace=True, to_upper=True, max_length=MAX_TEXT),
        AfterValidator(_country_code),
        Field(description="ISO 3166-1 alpha-2 code (case-insensitive).", examples=["BR"]),
    ]
    shipping_method: OptionalLower = Field(None, description="Carrier service; null = unknown.")
    shipped_at: IsoDate = Field(description="Date handed to the carrier.")
    deadline: IsoDate = Field(description="Current end of the buyer's receipt window.")
    delivered_at: IsoDate | None = None
    extensions: Annotated[
        int | None,
        Strict(),
        Field(le=MAX_EXTENSIONS, description="Extensions already granted (null = 0)."),
        _not_negative("negative extensions"),
    ] = 0
    dispute_opened_at: IsoDate | None = None
    destination_region: OptionalUpper = Field(None, description="State or region code.")
    weight_g: Money = None
    declared_value_usd: Money = None
    ordered_at: IsoDate | None = None
    events: list[TrackingEvent] | None = Field(
        None,
        max_length=MAX_EVENTS,
        description=f"Carrier scans of this order (at most {MAX_EVENTS}); null = no tracking.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _check_dates(cls, data: Any, handler: Any) -> Any:
        """Field errors and date-order errors together, each located at its field."""
        try:
            order = handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            failed = {e["loc"][0] for e in errors if e["loc"]}
            dates = _parsed_dates(data, failed)
            as_of = dates.get("as_of") if "as_of" in cls.model_fields else None
            problems = _problem_details(date_order_problems(dates, as_of), data)
            whole_list_failed = any(tuple(e["loc"]) == ("events",) for e in errors)
            if not whole_list_failed and isinstance(data, Mapping):
                problems += event_problems(data.get("events"), dates.get("shipped_at"))
            if not problems:
                raise
            raise ValidationError.from_exception_data(
                cls.__name__, _error_details(errors) + problems
            ) from None
        values = order.__dict__
        problems = _problem_details(date_order_problems(values, values.get("as_of")), data)
        if order.events:
            problems += event_problems(order.events, order.shipped_at)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return order


class RecommendationRequest(OpenOrder):
    """One open order plus the decision date."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**ORDER_EXAMPLE, "as_of": "2026-11-01"}]}
    )

    as_of: IsoDate = Field(
        default_factory=today_utc, description="Decision date (default: today, UTC)."
    )


class BatchRequest(BaseModel):
    """Up to ``ADVISOR_MAX_BATCH`` open orders (more: 413) with one decision date."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-11-01",
                    "orders": [
                        ORDER_EXAMPLE,
                        {
                            "order_id": "A-1002",
                            "destination_country": "DE",
                            "shipping_method": "aliexpress_standard",
                            "shipped_at": "2026-09-20",
                            "deadline": "2026-11-03",
                        },
                    ],
                }
            ]
        },
    )

    as_of: IsoDate = Field(
        default_factory=today_utc, description="Decision date (default: today, UTC)."
    )
    orders: list[OpenOrder] = Field(description="Open orders; results keep this order.")

    @model_validator(mode="wrap")
    @classmethod
    def _check_orders(cls, data: Any, handler: Any) -> Any:
        """Shipments after ``as_of`` and repeated order ids, located by index, reported
        together with any field errors."""
        try:
            batch = handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            problems = _batch_problems(*_raw_batch(data, {tuple(e["loc"]) for e in errors}))
            if not problems:
                raise
            raise ValidationError.from_exception_data(
                cls.__name__, _error_details(errors) + problems
            ) from None
        entries = [(i, o.order_id, o.shipped_at) for i, o in enumerate(batch.orders)]
        problems = _batch_problems(batch.as_of, entries)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return batch


def _raw_batch(
    data: Any, failed: set[tuple[Any, ...]]
) -> tuple[date | None, list[tuple[int, str | None, date | None]]]:
    """``as_of`` and (index, order_id, shipped_at) of a raw batch, where they parse alone."""
    if not isinstance(data, Mapping):
        return None, []
    as_of: date | None = None
    if ("as_of",) not in failed:
        try:
            raw = data.get("as_of")
            as_of = today_utc() if raw is None else _DATE_ADAPTER.validate_python(raw)
        except ValidationError:
            as_of = None
    orders = data.get("orders")
    entries: list[tuple[int, str | None, date | None]] = []
    for index, order in enumerate(orders if isinstance(orders, list) else []):
        if not isinstance(order, Mapping):
            continue
        order_id = order.get("order_id")
        order_id = order_id.strip() if isinstance(order_id, str) else None
        if ("orders", index, "order_id") in failed:
            order_id = None
        shipped = _parsed_dates(order, set()).get("shipped_at")
        if ("orders", index, "shipped_at") in failed:
            shipped = None
        entries.append((index, order_id, shipped))
    return as_of, entries


def _batch_problems(
    as_of: date | None, entries: list[tuple[int, str | None, date | None]]
) -> list[InitErrorDetails]:
    problems: list[InitErrorDetails] = []
    first_seen: dict[str, int] = {}
    for index, order_id, shipped in entries:
        if as_of is not None and shipped is not None and shipped > as_of:
            problems.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "date_order", f"as_of ({as_of.isoformat()}) before shipped_at"
                    ),
                    loc=("orders", index, "shipped_at"),
                    input=shipped.isoformat(),
                )
            )
        if order_id:
            first = first_seen.setdefault(order_id, index)
            if first != index:
                problems.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "duplicate", f"duplicate order_id (first seen at orders[{first}])"
                        ),
                        loc=("orders", index, "order_id"),
                        input=order_id,
                    )
                )
    return problems


ActionName = Literal["none", "extend", "escalate", "respond_to_dispute"]


class Reason(BaseModel):
    code: str = Field(examples=["structural_lag"])
    message: str


class Recommendation(BaseModel):
    """The scored-output fields of one order (as ``window-advisor score`` writes them)."""

    model_config = ConfigDict(json_schema_extra={"examples": [RECOMMENDATION_EXAMPLE]})

    order_id: str
    action: ActionName
    extend_by_days: int
    new_deadline: date | None
    days_remaining: int
    p_late: float
    p_late_after_extension: float
    respond_by: date | None
    reasons: list[Reason]
    model_version: str
    last_milestone: str | None = Field(
        description="The latest milestone scanned by as_of (null without scans)."
    )
    days_since_last_scan: int | None = Field(
        description="Days from the latest scan to as_of (null without scans)."
    )


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"results": [RECOMMENDATION_EXAMPLE]}]}
    )

    results: list[Recommendation]


class CountryLag(BaseModel):
    """The lag the loaded model learned for one destination."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "country": "BR",
                    "shipments": 16627,
                    "median_transit_days": 38.0,
                    "p90_transit_days": 71.0,
                    "late_share": 0.21,
                    "never_delivered_share": 0.02,
                    "structural_lag": True,
                }
            ]
        }
    )

    country: str
    shipments: int
    median_transit_days: float | None
    p90_transit_days: float | None
    late_share: float | None
    never_delivered_share: float | None
    structural_lag: bool


class CountryList(BaseModel):
    model_version: str
    countries: list[CountryLag]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"model_dir": "artifacts/model"}]}
    )

    model_dir: str | None = Field(
        None,
        max_length=4096,
        description="Directory to load (default: the one loaded last).",
    )


class ReloadResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_version": "20261101-07bf84e232",
                    "previous_model_version": "20261001-5c1e0a9f3b",
                    "model_dir": "artifacts/model",
                }
            ]
        }
    )

    model_version: str
    previous_model_version: str | None
    model_dir: str


class ErrorResponse(BaseModel):
    """Every error body: ``detail`` is a message, or a list of field errors (422)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "missing or invalid bearer token"}]}
    )

    detail: str | list[dict[str, Any]]
