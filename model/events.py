"""Carrier tracking scans: validation, a compact per-order table, and the state at a cut-off.

Every importer (AfterShip, 17TRACK, ...) and the generator speak one milestone vocabulary,
:data:`MILESTONES`. A file (or request) of scans is validated row by row like every other
input (:func:`validate_events`), checked against its orders (:func:`match_events`: a scan
before its order's ``shipped_at`` is rejected, scans of unknown orders are counted), and
packed into a :class:`ScanTable` sorted by order and time.

:func:`scan_state` is the one function that turns scans into model input. It takes, per row,
the order and a *cut-off day*, and looks only at scans dated on or before it: training
landmarks, backtest decisions, calibration rows and scoring all go through it, so a scan
after the decision date can never leak into a probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from model.schema import (
    FIRST_DATA_LINE,
    REJECT_COLUMNS,
    _Collector,
    _Column,
    _require_columns,
    date_range_text,
)

__all__ = [
    "EVENT_COLUMNS",
    "JOURNEY",
    "KEY_MILESTONES",
    "MILESTONES",
    "MILESTONE_CODE",
    "OPTIONAL_EVENT_COLUMNS",
    "REQUIRED_EVENT_COLUMNS",
    "TERMINAL_MILESTONES",
    "MatchedEvents",
    "OrderScans",
    "ScanState",
    "ScanTable",
    "ValidatedEvents",
    "concat_events",
    "match_events",
    "milestone_names",
    "scan_state",
    "scans_of_orders",
    "validate_events",
]

MILESTONES: tuple[str, ...] = (
    "info_received",
    "picked_up",
    "departed_origin",
    "arrived_destination",
    "customs_hold",
    "customs_cleared",
    "out_for_delivery",
    "delivery_failed",
    "available_for_pickup",
    "delivered",
    "returning",
    "returned",
    "exception",
    "lost",
)
"""The milestones in the contract's order: the journey, then the ways a parcel leaves it."""

MILESTONE_CODE: dict[str, int] = {name: code for code, name in enumerate(MILESTONES)}
"""Each milestone's code (its index in :data:`MILESTONES`)."""
JOURNEY: tuple[str, ...] = MILESTONES[: MILESTONES.index("delivered") + 1]
"""Milestones along the way to the buyer, in order: how far a parcel got is the furthest."""
KEY_MILESTONES: tuple[str, ...] = (
    "departed_origin",
    "arrived_destination",
    "customs_hold",
    "customs_cleared",
    "out_for_delivery",
)
"""Milestones whose first scan day (days after shipment) the model sees: how fast the legs were."""
TERMINAL_MILESTONES: tuple[str, ...] = ("returning", "returned", "lost")
"""A latest scan of these means the parcel will not reach the buyer (the carrier says so)."""

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("order_id", "event_at", "milestone")
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = ("carrier", "location", "description")
EVENT_COLUMNS: tuple[str, ...] = REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS

_DAY_NS = 86_400 * 10**9
_NO_DAY = np.iinfo(np.int32).max  # "never scanned" in per-order first-scan tables


