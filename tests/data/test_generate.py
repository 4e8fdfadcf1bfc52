"""Behaviour of the synthetic data generator (data/generate.py)."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data import generate as gen
from data import stages
from data.generate import (
    BR_STATES,
    DEFAULT_AS_OF,
    DEFAULT_SEED,
    EVENT_COLUMNS,
    GENERATOR_VERSION,
    HISTORY_COLUMNS,
    OPEN_ORDER_COLUMNS,
    WINDOW_DAYS,
    generate_history,
    generate_open,
    generate_open_orders,
    generate_shipments,
    read_generator_meta,
    true_survival,
    true_survival_given_scans,
    write_generated,
)
from data.stages import Stage
from model import events as events_schema

FAR_AS_OF = date(2030, 1, 1)  # history 2028-2029: no event, two CNYs and peaks
DATE_COLUMNS = ("shipped_at", "deadline", "delivered_at")


@pytest.fixture(scope="module")
def scanned() -> gen.Generated:
    return generate_shipments(60_000)


@pytest.fixture(scope="module")
def history(scanned: gen.Generated) -> pd.DataFrame:
    return scanned.frame


@pytest.fixture(scope="module")
def old_generated() -> gen.Generated:
    return generate_shipments(300_000, seed=11, as_of=FAR_AS_OF)


@pytest.fixture(scope="module")
def old_history(old_generated: gen.Generated) -> pd.DataFrame:
    """Rows shipped at least 250 days before as_of: uncensored for horizons below 250."""
    frame = old_generated.frame
    cut = pd.Timestamp(FAR_AS_OF) - pd.Timedelta(days=250)
    return frame[frame["shipped_at"] <= cut].reset_index(drop=True)


@pytest.fixture(scope="module")
def open_generated() -> gen.Generated:
    return generate_open(20_000)


@pytest.fixture(scope="module")
def open_orders(open_generated: gen.Generated) -> pd.DataFrame:
    return open_generated.frame


def _transit_days(frame: pd.DataFrame) -> np.ndarray:
    """Observed T_days, inf where not delivered."""
    days = (frame["delivered_at"] - frame["shipped_at"]).dt.days
    return days.to_numpy(dtype=np.float64, na_value=np.inf)


def _lane(country: str, method: str, shipped: str, region: str | None, n: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "destination_country": [country] * n,
            "shipping_method": [method] * n,
            "shipped_at": [pd.Timestamp(shipped)] * n,
            "destination_region": [region] * n,
        }
    )


# --- determinism, schema -------------------------------------------------------------------


def test_same_seed_same_frame_other_seed_differs() -> None:
    a = generate_history(3_000, seed=5)
    pd.testing.assert_frame_equal(a, generate_history(3_000, seed=5))
    b = generate_history(3_000, seed=6)
    assert not a.drop(columns="order_id").equals(b.drop(columns="order_id"))
    assert (a["order_id"] == b["order_id"]).all()  # the id format does not depend on the seed
    o = generate_open_orders(2_000, seed=5)
    pd.testing.assert_frame_equal(o, generate_open_orders(2_000, seed=5))
    assert not o.equals(generate_open_orders(2_000, seed=6))


def test_history_columns_and_types(history: pd.DataFrame) -> None:
    assert tuple(history.columns) == HISTORY_COLUMNS
    assert len(history) == 60_000
    assert history["order_id"].is_unique
    assert history["order_id"].str.fullmatch(r"H\d{9}").all()
    assert history["order_id"].iloc[0] == "H000000001"
    assert history["destination_country"].str.fullmatch(r"[A-Z]{2}").all()
    assert set(history["shipping_method"]) == set(gen.METHODS)
    for col in DATE_COLUMNS:
        assert history[col].dtype == "datetime64[ns]"
        present = history[col].dropna()
        assert (present == present.dt.normalize()).all()
    window = (history["deadline"] - history["shipped_at"]).dt.days
    assert set(window.unique()) <= set(WINDOW_DAYS.tolist())
    assert window.between(30, 120).all()
    assert (history["weight_g"] > 0).all() and (history["declared_value_usd"] > 0).all()
    assert history["weight_g"].dtype == np.float64


def test_volume_shares_and_long_tail(history: pd.DataFrame) -> None:
    counts = history["destination_country"].value_counts()
    assert 25 <= len(counts) <= 30
    assert counts.index[0] in {"US", "BR"}
    assert counts["US"] > 5 * counts["JP"]
    assert (counts < 20).sum() >= 3  # a long tail of near-empty lanes


def test_regions_only_for_brazil(history: pd.DataFrame) -> None:
    br = history["destination_country"] == "BR"
    assert history.loc[br, "destination_region"].isin(list(BR_STATES)).all()
    assert history.loc[~br, "destination_region"].isna().all()
    assert history.loc[br, "destination_region"].value_counts().index[0] == "SP"


# --- censoring, dates ------------------------------------------------------------------------


def test_censoring_at_as_of() -> None:
    as_of = date(2025, 6, 30)
    frame = generate_history(30_000, seed=2, as_of=as_of)
    cut = pd.Timestamp(as_of)
    assert frame["shipped_at"].max() < cut
    assert frame["shipped_at"].min() >= cut - pd.Timedelta(days=gen.HISTORY_DAYS)
    delivered = frame.dropna(subset=["delivered_at"])
    assert (delivered["delivered_at"] <= cut).all()
    assert (delivered["delivered_at"] >= delivered["shipped_at"]).all()
    recent = frame["shipped_at"] >= cut - pd.Timedelta(days=7)
    assert frame.loc[recent, "delivered_at"].isna().mean() > 0.8  # still travelling
    old = frame["shipped_at"] <= cut - pd.Timedelta(days=365)
    assert frame.loc[old, "delivered_at"].isna().mean() < 0.05  # only the lost ones


def test_volume_peaks_after_singles_day() -> None:
    frame = generate_history(100_000, seed=3)
    per_day = frame["shipped_at"].value_counts().sort_index()
    singles = per_day[pd.Timestamp("2025-11-13") : pd.Timestamp("2025-11-18")].mean()
    october = per_day[pd.Timestamp("2025-10-06") : pd.Timestamp("2025-10-31")].mean()
    assert singles > 1.8 * october


# --- the transit model -----------------------------------------------------------------------


def test_brazil_much_slower_than_germany(old_history: pd.DataFrame) -> None:
    t = _transit_days(old_history)
    country = old_history["destination_country"]
    br = float(np.median(t[(country == "BR").to_numpy()]))
    de = float(np.median(t[(country == "DE").to_numpy()]))
    assert br >= 2 * de
    assert br > 30


def test_true_survival_matches_sampling_overall(old_history: pd.DataFrame) -> None:
    t = _transit_days(old_history)
    horizons = np.array([5, 10, 15, 20, 30, 45, 60, 90, 120, 200])
    expected = true_survival(old_history, np.tile(horizons, (len(old_history), 1))).mean(axis=0)
    empirical = (t[:, None] > horizons[None, :]).mean(axis=0)
    np.testing.assert_allclose(empirical, expected, atol=0.005)


@pytest.mark.parametrize(
    ("country", "method"),
    [
        ("BR", "aliexpress_standard"),
        ("DE", "aliexpress_standard"),
        ("US", "epacket"),
        ("MX", "cainiao_super_economy"),
    ],
)
def test_true_survival_matches_sampling_per_lane(
    old_history: pd.DataFrame, country: str, method: str
) -> None:
    lane = old_history[
        (old_history["destination_country"] == country) & (old_history["shipping_method"] == method)
    ]
    assert len(lane) > 1_000
    t = _transit_days(lane)
    for d in (7, 14, 21, 30, 45, 60, 90, 150):
        empirical = float((t > d).mean())
        expected = float(true_survival(lane, np.full(len(lane), d)).mean())
        se = np.sqrt(max(expected * (1 - expected), 1e-4) / len(lane))
        assert abs(empirical - expected) < max(4 * se, 0.005), (d, empirical, expected)


def test_true_survival_matches_sampling_in_peak_and_cny(old_history: pd.DataFrame) -> None:
    shipped = old_history["shipped_at"]
    in_peak = (shipped >= "2028-11-11") & (shipped <= "2028-12-10")
    in_cny = (shipped >= "2029-02-06") & (shipped <= "2029-02-25")  # CNY 2029 = 13 Feb
    for mask in (in_peak, in_cny):
        part = old_history[mask]
        assert len(part) > 5_000
        t = _transit_days(part)
        for d in (10, 20, 40, 80):
            expected = float(true_survival(part, np.full(len(part), d)).mean())
            assert abs(float((t > d).mean()) - expected) < 0.01


def test_true_survival_shape_monotone_and_bounded(history: pd.DataFrame) -> None:
    rows = history.iloc[:500]
    grid = np.tile(np.arange(0, 400), (len(rows), 1))
    surv = true_survival(rows, grid)
    assert surv.shape == grid.shape
    assert ((surv >= 0) & (surv <= 1)).all()
    assert (np.diff(surv, axis=1) <= 1e-12).all()
    # Only lost parcels remain, and no lane loses more than the generator's 25% cap.
    assert (surv[:, -1] > 0).all() and (surv[:, -1] <= 0.25).all()
    one = true_survival(rows, grid[:, 30])
    assert one.shape == (len(rows),)
    np.testing.assert_allclose(one, surv[:, 30])
    np.testing.assert_allclose(true_survival(rows, np.full(len(rows), -1)), 1.0)
    # P(T_days > 20.7) = P(T_days > 20): T_days is an integer
    np.testing.assert_allclose(true_survival(rows, np.full(len(rows), 20.7)), surv[:, 20])


def test_true_survival_covariates_act_in_the_right_direction() -> None:
    def s(country: str, method: str, shipped: str, region: str | None, d: int = 20) -> float:
        return float(true_survival(_lane(country, method, shipped, region), np.array([d]))[0])

    std = "aliexpress_standard"
    assert s("BR", std, "2026-06-01", "PA") > s("BR", std, "2026-06-01", "SP")
    mixed = s("BR", std, "2026-06-01", None)
    assert s("BR", std, "2026-06-01", "SP") < mixed < s("BR", std, "2026-06-01", "PA")
    assert s("DE", std, "2025-11-20", None) > s("DE", std, "2025-06-01", None)  # peak season
    assert s("DE", std, "2026-02-17", None) > s("DE", std, "2026-04-01", None)  # CNY
    assert s("DE", "express", "2026-06-01", None) < s("DE", std, "2026-06-01", None)
    assert s("DE", "cainiao_super_economy", "2026-06-01", None) > s("DE", std, "2026-06-01", None)
    # lost parcels: the long-run survival is the loss rate, higher for untracked economy
    far = 10_000
    assert s("DE", "express", "2026-06-01", None, far) < s("DE", std, "2026-06-01", None, far)
    assert s("DE", std, "2026-06-01", None, far) < s(
        "DE", "cainiao_super_economy", "2026-06-01", None, far
    )
    # an unknown country and method fall back to a default lane instead of failing
    unknown = s("AR", "mystery_post", "2026-06-01", None)
    assert 0 < unknown < 1
    assert unknown == pytest.approx(s("ZZ", "aliexpress_standard", "2026-06-01", None))


def test_brazil_missing_state_is_the_state_mixture(history: pd.DataFrame) -> None:
    br = history[history["destination_country"] == "BR"].iloc[:3_000]
    d = np.full(len(br), 45)
    mixed = true_survival(br.assign(destination_region=None), d).mean()
    assert mixed == pytest.approx(true_survival(br, d).mean(), abs=0.01)


def test_late_shares_are_realistic(history: pd.DataFrame) -> None:
    window = (history["deadline"] - history["shipped_at"]).dt.days.to_numpy()
    late = true_survival(history, window)
    beyond = true_survival(history, window + 30)
    br = (history["destination_country"] == "BR").to_numpy()
    assert 0.05 <= late.mean() <= 0.15
    assert late[br].mean() > 1.5 * late[~br].mean()
    assert late.mean() - beyond.mean() > 0.03  # a +30 extension saves a decent share


# --- open orders ------------------------------------------------------------------------------


def test_open_orders_snapshot(open_orders: pd.DataFrame) -> None:
    o = open_orders
    as_of = pd.Timestamp(DEFAULT_AS_OF)
    assert tuple(o.columns) == OPEN_ORDER_COLUMNS
    assert o["order_id"].is_unique and o["order_id"].str.fullmatch(r"O\d{9}").all()
    assert (o["shipped_at"] <= as_of).all()
    left = (o["deadline"] - as_of).dt.days
    assert (left >= 0).all()
    assert 0.4 <= ((left >= 0) & (left < 5)).mean() <= 0.6
    assert (left >= 5).mean() > 0.3
    base = (o["deadline"] - o["shipped_at"]).dt.days - 30 * o["extensions"]
    assert base.isin(WINDOW_DAYS.tolist()).all()
    share = o["extensions"].value_counts(normalize=True)
    assert share[0] > 0.7 and 0.05 < share[1] < 0.25 and 0 < share[2] < 0.1
    delivered = o.dropna(subset=["delivered_at"])
    assert 0.01 < len(delivered) / len(o) < 0.05
    assert (delivered["delivered_at"] <= as_of).all()
    assert (delivered["delivered_at"] >= delivered["shipped_at"]).all()


def test_open_orders_disputes(open_orders: pd.DataFrame) -> None:
    disputed = open_orders.dropna(subset=["dispute_opened_at"])
    assert len(disputed) == round(0.03 * len(open_orders))
    assert (disputed["dispute_opened_at"] >= disputed["shipped_at"] + pd.Timedelta(days=10)).all()
    assert (disputed["dispute_opened_at"] <= pd.Timestamp(DEFAULT_AS_OF)).all()
    none = generate_open_orders(1_000, dispute_share=0.0)
    assert none["dispute_opened_at"].isna().all()
    with pytest.raises(ValueError, match="dispute_share"):
        generate_open_orders(10, dispute_share=1.5)


def _lane_law(country: str, method: str, shipped: str, region: str | None) -> stages.StageLaw:
    """The stage law of one lane and ship date (one group)."""
    lane = _lane(country, method, shipped, region)
    c = gen._country_index(lane["destination_country"])
    m = gen._method_index(lane["shipping_method"])
    keys = gen._group_keys(
        c, m, gen._to_days(lane["shipped_at"]), gen._factor_index(c, gen._region_index([region]))
    )
    return gen._law(keys)


@pytest.mark.parametrize(
    ("country", "method", "region", "elapsed"),
    [
        ("BR", "aliexpress_standard", "PA", 40),  # mostly by rejection
        ("DE", "aliexpress_standard", None, 55),  # mostly lost, late ones bridged back
        ("US", "express", None, 30),  # almost only the lost remain
    ],
)
def test_open_orders_transit_is_drawn_given_not_yet_delivered(
    country: str, method: str, region: str | None, elapsed: int
) -> None:
    """The conditional draw of open orders is exact: T_days given T_days > elapsed."""
    n = 40_000
    law = _lane_law(country, method, "2026-06-01", region)
    lane = _lane(country, method, "2026-06-01", region)
    group = np.zeros(n, dtype=np.int64)
    threshold = np.full(n, (elapsed + 1) * stages.CELLS_PER_DAY)
    rng = np.random.default_rng(0)
    paths = gen._sample_conditional(law, group, threshold, np.zeros(n, dtype=bool), rng)
    cell = paths.delivered
    t_days = np.where(cell >= 0, cell // stages.CELLS_PER_DAY, np.inf)
    assert (t_days > elapsed).all()
    s_e = true_survival(lane, np.array([elapsed]))[0]
    for d in (elapsed + 3, elapsed + 10, elapsed + 30, elapsed + 100):
        expected = true_survival(lane, np.array([d]))[0] / s_e
        assert abs(float((t_days > d).mean()) - expected) < 0.01, (d, expected)
    # the journeys are whole: every stage before the end was entered, in order
    lost = paths.lost_stage >= 0
    assert (paths.entry[:, Stage.INFO] >= 0).all()
    delivered = cell >= 0
    assert (paths.entry[delivered, Stage.OFD] < cell[delivered]).all()
    assert (paths.entry[delivered, Stage.CLEARED] < paths.entry[delivered, Stage.OFD]).all()
    assert not (lost & delivered).any()
    before = gen._sample_conditional(law, group, threshold, np.ones(n, dtype=bool), rng)
    assert ((before.delivered >= 0) & (before.delivered < threshold)).all()


def test_open_orders_on_fast_lanes_far_past_their_median_are_mostly_lost() -> None:
    """The snapshot carries the conditional law: a DE parcel missing at day 55 is likely lost."""
    n = 20_000
    threshold = np.full(n, 56 * stages.CELLS_PER_DAY)
    group = np.zeros(n, dtype=np.int64)
    never = np.zeros(n, dtype=bool)
    de = gen._sample_conditional(
        _lane_law("DE", "aliexpress_standard", "2026-06-01", None), group, threshold, never,
        np.random.default_rng(1),
    )  # fmt: skip
    assert (de.delivered < 0).mean() > 0.5
    br = gen._sample_conditional(
        _lane_law("BR", "aliexpress_standard", "2026-06-01", "SP"), group, threshold, never,
        np.random.default_rng(1),
    )  # fmt: skip
    assert (br.delivered < 0).mean() < 0.2


def test_open_orders_scans_stop_at_as_of(open_generated: gen.Generated) -> None:
    frame, events = open_generated.frame, open_generated.events
    as_of = pd.Timestamp(DEFAULT_AS_OF)
    assert (events["event_at"] < as_of + pd.Timedelta(days=1)).all()
    _check_scans_consistent(frame, events)
    delivered_scan = events.loc[events["milestone"] == "delivered", "order_id"].unique()
    has_delivery = frame.loc[frame["delivered_at"].notna(), "order_id"]
    assert set(delivered_scan) <= set(has_delivery)
    assert len(delivered_scan) > 0.8 * len(has_delivery)  # most are tracked and scanned
    assert events["order_id"].nunique() < len(frame)  # untracked open orders exist


# --- scans -------------------------------------------------------------------------------------

_RANK = {m: i for i, m in enumerate(events_schema.MILESTONES)}
_JOURNEY_RANK = {
    stages.MILESTONE_OF_STAGE[s]: stages.TOPO_ORDER.index(s) for s in stages.SCANNED_STAGES
}


def _check_scans_consistent(frame: pd.DataFrame, events: pd.DataFrame) -> None:
    """What every generated events table must satisfy against its frame."""
    assert tuple(events.columns) == EVENT_COLUMNS
    assert events["event_at"].dtype == "datetime64[ns]"
    for col in ("order_id", "milestone", "carrier", "location", "description"):
        assert events[col].dtype == "str", col
        assert (events[col].str.len() > 0).all(), col
    assert events["milestone"].isin(events_schema.MILESTONES).all()
    position = pd.Index(frame["order_id"]).get_indexer(events["order_id"])
    assert (position >= 0).all()
    # sorted by order (frame order), then time
    key = pd.DataFrame({"p": position, "t": events["event_at"].to_numpy()})
    assert key.equals(key.sort_values(["p", "t"], kind="stable").reset_index(drop=True))
    shipped = frame["shipped_at"].to_numpy()[position]
    delivered = frame["delivered_at"].to_numpy()[position]
    at = events["event_at"].to_numpy()
    assert (at >= shipped).all()  # never before shipped_at
    has = ~pd.isna(delivered)
    day = at.astype("datetime64[D]")
    assert (day[has] <= delivered[has].astype("datetime64[D]")).all()  # none after delivery
    is_delivered = (events["milestone"] == "delivered").to_numpy()
    assert has[is_delivered].all()  # a delivered scan means a delivered order ...
    assert (day[is_delivered] == delivered[is_delivered].astype("datetime64[D]")).all()  # on it
    # the milestones follow the journey's order
    journey = events["milestone"].map(_JOURNEY_RANK).to_numpy(dtype=float, na_value=np.nan)
    same = position[1:] == position[:-1]
    both = same & ~np.isnan(journey[1:]) & ~np.isnan(journey[:-1])
    assert (journey[1:][both] >= journey[:-1][both]).all()
    # lost / exception / returned end the order's scans (exact duplicates aside)
    unique = events.drop_duplicates().reset_index(drop=True)
    order = unique["order_id"].to_numpy()
    last = np.append(order[1:] != order[:-1], True)
    ending = unique["milestone"].isin(["lost", "exception", "returned"]).to_numpy()
    assert last[ending].all()
    gone = events.loc[events["milestone"].isin(["lost", "exception", "returning", "returned"])]
    assert frame.set_index("order_id").loc[gone["order_id"].unique(), "delivered_at"].isna().all()


def test_shipments_frame_is_the_history_and_scans_are_deterministic() -> None:
    generated = generate_shipments(3_000, seed=5)
    pd.testing.assert_frame_equal(generated.frame, generate_history(3_000, seed=5))
    again = generate_shipments(3_000, seed=5)
    pd.testing.assert_frame_equal(generated.events, again.events)
    other = generate_shipments(3_000, seed=6)
    assert not generated.events.equals(other.events)
    opened = generate_open(1_000, seed=5)
    pd.testing.assert_frame_equal(opened.frame, generate_open_orders(1_000, seed=5))
    pd.testing.assert_frame_equal(opened.events, generate_open(1_000, seed=5).events)


def test_history_scans_are_consistent(scanned: gen.Generated) -> None:
    frame, events = scanned.frame, scanned.events
    _check_scans_consistent(frame, events)
    assert (events["event_at"] < pd.Timestamp(DEFAULT_AS_OF) + pd.Timedelta(days=1)).all()
    assert (events["event_at"] != events["event_at"].dt.normalize()).mean() > 0.99  # times of day
    assert 5 <= len(events) / len(frame) <= 8
    share = events.duplicated().mean()
    assert 0.002 < share < 0.01  # a few exact duplicates


def test_untracked_orders_exist_mostly_super_economy(scanned: gen.Generated) -> None:
    frame, events = scanned.frame, scanned.events
    tracked = frame["order_id"].isin(events["order_id"])
    by_method = (~tracked).groupby(frame["shipping_method"]).mean()
    assert 0.2 < by_method["cainiao_super_economy"] < 0.32
    assert 0.01 < by_method["aliexpress_standard"] < 0.06
    assert by_method["express"] < 0.02
    # an untracked order is still delivered like any other
    assert frame.loc[~tracked, "delivered_at"].notna().mean() > 0.8


def test_scan_rates_follow_the_lanes(scanned: gen.Generated) -> None:
    frame, events = scanned.frame, scanned.events
    lanes = frame.set_index("order_id").loc[events["order_id"]]
    customs = events["milestone"].isin(["customs_hold", "customs_cleared"]).to_numpy()
    silent = lanes["destination_country"].isin(["PL", "KR", "JP", "NL"]).to_numpy()
    assert not (customs & silent).any()  # some lanes never scan customs
    assert customs[lanes["destination_country"].to_numpy() == "US"].any()
    # carriers miss scans, super economy's most
    arrived = events["milestone"].to_numpy() == "arrived_destination"
    method = lanes["shipping_method"].to_numpy()
    orders = frame["shipping_method"].value_counts()
    scanned_share = {m: (arrived & (method == m)).sum() / orders[m] for m in orders.index}
    assert scanned_share["express"] > scanned_share["cainiao_super_economy"] + 0.2


def test_brazilian_holds_are_scanned_slow_and_sometimes_returned(
    scanned: gen.Generated,
) -> None:
    frame, events = scanned.frame, scanned.events
    br = frame[frame["destination_country"] == "BR"]
    br_events = events[events["order_id"].isin(br["order_id"])]
    held = br_events.loc[br_events["milestone"] == "customs_hold", "order_id"].unique()
    share = len(held) / len(br)
    assert 0.25 < share < 0.45  # ~42 % held, ~85 % of holds scanned, some untracked
    days = (br["delivered_at"] - br["shipped_at"]).dt.days
    is_held = br["order_id"].isin(held)
    assert days[is_held].median() > 2 * days[~is_held].median()
    returned = set(br_events.loc[br_events["milestone"] == "returned", "order_id"])
    returning = set(br_events.loc[br_events["milestone"] == "returning", "order_id"])
    assert returned and returned & returning  # refused or unpaid: returning, then returned
    outside = events[~events["order_id"].isin(br["order_id"])]
    assert not outside["milestone"].isin(["returning", "returned"]).any()
    # Correios texts on the Brazilian leg, English elsewhere
    arrived = br_events.loc[br_events["milestone"] == "arrived_destination"]
    assert (arrived["description"] == "Objeto recebido pelos Correios do Brasil").all()
    express = br.set_index("order_id").loc[arrived["order_id"], "shipping_method"] == "express"
    assert (arrived["carrier"][~express.to_numpy()] == "Correios").all()
    assert not outside["description"].str.startswith("Objeto").any()


def test_lost_parcels_scans_stop(scanned: gen.Generated) -> None:
    frame, events = scanned.frame, scanned.events
    old = frame[
        frame["shipped_at"] < pd.Timestamp(DEFAULT_AS_OF) - pd.Timedelta(days=365)
    ].set_index("order_id")
    never = old.index[old["delivered_at"].isna()]
    assert len(never) > 100
    theirs = events[events["order_id"].isin(never)]
    assert not (theirs["milestone"] == "delivered").any()
    last = theirs.groupby("order_id")["milestone"].last()
    # they stopped somewhere on the way; a share say so with a lost / exception scan
    assert last.isin(["lost", "exception", "returned"]).mean() > 0.2
    assert last.isin(["departed_origin", "arrived_destination", "picked_up"]).any()
    marked = events["milestone"].isin(["lost", "exception"])
    assert (
        frame.set_index("order_id").loc[events.loc[marked, "order_id"], "delivered_at"].isna().all()
    )


# --- the truth with scans ---------------------------------------------------------------------


def _landmarks(
    generated: gen.Generated, elapsed: int, n: int, seed: int, drop_region: bool = False
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Up to n uncensored history rows undelivered at day ``elapsed``: (rows, decision dates,
    observed T_days)."""
    frame = generated.frame
    cut = pd.Timestamp(FAR_AS_OF) - pd.Timedelta(days=250)
    t = _transit_days(frame)
    keep = ((frame["shipped_at"] <= cut) & (t > elapsed)).to_numpy()
    rows = frame[keep].sample(min(n, int(keep.sum())), random_state=seed)
    if drop_region:
        rows = rows.assign(destination_region=None)
    decision = (rows["shipped_at"] + pd.Timedelta(days=elapsed)).to_numpy()
    return rows.reset_index(drop=True), decision, _transit_days(rows)


