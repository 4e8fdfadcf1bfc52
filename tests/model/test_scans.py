"""Model behaviour with carrier scans: direction, the carrier's facts, invariants, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.generate import DEFAULT_AS_OF as AS_OF
from data.generate import generate_shipments
from model.events import MILESTONES, ScanTable, validate_events
from model.predictor import AdvisorModel
from model.schema import validate_history, validate_open_orders
from model.train import TrainingConfig, train_model
from tests.conftest import scans_for

CUTOFF = pd.Timestamp(AS_OF)
BR_ECONOMY = ("BR", "cainiao_super_economy")
DE_STANDARD = ("DE", "aliexpress_standard")


def orders_and_scans(
    lane: tuple[str, str], elapsed: int, deadline: int, journeys: dict[str, list[tuple[int, str]]]
) -> tuple[pd.DataFrame, ScanTable]:
    """One validated open order per journey (same lane and dates) and their scans; a
    journey lists (day after shipment, milestone)."""
    shipped = CUTOFF - pd.Timedelta(days=elapsed)
    orders = pd.DataFrame(
        {
            "order_id": list(journeys),
            "destination_country": lane[0],
            "shipping_method": lane[1],
            "shipped_at": shipped,
            "deadline": shipped + pd.Timedelta(days=deadline),
        }
    )
    events = pd.DataFrame(
        [
            {
                "order_id": name,
                "event_at": shipped + pd.Timedelta(days=day, hours=10),
                "milestone": milestone,
            }
            for name, journey in journeys.items()
            for day, milestone in journey
        ],
        columns=["order_id", "event_at", "milestone"],
    )
    valid = validate_open_orders(orders, as_of=AS_OF).valid
    return valid, ScanTable.from_frame(validate_events(events).valid)


def predicted(model: AdvisorModel, orders: pd.DataFrame, scans: ScanTable) -> pd.DataFrame:
    out = model.predict(orders, AS_OF, scans=scans)
    out.index = orders["order_id"]
    return out


BR_JOURNEY = [(0, "picked_up"), (4, "departed_origin"), (20, "arrived_destination")]


def test_customs_cleared_lowers_p_late_after_extension_on_a_slow_lane(
    scan_model: AdvisorModel,
) -> None:
    """Brazil, 60 days out, 3 days left: cleared customs 3 days ago vs no tracking at all,
    vs still held in customs."""
    orders, scans = orders_and_scans(
        BR_ECONOMY,
        60,
        63,
        {
            "untracked": [],
            "held": [*BR_JOURNEY, (22, "customs_hold")],
            "cleared": [*BR_JOURNEY, (22, "customs_hold"), (57, "customs_cleared")],
        },
    )
    p = predicted(scan_model, orders, scans)["p_late_after_extension"]
    assert p["cleared"] < p["untracked"] - 0.15, p
    assert p["cleared"] < p["held"] - 0.15, p


def test_a_long_silence_after_departure_raises_it_and_says_stalled(
    scan_model: AdvisorModel,
) -> None:
    """Germany, 40 days out: departed on day 2 and silent since, vs scanned on arrival."""
    orders, scans = orders_and_scans(
        DE_STANDARD,
        40,
        43,
        {
            "untracked": [],
            "silent": [(0, "picked_up"), (2, "departed_origin")],
            "arrived": [(0, "picked_up"), (2, "departed_origin"), (36, "arrived_destination")],
        },
    )
    out = predicted(scan_model, orders, scans)
    p = out["p_late_after_extension"]
    assert p["silent"] > p["untracked"] + 0.1, p
    assert p["silent"] > p["arrived"] + 0.3, p
    assert out["stalled"].to_dict() == {"untracked": False, "silent": True, "arrived": False}
    assert out["days_since_last_scan"]["silent"] == 38


def test_without_scans_the_model_answers_as_the_lane_only_model(
    scan_model: AdvisorModel,
) -> None:
    orders, scans = orders_and_scans(BR_ECONOMY, 60, 63, {"a": [], "b": []})
    with_table = scan_model.predict(orders, AS_OF, scans=scans)
    without = scan_model.predict(orders, AS_OF)
    pd.testing.assert_frame_equal(with_table, without)
    assert (with_table["last_milestone"] == -1).all()


@pytest.mark.parametrize("milestone", ["returning", "returned", "lost"])
def test_the_carriers_word_that_it_will_not_arrive_gives_one(
    scan_model: AdvisorModel, milestone: str
) -> None:
    orders, scans = orders_and_scans(
        DE_STANDARD, 30, 33, {"x": [(0, "picked_up"), (20, milestone)]}
    )
    out = scan_model.predict(orders, AS_OF, scans=scans)
    assert out[["p_late", "p_late_after_extension"]].to_numpy().tolist() == [[1.0, 1.0]]


def test_a_delivered_scan_by_as_of_makes_it_delivered_and_a_later_one_is_not_read(
    scan_model: AdvisorModel,
) -> None:
    orders, _ = orders_and_scans(DE_STANDARD, 30, 33, {"arrived": [], "future": []})
    future = ScanTable.from_frame(
        validate_events(
            pd.DataFrame(
                {
                    "order_id": ["arrived", "future", "future"],
                    "event_at": [
                        CUTOFF - pd.Timedelta(days=1),
                        CUTOFF - pd.Timedelta(days=30),
                        CUTOFF + pd.Timedelta(days=1),  # after as_of: never read
                    ],
                    "milestone": ["delivered", "picked_up", "delivered"],
                }
            )
        ).valid
    )
    out = predicted(scan_model, orders, future)
    assert out.loc["arrived", "delivered"] and out.loc["arrived", "p_late"] == 0.0
    assert not out.loc["future", "delivered"] and out.loc["future", "p_late"] > 0.0
    assert out.loc["future", "last_milestone"] == MILESTONES.index("picked_up")


JOURNEY_STEP = st.tuples(st.integers(0, 90), st.sampled_from(MILESTONES))


@settings(max_examples=60, deadline=None)
@given(
    journey=st.lists(JOURNEY_STEP, max_size=12),
    elapsed=st.integers(0, 120),
    left=st.integers(-10, 60),
    lane=st.sampled_from([BR_ECONOMY, DE_STANDARD, ("US", "epacket"), ("NZ", "express")]),
)
def test_scans_never_break_the_probability_invariants(
    scan_model: AdvisorModel,
    journey: list[tuple[int, str]],
    elapsed: int,
    left: int,
    lane: tuple[str, str],
) -> None:
    deadline = max(elapsed + left, 0)
    orders, scans = orders_and_scans(lane, elapsed, deadline, {"o": journey})
    out = scan_model.predict(orders, AS_OF, scans=scans)
    p_late = out["p_late"].to_numpy()
    p_after = out["p_late_after_extension"].to_numpy()
    assert np.all((p_after >= 0) & (p_after <= p_late) & (p_late <= 1)), out
    if out["delivered"].all():
        assert p_late.tolist() == [0.0]


# -- leakage: a scan after the decision date never reaches that decision ---------------------
LEAKAGE_TRAINING = TrainingConfig(
    holdout_days=150,
    hazard={"max_iter": 30, "max_person_days": 150_000},
    scans={"max_iter": 40, "random_landmarks": 2, "max_rows": 60_000},
)


def rewrite_after(
    events: pd.DataFrame, history: pd.DataFrame, days_before: int, split: pd.Timestamp
) -> pd.DataFrame:
    """Every scan dated after both its order's decision day (deadline - ``days_before``) and
    the holdout split replaced by one ``lost`` scan the day after; earlier scans kept. (The
    model fitted at the split rightly learns from scans up to the split.)"""
    decision = history.set_index("order_id")["deadline"] - pd.Timedelta(days=days_before)
    last_seen = decision.clip(lower=split)
    when = events["order_id"].map(last_seen)
    after = events["event_at"].dt.normalize() > when
    kept = events.loc[~after]
    replaced = (
        events.loc[after, ["order_id"]]
        .drop_duplicates()
        .assign(
            event_at=lambda f: f["order_id"].map(last_seen) + pd.Timedelta(days=1, hours=9),
            milestone="lost",
        )
    )
    return pd.concat([kept, replaced], ignore_index=True)


@pytest.fixture(scope="module")
def leak_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    made = generate_shipments(8000, seed=23, as_of=AS_OF)
    return validate_history(made.frame).valid, made.events


def holdout_of(history: pd.DataFrame, events: pd.DataFrame) -> dict:
    model = train_model(history, AS_OF, LEAKAGE_TRAINING, scans=scans_for(events, history))
    return {
        "holdout": model.training["holdout"],
        "calibration": model.training["calibration"],
        "scan_calibration": model.training["scans"]["calibration"],
    }


def test_holdout_and_calibration_never_read_a_scan_after_the_decision(
    leak_data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    history, events = leak_data
    days_before = LEAKAGE_TRAINING.decision_days_before
    original = holdout_of(history, events)
    assert original["holdout"]["scans"]["test_decisions_with_scans"] > 20
    split = pd.Timestamp(original["holdout"]["split_date"])
    rewritten = rewrite_after(events, history, days_before, split)
    assert len(rewritten) != len(events)  # the rewrite did change scans
    assert holdout_of(history, rewritten) == original
    # The control: rewriting scans up to the decision day does change the holdout.
    shifted = events.assign(milestone="exception")
    assert holdout_of(history, shifted)["holdout"] != original["holdout"]
