"""Synthetic cross-border shipment history and open orders, with their true transit law.

Every parcel's transit time ``T`` (continuous days from shipment) follows a per-row mixture::

    T = shift + scale * Y,    Y ~ LogNormal mixture {normal, stuck, customs-held}
    T = inf                   with probability p_loss (lost, never delivered)

* the lane (destination country x shipping method) sets the medians, spreads, component
  weights and loss rate;
* ``scale`` = Brazilian state factor x peak-season factor (ship date 11 Nov - 10 Dec) x
  Chinese-New-Year slowdown; ``shift`` = CNY origin shutdown days + known disruption events;
* ``T_days = floor(T)`` and ``delivered_at = shipped_at + T_days`` unless lost or after as_of.

:func:`true_survival` evaluates ``P(T_days > d)`` in closed form for the same law, so models
fitted on :func:`generate_history` can be scored against the truth. Parameters and their
sources are documented in ``data/README.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from model import features, schema

__all__ = [
    "BR_STATES",
    "COUNTRIES",
    "DEFAULT_AS_OF",
    "DEFAULT_SEED",
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "HISTORY_COLUMNS",
    "METHODS",
    "OPEN_ORDER_COLUMNS",
    "generate_history",
    "generate_open_orders",
    "lane_summary",
    "main",
    "read_generator_meta",
    "true_survival",
    "write_generated",
]

GENERATOR_NAME = "window-advisor"
GENERATOR_VERSION = "2"
DEFAULT_AS_OF = date(2026, 11, 1)
DEFAULT_SEED = 7

HISTORY_DAYS = 720
"""Shipments are spread over the ``HISTORY_DAYS`` days before ``as_of`` (as_of excluded)."""

# The schema's columns, less ``ordered_at`` (the generator models no order-to-shipment delay).
HISTORY_COLUMNS: tuple[str, ...] = tuple(c for c in schema.HISTORY_COLUMNS if c != "ordered_at")
OPEN_ORDER_COLUMNS: tuple[str, ...] = tuple(
    c for c in schema.OPEN_ORDER_COLUMNS if c != "ordered_at"
)
EXTENSION_DAYS = 30
OPEN_NEAR_DEADLINE_SHARE = 0.5  # share of open orders with deadline - as_of in [0, 5)
OPEN_DELIVERED_SHARE = 0.03  # open orders already delivered but not yet confirmed
OPEN_EXTENSION_PROBS = (0.80, 0.15, 0.05)  # P(extensions = 0, 1, 2)


# --------------------------------------------------------------------------------------
# Parameter tables (sources in data/README.md)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """Transit parameters of a shipping method on a reference lane (country speed 1.0)."""

    median_days: float  # median of the normal component
    sigma: float  # log-normal spread of the normal component
    loss: float  # probability the parcel is never delivered
    stuck_share: float  # probability of the "stuck in the network" heavy-tail component
    elasticity: float  # exponent applied to the country speed factor
    held_share_factor: float  # multiplier on the country's customs-hold probability
    held_median_factor: float  # multiplier on the country's held median
    weight_median_g: float
    value_median_usd: float


METHODS: dict[str, Method] = {
    "aliexpress_premium": Method(8.0, 0.30, 0.006, 0.03, 1.0, 0.85, 1.0, 350.0, 18.0),
    "aliexpress_standard": Method(13.0, 0.35, 0.015, 0.04, 1.0, 1.0, 1.0, 300.0, 12.0),
    "cainiao_super_economy": Method(26.0, 0.40, 0.050, 0.05, 1.0, 1.15, 1.0, 120.0, 5.0),
    "epacket": Method(12.0, 0.35, 0.020, 0.04, 1.0, 1.0, 1.0, 250.0, 10.0),
    "express": Method(5.0, 0.30, 0.003, 0.02, 0.5, 0.3, 0.5, 900.0, 60.0),
}
_METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
_DEFAULT_METHOD = "aliexpress_standard"
STUCK_MEDIAN_FACTOR = 2.0
STUCK_SIGMA = 0.5


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


COUNTRIES: dict[str, Country] = {
    "US": Country(15.0, 1.25, windows="mid", epacket=0.25, economy=0.15),
    "BR": Country(13.0, 1.50, 1.5, 0.42, 55.0, 0.45, 1.45, "br", economy=0.35),
    "FR": Country(8.0, 1.00, epacket=0.08),
    "ES": Country(8.0, 1.00),
    "GB": Country(6.0, 1.05, epacket=0.08),
    "DE": Country(5.0, 1.10),
    "PL": Country(5.0, 1.00),
    "IL": Country(4.0, 1.30, windows="mid", epacket=0.12),
    "KR": Country(4.0, 0.65),
    "NL": Country(3.5, 0.95),
    "CA": Country(3.0, 1.40, windows="mid", epacket=0.12),
    "AU": Country(3.0, 1.45, windows="mid", epacket=0.12),
    "CL": Country(3.0, 1.45, 1.3, 0.15, 32.0, 0.40, 1.35, "latam", economy=0.30),
    "MX": Country(3.0, 1.40, 2.0, 0.20, 38.0, 0.45, 1.35, "latam", economy=0.30),
    "IT": Country(3.0, 1.10),
    "BE": Country(1.5, 1.00),
    "PT": Country(1.2, 1.10),
    "CZ": Country(1.2, 1.05),
    "SE": Country(1.2, 1.15),
    "JP": Country(1.0, 0.70),
    "SA": Country(1.0, 1.30, windows="mid"),
    "CO": Country(0.8, 1.50, 1.8, 0.25, 40.0, 0.45, 1.35, "latam", economy=0.30),
    # long tail: a handful of shipments per 100k rows
    "NZ": Country(0.05, 1.50, 1.2, windows="mid"),
    "LU": Country(0.018, 1.10, 1.2),
    "IS": Country(0.015, 1.50, 1.3, windows="mid"),
    "MT": Country(0.012, 1.30, 1.3),
    "CY": Country(0.008, 1.30, 1.3),
    "UY": Country(0.006, 1.60, 1.5, windows="latam"),
}
DEFAULT_COUNTRY = Country(0.0, 1.30, 1.3, windows="mid")
"""Lane used by :func:`true_survival` for countries the generator does not know."""

WINDOW_DAYS = np.array([30, 45, 60, 90, 120], dtype=np.int64)
WINDOW_PROFILES: dict[str, tuple[float, ...]] = {
    "fast": (0.10, 0.20, 0.45, 0.20, 0.05),
    "mid": (0.05, 0.15, 0.45, 0.25, 0.10),
    "latam": (0.05, 0.10, 0.35, 0.30, 0.20),
    "br": (0.05, 0.10, 0.30, 0.30, 0.25),
}

# Brazilian states: (share of Brazilian volume, transit multiplier). South-east and south are
# served by the Curitiba / Valinhos entry hubs; north and north-east are slower.
BR_STATES: dict[str, tuple[float, float]] = {
    "SP": (0.30, 0.95),
    "RJ": (0.12, 1.0),
    "MG": (0.10, 1.05),
    "ES": (0.02, 1.05),
    "PR": (0.07, 1.0),
    "SC": (0.05, 1.0),
    "RS": (0.06, 1.0),
    "DF": (0.03, 1.15),
    "GO": (0.03, 1.15),
    "MT": (0.015, 1.15),
    "MS": (0.015, 1.15),
    "BA": (0.05, 1.3),
    "PE": (0.035, 1.3),
    "CE": (0.03, 1.3),
    "MA": (0.015, 1.3),
    "PB": (0.012, 1.3),
    "RN": (0.012, 1.3),
    "AL": (0.01, 1.3),
    "PI": (0.008, 1.3),
    "SE": (0.007, 1.3),
    "PA": (0.02, 1.45),
    "AM": (0.015, 1.45),
    "RO": (0.006, 1.45),
    "TO": (0.005, 1.45),
    "AC": (0.002, 1.45),
    "AP": (0.002, 1.45),
    "RR": (0.002, 1.45),
}

PEAK_START = (11, 11)  # (month, day), inclusive
PEAK_END = (12, 10)  # inclusive

# Chinese New Year (first day of the lunar year): the same table the model's features use.
CNY_DATES = np.array(features.CNY_DATES, dtype="datetime64[D]")
# Origin shutdown profile: extra days by ship date relative to CNY (piecewise linear) and a
# transit slowdown of up to CNY_SLOWDOWN at the same time.
CNY_OFFSETS = np.array([-10.0, -3.0, 7.0, 25.0])
CNY_ADD_DAYS = np.array([0.0, 8.0, 8.0, 0.0])
CNY_SLOWDOWN = 0.20


@dataclass(frozen=True)
class Event:
    """A dated disruption: parcels shipped in [start, end] to ``country`` get ``add_days``."""

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
# Vectorised lane parameters
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
_BR = _CODES.index("BR")


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


def _to_days(values: Any) -> np.ndarray:
    """Dates (any pandas-parsable form) as int64 days since 1970-01-01."""
    parsed = pd.to_datetime(pd.Series(values), errors="raise")
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


def _date_days(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def _seasonal(ship_days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in_peak, cny_scale, cny_shift) for integer ship days since epoch."""
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
    add = np.where(inside, np.interp(offset, CNY_OFFSETS, CNY_ADD_DAYS), 0.0)
    scale = 1.0 + CNY_SLOWDOWN * add / CNY_ADD_DAYS.max()
    return in_peak, scale, add


