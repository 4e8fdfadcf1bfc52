"""Importing tracking-service exports (AfterShip, 17TRACK) as carrier scans.

Each checkpoint (AfterShip) or event (17TRACK) of the export becomes one row of the events
schema (:data:`model.events.EVENT_COLUMNS`) with its status mapped to one of
:data:`model.events.MILESTONES` by the tables below (documented in the README). Every
checkpoint is accounted for: written as an event, counted once more as an exact duplicate,
counted as *unmapped* under its status (a status that says nothing about where the parcel is,
such as AfterShip's generic ``InTransit_001``), or rejected with its line and the reason.

The input is JSON, read with :mod:`json` only (nothing in it runs as code): one document (an
array, an API response, a push body) or JSON Lines (one such value per line). A line number
is the physical line of the file on which the checkpoint's (or record's) object opens.
Documents are limited to :data:`MAX_DOCUMENT_BYTES`, JSON Lines records to
:data:`MAX_RECORD_BYTES` and nesting to :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from data.importers import rejects_path_for
from data.tables import write_table
from model.errors import InputFileError
from model.events import EVENT_COLUMNS
from model.schema import MAX_DATE, MIN_DATE, REJECT_COLUMNS, date_range_text

__all__ = [
    "AFTERSHIP_SUBTAGS",
    "AFTERSHIP_TAGS",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_RECORD_BYTES",
    "NO_STATUS",
    "TRACK17_STAGES",
    "TRACK17_SUB_STATUSES",
    "JsonRecord",
    "TrackingImport",
    "aftership_milestone",
    "import_17track",
    "import_aftership",
    "read_json_records",
    "track17_milestone",
    "write_tracking_import",
]

MAX_DOCUMENT_BYTES = 256 * 2**20
"""Largest JSON document read whole (larger exports must be JSON Lines, read line by line)."""
MAX_RECORD_BYTES = 16 * 2**20
"""Largest line of a JSON Lines file."""
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (the services' shapes need about 10)."""

NO_STATUS = "(no status)"
"""The unmapped-count label of a checkpoint that carries no status at all."""

# -- mapping tables -----------------------------------------------------------------------------
# None: the status says nothing about where the parcel is; such checkpoints are counted as
# unmapped, not written.
AFTERSHIP_TAGS: dict[str, str | None] = {
    "Pending": None,
    "InfoReceived": "info_received",
    "InTransit": None,
    "OutForDelivery": "out_for_delivery",
    "AttemptFail": "delivery_failed",
    "Delivered": "delivered",
    "AvailableForPickup": "available_for_pickup",
    "Exception": "exception",
    "Expired": None,
}
"""AfterShip ``tag`` -> milestone, used when the checkpoint's ``subtag`` is absent or not in
:data:`AFTERSHIP_SUBTAGS`."""

AFTERSHIP_SUBTAGS: dict[str, str | None] = {
    "Pending_001": None,
    "InfoReceived_001": "info_received",
    "InTransit_001": None,  # in transit
    "InTransit_002": "picked_up",  # acceptance scan
    "InTransit_003": None,  # arrival scan at some facility: not necessarily the destination
    "InTransit_004": "arrived_destination",  # arrived at the destination country
    "InTransit_005": "customs_cleared",
    "InTransit_006": "customs_hold",  # customs clearance started
    "InTransit_007": "departed_origin",  # departure scan
    "InTransit_008": None,  # problem resolved
    "InTransit_009": None,  # forwarded
    "OutForDelivery_001": "out_for_delivery",
    "OutForDelivery_003": "out_for_delivery",  # customer contacted
    "OutForDelivery_004": "out_for_delivery",  # delivery appointment scheduled
    "AttemptFail_001": "delivery_failed",
    "AttemptFail_002": "delivery_failed",  # addressee not available
    "AttemptFail_003": "delivery_failed",  # business closed
    "AvailableForPickup_001": "available_for_pickup",
    "Delivered_001": "delivered",
    "Delivered_002": "delivered",  # picked up by the customer
    "Delivered_003": "delivered",  # signed by the customer
    "Delivered_004": "delivered",  # cash collected on delivery
    "Delivered_005": "delivered",  # delivered to a neighbour
    "Exception_001": "exception",
    "Exception_002": "delivery_failed",  # customer moved
    "Exception_003": "delivery_failed",  # customer refused delivery
    "Exception_004": "customs_hold",  # delayed by customs clearance
    "Exception_005": "exception",  # delayed by external factors
    "Exception_006": "customs_hold",  # held for the buyer's payment (duties, import tax)
    "Exception_007": "delivery_failed",  # incorrect address
    "Exception_008": "delivery_failed",  # not collected from the pick-up point
    "Exception_009": "exception",  # rejected by the carrier
    "Exception_010": "returning",
    "Exception_011": "returned",
    "Exception_012": "exception",  # damaged
    "Exception_013": "lost",
    "Exception_016": "exception",  # processing delay
    "Exception_017": "exception",  # extreme weather
    "Exception_018": "exception",  # incorrect or missing documents
    "Exception_019": "exception",  # late flight
    "Exception_020": "exception",  # cancelled
    "Exception_021": "lost",  # disposed of: it will never arrive
    "Expired_001": None,
}
"""AfterShip checkpoint ``subtag`` -> milestone."""

