"""The pipeline stages: ``generate``, ``train``, ``evaluate`` and ``score``.

Every user error is an :class:`~model.errors.AdvisorError`; it is printed on one line to
stderr and the command exits 1, never with a traceback.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from model.errors import AdvisorError
from model.signing import ALGORITHM, key_id
from service.cli.common import (
    AsOf,
    EventsPath,
    HistoryPath,
    ModelDir,
    as_date,
    console,
    friendly_errors,
    model_dir_or_default,
    out,
    print_events_summary,
    print_rejects_summary,
    today_utc,
)
from service.settings import get_settings


@friendly_errors
def generate(
    rows: Annotated[int, typer.Option("--rows", min=1, help="Shipments to generate.")],
    out_path: Annotated[Path, typer.Option("--out", help="Output file (.csv, .csv.gz, .parquet).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
    as_of: AsOf = None,
    events_path: Annotated[
        Path | None,
        typer.Option(
            "--events", help="Also write the orders' carrier scans (.csv, .csv.gz, .parquet)."
        ),
    ] = None,
) -> None:
    """Generate a synthetic shipment history, and its scans (deterministic for a seed)."""
    from data.generate import (
        DEFAULT_AS_OF,
        generate_history,
        generate_shipments,
        write_generated,
    )
    from data.tables import table_format

    table_format(out_path)
    if events_path is not None:
        table_format(events_path)
    cutoff = as_date(as_of) or DEFAULT_AS_OF
    with console.status(f"generating {rows:,} shipments"):
        if events_path is None:
            frame = generate_history(rows, seed=seed, as_of=cutoff)
        else:
            generated = generate_shipments(rows, seed=seed, as_of=cutoff)
            frame = generated.frame
            write_generated(generated.events, events_path, seed=seed, as_of=cutoff, kind="events")
        write_generated(frame, out_path, seed=seed, as_of=cutoff, kind="history")
    late = frame["delivered_at"].isna() | (frame["delivered_at"] > frame["deadline"])
    out.print(
        f"wrote {len(frame):,} shipments to {out_path} (as of {cutoff}, seed {seed};"
        f" {frame['delivered_at'].isna().mean():.1%} undelivered at cut-off,"
        f" {late.mean():.1%} late or undelivered)"
    )
    if events_path is not None:
        scanned = generated.events["order_id"].nunique()
        out.print(
            f"wrote {len(generated.events):,} scans of {scanned:,} orders to {events_path}"
            f" ({len(frame) - scanned:,} orders without any scan)"
        )


@friendly_errors
def train(
    history: HistoryPath = None,
    as_of: AsOf = None,
    model: ModelDir = None,
    events: EventsPath = None,
) -> None:
    """Fit the late-arrival model, calibrate it on a time-based holdout, save the artifact.

    With scans (--events, or the default history's own), orders that have scans get the
    scan-aware model."""
    from service.history import train_and_save

    directory = model_dir_or_default(model)
    trained = train_and_save(
        history,
        directory,
        get_settings(),
        as_of=as_date(as_of),
        status=console.status,
        events_path=events,
    )
    loaded, fitted, manifest = trained.history, trained.fitted, trained.manifest
    if loaded.generated_now:
        console.print(
            f"generated the default history (and its scans) at {loaded.path}",
            soft_wrap=True,
            highlight=False,
        )
    print_rejects_summary(loaded.validated.rejects, "history rows")
    if trained.rejects_path is not None:
        console.print(f"rejected rows written to {trained.rejects_path}")
    print_events_summary(loaded.events, "scans")
    if trained.events_rejects_path is not None:
        console.print(f"rejected scans written to {trained.events_rejects_path}")
    summary = Table(title=f"model {manifest['model_version']} saved to {directory}")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    holdout = manifest["metrics"]
    summary.add_row("shipments used", f"{fitted.training['rows_used']:,}")
    summary.add_row("rows rejected", f"{len(loaded.validated.rejects):,}")
    summary.add_row("as of", str(trained.cutoff))
    summary.add_row("holdout decisions (test half)", str(holdout.get("test_decisions", 0)))
    for name in ("p_late_raw", "p_late", "p_late_after_extension"):
        metrics = holdout.get(name) or {}
        for key in ("auc", "brier"):
            value = metrics.get(key)
            summary.add_row(f"{name} {key}", "n/a" if value is None else f"{value:.4f}")
    summary.add_row("calibration", fitted.calibrator.note)
    scans = holdout.get("scans")
    if scans:
        summary.add_row("holdout decisions with scans", str(scans["test_decisions_with_scans"]))
        for name in ("p_late_with_scans", "p_late_after_extension_with_scans"):
            metrics = scans.get(name) or {}
            for key in ("auc", "brier"):
                value = metrics.get(key)
                summary.add_row(f"{name} {key}", "n/a" if value is None else f"{value:.4f}")
    trained_scans = fitted.training.get("scans")
    if trained_scans:
        summary.add_row("scan model", str(trained_scans["model"]))
        if trained_scans.get("calibration"):
            summary.add_row("scan calibration", str(trained_scans["calibration"]["note"]))
    summary.add_row("fit seconds", f"{fitted.training['fit_seconds']:.1f}")
    keys = get_settings().signing_keys()
    summary.add_row(
        "signature",
        f"{ALGORITHM}, key id {key_id(keys.current)}"
        if keys is not None
        else "none (ADVISOR_SIGNING_KEY not set)",
    )
    out.print(summary)


@friendly_errors
def evaluate(
    history: HistoryPath = None,
    model: ModelDir = None,
    as_of: AsOf = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for evaluation.json and plots.")
    ] = Path("artifacts/evaluation"),
    holdout_days: Annotated[int, typer.Option("--holdout-days", min=30)] = 150,
    events: EventsPath = None,
) -> None:
    """Time-based backtest: AUC/Brier, calibration, lag table and decision cost vs rules
    (with scans: with and without them, each decision seeing only scans up to its day)."""
    import json

    from data.generate import read_generator_meta, true_survival
    from model.artifact import read_manifest
    from model.errors import ModelNotFoundError
    from model.train import TrainingConfig
    from service.evaluation.backtest import plot_evaluation, run_backtest
    from service.history import generated_scan_truth, latest_date, load_history
    from service.policy import load_policy

    settings = get_settings()
    loaded = load_history(history, settings, events)
    print_rejects_summary(loaded.validated.rejects, "history rows")
    print_events_summary(loaded.events, "scans")
    valid = loaded.validated.valid
    cutoff = as_date(as_of) or latest_date(valid)
    config = TrainingConfig()
    try:  # reuse the hyper-parameters of the model being evaluated, if there is one
        manifest = read_manifest(model_dir_or_default(model), keys=settings.signing_keys())
        config = TrainingConfig(**manifest["training"]["config"])
    except (ModelNotFoundError, KeyError, TypeError):
        pass
    truth = true_survival if read_generator_meta(loaded.path) else None
    with console.status(f"backtesting {len(valid):,} shipments ({holdout_days}-day holdout)"):
        result = run_backtest(
            valid,
            as_of=cutoff,
            policy=load_policy(settings.policy_file),
            config=config,
            holdout_days=holdout_days,
            truth=truth,
            scans=loaded.events.table if loaded.events is not None else None,
            scan_truth=generated_scan_truth(loaded),
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(result.summary, indent=2, default=str))
    plots = plot_evaluation(result, out_dir)
    print_evaluation(result.summary)
    out.print(f"wrote {out_dir / 'evaluation.json'} and {', '.join(p.name for p in plots)}")


def print_evaluation(summary: dict[str, Any]) -> None:
    """The backtest as two tables: probability quality, then decision cost by strategy."""
    quality = Table(
        title=f"p_late on {summary['decisions']:,} decisions after {summary['split_date']}"
    )
    for column in ("estimate", "AUC", "Brier", "mean p", "late share"):
        quality.add_column(column, justify="right")
    scans = summary.get("scans") or {}
    rows = [(key, summary.get(key)) for key in ("p_late", "p_late_kaplan_meier", "p_late_true")]
    rows.append(("p_late_after_extension", summary.get("p_late_after_extension")))
    if scans:  # the decisions that had scans, with and without them
        rows += [
            (f"{key} ({scans['decisions_with_scans']:,} with scans)", scans.get(key))
            for key in (
                "p_late_with_scans",
                "p_late_lane_only",
                "p_late_after_extension_with_scans",
                "p_late_after_extension_lane_only",
            )
        ]
    for key, metrics in rows:
        if metrics:
            quality.add_row(
                key,
                *(
                    "n/a" if metrics[m] is None else f"{metrics[m]:.4f}"
                    for m in ("auc", "brier", "mean_prediction", "positive_rate")
                ),
            )
    out.print(quality)
    costs = Table(title="decision cost (units of order value; lower is better)")
    for column in (
        "strategy",
        "realised",
        "expected (true p)",
        "savings captured",
        "extend",
        "escalate",
        "none",
    ):
        costs.add_column(column, justify="right")
    captured = scans.get("savings_captured_with_scans") or summary.get("savings_captured", {})
    for row in summary["strategies"]:
        share = captured.get(row["strategy"])
        costs.add_row(
            row["strategy"],
            f"{row['realised_cost']:.1f}",
            f"{row['expected_cost']:.1f}" if "expected_cost" in row else "n/a",
            f"{share:.1%}" if share is not None else "n/a",
            str(row["extend"]),
            str(row["escalate"]),
            str(row["none"]),
        )
    out.print(costs)
    gain = scans.get("tracking_gain_captured")
    if gain is not None:
        out.print(
            f"tracking gain captured: {gain:.1%} (share of what scans can save over the best"
            " decisions without them that the policy achieves)"
        )
    if scans.get("by_last_milestone"):
        milestones = Table(title="p_late_after_extension by last milestone (backtest decisions)")
        for column in ("last milestone", "decisions", "with scans", "lane only", "observed"):
            milestones.add_column(column, justify="right")
        for row in scans["by_last_milestone"]:
            milestones.add_row(
                row["last_milestone"],
                f"{int(row['decisions']):,}",
                f"{row['p_with_scans']:.3f}",
                f"{row['p_lane_only']:.3f}",
                f"{row['observed']:.3f}",
            )
        out.print(milestones)
    calibration = Table(title="calibration of p_late (backtest decisions)")
    for column in ("p_late bin", "decisions", "mean predicted", "observed late share"):
        calibration.add_column(column, justify="right")
    for row in summary["calibration_table"]:
        calibration.add_row(
            f"{row['bin_low']:.1f}-{row['bin_high']:.1f}",
            str(row["n"]),
            f"{row['mean_predicted']:.3f}",
            f"{row['observed_rate']:.3f}",
        )
    out.print(calibration)
    lanes = Table(title="lag by destination (top 15 by shipments)")
    for column in (
        "country",
        "shipments",
        "median days",
        "p90 days",
        "late share",
        "never delivered",
        "structural lag",
    ):
        lanes.add_column(column, justify="right")
    for lane in summary["lanes"][:15]:
        lanes.add_row(
            lane["country"],
            f"{lane['shipments']:,}",
            f"{lane['median_transit_days']:.0f}",
            f"{lane['p90_transit_days']:.0f}",
            f"{lane['late_share']:.1%}",
            f"{lane['never_delivered_share']:.1%}",
            "yes" if lane["structural_lag"] else "",
        )
    out.print(lanes)


class Engine(StrEnum):
    """Where ``score`` runs: in this process, or on a Dask cluster."""

    local = "local"
    dask = "dask"


@friendly_errors
def score(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="Open orders (.csv, .csv.gz, .parquet; with --engine dask also a directory"
            " of .parquet files).",
        ),
    ],
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output (.csv, .csv.gz, .parquet; with --engine dask a name without suffix"
            " is a directory of .parquet files).",
        ),
    ],
    model: ModelDir = None,
    as_of: AsOf = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="Policy TOML (default: $ADVISOR_POLICY_FILE, else built-in defaults)."
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="Rejected rows (default: OUTPUT's name + .rejects.csv)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 2 when any row is rejected.")
    ] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="local: stream in chunks in this process; dask: map_partitions on a cluster.",
        ),
    ] = Engine.local,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler address, tcp://HOST:PORT (default: a new local cluster).",
        ),
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option("--chunk-rows", min=1, help="Rows per chunk / partition (default: 50000)."),
    ] = None,
    events: EventsPath = None,
    events_rejects: Annotated[
        Path | None,
        typer.Option(
            "--events-rejects",
            help="Rejected scans, with --events (default: OUTPUT's name + .events-rejects.csv).",
        ),
    ] = None,
) -> None:
    """Score open orders in bounded memory: every row is scored or rejected (with its line).

    With --events, each order is scored with its carrier scans dated on or before --as-of;
    every scan is used, rejected (with its line) or counted as belonging to no scored order.
    """
    from model.artifact import load_model
    from service.batch.engine import BatchJob, Terminated, print_summary, run_local
    from service.policy import load_policy

    if scheduler is not None and engine is not Engine.dask:
        raise AdvisorError("--scheduler needs --engine dask")
    decision_date = as_date(as_of) or today_utc()  # flags first: loading a model takes time
    settings = get_settings()
    fitted, _ = load_model(model_dir_or_default(model), keys=settings.signing_keys())
    rules = load_policy(policy or settings.policy_file)
    job = BatchJob.create(
        input_path,
        out_path,
        model=fitted,
        policy=rules,
        as_of=decision_date,
        rejects=rejects,
        chunk_rows=chunk_rows,
        events=events,
        events_rejects=events_rejects,
    )
    try:
        if engine is Engine.dask:
            from service.batch.dask_engine import run_dask

            summary = run_dask(job, scheduler=scheduler, console=console)
        else:
            summary = run_local(job, console=console)
    except Terminated:
        console.print("[bold red]terminated[/]: no output written")
        raise typer.Exit(143) from None
    print_summary(summary, out)
    out.print(
        f"{summary.invariant_line}; wrote {job.output} and {job.rejects}",
        soft_wrap=True,
        highlight=False,
    )
    if strict and summary.rejected:
        console.print(
            f"[bold red]error:[/] {summary.rejected:,} rows rejected (--strict); see {job.rejects}",
            highlight=False,
        )
        raise typer.Exit(2)
    if strict and summary.scans is not None and summary.scans.rejected:
        console.print(
            f"[bold red]error:[/] {summary.scans.rejected:,} scans rejected (--strict); see"
            f" {summary.scans.rejects_path}",
            highlight=False,
        )
        raise typer.Exit(2)
