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
from data.generate import (
    BR_STATES,
    DEFAULT_AS_OF,
    DEFAULT_SEED,
    GENERATOR_VERSION,
    HISTORY_COLUMNS,
    OPEN_ORDER_COLUMNS,
    WINDOW_DAYS,
    generate_history,
    generate_open_orders,
    read_generator_meta,
    true_survival,
    write_generated,
)

FAR_AS_OF = date(2030, 1, 1)  # history 2028-2029: no event, two CNYs and peaks
DATE_COLUMNS = ("shipped_at", "deadline", "delivered_at")


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(60_000)


@pytest.fixture(scope="module")
def old_history() -> pd.DataFrame:
    """Rows shipped at least 250 days before as_of: uncensored for horizons below 250."""
    frame = generate_history(300_000, seed=11, as_of=FAR_AS_OF)
    cut = pd.Timestamp(FAR_AS_OF) - pd.Timedelta(days=250)
    return frame[frame["shipped_at"] <= cut].reset_index(drop=True)


@pytest.fixture(scope="module")
def open_orders() -> pd.DataFrame:
    return generate_open_orders(20_000)


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


def test_open_orders_transit_is_drawn_given_not_yet_delivered() -> None:
    n = 100_000
    lane = _lane("BR", "aliexpress_standard", "2026-01-20", "PA", n)
    law = gen._law(
        gen._country_index(lane["destination_country"]),
        gen._method_index(lane["shipping_method"]),
        gen._to_days(lane["shipped_at"]),
        np.full(n, BR_STATES["PA"][1]),
    )
    elapsed = 40
    rng = np.random.default_rng(0)
    t, feasible = gen._sample_transit_conditional(
        law, np.full(n, elapsed + 1.0), np.ones(n, dtype=bool), rng
    )
    assert feasible.all()
    t_days = np.floor(t)
    assert (t_days > elapsed).all()
    s_e = true_survival(lane.iloc[:1], np.array([elapsed]))[0]
    for d in (50, 70, 100, 150):
        expected = true_survival(lane.iloc[:1], np.array([d]))[0] / s_e
        assert abs(float((t_days > d).mean()) - expected) < 0.01
    t, feasible = gen._sample_transit_conditional(
        law, np.full(n, elapsed + 1.0), np.zeros(n, dtype=bool), rng
    )
    assert feasible.all() and (np.floor(t) <= elapsed).all()


def test_open_orders_on_fast_lanes_far_past_their_median_are_mostly_lost() -> None:
    """The snapshot carries the conditional law: a DE parcel missing at day 55 is likely lost."""
    n = 20_000
    lane = _lane("DE", "aliexpress_standard", "2026-06-01", None, n)
    law = gen._law(
        gen._country_index(lane["destination_country"]),
        gen._method_index(lane["shipping_method"]),
        gen._to_days(lane["shipped_at"]),
        np.ones(n),
    )
    t, _ = gen._sample_transit_conditional(
        law, np.full(n, 56.0), np.ones(n, dtype=bool), np.random.default_rng(1)
    )
    assert np.isinf(t).mean() > 0.5
    lane_br = _lane("BR", "aliexpress_standard", "2026-06-01", "SP", n)
    law_br = gen._law(
        gen._country_index(lane_br["destination_country"]),
        gen._method_index(lane_br["shipping_method"]),
        gen._to_days(lane_br["shipped_at"]),
        np.full(n, BR_STATES["SP"][1]),
    )
    t_br, _ = gen._sample_transit_conditional(
        law_br, np.full(n, 56.0), np.ones(n, dtype=bool), np.random.default_rng(1)
    )
    assert np.isinf(t_br).mean() < 0.2


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