TRACK17_SUB_STATUSES: dict[str, str | None] = {
    "NotFound_Other": None,
    "NotFound_InvalidCode": None,
    "InfoReceived": "info_received",
    "InTransit_PickedUp": "picked_up",
    "InTransit_Other": None,
    "InTransit_Departure": "departed_origin",  # left the origin country's port
    "InTransit_Arrival": "arrived_destination",  # reached the destination country's port
    "InTransit_CustomsProcessing": "customs_hold",
    "InTransit_CustomsReleased": "customs_cleared",
    "InTransit_CustomsRequiringInformation": "customs_hold",
    "Expired_Other": None,
    "AvailableForPickup_Other": "available_for_pickup",
    "OutForDelivery_Other": "out_for_delivery",
    "DeliveryFailure_Other": "delivery_failed",
    "DeliveryFailure_NoBody": "delivery_failed",
    "DeliveryFailure_Security": "delivery_failed",
    "DeliveryFailure_Rejected": "delivery_failed",
    "DeliveryFailure_InvalidAddress": "delivery_failed",
    "Delivered_Other": "delivered",
    "Exception_Other": "exception",
    "Exception_Returning": "returning",
    "Exception_Returned": "returned",
    "Exception_NoBody": "delivery_failed",  # recipient not found
    "Exception_Security": "exception",
    "Exception_Damage": "exception",
    "Exception_Rejected": "delivery_failed",  # refused by the recipient
    "Exception_Delayed": "exception",
    "Exception_Lost": "lost",
    "Exception_Destroyed": "lost",
    "Exception_Cancel": "exception",
}
"""17TRACK event ``sub_status`` -> milestone."""

TRACK17_STAGES: dict[str, str | None] = {
    "InfoReceived": "info_received",
    "PickedUp": "picked_up",
    "Departure": "departed_origin",
    "Arrival": "arrived_destination",
    "AvailableForPickup": "available_for_pickup",
    "OutForDelivery": "out_for_delivery",
    "Delivered": "delivered",
    "Returning": "returning",
    "Returned": "returned",
}
"""17TRACK event ``stage`` (its milestone key stages) -> milestone, used when the
``sub_status`` is absent or maps to none."""


def aftership_milestone(tag: str | None, subtag: str | None) -> str | None:
    """The milestone of an AfterShip checkpoint: by ``subtag``, else by ``tag``."""
    if subtag is not None and subtag in AFTERSHIP_SUBTAGS:
        return AFTERSHIP_SUBTAGS[subtag]
    return AFTERSHIP_TAGS.get(tag) if tag is not None else None


def track17_milestone(sub_status: str | None, stage: str | None) -> str | None:
    """The milestone of a 17TRACK event: by ``sub_status``, else by ``stage``."""
    milestone = TRACK17_SUB_STATUSES.get(sub_status) if sub_status is not None else None
    if milestone is None and stage is not None:
        milestone = TRACK17_STAGES.get(stage)
    return milestone


# -- reading JSON ---------------------------------------------------------------------------------
class _Located(dict[str, Any]):
    """A JSON object that remembers the line on which it opens."""

    __slots__ = ("line",)
    line: int


