"""``window-advisor import``: history from the Olist table or a seller's export; tracking
events from AfterShip or 17TRACK exports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from model.errors import AdvisorError
from service.cli.common import console, friendly_errors, out, print_rejects_summary

if TYPE_CHECKING:
    from data.importers import ImportResult
    from data.tracking_importers import TrackingImport

import_app = typer.Typer(
    name="import",
    help=(
        "Import shipment history (the public Olist orders table or any seller's CSV export)"
        " or tracking events (AfterShip or 17TRACK exports)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

HistoryOut = Annotated[
    Path, typer.Option("--out", help="History file to write (.csv, .csv.gz, .parquet).")
]
EventsOut = Annotated[
    Path, typer.Option("--out", help="Events file to write (.csv, .csv.gz, .parquet).")
]


def _report(result: ImportResult, out_path: Path) -> None:
    """Write the history and its rejects, then say what was written, skipped and rejected."""
    from data.importers import rejects_path_for, summarise_reasons, write_import
    from data.tables import write_table

    if result.history.empty:
        rejects_path = rejects_path_for(out_path)
        write_table(result.rejects, rejects_path)
        print_rejects_summary(result.rejects, "rows")
        raise AdvisorError(
            f"no valid shipment rows among {result.rows_read:,} read"
            f" ({result.rows_skipped:,} skipped, {len(result.rejects):,} rejected);"
            f" nothing written to {out_path}; rejects in {rejects_path}"
        )
    rejects_path = write_import(result, out_path)
    for note in result.notes:
        console.print(note, highlight=False, soft_wrap=True)
    table = Table(title=f"import of {result.rows_read:,} rows")
    table.add_column("rows", justify="right")
    table.add_column("outcome")
    table.add_row(f"{len(result.history):,}", f"written to {out_path}")
    for reason, count in result.skipped.items():
        table.add_row(f"{count:,}", f"skipped: {reason}")
    for reason, count in summarise_reasons(result.rejects).items():
        table.add_row(f"{count:,}", f"rejected: {reason}")
    out.print(table)
    out.print(
        f"wrote {len(result.history):,} shipments to {out_path}; skipped {result.rows_skipped:,};"
        f" rejected {len(result.rejects):,} (listed in {rejects_path})",
        highlight=False,
        soft_wrap=True,
    )


@import_app.command("olist")
@friendly_errors
def olist(
    orders: Annotated[
        Path, typer.Option("--orders", help="Olist orders table (olist_orders_dataset.csv).")
    ],
    out_path: HistoryOut,
    customers: Annotated[
        Path | None,
        typer.Option(
            "--customers",
            help="Olist customers table; gives destination_region = customer_state.",
        ),
    ] = None,
) -> None:
    """Map the public Olist orders table to history; orders never shipped are skipped."""
    from data.importers import import_olist, read_csv_text
    from data.tables import table_format

    table_format(out_path)
    with console.status(f"reading {orders}"):
        orders_text = read_csv_text(orders)
        customers_text = read_csv_text(customers) if customers is not None else None
        result = import_olist(orders_text, customers_text)
    _report(result, out_path)


@import_app.command("csv")
@friendly_errors
def seller_csv(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="The seller's CSV export.")],
    out_path: HistoryOut,
    column_map: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="COLUMN=SOURCE",
            help="History column = export column (repeatable); same-named columns map themselves.",
        ),
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option(
            "--date-format",
            metavar="FMT",
            help="strptime format of every date column, e.g. %d/%m/%Y [default: ISO 8601].",
        ),
    ] = None,
    country: Annotated[
        str | None,
        typer.Option(
            "--country", metavar="CC", help="Destination country when the export has none."
        ),
    ] = None,
) -> None:
    """Map any seller export to history, validating every row as training and scoring do."""
    from data.importers import import_seller_export, parse_column_map, read_csv_text
    from data.tables import table_format

    table_format(out_path)
    mapping = parse_column_map(column_map or [])
    with console.status(f"reading {input_path}"):
        text = read_csv_text(input_path)
        result = import_seller_export(text, mapping, date_format=date_format, country=country)
    if text.encoding != "utf-8" or text.delimiter != ",":
        console.print(
            f"read {input_path} as {text.encoding}, delimiter {text.delimiter!r}",
            highlight=False,
            soft_wrap=True,
        )
    _report(result, out_path)
    print_rejects_summary(result.rejects, "rows")


def _report_tracking(result: TrackingImport, input_path: Path, out_path: Path) -> None:
    """Write the events and their rejects, then account for every checkpoint read."""

    from data.importers import rejects_path_for, summarise_reasons
    from data.tables import write_table
    from data.tracking_importers import write_tracking_import

    rejects_path = rejects_path_for(out_path)
    unmapped = sum(result.unmapped.values())
    if result.events.empty:
        write_table(result.rejects, rejects_path)
        print_rejects_summary(result.rejects, "checkpoints or records")
        raise AdvisorError(
            f"no event to write: {input_path} has {result.checkpoints:,} checkpoints"
            f" ({unmapped:,} unmapped, {result.duplicates:,} duplicates,"
            f" {result.checkpoint_rejects:,} rejected) and {result.records_rejected:,} rejected"
            f" records; nothing written to {out_path}; rejects in {rejects_path}"
        )
    write_tracking_import(result, out_path)
    for note in result.notes:
        console.print(note, highlight=False, soft_wrap=True)
    table = Table(
        title=f"{result.service} export: trackings {result.trackings:,},"
        f" checkpoints {result.checkpoints:,}"
    )
    table.add_column("count", justify="right")
    table.add_column("outcome")
    table.add_row(f"{len(result.events):,}", f"written to {out_path}")
    if result.duplicates:
        table.add_row(f"{result.duplicates:,}", "duplicate: counted once")
    for status, count in result.unmapped.items():
        table.add_row(f"{count:,}", f"unmapped: {status}")
    for reason, count in summarise_reasons(result.rejects).items():
        table.add_row(f"{count:,}", f"rejected: {reason}")
    out.print(table)
    out.print(
        f"wrote {len(result.events):,} events to {out_path}; unmapped {unmapped:,};"
        f" duplicates {result.duplicates:,}; rejected {len(result.rejects):,}"
        f" (listed in {rejects_path})",
        highlight=False,
        soft_wrap=True,
    )
    print_rejects_summary(result.rejects, "checkpoints or records")


TrackingExport = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        help="The export: one JSON document or JSON Lines (a .gz file is decompressed).",
    ),
]


@import_app.command("aftership")
@friendly_errors
def aftership(input_path: TrackingExport, out_path: EventsOut) -> None:
    """AfterShip trackings (array, API response or webhook JSON Lines) as tracking events."""

    from data.tables import table_format
    from data.tracking_importers import import_aftership

    table_format(out_path)
    with console.status(f"reading {input_path}"):
        result = import_aftership(input_path)
    _report_tracking(result, input_path, out_path)


@import_app.command("17track")
@friendly_errors
def seventeen_track(input_path: TrackingExport, out_path: EventsOut) -> None:
    """17TRACK v2 push bodies or gettrackinfo responses as tracking events."""

    from data.tables import table_format
    from data.tracking_importers import import_17track

    table_format(out_path)
    with console.status(f"reading {input_path}"):
        result = import_17track(input_path)
    _report_tracking(result, input_path, out_path)
