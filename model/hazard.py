"""A discrete-time hazard model of transit time, censoring-aware, built on scikit-learn.

The question is ``P(T > d | T > e)``: the parcel has travelled ``e`` days undelivered; will it
arrive after day ``d``? ``T`` is whole days from shipment to delivery (infinite when lost).
We learn the daily hazard ``h(t | x) = P(T = t | T >= t, x)`` with a gradient-boosted
classifier on person-period rows (one row per shipment per day at risk), so parcels not
delivered by the cut-off contribute their days at risk and are neither late nor dropped.
Then ``S(t) = prod_{u <= t} (1 - h(u))`` and ``P(T > d | T > e) = S(d) / S(e)``.

Non-event rows are subsampled with inverse-probability weights, which keeps the fit
unbiased and its cost bounded whatever the history length. Because every feature is
discrete, a row's curve depends only on its curve key; curves are computed once per key
and cached, so prediction is a table lookup.
"""

from __future__ import annotations

import pickle
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from model.features import (
    SEASON_FEATURES,
    SHARED_FEATURES,
    EncodedFeatures,
    FeatureEncoder,
    days_between,
)
from model.params import Params

__all__ = [
    "DiscreteTimeHazard",
    "allowed_threads",
    "bucket_start",
    "interrupts_held",
    "observed_durations",
    "openmp_threads",
    "table_threads",
    "time_bucket",
]

# Threads for computing many logit tables at once (see table_threads); 1 unless a caller
# that knows the cores are free says otherwise.
_TABLE_THREADS: ContextVar[int] = ContextVar("table_threads", default=1)
_ROWS_PER_TABLE_THREAD = 50_000
# OpenMP threads per prediction (see openmp_threads); None: the runtime's own default.
_OPENMP_THREADS: ContextVar[int | None] = ContextVar("openmp_threads", default=None)


@contextmanager
def table_threads(threads: int) -> Iterator[None]:
    """While the block runs (in this thread), large batches of logit tables are computed in
    up to ``threads`` threads, each with one OpenMP thread (the trees release the GIL). The
    values are the same: each row's prediction does not depend on the others."""
    token = _TABLE_THREADS.set(max(1, threads))
    try:
        yield
    finally:
        _TABLE_THREADS.reset(token)


@contextmanager
def openmp_threads(threads: int) -> Iterator[None]:
    """While the block runs (in this thread), the classifier predicts with at most
    ``threads`` OpenMP threads. Unlike a ``threadpool_limits`` block entered beforehand, this
    also holds for scikit-learn's OpenMP runtime when it loads inside the block (the
    classifier is unpickled on first use): the count goes with each prediction. Idle OpenMP
    threads spin, and beside the batch engine's reader and writer threads they cost it ~20%
    of its CPU time."""
    token = _OPENMP_THREADS.set(max(1, threads))
    try:
        yield
    finally:
        _OPENMP_THREADS.reset(token)


def allowed_threads() -> int:
    """The threads :func:`table_threads` allows here (1 unless a caller said otherwise)."""
    return _TABLE_THREADS.get()