class JsonRecord(NamedTuple):
    """One top-level JSON value (the document, or one JSON Lines record), or why it is not one."""

    line: int
    value: Any = None
    error: str | None = None


class _TooDeep(ValueError):
    pass


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[{}\[\]]")


def _object_lines(text: str, first_line: int) -> list[int]:
    """The opening line of every object in ``text``, in the order the objects *close*.

    That is the order in which :func:`json.loads` calls ``object_pairs_hook``, so the hook
    can give each object its line. Strings are blanked first: in valid JSON they hold no
    raw line break, so lines are kept. Raises :class:`_TooDeep` past :data:`MAX_DEPTH`.
    """
    bare = _STRING.sub('""', text)
    lines: list[int] = []
    stack: list[int] = []
    line, position = first_line, 0
    for match in _BRACKET.finditer(bare):
        start = match.start()
        line += bare.count("\n", position, start)
        position = start
        bracket = match.group()
        if bracket in "{[":
            stack.append(line)
            if len(stack) > MAX_DEPTH:
                raise _TooDeep(f"nested deeper than {MAX_DEPTH} levels")
        elif stack:
            opened = stack.pop()
            if bracket == "}":
                lines.append(opened)
    return lines


_NOT_BRACKET = re.compile(r"[^{}\[\]]+")
_INNERMOST = re.compile(r"\{\}|\[\]")


def _check_depth(bare: str) -> None:
    """Raise :class:`_TooDeep` past :data:`MAX_DEPTH` (``bare``: strings already blanked).

    Peels the innermost pairs of brackets off, one level per pass, in C.
    """
    brackets = _NOT_BRACKET.sub("", bare)
    for _ in range(MAX_DEPTH):
        brackets, peeled = _INNERMOST.subn("", brackets)
        if not peeled:
            return  # nothing left, or unbalanced: the parser says why
    if _INNERMOST.search(brackets):
        raise _TooDeep(f"nested deeper than {MAX_DEPTH} levels")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str, first_line: int) -> Any:
    """Parse ``text`` (JSON); ValueError if it is not.

    Text of several lines gives every object as a :class:`_Located` that knows its opening
    line; text of one line needs no such bookkeeping (every object is on ``first_line``).
    """
    hook: Callable[[list[tuple[str, Any]]], Any] | None = None
    if "\n" in text.rstrip():
        starts = iter(_object_lines(text, first_line))

        def located(pairs: list[tuple[str, Any]]) -> _Located:
            obj = _Located(pairs)
            obj.line = next(starts, first_line)
            return obj

        hook = located
    elif text.count("[") + text.count("{") > MAX_DEPTH:  # else it cannot be too deep
        _check_depth(_STRING.sub('""', text))
    try:
        return json.loads(text, object_pairs_hook=hook, parse_constant=_no_constants)
    except RecursionError:
        raise _TooDeep(f"nested deeper than {MAX_DEPTH} levels") from None


def _balanced(line: str) -> bool:
    """Whether a line holds whole JSON containers only (depth returns to 0, never below)."""
    depth, seen = 0, False
    for bracket in _BRACKET.findall(_STRING.sub('""', line)):
        seen = True
        depth += 1 if bracket in "{[" else -1
        if depth < 0:
            return False
    return seen and depth == 0


