"""The extension policy: probabilities in, the least-expected-cost action out.

Pure functions of arrays and a :class:`PolicyConfig`. Inside the last ``act_within_days``
of the window, for an undelivered order not in dispute, with ``p_on_time = 1 - p_late``,
``p_saved = p_late - p_late_after_extension`` and ``p_beyond = p_late_after_extension``,
each action's expected cost is ``cost[action] . (p_on_time, p_saved, p_beyond)`` in units of
the order's value; the cheapest wins, ties going to the least invasive action
(``none`` before ``extend`` before ``escalate``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.errors import PolicyConfigError
from model.events import MILESTONES

__all__ = [
    "ACTIONS",
    "REASON_MESSAGES",
    "TRACKING_REASONS",
    "CostRow",
    "Decisions",
    "PolicyConfig",
    "decide",
    "expected_costs",
    "load_policy",
    "reason_message",
]

ACTIONS = ("none", "extend", "escalate", "respond_to_dispute")
_CHOICES = ("none", "extend", "escalate")  # what the cost comparison picks among

REASON_MESSAGES: dict[str, str] = {
    "delivered": "The parcel has been delivered; nothing to do.",
    "dispute_open": "A dispute is open: answer it before the platform refunds the buyer.",
    "window_closed": "The receipt window has already closed.",
    "outside_window": "More days remain than the action window; check again later.",
    "likely_on_time": "The parcel will most likely arrive by the deadline.",
    "structural_lag": "This destination routinely arrives late (structural lag).",
    "late_but_coming": "Likely late, but likely to arrive within the extension.",
    "likely_lost": "Likely late and unlikely to arrive even after an extension.",
    "max_extensions_reached": "The window was already extended the maximum number of times.",
    "unseen_country": "No history for this country: a pooled estimate was used.",
    "sparse_lane": "Little history for this country: a pooled estimate was used.",
    "stalled": "No carrier scan for far longer than this lane usually stays silent after the"
    " last one: probably lost.",
    "in_customs": "Held in customs at the destination (on some lanes this takes weeks).",
    "cleared_customs": "Cleared customs at the destination: the last leg is under way.",
    "out_for_delivery": "Out for delivery.",
    "delivery_failed": "A delivery attempt failed: the buyer may need to rearrange delivery.",
    "awaiting_pickup": "Waiting at a pickup point for the buyer to collect.",
    "returning_to_sender": "The carrier is returning the parcel to the sender: it will not"
    " reach the buyer.",
    "reported_lost": "The carrier reported the parcel lost.",
    "carrier_exception": "The carrier reported an exception (a delay, an address problem or"
    " damage).",
}

TRACKING_REASONS: dict[str, str] = {
    "customs_hold": "in_customs",
    "customs_cleared": "cleared_customs",
    "out_for_delivery": "out_for_delivery",
    "delivery_failed": "delivery_failed",
    "available_for_pickup": "awaiting_pickup",
    "returning": "returning_to_sender",
    "returned": "returning_to_sender",
    "lost": "reported_lost",
    "exception": "carrier_exception",
}
"""The reason code a latest scan of each milestone adds (other milestones add none)."""
_TRACKING_CODES: tuple[str, ...] = ("", *dict.fromkeys(TRACKING_REASONS.values()))
# Milestone code (index into MILESTONES, -1 for "no scan" at the end) -> index into the above.
_TRACKING_OF_MILESTONE = np.array(
    [_TRACKING_CODES.index(TRACKING_REASONS.get(m, "")) for m in MILESTONES] + [0],
    dtype=np.int64,
)


class CostRow(BaseModel):
    """Cost of one action for each outcome, in units of the order's value."""

    model_config = ConfigDict(extra="forbid")
    on_time: float = Field(ge=0)
    within_extension: float = Field(ge=0)
    beyond: float = Field(ge=0)

    def vector(self) -> np.ndarray:
        return np.array([self.on_time, self.within_extension, self.beyond])


class Costs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    none: CostRow = CostRow(on_time=0.0, within_extension=1.0, beyond=1.0)
    extend: CostRow = CostRow(on_time=0.02, within_extension=0.02, beyond=1.05)
    escalate: CostRow = CostRow(on_time=0.3, within_extension=0.5, beyond=0.7)


