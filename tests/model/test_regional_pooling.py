"""Regional pooling: destination_region is used where present, rare regions borrow from
their country, so a handful of very slow orders does not give a state an extreme p_late."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from model.km import LaneKaplanMeier
from model.predictor import AdvisorModel
from model.schema import validate_history, validate_open_orders
from model.train import TrainingConfig, train_model

AS_OF = date(2026, 6, 1)
WINDOW_DAYS = 20
# state: (shipments, median transit days). RR has a handful of very slow orders (below the
# 30-shipment pooling threshold); AC is thin but above it; AM is well populated and slow.
STATES = {"SP": (3000, 8), "MG": (1500, 12), "AM": (1500, 25), "RR": (6, 70), "AC": (40, 30)}


def brazil_history(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for state, (n, median) in STATES.items():
        shipped = pd.Timestamp(AS_OF) - pd.to_timedelta(rng.integers(60, 420, n), unit="D")
        transit = np.round(median * np.exp(rng.normal(0.0, 0.35, n))).astype(int)
        frames.append(
            pd.DataFrame(
                {
                    "order_id": [f"{state}-{i}" for i in range(n)],
                    "destination_country": "BR",
                    "shipping_method": "post",
                    "shipped_at": shipped,
                    "deadline": shipped + pd.Timedelta(days=WINDOW_DAYS),
                    "delivered_at": shipped + pd.to_timedelta(transit, unit="D"),
                    "destination_region": state,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return validate_history(brazil_history()).valid


@pytest.fixture(scope="module")
def model(history: pd.DataFrame) -> AdvisorModel:
    return train_model(history, AS_OF, TrainingConfig(hazard={"max_iter": 60}))


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    """One order per state, shipped today with a 20-day window, plus no / an unknown state."""
    regions = [*STATES, None, "ZZ"]
    raw = pd.DataFrame(
        {
            "order_id": [str(r) for r in regions],
            "destination_country": "BR",
            "shipping_method": "post",
            "shipped_at": AS_OF.isoformat(),
            "deadline": (AS_OF + timedelta(days=WINDOW_DAYS)).isoformat(),
            "destination_region": regions,
        }
    )
    return validate_open_orders(raw, as_of=AS_OF).valid


@pytest.fixture(scope="module")
def p_late(model: AdvisorModel, orders: pd.DataFrame) -> dict[str, float]:
    predicted = model.predict(orders, AS_OF)["p_late"].to_numpy()
    return dict(zip(orders["order_id"], predicted, strict=True))


def test_rare_state_gets_the_country_estimate_not_its_own_extreme(
    history: pd.DataFrame, orders: pd.DataFrame, p_late: dict[str, float]
) -> None:
    # Its own six orders say "always late"; a per-region Kaplan-Meier believes them.
    rr = history.loc[history["destination_region"] == "RR"]
    assert len(rr) == 6 and (rr["delivered_at"] > rr["deadline"]).all()
    km = LaneKaplanMeier(lanes=("destination_country", "destination_region")).fit(history, AS_OF)
    km_p = km.predict_conditional(
        orders,
        np.zeros(len(orders), dtype=np.int64),
        orders["deadline"].sub(orders["shipped_at"]).dt.days.to_numpy(),
    )
    assert km_p[orders["order_id"].tolist().index("RR")] == pytest.approx(1.0)
    # The model pools RR into Brazil: the same estimate as an order with no state at all.
    assert p_late["RR"] == pytest.approx(p_late["None"], abs=1e-9)
    assert p_late["RR"] < 0.5
    # An unseen state is pooled the same way.
    assert p_late["ZZ"] == pytest.approx(p_late["None"], abs=1e-9)


def test_pooled_estimate_lies_between_fast_and_slow_states(p_late: dict[str, float]) -> None:
    assert p_late["SP"] < p_late["None"] < p_late["AM"]


def test_well_populated_slow_state_is_later_than_a_fast_one(p_late: dict[str, float]) -> None:
    assert p_late["AM"] > p_late["SP"] + 0.4
    assert p_late["AM"] > p_late["MG"] > p_late["SP"]


def test_thin_state_above_the_threshold_keeps_its_own_direction(
    p_late: dict[str, float],
) -> None:
    # 40 orders with a 30-day median: its own estimate, above the country's pooled one.
    assert p_late["AC"] > p_late["None"] + 0.2