def _open_binary(path: Path) -> io.BufferedIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _physical_lines(handle: io.BufferedIOBase) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes without the line end)``; ``None`` for a line over the limit."""
    number = 0
    while True:
        raw = handle.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
            while (rest := handle.readline(MAX_RECORD_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        yield number, raw.rstrip(b"\r\n")


def _decode(raw: bytes, first: bool) -> str:
    return raw.decode("utf-8-sig" if first else "utf-8")


def _parse_record(raw: bytes | None, number: int) -> JsonRecord:
    if raw is None:
        return JsonRecord(number, error=f"line longer than {MAX_RECORD_BYTES:,} bytes")
    try:
        text = _decode(raw, number == 1)
    except UnicodeDecodeError:
        return JsonRecord(number, error="not UTF-8 text")
    try:
        return JsonRecord(number, _loads(text, number))
    except _TooDeep as exc:
        return JsonRecord(number, error=str(exc))
    except ValueError as exc:
        return JsonRecord(number, error=f"not valid JSON: {_json_reason(exc, one_line=True)}")


def _json_reason(exc: ValueError, *, one_line: bool = False) -> str:
    if isinstance(exc, json.JSONDecodeError):
        where = f"column {exc.colno}" if one_line else f"line {exc.lineno}, column {exc.colno}"
        return f"{exc.msg} ({where})"
    return str(exc)


def read_json_records(path: Path) -> tuple[str, Iterator[JsonRecord]]:
    """``("document" | "json-lines", records)`` of a JSON file (``.gz`` is decompressed).

    JSON Lines when the first non-blank line holds whole containers (``{...}`` or ``[...]``)
    and another non-blank line follows; each line is then parsed alone, and a line that is
    not valid JSON comes back with its ``error``. Otherwise the file is one document: read
    whole, and one that is not valid JSON raises :class:`InputFileError`.
    """
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        with _open_binary(path) as handle:
            first: tuple[int, bytes | None] | None = None
            more = False
            for number, line in _physical_lines(handle):
                if line is not None and not line.strip():
                    continue
                if first is None:
                    first = (number, line)
                    continue
                more = True
                break
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"{path}: cannot read: {exc}") from None
    if first is None:
        raise InputFileError(f"{path}: empty file (no JSON in it)")
    raw = first[1]
    if more and raw is not None and _balanced(_decode_lenient(raw)):
        return "json-lines", _json_lines(path)
    return "document", iter([_read_document(path)])


def _decode_lenient(raw: bytes) -> str:
    return raw.decode("utf-8-sig", errors="replace")


def _json_lines(path: Path) -> Iterator[JsonRecord]:
    try:
        with _open_binary(path) as handle:
            for number, raw in _physical_lines(handle):
                if raw is not None and not raw.strip():
                    continue
                yield _parse_record(raw, number)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"{path}: cannot read: {exc}") from None


def _read_document(path: Path) -> JsonRecord:
    try:
        with _open_binary(path) as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"{path}: cannot read: {exc}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputFileError(
            f"{path}: a JSON document larger than {MAX_DOCUMENT_BYTES // 2**20} MiB;"
            " export it as JSON Lines (one tracking or push body per line) instead"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text (byte {exc.start + 1:,})") from None
    try:
        return JsonRecord(1, _loads(text, 1))
    except _TooDeep as exc:
        raise InputFileError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise InputFileError(f"{path}: not valid JSON: {_json_reason(exc)}") from None


# -- collecting checkpoints -----------------------------------------------------------------------
class _Unrecognised(ValueError):
    """A JSON value that is none of the service's documented shapes."""


@dataclass(frozen=True)
class _Service:
    """What differs between the services in collecting their checkpoints."""

    name: str
    what: str  # "checkpoint" / "event", for reasons
    time_columns: tuple[str, ...]  # the first one present is the time
    order_column: str
    order_reason: str


class _Candidate(NamedTuple):
    """A checkpoint seen for the first time, waiting for its time to be checked."""

    line: int
    sequence: int
    time_column: str
    key: tuple[str | None, ...]  # the event row, or the unmapped status in the milestone place
    status: str


_UNMAPPED = "\x00"  # marks the status (not a milestone) in a key; no milestone starts so


@dataclass
class TrackingImport:
    """Events (:data:`EVENT_COLUMNS`, text), rejects and the counts of every outcome.

    ``checkpoints == len(events) + duplicates + sum(unmapped.values()) + checkpoint_rejects``;
    the other rejects are whole records (a line that is not JSON, a value of no known shape).
    """

    service: str
    events: pd.DataFrame
    rejects: pd.DataFrame
    trackings: int
    checkpoints: int
    duplicates: int
    unmapped: dict[str, int]
    checkpoint_rejects: int
    notes: list[str] = field(default_factory=list)

    @property
    def records_rejected(self) -> int:
        return len(self.rejects) - self.checkpoint_rejects