class PolicyConfig(BaseModel):
    """Every number of the decision rule; defaults are the README's policy table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    act_within_days: int = Field(5, ge=1, le=60)
    extension_days: int = Field(30, ge=1, le=180)
    max_extensions: int = Field(2, ge=0, le=10)
    respond_within_days: int = Field(5, ge=1, le=30)
    likely_threshold: float = Field(0.5, gt=0, lt=1)
    costs: Costs = Costs()

    def cost_matrix(self) -> np.ndarray:
        """Rows: none, extend, escalate; columns: on time, within extension, beyond."""
        return np.vstack([getattr(self.costs, a).vector() for a in _CHOICES])


def load_policy(path: Path | None) -> PolicyConfig:
    """Read a policy TOML file (keys as in :class:`PolicyConfig`); None gives the defaults."""
    if path is None:
        return PolicyConfig()
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyConfigError(f"policy file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyConfigError(f"policy file {path} is not valid TOML: {exc}") from None
    try:
        return PolicyConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyConfigError(f"policy file {path}: {problems}") from None


def expected_costs(p_late: np.ndarray, p_after: np.ndarray, config: PolicyConfig) -> np.ndarray:
    """Expected cost of none / extend / escalate per order, shape (n, 3)."""
    p_late = np.asarray(p_late, dtype=np.float64)
    p_after = np.minimum(np.asarray(p_after, dtype=np.float64), p_late)
    outcomes = np.column_stack([1.0 - p_late, p_late - p_after, p_after])
    return outcomes @ config.cost_matrix().T


@dataclass(frozen=True)
class Decisions:
    """One action and one reason text per order, as codes: ``action_code`` indexes
    :data:`ACTIONS`, ``reason_code`` indexes ``reason_texts`` (the ";"-joined reason codes of
    the combinations present). Text columns are built from the codes by whoever needs them
    (:attr:`action`, :attr:`reasons`; the batch engine builds Arrow strings directly)."""

    action_code: np.ndarray  # int8
    reason_code: np.ndarray  # int32
    reason_texts: tuple[str, ...]

    @property
    def action(self) -> np.ndarray:
        """Action names (object array)."""
        return np.asarray(ACTIONS, dtype=object)[self.action_code]

    @property
    def reasons(self) -> np.ndarray:
        """The ";"-joined reason codes (object array)."""
        texts = np.empty(len(self.reason_texts), dtype=object)
        texts[:] = self.reason_texts
        return texts[self.reason_code]


def decide(
    *,
    p_late: np.ndarray,
    p_after: np.ndarray,
    days_remaining: np.ndarray,
    delivered: np.ndarray,
    in_dispute: np.ndarray,
    extensions: np.ndarray,
    config: PolicyConfig,
    structural_lag: np.ndarray | None = None,
    unseen_country: np.ndarray | None = None,
    sparse_lane: np.ndarray | None = None,
    last_milestone: np.ndarray | None = None,
    stalled: np.ndarray | None = None,
) -> Decisions:
    """Choose an action per order (vectorised); see the module docstring for the rule.

    ``last_milestone`` (codes into :data:`model.events.MILESTONES`, -1 without scans) and
    ``stalled`` only add reason codes: the probabilities already carry what scans showed.
    """
    n = len(p_late)
    costs = expected_costs(p_late, p_after, config)
    can_extend = np.asarray(extensions) < config.max_extensions
    costs[~can_extend, 1] = np.inf
    best = np.argmin(costs, axis=1)  # argmin keeps the first (least invasive) on ties
    in_window = (days_remaining >= 0) & (days_remaining < config.act_within_days)
    chosen = np.where(in_window, best, 0)  # indices into ACTIONS
    chosen = np.where(
        delivered, 0, np.where(in_dispute, ACTIONS.index("respond_to_dispute"), chosen)
    )

    # Reasons: each row's codes form one of a few hundred combinations (small integers);
    # build each present combination's text once and index it, rather than joining strings
    # row by row.
    primary = np.select(
        [delivered, in_dispute, days_remaining < 0, ~in_window], [0, 1, 2, 3], default=4
    )
    likely = config.likely_threshold
    assessed = in_window & ~delivered & ~in_dispute
    outlook = np.where(
        assessed, np.select([p_late < likely, p_after >= likely * p_late], [1, 2], default=3), 0
    )
    flags = (
        assessed & ~can_extend,
        _flag(structural_lag, n) & ~delivered,
        _flag(unseen_country, n) & ~delivered,
        _flag(sparse_lane, n) & ~delivered,
    )
    tracking = np.zeros(n, dtype=np.int64)
    if last_milestone is not None:
        tracking = np.where(delivered, 0, _TRACKING_OF_MILESTONE[np.asarray(last_milestone)])
    combination = primary * 4 + outlook
    for mask in flags:
        combination = combination * 2 + mask
    combination = (combination * len(_TRACKING_CODES) + tracking) * 2 + (
        _flag(stalled, n) & ~delivered
    )
    combination = np.asarray(combination, dtype=np.int64).reshape(-1)
    present = np.flatnonzero(np.bincount(combination))
    position = np.zeros(int(combination.max()) + 1 if n else 0, dtype=np.int32)
    position[present] = np.arange(len(present), dtype=np.int32)
    return Decisions(
        action_code=np.asarray(chosen, dtype=np.int8).reshape(-1),
        reason_code=position[combination],
        reason_texts=tuple(_reason_text(v, config.act_within_days) for v in present.tolist()),
    )


_FLAGS = ("max_extensions_reached", "structural_lag", "unseen_country", "sparse_lane")
_OUTLOOKS = ("", "likely_on_time", "likely_lost", "late_but_coming")


@lru_cache(maxsize=4096)
def _reason_text(combination: int, act_within_days: int) -> str:
    """The ";"-joined codes of one combination (see :func:`decide`): where the order stands,
    what its lane is known for, what its scans show, the outlook, the rest."""
    primaries = (
        "delivered",
        "dispute_open",
        "window_closed",
        "outside_window",
        f"within_{act_within_days}_days",
    )
    stalled = combination & 1
    combination >>= 1
    tracking = _TRACKING_CODES[combination % len(_TRACKING_CODES)]
    combination //= len(_TRACKING_CODES)
    bits = [(combination >> (len(_FLAGS) - 1 - k)) & 1 for k in range(len(_FLAGS))]
    rest = combination >> len(_FLAGS)
    present = [name for name, bit in zip(_FLAGS, bits, strict=True) if bit]
    lane = [name for name in present if name == "structural_lag"]
    scans = [tracking, "stalled" if stalled else ""]
    codes = [primaries[rest // 4], *lane, *scans, _OUTLOOKS[rest % 4]]
    codes += [name for name in present if name != "structural_lag"]
    return ";".join(code for code in codes if code)


def _flag(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool) if values is None else np.asarray(values, dtype=bool)


def reason_message(code: str) -> str:
    """Human-readable text of a reason code."""
    if code.startswith("within_") and code.endswith("_days"):
        days = code.removeprefix("within_").removesuffix("_days")
        return f"Fewer than {days} days remain before the deadline: time to decide."
    return REASON_MESSAGES.get(code, code)