@dataclass
class _Law:
    """Per-row law: T = shift + Y, Y ~ sum_c w_c LogNormal(mu_c, sigma_c); lost w.p. ``loss``."""

    loss: np.ndarray  # (n,)
    weight: np.ndarray  # (n, 3) conditional on not lost, rows sum to 1
    mu: np.ndarray  # (n, 3), includes log of all scale factors
    sigma: np.ndarray  # (n, 3)
    shift: np.ndarray  # (n,)


def _law(
    country: np.ndarray, method: np.ndarray, ship_days: np.ndarray, region_factor: np.ndarray
) -> _Law:
    speed = _country_array("speed")[country]
    elasticity = _method_array("elasticity")[method]
    median = _method_array("median_days")[method] * speed**elasticity

    in_peak, cny_scale, shift = _seasonal(ship_days)
    peak = np.where(in_peak, _country_array("peak_factor")[country], 1.0)
    log_scale = np.log(region_factor * peak * cny_scale)

    held_w = _country_array("held_share")[country] * _method_array("held_share_factor")[method]
    held_median = (
        _country_array("held_median")[country] * _method_array("held_median_factor")[method]
    )
    stuck_w = _method_array("stuck_share")[method]
    weight = np.stack([1.0 - held_w - stuck_w, stuck_w, held_w], axis=1)
    mu = (
        np.stack(
            [
                np.log(median),
                np.log(median * STUCK_MEDIAN_FACTOR),
                np.log(np.where(held_w > 0, held_median, 1.0)),
            ],
            axis=1,
        )
        + log_scale[:, None]
    )
    sigma = np.stack(
        [
            _method_array("sigma")[method],
            np.full(len(method), STUCK_SIGMA),
            _country_array("held_sigma")[country],
        ],
        axis=1,
    )
    loss = np.minimum(_method_array("loss")[method] * _country_array("loss_factor")[country], 0.25)
    shift = shift.copy()
    for ev in EVENTS:
        hit = (
            (country == _CODES.index(ev.country))
            & np.isin(method, [_METHOD_NAMES.index(m) for m in ev.methods])
            & (ship_days >= _date_days(date.fromisoformat(ev.start)))
            & (ship_days <= _date_days(date.fromisoformat(ev.end)))
        )
        shift[hit] += ev.add_days
    return _Law(loss=loss, weight=weight, mu=mu, sigma=sigma, shift=shift)


