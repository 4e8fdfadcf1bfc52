"""Synthetic cross-border shipment history and open orders, their carrier scans and true law.

Every parcel travels a semi-Markov **stage process** (``data.stages``) on a lattice of quarter
days: label (info_received) -> picked_up -> departed_origin -> arrived_destination -> customs
(cleared at once, or held: customs_hold, then customs_cleared or, in Brazil, returned to
sender) -> out_for_delivery -> delivered (or delivery_failed -> available_for_pickup ->
delivered). Each leg has its own duration kernel; it can lose the parcel; carriers scan each
milestone with a lane-dependent probability (or never, for untracked orders).

* the lane (destination country x shipping method) sets the legs' medians and spreads, the
  stuck-in-the-network tails, the customs-hold share, the loss and the scan rates;
* peak season (ship date 11 Nov - 10 Dec) and Chinese New Year scale every leg; the CNY
  origin shutdown adds days before departure; the Brazilian state scales the domestic leg
  and the 2025 Correios disruption adds days to it;
* ``delivered_at = shipped_at + floor(T)`` (T in days), NaT if never delivered or after as_of.

:func:`true_survival` (no scans) and :func:`true_survival_given_scans` compute the same
process's probabilities exactly (forward recursion on the lattice), so models fitted on
:func:`generate_shipments` can be scored against the truth. Parameters and their sources are
documented in ``data/README.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data import scan_text, stages
from data.stages import CELLS_PER_DAY, Kernel, Stage, StageLaw
from model import events as event_schema
from model import features, schema

__all__ = [
    "BR_STATES",
    "COUNTRIES",
    "DEFAULT_AS_OF",
    "DEFAULT_SEED",
    "EVENT_COLUMNS",
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "HISTORY_COLUMNS",
    "METHODS",
    "OPEN_ORDER_COLUMNS",
    "Generated",
    "generate_history",
    "generate_open",
    "generate_open_orders",
    "generate_shipments",
    "lane_summary",
    "main",
    "read_generator_meta",
    "true_survival",
    "true_survival_given_scans",
    "write_generated",
]

GENERATOR_NAME = "window-advisor"
GENERATOR_VERSION = "3"
DEFAULT_AS_OF = date(2026, 11, 1)
DEFAULT_SEED = 7

HISTORY_DAYS = 720
"""Shipments are spread over the ``HISTORY_DAYS`` days before ``as_of`` (as_of excluded)."""

# The schema's columns, less ``ordered_at`` (the generator models no order-to-shipment delay).
HISTORY_COLUMNS: tuple[str, ...] = tuple(c for c in schema.HISTORY_COLUMNS if c != "ordered_at")
OPEN_ORDER_COLUMNS: tuple[str, ...] = tuple(
    c for c in schema.OPEN_ORDER_COLUMNS if c != "ordered_at"
)
EVENT_COLUMNS: tuple[str, ...] = event_schema.EVENT_COLUMNS
EXTENSION_DAYS = 30
OPEN_NEAR_DEADLINE_SHARE = 0.5  # share of open orders with deadline - as_of in [0, 5)
OPEN_DELIVERED_SHARE = 0.03  # open orders already delivered but not yet confirmed
OPEN_EXTENSION_PROBS = (0.80, 0.15, 0.05)  # P(extensions = 0, 1, 2)


# --------------------------------------------------------------------------------------
# Lane parameter tables (sources in data/README.md)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """Transit and tracking parameters of a shipping method (country speed 1.0)."""

    median_days: float  # median of the unheld, unstuck journey
    sigma: float  # its log-normal spread (the legs' spreads are scaled to give it)
    loss: float  # probability the parcel is never delivered (lost, or returned to sender)
    stuck_share: float  # probability that one leg is "stuck in the network"
    elasticity: float  # exponent applied to the country speed factor
    held_share_factor: float  # multiplier on the country's customs-hold probability
    held_median_factor: float  # multiplier on the country's held median
    weight_median_g: float
    value_median_usd: float
    untracked: float  # share of orders without any tracking
    miss_factor: float  # multiplier on the base probabilities of a missed scan


METHODS: dict[str, Method] = {
    "aliexpress_premium": Method(8.0, 0.30, 0.006, 0.03, 1.0, 0.85, 1.0, 350.0, 18.0, 0.01, 0.5),
    "aliexpress_standard": Method(13.0, 0.35, 0.015, 0.04, 1.0, 1.0, 1.0, 300.0, 12.0, 0.03, 1.0),
    "cainiao_super_economy": Method(26.0, 0.40, 0.050, 0.05, 1.0, 1.15, 1.0, 120.0, 5.0, 0.25, 2.0),
    "epacket": Method(12.0, 0.35, 0.020, 0.04, 1.0, 1.0, 1.0, 250.0, 10.0, 0.02, 1.0),
    "express": Method(5.0, 0.30, 0.003, 0.02, 0.5, 0.3, 0.5, 900.0, 60.0, 0.005, 0.2),
}
_METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
_DEFAULT_METHOD = "aliexpress_standard"


@dataclass(frozen=True)
class Country:
    """Destination parameters. ``share`` is relative volume; ``speed`` scales lane medians."""

    share: float
    speed: float
    loss_factor: float = 1.0
    held_share: float = 0.0  # probability of a customs / postal hold (structural lag)
    held_median: float = 0.0  # median transit in days when held
    held_sigma: float = 0.45
    peak_factor: float = 1.35  # transit multiplier for ship dates 11 Nov - 10 Dec
    windows: str = "fast"  # seller window profile, see WINDOW_PROFILES
    epacket: float = 0.0  # share of ePacket (taken from Standard)
    economy: float = 0.25  # share of Cainiao Super Economy
    customs_scans: bool = True  # whether carriers report customs milestones on this lane
    refused_share: float = 0.0  # P(held parcel refused / unpaid and returned to sender)


COUNTRIES: dict[str, Country] = {
    "US": Country(15.0, 1.25, windows="mid", epacket=0.25, economy=0.15),
    "BR": Country(13.0, 1.50, 1.5, 0.42, 55.0, 0.45, 1.45, "br", economy=0.35, refused_share=0.015),
    "FR": Country(8.0, 1.00, epacket=0.08),
    "ES": Country(8.0, 1.00),
    "GB": Country(6.0, 1.05, epacket=0.08),
    "DE": Country(5.0, 1.10),
    "PL": Country(5.0, 1.00, customs_scans=False),
    "IL": Country(4.0, 1.30, windows="mid", epacket=0.12),
    "KR": Country(4.0, 0.65, customs_scans=False),
    "NL": Country(3.5, 0.95, customs_scans=False),
    "CA": Country(3.0, 1.40, windows="mid", epacket=0.12),
    "AU": Country(3.0, 1.45, windows="mid", epacket=0.12),
    "CL": Country(3.0, 1.45, 1.3, 0.15, 32.0, 0.40, 1.35, "latam", economy=0.30),
    "MX": Country(3.0, 1.40, 2.0, 0.20, 38.0, 0.45, 1.35, "latam", economy=0.30),
    "IT": Country(3.0, 1.10),
    "BE": Country(1.5, 1.00, customs_scans=False),
    "PT": Country(1.2, 1.10, customs_scans=False),
    "CZ": Country(1.2, 1.05, customs_scans=False),
    "SE": Country(1.2, 1.15, customs_scans=False),
    "JP": Country(1.0, 0.70, customs_scans=False),
    "SA": Country(1.0, 1.30, windows="mid"),
    "CO": Country(0.8, 1.50, 1.8, 0.25, 40.0, 0.45, 1.35, "latam", economy=0.30),
    # long tail: a handful of shipments per 100k rows
    "NZ": Country(0.05, 1.50, 1.2, windows="mid"),
    "LU": Country(0.018, 1.10, 1.2, customs_scans=False),
    "IS": Country(0.015, 1.50, 1.3, windows="mid", customs_scans=False),
    "MT": Country(0.012, 1.30, 1.3, customs_scans=False),
    "CY": Country(0.008, 1.30, 1.3, customs_scans=False),
    "UY": Country(0.006, 1.60, 1.5, windows="latam"),
}
DEFAULT_COUNTRY = Country(0.0, 1.30, 1.3, windows="mid")
"""Lane used by the truth functions for countries the generator does not know."""

WINDOW_DAYS = np.array([30, 45, 60, 90, 120], dtype=np.int64)
WINDOW_PROFILES: dict[str, tuple[float, ...]] = {
    "fast": (0.10, 0.20, 0.45, 0.20, 0.05),
    "mid": (0.05, 0.15, 0.45, 0.25, 0.10),
    "latam": (0.05, 0.10, 0.35, 0.30, 0.20),
    "br": (0.05, 0.10, 0.30, 0.30, 0.25),
}

# Brazilian states: (share of Brazilian volume, multiplier of the domestic leg). South-east and
# south are served by the Curitiba / Valinhos entry hubs; the north-east and north are far.
BR_STATES: dict[str, tuple[float, float]] = {
    "SP": (0.30, 0.9),
    "RJ": (0.12, 1.0),
    "MG": (0.10, 1.0),
    "ES": (0.02, 1.0),
    "PR": (0.07, 0.9),
    "SC": (0.05, 1.0),
    "RS": (0.06, 1.0),
    "DF": (0.03, 1.4),
    "GO": (0.03, 1.4),
    "MT": (0.015, 1.4),
    "MS": (0.015, 1.4),
    "BA": (0.05, 1.8),
    "PE": (0.035, 1.8),
    "CE": (0.03, 1.8),
    "MA": (0.015, 1.8),
    "PB": (0.012, 1.8),
    "RN": (0.012, 1.8),
    "AL": (0.01, 1.8),
    "PI": (0.008, 1.8),
    "SE": (0.007, 1.8),
    "PA": (0.02, 2.4),
    "AM": (0.015, 2.4),
    "RO": (0.006, 2.4),
    "TO": (0.005, 2.4),
    "AC": (0.002, 2.4),
    "AP": (0.002, 2.4),
    "RR": (0.002, 2.4),
}

PEAK_START = (11, 11)  # (month, day), inclusive
PEAK_END = (12, 10)  # inclusive

# Chinese New Year (first day of the lunar year): the same table the model's features use.
CNY_DATES = np.array(features.CNY_DATES, dtype="datetime64[D]")
# Origin shutdown profile: whole extra days at origin by ship date relative to CNY (piecewise
# linear, rounded) and a slowdown of every leg of up to CNY_SLOWDOWN at the same time.
CNY_OFFSETS = np.array([-10.0, -3.0, 7.0, 25.0])
CNY_ADD_DAYS = np.array([0.0, 8.0, 8.0, 0.0])
CNY_SLOWDOWN = 0.20


@dataclass(frozen=True)
class Event:
    """A dated disruption: parcels shipped in [start, end] to ``country`` get ``add_days``
    on their domestic leg."""

    country: str
    start: str
    end: str
    add_days: float
    methods: tuple[str, ...]


EVENTS: tuple[Event, ...] = (
    # Correios disruption of 2025 (">20 business days"); the dates are an assumption.
    Event(
        "BR",
        "2025-08-18",
        "2025-09-19",
        28.0,
        ("aliexpress_premium", "aliexpress_standard", "cainiao_super_economy", "epacket"),
    ),
)


# --------------------------------------------------------------------------------------
# The stage model (sources and assumptions in data/README.md)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """A lane-scaled leg: median = share x (lane median - FIXED_DAYS) x LEG_SCALE[method]."""

    share: float  # share of the lane's unheld median
    spread: float  # log-sd, times the method's sigma / 0.35
    stuck: float  # share of the method's stuck probability that falls on this leg


LEGS: dict[Kernel, Leg] = {
    Kernel.PICKUP: Leg(0.07, 0.76, 0.0),
    Kernel.ORIGIN: Leg(0.30, 0.65, 0.4),
    Kernel.LINEHAUL: Leg(0.22, 0.54, 0.2),
    Kernel.CLEARANCE: Leg(0.08, 0.86, 0.0),
    Kernel.DOMESTIC: Leg(0.33, 0.65, 0.4),
}
LEG_SCALE: dict[str, float] = {
    "aliexpress_premium": 0.855,
    "aliexpress_standard": 0.835,
    "cainiao_super_economy": 0.80,
    "epacket": 0.83,
    "express": 0.83,
}
"""Per-method factor on the legs' medians so that the unheld, unstuck journey (a sum of
skewed legs plus the fixed hours of label and delivery) keeps the method's median."""

