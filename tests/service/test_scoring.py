"""The one scoring function (service/scoring.py): columns, order and per-action fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.generate import DEFAULT_AS_OF as AS_OF
from model.predictor import AdvisorModel
from model.schema import validate_open_orders
from service.policy import ACTIONS, REASON_MESSAGES, PolicyConfig
from service.scoring import (
    SCORED_COLUMNS,
    score_columns,
    score_frame,
    score_raw,
    scored_frame,
)

EXPECTED_COLUMNS = [
    "order_id",
    "action",
    "extend_by_days",
    "new_deadline",
    "days_remaining",
    "p_late",
    "p_late_after_extension",
    "respond_by",
    "reasons",
    "model_version",
    "last_milestone",
    "days_since_last_scan",
]
PRIMARY = {
    "none": {"delivered", "window_closed", "outside_window", "within_5_days"},
    "extend": {"within_5_days"},
    "escalate": {"within_5_days"},
    "respond_to_dispute": {"dispute_open"},
}


@pytest.fixture(scope="module")
def orders(open_orders: pd.DataFrame) -> pd.DataFrame:
    """The generated open orders plus a closed-window one, shuffled (input order != ids)."""
    closed = open_orders.iloc[[0]].copy()
    closed["order_id"] = "closed-window"
    closed["delivered_at"] = pd.NaT
    closed["dispute_opened_at"] = pd.NaT
    closed["deadline"] = pd.Timestamp(AS_OF) - pd.Timedelta(days=2)
    frame = pd.concat([open_orders, closed], ignore_index=True)
    frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    result = validate_open_orders(frame, as_of=AS_OF)
    assert result.rejects.empty
    return result.valid


@pytest.fixture(scope="module")
def scored(orders: pd.DataFrame, small_model: AdvisorModel) -> pd.DataFrame:
    return score_frame(orders, small_model, PolicyConfig(), AS_OF)


def test_columns_and_row_order(scored: pd.DataFrame, orders: pd.DataFrame) -> None:
    assert list(scored.columns) == EXPECTED_COLUMNS == list(SCORED_COLUMNS)
    assert scored["order_id"].tolist() == orders["order_id"].tolist()
    assert set(scored["action"]) == set(ACTIONS)  # every action occurs: checks below bite


def test_extension_fields_iff_extend(scored: pd.DataFrame, orders: pd.DataFrame) -> None:
    extend = (scored["action"] == "extend").to_numpy()
    assert np.array_equal(scored["extend_by_days"].to_numpy() == 30, extend)
    assert (scored.loc[~extend, "extend_by_days"] == 0).all()
    new_deadline = pd.to_datetime(scored["new_deadline"])
    assert new_deadline.notna().to_numpy().tolist() == extend.tolist()
    expected = orders["deadline"] + pd.Timedelta(days=30)
    assert (new_deadline[extend] == expected[extend]).all()


def test_respond_by_iff_respond_to_dispute(scored: pd.DataFrame, orders: pd.DataFrame) -> None:
    respond = (scored["action"] == "respond_to_dispute").to_numpy()
    respond_by = pd.to_datetime(scored["respond_by"])
    assert respond_by.notna().to_numpy().tolist() == respond.tolist()
    expected = orders["dispute_opened_at"] + pd.Timedelta(days=5)
    assert (respond_by[respond] == expected[respond]).all()
    disputed = orders["dispute_opened_at"].notna() & ~(
        orders["delivered_at"] <= pd.Timestamp(AS_OF)
    )
    assert respond.tolist() == disputed.tolist()


def test_days_remaining_probabilities_reasons_and_version(
    scored: pd.DataFrame, orders: pd.DataFrame, small_model: AdvisorModel
) -> None:
    remaining = (orders["deadline"] - pd.Timestamp(AS_OF)).dt.days
    assert scored["days_remaining"].tolist() == remaining.tolist()
    assert scored["days_remaining"].dtype == np.int64
    predicted = small_model.predict(orders, AS_OF)
    np.testing.assert_array_equal(scored["p_late"], predicted["p_late"])
    np.testing.assert_array_equal(
        scored["p_late_after_extension"], predicted["p_late_after_extension"]
    )
    assert (scored["model_version"] == small_model.model_version).all()
    for action, reasons in zip(scored["action"], scored["reasons"], strict=True):
        codes = reasons.split(";")
        assert all(code in REASON_MESSAGES or code == "within_5_days" for code in codes)
        assert codes[0] in PRIMARY[action], (action, reasons)
        assert len(set(codes)) == len(codes)


def test_closed_window_gets_none(scored: pd.DataFrame) -> None:
    row = scored.set_index("order_id").loc["closed-window"]
    assert (row["action"], row["days_remaining"]) == ("none", -2)
    assert row["reasons"].split(";")[0] == "window_closed"


def test_policy_numbers_flow_into_the_fields(
    orders: pd.DataFrame, small_model: AdvisorModel
) -> None:
    policy = PolicyConfig(extension_days=20, respond_within_days=3)
    scored = score_frame(orders, small_model, policy, AS_OF)
    extend = (scored["action"] == "extend").to_numpy()
    respond = (scored["action"] == "respond_to_dispute").to_numpy()
    assert extend.any() and respond.any()
    assert set(scored.loc[extend, "extend_by_days"]) == {20}
    new_deadline = pd.to_datetime(scored["new_deadline"])
    assert (new_deadline[extend] == (orders["deadline"] + pd.Timedelta(days=20))[extend]).all()
    respond_by = pd.to_datetime(scored["respond_by"])
    expected = orders["dispute_opened_at"] + pd.Timedelta(days=3)
    assert (respond_by[respond] == expected[respond]).all()


def test_score_raw_keeps_every_row_in_scored_or_rejects(
    open_orders: pd.DataFrame, small_model: AdvisorModel
) -> None:
    raw = open_orders.head(50).astype({"destination_country": object, "extensions": object})
    raw.loc[3, "destination_country"] = "XX"
    raw.loc[17, "extensions"] = "-2"
    batch = score_raw(raw, small_model, PolicyConfig(), AS_OF)
    assert batch.rejects["line"].tolist() == [5, 19]
    assert batch.rejects["reason"].tolist() == [
        "'XX' is not an ISO 3166-1 alpha-2 country code",
        "negative extensions",
    ]
    assert len(batch.scored) + len(batch.rejects) == len(raw)
    kept = raw.drop(index=[3, 17])["order_id"].tolist()
    assert batch.scored["order_id"].tolist() == kept
    direct = score_frame(
        validate_open_orders(raw.drop(index=[3, 17]), as_of=AS_OF).valid,
        small_model,
        PolicyConfig(),
        AS_OF,
    )
    pd.testing.assert_frame_equal(batch.scored, direct)


def test_all_rows_rejected_gives_an_empty_scored_frame(
    open_orders: pd.DataFrame, small_model: AdvisorModel
) -> None:
    raw = open_orders.head(3).astype({"destination_country": object})
    raw["destination_country"] = "XX"
    batch = score_raw(raw, small_model, PolicyConfig(), AS_OF)
    assert len(batch.rejects) == 3
    assert batch.scored.empty
    assert list(batch.scored.columns) == EXPECTED_COLUMNS


@pytest.mark.parametrize("rows", [1, 7, 64, 65, 400])
def test_column_arrays_score_like_the_frame(
    orders: pd.DataFrame, small_model: AdvisorModel, rows: int
) -> None:
    """The service's path (plain arrays, no DataFrame; small inputs take the dict look-ups)
    gives the same values and dtypes as the frame path, on both sides of the small-input
    cut-off."""
    frame = orders.iloc[:rows].reset_index(drop=True)
    arrays = {name: frame[name].to_numpy() for name in frame.columns}
    from_arrays = score_columns(arrays, small_model, PolicyConfig(), AS_OF)
    assert list(from_arrays) == list(SCORED_COLUMNS)
    assert all(len(values) == rows for values in from_arrays.values())
    expected = score_frame(frame, small_model, PolicyConfig(), AS_OF)
    pd.testing.assert_frame_equal(scored_frame(from_arrays), expected)
    assert from_arrays["new_deadline"].dtype == np.dtype("datetime64[ns]")
    assert from_arrays["respond_by"].dtype == np.dtype("datetime64[ns]")
