"""Shared pieces of the command line: consoles, option types, the error-to-exit-code helper."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from model.errors import AdvisorError
from service.settings import env_name, get_settings

console = Console(stderr=True)
# Tables keep their full width when piped to a file (rich would otherwise assume 80 columns).
out = Console() if sys.stdout.isatty() else Console(width=120)

F = TypeVar("F", bound=Callable[..., Any])

AsOf = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="Cut-off / decision date (YYYY-MM-DD)."),
]
ModelDir = Annotated[
    Path | None,
    typer.Option(
        "--model", help="Model directory (default: $ADVISOR_MODEL_DIR, else ./artifacts/model)."
    ),
]
EventsPath = Annotated[
    Path | None,
    typer.Option(
        "--events",
        help="Carrier scans of these orders (.csv, .csv.gz, .parquet): order_id, event_at,"
        " milestone[, carrier, location, description].",
    ),
]
HistoryPath = Annotated[
    Path | None,
    typer.Option(
        "--history", help="History file (.csv, .csv.gz, .parquet); default: the bundled history."
    ),
]


def friendly_errors(func: F) -> F:
    """Turn :class:`AdvisorError` into a one-line message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AdvisorError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except ValidationError as exc:  # settings from the environment (inputs never echoed)
            console.print(
                f"[bold red]error:[/] invalid settings: {settings_problems(exc)}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def settings_problems(exc: ValidationError) -> str:
    """A settings error on one line: ``ADVISOR_PORT: Input should be ...; ...``."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        names = [str(part) for part in error["loc"] if isinstance(part, str)]
        where = f"{env_name(names[0])}: " if names else ""
        problems.append(where + error["msg"].removeprefix("Value error, "))
    return "; ".join(problems)


def model_dir_or_default(model: Path | None) -> Path:
    return model if model is not None else get_settings().model_dir


def as_date(value: datetime | None) -> date | None:
    """The ``--as-of`` date, checked against the supported date range."""
    from model.schema import check_as_of

    return check_as_of(value.date(), "--as-of") if value is not None else None


def today_utc() -> date:
    return datetime.now(UTC).date()


def print_rejects_summary(rejects: Any, what: str, limit: int = 10) -> None:
    if len(rejects) == 0:
        return
    table = Table(title=f"{len(rejects)} {what} rejected (first {min(limit, len(rejects))})")
    for column in ("line", "order_id", "column", "reason"):
        table.add_column(column)
    for row in rejects.head(limit).itertuples(index=False):
        table.add_row(str(row.line), str(row.order_id), str(row.column), str(row.reason))
    console.print(table)


def print_events_summary(events: Any, what: str) -> None:
    """Say what was read from an events file, and list its rejected rows."""
    if events is None:
        return
    console.print(events.describe(), highlight=False, soft_wrap=True)
    print_rejects_summary(events.rejects, what)