FIXED_DAYS = 0.6  # what the label and delivery hours add to a journey (not lane-scaled)
STUCK_EXTRA = 1.0  # a stuck leg takes (its median + STUCK_EXTRA x lane median) ...
STUCK_SIGMA = 0.5  # ... with this log-sd

# Fixed kernels: (median days, log-sd); scaled by peak / CNY like every leg except LOST_SCAN.
FIXED: dict[Kernel, tuple[float, float]] = {
    Kernel.LABEL: (0.3, 0.6),  # label data reaches the carrier hours after shipped_at
    Kernel.HOLD_SCAN: (0.6, 0.6),  # customs_hold scanned soon after arrival
    Kernel.PAYMENT_DEADLINE: (30.0, 0.2),  # unpaid import tax: returned after ~a month
    Kernel.RETURN_LEG: (25.0, 0.4),  # back to the sender
    Kernel.FINAL: (0.2, 0.5),  # out for delivery -> delivered, same day usually
    Kernel.ATTEMPT: (0.2, 0.5),  # out for delivery -> delivery_failed
    Kernel.NOTICE: (0.75, 0.5),  # delivery_failed -> available_for_pickup
    Kernel.COLLECT: (3.0, 0.6),  # the buyer collects the parcel
    Kernel.LOST_SCAN: (20.0, 0.5),  # a lost parcel's lost / exception scan
}
HELD_OTHER = 0.85  # held median = held clearance + HELD_OTHER x lane median (+ hold scan)
HELD_SPREAD = 1.35  # held clearance log-sd = country's held sigma x HELD_SPREAD
MIN_HELD_CLEARANCE = 2.0  # days
DEFAULT_HELD_MEDIAN = 3.0  # x lane median: lanes without holds, for scans they never show
FAILED_DELIVERY_SHARE = 0.06  # first delivery attempt fails -> the buyer collects

# Where the stage losses happen (shares of the lane's loss, less returns to sender).
LOSS_SHARES: dict[Stage, float] = {
    Stage.INFO: 0.05,
    Stage.PICKED: 0.20,
    Stage.DEPARTED: 0.25,
    Stage.ARRIVED: 0.10,
    Stage.CLEARED: 0.25,
    Stage.OFD: 0.15,
}

# Tracking: probability that a tracked parcel's milestone is NOT scanned (x method factor).
BASE_MISS: dict[Stage, float] = {
    Stage.INFO: 0.03,
    Stage.PICKED: 0.12,
    Stage.DEPARTED: 0.10,
    Stage.ARRIVED: 0.15,
    Stage.HELD: 0.15,
    Stage.CLEARED: 0.25,
    Stage.OFD: 0.20,
    Stage.FAILED: 0.10,
    Stage.PICKUP: 0.10,
    Stage.DELIVERED: 0.02,
    Stage.RETURNING: 0.10,
    Stage.RETURNED: 0.10,
}
LOST_SCAN_SHARE = 0.4  # lost tracked parcels that later get a lost / exception scan
DUPLICATE_SHARE = 0.005  # scans reported twice, identically


# --------------------------------------------------------------------------------------
# Vectorised lane parameters and the per-group stage law
# --------------------------------------------------------------------------------------

_CODES: tuple[str, ...] = (*COUNTRIES, "__default__")
_TABLE: tuple[Country, ...] = (*COUNTRIES.values(), DEFAULT_COUNTRY)


def _country_array(field: str) -> np.ndarray:
    return np.array([getattr(c, field) for c in _TABLE], dtype=np.float64)


def _method_array(field: str) -> np.ndarray:
    return np.array([getattr(m, field) for m in METHODS.values()], dtype=np.float64)


