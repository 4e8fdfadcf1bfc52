"""Batch scoring (``window-advisor score``, service/batch/engine.py): every row is scored or
rejected with its exact input line, results do not depend on the chunk size, output is atomic."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from data.generate import generate_open_orders
from model.predictor import AdvisorModel
from service.batch.engine import SeenIds, _merge_sorted, _Run, order_id_hashes
from service.batch.files import (
    LINE_COLUMN,
    PROBLEM_COLUMN,
    CsvSplitter,
    TableSink,
    csv_header,
    default_rejects_path,
    iter_parquet,
    parse_csv_chunk,
)
from service.cli import app
from service.policy import PolicyConfig
from service.scoring import score_raw

AS_OF = date(2026, 11, 1)
HEADER = (
    "order_id,destination_country,shipping_method,shipped_at,deadline,delivered_at,"
    "extensions,dispute_opened_at,destination_region,weight_g,declared_value_usd"
)
runner = CliRunner()


def good(order_id: str, method: str = "aliexpress_standard", country: str = "DE") -> str:
    return f"{order_id},{country},{method},2026-10-01,2026-11-04,,0,,,120,9.5"


# Line 1 is the header. Each entry: the text of one or more physical lines.
MIXED: list[str] = [
    good("G1"),  # 2
    "",  # 3 blank
    good("G2", method='"standard, tracked"'),  # 4 quoted comma
    'B1,BR,"two\nline method",2026-10-01,2026-11-04,,0,,,120,9.5',  # 5-6 quoted newline
    "B2,,aliexpress_standard,2026-10-01,2026-11-04,,0,,,120,9.5",  # 7 missing country
    "B3,DE,aliexpress_standard,2026-13-45,2026-11-04,,0,,,120,9.5",  # 8 malformed date
    "B4,XX,aliexpress_standard,2026-10-01,2026-11-04,,0,,,120,9.5",  # 9 bad country
    "B5,DE,aliexpress_standard,2026-10-01,2026-09-04,,0,,,120,9.5",  # 10 deadline first
    "B6,DE,aliexpress_standard,2026-10-01,2026-11-04,,-1,,,120,9.5",  # 11 negative ext.
    "   ",  # 12 blank (white space)
    good("G1"),  # 13 duplicate of line 2
    "B7,DE,aliexpress_standard,2026-10-01",  # 14 wrong field count
    'B8,DE,"never closed,2026-10-01,2026-11-04,,0,,,120,9.5',  # 15 unbalanced quote
    good("G3"),  # 16
    good("G2"),  # 17 duplicate of line 4
]
EXPECTED_REJECTS = [
    (7, "B2", "destination_country", "missing required value"),
    (8, "B3", "shipped_at", "'2026-13-45' is not an ISO 8601 date"),
    (9, "B4", "destination_country", "'XX' is not an ISO 3166-1 alpha-2 country code"),
    (10, "B5", "deadline", "deadline before shipped_at"),
    (11, "B6", "extensions", "negative extensions"),
    (13, "G1", "order_id", "duplicate order_id (first seen on line 2)"),
    (14, "B7", "(unparsable)", "expected 11 fields, found 4"),
    (15, "B8", "(unparsable)", "unparsable CSV (unbalanced quotes)"),
    (17, "G2", "order_id", "duplicate order_id (first seen on line 4)"),
]
EXPECTED_SCORED = ["G1", "G2", "B1", "G3"]


def write_csv(path: Path, rows: list[str], *, newline: str = "\n", bom: bool = False) -> Path:
    text = newline.join([HEADER, *rows]) + newline
    if newline != "\n":  # line ends inside quoted fields follow the file's convention
        text = text.replace("\nline method", newline + "line method")
    path.write_bytes((("\ufeff" if bom else "") + text).encode("utf-8"))
    return path


def score(*args: str | Path, model_dir: Path) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["score", *map(str, args), "--model", str(model_dir), "--as-of", AS_OF.isoformat()],
    )
    return result.exit_code, result.output


def read_rejects(path: Path) -> list[tuple[int, str, str, str]]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [(int(r.line), r.order_id, r.column, r.reason) for r in frame.itertuples()]


@pytest.mark.parametrize(
    ("newline", "bom"), [("\n", False), ("\r\n", True), ("\r", False)], ids=["lf", "crlf-bom", "cr"]
)
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_every_bad_row_is_rejected_with_its_line_and_reason(
    tmp_path: Path, trained_model_dir: Path, newline: str, bom: bool, chunk_rows: int
) -> None:
    source = write_csv(tmp_path / "orders.csv", MIXED, newline=newline, bom=bom)
    out = tmp_path / "out.csv"
    code, output = score(
        source, "--out", out, "--chunk-rows", str(chunk_rows), model_dir=trained_model_dir
    )
    assert code == 0, output
    assert read_rejects(tmp_path / "out.rejects.csv") == EXPECTED_REJECTS
    scored = pd.read_csv(out, dtype={"order_id": str})
    assert scored["order_id"].tolist() == EXPECTED_SCORED
    assert "scored 4 + rejected 9 = 13 input rows" in output
    assert re.search(r"blank lines skipped\s+│\s+2 ", output), output
    assert re.search(r"rejected on \(unparsable\)\s+│\s+2 ", output), output
    assert sorted(os.listdir(tmp_path)) == ["orders.csv", "out.csv", "out.rejects.csv"]


def test_strict_exits_2_when_a_row_is_rejected_and_still_writes_both_files(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    source = write_csv(tmp_path / "orders.csv", MIXED)
    code, output = score(
        source, "--out", tmp_path / "out.csv", "--strict", model_dir=trained_model_dir
    )
    assert code == 2
    assert "9 rows rejected (--strict)" in output
    assert (tmp_path / "out.csv").is_file() and (tmp_path / "out.rejects.csv").is_file()


def test_strict_exits_0_when_every_row_is_scored(tmp_path: Path, trained_model_dir: Path) -> None:
    source = write_csv(tmp_path / "orders.csv", [good("A"), good("B")])
    code, output = score(
        source, "--out", tmp_path / "o.csv", "--strict", model_dir=trained_model_dir
    )
    assert code == 0, output
    assert "scored 2 + rejected 0 = 2 input rows" in output
    assert read_rejects(tmp_path / "o.rejects.csv") == []


def test_scored_values_are_those_of_the_scoring_function(
    tmp_path: Path, trained_model_dir: Path, small_model: AdvisorModel, open_orders: pd.DataFrame
) -> None:
    source = tmp_path / "orders.csv"
    open_orders.to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    code, output = score(source, "--out", out, "--chunk-rows", "64", model_dir=trained_model_dir)
    assert code == 0, output
    raw = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    expected = score_raw(raw, small_model, PolicyConfig(), AS_OF).scored
    actual = pd.read_parquet(out)
    assert len(actual) == len(open_orders)
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )


def test_parquet_round_trip_matches_csv(
    tmp_path: Path, trained_model_dir: Path, open_orders: pd.DataFrame
) -> None:
    csv_in, parquet_in = tmp_path / "in.csv", tmp_path / "in.parquet"
    open_orders.to_csv(csv_in, index=False)
    # Row groups of 37 rows: most 50-row chunks span two of them.
    open_orders.to_parquet(parquet_in, index=False, row_group_size=37)
    assert score(csv_in, "--out", tmp_path / "a.csv.gz", model_dir=trained_model_dir)[0] == 0
    assert (
        score(
            parquet_in,
            "--out",
            tmp_path / "b.parquet",
            "--chunk-rows",
            "50",
            model_dir=trained_model_dir,
        )[0]
        == 0
    )
    from_csv = pd.read_csv(tmp_path / "a.csv.gz", parse_dates=["new_deadline", "respond_by"])
    from_parquet = pd.read_parquet(tmp_path / "b.parquet")
    for column in ("new_deadline", "respond_by"):
        from_csv[column] = from_csv[column].astype("datetime64[ns]")
        from_parquet[column] = from_parquet[column].astype("datetime64[ns]")
    assert len(from_parquet) == len(open_orders)
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    assert (tmp_path / "b.rejects.csv").is_file() and (tmp_path / "a.rejects.csv").is_file()


def test_parquet_output_is_the_same_bytes_whatever_the_chunk_size(
    tmp_path: Path, trained_model_dir: Path, open_orders: pd.DataFrame
) -> None:
    """The scored Parquet file depends on its rows alone, not on how ``--chunk-rows`` cut the
    input (nor on how many rows each chunk lost to rejects): one row group here."""
    frame = open_orders.copy()
    frame["destination_country"] = frame["destination_country"].astype(object)
    frame.loc[[5, 6, 40], "destination_country"] = "QQ"  # rejected: uneven chunks
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)
    files = {}
    for chunk_rows in (1, 7, 64, 1000):
        out = tmp_path / f"out-{chunk_rows}.parquet"
        code, output = score(
            source, "--out", out, "--chunk-rows", str(chunk_rows), model_dir=trained_model_dir
        )
        assert code == 0, output
        files[chunk_rows] = out.read_bytes()
    assert len(set(files.values())) == 1
    metadata = pq.ParquetFile(tmp_path / "out-7.parquet").metadata
    groups = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    assert groups == [len(frame) - 3]


def _sink_file(path: Path, table: pa.Table, sizes: list[int]) -> Path:
    """``table`` handed to a Parquet sink of 10-row groups in slices of ``sizes`` rows."""
    sink = TableSink(path, table.schema, row_group_rows=10)
    start = 0
    for size in sizes:
        sink.write_table(table.slice(start, size))
        start += size
    sink.commit()
    return path


def test_parquet_sink_writes_full_row_groups_whatever_tables_it_is_handed(
    tmp_path: Path,
) -> None:
    table = pa.table(
        {"order_id": [f"O{i}" for i in range(22)], "p_late": np.linspace(0.0, 1.0, 22)}
    )
    pieces = _sink_file(tmp_path / "pieces.parquet", table, [3, 0, 14, 5])
    whole = _sink_file(tmp_path / "whole.parquet", table, [22])
    assert pieces.read_bytes() == whole.read_bytes()
    metadata = pq.ParquetFile(pieces).metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [10, 10, 2]
    assert pq.read_table(pieces).equals(table)
    empty = pq.ParquetFile(_sink_file(tmp_path / "empty.parquet", table, [0, 0]))
    assert (empty.metadata.num_row_groups, empty.metadata.num_rows) == (1, 0)
    assert empty.schema_arrow.equals(table.schema)


def test_parquet_is_read_in_chunks_of_the_asked_size_across_row_groups_and_files(
    tmp_path: Path,
) -> None:
    """Row groups of 7 rows read in chunks of 5: every chunk but a file's last holds 5 rows
    (one Arrow chunk per column, even when it spans two row groups), lines run on across the
    files of a directory, and no row is lost or repeated."""
    frames = [generate_open_orders(rows, seed=rows, as_of=AS_OF) for rows in (23, 10)]
    (tmp_path / "in").mkdir()
    for number, frame in enumerate(frames):
        frame.to_parquet(tmp_path / "in" / f"part-{number}.parquet", index=False, row_group_size=7)
    chunks = [table for table, _ in iter_parquet(tmp_path / "in", 5)]
    assert [table.num_rows for table in chunks] == [5, 5, 5, 5, 3, 5, 5]
    assert all(column.num_chunks == 1 for table in chunks for column in table.columns)
    lines = np.concatenate([table.column(LINE_COLUMN).to_numpy() for table in chunks])
    np.testing.assert_array_equal(lines, np.arange(1, 34))
    order_ids = [value for table in chunks for value in table.column("order_id").to_pylist()]
    assert order_ids == [*frames[0]["order_id"], *frames[1]["order_id"]]


def test_parquet_rejects_use_row_numbers(tmp_path: Path, trained_model_dir: Path) -> None:
    frame = pd.DataFrame(
        [dict(zip(HEADER.split(","), good(name).split(","), strict=True)) for name in "ABC"]
    )
    frame.loc[1, "destination_country"] = "ZZ"
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    code, _ = score(
        tmp_path / "in.parquet", "--out", tmp_path / "o.csv", model_dir=trained_model_dir
    )
    assert code == 0
    assert read_rejects(tmp_path / "o.rejects.csv") == [
        (2, "B", "destination_country", "'ZZ' is not an ISO 3166-1 alpha-2 country code")
    ]


def test_rejects_option_and_default_name(tmp_path: Path, trained_model_dir: Path) -> None:
    source = write_csv(tmp_path / "orders.csv", [good("A"), "A,DE"])
    code, _ = score(
        source,
        "--out",
        tmp_path / "o.parquet",
        "--rejects",
        tmp_path / "bad.csv",
        model_dir=trained_model_dir,
    )
    assert code == 0
    assert read_rejects(tmp_path / "bad.csv") == [
        (3, "A", "(unparsable)", "expected 11 fields, found 2")
    ]
    assert default_rejects_path(Path("x/out.parquet")) == Path("x/out.rejects.csv")
    assert default_rejects_path(Path("my.data.csv.gz")) == Path("my.data.rejects.csv")
    assert default_rejects_path(Path("scores")) == Path("scores.rejects.csv")


def test_header_only_file_gives_empty_outputs(tmp_path: Path, trained_model_dir: Path) -> None:
    source = write_csv(tmp_path / "orders.csv", [])
    code, output = score(source, "--out", tmp_path / "o.csv", model_dir=trained_model_dir)
    assert code == 0, output
    assert "scored 0 + rejected 0 = 0 input rows" in output
    assert (tmp_path / "o.csv").read_text().startswith("order_id,action,")


# -- exit code 1: unusable input or model ---------------------------------------------------
def test_missing_input_file(tmp_path: Path, trained_model_dir: Path) -> None:
    code, output = score(
        tmp_path / "nope.csv", "--out", tmp_path / "o.csv", model_dir=trained_model_dir
    )
    assert code == 1
    assert f"error: {tmp_path / 'nope.csv'}: no such file" in " ".join(output.split())
    assert "Traceback" not in output
    assert not (tmp_path / "o.csv").exists()


def test_missing_required_column(tmp_path: Path, trained_model_dir: Path) -> None:
    source = tmp_path / "orders.csv"
    source.write_text("order_id,shipped_at,deadline\nA,2026-10-01,2026-11-04\n")
    code, output = score(source, "--out", tmp_path / "o.csv", model_dir=trained_model_dir)
    assert code == 1
    assert "open orders is missing required column(s): destination_country" in " ".join(
        output.split()
    )
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("in.txt", b"x", "unsupported file type"),
        ("in.csv", b"", "empty file (no header line)"),
        ("in.csv", b"\xff\xfeo\x00r\x00\n", "header line is not UTF-8 CSV text"),
        ("in.parquet", b"not parquet", "cannot read as parquet"),
        ("in.csv.gz", b"not gzip at all", "cannot read as csv.gz"),
    ],
)
def test_unreadable_input(
    tmp_path: Path, trained_model_dir: Path, name: str, content: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    code, output = score(tmp_path / name, "--out", tmp_path / "o.csv", model_dir=trained_model_dir)
    assert code == 1
    assert message in " ".join(output.split())
    assert "Traceback" not in output
    assert not (tmp_path / "o.csv").exists()


def test_tampered_model(tmp_path: Path, trained_model_dir: Path) -> None:
    tampered = tmp_path / "model"
    tampered.mkdir()
    for item in trained_model_dir.iterdir():
        (tampered / item.name).write_bytes(item.read_bytes())
    blob = bytearray((tampered / "model.joblib").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tampered / "model.joblib").write_bytes(bytes(blob))
    source = write_csv(tmp_path / "orders.csv", [good("A")])
    code, output = score(source, "--out", tmp_path / "o.csv", model_dir=tampered)
    assert code == 1
    assert "failed verification" in " ".join(output.split())
    assert not (tmp_path / "o.csv").exists()


def test_scheduler_needs_dask_engine(tmp_path: Path, trained_model_dir: Path) -> None:
    source = write_csv(tmp_path / "orders.csv", [good("A")])
    code, output = score(
        source,
        "--out",
        tmp_path / "o.csv",
        "--scheduler",
        "tcp://127.0.0.1:1",
        model_dir=trained_model_dir,
    )
    assert code == 1
    assert "--scheduler needs --engine dask" in output


# -- the reader on its own ----------------------------------------------------------------
def raw_rows(path: Path, chunk_rows: int) -> pd.DataFrame:
    header = csv_header(path, "csv")
    tables = [parse_csv_chunk(c, header) for c in CsvSplitter(path, "csv", header, chunk_rows)]
    return pa.concat_tables(tables).to_pandas()


def test_reader_line_numbers_do_not_depend_on_chunk_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pieces = [
        good("A"),
        "",
        'Q,DE,"x\n\ny",2026-10-01,2026-11-04,,0,,,1,1',
        "A,B",
        'S,DE,5" box,2026-10-01,2026-11-04,,0,,,1,1',
        "\t",
        good("Z"),
    ]
    rows = [pieces[i] for i in rng.integers(0, len(pieces), 300)]
    source = write_csv(tmp_path / "r.csv", rows, newline="\r\n")
    reference = raw_rows(source, 10_000)
    assert len(reference) == 300
    for chunk_rows in (1, 2, 7, 64):
        pd.testing.assert_frame_equal(raw_rows(source, chunk_rows), reference)


def test_a_long_unclosed_quote_costs_only_its_own_line(tmp_path: Path) -> None:
    rows = ['U,DE,"open,2026-10-01,2026-11-04,,0,,,1,1'] + [good(f"G{i}") for i in range(150)]
    frame = raw_rows(write_csv(tmp_path / "u.csv", rows), 20)
    assert frame["__line__"].tolist() == list(range(2, 153))
    assert frame["__problem__"].iloc[0] == "unparsable CSV (unbalanced quotes)"
    assert frame["__problem__"].iloc[1:].isna().all()


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_bytes_that_are_not_utf8_reject_their_line_even_in_an_ignored_column(
    tmp_path: Path, chunk_rows: int
) -> None:
    source = tmp_path / "u.csv"
    rows = [f"{good(name)},note" for name in ("A", "B", "C")]
    source.write_bytes(
        (HEADER + ",notes\n" + rows[0] + "\n").encode()
        + rows[1].encode()[:-4]
        + b"\xff\xfe\n"
        + (rows[2] + ",\xfcber\n").encode("latin-1")  # one field too many, and not UTF-8
        + f"{good('D')},\u00fcber\n".encode()
    )
    frame = raw_rows(source, chunk_rows)
    assert frame["__line__"].tolist() == [2, 3, 4, 5]
    assert frame["__problem__"].tolist()[1:3] == ["line is not valid UTF-8 text"] * 2
    assert frame["order_id"].tolist()[0::3] == ["A", "D"]
    assert frame["__problem__"].isna().tolist() == [True, False, False, True]


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_an_unclosed_quote_on_the_last_line_without_a_line_end(
    tmp_path: Path, chunk_rows: int
) -> None:
    source = tmp_path / "q.csv"
    source.write_bytes((HEADER + "\n" + good("A") + '\nB,"DE,x').encode())
    frame = raw_rows(source, chunk_rows)
    assert frame["__line__"].tolist() == [2, 3]
    assert frame["__problem__"].tolist()[1] == "unparsable CSV (unbalanced quotes)"


def test_invalid_utf8_line_is_rejected_alone(tmp_path: Path) -> None:
    source = tmp_path / "b.csv"
    source.write_bytes(
        (HEADER + "\n" + good("A") + "\n").encode()
        + b"B,DE,\xff\xfe,2026-10-01\n"
        + (good("C")).encode()  # no final line end
    )
    frame = raw_rows(source, 100)
    assert frame["__line__"].tolist() == [2, 3, 4]
    assert frame["__problem__"].tolist()[1] == "line is not valid UTF-8 text"
    assert frame["order_id"].tolist()[2] == "C"


def test_seen_ids_find_the_first_line_across_many_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SeenIds, "RUN_CAP", 64)
    seen = SeenIds()
    ids = [f"id{i}" for i in range(1000)]
    for start in range(0, 1000, 10):
        chunk = pd.Series(ids[start : start + 10])
        hashes, _ = order_id_hashes(chunk)
        assert (seen.first_lines(hashes) == -1).all()
        seen.add(hashes, np.arange(start, start + 10) + 2)
    hashes, present = order_id_hashes(pd.Series(["id0", " id999 ", "new", None, ""]))
    assert present.tolist() == [True, True, True, False, False]
    assert seen.first_lines(hashes[:3]).tolist() == [2, 1001, -1]
    assert len(seen) == 1000


@given(
    hashes=st.lists(st.integers(0, 2**64 - 1), unique=True, max_size=60),
    split=st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_merged_runs_stay_sorted_with_their_lines(hashes: list[int], split: list[bool]) -> None:
    """Two sorted runs of distinct hashes merge into one, each hash keeping its own line."""
    values = np.array(hashes, dtype=np.uint64)
    first = np.sort(values[np.array(split[: len(values)], dtype=bool)])
    second = np.sort(values[~np.array(split[: len(values)], dtype=bool)])
    line_of = {int(h): i + 2 for i, h in enumerate(values)}
    merged, lines = _merge_sorted(
        first,
        np.array([line_of[int(h)] for h in first], dtype=np.uint32),
        second,
        np.array([line_of[int(h)] for h in second], dtype=np.uint32),
    )
    assert merged.tolist() == sorted(hashes)
    assert lines.tolist() == [line_of[h] for h in sorted(hashes)]
    assert lines.dtype == np.uint32


def test_an_id_repeated_in_a_chunk_is_remembered_by_its_first_line() -> None:
    """Ids repeated all over a large chunk: a later chunk's copy points at the first line of
    each, however the chunk's hashes were sorted."""
    ids = [f"id{i % 700}" for i in range(5000)]
    first = pa.table(
        {
            "order_id": pa.array(ids),
            LINE_COLUMN: pa.array(np.arange(2, 5002), type=pa.int64()),
            PROBLEM_COLUMN: pa.nulls(5000, type=pa.string()),
        }
    )
    seen = SeenIds()
    earlier, distinct = seen.scan(first)
    assert not distinct and (earlier == -1).all()
    later = pa.table(
        {
            "order_id": pa.array([f"id{i}" for i in range(700)]),
            LINE_COLUMN: pa.array(np.arange(6000, 6700), type=pa.int64()),
            PROBLEM_COLUMN: pa.nulls(700, type=pa.string()),
        }
    )
    assert seen.earlier(later).tolist() == list(range(2, 702))


