"""``score --events``: orders scored with their own scans (as the scoring function scores
them), every row of the events file used, rejected with its line or counted, and no scan
after ``--as-of`` read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from data.generate import generate_open
from model.artifact import load_model
from model.events import MILESTONES
from model.predictor import AdvisorModel
from model.schema import validate_open_orders
from service import scoring
from service.batch.engine import SCORED_SCHEMA, scored_table
from service.batch.events import (
    BatchScans,
    _raw_chunks,
    _read,
    default_events_rejects_path,
    read_batch_scans,
)
from service.cli import app
from service.policy import ACTIONS, PolicyConfig
from service.scoring import Scores, score_columns, score_frame
from tests.conftest import AS_OF, scans_for
from tests.service.batch.test_batch import read_rejects

runner = CliRunner()


@pytest.fixture(scope="module")
def open_with_scans() -> tuple[pd.DataFrame, pd.DataFrame]:
    made = generate_open(300, seed=21, as_of=AS_OF)
    return made.frame, made.events


def score(*args: str | Path, model_dir: Path) -> tuple[int, str]:
    result = runner.invoke(
        app, ["score", *map(str, args), "--model", str(model_dir), "--as-of", AS_OF.isoformat()]
    )
    return result.exit_code, result.output


def test_orders_are_scored_with_their_scans_as_the_scoring_function_scores_them(
    tmp_path: Path, scan_model_dir: Path, open_with_scans: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    orders, events = open_with_scans
    orders.to_csv(tmp_path / "orders.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    code, output = score(
        tmp_path / "orders.csv",
        "--out",
        tmp_path / "out.csv",
        "--events",
        tmp_path / "events.csv",
        "--chunk-rows",
        "70",
        model_dir=scan_model_dir,
    )
    assert code == 0, output
    scored = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values=[""])
    model, _ = load_model(scan_model_dir)
    valid = validate_open_orders(orders, as_of=AS_OF).valid
    expected = score_frame(valid, model, PolicyConfig(), AS_OF, scans_for(events, valid))
    assert scored["order_id"].tolist() == expected["order_id"].tolist()
    assert scored["action"].tolist() == expected["action"].tolist()
    assert scored["reasons"].tolist() == expected["reasons"].tolist()
    np.testing.assert_allclose(scored["p_late"], expected["p_late"], rtol=1e-12)
    np.testing.assert_allclose(
        scored["p_late_after_extension"], expected["p_late_after_extension"], rtol=1e-12
    )
    milestones = scored["last_milestone"].dropna()
    assert milestones.isin(MILESTONES).all() and len(milestones) > 200
    assert scored["last_milestone"].isna().tolist() == expected["last_milestone"].isna().tolist()
    # The scans change decisions: without them the same model answers differently.
    code, _ = score(
        tmp_path / "orders.csv", "--out", tmp_path / "plain.csv", model_dir=scan_model_dir
    )
    plain = pd.read_csv(tmp_path / "plain.csv")
    assert code == 0 and plain["last_milestone"].isna().all()
    assert (plain["p_late_after_extension"] != scored["p_late_after_extension"]).sum() > 100
    assert default_events_rejects_path(tmp_path / "out.csv").is_file()


EVENTS_HEADER = "order_id,event_at,milestone,carrier,location,description"


def test_every_row_of_the_events_file_is_used_rejected_or_counted(
    tmp_path: Path, scan_model_dir: Path, open_with_scans: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    orders = open_with_scans[0].head(3)
    orders.to_csv(tmp_path / "orders.csv", index=False)
    first, second = orders["order_id"].tolist()[:2]
    shipped = pd.Timestamp(orders["shipped_at"].iloc[0]).date()
    before = (shipped - pd.Timedelta(days=2)).isoformat()
    latest = pd.to_datetime(orders["shipped_at"]).max().date()
    after = (latest + pd.Timedelta(days=1)).isoformat()
    lines = [
        EVENTS_HEADER,
        f"{first},{after}T08:00:00,picked_up,Cainiao,Shenzhen,Accepted",  # 2: used
        f"{first},{after}T08:00:00,picked_up,Cainiao,Shenzhen,Accepted",  # 3: duplicate
        f"{first},{after}T09:00:00,PICKED_UP,Cainiao,Shenzhen,Accepted",  # 4: used (case)
        f"{first},tomorrow,departed_origin,,,",  # 5: bad date
        f"{second},{after},teleported,,,",  # 6: unknown milestone
        f"{first},{before},info_received,,,",  # 7: before shipment
        f'{second},{after},"departed_origin,,,',  # 8: unclosed quote
        "",  # 9: blank line
        f"{second},{after},departed_origin,4PX,,",  # 10: used
        f"NOT-AN-ORDER,{after},departed_origin,,,",  # 11: of no scored order
        f",{after},departed_origin,,,",  # 12: no order id
    ]
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    code, output = score(
        tmp_path / "orders.csv",
        "--out",
        tmp_path / "out.csv",
        "--events",
        tmp_path / "events.csv",
        "--events-rejects",
        tmp_path / "scan-rejects.csv",
        model_dir=scan_model_dir,
    )
    assert code == 0, output
    assert read_rejects(tmp_path / "scan-rejects.csv") == [
        (5, first, "event_at", "'tomorrow' is not an ISO 8601 date or datetime"),
        (
            6,
            second,
            "milestone",
            "'teleported' is not a milestone (one of: " + ", ".join(MILESTONES) + ")",
        ),
        (
            7,
            first,
            "event_at",
            f"scan dated {before}, before the order's shipped_at ({shipped.isoformat()})",
        ),
        (8, second, "(unparsable)", "unparsable CSV (unbalanced quotes)"),
        (12, "", "order_id", "missing required value"),
    ]
    flat = " ".join(output.split())
    assert (
        "scans: 10 rows in" in flat
        and "3 used, 5 rejected" in flat
        and "1 exact duplicates counted once, 1 of 1 orders not scored" in flat
    ), flat
    scored = pd.read_csv(tmp_path / "out.csv").set_index("order_id")
    assert scored.loc[first, "last_milestone"] == "picked_up"
    assert scored.loc[second, "last_milestone"] == "departed_origin"
    assert pd.isna(scored.loc[orders["order_id"].iloc[2], "last_milestone"])
    # --strict counts rejected scans too.
    code, output = score(
        tmp_path / "orders.csv",
        "--out",
        tmp_path / "strict.csv",
        "--events",
        tmp_path / "events.csv",
        "--strict",
        model_dir=scan_model_dir,
    )
    assert code == 2 and "5 scans rejected (--strict)" in " ".join(output.split())


def test_a_scan_after_the_as_of_date_changes_nothing(
    tmp_path: Path, scan_model_dir: Path, open_with_scans: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    orders, events = open_with_scans
    orders.to_csv(tmp_path / "orders.csv", index=False)
    events.to_parquet(tmp_path / "events.parquet", index=False)
    later = pd.DataFrame(
        {
            "order_id": orders["order_id"],
            "event_at": pd.Timestamp(AS_OF) + pd.Timedelta(days=1, hours=9),
            "milestone": "delivered",
        }
    )
    pd.concat([events, later], ignore_index=True).to_parquet(
        tmp_path / "leaky.parquet", index=False
    )
    for name in ("events", "leaky"):
        code, output = score(
            tmp_path / "orders.csv",
            "--out",
            tmp_path / f"{name}.csv",
            "--events",
            tmp_path / f"{name}.parquet",
            model_dir=scan_model_dir,
        )
        assert code == 0, output
    assert (tmp_path / "events.csv").read_bytes() == (tmp_path / "leaky.csv").read_bytes()
    # (A control: the same scans dated on the as-of date do change the output.)
    later["event_at"] = pd.Timestamp(AS_OF) + pd.Timedelta(hours=9)
    pd.concat([events, later], ignore_index=True).to_parquet(tmp_path / "now.parquet", index=False)
    code, _ = score(
        tmp_path / "orders.csv",
        "--out",
        tmp_path / "now.csv",
        "--events",
        tmp_path / "now.parquet",
        model_dir=scan_model_dir,
    )
    assert code == 0
    assert (tmp_path / "now.csv").read_bytes() != (tmp_path / "events.csv").read_bytes()


def test_events_options_are_checked_before_anything_is_read(
    tmp_path: Path, scan_model_dir: Path, open_with_scans: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    orders, events = open_with_scans
    orders.to_csv(tmp_path / "orders.csv", index=False)
    code, output = score(
        tmp_path / "orders.csv",
        "--out",
        tmp_path / "out.csv",
        "--events-rejects",
        tmp_path / "x.csv",
        model_dir=scan_model_dir,
    )
    assert code == 1 and "error: --events-rejects needs --events" in output
    events.drop(columns=["milestone"]).to_csv(tmp_path / "events.csv", index=False)
    code, output = score(
        tmp_path / "orders.csv",
        "--out",
        tmp_path / "out.csv",
        "--events",
        tmp_path / "events.csv",
        model_dir=scan_model_dir,
    )
    assert code == 1
    assert (
        f"{tmp_path / 'events.csv'}: tracking events is missing required column(s): milestone"
        in " ".join(output.split())
    )
    assert not (tmp_path / "out.csv").exists()


def _same_scans(a: BatchScans, b: BatchScans) -> None:
    assert a.table.order_ids.tolist() == b.table.order_ids.tolist()
    for name in ("offsets", "day", "code", "line"):
        np.testing.assert_array_equal(getattr(a.table, name), getattr(b.table, name))
    pd.testing.assert_frame_equal(a.rejects, b.rejects)
    assert (a.rows, a.duplicates) == (b.rows, b.duplicates)


@pytest.mark.parametrize("suffix", ["csv", "csv.gz"])
def test_the_fast_csv_path_reads_what_the_exact_reader_reads(
    tmp_path: Path, open_with_scans: tuple[pd.DataFrame, pd.DataFrame], suffix: str
) -> None:
    """One record per line: Arrow's streaming reader, lines = row + 1; the exact reader
    (small chunks, so duplicates straddle chunks) gives the same scans, lines and rejects."""
    events = open_with_scans[1].copy()
    events = pd.concat([events, events.iloc[[3, 500, 900]]], ignore_index=True)  # duplicates
    events.loc[10, "milestone"] = "teleported"
    events.loc[20, "event_at"] = pd.NaT
    path = tmp_path / f"events.{suffix}"
    events.to_csv(path, index=False)
    fast = read_batch_scans(path)
    exact = _read(path, _raw_chunks(path, 37))
    _same_scans(fast, exact)
    assert fast.duplicates == int(events.drop(index=[10, 20]).duplicated().sum()) >= 3
    assert len(fast.rejects) == 2
    assert fast.rejects["line"].tolist() == [12, 22]


def test_a_file_the_fast_path_cannot_vouch_for_is_read_exactly(tmp_path: Path) -> None:
    """A blank line and a description over two lines: the lines still are the file's."""
    text = (
        f"{EVENTS_HEADER}\n"
        "A,2026-10-01T08:00:00,picked_up,,,\n"
        "\n"
        'A,2026-10-02T08:00:00,departed_origin,,,"two\nlines"\n'
        "A,2026-10-03,nowhere,,,\n"
    )
    path = tmp_path / "events.csv"
    path.write_text(text)
    scans = read_batch_scans(path)
    assert scans.table.line.tolist() == [2, 4]
    assert scans.rejects[["line", "column"]].values.tolist() == [[6, "milestone"]]
    assert scans.rows == 3


