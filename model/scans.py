"""The scan-aware model: ``P(T > e + h | T > e, lane, scans seen by day e)`` by landmarking.

For every history parcel with scans we take a few *landmark* days ``e`` at which it was still
undelivered (the days a decision is taken: the last days before its deadline, and before the
deadline after each extension; plus random days), read its state from its scans dated on or
before ``e`` only (:func:`model.events.scan_state`), and ask whether it was still undelivered
``h`` days later. A gradient-boosted classifier learns that probability from the state, the
lane, ``e`` and ``h``, and three priors: the lane-only hazard model's own answer,
and two censoring-aware curves per lane of how long delivery takes after a scan of the last
milestone and after shipment (rare lanes borrow from their method and from all lanes).

Censoring: a row is used only when its outcome at ``e + h`` was known at the cut-off whatever
the parcel did (``e + h`` on or before it), so undelivered parcels are neither late nor
dropped and the sample is not tilted toward quick deliveries. The probability is monotone
(non-increasing) in ``h`` and non-decreasing in the hazard prior by constraint, so
``P(T > d + 30) <= P(T > d)`` always holds.

The same tables give the ``stalled`` signal: how long a lane usually stays silent after each
milestone (the gap to the next scan, among parcels that went on), with rare lanes pooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from model.events import (
    KEY_MILESTONES,
    MILESTONES,
    ScanState,
    ScanTable,
    scan_state,
)
from model.features import EncodedFeatures, days_between
from model.hazard import allowed_threads, interrupts_held
from model.params import Params

__all__ = ["PARALLEL_ROWS", "LandmarkScanModel", "ScanGaps", "TooFewTrackedParcels", "state_at"]

PARALLEL_ROWS = 20_000  # predictions on the allowed threads from this many design rows


class TooFewTrackedParcels(ValueError):
    """The history has too few parcels with scans to learn what scans say."""


_EPS = 1e-6
_MIN_GAPS = 30  # gaps a (lane, milestone) needs for its own silence statistics
SHIPPED = len(MILESTONES)
"""The anchor code of an order without any scan yet: time counts from its shipment."""
ANCHORS = len(MILESTONES) + 1
"""Anchor codes: a milestone (the last scan's), or :data:`SHIPPED`."""


def anchor_of(state: ScanState, elapsed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(anchor code, days since the anchor) per row: the last scan, or the shipment when
    the order has no scan yet."""
    has = state.has_scans
    anchor = np.where(has, state.last_milestone, SHIPPED)
    since = np.where(has, state.days_since_last_scan, np.asarray(elapsed, dtype=np.float64))
    return anchor, since


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.minimum(np.maximum(np.asarray(p, dtype=np.float64), _EPS), 1 - _EPS)  # (np.clip: slower)
    return np.log(p) - np.log1p(-p)


def _days(values: np.ndarray | pd.Series) -> np.ndarray:
    """Dates as days since 1970-01-01 (int64)."""
    return np.asarray(values, dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def state_at(
    table: ScanTable,
    order_ids: np.ndarray,
    shipped_at: np.ndarray,
    cutoff_day: np.ndarray,
    rows: np.ndarray | None = None,
) -> ScanState:
    """:func:`model.events.scan_state` of orders given by id (or, with ``rows``, by their
    index in ``table``) and shipment date."""
    index = table.lookup(order_ids) if rows is None else rows
    return scan_state(table, index, _days(shipped_at), cutoff_day)


@dataclass(frozen=True)
class _Anchored:
    """Every parcel's anchors in time order: its shipment (code :data:`SHIPPED`) and its
    scans; ``parcel`` indexes the history frame, ``day`` is days since 1970-01-01."""

    parcel: np.ndarray
    day: np.ndarray
    code: np.ndarray


def _anchored_scans(scans: ScanTable, order_index: np.ndarray, ship_day: np.ndarray) -> _Anchored:
    parcel_of_order = np.full(scans.n_orders, -1, dtype=np.int64)
    tracked = np.flatnonzero(order_index >= 0)
    parcel_of_order[order_index[tracked]] = tracked
    owner = parcel_of_order[scans.owners()]
    mine = owner >= 0
    n = len(ship_day)
    parcel = np.concatenate([np.arange(n), owner[mine]])
    day = np.concatenate([ship_day, scans.day[mine]]).astype(np.int64)
    code = np.concatenate([np.full(n, SHIPPED), scans.code[mine].astype(np.int64)])
    # Stable by parcel then day; the shipment first on its day (it precedes any scan).
    order = np.lexsort((code != SHIPPED, day, parcel))
    return _Anchored(parcel=parcel[order], day=day[order], code=code[order])


@dataclass(frozen=True)
class ScanGaps:
    """How many days a lane usually stays silent after each milestone (or after shipment,
    until the first scan) before the next scan.

    ``median`` and ``stall`` have shape (country codes, :data:`ANCHORS`); rows of pooled or
    rare lanes hold the all-lanes figure of the milestone.
    """

    median: np.ndarray
    stall: np.ndarray

    @classmethod
    def fit(
        cls,
        gap: np.ndarray,
        milestone: np.ndarray,
        country: np.ndarray,
        n_countries: int,
        *,
        quantile: float,
        factor: float,
        min_days: float,
    ) -> ScanGaps:
        """From observed gaps (days from a scan, or from shipment, to the parcel's next
        scan), by the anchor's milestone code (:data:`ANCHORS`) and the country code."""
        gap = np.asarray(gap, dtype=np.float64)
        overall_median = float(np.median(gap)) if len(gap) else 3.0
        overall_q = float(np.quantile(gap, quantile)) if len(gap) else 10.0
        median = np.full((n_countries, ANCHORS), overall_median)
        stall_q = np.full((n_countries, ANCHORS), overall_q)
        frame = pd.DataFrame({"country": country, "milestone": milestone, "gap": gap})
        by_milestone = frame.groupby("milestone")["gap"]
        counts = by_milestone.size()
        for code, values in by_milestone:
            if counts[code] >= _MIN_GAPS:
                median[:, int(code)] = float(values.median())
                stall_q[:, int(code)] = float(values.quantile(quantile))
        grouped = frame.groupby(["country", "milestone"])["gap"]
        sizes = grouped.size()
        big = sizes[sizes >= _MIN_GAPS].index
        if len(big):
            stats = grouped.agg(["median", lambda v: v.quantile(quantile)]).loc[big]
            rows = np.array([c for c, _ in big], dtype=np.int64)
            cols = np.array([m for _, m in big], dtype=np.int64)
            keep = (rows > 0) & (rows < n_countries)  # code 0 is the pool, not a lane
            median[rows[keep], cols[keep]] = stats.iloc[:, 0].to_numpy()[keep]
            stall_q[rows[keep], cols[keep]] = stats.iloc[:, 1].to_numpy()[keep]
        return cls(median=np.maximum(median, 1.0), stall=np.maximum(factor * stall_q, min_days))

    def lookup(self, table: np.ndarray, country: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        country = np.clip(np.asarray(country, dtype=np.int64), 0, table.shape[0] - 1)
        return table[country, np.asarray(anchor, dtype=np.int64)]


@dataclass(frozen=True)
class MilestoneResidual:
    """How long delivery takes after a scan of each milestone (and after shipment, the
    anchor :data:`SHIPPED`), per lane: a censoring-aware
    daily hazard of "delivered ``u`` days after the scan", shrunk toward the method's and
    then the milestone's all-lanes hazard (``prior`` parcels' worth), as survival curves.

    ``curves[key]`` is ``P(delivered more than u days after the scan)`` for u = 0..horizon-1,
    ``key`` from :meth:`key`; a parcel lost after the scan never is.
    """

    curves: np.ndarray  # (keys, horizon)
    n_countries: int
    n_methods: int

    @staticmethod
    def _keys(n_methods: int, country: np.ndarray, method: np.ndarray, milestone: np.ndarray):
        return (country * n_methods + method) * ANCHORS + milestone

    def key(self, country: np.ndarray, method: np.ndarray, milestone: np.ndarray) -> np.ndarray:
        country = np.clip(np.asarray(country, dtype=np.int64), 0, self.n_countries - 1)
        method = np.clip(np.asarray(method, dtype=np.int64), 0, self.n_methods - 1)
        milestone = np.clip(np.asarray(milestone, dtype=np.int64), 0, ANCHORS - 1)
        return self._keys(self.n_methods, country, method, milestone)

    @classmethod
    def fit(
        cls,
        scan_day: np.ndarray,
        milestone: np.ndarray,
        country: np.ndarray,
        method: np.ndarray,
        delivered_day: np.ndarray,
        cutoff_day: np.ndarray,
        *,
        n_countries: int,
        n_methods: int,
        horizon: int = 256,
        prior: float = 20.0,
    ) -> MilestoneResidual:
        """One entry per scan: its day, milestone and lane, the parcel's delivery day (NaN if
        not delivered by the cut-off) and the cut-off day."""
        delivered = np.isfinite(delivered_day)
        end = np.where(delivered, delivered_day, cutoff_day)
        duration = np.clip((end - scan_day).astype(np.int64), 0, horizon - 1)
        event = delivered & ((end - scan_day) < horizon)
        n_m = ANCHORS

        def counts(group: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
            """(deliveries, parcels at risk) per group and day after the scan."""
            flat = group * horizon + duration
            events = np.bincount(flat[event], minlength=size * horizon).reshape(size, horizon)
            leaving = np.bincount(flat, minlength=size * horizon).reshape(size, horizon)
            at_risk = leaving[:, ::-1].cumsum(axis=1)[:, ::-1]  # still waiting at day u
            return events.astype(np.float64), at_risk.astype(np.float64)

        all_events, all_risk = counts(milestone, n_m)
        base = all_events / np.maximum(all_risk, 1.0)
        by_method = method * n_m + milestone
        m_events, m_risk = counts(by_method, n_methods * n_m)
        method_hazard = (m_events + prior * np.tile(base, (n_methods, 1))) / (m_risk + prior)
        lane = cls._keys(n_methods, country, method, milestone)
        l_events, l_risk = counts(lane, n_countries * n_methods * n_m)
        lane_hazard = (l_events + prior * np.tile(method_hazard, (n_countries, 1))) / (
            l_risk + prior
        )
        hazard = np.clip(lane_hazard, 0.0, 1.0 - 1e-9)
        curves = np.exp(np.cumsum(np.log1p(-hazard), axis=1)).astype(np.float32)
        return cls(curves=curves, n_countries=n_countries, n_methods=n_methods)

    def conditional(self, key: np.ndarray, waited: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        """``P(delivered more than waited + ahead days after the scan | not by waited)``."""
        last = self.curves.shape[1] - 1
        waited = np.clip(np.asarray(waited, dtype=np.int64), 0, last)
        later = np.clip(waited + np.asarray(ahead, dtype=np.int64), 0, last)
        now = self.curves[key, waited].astype(np.float64)
        return np.clip(self.curves[key, later] / np.maximum(now, 1e-12), 0.0, 1.0)


FEATURES = (
    "country",
    "method",
    "last_milestone",
    "furthest",
    "elapsed",
    "horizon",
    "hazard_logit",
    "milestone_logit",
    "shipment_logit",
    "relative_time",
    "days_since_last_scan",
    "relative_silence",
    "n_scans",
    *(f"first_{name}" for name in KEY_MILESTONES),
    "failed_attempts",
    "exceptions",
)
MONOTONE_PRIORS: frozenset[str] = frozenset({"hazard_logit"})
"""Inputs the probability may only rise with. The hazard model's own answer is one (with
the horizon's constraint, P(T > d + 30) <= P(T > d) holds by construction); the two
scan-anchored priors are not: silence bends their relation to the truth."""
CATEGORICAL = frozenset({"country", "method", "last_milestone"})
FEATURE_TYPES = ["c" if name in CATEGORICAL else "q" for name in FEATURES]


class LandmarkScanModel(Params):
    """Gradient-boosted landmark model of the remaining transit given the scans so far.

    The trees are XGBoost's: scoring a million orders means two million predictions, and its
    predictor is several times faster than scikit-learn's for the same trees (measured in
    ``bench/RESULTS.md``), with the same monotone and categorical support.

    Parameters are stored as given (scikit-learn convention); fitted attributes end in ``_``.
    Lane and season codes come from a fitted :class:`model.hazard.DiscreteTimeHazard`.
    """

    def __init__(
        self,
        *,
        max_rows: int = 300_000,
        random_landmarks: int = 6,
        decision_days: int = 5,
        extension_days: int = 30,
        extensions: int = 2,
        learning_rate: float = 0.2,
        max_iter: int = 60,
        max_leaf_nodes: int = 31,
        min_child_weight: float = 20.0,
        l2_regularization: float = 1.0,
        stall_quantile: float = 0.95,
        stall_factor: float = 1.5,
        stall_min_days: float = 7.0,
        min_parcels: int = 200,
        random_state: int = 0,
    ) -> None:
        self.max_rows = max_rows
        self.random_landmarks = random_landmarks
        self.decision_days = decision_days
        self.extension_days = extension_days
        self.extensions = extensions
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_child_weight = min_child_weight
        self.l2_regularization = l2_regularization
        self.stall_quantile = stall_quantile
        self.stall_factor = stall_factor
        self.stall_min_days = stall_min_days
        self.min_parcels = min_parcels
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------
    def fit(
        self, history: pd.DataFrame, scans: ScanTable, as_of: date, hazard: object
    ) -> LandmarkScanModel:
        """Fit on validated history and its scans as known at ``as_of`` (later scans, and
        parcels shipped later, are not looked at). ``hazard`` is the lane-only model fitted
        at the same cut-off: its encoder gives the lane and season codes."""
        rng = np.random.default_rng(self.random_state)
        cutoff = int(np.datetime64(as_of, "D").astype(np.int64))
        scans = scans.subset(scans.day <= cutoff)
        known = history.loc[history["shipped_at"] <= pd.Timestamp(as_of)].reset_index(drop=True)
        encoder = hazard.encoder_  # type: ignore[attr-defined]
        features = encoder.transform(known)
        names = encoder.feature_names
        self.hazard_names_ = list(names)
        country = features.codes[:, names.index("country")]
        self.n_countries_ = int(encoder.radices[names.index("country")])
        self.n_methods_ = int(encoder.radices[names.index("method")])

        order_index = scans.lookup(known["order_id"].to_numpy(dtype=object))
        tracked = np.flatnonzero(order_index >= 0)
        self.n_tracked_parcels_ = len(tracked)
        if len(tracked) < self.min_parcels:
            raise TooFewTrackedParcels(
                f"{len(tracked)} history parcels have scans; at least {self.min_parcels}"
                " are needed to learn from scans"
            )
        ship_day = _days(known["shipped_at"].to_numpy())
        anchors = _anchored_scans(scans, order_index, ship_day)
        self.gaps_ = self._fit_gaps(anchors, country)
        self.residual_ = self._fit_residual(known, anchors, features, cutoff)

        rows = self._landmarks(known, cutoff, rng)
        parcel = rows["parcel"]
        state = scan_state(
            scans, order_index[parcel], ship_day[parcel], ship_day[parcel] + rows["elapsed"]
        )
        # A landmark is a decision the advisor would take with scans in hand: with no scan
        # yet (the lane model answers then) or a delivered scan (it is delivered) it is not.
        usable = state.has_scans & np.isnan(state.delivered_day)
        parcel, state = parcel[usable], state.take(np.flatnonzero(usable))
        elapsed, horizon, label = (rows[k][usable] for k in ("elapsed", "horizon", "label"))
        if len(label) > self.max_rows:
            keep = np.sort(rng.choice(len(label), size=self.max_rows, replace=False))
            parcel, state = parcel[keep], state.take(keep)
            elapsed, horizon, label = elapsed[keep], horizon[keep], label[keep]
        lanes = features.take(parcel)
        prior = hazard.conditional_survival(  # type: ignore[attr-defined]
            lanes, elapsed, (elapsed + horizon)[:, None]
        )[:, 0]
        X = self._design(lanes, state, elapsed, horizon, prior, hazard)
        monotone = [
            -1 if name == "horizon" else 1 if name in MONOTONE_PRIORS else 0 for name in FEATURES
        ]
        params = {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "grow_policy": "lossguide",
            "max_depth": 0,
            "max_leaves": self.max_leaf_nodes,
            "eta": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "lambda": self.l2_regularization,
            "max_cat_to_onehot": 1,  # partition splits over categories, as one-hot would not
            "monotone_constraints": "(" + ",".join(map(str, monotone)) + ")",
            "nthread": 1,  # deterministic, and the callers' threads already use the cores
            "seed": self.random_state,
        }
        import xgboost as xgb

        data = xgb.DMatrix(
            X, label=label, feature_types=FEATURE_TYPES, enable_categorical=True, nthread=1
        )
        self.booster_ = xgb.train(params, data, num_boost_round=self.max_iter)
        self.n_landmark_rows_ = len(label)
        self.positive_rate_ = float(label.mean()) if len(label) else 0.0
        return self

    def _fit_gaps(self, anchors: _Anchored, country: np.ndarray) -> ScanGaps:
        """Days from each anchor (a scan, or the shipment) to the parcel's next scan."""
        follows = np.flatnonzero(anchors.parcel[1:] == anchors.parcel[:-1])
        return ScanGaps.fit(
            anchors.day[follows + 1] - anchors.day[follows],
            anchors.code[follows],
            country[anchors.parcel[follows]],
            self.n_countries_,
            quantile=self.stall_quantile,
            factor=self.stall_factor,
            min_days=self.stall_min_days,
        )

    def _fit_residual(
        self, known: pd.DataFrame, anchors: _Anchored, features: EncodedFeatures, cutoff: int
    ) -> MilestoneResidual:
        """Delivery time after each anchor of the history (its scans, and every parcel's
        shipment), per lane."""
        names = self.hazard_names_
        delivered = known["delivered_at"].to_numpy(dtype="datetime64[ns]")
        day = delivered.astype("datetime64[D]").astype(np.int64).astype(np.float64)
        delivered_day = np.where(~np.isnat(delivered) & (day <= cutoff), day, np.nan)
        owner = anchors.parcel
        return MilestoneResidual.fit(
            anchors.day,
            anchors.code,
            features.codes[owner, names.index("country")],
            features.codes[owner, names.index("method")],
            delivered_day[owner],
            np.full(len(owner), cutoff),
            n_countries=self.n_countries_,
            n_methods=self.n_methods_,
        )

    def _landmarks(
        self, parcels: pd.DataFrame, cutoff: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """(parcel, elapsed, horizon, label) rows whose outcome at ``elapsed + horizon`` was
        known at the cut-off whatever the parcel did, the parcel undelivered at ``elapsed``."""
        ship = _days(parcels["shipped_at"].to_numpy())
        deadline = days_between(parcels["deadline"], parcels["shipped_at"])
        delivered = parcels["delivered_at"].to_numpy(dtype="datetime64[ns]")
        transit = days_between(parcels["delivered_at"], parcels["shipped_at"])
        arrived = ~np.isnat(delivered) & (_days(delivered) <= cutoff)
        observed = cutoff - ship  # days known after shipment
        # Still undelivered at the end of day e  <=>  e < transit (delivered) / e <= observed.
        last_landmark = np.where(arrived, transit - 1, observed)
        n = len(parcels)
        index = np.arange(n)
        parcel_parts, elapsed_parts, horizon_parts = [], [], []

        def add(e: np.ndarray, h: np.ndarray, who: np.ndarray) -> None:
            parcel_parts.append(who)
            elapsed_parts.append(e)
            horizon_parts.append(h)

        ext = self.extension_days
        for before in range(self.decision_days):  # the days a decision is taken
            for shift in range(0, ext * self.extensions + 1, ext):  # before each extension
                e = deadline + shift - before
                h = before
                add(e, np.full(n, h), index)
                add(e, np.full(n, h + ext), index)
        # Random landmarks are drawn over a span that does not depend on when the parcel
        # arrived (its window and the extensions after it, within what was observed), then
        # kept only while it was undelivered. Drawing within the parcel's own time in transit
        # instead would thin out slow parcels at every day and bias the estimate toward
        # early delivery.
        last_decision = deadline + ext * self.extensions + self.decision_days
        span = np.maximum(np.minimum(last_decision, observed), 0) + 1
        for _ in range(self.random_landmarks):
            e = np.floor(rng.random(n) * span).astype(np.int64)
            add(e, rng.integers(1, 11, size=n), index)
            add(e, rng.integers(1, 91, size=n), index)
            add(e, np.maximum(deadline - e, 1), index)
            add(e, np.maximum(deadline - e, 1) + ext, index)
        who = np.concatenate(parcel_parts)
        elapsed = np.concatenate(elapsed_parts).astype(np.int64)
        horizon = np.concatenate(horizon_parts).astype(np.int64)
        ok = (
            (elapsed >= 0)
            & (horizon >= 1)
            & (elapsed <= last_landmark[who])
            & (elapsed + horizon <= observed[who])
        )
        who, elapsed, horizon = who[ok], elapsed[ok], horizon[ok]
        label = ~arrived[who] | (transit[who] > elapsed + horizon)
        return {"parcel": who, "elapsed": elapsed, "horizon": horizon, "label": label}

    def _design(
        self,
        lanes: EncodedFeatures,
        state: ScanState,
        elapsed: np.ndarray,
        horizon: np.ndarray,
        prior: np.ndarray,
        hazard: object,
    ) -> np.ndarray:
        names = hazard.encoder_.feature_names  # type: ignore[attr-defined]
        country = lanes.codes[:, names.index("country")]
        method = lanes.codes[:, names.index("method")]
        typical = hazard.typical_transit_[country, method]  # type: ignore[attr-defined]
        anchor, since = anchor_of(state, elapsed)
        median_gap = self.gaps_.lookup(self.gaps_.median, country, anchor)
        after_anchor = self.residual_.conditional(
            self.residual_.key(country, method, anchor), since, horizon
        )
        columns = {
            "country": country,
            "method": method,
            "last_milestone": anchor,
            "furthest": state.furthest,
            "elapsed": elapsed,
            "horizon": horizon,
            "hazard_logit": _logit(prior),
            "milestone_logit": _logit(after_anchor),
            "shipment_logit": _logit(
                self.residual_.conditional(
                    self.residual_.key(country, method, np.full(len(country), SHIPPED)),
                    elapsed,
                    horizon,
                )
            ),
            "relative_time": elapsed / np.maximum(typical, 1.0),
            "days_since_last_scan": since,
            "relative_silence": since / median_gap,
            "n_scans": state.n_scans,
            # -1: not scanned (yet); a sentinel below every real day, never an all-NaN column.
            **{
                f"first_{name}": np.nan_to_num(state.first_day[name], nan=-1.0)
                for name in KEY_MILESTONES
            },
            "failed_attempts": state.failed_attempts,
            "exceptions": state.exceptions,
        }
        return np.column_stack([columns[name] for name in FEATURES]).astype(np.float32)

    # -- prediction ----------------------------------------------------------------------
    def predict(
        self,
        lanes: EncodedFeatures,
        state: ScanState,
        elapsed: np.ndarray,
        horizons: np.ndarray,
        hazard: object,
    ) -> np.ndarray:
        """``P(T > horizons[i, j] | T > elapsed[i], scans)`` per row (rows with scans).
        ``lanes`` are the rows' encoded features; horizons at or before ``elapsed`` give 1."""
        elapsed = np.asarray(elapsed, dtype=np.int64)
        horizons = np.asarray(horizons, dtype=np.int64)
        n, k = horizons.shape
        if n == 0:
            return np.zeros((0, k))
        prior = hazard.conditional_survival(lanes, elapsed, horizons)  # type: ignore[attr-defined]
        ahead = np.maximum(horizons - elapsed[:, None], 0)
        blocks = [
            self._design(lanes, state, elapsed, ahead[:, j], prior[:, j], hazard) for j in range(k)
        ]
        design = np.concatenate(blocks)
        p = np.asarray(self._booster(len(design)).inplace_predict(design), dtype=np.float64)
        p = p.reshape(k, n).T
        return np.where(ahead <= 0, 1.0, p)

    # -- persistence ---------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the trees in XGBoost's own model format (UBJSON, not a pickle), so
        loading an artifact imports xgboost only when scans are first scored."""
        state = dict(self.__dict__)
        booster = state.pop("booster_", None)
        for name in [key for key in state if key.endswith("_threads_")]:
            state.pop(name)  # the threaded copies of the same trees
        if booster is not None:
            state["booster_raw_"] = bytes(booster.save_raw(raw_format="ubj"))
        return state

    def _booster(self, rows: int = 0) -> Any:
        """The trees, on one thread, or on up to :func:`model.hazard.allowed_threads` for
        ``rows`` >= :data:`PARALLEL_ROWS` (the batch engine allows every core; rows are
        independent, so results do not change). Elsewhere one thread: OpenMP threads of
        several processes sharing the cores wait on each other at every barrier."""
        threads = allowed_threads() if rows >= PARALLEL_ROWS else 1
        name = "booster_" if threads == 1 else f"booster_{threads}_threads_"
        booster = self.__dict__.get(name)
        if booster is None:
            with interrupts_held():  # xgboost imports SciPy, like scikit-learn
                import xgboost as xgb

                raw = self.__dict__.get("booster_raw_")
                if raw is None:  # fitted here, never pickled
                    raw = bytes(self.booster_.save_raw(raw_format="ubj"))
                booster = xgb.Booster(params={"nthread": threads})
                booster.load_model(bytearray(raw))
                self.__dict__[name] = booster
        return booster

    def stalled(self, lanes: EncodedFeatures, state: ScanState, hazard: object) -> np.ndarray:
        """No scan for far longer than this lane usually stays silent after the last one."""
        names = hazard.encoder_.feature_names  # type: ignore[attr-defined]
        country = lanes.codes[:, names.index("country")]
        limit = self.gaps_.lookup(
            self.gaps_.stall, country, np.where(state.has_scans, state.last_milestone, SHIPPED)
        )
        return state.has_scans & (state.days_since_last_scan > limit)
