"""The parcel's journey as a semi-Markov stage process on a lattice of quarter days.

A parcel enters ``START`` at cell 0 (midnight of its ship date) and moves along a fixed graph
of stages (:data:`EDGES`); each edge has a duration kernel and a branch probability. Every
duration is a whole number of cells (:data:`CELLS_PER_DAY` cells a day)::

    d = max(min_cells, rint(Y)) + shift,   Y ~ (1 - w) LogNormal(mu0, s0) + w LogNormal(mu1, s1)

in cells, so sampling (:func:`sample_paths`) and the exact probabilities (:func:`joint_survival`)
share one law: the forward recursion over the graph with FFT convolutions computes, on the
lattice, exactly the probabilities the sampler realises (up to float rounding and the
horizon of the grid). On entering a stage the parcel is lost with that stage's loss
probability (it stays there forever); a tracked parcel's entry into a stage is scanned with
the stage's scan probability, independently; a lost tracked parcel may get a ``lost`` scan
after a delay (kernel ``LOST_SCAN``).

The parameters are per *group* (:class:`StageLaw`, arrays of G groups); rows point to groups.
This module knows nothing of countries or methods: ``data.generate`` builds the law.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import fft as sfft
from scipy.special import ndtr

__all__ = [
    "CELLS_PER_DAY",
    "EDGES",
    "MAX_CELLS",
    "MILESTONE_OF_STAGE",
    "SCANNED_STAGES",
    "TOPO_ORDER",
    "Branch",
    "Kernel",
    "Paths",
    "Stage",
    "StageLaw",
    "entry_density",
    "joint_survival",
    "kernel_pmf",
    "outcome_probabilities",
    "sample_bridge",
    "sample_paths",
    "survival_at",
    "survival_curves",
]

CELLS_PER_DAY = 4
"""Cells of the time lattice per day (a cell is six hours; cells never straddle midnight)."""
MAX_CELLS = 730 * CELLS_PER_DAY
"""Horizon of the exact computation (730 days). Later horizons are evaluated at it."""


class Stage(IntEnum):
    """Stages of the journey; entering one (except START) is a scannable milestone."""

    START = 0
    INFO = 1
    PICKED = 2
    DEPARTED = 3
    ARRIVED = 4
    HELD = 5
    CLEARED = 6
    OFD = 7
    FAILED = 8
    PICKUP = 9
    DELIVERED = 10
    RETURNING = 11
    RETURNED = 12


N_STAGES = len(Stage)

MILESTONE_OF_STAGE: dict[Stage, str] = {
    Stage.INFO: "info_received",
    Stage.PICKED: "picked_up",
    Stage.DEPARTED: "departed_origin",
    Stage.ARRIVED: "arrived_destination",
    Stage.HELD: "customs_hold",
    Stage.CLEARED: "customs_cleared",
    Stage.OFD: "out_for_delivery",
    Stage.FAILED: "delivery_failed",
    Stage.PICKUP: "available_for_pickup",
    Stage.DELIVERED: "delivered",
    Stage.RETURNING: "returning",
    Stage.RETURNED: "returned",
}
SCANNED_STAGES: tuple[Stage, ...] = tuple(MILESTONE_OF_STAGE)


class Kernel(IntEnum):
    """Duration kernels (``LOST_SCAN`` is the delay of a lost parcel's ``lost`` scan)."""

    LABEL = 0
    PICKUP = 1
    ORIGIN = 2
    LINEHAUL = 3
    HOLD_SCAN = 4
    CLEARANCE = 5
    HELD_CLEARANCE = 6
    PAYMENT_DEADLINE = 7
    RETURN_LEG = 8
    DOMESTIC = 9
    FINAL = 10
    ATTEMPT = 11
    NOTICE = 12
    COLLECT = 13
    LOST_SCAN = 14


N_KERNELS = len(Kernel)
MIN_CELLS = np.array([0 if k == Kernel.LABEL else 1 for k in Kernel], dtype=np.int64)
"""Every transition but the label takes at least one cell: a parcel's scans are strictly
ordered in time."""


class Branch(IntEnum):
    """Branch probabilities of the graph's forks."""

    ALWAYS = 0
    HELD = 1  # arrived -> customs_hold
    NOT_HELD = 2  # arrived -> customs_cleared
    RELEASED = 3  # customs_hold -> customs_cleared
    REFUSED = 4  # customs_hold -> returning
    FIRST_ATTEMPT = 5  # out_for_delivery -> delivered
    FAILED = 6  # out_for_delivery -> delivery_failed


@dataclass(frozen=True)
class Edge:
    source: Stage
    target: Stage
    kernel: Kernel
    branch: Branch


EDGES: tuple[Edge, ...] = (
    Edge(Stage.START, Stage.INFO, Kernel.LABEL, Branch.ALWAYS),
    Edge(Stage.INFO, Stage.PICKED, Kernel.PICKUP, Branch.ALWAYS),
    Edge(Stage.PICKED, Stage.DEPARTED, Kernel.ORIGIN, Branch.ALWAYS),
    Edge(Stage.DEPARTED, Stage.ARRIVED, Kernel.LINEHAUL, Branch.ALWAYS),
    Edge(Stage.ARRIVED, Stage.HELD, Kernel.HOLD_SCAN, Branch.HELD),
    Edge(Stage.ARRIVED, Stage.CLEARED, Kernel.CLEARANCE, Branch.NOT_HELD),
    Edge(Stage.HELD, Stage.CLEARED, Kernel.HELD_CLEARANCE, Branch.RELEASED),
    Edge(Stage.HELD, Stage.RETURNING, Kernel.PAYMENT_DEADLINE, Branch.REFUSED),
    Edge(Stage.RETURNING, Stage.RETURNED, Kernel.RETURN_LEG, Branch.ALWAYS),
    Edge(Stage.CLEARED, Stage.OFD, Kernel.DOMESTIC, Branch.ALWAYS),
    Edge(Stage.OFD, Stage.DELIVERED, Kernel.FINAL, Branch.FIRST_ATTEMPT),
    Edge(Stage.OFD, Stage.FAILED, Kernel.ATTEMPT, Branch.FAILED),
    Edge(Stage.FAILED, Stage.PICKUP, Kernel.NOTICE, Branch.ALWAYS),
    Edge(Stage.PICKUP, Stage.DELIVERED, Kernel.COLLECT, Branch.ALWAYS),
)
TOPO_ORDER: tuple[Stage, ...] = (
    Stage.START,
    Stage.INFO,
    Stage.PICKED,
    Stage.DEPARTED,
    Stage.ARRIVED,
    Stage.HELD,
    Stage.RETURNING,
    Stage.RETURNED,
    Stage.CLEARED,
    Stage.OFD,
    Stage.FAILED,
    Stage.PICKUP,
    Stage.DELIVERED,
)
_OUT: dict[Stage, tuple[Edge, ...]] = {s: tuple(e for e in EDGES if e.source == s) for s in Stage}


@dataclass(frozen=True)
class StageLaw:
    """Parameters of G groups of parcels (one row per group)."""

    mu: np.ndarray  # (G, K, 2) log-median in cells of the (main, stuck) components
    sigma: np.ndarray  # (G, K, 2) log-sd of the components
    stuck: np.ndarray  # (G, K) weight of the stuck component
    shift: np.ndarray  # (G, K) int64 cells added to the duration
    held: np.ndarray  # (G,) P(customs hold | arrived)
    refused: np.ndarray  # (G,) P(returned to sender | held)
    failed: np.ndarray  # (G,) P(first delivery attempt fails)
    loss: np.ndarray  # (G, S) P(lost on entering the stage)
    scan: np.ndarray  # (G, S) P(a tracked parcel's entry into the stage is scanned)
    untracked: np.ndarray  # (G,) P(the order has no tracking at all)
    lost_scan: np.ndarray  # (G,) P(a lost tracked parcel later gets a lost/exception scan)

    def __len__(self) -> int:
        return len(self.held)

    def take(self, index: np.ndarray) -> StageLaw:
        """The law of groups ``index`` (in that order)."""
        return StageLaw(**{name: getattr(self, name)[index] for name in _LAW_FIELDS})

    def branch(self, branch: Branch) -> np.ndarray:
        """(G,) probability of taking ``branch`` at its fork."""
        if branch == Branch.ALWAYS:
            return np.ones(len(self))
        if branch == Branch.HELD:
            return self.held
        if branch == Branch.NOT_HELD:
            return 1.0 - self.held
        if branch == Branch.RELEASED:
            return 1.0 - self.refused
        if branch == Branch.REFUSED:
            return self.refused
        if branch == Branch.FIRST_ATTEMPT:
            return 1.0 - self.failed
        return self.failed


_LAW_FIELDS = tuple(StageLaw.__dataclass_fields__)


# --------------------------------------------------------------------------------------
# Kernels on the lattice
# --------------------------------------------------------------------------------------


def _mixture_cdf(law: StageLaw, kernel: int, y: np.ndarray) -> np.ndarray:
    """P(Y <= y) for the kernel's continuous mixture; ``y`` has shape (G, n)."""
    mu = law.mu[:, kernel, :]
    sigma = law.sigma[:, kernel, :]
    with np.errstate(divide="ignore"):
        log_y = np.log(np.maximum(y, 0.0))
    main = ndtr((log_y - mu[:, 0:1]) / sigma[:, 0:1])
    stuck = law.stuck[:, kernel : kernel + 1]
    if not stuck.any():
        return main
    other = ndtr((log_y - mu[:, 1:2]) / sigma[:, 1:2])
    return (1.0 - stuck) * main + stuck * other


def _support(law: StageLaw, kernel: int) -> int:
    """Cells beyond which every group's kernel has (numerically) no mass."""
    top = np.exp(law.mu[:, kernel, :] + 8.5 * law.sigma[:, kernel, :]).max(initial=0.0)
    return int(min(top + law.shift[:, kernel].max(initial=0) + MIN_CELLS[kernel] + 2, 1e9))


def kernel_pmf(law: StageLaw, kernel: int, n: int) -> np.ndarray:
    """(G, n) probabilities of durations 0..n-1 cells (mass beyond n is left out)."""
    size = min(n, _support(law, kernel))
    out = np.zeros((len(law), n))
    if size <= 0:
        return out
    j = np.arange(size)[None, :] - law.shift[:, kernel : kernel + 1]  # pre-shift duration
    low = MIN_CELLS[kernel]
    upper = _mixture_cdf(law, kernel, j + 0.5)
    lower = np.where(j > low, _mixture_cdf(law, kernel, j - 0.5), 0.0)
    out[:, :size] = np.where(j >= low, upper - lower, 0.0)
    return out


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """Sampled journeys: entry cell of each stage (-1: never entered) and the loss stage."""

    entry: np.ndarray  # (n, S) int64
    lost_stage: np.ndarray  # (n,) int64, -1 when not lost

    @property
    def delivered(self) -> np.ndarray:
        """(n,) delivery cell, -1 when never delivered (lost or returned)."""
        return self.entry[:, Stage.DELIVERED]


_STUCK_KERNELS = (Kernel.ORIGIN, Kernel.LINEHAUL, Kernel.DOMESTIC)
"""The only kernels whose laws may have a stuck component (others: weight 0)."""


def sample_durations(law: StageLaw, group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, K) durations in cells of every edge kernel for each row (drawn whether used or not;
    ``LOST_SCAN`` is left at 0: the scans draw it)."""
    if law.stuck[:, [k for k in Kernel if k not in _STUCK_KERNELS]].any():
        raise ValueError("only the origin, line-haul and domestic legs may have stuck parts")
    n = len(group)
    edge_kernels = np.arange(Kernel.LOST_SCAN)
    z = rng.standard_normal((n, len(edge_kernels)))
    stuck = rng.random((n, len(_STUCK_KERNELS))) < law.stuck[group][:, list(_STUCK_KERNELS)]
    mu = law.mu[group, :, 0][:, edge_kernels]
    sigma = law.sigma[group, :, 0][:, edge_kernels]
    for i, kernel in enumerate(_STUCK_KERNELS):
        hit = stuck[:, i]
        mu[hit, kernel] = law.mu[group[hit], kernel, 1]
        sigma[hit, kernel] = law.sigma[group[hit], kernel, 1]
    cells = np.rint(np.exp(mu + sigma * z))
    cells = np.minimum(cells, 10.0 * MAX_CELLS).astype(np.int64)
    out = np.zeros((n, N_KERNELS), dtype=np.int64)
    out[:, edge_kernels] = (
        np.maximum(cells, MIN_CELLS[None, edge_kernels]) + law.shift[group][:, edge_kernels]
    )
    return out


def outcome_probabilities(law: StageLaw) -> np.ndarray:
    """(G, S): P(lost on entering stage s) per stage, with RETURNED = P(returned to sender)
    and DELIVERED = P(delivered); rows sum to 1."""
    reach = np.zeros((len(law), N_STAGES))
    reach[:, Stage.START] = 1.0
    for stage in TOPO_ORDER:
        for edge in _OUT[stage]:
            reach[:, edge.target] += (
                reach[:, stage] * (1.0 - law.loss[:, stage]) * law.branch(edge.branch)
            )
    out = reach * law.loss
    out[:, Stage.RETURNED] = reach[:, Stage.RETURNED]
    out[:, Stage.DELIVERED] = reach[:, Stage.DELIVERED]
    return out


_AFTER_CUSTOMS = (Stage.CLEARED, Stage.OFD, Stage.FAILED, Stage.PICKUP)


def sample_paths(
    law: StageLaw,
    group: np.ndarray,
    rng: np.random.Generator,
    outcome: np.ndarray | None = None,
) -> Paths:
    """Draw one journey per row of ``group`` (indices into ``law``).

    ``outcome`` (optional, per row) draws the journey given how it ends: a stage s means
    "lost on entering s", RETURNED "returned to sender"; -1 leaves the row free.
    """
    n = len(group)
    d = sample_durations(law, group, rng)
    fork = rng.random((n, 3))
    held_p, refused_p, failed_p = law.held[group], law.refused[group], law.failed[group]
    lost_draw = rng.random((n, N_STAGES)) < law.loss[group]
    if outcome is not None:
        forced = outcome >= 0
        gone = np.isin(outcome, (Stage.HELD, Stage.RETURNING, Stage.RETURNED))
        released = (1.0 - law.loss[group, Stage.HELD]) * (1.0 - refused_p) * held_p
        after = np.isin(outcome, _AFTER_CUSTOMS)
        held_p = np.where(gone, 1.0, np.where(after, released / (released + 1.0 - held_p), held_p))
        refused_p = np.where(gone, 1.0, np.where(after, 0.0, refused_p))
        failed_p = np.where(np.isin(outcome, (Stage.FAILED, Stage.PICKUP)), 1.0, failed_p)
        lost_draw[forced] = False
        rows = np.flatnonzero(forced & (outcome != Stage.RETURNED))
        lost_draw[rows, outcome[rows]] = True
    held = fork[:, 0] < held_p
    refused = fork[:, 1] < refused_p
    failed = fork[:, 2] < failed_p

    entry = np.full((n, N_STAGES), -1, dtype=np.int64)
    lost_stage = np.full(n, -1, dtype=np.int64)
    entry[:, Stage.START] = 0

    def enter(stage: Stage, going: np.ndarray, cell: np.ndarray) -> np.ndarray:
        entry[going, stage] = cell[going]
        lost = going & lost_draw[:, stage]
        lost_stage[lost] = stage
        return going & ~lost

    t_info = d[:, Kernel.LABEL]
    going = enter(Stage.INFO, np.ones(n, dtype=bool), t_info)
    t_picked = t_info + d[:, Kernel.PICKUP]
    going = enter(Stage.PICKED, going, t_picked)
    t_departed = t_picked + d[:, Kernel.ORIGIN]
    going = enter(Stage.DEPARTED, going, t_departed)
    t_arrived = t_departed + d[:, Kernel.LINEHAUL]
    going = enter(Stage.ARRIVED, going, t_arrived)
    t_held = t_arrived + d[:, Kernel.HOLD_SCAN]
    in_hold = enter(Stage.HELD, going & held, t_held)
    t_returning = t_held + d[:, Kernel.PAYMENT_DEADLINE]
    back = enter(Stage.RETURNING, in_hold & refused, t_returning)
    enter(Stage.RETURNED, back, t_returning + d[:, Kernel.RETURN_LEG])
    t_cleared = np.where(
        held, t_held + d[:, Kernel.HELD_CLEARANCE], t_arrived + d[:, Kernel.CLEARANCE]
    )
    going = enter(Stage.CLEARED, (going & ~held) | (in_hold & ~refused), t_cleared)
    t_ofd = t_cleared + d[:, Kernel.DOMESTIC]
    going = enter(Stage.OFD, going, t_ofd)
    t_failed = t_ofd + d[:, Kernel.ATTEMPT]
    retry = enter(Stage.FAILED, going & failed, t_failed)
    t_pickup = t_failed + d[:, Kernel.NOTICE]
    retry = enter(Stage.PICKUP, retry, t_pickup)
    t_delivered = np.where(failed, t_pickup + d[:, Kernel.COLLECT], t_ofd + d[:, Kernel.FINAL])
    enter(Stage.DELIVERED, (going & ~failed) | retry, t_delivered)
    return Paths(entry=entry, lost_stage=lost_stage)


_BRIDGE_CHUNK = 2_000  # rows per backward pass
_BRIDGE_GROUPS = 64  # groups whose densities are held at once
_IN: dict[Stage, tuple[Edge, ...]] = {s: tuple(e for e in EDGES if e.target == s) for s in Stage}


def sample_bridge(
    law: StageLaw, group: np.ndarray, delivered: np.ndarray, rng: np.random.Generator
) -> Paths:
    """Draw journeys given delivery exactly at cell ``delivered`` (backward sampling: from
    each stage's entry, the previous stage and its entry cell are drawn from their exact
    posterior, the forward entry densities times the leg's kernel)."""
    n = len(group)
    entry = np.full((n, N_STAGES), -1, dtype=np.int64)
    entry[:, Stage.START] = 0
    entry[:, Stage.DELIVERED] = delivered
    by_group = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[by_group])) + 1
    starts = np.concatenate([[0], bounds])
    for lo in range(0, len(starts), _BRIDGE_GROUPS):
        first = starts[lo]
        last = starts[lo + _BRIDGE_GROUPS] if lo + _BRIDGE_GROUPS < len(starts) else n
        rows = by_group[first:last]
        used, local = np.unique(group[rows], return_inverse=True)
        entry[rows] = _bridge(law.take(used), local, delivered[rows], rng)
    return Paths(entry=entry, lost_stage=np.full(n, -1, dtype=np.int64))


