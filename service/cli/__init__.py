"""``window-advisor``: the command line (the app is assembled in :mod:`service.cli.commands`).

:func:`main` is the console script. ``from service.cli import app`` gives the Typer app.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.cli.commands import app

__all__ = ["app", "main"]


def main() -> None:
    """Run the command line.

    Start-up makes some 100k objects that live as long as the process (modules, the model).
    Python's cyclic garbage collector would walk them again and again while they are made,
    and once more at exit: ~0.15 s of a 0.72 s one-row ``score`` (``bench/RESULTS.md``). So
    collection waits while the commands import, the objects made so far are then left out
    of every later collection (:func:`gc.freeze`), and so are those alive at exit. Garbage
    made while a command runs is collected as usual.
    """
    gc.disable()
    try:
        from service.cli.commands import app
    finally:
        gc.freeze()
        gc.enable()
    try:
        app()
    finally:
        gc.freeze()


def __getattr__(name: str) -> Any:
    if name == "app":  # assembled on first use: importing this package stays cheap
        from service.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
