"""A self-contained HTML report of a shipment history, its lanes and the advisor's backtest.

One file a seller can open offline: every figure is a matplotlib PNG embedded as a base64
``data:`` URI, the CSS is inline, and nothing refers to any other resource (the page holds
no ``http`` at all). Sections: transit-time distributions per destination (and per region
where the history has regions), late share by month, calibration of ``p_late``, the decision
cost of the policy beside the usual rules, and the per-lane table.

The figures and tables are pure functions of the validated history and of the backtest's
JSON-able summary (:func:`service.evaluation.backtest.run_backtest`), so each can be tested alone.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from model.features import days_between
from model.predictor import AdvisorModel
from model.train import TrainingConfig, lane_table
from service.policy import PolicyConfig

__all__ = [
    "SECTION_IDS",
    "ReportContext",
    "backtest_for_report",
    "build_report",
    "late_share_by_month",
    "per_lane_backtest",
    "png_data_uri",
    "region_table",
    "render_report",
    "transit_days",
]

SECTION_IDS: tuple[str, ...] = (
    "transit",
    "late-by-month",
    "calibration",
    "decision-cost",
    "scans",
    "lanes",
)
MAX_BOXES = 15  # destinations / regions shown in one distribution plot
TOP_COUNTRY_LINES = 4  # countries drawn separately in the late-by-month plot
_DPI = 96
_STRATEGY_LABELS = {
    "policy": "advisor policy",
    "never_act": "never act",
    "extend_all_in_window": "extend every order in the window",
    "extend_brazil_only": "extend Brazil only",
    "policy_kaplan_meier": "policy on per-lane Kaplan-Meier",
    "bayes_limit": "Bayes limit (true probabilities)",
    "policy_without_scans": "advisor policy ignoring scans",
    "bayes_limit_with_scans": "Bayes limit with scans (true probabilities)",
}


# -- data for the figures -------------------------------------------------------------------
def transit_days(history: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Delivered parcels (by ``as_of``): country, ``COUNTRY/REGION`` label and transit days."""
    cutoff = pd.Timestamp(as_of)
    delivered = history.loc[history["delivered_at"].notna() & (history["delivered_at"] <= cutoff)]
    region = delivered["destination_region"]
    label = delivered["destination_country"].astype(str) + "/" + region.astype(str)
    return pd.DataFrame(
        {
            "country": delivered["destination_country"].to_numpy(),
            "region": label.where(region.notna(), None).to_numpy(),
            "days": days_between(delivered["delivered_at"], delivered["shipped_at"]),
        }
    )


def _late_and_known(history: pd.DataFrame, as_of: date) -> tuple[pd.DataFrame, pd.Series]:
    """Orders whose window closed by ``as_of`` and whether each arrived after it (or never)."""
    cutoff = pd.Timestamp(as_of)
    known = history.loc[history["deadline"] <= cutoff]
    arrived = known["delivered_at"].where(known["delivered_at"] <= cutoff)
    return known, arrived.isna() | (arrived > known["deadline"])


def late_share_by_month(
    history: pd.DataFrame, as_of: date, *, by: str | None = None
) -> pd.DataFrame:
    """Late share per month in which the window closed (only windows closed by ``as_of``).

    Grouping by the deadline's month keeps each month whole: all of its orders have a known
    outcome, whatever their window length. Left out: the month of ``as_of`` unless it ends
    there, and months that start before the history's first shipment plus its
    95th-percentile window (orders with long windows closing then were shipped before the
    history begins). ``by`` adds a column to group by.
    Columns: ``month`` (``YYYY-MM``), [``by``,] ``orders``, ``late``, ``late_share``.
    """
    known, late = _late_and_known(history, as_of)
    if len(known):
        window = (history["deadline"] - history["shipped_at"]).quantile(0.95)
        first_whole = history["shipped_at"].min() + window
        month = known["deadline"].dt.to_period("M")
        whole = (month.dt.start_time >= first_whole) & (
            month.dt.end_time.dt.normalize() <= pd.Timestamp(as_of)
        )
        known, late = known.loc[whole], late.loc[whole]
    keys = [known["deadline"].dt.strftime("%Y-%m").rename("month")]
    if by is not None:
        keys.append(known[by])
    grouped = late.astype(np.int64).groupby(keys)
    table = pd.DataFrame({"orders": grouped.size(), "late": grouped.sum()}).reset_index()
    table["late_share"] = table["late"] / table["orders"]
    return table


