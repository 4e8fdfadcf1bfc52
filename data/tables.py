"""Reading and writing tables by extension: ``.csv``, ``.csv.gz``, ``.parquet``."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from model.errors import InputFileError

__all__ = ["TABLE_SUFFIXES", "read_table", "table_format", "write_table"]

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def table_format(path: Path) -> str:
    """``csv`` or ``parquet`` from the file name; anything else is an :class:`InputFileError`."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise InputFileError(
        f"{path}: unsupported file type (expected one of {', '.join(TABLE_SUFFIXES)})"
    )


def read_table(path: Path) -> pd.DataFrame:
    """Read a whole table; CSV cells stay text (only empty cells are missing)."""
    kind = table_format(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig"
        )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read as {kind}: {exc}") from None


def _for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%d")
    return out


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically: to a temporary file beside ``path``, then rename."""
    kind = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        if kind == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            compression = "gzip" if path.name.lower().endswith(".gz") else None
            _for_csv(frame).to_csv(tmp, index=False, compression=compression)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