def milestone_names(codes: np.ndarray) -> np.ndarray:
    """Milestone names of codes (object array; None where the code is -1)."""
    names = np.asarray((*MILESTONES, None), dtype=object)
    codes = np.asarray(codes, dtype=np.int64)
    return names[np.where(codes < 0, len(MILESTONES), codes)]


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidatedEvents:
    """Scans that parsed (input order, exact duplicates dropped) and the rejects.

    The valid scans are kept as arrays: ``line``, ``order_id`` (Arrow text), ``time_ns``
    (UTC-naive ns since 1970, time of day kept), ``code`` (index into :data:`MILESTONES`)
    and the free-text columns (``text``); :attr:`valid` gives them as a frame,
    :meth:`packed` packs them by order. A :meth:`compact` copy keeps a 64-bit hash of the
    free text (``text_hash``) instead of the text, enough to find duplicates.
    """

    line: np.ndarray
    order_id: pa.Array
    time_ns: np.ndarray
    code: np.ndarray
    text: dict[str, pa.Array]
    rejects: pd.DataFrame
    duplicates: int = 0
    text_hash: np.ndarray | None = None

    @property
    def n_valid(self) -> int:
        return len(self.line)

    @property
    def n_rows(self) -> int:
        return self.n_valid + len(self.rejects) + self.duplicates

    @property
    def valid(self) -> pd.DataFrame:
        """``line``, ``order_id``, ``event_at`` (``datetime64[ns]``), ``milestone`` (a name
        of :data:`MILESTONES`) and the free-text columns (None where blank)."""
        return pd.DataFrame(
            {
                "line": self.line,
                "order_id": np.asarray(self.order_id.to_pylist(), dtype=object),
                "event_at": self.time_ns.view("datetime64[ns]"),
                "milestone": milestone_names(self.code),
                **{
                    name: np.asarray(values.to_pylist(), dtype=object)
                    for name, values in self.text.items()
                },
            }
        )

    def compact(self) -> ValidatedEvents:
        """The same scans with the free text replaced by its hash (:func:`_text_hash`)."""
        if self.text_hash is not None:
            return self
        return replace(self, text={}, text_hash=_text_hash(self.text))

    def _text_keys(self) -> list[np.ndarray]:
        if self.text_hash is not None:
            return [self.text_hash]
        return [_codes(values) for values in self.text.values() if values.null_count < len(values)]

    def without_duplicates(self) -> ValidatedEvents:
        """The scans with every exact repeat of an earlier one dropped (and counted)."""
        owner = _codes(self.order_id)
        duplicate = _exact_duplicates(owner, self.time_ns, self.code, self._text_keys())
        if not duplicate.any():
            return self
        keep = ~duplicate
        unique = pa.array(keep)
        return ValidatedEvents(
            line=self.line[keep],
            order_id=self.order_id.filter(unique),
            time_ns=self.time_ns[keep],
            code=self.code[keep],
            text={name: values.filter(unique) for name, values in self.text.items()},
            rejects=self.rejects,
            duplicates=self.duplicates + int(duplicate.sum()),
            text_hash=None if self.text_hash is None else self.text_hash[keep],
        )

    def packed(self) -> tuple[ScanTable, int]:
        """The scans packed by order (:class:`ScanTable`) with every exact repeat of an
        earlier one dropped: the table and the number dropped (the order ids are encoded
        once, and one sort serves both)."""
        if self.n_valid == 0:
            return ScanTable.empty(), 0
        encoded = pc.dictionary_encode(self.order_id)
        owner = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        order = _scan_order(owner, self.time_ns, self.code)
        duplicate = _exact_duplicates(owner, self.time_ns, self.code, self._text_keys(), order)
        # Every duplicate's order also has its first copy: the dictionary stays exact.
        table = ScanTable.from_arrays(
            encoded.dictionary.to_numpy(zero_copy_only=False).astype(object),
            owner,
            self.time_ns,
            self.code,
            self.line,
            order=order[~duplicate[order]],
        )
        return table, int(duplicate.sum())


