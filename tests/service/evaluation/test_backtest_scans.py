"""The backtest with scans: both policies, both Bayes limits, and no scan after a decision
date ever reaches the probabilities that decision is judged on."""

from __future__ import annotations

import pandas as pd

from data.generate import DEFAULT_AS_OF as AS_OF
from data.generate import generate_shipments, true_survival, true_survival_given_scans
from model.backtest import holdout_start
from model.schema import validate_history
from service.evaluation.backtest import run_backtest
from service.policy import PolicyConfig
from tests.conftest import scans_for
from tests.model.test_scans import LEAKAGE_TRAINING, rewrite_after

PROBABILITIES = ["p_late", "p_late_after_extension", "p_late_lane_only", "last_milestone"]


def test_backtest_with_scans_reads_only_scans_up_to_each_decision() -> None:
    made = generate_shipments(8000, seed=29, as_of=AS_OF)
    history = validate_history(made.frame).valid
    policy = PolicyConfig()

    def backtest(events: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
        result = run_backtest(
            history,
            as_of=AS_OF,
            policy=policy,
            config=LEAKAGE_TRAINING,
            truth=true_survival,
            scans=scans_for(events, history),
            scan_truth=lambda f, d, h: true_survival_given_scans(f, made.events, d, h),
        )
        return result.summary, result.samples

    summary, samples = backtest(made.events)
    names = [row["strategy"] for row in summary["strategies"]]
    assert "policy_without_scans" in names and "bayes_limit_with_scans" in names
    scans = summary["scans"]
    assert scans["decisions_with_scans"] > 50
    assert 0 < scans["tracking_gain_captured"] <= 1.2
    assert {row["last_milestone"] for row in scans["by_last_milestone"]} >= {"(no scan)"}
    costs = {row["strategy"]: row["expected_cost"] for row in summary["strategies"]}
    assert costs["bayes_limit_with_scans"] <= costs["bayes_limit"]

    start = pd.Timestamp(holdout_start(AS_OF, 150))
    days_before = policy.act_within_days - 1
    _, rewritten = backtest(rewrite_after(made.events, history, days_before, start))
    pd.testing.assert_frame_equal(rewritten[PROBABILITIES], samples[PROBABILITIES])