def _last_milestone(events: pd.DataFrame, rows: pd.DataFrame, decision: np.ndarray) -> pd.Series:
    by_order = pd.Series(decision, index=rows["order_id"])
    mine = events[events["order_id"].isin(rows["order_id"])]
    mine = mine[
        mine["event_at"] < by_order.loc[mine["order_id"]].to_numpy() + np.timedelta64(1, "D")
    ]
    last = mine.groupby("order_id")["milestone"].last()
    return last.reindex(rows["order_id"]).fillna("(none)").reset_index(drop=True)


@pytest.mark.parametrize("elapsed", [6, 15, 30, 60])
def test_given_scans_matches_generated_outcomes(old_generated: gen.Generated, elapsed: int) -> None:
    """For parcels undelivered at day e, by last milestone seen by then, the mean predicted
    P(T_days > e + h) matches the observed share within sampling error."""
    rows, decision, t = _landmarks(old_generated, elapsed, 12_000, seed=elapsed)
    horizons = np.array([2, 7, 25])
    days = elapsed + np.tile(horizons, (len(rows), 1))
    predicted = true_survival_given_scans(rows, old_generated.events, decision, days)
    observed = t[:, None] > days
    last = _last_milestone(old_generated.events, rows, decision)
    checked = 0
    for name, part in last.groupby(last):
        i = part.index.to_numpy()
        if len(i) < 300:
            continue
        checked += 1
        p = predicted[i]
        se = np.sqrt((p * (1 - p)).sum(axis=0)) / len(i)
        gap = np.abs(observed[i].mean(axis=0) - p.mean(axis=0))
        assert (gap < 4 * se + 0.005).all(), (name, gap, se)
    assert checked >= 3