def _method_mix() -> np.ndarray:
    """(countries, methods) probabilities: premium 22 %, express 5 %, the rest per country."""
    mix = np.zeros((len(_TABLE), len(_METHOD_NAMES)))
    col = {m: i for i, m in enumerate(_METHOD_NAMES)}
    for i, c in enumerate(_TABLE):
        mix[i, col["aliexpress_premium"]] = 0.22
        mix[i, col["express"]] = 0.05
        mix[i, col["epacket"]] = c.epacket
        mix[i, col["cainiao_super_economy"]] = c.economy
        mix[i, col["aliexpress_standard"]] = 1.0 - mix[i].sum()
    return mix


_REGION_CODES = np.array(list(BR_STATES), dtype=object)
_REGION_SHARE = np.array([s for s, _ in BR_STATES.values()])
_REGION_SHARE = _REGION_SHARE / _REGION_SHARE.sum()
_REGION_FACTOR = np.array([f for _, f in BR_STATES.values()])
_FACTORS = np.unique(_REGION_FACTOR)  # distinct domestic multipliers
_FACTOR_SHARE = np.array([_REGION_SHARE[np.isclose(_REGION_FACTOR, f)].sum() for f in _FACTORS])
_BR = _CODES.index("BR")
_EXPRESS = _METHOD_NAMES.index("express")


def _country_index(codes: Any) -> np.ndarray:
    """Index into the country table; unknown or missing codes map to the default lane."""
    text = pd.Series(codes, dtype=object).astype("string").str.strip().str.upper()
    lookup = {c: i for i, c in enumerate(_CODES[:-1])}
    return text.map(lookup).fillna(len(_CODES) - 1).to_numpy(dtype=np.int64)


def _method_index(methods: Any) -> np.ndarray:
    """Index into the method table; unknown or missing methods map to Standard."""
    text = pd.Series(methods, dtype=object).astype("string").str.strip().str.lower()
    lookup = {m: i for i, m in enumerate(_METHOD_NAMES)}
    default = _METHOD_NAMES.index(_DEFAULT_METHOD)
    return text.map(lookup).fillna(default).to_numpy(dtype=np.int64)


def _region_index(regions: Any) -> np.ndarray:
    """Index into BR_STATES; -1 where missing or unknown."""
    text = pd.Series(regions, dtype=object).astype("string").str.strip().str.upper()
    lookup = {c: i for i, c in enumerate(_REGION_CODES)}
    return text.map(lookup).fillna(-1).to_numpy(dtype=np.int64)