class _Collector:
    """Gathers checkpoints and rejects while an export is walked, then builds the result.

    Duplicates are dropped as they come (webhook logs resend a tracking's whole history), so
    memory grows with the distinct checkpoints only; repeated texts are stored once.
    """

    def __init__(self, service: _Service) -> None:
        self.service = service
        self.seen: set[tuple[str | None, ...]] = set()
        self.candidates: list[_Candidate] = []
        self.rejects: list[tuple[int, int, str | None, str, str]] = []
        self.shared: dict[str, str] = {}
        self.checkpoint_rejects = 0
        self.duplicates = 0
        self.trackings = 0
        self.checkpoints_read = 0
        self.without_checkpoints = 0
        self.notes: list[str] = []

    def reject_record(self, line: int, reason: str, order_id: str | None = None) -> None:
        self.rejects.append((line, self.checkpoints_read, order_id, "(record)", reason))

    def reject(
        self,
        line: int,
        order_id: str | None,
        column: str,
        reason: str,
        sequence: int | None = None,
    ) -> None:
        """Reject a checkpoint; ``sequence`` orders rejects that share a line (reading order)."""
        order = self.checkpoints_read if sequence is None else sequence
        self.rejects.append((line, order, order_id, column, reason))
        self.checkpoint_rejects += 1

    def share(self, text: str | None) -> str | None:
        return None if text is None else self.shared.setdefault(text, text)

    def checkpoint(
        self,
        line: int,
        order_id: str | None,
        source: dict[str, Any],
        milestone: str | None,
        status: str,
        carrier: str | None,
        location: str | None,
        description: str | None,
    ) -> None:
        """One checkpoint: dropped as a duplicate, rejected, or kept as a candidate."""
        service = self.service
        time_column, raw_time = service.time_columns[0], None
        for column in service.time_columns:
            value = source.get(column)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                time_column, raw_time = column, value
                break
        time_text = raw_time.strip() if isinstance(raw_time, str) else None
        key = (
            order_id,
            time_text if raw_time is None or time_text is not None else repr(raw_time),
            milestone or _UNMAPPED + status,
            self.share(carrier),
            self.share(location),
            self.share(description),
        )
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        if order_id is None:
            self.reject(line, None, service.order_column, service.order_reason)
        elif raw_time is None:
            names = " or ".join(service.time_columns)
            reason = f"missing: the {service.what} has no {names}"
            self.reject(line, order_id, time_column, reason)
        elif time_text is None:
            reason = f"{_json_type(raw_time)}, not an ISO 8601 date-time text"
            self.reject(line, order_id, time_column, reason)
        else:
            candidate = _Candidate(line, self.checkpoints_read, time_column, key, status)
            self.candidates.append(candidate)

    def result(self) -> TrackingImport:
        valid = self._check_times()
        self.seen.clear()
        rows: list[tuple[str | None, ...]] = []
        unmapped: Counter[str] = Counter()
        for candidate, ok in zip(self.candidates, valid, strict=True):
            if not ok:
                continue
            if str(candidate.key[2]).startswith(_UNMAPPED):
                unmapped[candidate.status] += 1
            else:
                rows.append(candidate.key)
        events = pd.DataFrame(rows, columns=list(EVENT_COLUMNS), dtype=object)
        rejects = pd.DataFrame(
            [reject[:1] + reject[2:] for reject in sorted(self.rejects, key=lambda r: r[:2])],
            columns=list(REJECT_COLUMNS),
        ).astype({"line": "int64"})
        notes = list(self.notes)
        if self.without_checkpoints:
            notes.insert(0, f"trackings without checkpoints: {self.without_checkpoints:,}")
        return TrackingImport(
            service=self.service.name,
            events=events,
            rejects=rejects,
            trackings=self.trackings,
            checkpoints=self.checkpoints_read,
            duplicates=self.duplicates,
            unmapped=dict(sorted(unmapped.items(), key=lambda item: (-item[1], item[0]))),
            checkpoint_rejects=self.checkpoint_rejects,
            notes=notes,
        )

    def _check_times(self) -> np.ndarray:
        """Which candidates have an ISO 8601 time in the supported range; reject the rest."""
        if not self.candidates:
            return np.zeros(0, dtype=bool)
        text = pd.Series([c.key[1] for c in self.candidates], dtype=object)
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        day = parsed.dt.tz_localize(None)
        outside = np.asarray(
            parsed.notna() & ((day < pd.Timestamp(MIN_DATE)) | (day >= _AFTER_MAX)), dtype=bool
        )
        unparsable = np.asarray(parsed.isna(), dtype=bool)
        for position in np.flatnonzero(unparsable | outside):
            candidate = self.candidates[position]
            quoted = f"'{candidate.key[1]}'"
            reason = (
                f"{quoted} is out of {date_range_text()}"
                if outside[position]
                else f"{quoted} is not an ISO 8601 date-time"
            )
            order_id = candidate.key[0]
            column = candidate.time_column
            self.reject(candidate.line, order_id, column, reason, sequence=candidate.sequence)
        return ~(unparsable | outside)