def test_given_scans_with_unknown_brazilian_state(old_generated: gen.Generated) -> None:
    """Without the state, the posterior mixes the states by how well each explains the scans."""
    rows, decision, t = _landmarks(old_generated, 20, 12_000, seed=1)
    rows = rows[rows["destination_country"] == "BR"].reset_index(drop=True)
    brazil = rows.assign(destination_region=None)
    decision = (rows["shipped_at"] + pd.Timedelta(days=20)).to_numpy()
    t = _transit_days(rows)
    days = np.tile([25, 40, 60], (len(rows), 1))
    known = true_survival_given_scans(rows, old_generated.events, decision, days)
    mixed = true_survival_given_scans(brazil, old_generated.events, decision, days)
    observed = (t[:, None] > days).mean(axis=0)
    se = np.sqrt((mixed * (1 - mixed)).sum(axis=0)) / len(rows)
    assert (np.abs(mixed.mean(axis=0) - observed) < 4 * se + 0.005).all()
    assert np.abs(mixed - known).max() > 0.01  # the state matters ...
    assert np.abs(mixed.mean(axis=0) - known.mean(axis=0)).max() < 0.01  # ... on average not


def test_given_scans_without_scans_before_shipping_is_the_prior(history: pd.DataFrame) -> None:
    rows = history.iloc[:2_000]
    days = np.tile([5, 20, 60], (len(rows), 1))
    before = (rows["shipped_at"] - pd.Timedelta(days=1)).to_numpy()
    empty = pd.DataFrame({c: [] for c in EVENT_COLUMNS})
    np.testing.assert_allclose(
        true_survival_given_scans(rows, empty, before, days), true_survival(rows, days), atol=1e-9
    )


