"""The extension policy (service/policy.py): least expected cost inside the action window."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.errors import PolicyConfigError
from service.policy import (
    ACTIONS,
    REASON_MESSAGES,
    PolicyConfig,
    decide,
    expected_costs,
    load_policy,
    reason_message,
)

DEFAULT = PolicyConfig()
CHOICES = ("none", "extend", "escalate")


def hand_costs(p_late: float, p_after: float) -> tuple[float, float, float]:
    """Expected cost of none / extend / escalate under the README's default table, by hand.

    Outcomes: on time (1 - p_late), within +30 days (p_late - p_after), later (p_after).
    none: 0 / 1.0 / 1.0; extend: 0.02 / 0.02 / 1.05; escalate: 0.3 / 0.5 / 0.7.
    """
    none = p_late
    extend = 0.02 + 1.03 * p_after
    escalate = 0.3 + 0.2 * p_late + 0.2 * p_after
    return none, extend, escalate


def decide_one(
    p_late: float,
    p_after: float,
    *,
    days_remaining: int = 2,
    delivered: bool = False,
    in_dispute: bool = False,
    extensions: int = 0,
    config: PolicyConfig = DEFAULT,
    structural_lag: bool = False,
    unseen_country: bool = False,
) -> tuple[str, str]:
    decisions = decide(
        p_late=np.array([p_late]),
        p_after=np.array([p_after]),
        days_remaining=np.array([days_remaining]),
        delivered=np.array([delivered]),
        in_dispute=np.array([in_dispute]),
        extensions=np.array([extensions]),
        config=config,
        structural_lag=np.array([structural_lag]),
        unseen_country=np.array([unseen_country]),
    )
    return str(decisions.action[0]), str(decisions.reasons[0])


# -- the design's worked cases ----------------------------------------------------------
def test_late_but_still_coming_is_extended() -> None:
    """Brazil-like: late, but very likely to arrive within the extension."""
    assert decide_one(0.9, 0.1, structural_lag=True) == (
        "extend",
        "within_5_days;structural_lag;late_but_coming",
    )


def test_probably_lost_is_escalated() -> None:
    assert decide_one(0.95, 0.9) == ("escalate", "within_5_days;likely_lost")


def test_likely_on_time_needs_no_action() -> None:
    # none costs p_late; extend costs 0.02 + 1.03 p_after (0.0612 here).
    assert decide_one(0.05, 0.04) == ("none", "within_5_days;likely_on_time")
    assert decide_one(0.01, 0.0) == ("none", "within_5_days;likely_on_time")


def test_cheap_extension_beats_a_small_late_risk_that_would_still_arrive() -> None:
    """A consequence of the default table worth pinning: 5 % late but nearly all of it
    arrives within +30 days -> extending (0.0303) beats doing nothing (0.05)."""
    assert decide_one(0.05, 0.01)[0] == "extend"


# -- hypothesis: the rule on any probabilities -------------------------------------------
probability_pairs = st.tuples(
    st.floats(0.0, 1.0, allow_nan=False), st.floats(0.0, 1.0, allow_nan=False)
).map(lambda pair: (max(pair), min(pair)))


@given(probability_pairs)
def test_in_window_action_minimises_the_hand_computed_default_cost(
    pair: tuple[float, float],
) -> None:
    p_late, p_after = pair
    costs = hand_costs(p_late, p_after)
    action, _ = decide_one(p_late, p_after)
    assert costs[CHOICES.index(action)] <= min(costs) + 1e-12
    np.testing.assert_allclose(
        expected_costs(np.array([p_late]), np.array([p_after]), DEFAULT)[0], costs, atol=1e-12
    )


# Exact arithmetic: costs on a 1/4 grid and probabilities on a 1/16 grid are exact binary
# fractions, so ties are real ties and the tie-break can be checked exactly.
quarter = st.integers(0, 8).map(lambda k: k / 4)
sixteenth = st.integers(0, 16)


@st.composite
def exact_cases(draw: st.DrawFn) -> tuple[PolicyConfig, float, float]:
    rows = {
        action: {
            "on_time": draw(quarter),
            "within_extension": draw(quarter),
            "beyond": draw(quarter),
        }
        for action in CHOICES
    }
    late = draw(sixteenth)
    after = draw(st.integers(0, late))
    return PolicyConfig.model_validate({"costs": rows}), late / 16, after / 16


@given(exact_cases())
@settings(max_examples=300)
def test_least_cost_with_ties_to_the_least_invasive_action(
    case: tuple[PolicyConfig, float, float],
) -> None:
    config, p_late, p_after = case
    outcome = (1 - Fraction(p_late), Fraction(p_late) - Fraction(p_after), Fraction(p_after))
    exact = [
        sum(
            Fraction(c) * o for c, o in zip(getattr(config.costs, a).vector(), outcome, strict=True)
        )
        for a in CHOICES
    ]
    cheapest = min(exact)
    expected = next(a for a, cost in zip(CHOICES, exact, strict=True) if cost == cheapest)
    assert decide_one(p_late, p_after, config=config)[0] == expected


def test_exact_ties_go_to_none_then_extend() -> None:
    flat = {"on_time": 0.5, "within_extension": 0.5, "beyond": 0.5}
    config = PolicyConfig.model_validate(
        {
            "costs": {
                "none": {"on_time": 0, "within_extension": 1, "beyond": 1},
                "extend": flat,
                "escalate": flat,
            }
        }
    )
    assert decide_one(0.5, 0.25, config=config)[0] == "none"  # 0.5 = 0.5 = 0.5
    assert decide_one(1.0, 0.5, config=config)[0] == "extend"  # 1 > 0.5 = 0.5


orders = st.fixed_dictionaries(
    {
        "pair": probability_pairs,
        "days_remaining": st.integers(-20, 60),
        "delivered": st.booleans(),
        "in_dispute": st.booleans(),
        "extensions": st.integers(0, 4),
    }
)


@given(st.lists(orders, min_size=1, max_size=40), st.integers(0, 3), st.integers(1, 10))
@settings(max_examples=200)
def test_rule_invariants_on_any_batch(
    batch: list[dict[str, object]], max_extensions: int, act_within: int
) -> None:
    config = PolicyConfig(max_extensions=max_extensions, act_within_days=act_within)
    p = np.array([o["pair"] for o in batch], dtype=float)
    remaining = np.array([o["days_remaining"] for o in batch])
    delivered = np.array([o["delivered"] for o in batch])
    disputed = np.array([o["in_dispute"] for o in batch])
    extensions = np.array([o["extensions"] for o in batch])
    decisions = decide(
        p_late=p[:, 0],
        p_after=p[:, 1],
        days_remaining=remaining,
        delivered=delivered,
        in_dispute=disputed,
        extensions=extensions,
        config=config,
    )
    for i, action in enumerate(decisions.action):
        codes = decisions.reasons[i].split(";")
        assert action in ACTIONS
        assert all(c in REASON_MESSAGES or c == f"within_{act_within}_days" for c in codes)
        if delivered[i]:
            assert (action, codes) == ("none", ["delivered"])
        elif disputed[i]:
            assert (action, codes[0]) == ("respond_to_dispute", "dispute_open")
        elif remaining[i] < 0:
            assert (action, codes) == ("none", ["window_closed"])
        elif remaining[i] >= act_within:
            assert (action, codes) == ("none", ["outside_window"])
        else:
            assert codes[0] == f"within_{act_within}_days"
            assert action in CHOICES
            if extensions[i] >= max_extensions:
                assert action != "extend"
                assert "max_extensions_reached" in codes
            else:
                assert "max_extensions_reached" not in codes
        if disputed[i] or extensions[i] >= max_extensions:
            assert action != "extend"


@given(probability_pairs, st.integers(2, 4))
def test_extension_limit_falls_back_to_the_cheaper_of_none_and_escalate(
    pair: tuple[float, float], extensions: int
) -> None:
    p_late, p_after = pair
    none, _, escalate = hand_costs(p_late, p_after)
    action, _ = decide_one(p_late, p_after, extensions=extensions)
    assert action in ("none", "escalate")
    assert (none, escalate)[("none", "escalate").index(action)] <= min(none, escalate) + 1e-12


def test_dispute_overrides_even_a_clear_extension_case() -> None:
    assert decide_one(0.9, 0.1, in_dispute=True) == ("respond_to_dispute", "dispute_open")
    assert decide_one(0.9, 0.1, in_dispute=True, days_remaining=-3)[0] == "respond_to_dispute"
    assert decide_one(0.9, 0.1, in_dispute=True, delivered=True) == ("none", "delivered")


def test_action_window_boundaries() -> None:
    assert decide_one(0.9, 0.1, days_remaining=5)[0] == "none"
    assert decide_one(0.9, 0.1, days_remaining=4)[0] == "extend"
    assert decide_one(0.9, 0.1, days_remaining=0)[0] == "extend"
    assert decide_one(0.9, 0.1, days_remaining=-1) == ("none", "window_closed")


def test_unseen_country_reason_is_kept() -> None:
    assert decide_one(0.95, 0.9, unseen_country=True)[1] == (
        "within_5_days;likely_lost;unseen_country"
    )


def test_reason_messages() -> None:
    assert reason_message("within_7_days") == (
        "Fewer than 7 days remain before the deadline: time to decide."
    )
    assert reason_message("likely_lost") == REASON_MESSAGES["likely_lost"]


# -- policy file -------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_readme_table() -> None:
    assert load_policy(None) == DEFAULT
    assert DEFAULT.act_within_days == 5
    assert DEFAULT.extension_days == 30
    assert DEFAULT.max_extensions == 2
    assert DEFAULT.respond_within_days == 5
    np.testing.assert_array_equal(
        DEFAULT.cost_matrix(), [[0, 1.0, 1.0], [0.02, 0.02, 1.05], [0.3, 0.5, 0.7]]
    )


def test_valid_file_overrides_only_what_it_sets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "act_within_days = 7\nmax_extensions = 1\n"
        "[costs.extend]\non_time = 0.05\nwithin_extension = 0.05\nbeyond = 1.2\n",
    )
    config = load_policy(path)
    assert config.act_within_days == 7
    assert config.max_extensions == 1
    assert config.extension_days == 30
    np.testing.assert_array_equal(
        config.cost_matrix(), [[0, 1.0, 1.0], [0.05, 0.05, 1.2], [0.3, 0.5, 0.7]]
    )
    assert decide_one(0.9, 0.1, days_remaining=6, config=config)[0] == "extend"
    assert decide_one(0.9, 0.1, extensions=1, config=config)[0] == "escalate"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("foo = 1\n", "foo: Extra inputs are not permitted"),
        (
            "[costs.none]\non_time = -1\nwithin_extension = 1\nbeyond = 1\n",
            "costs.none.on_time: Input should be greater than or equal to 0",
        ),
        (
            "[costs.extend]\non_time = 0.05\n",
            "costs.extend.within_extension: Field required; costs.extend.beyond: Field required",
        ),
        ("act_within_days = 0\n", "act_within_days: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_values_are_rejected_with_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyConfigError) as raised:
        load_policy(path)
    assert str(raised.value) == f"policy file {path}: {problem}"


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyConfigError) as raised:
        load_policy(missing)
    assert str(raised.value) == f"policy file not found: {missing}"
    broken = write(tmp_path, "x = [\n")
    with pytest.raises(PolicyConfigError) as raised:
        load_policy(broken)
    assert str(raised.value).startswith(f"policy file {broken} is not valid TOML: ")
    assert "\n" not in str(raised.value)
