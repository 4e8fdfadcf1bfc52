"""The stage process (data/stages.py): its exact recursion, bridge and outcomes against sampling.

The sampler is the law; everything exact must agree with it. Laws come from the generator's
own lanes (``data.generate``), one group each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data import generate as gen
from data import stages
from data.stages import Kernel, Stage


def _lane_law(country: str, method: str, region: str | None = None) -> stages.StageLaw:
    c = gen._country_index([country])
    m = gen._method_index([method])
    ship = gen._to_days(pd.Series([pd.Timestamp("2026-06-01")]))
    keys = gen._group_keys(c, m, ship, gen._factor_index(c, gen._region_index([region])))
    return gen._law(keys)


def _one(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


def _monte_carlo(
    law: stages.StageLaw, start: Stage, cutoff: int, targets: list[int], n: int, seed: int
) -> np.ndarray:
    """Independent estimate of joint_survival: simulate journeys, keep what follows ``start``,
    draw the scans of later stages and the lost scan, count silent and late journeys."""
    rng = np.random.default_rng(seed)
    paths = stages.sample_paths(law, np.zeros(n, dtype=np.int64), rng)
    inside = paths.entry[:, start] >= 0
    entry, lost_stage = paths.entry[inside], paths.lost_stage[inside]
    m = len(entry)
    rel = np.where(entry >= 0, entry - entry[:, [start]], -1)
    seen = np.zeros(m, dtype=bool)
    for stage in stages.SCANNED_STAGES:
        if stage != start:
            scanned = rng.random(m) < law.scan[0, stage]
            seen |= (rel[:, stage] > 0) & (rel[:, stage] < cutoff) & scanned
    delay = np.maximum(
        np.rint(
            np.exp(
                law.mu[0, Kernel.LOST_SCAN, 0]
                + law.sigma[0, Kernel.LOST_SCAN, 0] * rng.standard_normal(m)
            )
        ),
        1,
    )
    lost_at = rel[np.arange(m), np.maximum(lost_stage, 0)]
    seen |= (lost_stage >= 0) & (lost_at + delay < cutoff) & (rng.random(m) < law.lost_scan[0])
    cell = rel[:, Stage.DELIVERED]
    return np.array([np.mean(~seen & ((cell < 0) | (cell >= x))) for x in [cutoff, *targets]])


@pytest.mark.parametrize(
    ("country", "method", "start", "cutoff_days", "horizons"),
    [
        ("BR", "cainiao_super_economy", Stage.HELD, 10, [20, 50, 90]),
        ("US", "epacket", Stage.OFD, 0.5, [1, 2, 10]),
        ("DE", "aliexpress_standard", Stage.DEPARTED, 4, [6, 10, 30]),
        ("MX", "aliexpress_premium", Stage.INFO, 2, [3, 8, 30]),
        ("BR", "aliexpress_premium", Stage.ARRIVED, 3, [5, 20, 60]),
    ],
)
def test_exact_recursion_matches_monte_carlo(
    country: str, method: str, start: Stage, cutoff_days: float, horizons: list[int]
) -> None:
    law = _lane_law(country, method, "SP")
    cutoff = round(cutoff_days * stages.CELLS_PER_DAY)
    targets = [h * stages.CELLS_PER_DAY for h in horizons]
    exact = stages.joint_survival(
        law, np.zeros(1, dtype=np.int64), np.array([start]), np.array([cutoff]),
        np.array([[cutoff, *targets]]),
    )[0]  # fmt: skip
    simulated = _monte_carlo(law, start, cutoff, targets, 400_000, seed=3)
    np.testing.assert_allclose(exact, simulated, atol=0.005)
    assert simulated[0] > 0.05  # enough silent journeys for the conditional to be checked
    np.testing.assert_allclose(exact[1:] / exact[0], simulated[1:] / simulated[0], atol=0.01)


def test_plain_survival_matches_sampling() -> None:
    law = _lane_law("BR", "aliexpress_standard", "PA")
    cell = stages.sample_paths(law, _one(300_000), np.random.default_rng(4)).delivered
    targets = np.array([10, 40, 120, 240, 400])
    exact = stages.survival_at(law, _one(1), targets[None, :])[0]
    simulated = [np.mean((cell < 0) | (cell >= t)) for t in targets]
    np.testing.assert_allclose(exact, simulated, atol=0.004)
    # joint_survival without a cutoff is the same survival
    plain = stages.joint_survival(law, _one(1), np.array([Stage.START]), np.zeros(1), targets[None])
    np.testing.assert_allclose(plain[0], exact, atol=1e-9)


def test_kernel_pmf_is_the_sampled_duration() -> None:
    law = _lane_law("CL", "cainiao_super_economy")
    durations = stages.sample_durations(law, _one(200_000), np.random.default_rng(5))
    for kernel in (Kernel.LABEL, Kernel.ORIGIN, Kernel.DOMESTIC, Kernel.FINAL):
        pmf = stages.kernel_pmf(law, kernel, stages.MAX_CELLS)[0]
        assert abs(pmf.sum() - 1.0) < 1e-6  # all the mass is on the grid
        counts = np.bincount(durations[:, kernel], minlength=stages.MAX_CELLS)[:400] / 200_000
        assert np.abs(np.cumsum(pmf[:400]) - np.cumsum(counts)).max() < 0.005, kernel


def test_outcomes_sum_to_one_and_match_sampling() -> None:
    law = _lane_law("BR", "cainiao_super_economy", "SP")
    exact = stages.outcome_probabilities(law)[0]
    assert exact.sum() == pytest.approx(1.0)
    paths = stages.sample_paths(law, _one(400_000), np.random.default_rng(6))
    returned = paths.entry[:, Stage.RETURNED] >= 0
    assert returned.mean() == pytest.approx(exact[Stage.RETURNED], abs=0.001)
    assert (paths.delivered >= 0).mean() == pytest.approx(exact[Stage.DELIVERED], abs=0.002)
    for stage in (Stage.PICKED, Stage.DEPARTED, Stage.CLEARED):
        assert (paths.lost_stage == stage).mean() == pytest.approx(exact[stage], abs=0.001)


def test_forced_outcome_draws_the_journey_given_its_end() -> None:
    """Lost at customs_cleared: whether it was held first follows the exact posterior."""
    law = _lane_law("BR", "aliexpress_standard", "SP")
    rng = np.random.default_rng(7)
    free = stages.sample_paths(law, _one(600_000), rng)
    lost_cleared = free.lost_stage == Stage.CLEARED
    forced = stages.sample_paths(
        law, _one(20_000), rng, outcome=np.full(20_000, int(Stage.CLEARED))
    )
    assert (forced.lost_stage == Stage.CLEARED).all()
    assert (forced.delivered < 0).all()
    held_free = (free.entry[lost_cleared, Stage.HELD] >= 0).mean()
    held_forced = (forced.entry[:, Stage.HELD] >= 0).mean()
    assert held_forced == pytest.approx(held_free, abs=0.03)
    back = stages.sample_paths(law, _one(1_000), rng, outcome=np.full(1_000, int(Stage.RETURNED)))
    assert (back.entry[:, Stage.RETURNED] > back.entry[:, Stage.RETURNING]).all()
    assert (back.lost_stage == -1).all()


@pytest.mark.parametrize(
    ("country", "method", "region", "low", "high"),
    [
        ("BR", "aliexpress_premium", "SP", 200, 240),  # held parcels
        ("DE", "aliexpress_standard", None, 160, 200),  # stuck parcels, far in the tail
    ],
)
def test_bridge_matches_forward_sampling_given_the_delivery(
    country: str, method: str, region: str | None, low: int, high: int
) -> None:
    law = _lane_law(country, method, region)
    rng = np.random.default_rng(8)
    forward = stages.sample_paths(law, _one(1_500_000), rng)
    cell = forward.delivered
    chosen = (cell >= low) & (cell < high)
    assert chosen.sum() > 5_000
    bridged = stages.sample_bridge(law, _one(int(chosen.sum())), cell[chosen], rng).entry
    reference = forward.entry[chosen]
    for stage in (Stage.DEPARTED, Stage.ARRIVED, Stage.HELD, Stage.CLEARED, Stage.OFD):
        entered_f, entered_b = reference[:, stage] >= 0, bridged[:, stage] >= 0
        assert entered_b.mean() == pytest.approx(entered_f.mean(), abs=0.02), stage
        if entered_f.mean() > 0.05:
            mean_f = reference[entered_f, stage].mean()
            mean_b = bridged[entered_b, stage].mean()
            assert mean_b == pytest.approx(mean_f, rel=0.03, abs=2.0), stage
    # every bridged journey is whole and in order
    order = [Stage.INFO, Stage.PICKED, Stage.DEPARTED, Stage.ARRIVED, Stage.CLEARED, Stage.OFD]
    cells = bridged[:, order]
    assert (np.diff(cells, axis=1) >= 1).all()
    assert (bridged[:, Stage.DELIVERED] > bridged[:, Stage.OFD]).all()


def test_entry_density_is_the_likelihood_of_two_scans() -> None:
    """Density of entering out_for_delivery d cells after customs_cleared, nothing between:
    the domestic leg's kernel itself."""
    law = _lane_law("BR", "aliexpress_standard", "PA")
    lags = np.array([4, 20, 60, 100])
    density = stages.entry_density(
        law, _one(4), np.full(4, int(Stage.CLEARED)), np.full(4, int(Stage.OFD)), lags
    )
    kernel = stages.kernel_pmf(law, Kernel.DOMESTIC, 200)[0]
    np.testing.assert_allclose(density, (1 - law.loss[0, Stage.CLEARED]) * kernel[lags], atol=1e-12)