def test_a_run_filter_keeps_every_hash_and_rules_out_most_others() -> None:
    """No false negatives (a seen id is never missed); ~3% false positives here (10.5 bits
    and two probes per hash; one probe would let 9% through), so few binary searches are
    left to do."""
    rng = np.random.default_rng(3)
    held = np.sort(rng.integers(0, 2**64 - 1, 100_000, dtype=np.uint64, endpoint=True))
    run = _Run.of(held, np.arange(len(held), dtype=np.uint32))
    assert run.may_hold(held).all()
    others = rng.integers(0, 2**64 - 1, 100_000, dtype=np.uint64, endpoint=True)
    assert run.may_hold(others).mean() < 0.04


# -- interruption -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def large_orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("large") / "orders.csv"
    generate_open_orders(300_000, seed=9, as_of=AS_OF).to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_leaves_no_output(
    tmp_path: Path, trained_model_dir: Path, large_orders: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "out.csv"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "score",
            str(large_orders),
            "--out",
            str(out),
            "--model",
            str(trained_model_dir),
            "--as-of",
            AS_OF.isoformat(),
            "--chunk-rows",
            "50",  # many small chunks: the run lasts long enough (~15 s) to be interrupted
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    partial = tmp_path / f".out.csv.{process.pid}.partial"
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.stat().st_size > 0):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "scoring never started writing"
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert not out.exists(), stderr.decode()
    assert not (tmp_path / "out.rejects.csv").exists()
    left = sorted(os.listdir(tmp_path))
    if sig == signal.SIGKILL:  # nothing can clean up: only hidden temporaries remain
        assert all(name.startswith(".out.") for name in left), left
    else:
        assert left == [], left
        assert process.returncode == (130 if sig == signal.SIGINT else 143), stderr.decode()
        assert b"Traceback" not in stderr