def _component_survival(law: _Law, y: np.ndarray) -> np.ndarray:
    """P(Y_c >= y) per component; ``y`` has shape (n, k), result (n, k, 3)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(np.maximum(y, 1e-300))[..., None] - law.mu[:, None, :]) / law.sigma[:, None, :]
    return np.where(y[..., None] > 0, ndtr(-z), 1.0)


def _survival_given_law(law: _Law, days: np.ndarray) -> np.ndarray:
    """P(T_days > days) for (n, k) integer-valued horizons."""
    y = np.floor(days) + 1.0 - law.shift[:, None]
    comp = _component_survival(law, y)
    alive = (comp * law.weight[:, None, :]).sum(axis=2)
    return law.loss[:, None] + (1.0 - law.loss[:, None]) * alive


def _sample_transit(law: _Law, rng: np.random.Generator) -> np.ndarray:
    """Unconditional draw of continuous T (inf when lost)."""
    n = len(law.loss)
    u = rng.random(n)
    comp = (u[:, None] > np.cumsum(law.weight, axis=1)[:, :-1]).sum(axis=1)
    z = rng.standard_normal(n)
    rows = np.arange(n)
    t = law.shift + np.exp(law.mu[rows, comp] + law.sigma[rows, comp] * z)
    lost = rng.random(n) < law.loss
    return np.where(lost, np.inf, t)


def _sample_transit_conditional(
    law: _Law, threshold: np.ndarray, above: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw T given T >= threshold (``above``) or T < threshold (not ``above``), per row.

    Returns (T, feasible); rows whose condition has (numerically) zero probability are
    infeasible and get T = nan.
    """
    n = len(law.loss)
    rows = np.arange(n)
    y0 = threshold - law.shift
    surv = _component_survival(law, y0[:, None])[:, 0, :]  # (n, 3)
    part = np.where(above[:, None], surv, 1.0 - surv)  # P(component in the condition)
    alive_w = (1.0 - law.loss)[:, None] * law.weight * part
    lost_w = np.where(above, law.loss, 0.0)
    weights = np.concatenate([alive_w, lost_w[:, None]], axis=1)
    total = weights.sum(axis=1)
    feasible = total > 1e-12
    cum = np.cumsum(weights, axis=1) / np.where(feasible, total, 1.0)[:, None]
    comp = (rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1)
    comp = np.minimum(comp, 3)
    lost = comp == 3
    c = np.minimum(comp, 2)
    q = (1.0 - rng.random(n)) * part[rows, c]  # uniform in (0, part]
    q = np.clip(q, 1e-300, 1.0)
    z = np.where(above, -ndtri(q), ndtri(q))  # above: S(y) = q; below: F(y) = q
    t = law.shift + np.exp(law.mu[rows, c] + law.sigma[rows, c] * z)
    t = np.where(above, np.maximum(t, threshold), np.minimum(t, np.nextafter(threshold, 0)))
    t = np.where(lost, np.inf, t)
    return np.where(feasible, t, np.nan), feasible


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
    _, _, cny_add = _seasonal(days)
    volume = volume * np.where(cny_add >= CNY_ADD_DAYS.max() * 0.99, 0.35, 1.0)
    return days, volume / volume.sum()


