"""The hazard model's tables and curves (model/hazard.py): what a pickle carries, what a saved
artifact holds, and curves served while other threads evict them."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.generate import DEFAULT_AS_OF as AS_OF
from data.generate import generate_open_orders
from model import hazard as hazard_module
from model.artifact import MODEL_FILE, load_model, save_model
from model.hazard import DiscreteTimeHazard, conditional_from_curves, table_threads
from model.predictor import AdvisorModel
from model.schema import validate_history, validate_open_orders


@pytest.fixture
def model(trained_model_dir: Path) -> AdvisorModel:
    """A fresh load (cold tables), free to change."""
    loaded, _ = load_model(trained_model_dir)
    return loaded


@pytest.fixture(scope="module")
def keys(open_orders: pd.DataFrame, trained_model_dir: Path) -> np.ndarray:
    loaded, _ = load_model(trained_model_dir)
    valid = validate_open_orders(open_orders, as_of=AS_OF).valid
    return np.unique(loaded.hazard.encoder_.transform(valid).curve_key)


def no_classifier(hazard: DiscreteTimeHazard, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(X: np.ndarray) -> np.ndarray:
        raise AssertionError(f"classifier ran on {len(X)} rows")

    class Refusing:
        decision_function = staticmethod(refuse)

    monkeypatch.setattr(hazard, "_classifier", Refusing)


def test_a_pickled_model_carries_its_tables_not_its_curves(
    model: AdvisorModel, keys: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    curves = model.hazard.survival_curves(keys)
    tables = model.hazard.n_tables
    assert tables > 0 and len(model.hazard._cache) == len(keys)
    copy: AdvisorModel = pickle.loads(pickle.dumps(model))
    assert copy.hazard.n_tables == tables
    assert len(copy.hazard._cache) == 0
    no_classifier(copy.hazard, monkeypatch)  # curves come from the tables alone
    np.testing.assert_array_equal(copy.hazard.survival_curves(keys), curves)


def test_a_fresh_pickle_holds_only_its_training_tables_and_computes_the_same_curves(
    model: AdvisorModel, keys: np.ndarray
) -> None:
    copy: AdvisorModel = pickle.loads(pickle.dumps(model))
    assert copy.hazard.n_tables == copy.hazard.n_shipped_tables  # the training tables
    np.testing.assert_array_equal(
        copy.hazard.survival_curves(keys), model.hazard.survival_curves(keys)
    )


def test_saved_artifact_does_not_depend_on_earlier_predictions(
    model: AdvisorModel, keys: np.ndarray, tmp_path: Path
) -> None:
    save_model(model, tmp_path / "cold", data_sha256="0" * 64, data_source="test")
    model.hazard.survival_curves(keys)
    assert model.hazard.n_tables > 0
    save_model(model, tmp_path / "warm", data_sha256="0" * 64, data_source="test")
    assert model.hazard.n_tables > 0  # saving leaves the model in use as it was
    cold, warm = (tmp_path / d / MODEL_FILE for d in ("cold", "warm"))
    assert warm.read_bytes() == cold.read_bytes()
    reloaded, _ = load_model(tmp_path / "warm")
    assert reloaded.hazard.n_tables == reloaded.hazard.n_shipped_tables > 0


def test_orders_of_later_days_and_other_lanes_are_scored_from_the_artifact_alone(
    model: AdvisorModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The artifact carries every plausible table within its budget: orders of another seed,
    shipped more than a year after the training history ends, need no classifier, and get
    the curves the classifier gives."""
    later = AS_OF + timedelta(days=500)
    orders = validate_open_orders(generate_open_orders(2000, seed=33, as_of=later), as_of=later)
    keys = np.unique(model.hazard.encoder_.transform(orders.valid).curve_key)
    computed = pickle.loads(pickle.dumps(model)).hazard
    computed._parts.clear()
    reference = computed.survival_curves(keys)  # every table from the classifier
    no_classifier(model.hazard, monkeypatch)
    np.testing.assert_array_equal(model.hazard.survival_curves(keys), reference)


def test_a_part_with_more_plausible_tables_than_the_budget_ships_its_training_ones(
    model: AdvisorModel, small_history: pd.DataFrame
) -> None:
    """Parts are added whole, smallest first: with no budget the artifact holds the training
    rows' tables only; with room for every (country, method) pair but no more, the base part
    is complete and the lane and season parts keep their training tables."""
    history = validate_history(small_history).valid
    hazard = pickle.loads(pickle.dumps(model)).hazard
    encoder = hazard.encoder_
    codes = encoder.transform(history.loc[history["shipped_at"] <= pd.Timestamp(AS_OF)]).codes
    parts = ("lane", "season", "base")
    training = {
        part: set(encoder.curve_keys(codes, hazard._part_names(part)).tolist()) for part in parts
    }

    def shipped(budget: int) -> dict[str, set[int]]:
        hazard._reset_cache()
        hazard.max_shipped_tables = budget
        hazard.ship_training_tables(history, AS_OF)
        keys = hazard_module._unpack_part_keys(hazard.shipped_parts_)
        return {part: {key for name, key in keys if name == part} for part in parts}

    assert shipped(0) == training
    pairs = (len(encoder.countries_) + 1) * (len(encoder.methods_) + 1)
    assert len(training["base"]) < pairs
    room = sum(map(len, training.values())) + pairs - len(training["base"])
    assert shipped(room) == {**training, "base": set(range(pairs))}
    assert shipped(room - 1) == training