def region_table(history: pd.DataFrame, as_of: date, *, min_shipments: int = 30) -> pd.DataFrame:
    """Per ``COUNTRY/REGION``: shipments, median transit of delivered parcels, late share,
    and whether the model pools it into its country (fewer than ``min_shipments``)."""
    with_region = history.loc[history["destination_region"].notna()]
    if with_region.empty:
        return pd.DataFrame(
            columns=["region", "shipments", "median_transit_days", "late_share", "pooled"]
        )
    label = (
        with_region["destination_country"].astype(str)
        + "/"
        + with_region["destination_region"].astype(str)
    )
    transit = transit_days(with_region, as_of)
    known, late = _late_and_known(with_region, as_of)
    known_label = label.loc[known.index]
    table = pd.DataFrame(
        {
            "shipments": label.value_counts(),
            "median_transit_days": transit.groupby("region")["days"].median(),
            "late_share": late.groupby(known_label).mean(),
        }
    )
    table.index.name = "region"
    table = table.dropna(subset=["shipments"]).sort_values("shipments", ascending=False)
    table["shipments"] = table["shipments"].astype(np.int64)
    table["pooled"] = table["shipments"] < min_shipments
    return table.reset_index()


# -- figures ------------------------------------------------------------------------------------
def png_data_uri(figure: Any) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, closed afterwards.

    Matplotlib's ``Software`` tag (which names its web site) is dropped. Base64 text can
    spell ``http`` by chance; then a padding comment shifts the bytes and it is encoded
    again, so the page never holds the string.
    """
    import matplotlib.pyplot as plt

    try:
        for attempt in range(16):
            buffer = io.BytesIO()
            metadata = (
                {"Software": None, "Comment": "." * attempt} if attempt else {"Software": None}
            )
            figure.savefig(buffer, format="png", dpi=_DPI, metadata=metadata)
            encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
            if "http" not in encoded.lower():
                return "data:image/png;base64," + encoded
        raise RuntimeError("could not encode the figure without the text 'http'")
    finally:
        plt.close(figure)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _boxplot(groups: pd.DataFrame, key: str, title: str, highlight: set[str]) -> str | None:
    """Horizontal box plots of transit days for the ``MAX_BOXES`` largest groups."""
    counts = groups[key].value_counts().head(MAX_BOXES)
    if counts.empty:
        return None
    plt = _pyplot()
    data = [groups.loc[groups[key] == name, "days"].to_numpy() for name in counts.index]
    fig, ax = plt.subplots(figsize=(6.2, 0.27 * len(counts) + 1.2))
    boxes = ax.boxplot(
        data,
        orientation="horizontal",
        whis=(5, 95),
        showfliers=False,
        patch_artist=True,
        widths=0.6,
    )
    for patch, name in zip(boxes["boxes"], counts.index, strict=True):
        patch.set_facecolor("#f4a582" if name in highlight else "#92c5de")
    ax.set_yticks(
        np.arange(1, len(counts) + 1), [f"{name}  (n={n:,})" for name, n in counts.items()]
    )
    ax.invert_yaxis()
    ax.set_xlabel("transit days (box: quartiles; whiskers: 5th-95th pct)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig)


def _late_by_month_figure(history: pd.DataFrame, as_of: date) -> str | None:
    overall = late_share_by_month(history, as_of)
    if overall.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11.5, 3.4))
    x = np.arange(len(overall))
    ax.bar(x, overall["late_share"], color="#bbbbbb", label="all destinations")
    highest = float(overall["late_share"].max())
    top = history["destination_country"].value_counts().head(TOP_COUNTRY_LINES).index
    if history["destination_country"].nunique() > 1:
        by_country = late_share_by_month(history, as_of, by="destination_country")
        position = dict(zip(overall["month"], x, strict=True))
        for country in top:
            rows = by_country.loc[
                (by_country["destination_country"] == country) & (by_country["orders"] >= 10)
            ]
            if rows.empty:
                continue
            highest = max(highest, float(rows["late_share"].max()))
            ax.plot(
                rows["month"].map(position), rows["late_share"], "o-", ms=3, lw=1.2, label=country
            )
    step = max(1, len(overall) // 12)
    ax.set_xticks(x[::step], overall["month"].iloc[::step], rotation=45, ha="right")
    ax.set_ylabel("late or never delivered")
    ax.set_ylim(0, min(1.0, max(0.05, highest * 1.3)))
    ax.set_title("Late share by the month the window closed (lines: months with >= 10 orders)")
    ax.legend(loc="upper left", fontsize=8, ncol=TOP_COUNTRY_LINES + 1)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig)


def _calibration_figure(summary: dict[str, Any]) -> str | None:
    rows = summary.get("calibration_table") or []
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    predicted = [r["mean_predicted"] for r in rows]
    observed = [r["observed_rate"] for r in rows]
    sizes = np.array([r["n"] for r in rows], dtype=float)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.scatter(
        predicted,
        observed,
        s=15 + 250 * sizes / sizes.max(),
        color="#2166ac",
        alpha=0.8,
        label="advisor (area ~ decisions in the bin)",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted p_late (bin mean)")
    ax.set_ylabel("observed late share")
    ax.set_title(f"Calibration on {summary.get('decisions', 0):,} backtest decisions")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig)


def _cost_figure(summary: dict[str, Any]) -> str | None:
    strategies = summary.get("strategies") or []
    if not strategies:
        return None
    plt = _pyplot()
    names = [_STRATEGY_LABELS.get(r["strategy"], r["strategy"]) for r in strategies]
    realised = np.array([r["realised_cost_per_order"] for r in strategies])
    fig, ax = plt.subplots(figsize=(6.2, 0.42 * len(strategies) + 1.5))
    y = np.arange(len(strategies))
    colors = ["#d6604d" if r["strategy"] == "policy" else "#92c5de" for r in strategies]
    ax.barh(y, realised, color=colors)
    for position, value in zip(y, realised, strict=True):
        ax.text(value, position, f" {value:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("realised cost per decision (order value; lower is better)")
    ax.set_title("Decision cost of the policy beside the rules")
    ax.set_xlim(0, float(realised.max()) * 1.18 if realised.max() > 0 else 1.0)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig)


def _milestone_figure(scans: dict[str, Any]) -> str | None:
    """Mean p_late_after_extension by last milestone: with scans, lane only, observed."""
    rows = [r for r in scans.get("by_last_milestone") or [] if r["decisions"] >= 5]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 0.5 * len(rows) + 1.6))
    y = np.arange(len(rows))
    series = [
        ("p_with_scans", "advisor with scans", "#d6604d"),
        ("p_lane_only", "advisor, lane only", "#92c5de"),
        ("observed", "observed share", "#4d4d4d"),
    ]
    if "p_true" in rows[0]:
        series.append(("p_true", "true (generator)", "#1b7837"))
    height = 0.8 / len(series)
    for k, (key, label, color) in enumerate(series):
        ax.barh(y + k * height, [r[key] for r in rows], height=height, color=color, label=label)
    ax.set_yticks(
        y + 0.4 - height / 2, [f"{r['last_milestone']} ({int(r['decisions'])})" for r in rows]
    )
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("p_late_after_extension (mean over decisions)")
    ax.set_title("Late even after an extension, by the last milestone scanned")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig)


# -- the backtest ---------------------------------------------------------------------------
def backtest_for_report(
    history: pd.DataFrame,
    *,
    as_of: date,
    policy: PolicyConfig,
    config: TrainingConfig | None = None,
    holdout_days: int = 150,
    truth: Any = None,
    scans: Any = None,
    scan_truth: Any = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """The backtest summary for the calibration and cost sections, or why there is none.

    Uses :func:`service.evaluation.backtest.run_backtest` (the ``evaluate`` backtest), so the
    report and ``evaluate`` always agree; adds ``per_lane`` (see :func:`per_lane_backtest`).
    """
    from service.evaluation.backtest import run_backtest

    try:
        result = run_backtest(
            history,
            as_of=as_of,
            policy=policy,
            config=config,
            holdout_days=holdout_days,
            truth=truth,
            scans=scans,
            scan_truth=scan_truth,
        )
    except ValueError as exc:  # too little history before or after the split
        return None, f"the {holdout_days}-day backtest could not run: {exc}"
    summary = dict(result.summary)
    summary["per_lane"] = per_lane_backtest(result.samples)
    return summary, None


# -- HTML -----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#f3f3f3}
main{max-width:1240px;margin:0 auto;padding:20px 26px 60px;background:#fff}
h1{font-size:1.5em;margin:0 0 4px}
h2{font-size:1.2em;margin:26px 0 6px;border-bottom:2px solid #e5e5e5;padding-bottom:3px}
h3{font-size:1em;margin:10px 0 4px}
p.lead{color:#555;margin:0 0 10px;font-size:.92em} .note{color:#777;font-size:.9em}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:22px;align-items:start}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
table{border-collapse:collapse;font-size:.84em;margin:6px 0}
th,td{padding:3px 8px;border-bottom:1px solid #e8e8e8;text-align:right}
th{background:#f2f2f2;position:sticky;top:0} td.text,th.text{text-align:left}
tr.flag td{background:#fdf0ec}
.facts{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.fact{background:#f4f7fb;border:1px solid #dde6f0;border-radius:6px;padding:6px 12px;
font-size:.85em} .fact b{display:block;font-size:1.2em}
nav a{margin-right:14px;color:#2166ac}
details{margin:6px 0} summary{cursor:pointer;color:#2166ac;font-size:.9em}
.scroll{max-height:480px;overflow:auto;border:1px solid #eee}
"""