@pytest.mark.parametrize("order_id_as", ["arrow", "numpy"])
def test_the_output_table_holds_what_the_scoring_arrays_hold(
    scan_model: AdvisorModel,
    open_with_scans: tuple[pd.DataFrame, pd.DataFrame],
    order_id_as: str,
) -> None:
    """The batch output's text columns are built by Arrow from the decisions' codes; the
    table equals the one built from :func:`score_columns`' string arrays, for every action,
    reason and milestone (and no milestone), whatever form the order_ids come in."""
    orders, events = open_with_scans
    orders = orders.copy()
    orders.loc[:9, "dispute_opened_at"] = pd.Timestamp(AS_OF) - pd.Timedelta(days=1)
    valid = validate_open_orders(orders, as_of=AS_OF).valid
    scans = scans_for(events, valid)
    columns = {name: valid[name].to_numpy() for name in valid.columns}
    if order_id_as == "arrow":
        columns["order_id"] = pa.array(valid["order_id"].tolist(), type=pa.string())
    scores: Scores = scoring.score(columns, scan_model, PolicyConfig(), AS_OF, scans)
    arrays = score_columns(columns, scan_model, PolicyConfig(), AS_OF, scans)
    expected = pa.table(
        [pa.array(arrays[f.name], type=f.type, from_pandas=True) for f in SCORED_SCHEMA],
        schema=SCORED_SCHEMA,
    )
    table = scored_table(scores)
    assert table.equals(expected)
    assert set(table["action"].to_pylist()) == set(ACTIONS)
    assert len(set(table["reasons"].to_pylist())) > 5
    milestones = table["last_milestone"]
    assert 0 < milestones.null_count < len(milestones)
    assert table["order_id"].to_pylist() == valid["order_id"].tolist()


def test_typed_parquet_scans_score_as_their_csv_does(
    tmp_path: Path, scan_model_dir: Path, open_with_scans: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Scan times stored as Parquet timestamps (naive, or zoned: the same instants) are
    read from their values and give the output their CSV text gives."""
    orders, events = open_with_scans
    orders.to_csv(tmp_path / "orders.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    events.to_parquet(tmp_path / "naive.parquet", index=False)
    zoned = events.assign(
        event_at=events["event_at"].dt.tz_localize("UTC").dt.tz_convert("America/Sao_Paulo")
    )
    zoned.to_parquet(tmp_path / "zoned.parquet", index=False)
    outputs = {}
    for name in ("events.csv", "naive.parquet", "zoned.parquet"):
        code, output = score(
            tmp_path / "orders.csv",
            "--out",
            tmp_path / f"{name}.out.csv",
            "--events",
            tmp_path / name,
            model_dir=scan_model_dir,
        )
        assert code == 0, output
        outputs[name] = (tmp_path / f"{name}.out.csv").read_bytes()
    assert outputs["naive.parquet"] == outputs["events.csv"]
    assert outputs["zoned.parquet"] == outputs["events.csv"]