def test_more_keys_than_the_cache_holds(model: AdvisorModel, keys: np.ndarray) -> None:
    reference = model.hazard.survival_curves(keys)
    small: AdvisorModel = pickle.loads(pickle.dumps(model))
    small.hazard.cache_size = 3
    assert len(keys) > 3
    np.testing.assert_array_equal(small.hazard.survival_curves(keys), reference)
    assert len(small.hazard._cache) <= 3


def test_curves_stay_right_while_other_threads_evict_them(
    model: AdvisorModel, keys: np.ndarray
) -> None:
    """A cache smaller than one request: every call evicts curves another thread is about to
    read (a KeyError before the curves were taken under the lock)."""
    reference = model.hazard.survival_curves(keys)
    hazard = pickle.loads(pickle.dumps(model)).hazard
    hazard.cache_size = max(2, len(keys) // 4)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            start.wait()
            for _ in range(30):
                chosen = rng.choice(len(keys), size=min(len(keys), 12), replace=False)
                np.testing.assert_array_equal(
                    hazard.survival_curves(keys[chosen]), reference[chosen]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_no_keys_give_no_curves(model: AdvisorModel) -> None:
    curves = model.hazard.survival_curves(np.zeros(0, dtype=np.int64))
    assert curves.shape == (0, model.hazard.horizon_days)


def test_conditional_survival_reads_the_cached_curves_as_the_reference_does(
    model: AdvisorModel, open_orders: pd.DataFrame
) -> None:
    """Rows are read straight from the cache's matrix; the values are those gathered from
    the stacked curves of each key (the shared reference), whatever the cache size."""
    valid = validate_open_orders(open_orders, as_of=AS_OF).valid
    features = model.hazard.encoder_.transform(valid)
    rng = np.random.default_rng(4)
    elapsed = rng.integers(0, 300, len(valid))
    horizons = np.column_stack([elapsed + rng.integers(-5, 60, len(valid)), elapsed + 90])
    expected = conditional_from_curves(
        model.hazard.survival_curves,
        features.curve_key,
        elapsed,
        horizons,
        model.hazard.horizon_days,
    )
    fresh: AdvisorModel = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(
        fresh.hazard.conditional_survival(features, elapsed, horizons), expected
    )
    small: AdvisorModel = pickle.loads(pickle.dumps(model))
    small.hazard.cache_size = 3  # more keys than the cache holds
    np.testing.assert_array_equal(
        small.hazard.conditional_survival(features, elapsed, horizons), expected
    )
    assert len(small.hazard._cache) <= 3


def test_tables_computed_on_threads_are_the_same(
    model: AdvisorModel, keys: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = pickle.loads(pickle.dumps(model)).hazard.survival_curves(keys)
    monkeypatch.setattr(hazard_module, "_ROWS_PER_TABLE_THREAD", 10)
    threaded = pickle.loads(pickle.dumps(model)).hazard
    threaded._parts.clear()  # every table computed here, on threads
    rows: list[int] = []
    classifier = threaded._classifier()
    predict = classifier._raw_predict

    def counted(X: np.ndarray, n_threads: int | None = None) -> np.ndarray:
        assert n_threads == 1  # each thread one OpenMP thread
        rows.append(len(X))
        return predict(X, n_threads=n_threads)

    monkeypatch.setattr(classifier, "_raw_predict", counted)
    with table_threads(2):
        np.testing.assert_array_equal(threaded.survival_curves(keys), reference)
    # Each part's batch (lane, season, base) was cut in two halves, one per thread.
    assert len(rows) == 6
    assert all(abs(a - b) <= 1 for a, b in zip(rows[::2], rows[1::2], strict=True))


def test_the_classifier_is_unpickled_only_for_a_missing_table(
    model: AdvisorModel, keys: np.ndarray, small_history: pd.DataFrame
) -> None:
    """Lanes of the training history are answered from the artifact's tables alone; a table
    that is not there brings the classifier in and gives the curves it would have given."""
    from model.schema import validate_history

    training = model.hazard.encoder_.transform(validate_history(small_history).valid)
    known = np.unique(training.curve_key)[:500]
    model.hazard.survival_curves(known)
    assert "classifier_" not in vars(model.hazard)  # still bytes
    expected = pickle.loads(pickle.dumps(model)).hazard
    expected._parts.clear()
    reference = expected.survival_curves(keys)  # every table from the classifier
    assert "classifier_" in vars(expected)
    np.testing.assert_array_equal(model.hazard.survival_curves(keys), reference)


INTERRUPTING_EXEC = "import signal\\nsignal.raise_signal(signal.SIGINT)\\nsum(range(10_000))"
LAZY_LOADS = {
    # The classifier's stand-in bytes raise SIGINT from an ``exec`` while they unpickle.
    "classifier": (
        "trained_model_dir",
        f"""
class InterruptingLoad:
    def __reduce__(self):
        return (exec, ("{INTERRUPTING_EXEC}",))

model.hazard.__dict__["classifier_pickle_"] = pickle.dumps(InterruptingLoad())
load, loaded = model.hazard._classifier, lambda: "classifier_" in vars(model.hazard)
""",
    ),
    # A stand-in xgboost whose Booster raises SIGINT from an ``exec`` while it loads.
    "scan trees": (
        "scan_model_dir",
        f"""
class InterruptingBooster:
    def __init__(self, params):
        pass
    def load_model(self, raw):
        exec("{INTERRUPTING_EXEC}")

sys.modules["xgboost"] = types.SimpleNamespace(Booster=InterruptingBooster)
load, loaded = model.scans._booster, lambda: "booster_" in vars(model.scans)
""",
    ),
}


@pytest.mark.parametrize("lazy_load", sorted(LAZY_LOADS))
def test_ctrl_c_while_a_library_loads_mid_run_is_raised_once_it_is_loaded(
    lazy_load: str, request: pytest.FixtureRequest
) -> None:
    """A Ctrl-C arriving while the classifier is unpickled or the scan model's trees load
    (scikit-learn and xgboost load then, and their imports run ``exec`` of source strings) is
    raised when the load is done, outside any such code: caught, the process exits with its
    own code, not killed by SIGINT at exit."""
    fixture, stand_in = LAZY_LOADS[lazy_load]
    model_dir: Path = request.getfixturevalue(fixture)
    program = f"""
import pickle, sys, types
from pathlib import Path
from model.artifact import load_model

model, _ = load_model(Path({str(model_dir)!r}))
{stand_in}
try:
    load()
except KeyboardInterrupt:
    print("INTERRUPTED, LOADED:", loaded())
    sys.exit(130)
print("NOT INTERRUPTED")
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert result.stdout.splitlines() == ["INTERRUPTED, LOADED: True"], result.stderr
    assert result.returncode == 130, result.stderr


def test_one_openmp_thread_holds_for_a_classifier_loaded_inside_the_block(
    trained_model_dir: Path,
) -> None:
    """``openmp_threads(1)`` limits the classifier even when scikit-learn (and its OpenMP
    runtime) loads only inside the block, as it does when a batch meets a lane without
    tables, and the curves are the same as without the limit; outside the block the
    runtime's default holds. Run in a fresh process: scikit-learn must not be loaded yet,
    and what a prediction runs with is read from inside the classifier's own predict."""
    program = f"""
import pickle, sys, types
import numpy as np
from data.generate import generate_open_orders
from model import hazard as hz
from model.artifact import load_model
from model.schema import validate_history, validate_open_orders
from pathlib import Path

model, _ = load_model(Path({str(trained_model_dir)!r}))
assert "sklearn" not in sys.modules
seen = []

def spied(classifier):
    predict = classifier._predict_iterations
    def recorded(X, predictors, raw, is_binned, n_threads):
        seen.append(n_threads)
        return predict(X, predictors, raw, is_binned, n_threads)
    classifier._predict_iterations = recorded
    return classifier

hz.pickle = types.SimpleNamespace(loads=lambda blob: spied(pickle.loads(blob)), dumps=pickle.dumps)
orders = validate_open_orders(generate_open_orders(200, seed=3)).valid
keys = model.hazard.encoder_.transform(orders).curve_key
model.hazard._reset_cache()  # no tables: the classifier is needed
with hz.openmp_threads(1):
    limited = model.hazard.survival_curves(keys)
print("INSIDE", sorted(set(seen)))
seen.clear()
model.hazard._reset_cache()
free = model.hazard.survival_curves(keys)
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
print("OUTSIDE", sorted(set(seen)), _openmp_effective_n_threads())
print("SAME", np.array_equal(limited, free))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["INSIDE [1]", "OUTSIDE [2] 2", "SAME True"]


@pytest.mark.parametrize("layout", ["C", "F"])
def test_conditional_ratio_is_read_from_the_right_cells(layout: str) -> None:
    """``S(h) / S(e)`` per row, 1 at or before the elapsed day, times past the curve's end at
    its last value, whatever the table's memory layout (one flat gather or a 2-D one)."""
    rng = np.random.default_rng(4)
    curves = np.sort(rng.random((7, 12)), axis=1)[:, ::-1]  # decreasing rows, like S(t)
    table = np.asarray(curves, order=layout)
    rows = rng.integers(0, 7, 40)
    elapsed = rng.integers(-2, 15, 40)
    horizons = rng.integers(-2, 15, (40, 2))
    got = hazard_module._conditional(table, rows, elapsed, horizons, 12)
    for i in range(40):
        s_e = curves[rows[i], min(max(elapsed[i], 0), 11)]
        for j in range(2):
            s_h = curves[rows[i], min(max(horizons[i, j], 0), 11)]
            want = 1.0 if horizons[i, j] <= elapsed[i] else min(max(s_h / s_e, 0.0), 1.0)
            assert got[i, j] == want