def _attributes(
    n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(country, method, region code (object), region factor, window days) for n rows."""
    shares = _country_array("share")[:-1]
    country = rng.choice(len(shares), size=n, p=shares / shares.sum())
    method = _choose(rng, np.cumsum(_method_mix(), axis=1)[country])
    is_br = country == _BR
    region_idx = rng.choice(len(_REGION_CODES), size=n, p=_REGION_SHARE)
    region = np.full(n, None, dtype=object)
    region[is_br] = _REGION_CODES[region_idx[is_br]]
    region_factor = np.where(is_br, _REGION_FACTOR[region_idx], 1.0)
    profiles = list(WINDOW_PROFILES)
    profile_cum = np.cumsum(np.array([WINDOW_PROFILES[p] for p in profiles]), axis=1)
    country_profile = np.array([profiles.index(c.windows) for c in _TABLE])
    window = WINDOW_DAYS[_choose(rng, profile_cum[country_profile[country]])]
    return country, method, region, region_factor, window


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


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def generate_history(
    rows: int, seed: int = DEFAULT_SEED, as_of: date | None = None
) -> pd.DataFrame:
    """Shipment history of ``rows`` parcels shipped in the 720 days before ``as_of``.

    ``delivered_at`` is NaT for lost parcels and for parcels still travelling at ``as_of``
    (censored). Rows are in shipping order; ``order_id`` is ``H000000001``, ``H000000002``...
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    rng = np.random.default_rng(seed)
    country, method, region, region_factor, window = _attributes(rows, rng)
    days, volume = _ship_intensity(as_of)
    ship = np.sort(rng.choice(days, size=rows, p=volume))  # the attributes are iid: sort ok
    law = _law(country, method, ship, region_factor)
    t_days = np.floor(_sample_transit(law, rng))
    delivered = ship + t_days
    delivered = np.where(delivered <= _date_days(as_of), delivered, np.nan)
    weight, value = _weights_values(method, rng)
    return pd.DataFrame(
        {
            "order_id": pd.array(_ids("H", rows), dtype="str"),
            "destination_country": pd.array(np.array(_CODES, dtype=object)[country], dtype="str"),
            "shipping_method": pd.array(np.array(_METHOD_NAMES, dtype=object)[method], dtype="str"),
            "shipped_at": _dates(ship.astype(np.float64)),
            "deadline": _dates((ship + window).astype(np.float64)),
            "delivered_at": _dates(delivered),
            "destination_region": pd.Series(region, dtype=object),
            "weight_g": weight,
            "declared_value_usd": value,
        },
        columns=list(HISTORY_COLUMNS),
    )


def generate_open_orders(
    rows: int,
    seed: int = DEFAULT_SEED,
    as_of: date | None = None,
    *,
    dispute_share: float = 0.03,
) -> pd.DataFrame:
    """Orders still awaiting buyer receipt at ``as_of``, drawn from the history's lanes.

    About half have fewer than 5 days left (``deadline - as_of`` in [0, 5)); the rest are
    spread over their window. Transit is drawn conditionally on the parcel not being delivered
    by ``as_of`` (about 3 % are drawn as delivered-but-unconfirmed instead), so the snapshot
    is consistent with :func:`true_survival`. ``deadline`` includes 30 days per extension.
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if not 0.0 <= dispute_share <= 1.0:
        raise ValueError(f"dispute_share must be in [0, 1], got {dispute_share}")
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    end = _date_days(as_of)
    rng = np.random.default_rng([seed, 1])  # independent of the history stream
    country, method, region, region_factor, window = _attributes(rows, rng)
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
    law = _law(country, method, ship, region_factor)

    delivered_flag = rng.random(rows) < OPEN_DELIVERED_SHARE
    threshold = elapsed + 1.0  # T_days > elapsed  <=>  T >= elapsed + 1
    t, feasible = _sample_transit_conditional(law, threshold, ~delivered_flag, rng)
    if (~feasible & delivered_flag).any():  # cannot have arrived yet: draw as undelivered
        redo = ~feasible & delivered_flag
        sub = _Law(law.loss[redo], law.weight[redo], law.mu[redo], law.sigma[redo], law.shift[redo])
        t[redo], _ = _sample_transit_conditional(
            sub, threshold[redo], np.ones(int(redo.sum()), dtype=bool), rng
        )
        delivered_flag = delivered_flag & feasible
    delivered = np.where(delivered_flag, ship + np.floor(t), np.nan)

    dispute = np.full(rows, np.nan)
    eligible = np.flatnonzero(elapsed >= 10)
    n_dispute = min(round(dispute_share * rows), len(eligible))
    picked = rng.choice(eligible, size=n_dispute, replace=False)
    lo = ship[picked] + 10
    dispute[picked] = lo + np.floor(rng.random(n_dispute) * (end - lo + 1))
    weight, value = _weights_values(method, rng)
    return pd.DataFrame(
        {
            "order_id": pd.array(_ids("O", rows), dtype="str"),
            "destination_country": pd.array(np.array(_CODES, dtype=object)[country], dtype="str"),
            "shipping_method": pd.array(np.array(_METHOD_NAMES, dtype=object)[method], dtype="str"),
            "shipped_at": _dates(ship.astype(np.float64)),
            "deadline": _dates((ship + total_window).astype(np.float64)),
            "delivered_at": _dates(delivered),
            "extensions": extensions.astype(np.int64),
            "dispute_opened_at": _dates(dispute),
            "destination_region": pd.Series(region, dtype=object),
            "weight_g": weight,
            "declared_value_usd": value,
        },
        columns=list(OPEN_ORDER_COLUMNS),
    )


def true_survival(frame: pd.DataFrame, days: np.ndarray) -> np.ndarray:
    """True ``P(T_days > days)`` per row under the generator's law (lost parcels never arrive).

    ``frame`` needs destination_country, shipping_method, shipped_at and destination_region.
    ``days`` has shape (n,) or (n, k); the result has the same shape. Unknown countries use
    :data:`DEFAULT_COUNTRY`, unknown methods Standard; a Brazilian row without a known state
    is the volume-weighted mixture over states.
    """
    horizons = np.asarray(days, dtype=np.float64)
    n = len(frame)
    if horizons.ndim not in (1, 2) or horizons.shape[0] != n:
        raise ValueError(f"days must have shape (n,) or (n, k) with n={n}, got {horizons.shape}")
    grid = horizons.reshape(n, -1)
    country = _country_index(frame["destination_country"].to_numpy(dtype=object))
    method = _method_index(frame["shipping_method"].to_numpy(dtype=object))
    ship = _to_days(frame["shipped_at"])
    region = (
        pd.Series(frame["destination_region"].to_numpy(dtype=object), dtype=object)
        .astype("string")
        .str.strip()
        .str.upper()
    )
    state_factor = dict(zip(_REGION_CODES, _REGION_FACTOR, strict=True))
    factor = region.map(state_factor).to_numpy(dtype=np.float64, na_value=np.nan)
    is_br = country == _BR
    known = ~is_br | np.isfinite(factor)
    factor = np.where(is_br, factor, 1.0)

    out = np.empty_like(grid)
    if known.any():
        law = _law(country[known], method[known], ship[known], factor[known])
        out[known] = _survival_given_law(law, grid[known])
    if (~known).any():
        mixed = np.zeros(((~known).sum(), grid.shape[1]))
        for f in np.unique(_REGION_FACTOR):
            w = _REGION_SHARE[np.isclose(_REGION_FACTOR, f)].sum()
            law = _law(country[~known], method[~known], ship[~known], np.full((~known).sum(), f))
            mixed += w * _survival_given_law(law, grid[~known])
        out[~known] = mixed
    return out.reshape(horizons.shape)


def lane_summary(as_of: date | None = None) -> pd.DataFrame:
    """One row per country x method: volume share, off-peak median transit and loss rate.

    Medians are of ``T_days`` for delivered parcels, off-season, state-mixed for Brazil.
    """
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    mix = _method_mix()
    shares = _country_array("share")[:-1]
    shares = shares / shares.sum()
    off_peak = np.datetime64(date(as_of.year - 1, 6, 1))  # no peak, CNY or event
    records = []
    grid = np.arange(0, 366, dtype=np.float64)
    for ci, code in enumerate(_CODES[:-1]):
        for mi, name in enumerate(_METHOD_NAMES):
            if mix[ci, mi] <= 0:
                continue
            frame = pd.DataFrame(
                {
                    "destination_country": [code],
                    "shipping_method": [name],
                    "shipped_at": [off_peak],
                    "destination_region": [None],
                }
            )
            surv = true_survival(frame, grid[None, :])[0]
            loss = float(
                _law(np.array([ci]), np.array([mi]), np.array([0]), np.array([1.0])).loss[0]
            )
            delivered_surv = (surv - loss) / (1.0 - loss)
            records.append(
                {
                    "destination_country": code,
                    "shipping_method": name,
                    "share": float(shares[ci] * mix[ci, mi]),
                    "median_days": int(np.argmax(delivered_surv <= 0.5)),
                    "p90_days": int(np.argmax(delivered_surv <= 0.1)),
                    "loss": loss,
                }
            )
    return pd.DataFrame.from_records(records)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".generator.json")


def write_generated(frame: pd.DataFrame, path: Path, *, seed: int, as_of: date, kind: str) -> None:
    """Write ``frame`` as .csv, .csv.gz or .parquet plus a ``<path>.generator.json`` sidecar.

    CSV dates are ISO ``YYYY-MM-DD`` and missing values are empty cells.
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
        frame.to_csv(path, index=False, date_format="%Y-%m-%d", na_rep="")
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
    """``python -m data.generate {history,open} ROWS OUT [--seed N] [--as-of YYYY-MM-DD]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m data.generate", description=main.__doc__)
    parser.add_argument("kind", choices=["history", "open"])
    parser.add_argument("rows", type=int)
    parser.add_argument("out", type=Path, help=".csv, .csv.gz or .parquet")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--as-of", type=date.fromisoformat, default=DEFAULT_AS_OF)
    args = parser.parse_args(argv)
    make = generate_history if args.kind == "history" else generate_open_orders
    frame = make(args.rows, seed=args.seed, as_of=args.as_of)
    write_generated(frame, args.out, seed=args.seed, as_of=args.as_of, kind=args.kind)
    print(f"wrote {len(frame)} {args.kind} rows to {args.out}")


if __name__ == "__main__":
    main()
