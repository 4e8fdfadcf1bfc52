"""Model behaviour: censoring, direction, probability invariants, determinism, pooling,
the exact lane/season decomposition, calibration and the time-based holdout."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.generate import DEFAULT_AS_OF as AS_OF
from data.generate import generate_history
from model.artifact import load_model, save_model
from model.backtest import decision_samples
from model.calibration import PlattCalibrator
from model.hazard import DiscreteTimeHazard, observed_durations, predict_conditional, time_bucket
from model.km import LaneKaplanMeier
from model.predictor import AdvisorModel
from model.schema import validate_history, validate_open_orders
from model.train import TrainingConfig, train_model
from service.policy import PolicyConfig
from service.scoring import score_frame

CUTOFF = pd.Timestamp(AS_OF)
FAST = TrainingConfig(hazard={"max_iter": 40, "max_person_days": 200_000})


def days(values: object) -> pd.TimedeltaIndex:
    return pd.to_timedelta(np.asarray(values, dtype=float), unit="D")


def open_orders_for(
    country: str,
    elapsed: list[int],
    deadline_days: list[int],
    method: str = "aliexpress_standard",
    delivered_after: list[float] | None = None,
) -> pd.DataFrame:
    """Validated open orders shipped ``elapsed`` days before AS_OF, deadline after shipment."""
    shipped = CUTOFF - days(elapsed)
    raw = pd.DataFrame(
        {
            "order_id": [f"{country}-{i}" for i in range(len(elapsed))],
            "destination_country": country,
            "shipping_method": method,
            "shipped_at": shipped,
            "deadline": shipped + days(deadline_days),
            "delivered_at": shipped + days(delivered_after or [np.nan] * len(elapsed)),
        }
    )
    result = validate_open_orders(raw, as_of=AS_OF)
    assert result.rejects.empty, result.rejects
    return result.valid


# -- censoring ---------------------------------------------------------------------------
def test_observed_durations_censor_at_as_of() -> None:
    shipped = CUTOFF - days([30, 30, 30, 10])
    history = pd.DataFrame(
        {
            "shipped_at": shipped,
            "delivered_at": [
                shipped[0] + pd.Timedelta(days=12),  # delivered before as_of: observed
                pd.NaT,  # never delivered: censored at 30 days
                CUTOFF + pd.Timedelta(days=5),  # delivered after as_of: unknown then
                CUTOFF,  # delivered on as_of: observed
            ],
        }
    )
    duration, event = observed_durations(history, AS_OF)
    assert duration.tolist() == [12, 30, 30, 10]
    assert event.tolist() == [True, False, False, True]


TOY_LOSS, TOY_SHIFT, TOY_MEAN = 0.15, 5, 10.0


def toy_survival(t: float) -> float:
    """True P(T > t) of the toy lane: lost with 15 %, else 5 + floor(Exp(mean 10)) days."""
    if t < TOY_SHIFT:
        return 1.0
    return TOY_LOSS + (1 - TOY_LOSS) * float(np.exp(-(t - TOY_SHIFT + 1) / TOY_MEAN))


@pytest.fixture(scope="module")
def toy_lane() -> pd.DataFrame:
    """One lane shipped over the last 120 days: a quarter of it still undelivered at as_of."""
    rng = np.random.default_rng(3)
    n = 2000
    shipped = CUTOFF - days(rng.integers(1, 121, n))
    transit = np.where(
        rng.random(n) < TOY_LOSS, np.nan, TOY_SHIFT + np.floor(rng.exponential(TOY_MEAN, n))
    )
    delivered = shipped + days(transit)
    raw = pd.DataFrame(
        {
            "order_id": [f"T{i}" for i in range(n)],
            "destination_country": "DE",
            "shipping_method": "toy",
            "shipped_at": shipped,
            "deadline": shipped + pd.Timedelta(days=40),
            "delivered_at": delivered.where(delivered <= CUTOFF),
        }
    )
    return validate_history(raw).valid


def toy_hazard(history: pd.DataFrame, max_iter: int = 40) -> DiscreteTimeHazard:
    return DiscreteTimeHazard(max_iter=max_iter, max_person_days=200_000).fit(history, AS_OF)


def test_undelivered_rows_contribute_their_days_at_risk(toy_lane: pd.DataFrame) -> None:
    duration, event = observed_durations(toy_lane, AS_OF)
    assert 0.2 < 1 - event.mean() < 0.35  # the toy is heavily censored
    fitted = toy_hazard(toy_lane, max_iter=5)
    # No subsampling at this size: every survived day of every row, plus one event row each.
    at_risk = np.minimum(duration, fitted.horizon_days - 1) + ~event
    assert fitted.n_person_days_ == int(at_risk.sum() + event.sum())
    assert fitted.n_shipments_ == len(toy_lane)
    assert fitted.n_events_ == int(event.sum())


def test_censoring_aware_fit_recovers_the_truth_and_dropping_biases_it(
    toy_lane: pd.DataFrame,
) -> None:
    query = toy_lane.head(1)
    elapsed, horizons = np.array([20]), np.array([[30, 40]])
    truth = np.array([toy_survival(30), toy_survival(40)]) / toy_survival(20)  # 0.66, 0.54
    censoring_aware = predict_conditional(toy_hazard(toy_lane), query, elapsed, horizons)[0]
    km = LaneKaplanMeier().fit(toy_lane, AS_OF).predict_conditional(query, elapsed, horizons)[0]
    delivered_only = toy_lane.loc[toy_lane["delivered_at"].notna()]
    dropped = predict_conditional(toy_hazard(delivered_only), query, elapsed, horizons)[0]
    np.testing.assert_allclose(censoring_aware, truth, atol=0.08)
    np.testing.assert_allclose(km, truth, atol=0.08)
    # Dropping the undelivered rows loses the lost parcels and the slow tail.
    assert np.all(dropped < truth - 0.2)


def test_training_is_deterministic(toy_lane: pd.DataFrame) -> None:
    first, second = toy_hazard(toy_lane, max_iter=8), toy_hazard(toy_lane, max_iter=8)
    keys = first.encoder_.transform(toy_lane.head(50)).curve_key
    np.testing.assert_array_equal(first.survival_curves(keys), second.survival_curves(keys))


# -- direction: a slower history for a lane raises its p_late ----------------------------
SLOW_COUNTRY = "FR"
SPARSE_COUNTRY = "NO"  # not made by the generator: only the 10 rows added below


def history_with_sparse_lane() -> pd.DataFrame:
    """8k generated shipments plus a 10-shipment Norway lane that always took 60-69 days."""
    shipped = CUTOFF - days(np.arange(150, 250, 10))
    sparse = pd.DataFrame(
        {
            "order_id": [f"NO{i}" for i in range(10)],
            "destination_country": SPARSE_COUNTRY,
            "shipping_method": "aliexpress_standard",
            "shipped_at": shipped,
            "deadline": shipped + pd.Timedelta(days=45),
            "delivered_at": shipped + days(60 + np.arange(10)),
        }
    )
    generated = generate_history(8000, seed=21, as_of=AS_OF)
    return pd.concat([generated, sparse], ignore_index=True)


def slowed(history: pd.DataFrame, country: str, extra_days: int) -> pd.DataFrame:
    """The same history with one country's deliveries ``extra_days`` later (re-censored)."""
    slow = history.copy()
    rows = slow["destination_country"] == country
    moved = slow.loc[rows, "delivered_at"] + pd.Timedelta(days=extra_days)
    slow.loc[rows, "delivered_at"] = moved.where(moved <= CUTOFF)
    return slow