def validate_events(
    events: pd.DataFrame | pa.Table,
    *,
    lines: Sequence[int] | np.ndarray | None = None,
    drop_duplicates: bool = True,
) -> ValidatedEvents:
    """Validate raw scans, a frame or an Arrow table (see README, "Tracking scans"); every bad
    row is listed.

    Milestones are matched case-insensitively; an exact duplicate of an earlier valid scan
    (same order, time, milestone, carrier, location and description) counts once (unless
    ``drop_duplicates`` is False: a chunk of a larger input, see :func:`concat_events`).
    """
    is_table = isinstance(events, pa.Table)
    names = list(events.column_names) if is_table else [str(c) for c in events.columns]
    _require_columns(names, REQUIRED_EVENT_COLUMNS, "tracking events")
    n = events.num_rows if is_table else len(events)
    line = (
        np.arange(FIRST_DATA_LINE, FIRST_DATA_LINE + n, dtype=np.int64)
        if lines is None
        else np.asarray(lines, dtype=np.int64)
    )

    def cell(name: str) -> _Column:
        if name not in names:
            return _Column.missing(n)
        if is_table:
            return _Column.from_arrow(events.column(name))
        return _Column.from_series(events[name])

    cells = {c: cell(c) for c in EVENT_COLUMNS}
    errors = _Collector(n)

    ids = cells["order_id"]
    errors.add(ids.blank, "order_id", "missing required value")

    at = cells["event_at"]
    event_at, unparsable, outside = at.timestamps()
    errors.add(at.blank, "event_at", "missing required value")
    errors.add(unparsable, "event_at", at.message(" is not an ISO 8601 date or datetime"))
    errors.add(outside, "event_at", at.message(f" is out of {date_range_text()}"))

    milestone_cells = cells["milestone"]
    code = pc.fill_null(
        pc.index_in(pc.utf8_lower(milestone_cells.text), value_set=_MILESTONE_ARRAY), -1
    ).to_numpy(zero_copy_only=False)
    errors.add(milestone_cells.blank, "milestone", "missing required value")
    errors.add(
        (code < 0) & ~milestone_cells.blank,
        "milestone",
        milestone_cells.message(" is not a milestone (one of: " + ", ".join(MILESTONES) + ")"),
    )

    failed = errors.failed
    keep = np.flatnonzero(~failed)
    kept = pa.array(keep, type=pa.int64())
    order_text = ids.text.take(kept)
    time_ns = event_at.astype("datetime64[ns]").view(np.int64)[keep]
    codes = code[keep].astype(np.int8)
    text = {
        name: pc.if_else(
            pa.array(cells[name].blank[keep]),
            pa.scalar(None, pa.string()),
            cells[name].text.take(kept),
        )
        for name in OPTIONAL_EVENT_COLUMNS
    }
    rejects = pd.DataFrame(
        {
            "line": line[failed],
            "order_id": pd.Series(
                np.asarray(
                    pc.if_else(pa.array(ids.blank), pa.scalar(None, pa.string()), ids.text)
                    .filter(pa.array(failed))
                    .to_pylist(),
                    dtype=object,
                ),
                dtype=object,
            ),
            "column": errors.column[failed],
            "reason": errors.reason[failed],
        },
        columns=list(REJECT_COLUMNS),
    )
    validated = ValidatedEvents(
        line=line[keep],
        order_id=order_text,
        time_ns=time_ns,
        code=codes,
        text=text,
        rejects=rejects,
    )
    return validated.without_duplicates() if drop_duplicates else validated


_MILESTONE_ARRAY = pa.array(MILESTONES, type=pa.string())


def concat_events(parts: Sequence[ValidatedEvents]) -> ValidatedEvents:
    """Validated chunks of one input, in input order, as one (duplicates not yet dropped);
    the chunks are all compact (:meth:`ValidatedEvents.compact`) or none is."""
    if not parts:
        return validate_events(pa.table({c: pa.array([], pa.string()) for c in EVENT_COLUMNS}))
    compact = parts[0].text_hash is not None
    return ValidatedEvents(
        line=np.concatenate([p.line for p in parts]),
        order_id=pa.concat_arrays([p.order_id for p in parts]),
        time_ns=np.concatenate([p.time_ns for p in parts]),
        code=np.concatenate([p.code for p in parts]),
        text={}
        if compact
        else {name: pa.concat_arrays([p.text[name] for p in parts]) for name in parts[0].text},
        rejects=pd.concat([p.rejects for p in parts], ignore_index=True),
        duplicates=sum(p.duplicates for p in parts),
        text_hash=np.concatenate([p.text_hash for p in parts if p.text_hash is not None])
        if compact
        else None,
    )


_MIX = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)