def _to_days(values: Any) -> np.ndarray:
    """Dates (any pandas-parsable form) as int64 days since 1970-01-01."""
    parsed = pd.to_datetime(pd.Series(values), errors="raise")
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def _date_days(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def _seasonal(ship_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(in_peak, CNY origin days) for integer ship days since epoch; CNY days are whole."""
    ship = ship_days.astype("datetime64[D]")
    months = ship.astype("datetime64[M]")
    month = months.astype(np.int64) % 12 + 1
    day = (ship - months.astype("datetime64[D]")).astype(np.int64) + 1
    md = month * 100 + day
    in_peak = (md >= PEAK_START[0] * 100 + PEAK_START[1]) & (md <= PEAK_END[0] * 100 + PEAK_END[1])

    cny = CNY_DATES.astype(np.int64)
    idx = np.clip(np.searchsorted(cny, ship_days), 1, len(cny) - 1)
    off_next = ship_days - cny[idx]
    off_prev = ship_days - cny[idx - 1]
    offset = np.where(off_next >= CNY_OFFSETS[0], off_next, off_prev).astype(np.float64)
    inside = (offset >= CNY_OFFSETS[0]) & (offset <= CNY_OFFSETS[-1])
    add = np.where(inside, np.rint(np.interp(offset, CNY_OFFSETS, CNY_ADD_DAYS)), 0.0)
    return in_peak, add.astype(np.int64)


def _event_days(country: np.ndarray, method: np.ndarray, ship_days: np.ndarray) -> np.ndarray:
    """Days added to the domestic leg by dated disruptions."""
    add = np.zeros(len(country), dtype=np.int64)
    for ev in EVENTS:
        hit = (
            (country == _CODES.index(ev.country))
            & np.isin(method, [_METHOD_NAMES.index(m) for m in ev.methods])
            & (ship_days >= _date_days(date.fromisoformat(ev.start)))
            & (ship_days <= _date_days(date.fromisoformat(ev.end)))
        )
        add[hit] += round(ev.add_days)
    return add


# A group is every parcel that shares one law: lane, domestic factor and season.
_KEY_FIELDS = ("country", "method", "factor", "peak", "cny", "event")


def _group_keys(
    country: np.ndarray, method: np.ndarray, ship_days: np.ndarray, factor: np.ndarray
) -> np.ndarray:
    """(n, 6) int64 key per row; ``factor`` indexes _FACTORS (+1), 0 = no domestic factor."""
    in_peak, cny = _seasonal(ship_days)
    event = _event_days(country, method, ship_days)
    return np.stack([country, method, factor, in_peak.astype(np.int64), cny, event], axis=1)


def _factor_index(country: np.ndarray, region: np.ndarray) -> np.ndarray:
    """0 outside Brazil; 1 + index into _FACTORS for a known state; -1 Brazil, unknown state."""
    known = region >= 0
    idx = np.searchsorted(_FACTORS, _REGION_FACTOR[np.where(known, region, 0)]) + 1
    return np.where(country == _BR, np.where(known, idx, -1), 0)


def _groups(keys: np.ndarray) -> tuple[np.ndarray, StageLaw]:
    """Row -> group index, and the law of each distinct key."""
    packed = keys[:, 0]
    radices = (len(_METHOD_NAMES), len(_FACTORS) + 1, 2, 64, 4096)
    for col, radix in enumerate(radices, start=1):
        packed = packed * radix + keys[:, col]
    _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    return inverse.reshape(-1), _law(keys[first])


def _law(keys: np.ndarray) -> StageLaw:
    """The stage law of each key row (country, method, factor, peak, cny, event)."""
    country, method, factor, peak, cny, event = (keys[:, i] for i in range(6))
    g = len(keys)
    speed = _country_array("speed")[country]
    elasticity = _method_array("elasticity")[method]
    lane_median = _method_array("median_days")[method] * speed**elasticity
    scale = np.where(peak == 1, _country_array("peak_factor")[country], 1.0)
    scale = scale * (1.0 + CNY_SLOWDOWN * cny / CNY_ADD_DAYS.max())
    domestic = np.where(factor > 0, _FACTORS[np.maximum(factor - 1, 0)], 1.0)
    spread = _method_array("sigma")[method] / 0.35
    leg_scale = np.array([LEG_SCALE[m] for m in _METHOD_NAMES])[method]
    stuck_share = _method_array("stuck_share")[method]

    median = np.ones((g, stages.N_KERNELS, 2))  # days, before the season scale
    sigma = np.full((g, stages.N_KERNELS, 2), STUCK_SIGMA)
    stuck = np.zeros((g, stages.N_KERNELS))
    shift = np.zeros((g, stages.N_KERNELS), dtype=np.int64)
    for kernel, (days, log_sd) in FIXED.items():
        median[:, kernel, :] = days
        sigma[:, kernel, 0] = log_sd
    for kernel, leg in LEGS.items():
        base = leg.share * (lane_median - FIXED_DAYS) * leg_scale
        median[:, kernel, 0] = base
        median[:, kernel, 1] = base + STUCK_EXTRA * lane_median
        sigma[:, kernel, 0] = leg.spread * spread
        stuck[:, kernel] = leg.stuck * stuck_share
    median[:, Kernel.DOMESTIC, :] *= domestic[:, None]

    held = _country_array("held_share")[country] * _method_array("held_share_factor")[method]
    held_median = (
        _country_array("held_median")[country] * _method_array("held_median_factor")[method]
    )
    held_median = np.where(held > 0, held_median, DEFAULT_HELD_MEDIAN * lane_median)
    clearance = np.maximum(held_median - HELD_OTHER * lane_median, MIN_HELD_CLEARANCE)
    median[:, Kernel.HELD_CLEARANCE, :] = clearance[:, None]
    sigma[:, Kernel.HELD_CLEARANCE, 0] = _country_array("held_sigma")[country] * HELD_SPREAD

    not_lost_scan = np.arange(stages.N_KERNELS) != Kernel.LOST_SCAN
    median[:, not_lost_scan, :] *= scale[:, None, None]
    mu = np.log(median * CELLS_PER_DAY)
    shift[:, Kernel.ORIGIN] = cny * CELLS_PER_DAY
    shift[:, Kernel.DOMESTIC] = event * CELLS_PER_DAY

    refused = _country_array("refused_share")[country]
    total_loss = np.minimum(
        _method_array("loss")[method] * _country_array("loss_factor")[country], 0.25
    )
    # P(delivered) = (1 - stage losses) x (1 - held x refused) = 1 - total_loss
    hazard = -np.log((1.0 - total_loss) / (1.0 - held * refused))
    loss = np.zeros((g, stages.N_STAGES))
    for stage, share in LOSS_SHARES.items():
        loss[:, stage] = 1.0 - np.exp(-share * hazard)

    miss = np.zeros((g, stages.N_STAGES))
    for stage, base in BASE_MISS.items():
        miss[:, stage] = np.minimum(base * _method_array("miss_factor")[method], 1.0)
    scan = 1.0 - miss
    scan[:, Stage.START] = 0.0
    no_customs = _country_array("customs_scans")[country] == 0
    scan[no_customs, Stage.HELD] = 0.0
    scan[no_customs, Stage.CLEARED] = 0.0
    return StageLaw(
        mu=mu,
        sigma=sigma,
        stuck=stuck,
        shift=shift,
        held=held,
        refused=refused,
        failed=np.full(g, FAILED_DELIVERY_SHARE),
        loss=loss,
        scan=scan,
        untracked=_method_array("untracked")[method],
        lost_scan=np.full(g, LOST_SCAN_SHARE),
    )


# --------------------------------------------------------------------------------------
# Sampling helpers
# --------------------------------------------------------------------------------------


def _choose(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """Row-wise categorical draw from cumulative probabilities ``cum`` of shape (n, k)."""
    u = rng.random(len(cum))
    return np.minimum((u[:, None] > cum[:, :-1]).sum(axis=1), cum.shape[1] - 1)


def _ship_intensity(as_of: date) -> tuple[np.ndarray, np.ndarray]:
    """(ship days since epoch, relative daily volume) for the HISTORY_DAYS days before as_of."""
    end = _date_days(as_of)
    days = np.arange(end - HISTORY_DAYS, end, dtype=np.int64)
    growth = np.linspace(1.0, 1.8, HISTORY_DAYS)  # the seller's business grows
    ship = days.astype("datetime64[D]")
    weekday = (days + 3) % 7  # 0 = Monday
    volume = growth * np.where(weekday == 6, 0.6, 1.0)
    years = np.unique(ship.astype("datetime64[Y]").astype(np.int64) + 1970)
    for y in years:
        singles = _date_days(date(y, 11, 11))
        volume[(days > singles) & (days <= singles + 9)] *= 2.5
        nov1 = date(y, 11, 1)
        black_friday = _date_days(nov1) + (3 - nov1.weekday()) % 7 + 22  # Thanksgiving + 1
        volume[(days > black_friday) & (days <= black_friday + 7)] *= 1.8
    _, cny_add = _seasonal(days)
    volume = volume * np.where(cny_add >= CNY_ADD_DAYS.max(), 0.35, 1.0)
    return days, volume / volume.sum()


def _attributes(
    n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(country, method, region index (-1 outside Brazil), window days) for n rows."""
    shares = _country_array("share")[:-1]
    country = rng.choice(len(shares), size=n, p=shares / shares.sum())
    method = _choose(rng, np.cumsum(_method_mix(), axis=1)[country])
    region = rng.choice(len(_REGION_CODES), size=n, p=_REGION_SHARE)
    region = np.where(country == _BR, region, -1)
    profiles = list(WINDOW_PROFILES)
    profile_cum = np.cumsum(np.array([WINDOW_PROFILES[p] for p in profiles]), axis=1)
    country_profile = np.array([profiles.index(c.windows) for c in _TABLE])
    window = WINDOW_DAYS[_choose(rng, profile_cum[country_profile[country]])]
    return country, method, region, window


def _weights_values(method: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(method)
    w_med = _method_array("weight_median_g")[method]
    weight = np.clip(np.round(w_med * np.exp(0.8 * rng.standard_normal(n))), 5, 30_000)
    v_med = _method_array("value_median_usd")[method]
    value = v_med * (weight / w_med) ** 0.4 * np.exp(0.8 * rng.standard_normal(n))
    return weight.astype(np.float64), np.clip(np.round(value, 2), 0.5, 5_000.0)


def _dates(days: np.ndarray) -> np.ndarray:
    """Integer days since epoch (float nan allowed) -> datetime64[ns] with NaT."""
    out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = np.isfinite(days)
    out[ok] = days[ok].astype(np.int64).astype("datetime64[D]").astype("datetime64[ns]")
    return out


def _ids(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i:09d}" for i in range(1, n + 1)], dtype=object)


def _region_objects(region: np.ndarray) -> pd.Series:
    out = np.full(len(region), None, dtype=object)
    out[region >= 0] = _REGION_CODES[region[region >= 0]]
    return pd.Series(out, dtype=object)


_SAMPLE_CHUNK = 100_000


def _sample_paths(law: StageLaw, group: np.ndarray, rng: np.random.Generator) -> stages.Paths:
    """Journeys for every row, drawn in chunks to bound memory."""
    if len(group) <= _SAMPLE_CHUNK:
        return stages.sample_paths(law, group, rng)
    parts = [
        stages.sample_paths(law, group[i : i + _SAMPLE_CHUNK], rng)
        for i in range(0, len(group), _SAMPLE_CHUNK)
    ]
    return stages.Paths(
        entry=np.concatenate([p.entry for p in parts]),
        lost_stage=np.concatenate([p.lost_stage for p in parts]),
    )


_REJECTION_MIN_ACCEPT = 0.1  # below, late journeys are drawn by outcome and bridge


def _rejection(
    law: StageLaw,
    group: np.ndarray,
    threshold: np.ndarray,
    delivered_before: np.ndarray,
    accept: np.ndarray,
    rng: np.random.Generator,
) -> stages.Paths:
    """Journeys given delivery cell >= threshold (or, where ``delivered_before``,
    0 <= delivery cell < threshold), by rejection; ``accept`` sizes the batches."""
    n = len(group)
    entry = np.full((n, stages.N_STAGES), -1, dtype=np.int64)
    lost_stage = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n)
    while len(todo):
        reps = np.clip(np.ceil(1.5 / np.maximum(accept[todo], 1e-9)), 1, 2_000).astype(np.int64)
        budget = np.cumsum(reps) <= 400_000
        budget[0] = True
        rows, reps = todo[budget], reps[budget]
        cand = np.repeat(rows, reps)
        paths = _sample_paths(law, group[cand], rng)
        cell = paths.delivered
        late = (cell < 0) | (cell >= threshold[cand])
        ok = np.where(delivered_before[cand], ~late, late)
        hit = np.flatnonzero(ok)
        first_rows, first = np.unique(cand[hit], return_index=True)
        entry[first_rows] = paths.entry[hit[first]]
        lost_stage[first_rows] = paths.lost_stage[hit[first]]
        done = np.zeros(n, dtype=bool)
        done[first_rows] = True
        todo = np.concatenate([rows[~done[rows]], todo[~budget]])
    return stages.Paths(entry=entry, lost_stage=lost_stage)


def _sample_conditional(
    law: StageLaw,
    group: np.ndarray,
    threshold: np.ndarray,
    delivered_before: np.ndarray,
    rng: np.random.Generator,
    late: np.ndarray | None = None,
) -> stages.Paths:
    """Journeys drawn exactly given delivery cell >= threshold (or, where
    ``delivered_before``, 0 <= delivery cell < threshold). ``late`` is
    ``P(delivery cell >= threshold)`` per row when the caller has it.

    Rejection where it accepts often; elsewhere (a late parcel on a fast lane) the end is
    drawn from its exact conditional law first: never delivered (lost at a stage, or
    returned: :func:`stages.outcome_probabilities`, then the journey given that end) or
    delivered at a cell drawn from the exact survival curve (then the journey bridged back
    to its start, :func:`stages.sample_bridge`).
    """
    n = len(group)
    used, local = np.unique(group, return_inverse=True)
    sub = law.take(used)
    if late is None:
        late = stages.survival_at(sub, local, threshold)
    outcome_p = stages.outcome_probabilities(sub)[local]
    never = 1.0 - outcome_p[:, Stage.DELIVERED]
    accept = np.where(delivered_before, 1.0 - late, late)
    direct = ~delivered_before & (late < _REJECTION_MIN_ACCEPT)
    u = rng.random(n)
    lost = direct & (u * late < never)
    bridged = direct & ~lost

    entry = np.full((n, stages.N_STAGES), -1, dtype=np.int64)
    lost_stage = np.full(n, -1, dtype=np.int64)
    parts: list[tuple[np.ndarray, stages.Paths]] = []
    rows = np.flatnonzero(~direct)
    parts.append(
        (
            rows,
            _rejection(
                law, group[rows], threshold[rows], delivered_before[rows], accept[rows], rng
            ),
        )
    )
    rows = np.flatnonzero(lost)
    if len(rows):
        ends = outcome_p[rows].copy()
        ends[:, Stage.DELIVERED] = 0.0
        cum = np.cumsum(ends, axis=1)
        end = (cum < rng.random(len(rows))[:, None] * cum[:, -1:]).sum(axis=1)
        parts.append((rows, stages.sample_paths(law, group[rows], rng, outcome=end)))
    rows = np.flatnonzero(bridged)
    if len(rows):
        # P(delivery cell = t | cell >= threshold, delivered) from the survival curve S:
        # the cell is the last t with S(t) > u, u uniform on (S(inf), S(threshold)).
        needed, g = np.unique(local[rows], return_inverse=True)
        curves = stages.survival_curves(sub.take(needed), np.full(len(needed), stages.MAX_CELLS))
        top = curves[g, threshold[rows]]
        target = top - rng.random(len(rows)) * (top - never[rows])
        lo, hi = threshold[rows].copy(), np.full(len(rows), curves.shape[1] - 1)
        while (hi - lo > 1).any():  # invariant: S(lo) > target >= S(hi)
            mid = (lo + hi) // 2
            above = curves[g, mid] > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        cell = np.minimum(lo, stages.MAX_CELLS - 1)
        parts.append((rows, stages.sample_bridge(law, group[rows], cell, rng)))
    for rows, paths in parts:
        entry[rows] = paths.entry
        lost_stage[rows] = paths.lost_stage
    return stages.Paths(entry=entry, lost_stage=lost_stage)


@dataclass(frozen=True)
class _Journeys:
    """What the scans of a frame's rows are made from."""

    paths: stages.Paths
    group: np.ndarray
    law: StageLaw
    ship: np.ndarray  # int days since epoch
    country: np.ndarray
    method: np.ndarray
    region: np.ndarray


# --------------------------------------------------------------------------------------
# Scans
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    """A generated frame (history or open orders) and the carrier scans of its orders."""

    frame: pd.DataFrame
    events: pd.DataFrame


_SCAN_SLOTS: tuple[Stage, ...] = stages.SCANNED_STAGES  # one slot per milestone, then "lost"
_LOST_SLOT = len(_SCAN_SLOTS)
_ORIGIN_SIDE = np.array([s in (Stage.INFO, Stage.PICKED, Stage.DEPARTED) for s in _SCAN_SLOTS])
_DELIVERY_SIDE = np.array(
    [s in (Stage.OFD, Stage.FAILED, Stage.PICKUP, Stage.DELIVERED) for s in _SCAN_SLOTS]
)
_CELL_NS = 86_400 * 10**9 // CELLS_PER_DAY
_DAY_NS = 86_400 * 10**9


class _Vocab:
    """Strings by integer code, for building text columns without per-row Python."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.values)
            self.values.append(text)
        return self._index[text]

    def column(self, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
        return pd.array(np.array(self.values, dtype=object)[codes], dtype="str")


def _text_tables() -> tuple[_Vocab, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vocab, descriptions (lang, milestone, variant), variant counts, origin carriers,
    destination (carrier, hub, city) per country)."""
    vocab = _Vocab()
    names = [*event_schema.MILESTONES]
    tables = (scan_text.DESCRIPTIONS_EN, scan_text.DESCRIPTIONS_BR)
    width = max(len(v) for table in tables for v in table.values())
    desc = np.zeros((2, len(names), width), dtype=np.int64)
    count = np.ones((2, len(names)), dtype=np.int64)
    for lang, table in enumerate(tables):
        for i, name in enumerate(names):
            variants = table.get(name) or scan_text.DESCRIPTIONS_EN[name]
            count[lang, i] = len(variants)
            for j in range(width):
                desc[lang, i, j] = vocab.code(variants[min(j, len(variants) - 1)])
    origin = np.array(
        [
            [vocab.code(scan_text.ORIGIN_CARRIERS.get(m, scan_text.EXPRESS_CARRIERS[0]))]
            for m in _METHOD_NAMES
        ]
    )[:, 0]
    dest = np.array(
        [
            [
                vocab.code(scan_text.DESTINATION_CARRIERS.get(c, scan_text.DEFAULT_CARRIER)),
                vocab.code(scan_text.DESTINATION_CITIES.get(c, scan_text.DEFAULT_CITY)[0]),
                vocab.code(scan_text.DESTINATION_CITIES.get(c, scan_text.DEFAULT_CITY)[1]),
            ]
            for c in _CODES
        ]
    )
    return vocab, desc, count, origin, dest


def _scans(
    j: _Journeys, last_day: np.ndarray, ids: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """The scans of every row with event date <= ``last_day`` (int days since epoch)."""
    paths, law, g = j.paths, j.law, j.group
    n = len(g)
    tracked = rng.random(n) >= law.untracked[g]
    z = rng.standard_normal(n)
    delay = np.maximum(
        np.rint(np.exp(law.mu[g, Kernel.LOST_SCAN, 0] + law.sigma[g, Kernel.LOST_SCAN, 0] * z)),
        1,
    ).astype(np.int64)
    is_exception = rng.random(n) < 0.5
    cells = np.empty((n, len(_SCAN_SLOTS) + 1), dtype=np.int64)
    cells[:, :_LOST_SLOT] = paths.entry[:, list(_SCAN_SLOTS)]
    lost = paths.lost_stage >= 0
    cells[:, _LOST_SLOT] = np.where(
        lost, paths.entry[np.arange(n), np.maximum(paths.lost_stage, 0)] + delay, -1
    )
    rate = np.concatenate([law.scan[g][:, list(_SCAN_SLOTS)], law.lost_scan[g][:, None]], axis=1)
    limit = (last_day - j.ship + 1) * CELLS_PER_DAY
    take = (
        tracked[:, None]
        & (cells >= 0)
        & (cells < limit[:, None])
        & (rng.random(cells.shape) < rate)
    )
    row, slot = np.nonzero(take)  # by row, then journey order: by row, then time
    m = len(row)
    jitter = rng.integers(0, _CELL_NS // 10**9, size=m) * 10**9
    event_ns = j.ship[row] * _DAY_NS + cells[row, slot] * _CELL_NS + jitter

    names = list(event_schema.MILESTONES)
    slot_milestone = np.array(
        [names.index(stages.MILESTONE_OF_STAGE[s]) for s in _SCAN_SLOTS] + [names.index("lost")]
    )
    milestone = slot_milestone[slot]
    milestone = np.where(
        (slot == _LOST_SLOT) & is_exception[row], names.index("exception"), milestone
    )

    vocab, desc, count, origin_carrier, dest = _text_tables()
    country, method = j.country[row], j.method[row]
    express = method == _EXPRESS
    integrator = np.array([vocab.code(c) for c in scan_text.EXPRESS_CARRIERS])
    row_integrator = integrator[rng.integers(0, len(integrator), size=n)][row]
    origin_city = np.array([vocab.code(c) for c in scan_text.ORIGIN_CITIES])
    row_origin_city = origin_city[rng.integers(0, len(origin_city), size=n)][row]
    state_city = np.array([vocab.code(scan_text.BR_STATE_CITIES[s]) for s in _REGION_CODES])
    region = j.region[row]
    delivery_city = np.where(region >= 0, state_city[np.maximum(region, 0)], dest[country, 2])

    lost_at_origin = paths.lost_stage[row] <= Stage.DEPARTED
    origin_side = np.where(slot == _LOST_SLOT, lost_at_origin, _ORIGIN_SIDE[np.minimum(slot, 11)])
    delivery_side = (slot < _LOST_SLOT) & _DELIVERY_SIDE[np.minimum(slot, 11)]
    carrier = np.where(
        express, row_integrator, np.where(origin_side, origin_carrier[method], dest[country, 0])
    )
    location = np.where(
        origin_side, row_origin_city, np.where(delivery_side, delivery_city, dest[country, 1])
    )
    lang = ((country == _BR) & ~origin_side).astype(np.int64)
    variant = rng.integers(0, 1 << 30, size=m) % count[lang, milestone]
    description = desc[lang, milestone, variant]
    milestone_names = np.array(names, dtype=object)
    copies = 1 + (rng.random(m) < DUPLICATE_SHARE)  # a few scans are reported twice
    row, event_ns, milestone, carrier, location, description = (
        np.repeat(a, copies) for a in (row, event_ns, milestone, carrier, location, description)
    )
    return pd.DataFrame(
        {
            "order_id": pd.array(ids[row], dtype="str"),
            "event_at": event_ns.astype("datetime64[ns]"),
            "milestone": pd.array(milestone_names[milestone], dtype="str"),
            "carrier": vocab.column(carrier),
            "location": vocab.column(location),
            "description": vocab.column(description),
        },
        columns=list(EVENT_COLUMNS),
    )


# --------------------------------------------------------------------------------------
# Public API: generation
# --------------------------------------------------------------------------------------


def _cells_to_days(cells: np.ndarray) -> np.ndarray:
    return np.floor_divide(cells, CELLS_PER_DAY)


def _simulate_history(rows: int, seed: int, as_of: date) -> tuple[pd.DataFrame, _Journeys]:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    rng = np.random.default_rng(seed)
    country, method, region, window = _attributes(rows, rng)
    days, volume = _ship_intensity(as_of)
    ship = np.sort(rng.choice(days, size=rows, p=volume))  # the attributes are iid: sort ok
    group, law = _groups(_group_keys(country, method, ship, _factor_index(country, region)))
    paths = _sample_paths(law, group, rng)
    cell = paths.delivered
    delivered = np.where(cell >= 0, ship + _cells_to_days(cell), np.inf)
    delivered = np.where(delivered <= _date_days(as_of), delivered, np.nan)
    weight, value = _weights_values(method, rng)
    frame = pd.DataFrame(
        {
            "order_id": pd.array(_ids("H", rows), dtype="str"),
            "destination_country": pd.array(np.array(_CODES, dtype=object)[country], dtype="str"),
            "shipping_method": pd.array(np.array(_METHOD_NAMES, dtype=object)[method], dtype="str"),
            "shipped_at": _dates(ship.astype(np.float64)),
            "deadline": _dates((ship + window).astype(np.float64)),
            "delivered_at": _dates(delivered),
            "destination_region": _region_objects(region),
            "weight_g": weight,
            "declared_value_usd": value,
        },
        columns=list(HISTORY_COLUMNS),
    )
    return frame, _Journeys(paths, group, law, ship, country, method, region)


def generate_shipments(rows: int, seed: int = DEFAULT_SEED, as_of: date | None = None) -> Generated:
    """Shipment history of ``rows`` parcels shipped in the 720 days before ``as_of``, and
    their carrier scans with event date <= ``as_of``.

    ``delivered_at`` is NaT for parcels never delivered (lost, returned) and for parcels still
    travelling at ``as_of`` (censored). Rows are in shipping order; ``order_id`` is
    ``H000000001``, ``H000000002``... Events are sorted by order (frame order), then time.
    """
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    frame, journeys = _simulate_history(rows, seed, as_of)
    rng = np.random.default_rng([seed, 2])  # scans never change the frame
    last_day = np.full(rows, _date_days(as_of), dtype=np.int64)
    ids = frame["order_id"].to_numpy(dtype=object)
    return Generated(frame, _scans(journeys, last_day, ids, rng))


def generate_history(
    rows: int, seed: int = DEFAULT_SEED, as_of: date | None = None
) -> pd.DataFrame:
    """The frame of :func:`generate_shipments` (the same rows, without drawing scans)."""
    return _simulate_history(rows, seed, DEFAULT_AS_OF if as_of is None else as_of)[0]


def _simulate_open(
    rows: int, seed: int, as_of: date, dispute_share: float
) -> tuple[pd.DataFrame, _Journeys]:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if not 0.0 <= dispute_share <= 1.0:
        raise ValueError(f"dispute_share must be in [0, 1], got {dispute_share}")
    end = _date_days(as_of)
    rng = np.random.default_rng([seed, 1])  # independent of the history stream
    country, method, region, window = _attributes(rows, rng)
    extensions = rng.choice(3, size=rows, p=OPEN_EXTENSION_PROBS)
    total_window = window + EXTENSION_DAYS * extensions
    near = rng.random(rows) < OPEN_NEAR_DEADLINE_SHARE
    far_max = np.where(extensions == 0, window, EXTENSION_DAYS + 5)
    left = np.where(
        near,
        rng.integers(0, 5, size=rows),
        5 + np.floor(rng.random(rows) * (far_max - 4)).astype(np.int64),
    )
    elapsed = total_window - left
    ship = end - elapsed
    group, law = _groups(_group_keys(country, method, ship, _factor_index(country, region)))
    threshold = (elapsed + 1) * CELLS_PER_DAY  # T_days > elapsed <=> delivery cell >= this
    survival = stages.survival_at(law, group, threshold)
    delivered_flag = rng.random(rows) < OPEN_DELIVERED_SHARE
    delivered_flag &= 1.0 - survival > 1e-4  # cannot have arrived yet: drawn as undelivered
    paths = _sample_conditional(law, group, threshold, delivered_flag, rng, survival)
    cell = paths.delivered
    delivered = np.where(delivered_flag, ship + _cells_to_days(cell), np.nan)

    dispute = np.full(rows, np.nan)
    eligible = np.flatnonzero(elapsed >= 10)
    n_dispute = min(round(dispute_share * rows), len(eligible))
    picked = rng.choice(eligible, size=n_dispute, replace=False)
    lo = ship[picked] + 10
    dispute[picked] = lo + np.floor(rng.random(n_dispute) * (end - lo + 1))
    weight, value = _weights_values(method, rng)
    frame = pd.DataFrame(
        {
            "order_id": pd.array(_ids("O", rows), dtype="str"),
            "destination_country": pd.array(np.array(_CODES, dtype=object)[country], dtype="str"),
            "shipping_method": pd.array(np.array(_METHOD_NAMES, dtype=object)[method], dtype="str"),
            "shipped_at": _dates(ship.astype(np.float64)),
            "deadline": _dates((ship + total_window).astype(np.float64)),
            "delivered_at": _dates(delivered),
            "extensions": extensions.astype(np.int64),
            "dispute_opened_at": _dates(dispute),
            "destination_region": _region_objects(region),
            "weight_g": weight,
            "declared_value_usd": value,
        },
        columns=list(OPEN_ORDER_COLUMNS),
    )
    return frame, _Journeys(paths, group, law, ship, country, method, region)


def generate_open(
    rows: int,
    seed: int = DEFAULT_SEED,
    as_of: date | None = None,
    *,
    dispute_share: float = 0.03,
) -> Generated:
    """Orders still awaiting buyer receipt at ``as_of``, and their scans by ``as_of``.

    About half have fewer than 5 days left (``deadline - as_of`` in [0, 5)); the rest are
    spread over their window. Each journey is drawn from the lane's stage process conditioned
    on not being delivered by ``as_of`` (about 3 % on being delivered by then: delivered but
    not yet confirmed), exactly, by rejection; so the snapshot and its scans are consistent
    with :func:`true_survival_given_scans`. ``deadline`` includes 30 days per extension.
    """
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    frame, journeys = _simulate_open(rows, seed, as_of, dispute_share)
    rng = np.random.default_rng([seed, 3])
    last_day = np.full(rows, _date_days(as_of), dtype=np.int64)
    ids = frame["order_id"].to_numpy(dtype=object)
    return Generated(frame, _scans(journeys, last_day, ids, rng))


def generate_open_orders(
    rows: int,
    seed: int = DEFAULT_SEED,
    as_of: date | None = None,
    *,
    dispute_share: float = 0.03,
) -> pd.DataFrame:
    """The frame of :func:`generate_open` (the same rows, without drawing scans)."""
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    return _simulate_open(rows, seed, as_of, dispute_share)[0]


# --------------------------------------------------------------------------------------
# Public API: the truth
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problems:
    """Rows expanded over the Brazilian domestic factors where the state is unknown."""

    row: np.ndarray  # (p,) index into the frame
    weight: np.ndarray  # (p,) prior weight of the problem's factor
    group: np.ndarray  # (p,) index into law
    law: StageLaw
    ship: np.ndarray  # (n,) int days, per frame row


def _problems(frame: pd.DataFrame) -> _Problems:
    for col in ("destination_country", "shipping_method", "shipped_at", "destination_region"):
        if col not in frame.columns:
            raise ValueError(f"frame lacks column {col!r}")
    n = len(frame)
    country = _country_index(frame["destination_country"].to_numpy(dtype=object))
    method = _method_index(frame["shipping_method"].to_numpy(dtype=object))
    ship = _to_days(frame["shipped_at"])
    region = _region_index(frame["destination_region"].to_numpy(dtype=object))
    factor = _factor_index(country, region)
    unknown = np.flatnonzero(factor < 0)
    k = len(_FACTORS)
    row = np.concatenate([np.flatnonzero(factor >= 0), np.repeat(unknown, k)])
    fac = np.concatenate([factor[factor >= 0], np.tile(np.arange(1, k + 1), len(unknown))])
    weight = np.concatenate([np.ones(n - len(unknown)), np.tile(_FACTOR_SHARE, len(unknown))])
    group, law = _groups(_group_keys(country[row], method[row], ship[row], fac))
    return _Problems(row=row, weight=weight, group=group, law=law, ship=ship)


def _sum_by_row(values: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, *values.shape[1:]))
    np.add.at(out, row, values)
    return out


def _horizon_cells(days: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    horizons = np.asarray(days, dtype=np.float64)
    if horizons.ndim not in (1, 2) or horizons.shape[0] != n:
        raise ValueError(f"days must have shape (n,) or (n, k) with n={n}, got {horizons.shape}")
    grid = horizons[:, None] if horizons.ndim == 1 else horizons
    # T_days > d  <=>  delivery cell >= (floor(d) + 1) x cells per day
    cells = (np.floor(np.clip(grid, -1, stages.MAX_CELLS)) + 1) * CELLS_PER_DAY
    return horizons, cells.astype(np.int64)


def true_survival(frame: pd.DataFrame, days: np.ndarray) -> np.ndarray:
    """True ``P(T_days > days)`` per row under the generator's law (no scans seen).

    ``frame`` needs destination_country, shipping_method, shipped_at and destination_region.
    ``days`` has shape (n,) or (n, k); the result has the same shape. Unknown countries use
    :data:`DEFAULT_COUNTRY`, unknown methods Standard; a Brazilian row without a known state
    is the volume-weighted mixture over states. Horizons past 730 days are taken at 730
    (the mass a parcel still has in transit then is below 1e-6).
    """
    n = len(frame)
    horizons, cells = _horizon_cells(days, n)
    p = _problems(frame)
    surv = stages.survival_at(p.law, p.group, cells[p.row])
    out = _sum_by_row(surv * p.weight[:, None], p.row, n)
    return out.reshape(horizons.shape)


_STAGE_OF_MILESTONE: dict[str, Stage] = {m: s for s, m in stages.MILESTONE_OF_STAGE.items()}
_GONE = ("lost", "exception", "returning", "returned")
_TOPO_RANK = np.array([stages.TOPO_ORDER.index(s) for s in Stage])
_BEFORE_DOMESTIC = np.array(
    [
        s in (Stage.START, Stage.INFO, Stage.PICKED, Stage.DEPARTED, Stage.ARRIVED)
        or s in (Stage.HELD, Stage.CLEARED)
        for s in Stage
    ]
)
_AFTER_DOMESTIC = np.array(
    [s in (Stage.OFD, Stage.FAILED, Stage.PICKUP, Stage.DELIVERED) for s in Stage]
)


@dataclass(frozen=True)
class _Seen:
    """What each frame row's scans show by its decision date."""

    delivered: np.ndarray  # (n,) bool: a delivered scan was seen
    gone: np.ndarray  # (n,) bool: lost / exception / returning / returned seen
    last_stage: np.ndarray  # (n,) -1 without a stage scan
    last_cell: np.ndarray
    before_stage: np.ndarray  # last scan before the domestic leg (START at 0 if none)
    before_cell: np.ndarray
    after_stage: np.ndarray  # first scan after the domestic leg (-1 if none)
    after_cell: np.ndarray


def _seen(frame: pd.DataFrame, events: pd.DataFrame, ship: np.ndarray, cutoff: np.ndarray) -> _Seen:
    n = len(frame)
    for col in ("order_id", "event_at", "milestone"):
        if col not in events.columns:
            raise ValueError(f"events lack column {col!r}")
    ids = frame["order_id"].astype(str).to_numpy()
    if len(set(ids)) != n:
        raise ValueError("frame order_id values must be unique")
    lookup = pd.Index(ids)
    row = lookup.get_indexer(events["order_id"].astype(str).to_numpy())
    inside = row >= 0
    row = row[inside]
    milestone = events["milestone"].astype(str).to_numpy()[inside]
    unknown = ~np.isin(milestone, event_schema.MILESTONES)
    if unknown.any():
        raise ValueError(f"unknown milestone {milestone[unknown][0]!r}")
    at = pd.to_datetime(events["event_at"].iloc[np.flatnonzero(inside)], errors="raise")
    if at.dt.tz is not None:
        at = at.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = at.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    cell = np.floor_divide(ns - ship[row] * _DAY_NS, _CELL_NS)
    early = cell < 0
    if early.any():
        first = np.flatnonzero(early)[0]
        raise ValueError(f"order {ids[row[first]]}: scan at {at.iloc[first]} before shipped_at")
    keep = cell < cutoff[row]
    row, milestone, cell = row[keep], milestone[keep], cell[keep]

    delivered = np.zeros(n, dtype=bool)
    delivered[row[milestone == "delivered"]] = True
    gone = np.zeros(n, dtype=bool)
    gone[row[np.isin(milestone, _GONE)]] = True
    is_stage = np.isin(milestone, list(_STAGE_OF_MILESTONE)) & ~np.isin(milestone, _GONE)
    row, cell = row[is_stage], cell[is_stage]
    stage = (
        pd.Series(milestone[is_stage])
        .map({m: int(s) for m, s in _STAGE_OF_MILESTONE.items()})
        .to_numpy(dtype=np.int64)
    )
    order = np.lexsort((_TOPO_RANK[stage], cell, row))
    row, cell, stage = row[order], cell[order], stage[order]

    def pick(mask: np.ndarray, last: bool, default_stage: int) -> tuple[np.ndarray, np.ndarray]:
        out_stage = np.full(n, default_stage, dtype=np.int64)
        out_cell = np.zeros(n, dtype=np.int64)
        r, c, s = row[mask], cell[mask], stage[mask]
        if last:  # sorted: the last write per row wins
            out_stage[r], out_cell[r] = s, c
        else:
            first = np.unique(r, return_index=True)[1]
            out_stage[r[first]], out_cell[r[first]] = s[first], c[first]
        return out_stage, out_cell

    everything = np.ones(len(row), dtype=bool)
    last_stage, last_cell = pick(everything, True, -1)
    before_stage, before_cell = pick(_BEFORE_DOMESTIC[stage], True, int(Stage.START))
    after_stage, after_cell = pick(_AFTER_DOMESTIC[stage], False, -1)
    return _Seen(
        delivered, gone, last_stage, last_cell, before_stage, before_cell, after_stage, after_cell
    )


def true_survival_given_scans(
    frame: pd.DataFrame,
    events: pd.DataFrame,
    decision_dates: Any,
    days: np.ndarray,
) -> np.ndarray:
    """True ``P(T_days > days | T_days > e, the scans with event date <= decision date)``.

    ``e`` is ``decision_dates[i] - shipped_at[i]`` in days and ``days[i, k] >= e`` (smaller
    horizons give 1). ``events`` has order_id, event_at, milestone (scans of orders not in
    ``frame`` are ignored). Exact for the generator's process: the future after the last scan
    depends only on its stage; every milestone after it and before the end of the decision
    day was missed; no scan at all mixes "untracked" with "tracked, every scan so far
    missed"; a lost / exception / returning / returned scan gives 1, a delivered scan 0.
    ``days`` has shape (n,) or (n, k); the result has the same shape.
    """
    n = len(frame)
    horizons, cells = _horizon_cells(days, n)
    decision = np.asarray(pd.to_datetime(pd.Series(decision_dates)).to_numpy("datetime64[D]"))
    if decision.shape != (n,):
        raise ValueError(f"decision_dates must have {n} entries, got {decision.shape}")
    p = _problems(frame)
    ship = p.ship
    elapsed = decision.astype(np.int64) - ship
    cutoff = np.clip((elapsed + 1) * CELLS_PER_DAY, 0, stages.MAX_CELLS)
    targets = np.concatenate([cutoff[:, None], np.maximum(cells, cutoff[:, None])], axis=1)
    seen = _seen(frame, events, ship, cutoff)

    r = p.row
    joint = np.zeros((len(r), targets.shape[1]))
    scanned = (seen.last_stage[r] >= 0) & ~seen.delivered[r] & ~seen.gone[r]
    silent = (seen.last_stage[r] < 0) & ~seen.delivered[r] & ~seen.gone[r]
    if scanned.any():
        i = np.flatnonzero(scanned)
        k = seen.last_cell[r[i]]
        joint[i] = stages.joint_survival(
            p.law, p.group[i], seen.last_stage[r[i]], cutoff[r[i]] - k, targets[r[i]] - k[:, None]
        )
        spans = (seen.after_stage[r[i]] >= 0) & (seen.after_cell[r[i]] >= seen.before_cell[r[i]])
        if spans.any():  # the domestic leg, which the state scales, lies between two scans
            j = i[spans]
            joint[j] *= stages.entry_density(
                p.law,
                p.group[j],
                seen.before_stage[r[j]],
                seen.after_stage[r[j]],
                seen.after_cell[r[j]] - seen.before_cell[r[j]],
            )[:, None]
    if silent.any():
        i = np.flatnonzero(silent)
        starts = np.full(len(i), int(Stage.START))
        tracked = stages.joint_survival(p.law, p.group[i], starts, cutoff[r[i]], targets[r[i]])
        prior = stages.survival_at(p.law, p.group[i], targets[r[i]])
        untracked = p.law.untracked[p.group[i]][:, None]
        joint[i] = untracked * prior + (1.0 - untracked) * tracked
    total = _sum_by_row(joint * p.weight[:, None], r, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = total[:, 1:] / total[:, :1]
    # An observation the process (numerically) cannot produce: only loss can explain it.
    out = np.where(total[:, :1] > 1e-300, out, 1.0)
    out = np.where(seen.gone[:, None], 1.0, out)
    out = np.where(seen.delivered[:, None], 0.0, out)
    return np.clip(out, 0.0, 1.0).reshape(horizons.shape)


def lane_summary(as_of: date | None = None) -> pd.DataFrame:
    """One row per country x method: volume share, off-peak median / p90 transit, loss.

    Medians and 90th percentiles are of ``T_days`` for delivered parcels, off-season,
    state-mixed for Brazil; ``loss`` is the share never delivered (lost or returned).
    """
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    mix = _method_mix()
    shares = _country_array("share")[:-1]
    shares = shares / shares.sum()
    off_peak = np.datetime64(date(as_of.year - 1, 6, 1))  # no peak, CNY or event
    lanes = [
        (ci, mi)
        for ci in range(len(_CODES) - 1)
        for mi in range(len(_METHOD_NAMES))
        if mix[ci, mi] > 0
    ]
    frame = pd.DataFrame(
        {
            "destination_country": [_CODES[ci] for ci, _ in lanes],
            "shipping_method": [_METHOD_NAMES[mi] for _, mi in lanes],
            "shipped_at": [off_peak] * len(lanes),
            "destination_region": [None] * len(lanes),
        }
    )
    grid = np.arange(-1, 730, dtype=np.float64)
    surv = true_survival(frame, np.tile(grid, (len(lanes), 1)))
    records = []
    for i, (ci, mi) in enumerate(lanes):
        loss = float(surv[i, -1])
        delivered_surv = (surv[i, 1:] - loss) / (1.0 - loss)
        records.append(
            {
                "destination_country": _CODES[ci],
                "shipping_method": _METHOD_NAMES[mi],
                "share": float(shares[ci] * mix[ci, mi]),
                "median_days": int(np.argmax(delivered_surv <= 0.5)),
                "p90_days": int(np.argmax(delivered_surv <= 0.1)),
                "loss": round(loss, 5),
            }
        )
    return pd.DataFrame.from_records(records)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".generator.json")


def write_generated(frame: pd.DataFrame, path: Path, *, seed: int, as_of: date, kind: str) -> None:
    """Write ``frame`` as .csv, .csv.gz or .parquet plus a ``<path>.generator.json`` sidecar.

    CSV dates are ISO ``YYYY-MM-DD`` (``YYYY-MM-DDTHH:MM:SS`` for ``kind="events"``) and
    missing values are empty cells.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        fmt = "csv"
    elif name.endswith(".parquet"):
        fmt = "parquet"
    else:
        raise ValueError(
            f"unsupported output suffix {''.join(path.suffixes) or '(none)'!r} for {path}: "
            "use .csv, .csv.gz or .parquet"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        date_format = "%Y-%m-%dT%H:%M:%S" if kind == "events" else "%Y-%m-%d"
        frame.to_csv(path, index=False, date_format=date_format, na_rep="")
    else:
        frame.to_parquet(path, index=False)
    meta = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "as_of": as_of.isoformat(),
        "rows": len(frame),
        "kind": kind,
    }
    _sidecar(path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_generator_meta(path: Path) -> dict | None:
    """The sidecar written by :func:`write_generated`, or None if missing or not ours."""
    sidecar = _sidecar(Path(path))
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR_NAME:
        return None
    return meta


def main(argv: list[str] | None = None) -> None:
    """``python -m data.generate {history,open} ROWS OUT [--seed N] [--as-of YYYY-MM-DD]
    [--events PATH]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m data.generate", description=main.__doc__)
    parser.add_argument("kind", choices=["history", "open"])
    parser.add_argument("rows", type=int)
    parser.add_argument("out", type=Path, help=".csv, .csv.gz or .parquet")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--as-of", type=date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument("--events", type=Path, default=None, help="also write the scans here")
    args = parser.parse_args(argv)
    if args.events is None:
        make = generate_history if args.kind == "history" else generate_open_orders
        frame = make(args.rows, seed=args.seed, as_of=args.as_of)
    else:
        both = generate_shipments if args.kind == "history" else generate_open
        generated = both(args.rows, seed=args.seed, as_of=args.as_of)
        frame = generated.frame
        write_generated(
            generated.events, args.events, seed=args.seed, as_of=args.as_of, kind="events"
        )
        print(f"wrote {len(generated.events)} scans to {args.events}")
    write_generated(frame, args.out, seed=args.seed, as_of=args.as_of, kind=args.kind)
    print(f"wrote {len(frame)} {args.kind} rows to {args.out}")


if __name__ == "__main__":
    main()