def test_scoring_with_the_local_engine_loads_no_server_cluster_or_plotting_library(
    tmp_path: Path, scan_model_dir: Path
) -> None:
    """``score`` imports what it uses: the CLI module assembles every command, but the HTTP
    service, Dask and matplotlib stay unloaded (they cost start-up time), and so do XGBoost
    while no scan is scored (the model carries a scan model) and scikit-learn while every
    lane is one of the training history's (the artifact carries their logit tables)."""
    source = write_csv(tmp_path / "orders.csv", [good("A")])
    out = tmp_path / "o.csv"
    args = ["score", str(source), "--out", str(out), "--model", str(scan_model_dir)]
    program = (
        "import sys\n"
        "from service.cli import app\n"
        f"app({[*args, '--as-of', AS_OF.isoformat()]!r}, standalone_mode=False)\n"
        "heavy = {'fastapi', 'starlette', 'uvicorn', 'dask', 'distributed', 'matplotlib',"
        " 'xgboost', 'sklearn', 'scipy'}\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    assert pd.read_csv(out)["order_id"].tolist() == ["A"]


def test_order_ids_that_need_quotes_survive_the_round_trip(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    source = write_csv(tmp_path / "orders.csv", [good('"A,1"'), good('"B ""2"""'), good("C")])
    code, output = score(source, "--out", tmp_path / "o.csv", model_dir=trained_model_dir)
    assert code == 0, output
    assert pd.read_csv(tmp_path / "o.csv")["order_id"].tolist() == ["A,1", 'B "2"', "C"]


@pytest.mark.parametrize("option", ["--out", "--rejects"])
def test_input_is_never_overwritten(tmp_path: Path, trained_model_dir: Path, option: str) -> None:
    source = write_csv(tmp_path / "orders.csv", [good("A")])
    before = source.read_bytes()
    args: list[str | Path] = ["--out", tmp_path / "o.csv", option, source]
    code, output = score(source, *args, model_dir=trained_model_dir)
    assert code == 1
    assert "INPUT cannot also be an output of the run" in " ".join(output.split())
    assert source.read_bytes() == before