@dataclass
class ReportContext:
    """Everything the report shows, computed before rendering."""

    history: pd.DataFrame
    as_of: date
    source: str
    policy: PolicyConfig
    lanes: pd.DataFrame
    rows_rejected: int = 0
    model_version: str | None = None
    min_shipments: int = 30
    backtest: dict[str, Any] | None = None
    backtest_note: str | None = None
    generated_at: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "days":
        return f"{float(value):.0f}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.3f}"
    return str(value)


def _table(
    frame: pd.DataFrame,
    columns: Sequence[tuple[str, str, str]],
    *,
    flag: Callable[[pd.Series], bool] | None = None,
    scroll: bool = False,
) -> str:
    """An HTML table; ``columns`` are (column, header, format), format one of '', pct,
    int, days or text (left-aligned)."""
    head = "".join(
        f'<th class="text">{_e(h)}</th>' if kind == "text" else f"<th>{_e(h)}</th>"
        for _, h, kind in columns
    )
    body = []
    for _, row in frame.iterrows():
        cells = "".join(
            f'<td class="text">{_e(_fmt(row[c]))}</td>'
            if kind == "text"
            else f"<td>{_e(_fmt(row[c], kind))}</td>"
            for c, _, kind in columns
        )
        css = ' class="flag"' if flag is not None and flag(row) else ""
        body.append(f"<tr{css}>{cells}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>' if scroll else table


def _details(summary: str, content: str) -> str:
    return f"<details><summary>{_e(summary)}</summary>{content}</details>"


def _img(uri: str | None, alt: str) -> str:
    if uri is None:
        return '<p class="note">Not enough data for this figure.</p>'
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _facts(ctx: ReportContext) -> str:
    history = ctx.history
    facts = [
        ("shipments", f"{len(history):,}"),
        ("destinations", f"{history['destination_country'].nunique():,}"),
        ("regions", f"{history['destination_region'].nunique():,}"),
    ]
    if len(history):
        first, last = history["shipped_at"].min(), history["shipped_at"].max()
        facts.append(("shipped", f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"))
    facts += [("as of", ctx.as_of.isoformat()), ("rows rejected", f"{ctx.rows_rejected:,}")]
    if ctx.model_version:
        facts.append(("model", ctx.model_version))
    summary = ctx.backtest
    if summary is not None:
        costs = {r["strategy"]: r["realised_cost_per_order"] for r in summary["strategies"]}
        advisor = {"policy", "policy_without_scans", "bayes_limit", "bayes_limit_with_scans"}
        rules = {k: v for k, v in costs.items() if k not in advisor}
        if "policy" in costs and rules:
            best = min(rules, key=lambda k: rules[k])
            facts.append(
                (
                    "backtest cost per decision",
                    f"policy {costs['policy']:.3f}; best other:"
                    f" {_STRATEGY_LABELS.get(best, best)} {rules[best]:.3f}",
                )
            )
    return (
        '<div class="facts">'
        + "".join(
            f'<div class="fact">{_e(label)}<b>{_e(value)}</b></div>' for label, value in facts
        )
        + "</div>"
    )


def _transit_section(ctx: ReportContext) -> str:
    transit = transit_days(ctx.history, ctx.as_of)
    lag = (
        set(ctx.lanes.index[ctx.lanes["structural_lag"].astype(bool)]) if len(ctx.lanes) else set()
    )
    by_country = [
        "<div><h3>By destination country</h3>",
        _img(
            _boxplot(
                transit, "country", "Transit time by destination (orange: structural lag)", lag
            ),
            "transit time by destination",
        ),
        "</div>",
    ]
    regions = transit.dropna(subset=["region"])
    if regions.empty:
        by_region = [
            '<div><h3>By region</h3><p class="note">This history has no destination_region:'
            " no per-region view.</p></div>"
        ]
    else:
        table = region_table(ctx.history, ctx.as_of, min_shipments=ctx.min_shipments)
        pooled = set(table.loc[table["pooled"], "region"])
        by_region = [
            "<div><h3>By region</h3>",
            _img(
                _boxplot(regions, "region", "Transit time by region (orange: pooled)", pooled),
                "transit time by region",
            ),
            _details(
                f"all {len(table):,} regions",
                _table(
                    table,
                    [
                        ("region", "region", "text"),
                        ("shipments", "shipments", "int"),
                        ("median_transit_days", "median transit (days)", "days"),
                        ("late_share", "late share", "pct"),
                        ("pooled", "pooled to country", "text"),
                    ],
                    flag=lambda row: bool(row["pooled"]),
                    scroll=True,
                ),
            ),
            "</div>",
        ]
    return "\n".join(
        [
            '<section id="transit"><h2>Transit-time distributions</h2>',
            f'<p class="lead">Days from hand-off to delivery of the {len(transit):,} parcels '
            "delivered by the cut-off, for the largest destinations and regions. A destination "
            "has structural lag when its 90th percentile is at least 1.5 times that of all "
            f"shipments; a region with fewer than {ctx.min_shipments} shipments is pooled "
            "toward its country by the model, so a handful of slow orders does not give it an "
            "extreme estimate. Parcels still in transit are not in these boxes (the per-lane "
            "table's quantiles count them as censored).</p>",
            '<div class="grid">',
            *by_country,
            *by_region,
            "</div></section>",
        ]
    )


def _late_section(ctx: ReportContext) -> str:
    monthly = late_share_by_month(ctx.history, ctx.as_of)
    return "\n".join(
        [
            '<section id="late-by-month"><h2>Late share by month</h2>',
            '<p class="lead">Share of orders delivered after their deadline or never, by the '
            "month their window closed (windows closed by the cut-off; months too early for "
            "the history to hold all their orders are left out).</p>",
            _img(_late_by_month_figure(ctx.history, ctx.as_of), "late share by month"),
            _details(
                "table by month",
                _table(
                    monthly,
                    [
                        ("month", "month", "text"),
                        ("orders", "orders", "int"),
                        ("late", "late", "int"),
                        ("late_share", "late share", "pct"),
                    ],
                    scroll=True,
                ),
            ),
            "</section>",
        ]
    )


def _no_backtest(section_id: str, title: str, note: str | None) -> str:
    return (
        f'<section id="{section_id}"><h2>{_e(title)}</h2>'
        f'<p class="note">No backtest: {_e(note or "not run")}.</p></section>'
    )


def _calibration_section(ctx: ReportContext) -> str:
    summary = ctx.backtest
    if summary is None:
        return _no_backtest("calibration", "Calibration of p_late", ctx.backtest_note)
    labels = {
        "p_late": "advisor p_late",
        "p_late_after_extension": "advisor p_late after extension",
        "p_late_kaplan_meier": "per-lane Kaplan-Meier p_late",
        "p_late_true": "true probability (generated data)",
    }
    metrics = [
        {"estimate": label, **summary[key]} for key, label in labels.items() if summary.get(key)
    ]
    return "\n".join(
        [
            '<section id="calibration"><h2>Calibration of p_late</h2>',
            f'<p class="lead">Time-based backtest: the model knows the history up to '
            f"{_e(summary['split_date'])} and is scored on the "
            f"{summary['decisions']:,} orders still undelivered "
            f"{summary['decision_days_before_deadline']} days before their deadline after "
            "that, outcomes known by the cut-off. On the diagonal, orders given p_late = x "
            "were late a share x of the time.</p>",
            _img(_calibration_figure(summary), "calibration of p_late"),
            _table(
                pd.DataFrame(metrics),
                [
                    ("estimate", "estimate", "text"),
                    ("n", "decisions", "int"),
                    ("auc", "AUC", ""),
                    ("brier", "Brier", ""),
                    ("mean_prediction", "mean p", "pct"),
                    ("positive_rate", "observed", "pct"),
                ],
            ),
            _details(
                "calibration bins",
                _table(
                    pd.DataFrame(summary["calibration_table"]),
                    [
                        ("bin_low", "bin from", ""),
                        ("bin_high", "bin to", ""),
                        ("n", "decisions", "int"),
                        ("mean_predicted", "mean p_late", "pct"),
                        ("observed_rate", "observed late", "pct"),
                    ],
                ),
            ),
            "</section>",
        ]
    )


def _cost_section(ctx: ReportContext) -> str:
    summary = ctx.backtest
    if summary is None:
        return _no_backtest(
            "decision-cost", "Decision cost: policy beside the rules", ctx.backtest_note
        )
    strategies = pd.DataFrame(summary["strategies"])
    strategies["label"] = (
        strategies["strategy"].map(_STRATEGY_LABELS).fillna(strategies["strategy"])
    )
    captured = summary.get("savings_captured") or {}
    strategies["actions"] = [
        f"{r.extend:,} / {r.escalate:,} / {r.none:,}" for r in strategies.itertuples()
    ]
    columns = [
        ("label", "strategy", "text"),
        ("realised_cost", "realised cost", ""),
        ("realised_cost_per_order", "per decision", ""),
        ("actions", "extend / escalate / none", ""),
    ]
    if "expected_cost" in strategies:
        columns.insert(3, ("expected_cost", "expected (true p)", ""))
    if captured:
        strategies["captured"] = strategies["strategy"].map(captured)
        columns.insert(4, ("captured", "savings captured", "pct"))
    costs = ctx.policy.costs
    return "\n".join(
        [
            '<section id="decision-cost"><h2>Decision cost: policy beside the rules</h2>',
            '<p class="lead">Each strategy decides every backtest order once; its cost counts '
            "what actually happened, in units of order value (none: "
            f"{costs.none.within_extension:g} if late; extend: {costs.extend.on_time:g} if "
            f"it arrives, {costs.extend.beyond:g} if later than the extension; escalate: "
            f"{costs.escalate.on_time:g} / {costs.escalate.within_extension:g} / "
            f"{costs.escalate.beyond:g}).</p>",
            _img(_cost_figure(summary), "decision cost by strategy"),
            _table(strategies, columns, flag=lambda row: row["strategy"] == "policy"),
            "</section>",
        ]
    )


def _scans_section(ctx: ReportContext) -> str:
    title = "What the scans change"
    summary = ctx.backtest
    scans = (summary or {}).get("scans")
    if summary is None:
        return _no_backtest("scans", title, ctx.backtest_note)
    if not scans:
        return (
            f'<section id="scans"><h2>{title}</h2><p class="note">No carrier scans were'
            " given with this history (train, evaluate and report take --events): every"
            " decision used the lane and the days travelled only.</p></section>"
        )
    strategies = pd.DataFrame(summary["strategies"]).set_index("strategy")
    names = [
        n
        for n in ("policy", "policy_without_scans", "bayes_limit_with_scans", "bayes_limit")
        if n in strategies.index
    ]
    table = strategies.loc[names].reset_index()
    table["label"] = table["strategy"].map(_STRATEGY_LABELS)
    columns = [("label", "strategy", "text"), ("realised_cost_per_order", "per decision", "")]
    if "expected_cost" in table:
        table["expected_per_decision"] = table["expected_cost"] / max(summary["decisions"], 1)
        columns.append(("expected_per_decision", "expected per decision (true p)", ""))
    captured = scans.get("savings_captured_with_scans") or {}
    if captured:
        table["captured"] = table["strategy"].map(captured)
        columns.append(("captured", "savings captured (vs Bayes with scans)", "pct"))
    gain = scans.get("tracking_gain_captured")
    quality = pd.DataFrame(
        [
            {"estimate": label, **(scans.get(key) or {})}
            for key, label in (
                ("p_late_with_scans", "p_late with scans"),
                ("p_late_lane_only", "p_late, lane only"),
                ("p_late_after_extension_with_scans", "p_late_after_extension with scans"),
                ("p_late_after_extension_lane_only", "p_late_after_extension, lane only"),
            )
        ]
    )
    milestones = pd.DataFrame(scans.get("by_last_milestone") or [])
    milestone_columns = [
        ("last_milestone", "last milestone", "text"),
        ("decisions", "decisions", "int"),
        ("p_with_scans", "with scans", "pct"),
        ("p_lane_only", "lane only", "pct"),
        ("observed", "observed", "pct"),
    ]
    if "p_true" in milestones:
        milestone_columns.append(("p_true", "true", "pct"))
    lead = (
        f"{scans['decisions_with_scans']:,} of {summary['decisions']:,} backtest decisions had"
        " carrier scans by their decision day (each decision read only those). The same"
        " policy decides with the scan-aware probabilities and with the lane-only ones."
    )
    if gain is not None:
        lead += (
            f" It captures <b>{gain:.1%}</b> of the tracking gain: of what the best decisions"
            " with scans save over the best decisions without them."
        )
    return "\n".join(
        [
            f'<section id="scans"><h2>{title}</h2>',
            f'<p class="lead">{lead}</p>',
            _table(table, columns, flag=lambda row: row["strategy"] == "policy"),
            "<h3>Probability quality on the decisions with scans</h3>",
            _table(
                quality,
                [
                    ("estimate", "estimate", "text"),
                    ("n", "decisions", "int"),
                    ("auc", "AUC", ""),
                    ("brier", "Brier", ""),
                    ("mean_prediction", "mean p", "pct"),
                    ("positive_rate", "observed", "pct"),
                ],
            ),
            "<h3>p_late_after_extension by last milestone</h3>",
            _img(_milestone_figure(scans), "p_late_after_extension by last milestone"),
            _table(milestones, milestone_columns) if len(milestones) else "",
            "</section>",
        ]
    )


def _lanes_section(ctx: ReportContext) -> str:
    lanes = ctx.lanes.reset_index()
    columns = [
        ("country", "destination", "text"),
        ("shipments", "shipments", "int"),
        ("median_transit_days", "median transit (days)", "days"),
        ("p90_transit_days", "90th pct (days)", "days"),
        ("late_share", "late share", "pct"),
        ("never_delivered_share", "never delivered", "pct"),
        ("structural_lag", "structural lag", "text"),
    ]
    if ctx.backtest is not None and ctx.backtest.get("per_lane"):
        per_lane = pd.DataFrame(ctx.backtest["per_lane"])
        lanes = lanes.merge(per_lane, on="country", how="left")
        columns += [
            ("decisions", "backtest decisions", "int"),
            ("mean_p_late", "mean p_late", "pct"),
            ("observed_late", "observed late", "pct"),
        ]
    return "\n".join(
        [
            '<section id="lanes"><h2>Per-lane table</h2>',
            '<p class="lead">One row per destination: transit quantiles among parcels that '
            "arrive (Kaplan-Meier: parcels still in transit count as censored), the share of "
            "closed windows that ended late, the long-run share never delivered and, from the "
            "backtest, the mean p_late at the decision point beside the share that was late. "
            "Highlighted rows have structural lag.</p>",
            _table(lanes, columns, flag=lambda row: bool(row["structural_lag"]), scroll=True),
            "</section>",
        ]
    )


def render_report(ctx: ReportContext) -> str:
    """The whole page as one string of HTML (figures inline)."""
    nav = "".join(
        f'<a href="#{sid}">{_e(name)}</a>'
        for sid, name in zip(
            SECTION_IDS,
            ("Transit times", "Late by month", "Calibration", "Decision cost", "Scans", "Lanes"),
            strict=True,
        )
    )
    body = [
        _transit_section(ctx),
        _late_section(ctx),
        '<div class="grid">',
        _calibration_section(ctx),
        _cost_section(ctx),
        "</div>",
        _scans_section(ctx),
        _lanes_section(ctx),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Delivery-window report: {_e(ctx.source)}</title><style>{_CSS}</style>"
        "</head><body><main>"
        "<h1>Delivery-window report</h1>"
        f'<p class="lead">History {_e(ctx.source)}, as of {ctx.as_of.isoformat()}; '
        f"made {_e(ctx.generated_at)}.</p>"
        f"{_facts(ctx)}<nav>{nav}</nav>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


def per_lane_backtest(samples: pd.DataFrame) -> list[dict[str, Any]]:
    """Backtest decisions per destination: count, mean predicted and observed late share."""
    grouped = samples.groupby("destination_country")
    table = pd.DataFrame(
        {
            "decisions": grouped.size(),
            "mean_p_late": grouped["p_late"].mean(),
            "observed_late": grouped["outcome"].apply(lambda o: float((o != "on_time").mean())),
        }
    )
    table.index.name = "country"
    return table.reset_index().to_dict(orient="records")


def build_report(
    history: pd.DataFrame,
    *,
    as_of: date,
    source: str,
    policy: PolicyConfig | None = None,
    model: AdvisorModel | None = None,
    config: TrainingConfig | None = None,
    rows_rejected: int = 0,
    holdout_days: int = 150,
    truth: Any = None,
    scans: Any = None,
    scan_truth: Any = None,
) -> ReportContext:
    """Backtest the history and gather what the report shows (render with
    :func:`render_report`).

    ``model`` (optional) supplies the per-lane table, its version and its pooling threshold;
    without it the table is computed from the history. ``config`` is the training config
    of the backtest (the model's, when the caller has it).
    """
    policy = policy or PolicyConfig()
    backtest, note = backtest_for_report(
        history,
        as_of=as_of,
        policy=policy,
        config=config,
        holdout_days=holdout_days,
        truth=truth,
        scans=scans,
        scan_truth=scan_truth,
    )
    if model is not None and len(model.lanes):
        lanes = model.lanes
        min_shipments = int(model.hazard.min_shipments)
    else:
        lanes = lane_table(history, as_of)
        min_shipments = 30
    return ReportContext(
        history=history,
        as_of=as_of,
        source=source,
        policy=policy,
        lanes=lanes,
        rows_rejected=rows_rejected,
        model_version=model.model_version if model is not None else None,
        min_shipments=min_shipments,
        backtest=backtest,
        backtest_note=note,
    )