_AFTER_MAX = pd.Timestamp(MAX_DATE) + pd.Timedelta(days=1)


def _text(value: Any) -> str | None:
    """A JSON scalar as stripped text (``None`` for null, blanks, objects and arrays)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return str(value)
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "text"


def _line(value: Any, default: int) -> int:
    return value.line if isinstance(value, _Located) else default


def _first_text(obj: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        found = _text(obj.get(key))
        if found is not None:
            return found
    return None


def _joined(*parts: Any) -> str | None:
    texts = [t for t in (_text(p) for p in parts) if t is not None]
    return ", ".join(texts) or None


def _walk(
    record: JsonRecord,
    sink: _Collector,
    item: Callable[[Any, int, _Collector], None],
    *,
    document: bool,
    path: Path,
) -> None:
    """Feed one record to ``item``; a shape of no known kind is an error (document) or reject."""
    if record.error is not None:
        sink.reject_record(record.line, record.error)
        return
    value = record.value
    top_line = _line(value, record.line)
    if isinstance(value, list):
        for element in value:
            line = _line(element, top_line)
            try:
                item(element, line, sink)
            except _Unrecognised as exc:
                sink.reject_record(line, str(exc))
        return
    try:
        item(value, top_line, sink)
    except _Unrecognised as exc:
        if document:
            raise InputFileError(f"{path}: {exc}") from None
        sink.reject_record(top_line, str(exc))


def _import(
    path: Path, service: _Service, item: Callable[[Any, int, _Collector], None]
) -> TrackingImport:
    kind, records = read_json_records(path)
    sink = _Collector(service)
    for record in records:
        _walk(record, sink, item, document=kind == "document", path=path)
    return sink.result()


# -- AfterShip ------------------------------------------------------------------------------------
_AFTERSHIP_ORDER_KEYS = ("order_id", "order_number", "tracking_number")
_AFTERSHIP_TRACKING_KEYS = ("checkpoints", "tracking_number", "slug", "order_id", "order_number")
_AFTERSHIP = _Service(
    name="AfterShip",
    what="checkpoint",
    time_columns=("checkpoint_time",),
    order_column="order_id",
    order_reason="missing: the tracking has no order_id, order_number or tracking_number",
)
_AFTERSHIP_COUNTRY_KEYS = ("country_region_name", "country_name", "country_region", "country_iso3")
_AFTERSHIP_SHAPES = (
    "a tracking, an API response {data: {trackings | tracking}} or a webhook body {msg: tracking}"
)


def _aftership_item(value: Any, line: int, sink: _Collector) -> None:
    """One tracking object, API response or webhook body."""
    if not isinstance(value, dict):
        raise _Unrecognised(f"{_json_type(value)}, not {_AFTERSHIP_SHAPES}")
    if "msg" in value:
        tracking = value["msg"]
        if not isinstance(tracking, dict):
            raise _Unrecognised(f"webhook body whose msg is {_json_type(tracking)}, not a tracking")
        _aftership_tracking(tracking, _line(tracking, line), sink)
    elif "data" in value and "meta" not in value and ("event" in value or "code" in value):
        raise _Unrecognised("a 17TRACK record, not AfterShip: use `import 17track`")
    elif "data" in value:
        data = value["data"]
        trackings = data.get("trackings") if isinstance(data, dict) else None
        tracking = data.get("tracking") if isinstance(data, dict) else None
        if isinstance(trackings, list):
            for element in trackings:
                element_line = _line(element, line)
                if isinstance(element, dict):
                    _aftership_tracking(element, element_line, sink)
                else:
                    sink.reject_record(
                        element_line, f"data.trackings holds {_json_type(element)}, not a tracking"
                    )
        elif isinstance(tracking, dict):
            _aftership_tracking(tracking, _line(tracking, line), sink)
        elif isinstance(data, dict) and any(key in data for key in _AFTERSHIP_TRACKING_KEYS):
            _aftership_tracking(data, _line(data, line), sink)  # newer API versions
        else:
            raise _Unrecognised(
                _api_error(value) or "API response without data.trackings or data.tracking"
            )
    elif any(key in value for key in _AFTERSHIP_TRACKING_KEYS):
        _aftership_tracking(value, line, sink)
    elif "track_info" in value or "number" in value:
        raise _Unrecognised("a 17TRACK record, not AfterShip: use `import 17track`")
    else:
        raise _Unrecognised(f"not {_AFTERSHIP_SHAPES} (no {', '.join(_AFTERSHIP_TRACKING_KEYS)})")


def _api_error(response: dict[str, Any]) -> str | None:
    meta = response.get("meta")
    if isinstance(meta, dict) and _text(meta.get("code")) not in (None, "200", "201"):
        message = _text(meta.get("message")) or "no message"
        return f"AfterShip error response (meta.code {_text(meta.get('code'))}: {message})"
    return None


def _aftership_tracking(tracking: dict[str, Any], line: int, sink: _Collector) -> None:
    sink.trackings += 1
    order_id = _first_text(tracking, _AFTERSHIP_ORDER_KEYS)
    slug = _text(tracking.get("slug"))
    checkpoints = tracking.get("checkpoints")
    if checkpoints is None or checkpoints == []:
        sink.without_checkpoints += 1
        return
    if not isinstance(checkpoints, list):
        sink.reject_record(
            line, f"checkpoints is {_json_type(checkpoints)}, not an array", order_id
        )
        return
    for checkpoint in checkpoints:
        sink.checkpoints_read += 1
        cp_line = _line(checkpoint, line)
        if not isinstance(checkpoint, dict):
            sink.reject(
                cp_line, order_id, "checkpoints", f"{_json_type(checkpoint)}, not a checkpoint"
            )
            continue
        tag, subtag = _text(checkpoint.get("tag")), _text(checkpoint.get("subtag"))
        sink.checkpoint(
            cp_line,
            order_id,
            checkpoint,
            milestone=aftership_milestone(tag, subtag),
            status=subtag or tag or NO_STATUS,
            carrier=_text(checkpoint.get("slug")) or slug,
            location=_text(checkpoint.get("location"))
            or _joined(
                checkpoint.get("city"),
                checkpoint.get("state"),
                _first_text(checkpoint, _AFTERSHIP_COUNTRY_KEYS),
            ),
            description=_text(checkpoint.get("message")),
        )


def import_aftership(path: Path) -> TrackingImport:
    """Read an AfterShip export (trackings array, API response or webhook JSON Lines)."""
    return _import(path, _AFTERSHIP, _aftership_item)


# -- 17TRACK --------------------------------------------------------------------------------------
_TRACK17 = _Service(
    name="17TRACK",
    what="event",
    time_columns=("time_iso", "time_utc"),
    order_column="tag",
    order_reason="missing: the tracking entry has no tag or number",
)
_TRACK17_SHAPES = (
    "a 17TRACK push {event, data}, gettrackinfo response {code, data: {accepted}}"
    " or tracking entry {number, track_info}"
)


def _track17_item(value: Any, line: int, sink: _Collector) -> None:
    """One push body, ``gettrackinfo`` response or accepted entry."""
    if not isinstance(value, dict):
        raise _Unrecognised(f"{_json_type(value)}, not {_TRACK17_SHAPES}")
    data = value.get("data")
    if "event" in value and "data" in value:
        if not isinstance(data, dict):
            raise _Unrecognised(f"push whose data is {_json_type(data)}, not a tracking entry")
        _track17_entry(data, _line(data, line), sink)
    elif "code" in value and "data" in value:
        code = _text(value.get("code"))
        if code != "0":
            raise _Unrecognised(f"17TRACK error response (code {code})")
        accepted = data.get("accepted") if isinstance(data, dict) else None
        if not isinstance(accepted, list):
            raise _Unrecognised("gettrackinfo response without a data.accepted array")
        for entry in accepted:
            entry_line = _line(entry, line)
            if isinstance(entry, dict):
                _track17_entry(entry, entry_line, sink)
            else:
                sink.reject_record(
                    entry_line, f"data.accepted holds {_json_type(entry)}, not a tracking entry"
                )
        rejected = data.get("rejected") if isinstance(data, dict) else None
        if isinstance(rejected, list) and rejected:
            sink.notes.append(_track17_rejected(rejected))
    elif "track_info" in value or "number" in value:
        _track17_entry(value, line, sink)
    elif any(key in value for key in ("msg", "meta", "checkpoints", "tracking_number")):
        raise _Unrecognised("an AfterShip record, not 17TRACK: use `import aftership`")
    else:
        raise _Unrecognised(f"not {_TRACK17_SHAPES}")


def _track17_rejected(rejected: list[Any]) -> str:
    """The note on numbers 17TRACK itself did not track (they hold no events)."""
    examples = []
    for entry in rejected[:3]:
        if isinstance(entry, dict):
            error = entry.get("error")
            message = _text(error.get("message")) if isinstance(error, dict) else None
            examples.append(f"{_text(entry.get('number')) or '?'}: {message or 'no message'}")
    shown = f" ({'; '.join(examples)})" if examples else ""
    return f"numbers 17TRACK did not track (no events): {len(rejected):,}{shown}"


def _track17_entry(entry: dict[str, Any], line: int, sink: _Collector) -> None:
    sink.trackings += 1
    order_id = _first_text(entry, ("tag", "number"))
    value: Any = entry
    for key, kind in (("track_info", dict), ("tracking", dict), ("providers", list)):
        value = value.get(key)
        if value is None:  # e.g. a TRACKING_STOPPED push, or a number not tracked yet
            sink.without_checkpoints += 1
            return
        if not isinstance(value, kind):
            wanted = "an object" if kind is dict else "an array"
            sink.reject_record(line, f"{key} is {_json_type(value)}, not {wanted}", order_id)
            return
    providers: list[Any] = value
    found = False
    for block in providers:
        block_line = _line(block, line)
        if not isinstance(block, dict):
            sink.reject_record(
                block_line, f"providers holds {_json_type(block)}, not a provider", order_id
            )
            continue
        events = block.get("events")
        if events is None or events == []:
            continue
        if not isinstance(events, list):
            sink.reject_record(
                block_line, f"providers[].events is {_json_type(events)}, not an array", order_id
            )
            continue
        found = True
        provider = block.get("provider")
        carrier = (
            _first_text(provider, ("name", "key")) if isinstance(provider, dict) else None
        ) or _text(entry.get("carrier"))
        for event in events:
            _track17_event(event, _line(event, block_line), order_id, carrier, sink)
    if not found:
        sink.without_checkpoints += 1


def _track17_event(
    event: Any, line: int, order_id: str | None, carrier: str | None, sink: _Collector
) -> None:
    sink.checkpoints_read += 1
    if not isinstance(event, dict):
        sink.reject(line, order_id, "events", f"{_json_type(event)}, not an event")
        return
    sub_status, stage = _text(event.get("sub_status")), _text(event.get("stage"))
    address = event.get("address")
    sink.checkpoint(
        line,
        order_id,
        event,
        milestone=track17_milestone(sub_status, stage),
        status=sub_status or stage or NO_STATUS,
        carrier=carrier,
        location=_text(event.get("location"))
        or (
            _joined(address.get("city"), address.get("state"), address.get("country"))
            if isinstance(address, dict)
            else None
        ),
        description=_text(event.get("description")),
    )


def import_17track(path: Path) -> TrackingImport:
    """Read a 17TRACK export (v2 push bodies, one or an array or JSON Lines; gettrackinfo)."""
    return _import(path, _TRACK17, _track17_item)


# -- writing --------------------------------------------------------------------------------------
def write_tracking_import(result: TrackingImport, out: Path) -> Path:
    """Write the events to ``out`` (CSV, CSV.gz or Parquet) and the rejects beside it."""
    write_table(result.events, out)
    rejects_path = rejects_path_for(out)
    write_table(result.rejects, rejects_path)
    return rejects_path