def time_bucket(day: np.ndarray) -> np.ndarray:
    """The model's time feature: daily to day 60, then 2-day, then 4-day buckets.

    The hazard is taken as constant inside a bucket, so a curve needs one prediction per
    bucket rather than per day.
    """
    day = np.asarray(day, dtype=np.int64)
    return np.where(day < 60, day, np.where(day < 120, 60 + (day - 60) // 2, 90 + (day - 120) // 4))


def bucket_start(bucket: np.ndarray) -> np.ndarray:
    """First day of each time bucket (inverse of :func:`time_bucket` on bucket starts)."""
    bucket = np.asarray(bucket, dtype=np.int64)
    return np.where(
        bucket < 60, bucket, np.where(bucket < 90, 60 + (bucket - 60) * 2, 120 + (bucket - 90) * 4)
    )


def fitted_column_groups(groups: list[list[int]], categorical: list[bool]) -> list[list[int]]:
    """``interaction_cst`` groups renumbered to the column order the trees are grown on.

    With categorical features, ``HistGradientBoostingClassifier`` moves the categorical
    columns first before growing trees, and (scikit-learn 1.9) remaps ``monotonic_cst`` but
    not ``interaction_cst``. Without this renumbering the constraints land on other features
    and the lane/season decomposition of the curves is no longer exact.
    """
    order = [i for i, c in enumerate(categorical) if c] + [
        i for i, c in enumerate(categorical) if not c
    ]
    position = {column: k for k, column in enumerate(order)}
    return [sorted(position[i] for i in group) for group in groups]


RELATIVE_STEPS = 4  # relative-time bins per typical transit time
RELATIVE_MAX = 63


def observed_durations(history: pd.DataFrame, as_of: date) -> tuple[np.ndarray, np.ndarray]:
    """Days observed and whether delivery was seen, with everything censored at ``as_of``.

    A parcel delivered on or before ``as_of`` has ``duration = T`` and ``event = True``;
    any other parcel is known only to satisfy ``T > as_of - shipped_at``.
    """
    cutoff = np.datetime64(pd.Timestamp(as_of).to_datetime64(), "ns")
    delivered = history["delivered_at"].to_numpy(dtype="datetime64[ns]")
    event = ~np.isnat(delivered) & (delivered <= cutoff)
    transit = days_between(history["delivered_at"], history["shipped_at"])
    censor = days_between(np.full(len(history), cutoff), history["shipped_at"])
    return np.where(event, transit, censor), event


class DiscreteTimeHazard(Params):
    """Gradient-boosted daily hazard with pooled categories and cached survival curves.

    Parameters are stored as given (scikit-learn convention); fitted attributes end in ``_``.
    The classifier is scikit-learn's; a pickled model carries it as bytes, unpickled the
    first time a logit table is missing, and carries the tables of every lane, season and
    base sub-key of its training history and, within ``max_shipped_tables``, of every
    plausible one (:meth:`ship_training_tables`), so scoring rarely imports scikit-learn.
    """

    def __init__(
        self,
        *,
        horizon_days: int = 256,
        max_person_days: int = 1_200_000,
        learning_rate: float = 0.1,
        max_iter: int = 200,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 200,
        l2_regularization: float = 1.0,
        min_shipments: int = 30,
        country_mask_rate: float = 0.05,
        region_mask_rate: float = 0.25,
        cache_size: int = 50_000,
        max_shipped_tables: int = 40_000,
        random_state: int = 0,
    ) -> None:
        self.horizon_days = horizon_days
        self.max_person_days = max_person_days
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.min_shipments = min_shipments
        self.country_mask_rate = country_mask_rate
        self.region_mask_rate = region_mask_rate
        self.cache_size = cache_size
        self.max_shipped_tables = max_shipped_tables
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------
    def fit(self, history: pd.DataFrame, as_of: date) -> DiscreteTimeHazard:
        """Fit on a validated history frame, treating ``as_of`` as the end of knowledge."""
        rng = np.random.default_rng(self.random_state)
        known = history.loc[history["shipped_at"] <= pd.Timestamp(as_of)]
        if known.empty:
            raise ValueError("no shipments on or before as_of to learn from")
        self.encoder_ = FeatureEncoder(min_shipments=self.min_shipments).fit(known)
        codes = self.encoder_.transform(known).codes.copy()
        self._mask_for_pooling(codes, rng)
        duration, event = observed_durations(known, as_of)
        self.typical_transit_ = self._typical_transit(codes, duration, event)
        X, y, w = self._person_days(codes, duration, event, rng)
        names = ["time", "relative_time", *self.encoder_.feature_names]
        lane_names = ("time", "relative_time", *self.encoder_.lane_features)
        lane = [names.index(n) for n in lane_names]
        season = [names.index(n) for n in ("time", *SHARED_FEATURES, *SEASON_FEATURES)]
        categorical = [False, False, *self.encoder_.categorical]
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.classifier_ = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            categorical_features=categorical,
            # Lane and season effects are additive on the logit scale given time, country and
            # method: curves then combine from small per-lane and per-season tables.
            interaction_cst=fitted_column_groups([lane, season], categorical),
            early_stopping=False,
            random_state=self.random_state,
        )
        self.classifier_.fit(X, y, sample_weight=w)
        self.n_shipments_ = len(known)
        self.n_person_days_ = len(y)
        self.n_events_ = int(event.sum())
        self._reset_cache()
        return self

    def ship_training_tables(self, history: pd.DataFrame, as_of: date) -> DiscreteTimeHazard:
        """Compute the logit tables a saved model carries (:meth:`without_tables`), so that
        scoring needs no classifier for them: every sub-key the training rows (shipped by
        ``as_of``) use, and every *plausible* sub-key of each part (base, lane, season: see
        :meth:`FeatureEncoder.plausible_codes`, seasons of ship dates from a year before
        ``as_of`` to three years after) while the whole part fits in ``max_shipped_tables``
        (~1 KB each). A part that does not fit keeps its training sub-keys; the others are
        computed when first needed. Called for a model that will be saved."""
        known = history.loc[history["shipped_at"] <= pd.Timestamp(as_of)]
        codes = self.encoder_.transform(known).codes
        keys = {
            part: np.unique(self.encoder_.curve_keys(codes, self._part_names(part)))
            for part in _PARTS
        }
        budget = self.max_shipped_tables - sum(len(part_keys) for part_keys in keys.values())
        as_of_day = np.datetime64(pd.Timestamp(as_of).date().isoformat(), "D")
        days = as_of_day + np.arange(-366, 3 * 366).astype("timedelta64[D]")
        for part in ("base", "lane", "season"):  # the smallest first
            names = self._part_names(part)
            plausible = self.encoder_.plausible_codes(names, days, budget + len(keys[part]))
            if plausible is None:
                continue
            extra = np.setdiff1d(self.encoder_.curve_keys(plausible, names), keys[part])
            if len(extra) <= budget:
                keys[part] = np.union1d(keys[part], extra)
                budget -= len(extra)
        for part in _PARTS:
            self._logit_parts(part, keys[part])
        self.shipped_parts_ = _pack_part_keys(sorted(self._parts))
        return self

    @property
    def n_shipped_tables(self) -> int:
        """How many logit tables a saved artifact carries (its training history's)."""
        return len(getattr(self, "shipped_parts_", ()))

    def _typical_transit(
        self, codes: np.ndarray, duration: np.ndarray, event: np.ndarray, prior: float = 20.0
    ) -> np.ndarray:
        """Typical transit days per (country code, method code): a geometric mean of observed
        deliveries, shrunk toward the method's and then the global one (``prior`` shipments).

        Time divided by it is the *relative time* feature: how overdue a parcel is for its
        lane. It lets rare lanes borrow the shape of the tail (when the still-missing are
        mostly lost) from all lanes.
        """
        names = self.encoder_.feature_names
        radix = dict(zip(names, self.encoder_.radices, strict=True))
        country = codes[event, names.index("country")]
        method = codes[event, names.index("method")]
        log_days = np.log1p(duration[event].astype(np.float64))
        overall = float(log_days.mean()) if len(log_days) else np.log1p(14.0)

        def shrunk(index: np.ndarray, size: int, toward: np.ndarray) -> np.ndarray:
            total = np.bincount(index, weights=log_days, minlength=size)
            count = np.bincount(index, minlength=size)
            return (total + prior * toward) / (count + prior)

        by_method = shrunk(method, radix["method"], np.full(radix["method"], overall))
        lane = country * radix["method"] + method
        lane_size = radix["country"] * radix["method"]
        by_lane = shrunk(lane, lane_size, np.tile(by_method, radix["country"]))
        return np.expm1(by_lane).reshape(radix["country"], radix["method"])

    def _design(self, bucket: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Model input rows: time bucket, relative time, then the feature codes."""
        names = self.encoder_.feature_names
        typical = self.typical_transit_[
            codes[:, names.index("country")], codes[:, names.index("method")]
        ]
        relative = np.minimum(
            np.floor(RELATIVE_STEPS * bucket_start(bucket) / np.maximum(typical, 1.0)),
            RELATIVE_MAX,
        )
        return np.column_stack([bucket, relative, codes]).astype(np.float32)

    def _mask_for_pooling(self, codes: np.ndarray, rng: np.random.Generator) -> None:
        """Teach the pooled codes: a random share of shipments lose their country/region."""
        names = self.encoder_.feature_names
        country, region = names.index("country"), names.index("region")
        masked = rng.random(len(codes)) < self.country_mask_rate
        codes[masked, country] = 0
        codes[masked, region] = 0
        codes[rng.random(len(codes)) < self.region_mask_rate, region] = 0

    def _person_days(
        self,
        codes: np.ndarray,
        duration: np.ndarray,
        event: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One row per shipment per day at risk; days without delivery are subsampled."""
        horizon = self.horizon_days
        event = event & (duration < horizon)
        duration = np.clip(duration, 0, horizon - 1)
        # Days 0..duration-1 are survived; day `duration` is survived too when censored.
        survived = duration + (~event).astype(np.int64)
        n_events = int(event.sum())
        total = int(survived.sum())
        budget = max(self.max_person_days - n_events, 1)
        rate = min(1.0, budget / max(total, 1))
        kept = rng.binomial(survived, rate) if rate < 1.0 else survived
        owner = np.repeat(np.arange(len(codes)), kept)
        if rate < 1.0:
            day = np.floor(rng.random(len(owner)) * survived[owner]).astype(np.int64)
        else:
            starts = np.repeat(np.cumsum(kept) - kept, kept)
            day = np.arange(len(owner)) - starts
        event_owner = np.flatnonzero(event)
        X = self._design(
            time_bucket(np.concatenate([day, duration[event_owner]])),
            np.concatenate([codes[owner], codes[event_owner]]),
        )
        y = np.concatenate([np.zeros(len(owner), np.int8), np.ones(len(event_owner), np.int8)])
        w = np.concatenate([np.full(len(owner), 1.0 / rate), np.ones(len(event_owner))])
        return X, y, w

    # -- prediction ----------------------------------------------------------------------
    def _reset_cache(self) -> None:
        self._cache = _CurveCache(self.horizon_days, self.cache_size)
        self._parts: dict[tuple[str, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        """Pickles carry the logit tables (``_parts``: one row of logits per time bucket for
        each lane, season and base sub-key computed so far, 1 KB each; 3.5 MB after 200k
        generated orders) so a model sent to Dask workers or another process does not run the
        classifier again for them. Survival curves (``_cache``, 2 KB per key, up to
        ``cache_size`` keys: 26 MB for the same orders) stay behind: they are rebuilt from the
        tables ~9x faster than the tables themselves are computed (0.2 s vs 1.9 s there)."""
        state = self.__dict__.copy()
        for transient in ("_cache", "_parts", "_lock"):
            state.pop(transient, None)
        classifier = state.pop("classifier_", None)
        if classifier is not None and "classifier_pickle_" not in state:
            # scikit-learn's object as bytes, unpickled when needed (a loaded model keeps
            # the bytes it came with: saving it again gives the same file)
            state["classifier_pickle_"] = pickle.dumps(classifier, protocol=5)
        lock = self.__dict__.get("_lock")
        if lock is not None:
            with lock:  # another thread may be adding tables
                keys = list(self._parts)
                rows = [self._parts[k] for k in keys]
            # Arrays rather than thousands of small objects: one buffer for Dask to send,
            # and few opcodes for joblib's (pure Python) unpickler to read.
            state["_parts"] = (_pack_part_keys(keys), np.stack(rows) if rows else None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state = dict(state)
        state.setdefault("max_shipped_tables", 0)  # saved before the parameter existed
        parts = state.pop("_parts", None)
        self.__dict__.update(state)
        if "encoder_" in state:  # fitted
            self._reset_cache()
            if isinstance(parts, tuple) and parts[1] is not None:
                keys, table = parts
                self._parts.update(zip(_unpack_part_keys(keys), table, strict=True))

    def without_tables(self) -> DiscreteTimeHazard:
        """A shallow copy sharing the fitted estimator, with no curves and only the training
        history's tables (what a saved artifact holds, so its bytes do not depend on what was
        predicted before)."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        if "encoder_" in self.__dict__:
            copy._reset_cache()
            shipped = _unpack_part_keys(getattr(self, "shipped_parts_", _pack_part_keys([])))
            with self._lock:
                copy._parts.update({key: self._parts[key] for key in shipped if key in self._parts})
        return copy

    def _classifier(self) -> Any:
        """The fitted classifier (unpickled from the artifact's bytes on first use)."""
        classifier = self.__dict__.get("classifier_")
        if classifier is None:
            # The bytes are part of the verified artifact (checksum and signature), like
            # the pickle around them.
            blob: bytes = self.__dict__["classifier_pickle_"]
            with interrupts_held():  # unpickling imports scikit-learn
                classifier = pickle.loads(blob)
                self.classifier_ = classifier
        return classifier

    @property
    def n_tables(self) -> int:
        """How many logit tables (lane, season and base sub-keys) are computed."""
        return len(getattr(self, "_parts", ()))

    def _part_names(self, part: str) -> list[str]:
        if part == "lane":
            return self.encoder_.lane_features
        if part == "season":
            return [*SHARED_FEATURES, *SEASON_FEATURES]
        return list(SHARED_FEATURES)

    def _logit_parts(self, part: str, keys: np.ndarray) -> np.ndarray:
        """Raw logits per time bucket for sub-keys of one part, other features at code 0."""
        unique, inverse = np.unique(keys, return_inverse=True)
        missing = np.array([k for k in unique if (part, int(k)) not in self._parts], np.int64)
        if len(missing):
            names = self._part_names(part)
            codes = self.encoder_.decode_keys(missing, names)
            buckets = time_bucket(np.arange(self.horizon_days))
            n_buckets = int(buckets[-1]) + 1
            X = self._design(
                np.tile(np.arange(n_buckets), len(missing)), np.repeat(codes, n_buckets, axis=0)
            )
            logits = self._decision(X).reshape(len(missing), n_buckets)
            with self._lock:
                for key, row in zip(missing, logits, strict=True):
                    self._parts[(part, int(key))] = row
        with self._lock:
            table = np.stack([self._parts[(part, int(k))] for k in unique])
        return table[inverse]

    def _decision(self, X: np.ndarray) -> np.ndarray:
        """The classifier's raw logits of ``X``, in slices on threads when it is large and
        :func:`table_threads` allows."""
        classifier = self._classifier()
        threads = min(_TABLE_THREADS.get(), len(X) // _ROWS_PER_TABLE_THREAD)
        if threads < 2:
            return _raw_logits(classifier, X, _OPENMP_THREADS.get())

        def logits(rows: np.ndarray) -> np.ndarray:
            return _raw_logits(classifier, rows, 1)  # each thread one OpenMP thread

        with ThreadPoolExecutor(threads, thread_name_prefix="logit-tables") as pool:
            return np.concatenate(list(pool.map(logits, np.array_split(X, threads))))

    def survival_curves(self, keys: np.ndarray) -> np.ndarray:
        """``S(t) = P(T > t)`` for t = 0..horizon-1, one row per curve key."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return np.zeros((0, self.horizon_days))
        unique, inverse = np.unique(keys, return_inverse=True)
        table, rows = self._curve_rows(unique)
        return table[rows[inverse.reshape(-1)]]

    def _curve_rows(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A table of curves and the row of each of the distinct ``keys`` in it: the cache's
        own matrix when it holds them all (computing and adding the missing ones first),
        else a table of just these curves (more keys than the cache holds)."""
        self._cache.limit = self.cache_size
        rows, matrix = self._cache.find(keys)
        missing = rows < 0
        if not missing.any():
            return matrix, rows
        fresh = self._compute(keys[missing])
        rows, matrix = self._cache.find(keys)
        if (rows >= 0).all():
            return matrix, rows
        table = np.empty((len(keys), self.horizon_days))
        cached = (rows >= 0) & ~missing
        table[cached] = matrix[rows[cached]]
        table[missing] = fresh
        still = ~cached & ~missing  # evicted by another thread meanwhile: compute again
        if still.any():
            table[still] = self._compute(keys[still])
        return table, np.arange(len(keys))

    def _compute(self, keys: np.ndarray) -> np.ndarray:
        """Curves of ``keys`` (returned in order), also added to the cache."""
        encoder = self.encoder_
        codes = encoder.decode_keys(keys)
        logit = (
            self._logit_parts("lane", encoder.curve_keys(codes, self._part_names("lane")))
            + self._logit_parts("season", encoder.curve_keys(codes, self._part_names("season")))
            - self._logit_parts("base", encoder.curve_keys(codes, self._part_names("base")))
        )
        hazard = 1.0 / (1.0 + np.exp(-logit[:, time_bucket(np.arange(self.horizon_days))]))
        hazard = np.clip(hazard, 1e-7, 1.0 - 1e-7)
        curves = np.exp(np.cumsum(np.log1p(-hazard), axis=1))
        with self._lock:
            self._cache.add(keys, curves)
        return curves

    def conditional_survival(
        self, features: EncodedFeatures, elapsed: np.ndarray, horizons: np.ndarray
    ) -> np.ndarray:
        """``P(T > horizons[i, j] | T > elapsed[i])`` for each row and horizon column.

        Horizons at or before the elapsed time give 1 (the parcel is already past them).
        The rows are read straight from the cache's matrix of curves (no copy per key).
        """
        codes, unique = pd.factorize(features.curve_key, sort=False)
        table, rows = self._curve_rows(np.asarray(unique, dtype=np.int64))
        return _conditional(table, rows[codes], elapsed, horizons, self.horizon_days)


_PARTS = ("lane", "season", "base")


def _pack_part_keys(keys: list[tuple[str, int]]) -> np.ndarray:
    """Table keys ``(part, sub-key)`` as an (n, 2) int64 array (part by its index)."""
    packed = np.array([(_PARTS.index(part), key) for part, key in keys], dtype=np.int64)
    return packed.reshape(-1, 2)


def _unpack_part_keys(packed: np.ndarray) -> list[tuple[str, int]]:
    return [(_PARTS[part], key) for part, key in np.asarray(packed).tolist()]


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM wait until the block ends, then take effect as usual
    (main thread only; elsewhere the block runs as is). For the model's lazy loads of
    scikit-learn (the classifier) and xgboost (the scan model's trees) in the middle of a run.

    Importing runs ``exec``/``eval`` of source strings (``namedtuple``, ``dataclass``, SciPy's
    modules). CPython (3.11 at least) remembers a KeyboardInterrupt escaping such code and
    ends the process by SIGINT at exit even once the interrupt was caught: a Ctrl-C during
    the classifier's first load made ``score`` die by SIGINT instead of exiting 130 after
    cleaning up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {held_signal: signal.getsignal(held_signal) for held_signal in held}
    if any(handler is None for handler in previous.values()):  # set outside Python: leave
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: object) -> None:
        received.append(signum)

    for held_signal in held:
        signal.signal(held_signal, remember)
    try:
        yield
    finally:
        for held_signal, handler in previous.items():
            signal.signal(held_signal, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)  # handled by the handler now back in place


def _raw_logits(classifier: Any, X: np.ndarray, threads: int | None) -> np.ndarray:
    """The classifier's ``decision_function`` of ``X`` with at most ``threads`` OpenMP
    threads (None: the runtime's default). ``decision_function`` takes no thread count; the
    method behind it does (``_raw_predict``: private, but the artifact pins scikit-learn's
    minor version). No threadpoolctl limit here: its library scan runs Python code in a
    ctypes callback, where a Ctrl-C arriving meanwhile is lost."""
    if threads is None:
        return np.asarray(classifier.decision_function(X))
    return np.asarray(classifier._raw_predict(X, n_threads=threads)).ravel()


class _CurveCache:
    """Survival curves by key: one matrix with a row per key, found in bulk by binary search
    over the sorted keys.

    Readers take the current snapshot (sorted keys, their rows, the matrix) without a lock;
    :meth:`add` (called under the hazard's lock) writes new curves into unused rows and
    publishes a new snapshot, so a reader never sees a row change. The matrix is allocated
    for ``limit`` rows at once (``np.empty``: pages cost memory only once written, so
    nothing is ever copied to grow it). Past ``limit`` keys it starts again from empty
    (curves are recomputed from the logit tables when needed).
    """

    def __init__(self, horizon_days: int, limit: int) -> None:
        self.horizon_days = horizon_days
        self.limit = limit
        empty = np.zeros(0, dtype=np.int64)
        self._snapshot = (empty, empty, np.empty((0, horizon_days)))
        self._used = 0

    def __len__(self) -> int:
        return len(self._snapshot[0])

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each key in the returned matrix, -1 where it is not cached."""
        sorted_keys, rows, matrix = self._snapshot
        if not len(sorted_keys):
            return np.full(len(keys), -1, dtype=np.int64), matrix
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        return np.where(sorted_keys[at] == keys, rows[at], -1), matrix

    def add(self, keys: np.ndarray, curves: np.ndarray) -> None:
        """Cache the curves of keys not cached yet (the caller holds the lock)."""
        sorted_keys, rows, matrix = self._snapshot
        known, _ = self.find(keys)
        new = (known < 0) & _first_occurrence(keys)
        keys, curves = keys[new][: self.limit], curves[new][: self.limit]
        if not len(keys):
            return
        if len(sorted_keys) + len(keys) > self.limit:  # full: start again
            sorted_keys, rows = sorted_keys[:0], rows[:0]
            matrix, self._used = np.empty((0, self.horizon_days)), 0
        end = self._used + len(keys)
        if end > len(matrix):  # the first curves, or a new limit
            grown = np.empty((max(self.limit, end), self.horizon_days))
            grown[: self._used] = matrix[: self._used]
            matrix = grown
        matrix[self._used : end] = curves
        all_keys = np.concatenate([sorted_keys, keys])
        all_rows = np.concatenate([rows, np.arange(self._used, end, dtype=np.int64)])
        order = np.argsort(all_keys, kind="stable")
        self._snapshot = (all_keys[order], all_rows[order], matrix)
        self._used = end


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    _, first = np.unique(keys, return_index=True)
    mask = np.zeros(len(keys), dtype=bool)
    mask[first] = True
    return mask


def _conditional(
    table: np.ndarray,
    rows: np.ndarray,
    elapsed: np.ndarray,
    horizons: np.ndarray,
    horizon_days: int,
) -> np.ndarray:
    """``S(h) / S(e)`` per row, reading row ``rows[i]`` of ``table`` (rows of ``S``)."""
    elapsed = np.asarray(elapsed, dtype=np.int64)
    horizons = np.asarray(horizons, dtype=np.int64)
    squeeze = horizons.ndim == 1
    if squeeze:
        horizons = horizons[:, None]
    last = horizon_days - 1
    if table.flags.c_contiguous:  # one flat gather each: no 2-D index broadcasting
        flat, start = table.reshape(-1), np.asarray(rows, dtype=np.int64) * table.shape[1]
        s_elapsed = flat[start + np.clip(elapsed, 0, last)]
        s_horizon = flat[start[:, None] + np.clip(horizons, 0, last)]
    else:
        s_elapsed = table[rows, np.clip(elapsed, 0, last)]
        s_horizon = table[rows[:, None], np.clip(horizons, 0, last)]
    ratio = s_horizon / np.maximum(s_elapsed, 1e-300)[:, None]
    ratio = np.where(horizons <= elapsed[:, None], 1.0, np.clip(ratio, 0.0, 1.0))
    return ratio[:, 0] if squeeze else ratio


def conditional_from_curves(
    curves_for: object,
    keys: np.ndarray,
    elapsed: np.ndarray,
    horizons: np.ndarray,
    horizon_days: int,
) -> np.ndarray:
    """Gather ``S(h) / S(e)`` per row from per-key survival curves (shared by all estimators).

    ``curves_for`` maps an array of distinct keys to their curves (rows of ``S``).
    Times past the curve's end use its last value (the long-run share never delivered).
    """
    unique, inverse = np.unique(keys, return_inverse=True)
    table = curves_for(unique)  # type: ignore[operator]
    return _conditional(table, inverse.reshape(-1), elapsed, horizons, horizon_days)


def predict_conditional(
    estimator: DiscreteTimeHazard, frame: pd.DataFrame, elapsed: np.ndarray, horizons: np.ndarray
) -> np.ndarray:
    """Frame-level convenience: encode ``frame`` and return conditional survival."""
    return estimator.conditional_survival(estimator.encoder_.transform(frame), elapsed, horizons)