def _exact_duplicates(
    owner: np.ndarray,
    time_ns: np.ndarray,
    code: np.ndarray,
    text_keys: list[np.ndarray],
    order: np.ndarray | None = None,
) -> np.ndarray:
    """Which scans repeat an earlier one exactly (same order, time, milestone and free text;
    ``owner`` and ``text_keys`` are integer codes of the order and of the text).

    In the packing order (:func:`_scan_order`, given as ``order`` when already computed)
    equal scans are neighbours; only the few runs of equal order, time and milestone are
    then compared on every key."""
    n = len(time_ns)
    duplicate = np.zeros(n, dtype=bool)
    if n < 2:
        return duplicate
    if order is None:
        order = _scan_order(owner, time_ns, code)
    equal = np.ones(n - 1, dtype=bool)
    for key in (owner, time_ns, code):
        ranked = key[order]
        equal &= ranked[1:] == ranked[:-1]
    if not equal.any():
        return duplicate
    candidates = np.unique(np.concatenate([order[1:][equal], order[:-1][equal]]))
    keys = [k[candidates] for k in (owner, time_ns, code.astype(np.int64), *text_keys)]
    within = np.lexsort(keys[::-1])  # stable: input order within equal keys
    same = np.ones(len(candidates) - 1, dtype=bool)
    for key in keys:
        sorted_key = key[within]
        same &= sorted_key[1:] == sorted_key[:-1]
    duplicate[candidates[within[1:][same]]] = True  # every later copy of equal scans
    return duplicate


def _codes(values: pa.Array) -> np.ndarray:
    """Integer codes of Arrow text, equal exactly where the texts are (null: -1)."""
    return (
        pc.fill_null(pc.dictionary_encode(values).indices, -1)
        .to_numpy(zero_copy_only=False)
        .astype(np.int64)
    )


def _text_hash(text: dict[str, pa.Array]) -> np.ndarray:
    """A 64-bit hash of each scan's free text (the columns joined; null distinct from any
    text), computed once per distinct value."""
    columns = [values for values in text.values() if values.null_count < len(values)]
    if not columns:
        return np.zeros(len(next(iter(text.values()))) if text else 0, dtype=np.uint64)
    joined = pc.binary_join_element_wise(
        *columns, "\x1f", null_handling="replace", null_replacement="\x00"
    )
    encoded = pc.dictionary_encode(joined)
    distinct = encoded.dictionary.cast(pa.binary()).to_numpy(zero_copy_only=False)
    hashes = pd.util.hash_array(distinct, categorize=False)
    return hashes[encoded.indices.to_numpy(zero_copy_only=False)]


# --------------------------------------------------------------------------------------
# The per-order table
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HashIndex:
    """Sorted 64-bit hashes of distinct ids and where each id is (see ScanTable.lookup)."""

    hashes: np.ndarray  # sorted uint64
    position: np.ndarray  # the id's index, in the order of ``hashes``
    fallback: pd.Index | None

    @classmethod
    def of(cls, ids: np.ndarray) -> _HashIndex:
        hashes = _id_hashes(ids)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
            return cls(ordered, order, pd.Index(ids))
        return cls(ordered, order, None)

    def get(self, ids: np.ndarray, queries: np.ndarray) -> np.ndarray:
        if self.fallback is not None:
            return self.fallback.get_indexer(queries).astype(np.int64)
        found = np.full(len(queries), -1, dtype=np.int64)
        if len(self.hashes) == 0 or len(queries) == 0:
            return found
        wanted = _id_hashes(queries)
        slot = np.minimum(np.searchsorted(self.hashes, wanted), len(self.hashes) - 1)
        hit = self.hashes[slot] == wanted
        candidate = self.position[slot[hit]]
        same = ids[candidate] == queries[hit]  # confirm: a hash is not an id
        found[np.flatnonzero(hit)[same]] = candidate[same]
        return found


def _id_hashes(ids: np.ndarray) -> np.ndarray:
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)


