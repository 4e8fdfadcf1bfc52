"""The ``window-advisor`` Typer app, one command per stage.

The commands live in modules by group (:mod:`.pipeline`: generate, train, evaluate, score;
:mod:`.imports`; :mod:`.report`; :mod:`.serve`), each importing only :mod:`.common`; this
module assembles them, so no command module imports another.
"""

from __future__ import annotations

import typer

from service.cli import pipeline
from service.cli.imports import import_app
from service.cli.report import report_command
from service.cli.serve import serve_command

__all__ = ["app"]

app = typer.Typer(
    name="window-advisor",
    help="Delivery-window extension advisor: learn lane delays, advise extend/escalate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("generate")(pipeline.generate)
app.command("train")(pipeline.train)
app.command("evaluate")(pipeline.evaluate)
app.command("score")(pipeline.score)
app.add_typer(import_app, name="import")
app.command("report")(report_command)
app.command("serve")(serve_command)