def test_lane_estimates_follow_their_own_history() -> None:
    """A slower history for one lane raises its p_late, and a 10-shipment lane is pooled.

    One test for both checks: they share two trainings, and parallel workers must not each
    repeat them (module fixtures would run once per worker).
    """
    base_history = validate_history(history_with_sparse_lane()).valid
    base_model = train_model(base_history, AS_OF, FAST)
    slow = slowed(history_with_sparse_lane(), SLOW_COUNTRY, 15)
    slow_model = train_model(validate_history(slow).valid, AS_OF, FAST)
    check_slower_lane_raises_p_late(base_model, slow_model)
    check_ten_shipment_lane_is_pooled(base_model, base_history)


def check_slower_lane_raises_p_late(base_model: AdvisorModel, slow_model: AdvisorModel) -> None:
    # Early in transit (3 days), deadlines 12-25 days after shipment.
    elapsed, deadlines = [3, 3, 3, 3], [12, 16, 20, 25]
    slow_lane = open_orders_for(SLOW_COUNTRY, elapsed, deadlines)
    before = base_model.predict(slow_lane, AS_OF)["p_late"].to_numpy()
    after = slow_model.predict(slow_lane, AS_OF)["p_late"].to_numpy()
    assert np.all(after > before + 0.2), (before, after)
    assert (
        base_model.lanes.loc[SLOW_COUNTRY, "median_transit_days"] + 10
        <= (slow_model.lanes.loc[SLOW_COUNTRY, "median_transit_days"])
    )
    # Other lanes barely move: the change is about the slowed lane.
    other = open_orders_for("US", elapsed, deadlines)
    moved = np.abs(
        slow_model.predict(other, AS_OF)["p_late"].to_numpy()
        - base_model.predict(other, AS_OF)["p_late"].to_numpy()
    )
    assert moved.max() < 0.1, moved