def test_given_scans_never_sees_the_future(scanned: gen.Generated) -> None:
    frame, events = scanned.frame, scanned.events
    rows = frame[frame["shipped_at"] < pd.Timestamp("2026-01-01")].iloc[:3_000]
    decision = (rows["shipped_at"] + pd.Timedelta(days=12)).to_numpy()
    days = np.tile([15, 45], (len(rows), 1))
    full = true_survival_given_scans(rows, events, decision, days)
    by_order = pd.Series(decision, index=rows["order_id"])
    mine = events[events["order_id"].isin(rows["order_id"])]
    seen = mine["event_at"] < by_order.loc[mine["order_id"]].to_numpy() + np.timedelta64(1, "D")
    assert (~seen).any()
    np.testing.assert_array_equal(true_survival_given_scans(rows, mine[seen], decision, days), full)
    fake = mine[seen].assign(
        event_at=by_order.loc[mine[seen]["order_id"]].to_numpy() + np.timedelta64(36, "h"),
        milestone="delivered",
    )
    with_fake = pd.concat([events, fake])
    np.testing.assert_array_equal(true_survival_given_scans(rows, with_fake, decision, days), full)


def test_given_scans_reads_what_the_scans_show() -> None:
    """A late Brazilian parcel cleared by customs is closer than a silent one; a long silence
    after departure on a fast lane means lost; terminal scans are certain."""
    rows = pd.concat(
        [
            _lane("BR", "aliexpress_standard", "2026-03-02", "SP", 3),
            _lane("DE", "aliexpress_standard", "2026-03-02", None, 3),
        ],
        ignore_index=True,
    )
    rows.insert(0, "order_id", [f"X{i}" for i in range(len(rows))])
    t0 = pd.Timestamp("2026-03-02")
    scans = pd.DataFrame(
        {
            "order_id": ["X1", "X2", "X4", "X5"],
            "event_at": [t0 + pd.Timedelta(days=d, hours=9) for d in (40, 3, 2, 15)],
            "milestone": ["customs_cleared", "lost", "departed_origin", "delivered"],
        }
    )
    decision = np.full(len(rows), np.datetime64("2026-04-16"))  # day 45
    days = np.tile([50, 75], (len(rows), 1))
    p = true_survival_given_scans(rows, scans, decision, days)
    assert p[1, 0] < p[0, 0] - 0.2  # cleared customs: arrives soon; silent: maybe held
    np.testing.assert_array_equal(p[2], [1.0, 1.0])  # lost scan
    np.testing.assert_array_equal(p[5], [0.0, 0.0])  # delivered before the decision
    assert p[4, 1] > 0.8  # silent 43 days after departing on a fast lane: lost
    assert p[4, 1] > p[3, 1]  # more surely than with no tracking at all
    assert (np.diff(p, axis=1) <= 0).all()
    one = true_survival_given_scans(rows, scans, decision, days[:, 0])
    np.testing.assert_allclose(one, p[:, 0], atol=1e-12)