@dataclass
class ScanTable:
    """Scans packed by order: order ``k``'s scans are rows ``offsets[k]:offsets[k + 1]``,
    sorted by time (same instant: further along the journey last).

    ``day`` is the scan's date as days since 1970-01-01; ``line`` its input line (for
    rejects). ``order_ids[k]`` is order ``k``'s id.
    """

    order_ids: np.ndarray  # (orders,) object
    offsets: np.ndarray  # (orders + 1,) int64
    day: np.ndarray  # (scans,) int64
    code: np.ndarray  # (scans,) int8, index into MILESTONES
    line: np.ndarray  # (scans,) int64
    _index: _HashIndex | None = field(default=None, repr=False, compare=False)
    _prefix: _Prefix | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls) -> ScanTable:
        return cls(
            order_ids=np.empty(0, dtype=object),
            offsets=np.zeros(1, dtype=np.int64),
            day=np.empty(0, dtype=np.int64),
            code=np.empty(0, dtype=np.int8),
            line=np.empty(0, dtype=np.int64),
        )

    @classmethod
    def from_frame(cls, events: pd.DataFrame) -> ScanTable:
        """Pack validated scans (``order_id``, ``event_at``, ``milestone``, ``line``)."""
        if len(events) == 0:
            return cls.empty()
        owner, uniques = pd.factorize(events["order_id"].to_numpy(dtype=object), sort=False)
        code = (
            pd.Series(events["milestone"].to_numpy(dtype=object))
            .map(MILESTONE_CODE)
            .to_numpy(dtype=np.int8)
        )
        line = (
            events["line"].to_numpy(dtype=np.int64)
            if "line" in events
            else np.arange(FIRST_DATA_LINE, FIRST_DATA_LINE + len(events), dtype=np.int64)
        )
        return cls.from_arrays(
            np.asarray(uniques, dtype=object),
            owner.astype(np.int64),
            events["event_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
            code,
            line,
        )

    @classmethod
    def from_arrays(
        cls,
        order_ids: np.ndarray,
        owner: np.ndarray,
        time_ns: np.ndarray,
        code: np.ndarray,
        line: np.ndarray,
        *,
        order: np.ndarray | None = None,
    ) -> ScanTable:
        """Pack scans given as arrays: ``owner`` indexes ``order_ids``, ``time_ns`` is the
        UTC-naive scan time in ns since 1970, ``code`` indexes :data:`MILESTONES`; ``order``
        (the scans to keep, in :func:`_scan_order`'s order) when already known."""
        if order is None:
            order = _scan_order(owner, time_ns, code)
        owner = owner[order]
        return cls(
            order_ids=np.asarray(order_ids, dtype=object),
            offsets=np.searchsorted(owner, np.arange(len(order_ids) + 1)).astype(np.int64),
            day=np.floor_divide(time_ns[order], _DAY_NS),
            code=np.asarray(code, dtype=np.int8)[order],
            line=np.asarray(line, dtype=np.int64)[order],
        )

    @property
    def n_orders(self) -> int:
        return len(self.order_ids)

    @property
    def n_scans(self) -> int:
        return len(self.day)

    def owners(self) -> np.ndarray:
        """The order index of every scan."""
        return np.repeat(np.arange(self.n_orders), np.diff(self.offsets))

    def lookup(self, order_ids: np.ndarray | pd.Series) -> np.ndarray:
        """Index of each id's scans in this table, -1 for an order without any.

        The ids' 64-bit hashes are looked up in the table's sorted hashes (built once), and
        every hit is confirmed by comparing the ids themselves; a table holding two ids with
        one hash (never seen in practice) uses a hash table of the ids instead."""
        ids = np.asarray(order_ids, dtype=object)
        if self._index is None:
            self._index = _HashIndex.of(self.order_ids)
        return self._index.get(self.order_ids, ids)

    def subset(self, keep: np.ndarray) -> ScanTable:
        """The table with only the scans where ``keep`` is true (orders left empty stay)."""
        counts = np.add.reduceat(keep.astype(np.int64), self.offsets[:-1]) if self.n_scans else 0
        counts = np.where(np.diff(self.offsets) > 0, counts, 0)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ScanTable(
            order_ids=self.order_ids,
            offsets=offsets,
            day=self.day[keep],
            code=self.code[keep],
            line=self.line[keep],
            _index=self._index,
        )

    def first_day_of(self, milestone: str) -> np.ndarray:
        """Each order's first scan day of ``milestone`` (a huge sentinel if never)."""
        first = np.full(self.n_orders, _NO_DAY, dtype=np.int64)
        hit = np.flatnonzero(self.code == MILESTONE_CODE[milestone])
        owners = self.owners()[hit]
        # Scans are sorted by order, then time: the first hit of each order is its earliest.
        leads = np.flatnonzero(np.diff(owners, prepend=-1) != 0)
        first[owners[leads]] = self.day[hit[leads]]
        return first

    def __getstate__(self) -> dict[str, object]:
        """Pickles (Dask workers) carry the scans, not the derived index and aggregates."""
        return {**self.__dict__, "_index": None, "_prefix": None}

    def prefix(self) -> _Prefix:
        """Running aggregates per order, computed once per table (scoring reuses them)."""
        if self._prefix is None:
            self._prefix = _Prefix(self)
        return self._prefix


def _scan_order(owner: np.ndarray, time_ns: np.ndarray, code: np.ndarray) -> np.ndarray:
    """The permutation sorting scans by order, time, milestone (then input order).

    Times in whole seconds (the usual case) pack with the order and milestone into one
    int64, sorted once (near-linear on files already grouped by order); anything else
    takes the general three-key sort."""
    n = len(owner)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    seconds, below = np.divmod(time_ns, 10**9)
    first = int(seconds.min())
    span_bits = (int(seconds.max()) - first + 1).bit_length()
    owner_bits = (int(owner.max()) + 1).bit_length()
    if owner_bits + span_bits + 4 > 62 or below.any():
        return np.lexsort((code, time_ns, owner))
    key = (owner.astype(np.int64) << (span_bits + 4)) | ((seconds - first) << 4) | code
    return np.argsort(key, kind="stable")


# --------------------------------------------------------------------------------------
# Checking scans against their orders
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchedEvents:
    """Scans of known orders, dated on or after shipment, and what was left out."""

    table: ScanTable
    rejects: pd.DataFrame  # scans before their order's shipped_at (REJECT_COLUMNS)
    unknown_orders: int  # distinct order ids with scans but no order
    unknown_scans: int  # their scans


def match_events(table: ScanTable, order_ids: np.ndarray, shipped_at: np.ndarray) -> MatchedEvents:
    """Keep the scans of ``order_ids`` dated on or after the order's ``shipped_at`` date.

    A scan dated before its order was shipped is rejected (``event_at``, with the reason);
    scans of orders not among ``order_ids`` are counted, not rejected.
    """
    position = pd.Index(np.asarray(order_ids, dtype=object)).get_indexer(table.order_ids)
    shipped_day = (
        np.asarray(shipped_at, dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)
    )
    owners = table.owners()
    order_of_scan = position[owners]
    known = order_of_scan >= 0
    ship_of_scan = np.where(known, shipped_day[np.maximum(order_of_scan, 0)], 0)
    early = known & (table.day < ship_of_scan)
    rejects = pd.DataFrame(
        {
            "line": table.line[early],
            "order_id": table.order_ids[owners[early]],
            "column": "event_at",
            "reason": _early_reasons(table.day[early], ship_of_scan[early]),
        },
        columns=list(REJECT_COLUMNS),
    )
    unknown_orders = int((position < 0).sum())
    return MatchedEvents(
        table=table.subset(known & ~early),
        rejects=rejects.sort_values("line", kind="stable").reset_index(drop=True),
        unknown_orders=unknown_orders,
        unknown_scans=int((~known).sum()),
    )


@dataclass(frozen=True)
class OrderScans:
    """The scans of one batch of orders (:func:`scans_of_orders`): row ``i`` of the batch is
    order ``i`` of ``table``; ``early_*`` describe the scans left out as dated before their
    order's shipment; ``orders``/``scans`` count the orders of the batch that had scans in the
    source table and those scans (left out ones included)."""

    table: ScanTable
    early_line: np.ndarray
    early_order_id: np.ndarray
    early_reason: np.ndarray
    orders: int
    scans: int


def scans_of_orders(source: ScanTable, order_ids: np.ndarray, shipped_at: np.ndarray) -> OrderScans:
    """The scans of ``order_ids`` (distinct) taken from ``source``, aligned with them, without
    those dated before the order's ``shipped_at`` (reported, as :func:`match_events` does).

    The cost is in proportion to the orders and their scans, not to ``source``: batch
    scoring takes each chunk's scans from the whole file's table this way."""
    order_ids = np.asarray(order_ids, dtype=object)
    n = len(order_ids)
    position = source.lookup(order_ids)
    has = position >= 0
    start = np.where(has, source.offsets[np.maximum(position, 0)], 0)
    count = np.where(has, source.offsets[np.maximum(position, 0) + 1] - start, 0)
    owner = np.repeat(np.arange(n), count)
    first = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    taken = np.repeat(start - first, count) + np.arange(int(count.sum()))
    shipped_day = (
        np.asarray(shipped_at, dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)
    )
    day = source.day[taken]
    early = day < shipped_day[owner]
    kept = ~early
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner[kept], minlength=n))])
    table = ScanTable(
        order_ids=order_ids,
        offsets=offsets.astype(np.int64),
        day=day[kept],
        code=source.code[taken][kept],
        line=source.line[taken][kept],
    )
    early_day, early_owner = day[early], owner[early]
    return OrderScans(
        table=table,
        early_line=source.line[taken][early],
        early_order_id=order_ids[early_owner],
        early_reason=np.asarray(_early_reasons(early_day, shipped_day[early_owner]), dtype=object),
        orders=int(has.sum()),
        scans=int(count.sum()),
    )