def check_ten_shipment_lane_is_pooled(base_model: AdvisorModel, history: pd.DataFrame) -> None:
    """All 10 Norway parcels took 60-69 days, so per-lane Kaplan-Meier says a parcel 5 days
    out is certainly late for a 30-day deadline and certainly on time for a 75-day one."""
    elapsed, deadlines = [5, 5], [30, 75]
    orders = open_orders_for(SPARSE_COUNTRY, elapsed, deadlines)
    km = LaneKaplanMeier().fit(history, AS_OF)
    horizons = np.column_stack([deadlines, np.add(deadlines, 30)])
    p_km = km.predict_conditional(orders, np.array(elapsed), horizons)[:, 0]
    np.testing.assert_array_equal(p_km, [1.0, 0.0])
    predicted = base_model.predict(orders, AS_OF)
    p_model = predicted["p_late"].to_numpy()
    # Neither certain like Kaplan-Meier's 1 and 0: the pooled estimate. The generator's true
    # P(late) of a pooled-law parcel 5 days out with a 75-day deadline is about 0.02.
    assert np.all((p_model > 0.01) & (p_model < 0.97)), p_model
    assert p_model[0] < 0.7  # Kaplan-Meier: certainly late
    assert predicted["sparse_lane"].all()
    assert not predicted["unseen_country"].any()


# -- invariants and determinism on the session model ------------------------------------
@pytest.fixture(scope="module")
def valid_open_orders(open_orders: pd.DataFrame) -> pd.DataFrame:
    result = validate_open_orders(open_orders, as_of=AS_OF)
    assert result.rejects.empty
    return result.valid


def assert_probability_invariants(predicted: pd.DataFrame) -> None:
    p_late = predicted["p_late"].to_numpy()
    p_after = predicted["p_late_after_extension"].to_numpy()
    assert np.all(np.isfinite(p_late)) and np.all(np.isfinite(p_after))
    assert np.all((p_after >= 0) & (p_after <= p_late) & (p_late <= 1))
    delivered = predicted["delivered"].to_numpy()
    assert np.all(p_late[delivered] == 0) and np.all(p_after[delivered] == 0)


