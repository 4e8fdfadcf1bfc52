"""``window-advisor report``: the self-contained HTML report (:mod:`service.evaluation.report`)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli.common import (
    EventsPath,
    console,
    friendly_errors,
    out,
    print_events_summary,
    print_rejects_summary,
)


@friendly_errors
def report_command(
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write (one file).")],
    history: Annotated[
        Path | None,
        typer.Option(
            "--history",
            help="History file (.csv, .csv.gz, .parquet) (default: the bundled generated history).",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model directory: its lane table, version and training config"
            " (default: $ADVISOR_MODEL_DIR or ./artifacts/model, if there).",
        ),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="Cut-off date (YYYY-MM-DD)."),
    ] = None,
    events: EventsPath = None,
) -> None:
    """Write one self-contained HTML report: transit times, late share by month,
    calibration, decision cost beside the rules, what the scans change, and the per-lane
    table."""
    from data.generate import read_generator_meta, true_survival
    from model.artifact import load_model
    from model.errors import AdvisorError, ModelNotFoundError
    from model.train import TrainingConfig
    from service.evaluation.report import build_report, render_report
    from service.history import generated_scan_truth, latest_date, load_history
    from service.policy import load_policy
    from service.settings import get_settings

    settings = get_settings()
    with console.status("reading history"):
        loaded = load_history(history, settings, events)
    print_rejects_summary(loaded.validated.rejects, "history rows")
    print_events_summary(loaded.events, "scans")
    valid = loaded.validated.valid
    if valid.empty:
        raise AdvisorError(f"{loaded.path}: no valid shipment rows to report on")
    fitted: Any = None
    config = TrainingConfig()
    try:
        fitted, manifest = load_model(
            model if model is not None else settings.model_dir, keys=settings.signing_keys()
        )
        config = TrainingConfig(**manifest["training"]["config"])
    except ModelNotFoundError:
        if model is not None:
            raise
        console.print(
            f"no model in {settings.model_dir}: lane table from the history, default training"
            " settings for the backtest",
            highlight=False,
            soft_wrap=True,
        )
    except (KeyError, TypeError):
        pass  # a manifest without a usable training config: keep the defaults
    cutoff = as_of.date() if as_of is not None else latest_date(valid)
    truth = true_survival if read_generator_meta(loaded.path) else None
    with console.status(f"backtesting {len(valid):,} shipments and drawing the report"):
        context = build_report(
            valid,
            as_of=cutoff,
            source=loaded.path.name,
            policy=load_policy(settings.policy_file),
            model=fitted,
            config=config,
            rows_rejected=len(loaded.validated.rejects),
            truth=truth,
            scans=loaded.events.table if loaded.events is not None else None,
            scan_truth=generated_scan_truth(loaded),
        )
    if context.backtest_note:
        console.print(f"no backtest: {context.backtest_note}", highlight=False, soft_wrap=True)
    page = render_report(context)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    out.print(
        f"wrote {out_path} ({len(page.encode('utf-8')) / 1024:,.0f} KiB, as of {cutoff})",
        highlight=False,
        soft_wrap=True,
    )