def _bridge(
    sub: StageLaw, local: np.ndarray, delivered: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Entry cells (n, S) of journeys delivered at ``delivered``, for groups of ``sub``."""
    n = len(local)
    entry = np.full((n, N_STAGES), -1, dtype=np.int64)
    entry[:, Stage.START] = 0
    entry[:, Stage.DELIVERED] = delivered
    size = int(delivered.max()) + 1
    density = _recursion(
        sub,
        np.arange(len(sub)),
        np.full(len(sub), Stage.START),
        np.zeros(len(sub), dtype=np.int64),
        size,
        keep_density=True,
    )[3]
    pmf = {e.kernel: kernel_pmf(sub, e.kernel, size) for e in EDGES}
    order = np.argsort(delivered, kind="stable")
    for lo in range(0, n, _BRIDGE_CHUNK):
        chunk = order[lo : lo + _BRIDGE_CHUNK]
        width = int(delivered[chunk].max()) + 1  # entries are never later than delivery
        cells = np.arange(width)
        stage = np.full(len(chunk), int(Stage.DELIVERED))
        now = delivered[chunk].copy()
        for _ in range(N_STAGES):
            todo = np.flatnonzero(stage != Stage.START)
            if not len(todo):
                break
            moves = []
            for target in np.unique(stage[todo]):
                rows = todo[stage[todo] == target]
                g = local[chunk[rows]]
                lag = now[rows, None] - cells[None, :]
                inside = lag >= 0
                lag = np.where(inside, lag, 0)
                weights = []
                for edge in _IN[Stage(target)]:
                    kernel = np.where(inside, pmf[edge.kernel][g[:, None], lag], 0.0)
                    keep = (1.0 - sub.loss[g, edge.source]) * sub.branch(edge.branch)[g]
                    weights.append(density[edge.source][g, :width] * kernel * keep[:, None])
                cum = np.cumsum(np.concatenate(weights, axis=1), axis=1)
                pick = (cum < rng.random(len(rows))[:, None] * cum[:, -1:]).sum(axis=1)
                pick = np.minimum(pick, cum.shape[1] - 1)
                sources = np.array([e.source for e in _IN[Stage(target)]])
                moves.append((rows, sources[pick // width], pick % width))
            for rows, source, cell in moves:
                entry[chunk[rows], source] = cell
                stage[rows], now[rows] = source, cell
    return entry


# --------------------------------------------------------------------------------------
# Exact probabilities: forward recursion with FFT convolutions
# --------------------------------------------------------------------------------------

_BATCH_ELEMENTS = 1 << 21  # rows x cells per batch (memory ~ a few x 16 MB)


def _size_class(cells: int) -> int:
    """Grid length for a batch: a power of two times 1 or 1.5, at least 64."""
    size = 64
    while size < cells:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
    return min(size, MAX_CELLS)


def _recursion(
    law: StageLaw,
    local: np.ndarray,
    start: np.ndarray,
    cutoff: np.ndarray,
    n: int,
    read_stage: np.ndarray | None = None,
    read_lag: np.ndarray | None = None,
    keep_density: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[Stage, np.ndarray]]:
    """One batch of rows (``local`` indexes ``law``) on a grid of ``n`` cells.

    Returns (mass kept at the cutoff, cumulative deliveries from the cutoff on (R, n), entry
    density read at (read_stage, read_lag) before weighting, and the weighted entry density
    of every stage (R, n) if ``keep_density``).
    """
    rows = len(local)
    length = sfft.next_fast_len(2 * n, real=True)
    cells = np.arange(n)
    before = cells[None, :] < cutoff[:, None]
    kernel_fft = {
        k: sfft.rfft(kernel_pmf(law, k, n), n=length, axis=1)
        for k in {int(e.kernel) for e in EDGES}
    }
    scan = law.scan[local]
    loss = law.loss[local]
    acc: dict[Stage, np.ndarray] = {}
    leak = np.zeros(rows)
    lost_density = np.zeros((rows, n))
    read = np.zeros(rows)
    delivered_after = np.zeros((rows, n))
    kept_density: dict[Stage, np.ndarray] = {}
    for stage in TOPO_ORDER:
        spectrum = acc.pop(stage, None)
        conv = (
            sfft.irfft(spectrum, n=length, axis=1)[:, :n]
            if spectrum is not None
            else np.zeros((rows, n))
        )
        if read_stage is not None and read_lag is not None:
            hit = np.flatnonzero(read_stage == stage)
            if len(hit):
                read[hit] = conv[hit, np.minimum(read_lag[hit], n - 1)]
        if stage == Stage.DELIVERED:
            leak += np.where(before, conv, 0.0).sum(axis=1)  # T >= cutoff is conditioned on
            delivered_after = np.cumsum(np.where(before, 0.0, conv), axis=1)
            continue
        missed = np.where(before, conv, 0.0)
        leak += scan[:, stage] * missed.sum(axis=1)
        density = conv - scan[:, stage, None] * missed
        density[start == stage, 0] += 1.0
        if keep_density:
            kept_density[stage] = density
        if loss[:, stage].any():
            lost_density += loss[:, stage, None] * density
        out = _OUT[stage]
        if not out:
            continue
        spectrum_s = sfft.rfft(density * (1.0 - loss[:, stage, None]), n=length, axis=1)
        for edge in out:
            term = spectrum_s * kernel_fft[edge.kernel][local]
            term *= law.branch(edge.branch)[local][:, None]
            if edge.target in acc:
                acc[edge.target] += term
            else:
                acc[edge.target] = term
    # A lost parcel entered its stage at t; its lost scan (if any) at t + L is seen if < cutoff.
    lost_cdf = np.cumsum(kernel_pmf(law, Kernel.LOST_SCAN, n), axis=1)
    lag = cutoff[:, None] - cells[None, :] - 1
    seen = np.where(lag >= 0, lost_cdf[local[:, None], np.clip(lag, 0, n - 1)], 0.0)
    leak += law.lost_scan[local] * (lost_density * seen).sum(axis=1)
    return 1.0 - leak, delivered_after, read, kept_density


def _batches(group: np.ndarray, need: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Rows sorted by (grid size, group), cut into batches of bounded size."""
    sizes = np.array([_size_class(int(c)) for c in np.maximum(need, 1)])
    order = np.lexsort((group, sizes))
    out = []
    i = 0
    while i < len(order):
        n = int(sizes[order[i]])
        same = int(np.searchsorted(sizes[order], n, side="right"))
        step = max(1, _BATCH_ELEMENTS // n)
        j = min(same, i + step)
        out.append((order[i:j], n))
        i = j
    return out


def _columns(values: np.ndarray) -> np.ndarray:
    """(n,) or (n, k) -> (n, k)."""
    return values[:, None] if values.ndim == 1 else values


def joint_survival(
    law: StageLaw,
    group: np.ndarray,
    start: np.ndarray,
    cutoff: np.ndarray,
    targets: np.ndarray,
) -> np.ndarray:
    """Joint probability of silence until the cutoff and a late delivery.

    For each row, a parcel of ``law[group]`` has just entered ``start`` (cell 0). Returns (R, K)
    ``P(no scan of a stage entered in cells [0, cutoff) - the start's own entry excepted -,
    no lost scan before the cutoff, delivery cell >= targets[:, k])`` for targets >= cutoff.
    A cutoff <= 0 gives the plain survival ``P(delivery cell >= target)``. Targets beyond
    :data:`MAX_CELLS` are evaluated at it.
    """
    group = np.asarray(group, dtype=np.int64)
    start = np.asarray(start, dtype=np.int64)
    cutoff = np.asarray(cutoff, dtype=np.int64)
    targets = np.minimum(_columns(np.asarray(targets, dtype=np.int64)), MAX_CELLS)
    if (targets < cutoff[:, None]).any():
        raise ValueError("targets must be >= cutoff")
    out = np.empty(targets.shape)
    need = np.maximum(targets.max(axis=1, initial=0), np.minimum(cutoff, MAX_CELLS))
    for rows, n in _batches(group, need):
        used, local = np.unique(group[rows], return_inverse=True)
        kept, delivered, _, _ = _recursion(
            law.take(used), local, start[rows], np.minimum(cutoff[rows], n), n
        )
        x = targets[rows]
        idx = np.clip(x - 1, 0, n - 1)
        late = np.take_along_axis(delivered, idx, axis=1)
        out[rows] = kept[:, None] - np.where(x > 0, late, 0.0)
    return np.clip(out, 0.0, 1.0)


def entry_density(
    law: StageLaw,
    group: np.ndarray,
    start: np.ndarray,
    stage: np.ndarray,
    lag: np.ndarray,
) -> np.ndarray:
    """Density of entering ``stage`` exactly ``lag`` cells after entering ``start``, every
    stage entered in between unscanned (the likelihood of two consecutive scans)."""
    group = np.asarray(group, dtype=np.int64)
    lag = np.asarray(lag, dtype=np.int64)
    out = np.zeros(len(group))
    inside = lag < MAX_CELLS
    idx = np.flatnonzero(inside)
    for rows, n in _batches(group[idx], lag[idx] + 1):
        sel = idx[rows]
        used, local = np.unique(group[sel], return_inverse=True)
        _, _, read, _ = _recursion(
            law.take(used),
            local,
            np.asarray(start)[sel],
            np.full(len(sel), n),
            n,
            read_stage=np.asarray(stage)[sel],
            read_lag=lag[sel],
        )
        out[sel] = read
    return np.maximum(out, 0.0)


def survival_curves(law: StageLaw, need: np.ndarray) -> np.ndarray:
    """(G, max(need) + 1) ``P(delivery cell >= t)`` from START for t = 0..need[g] (later
    columns of a group are left at its last computed value)."""
    need = np.minimum(np.asarray(need, dtype=np.int64), MAX_CELLS)
    width = int(need.max(initial=0)) + 1
    out = np.ones((len(law), width))
    groups = np.arange(len(law))
    for rows, n in _batches(groups, need + 1):
        kept, delivered, _, _ = _recursion(
            law.take(rows),
            np.arange(len(rows)),
            np.full(len(rows), Stage.START),
            np.zeros(len(rows), dtype=np.int64),
            n,
        )
        curve = kept[:, None] - np.concatenate([np.zeros((len(rows), 1)), delivered], axis=1)
        upto = min(n + 1, width)
        out[rows, :upto] = curve[:, :upto]
        if upto < width:
            out[rows, upto:] = curve[:, upto - 1 : upto]
    return np.clip(out, 0.0, 1.0)


def survival_at(law: StageLaw, group: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``P(delivery cell >= targets)`` from START, row by row (targets (n,) or (n, k))."""
    group = np.asarray(group, dtype=np.int64)
    shaped = np.asarray(targets, dtype=np.int64)
    flat = np.clip(_columns(shaped), 0, MAX_CELLS)
    need = np.zeros(len(law), dtype=np.int64)
    np.maximum.at(need, group, flat.max(axis=1, initial=0))
    used = np.flatnonzero(np.bincount(group, minlength=len(law)))
    curves = survival_curves(law.take(used), need[used])
    local = np.searchsorted(used, group)
    return curves[local[:, None], flat].reshape(shaped.shape)