def test_probability_invariants_on_generated_open_orders(
    small_model: AdvisorModel, valid_open_orders: pd.DataFrame
) -> None:
    predicted = small_model.predict(valid_open_orders, AS_OF)
    assert_probability_invariants(predicted)
    assert predicted["delivered"].sum() > 0  # the generator marks about 3 % delivered
    undelivered = predicted.loc[~predicted["delivered"], "p_late"]
    assert undelivered.between(0.0, 1.0, inclusive="neither").mean() > 0.9


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["BR", "DE", "US", "NZ", "MN", "FR"]),
            st.sampled_from(["aliexpress_standard", "express", "unknown", "new_carrier"]),
            st.integers(0, 300),  # elapsed days
            st.integers(0, 260),  # deadline days after shipment
            st.integers(0, 2),  # extensions
            st.one_of(st.none(), st.integers(0, 300)),  # delivered after (days)
        ),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_probability_invariants_on_any_order(
    small_model: AdvisorModel, rows: list[tuple[str, str, int, int, int, int | None]]
) -> None:
    shipped = CUTOFF - days([r[2] for r in rows])
    delivered_after = [np.nan if r[5] is None else min(r[5], r[2]) for r in rows]
    raw = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(rows))],
            "destination_country": [r[0] for r in rows],
            "shipping_method": [r[1] for r in rows],
            "shipped_at": shipped,
            "deadline": shipped + days([r[3] for r in rows]),
            "delivered_at": shipped + days(delivered_after),
            "extensions": [r[4] for r in rows],
        }
    )
    orders = validate_open_orders(raw, as_of=AS_OF).valid
    assert len(orders) == len(rows)
    predicted = small_model.predict(orders, AS_OF)
    assert_probability_invariants(predicted)
    delivered = ~np.isnan(delivered_after)
    np.testing.assert_array_equal(predicted["delivered"].to_numpy(), delivered)


def test_same_input_same_output_twice_reordered_and_after_save_load(
    small_model: AdvisorModel,
    trained_model_dir: Path,
    valid_open_orders: pd.DataFrame,
    tmp_path: Path,
) -> None:
    first = small_model.predict(valid_open_orders, AS_OF)
    pd.testing.assert_frame_equal(small_model.predict(valid_open_orders, AS_OF), first)
    # Batch composition and order do not matter (curves are cached per key).
    shuffled = valid_open_orders.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(small_model.predict(shuffled, AS_OF).sort_index(), first)
    # A fresh load (empty cache) of the same artifact, and a re-saved copy, agree exactly.
    fresh, _ = load_model(trained_model_dir)
    pd.testing.assert_frame_equal(fresh.predict(valid_open_orders, AS_OF), first)
    save_model(small_model, tmp_path / "copy", data_sha256="1" * 64, data_source="test")
    copy, _ = load_model(tmp_path / "copy")
    pd.testing.assert_frame_equal(copy.predict(valid_open_orders, AS_OF), first)


def test_unseen_country_gets_a_finite_pooled_estimate_and_says_so(
    small_model: AdvisorModel,
) -> None:
    assert "MN" not in small_model.lanes.index and "AQ" not in small_model.lanes.index
    unseen = pd.concat(
        [open_orders_for(c, [10, 40], [14, 43]) for c in ("MN", "AQ")], ignore_index=True
    )
    predicted = small_model.predict(unseen, AS_OF)
    assert predicted["unseen_country"].all()
    assert_probability_invariants(predicted)
    p = predicted[["p_late", "p_late_after_extension"]].to_numpy()
    assert np.all((p[:, 0] > 0.0) & (p[:, 0] < 1.0))
    np.testing.assert_array_equal(p[:2], p[2:])  # both countries use the same pooled curve
    scored = score_frame(unseen, small_model, PolicyConfig(), AS_OF)
    assert all("unseen_country" in r.split(";") for r in scored["reasons"])


# -- the lane/season decomposition is exact ---------------------------------------------
def test_cached_curves_equal_direct_predict_proba(
    small_model: AdvisorModel, valid_open_orders: pd.DataFrame
) -> None:
    hazard = small_model.hazard
    keys = np.unique(hazard.encoder_.transform(valid_open_orders).curve_key)[:25]
    curves = hazard.survival_curves(keys)
    day = np.arange(hazard.horizon_days)
    codes = hazard.encoder_.decode_keys(keys)
    for row, key_codes in enumerate(codes):
        X = hazard._design(time_bucket(day), np.repeat(key_codes[None, :], len(day), axis=0))
        daily = np.clip(hazard._classifier().predict_proba(X)[:, 1], 1e-7, 1 - 1e-7)
        np.testing.assert_allclose(curves[row], np.cumprod(1.0 - daily), rtol=1e-9, atol=1e-12)