def _early_reasons(scan_day: np.ndarray, shipped_day: np.ndarray) -> list[str]:
    """The reject reason of scans dated before their order's shipment (days since 1970)."""
    return [
        f"scan dated {_iso(d)}, before the order's shipped_at ({_iso(s)})"
        for d, s in zip(scan_day, shipped_day, strict=True)
    ]


def _iso(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


# --------------------------------------------------------------------------------------
# The state at a cut-off
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanState:
    """What an order's scans dated on or before a cut-off day show, one entry per row.

    Days are counted from the shipment date. Rows without any such scan have
    ``n_scans == 0``, ``last_milestone == -1`` and NaN elsewhere.
    """

    n_scans: np.ndarray  # int64
    last_milestone: np.ndarray  # int64 code into MILESTONES, -1 without scans
    last_scan_day: np.ndarray  # float64, days after shipment
    days_since_last_scan: np.ndarray  # float64, cut-off minus the last scan's day
    furthest: np.ndarray  # int64: furthest JOURNEY milestone code reached, -1 if none
    failed_attempts: np.ndarray  # int64: delivery_failed scans
    exceptions: np.ndarray  # int64: exception scans
    first_day: dict[str, np.ndarray]  # KEY_MILESTONES -> float64 days after shipment (NaN)
    delivered_day: np.ndarray  # float64: first `delivered` scan, days after shipment (NaN)

    @property
    def has_scans(self) -> np.ndarray:
        return self.n_scans > 0

    @property
    def terminal(self) -> np.ndarray:
        """The latest scan says the parcel leaves the journey (returning, returned, lost)."""
        return np.isin(self.last_milestone, [MILESTONE_CODE[m] for m in TERMINAL_MILESTONES])

    def take(self, rows: np.ndarray) -> ScanState:
        return ScanState(
            n_scans=self.n_scans[rows],
            last_milestone=self.last_milestone[rows],
            last_scan_day=self.last_scan_day[rows],
            days_since_last_scan=self.days_since_last_scan[rows],
            furthest=self.furthest[rows],
            failed_attempts=self.failed_attempts[rows],
            exceptions=self.exceptions[rows],
            first_day={k: v[rows] for k, v in self.first_day.items()},
            delivered_day=self.delivered_day[rows],
        )


class _Prefix:
    """Per-scan running aggregates within each order, computed once per table."""

    def __init__(self, table: ScanTable) -> None:
        owners = table.owners()
        self.base = int(table.day.min()) if table.n_scans else 0
        self.span = int(table.day.max()) - self.base + 2 if table.n_scans else 1
        # Non-decreasing (order, day) key: an order's scans up to a day end where the key of
        # (order, day) would be inserted on the right.
        self.key = owners * self.span + (table.day - self.base)
        journey = np.where(table.code <= MILESTONE_CODE["delivered"], table.code, -1)
        # Running maximum within each order: shift every order above the previous one's.
        shift = (len(MILESTONES) + 1) * owners
        self.furthest = np.maximum.accumulate(journey.astype(np.int64) + 1 + shift) - shift - 1
        self.failed = np.cumsum(table.code == MILESTONE_CODE["delivery_failed"])
        self.exceptions = np.cumsum(table.code == MILESTONE_CODE["exception"])
        self.first = {name: table.first_day_of(name) for name in KEY_MILESTONES}
        self.delivered = table.first_day_of("delivered")


def scan_state(
    table: ScanTable,
    order_index: np.ndarray,
    shipped_day: np.ndarray,
    cutoff_day: np.ndarray,
) -> ScanState:
    """The state of each row's order from its scans dated on or before ``cutoff_day``.

    ``order_index`` indexes ``table`` (-1: no scans at all); ``shipped_day`` and
    ``cutoff_day`` are days since 1970-01-01. Only scans with ``day <= cutoff_day`` are read;
    this is the single place scans become model input.
    """
    prefix = table.prefix()
    k = np.asarray(order_index, dtype=np.int64)
    shipped_day = np.asarray(shipped_day, dtype=np.int64)
    cutoff_day = np.asarray(cutoff_day, dtype=np.int64)
    has = k >= 0
    safe_k = np.where(has, k, 0)
    start = np.where(has, table.offsets[safe_k], 0) if table.n_orders else np.zeros_like(k)
    if table.n_scans:
        relative_cutoff = np.clip(cutoff_day - prefix.base, -1, prefix.span - 1)
        end = np.searchsorted(prefix.key, safe_k * prefix.span + relative_cutoff, side="right")
        end = np.where(has & (relative_cutoff >= 0), np.maximum(end, start), start)
    else:
        end = start
    count = end - start
    seen = count > 0
    last = np.where(seen, end - 1, 0)

    def at_last(values: np.ndarray, fill: float) -> np.ndarray:
        if not table.n_scans:
            return np.full(len(k), fill)
        return np.where(seen, values[last], fill)

    def before_start(running: np.ndarray) -> np.ndarray:
        if not table.n_scans:
            return np.zeros(len(k), dtype=np.int64)
        return np.where(start > 0, running[np.maximum(start - 1, 0)], 0)

    last_day = at_last(table.day.astype(np.float64), np.nan)
    first_day = {}
    for name, days in prefix.first.items():
        day = days[safe_k] if table.n_orders else np.full(len(k), _NO_DAY)
        first_day[name] = np.where(has & (day <= cutoff_day), day - shipped_day, np.nan)
    delivered = prefix.delivered[safe_k] if table.n_orders else np.full(len(k), _NO_DAY)
    return ScanState(
        n_scans=count.astype(np.int64),
        last_milestone=at_last(table.code.astype(np.int64), -1).astype(np.int64),
        last_scan_day=last_day - shipped_day,
        days_since_last_scan=cutoff_day - last_day,
        furthest=at_last(prefix.furthest, -1).astype(np.int64),
        failed_attempts=np.where(seen, at_last(prefix.failed, 0) - before_start(prefix.failed), 0),
        exceptions=np.where(
            seen, at_last(prefix.exceptions, 0) - before_start(prefix.exceptions), 0
        ),
        first_day=first_day,
        delivered_day=np.where(
            has & (delivered <= cutoff_day), delivered - shipped_day, np.nan
        ).astype(np.float64),
    )