def test_given_scans_rejects_bad_events(history: pd.DataFrame) -> None:
    rows = history.iloc[:3]
    decision = (rows["shipped_at"] + pd.Timedelta(days=10)).to_numpy()
    bad = pd.DataFrame(
        {"order_id": [rows["order_id"].iloc[0]], "event_at": [rows["shipped_at"].iloc[0]],
         "milestone": ["teleported"]}
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown milestone 'teleported'"):
        true_survival_given_scans(rows, bad, decision, np.full(3, 20))
    early = bad.assign(
        milestone="picked_up", event_at=rows["shipped_at"].iloc[0] - pd.Timedelta(hours=1)
    )
    with pytest.raises(ValueError, match="before shipped_at"):
        true_survival_given_scans(rows, early, decision, np.full(3, 20))


# --- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["history.csv", "nested/dir/history.csv.gz", "h.parquet"])
def test_write_read_round_trip(tmp_path: Path, name: str, history: pd.DataFrame) -> None:
    frame = history.iloc[:2_000]
    path = tmp_path / name
    write_generated(frame, path, seed=DEFAULT_SEED, as_of=DEFAULT_AS_OF, kind="history")
    if name.endswith(".parquet"):
        back = pd.read_parquet(path)
    else:
        back = pd.read_csv(
            path, dtype={"destination_region": object}, keep_default_na=False, na_values=[""]
        )
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert raw["shipped_at"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
        assert (raw.loc[frame["delivered_at"].isna().to_numpy(), "delivered_at"] == "").all()
        for col in DATE_COLUMNS:
            back[col] = pd.to_datetime(back[col]).astype("datetime64[ns]")
    assert list(back.columns) == list(HISTORY_COLUMNS)
    for col in DATE_COLUMNS:
        pd.testing.assert_series_equal(
            back[col].astype("datetime64[ns]"), frame[col].reset_index(drop=True)
        )
    assert (back["order_id"].astype(str) == frame["order_id"].to_numpy()).all()
    assert back["destination_region"].isna().sum() == frame["destination_region"].isna().sum()
    np.testing.assert_allclose(back["declared_value_usd"], frame["declared_value_usd"])
    meta = read_generator_meta(path)
    assert meta == {
        "generator": "window-advisor",
        "generator_version": GENERATOR_VERSION,
        "seed": DEFAULT_SEED,
        "as_of": "2026-11-01",
        "rows": 2_000,
        "kind": "history",
    }
    assert path.with_name(path.name + ".generator.json").exists()


def test_write_rejects_unknown_suffix_and_meta_ignores_foreign_sidecars(tmp_path: Path) -> None:
    frame = generate_open_orders(50)
    with pytest.raises(ValueError, match=r"\.xlsx"):
        write_generated(frame, tmp_path / "o.xlsx", seed=1, as_of=DEFAULT_AS_OF, kind="open")
    plain = tmp_path / "o.csv"
    frame.to_csv(plain, index=False)
    assert read_generator_meta(plain) is None
    (tmp_path / "o.csv.generator.json").write_text(json.dumps({"generator": "other"}))
    assert read_generator_meta(plain) is None
    (tmp_path / "o.csv.generator.json").write_text("not json")
    assert read_generator_meta(plain) is None


def test_million_rows_is_fast() -> None:
    start = time.perf_counter()
    frame = generate_history(1_000_000, seed=1)
    elapsed = time.perf_counter() - start
    assert len(frame) == 1_000_000 and frame["order_id"].is_unique
    assert elapsed < 15, elapsed


def test_as_of_default_and_explicit_agree() -> None:
    a = generate_history(500)
    b = generate_history(500, as_of=DEFAULT_AS_OF)
    pd.testing.assert_frame_equal(a, b)
    shifted = generate_history(500, as_of=DEFAULT_AS_OF + timedelta(days=10))
    assert shifted["shipped_at"].max() > a["shipped_at"].max() - pd.Timedelta(days=1)