# -- calibration -------------------------------------------------------------------------
@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=50),
    st.floats(0.05, 5.0),
    st.floats(-3.0, 3.0),
)
def test_platt_map_is_monotone_and_keeps_certainties(
    p: list[float], slope: float, intercept: float
) -> None:
    calibrator = PlattCalibrator(slope=slope, intercept=intercept, n_samples=500, note="platt")
    ordered = np.sort(np.asarray(p))
    mapped = calibrator.transform(ordered)
    assert np.all(np.diff(mapped) >= 0)
    assert np.all((mapped >= 0) & (mapped <= 1))
    np.testing.assert_array_equal(mapped[ordered == 0.0], 0.0)
    np.testing.assert_array_equal(mapped[ordered == 1.0], 1.0)


def test_platt_fit_corrects_a_distorted_probability() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.02, 0.98, 4000)
    outcome = rng.random(4000) < truth
    distorted = truth**3  # far too low
    calibrator = PlattCalibrator.fit(distorted, outcome)
    assert calibrator.note == "platt" and calibrator.slope > 0
    mapped = calibrator.transform(distorted)
    assert np.mean((mapped - outcome) ** 2) < np.mean((distorted - outcome) ** 2) - 0.02
    assert abs(mapped.mean() - outcome.mean()) < 0.02


@pytest.mark.parametrize(
    ("n", "rate", "anti", "note"),
    [
        (99, 0.5, False, "identity: 99 holdout samples, too few to calibrate"),
        (500, 0.0, False, "identity: 500 holdout samples, too few to calibrate"),
        (500, 1.0, False, "identity: 500 holdout samples, too few to calibrate"),
        (500, 0.5, True, "identity: fitted slope not positive"),
    ],
)
def test_platt_fit_keeps_identity_when_it_cannot_calibrate(
    n: int, rate: float, anti: bool, note: str
) -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, n)
    outcome = (p < 0.5) if anti else (rng.random(n) < rate)
    calibrator = PlattCalibrator.fit(p, outcome)
    assert calibrator.note == note
    np.testing.assert_array_equal(calibrator.transform(p), p)


# -- the time-based holdout --------------------------------------------------------------
def test_training_holdout_is_split_in_time(
    small_model: AdvisorModel, small_history: pd.DataFrame
) -> None:
    holdout = small_model.training["holdout"]
    split = pd.Timestamp(holdout["split_date"])
    assert split == CUTOFF - timedelta(days=150)
    samples = decision_samples(
        validate_history(small_history).valid, start=split.date(), as_of=AS_OF
    )
    assert holdout["decisions"] == len(samples)
    assert holdout["calibration_decisions"] == len(samples) // 2
    assert holdout["test_decisions"] == len(samples) - len(samples) // 2
    decided = np.sort(samples["decision_at"].to_numpy())
    assert decided[0] > split.to_datetime64()
    # Both outcomes (deadline, deadline + 30) were known by as_of for every decision.
    assert decided[-1] <= (CUTOFF - pd.Timedelta(days=34)).to_datetime64()
    # The calibration half comes strictly first in time; the test half starts at test_from.
    half = len(samples) // 2
    test_from = pd.Timestamp(holdout["test_from"])
    assert test_from == pd.Timestamp(decided[half])
    assert decided[half - 1] <= test_from.to_datetime64()
    recorded = small_model.training["calibration"]
    assert (recorded["slope"], recorded["intercept"], recorded["note"]) == (
        small_model.calibrator.slope,
        small_model.calibrator.intercept,
        small_model.calibrator.note,
    )
