"""``score --engine dask`` on a local cluster of 2 worker processes gives exactly the local
engine's results: same rows, same values, same order, same rejects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from typer.testing import CliRunner

from model.artifact import load_model
from model.predictor import AdvisorModel
from service.batch.dask_engine import run_dask
from service.batch.engine import BatchJob, run_local
from service.cli import app
from service.policy import PolicyConfig
from tests.service.batch.test_batch import EXPECTED_REJECTS, MIXED, read_rejects, write_csv

AS_OF = date(2026, 11, 1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield local


def job(source: Path, output: Path, model: AdvisorModel, chunk_rows: int) -> BatchJob:
    return BatchJob.create(
        source, output, model=model, policy=PolicyConfig(), as_of=AS_OF, chunk_rows=chunk_rows
    )


def orders_with_duplicates(open_orders: pd.DataFrame) -> pd.DataFrame:
    """Generated orders, with a few ids repeated far apart (other partitions) and bad cells."""
    frame = open_orders.copy()
    frame.loc[350, "order_id"] = frame.loc[3, "order_id"]
    frame.loc[390, "order_id"] = frame.loc[3, "order_id"]
    frame.loc[200, "order_id"] = frame.loc[150, "order_id"]
    frame["destination_country"] = frame["destination_country"].astype(object)
    frame.loc[77, "destination_country"] = "QQ"
    return frame


def assert_same_files_as_local(directory: Path) -> None:
    """The Dask run's output and rejects files are the local run's, byte for byte."""
    assert (directory / "dask.csv").read_bytes() == (directory / "local.csv").read_bytes()
    assert (directory / "dask.rejects.csv").read_bytes() == (
        directory / "local.rejects.csv"
    ).read_bytes()


def assert_nothing_else_written(directory: Path) -> None:
    """No temporary parts or other files are left beside the outputs."""
    assert sorted(p.name for p in directory.iterdir()) == [
        "dask.csv",
        "dask.rejects.csv",
        "local.csv",
        "local.rejects.csv",
        "orders.csv",
    ]


def test_dask_matches_local_on_csv(
    tmp_path: Path,
    cluster: LocalCluster,
    small_model: AdvisorModel,
    open_orders: pd.DataFrame,
) -> None:
    source = tmp_path / "orders.csv"
    orders_with_duplicates(open_orders).to_csv(source, index=False)
    local = run_local(job(source, tmp_path / "local.csv", small_model, 1000))
    remote = run_dask(
        job(source, tmp_path / "dask.csv", small_model, 60), scheduler=cluster.scheduler_address
    )
    assert remote.chunks == 7 and remote.workers == 2
    assert_same_files_as_local(tmp_path)
    assert read_rejects(tmp_path / "dask.rejects.csv") == [
        (
            79,
            open_orders.loc[77, "order_id"],
            "destination_country",
            "'QQ' is not an ISO 3166-1 alpha-2 country code",
        ),
        (
            202,
            open_orders.loc[150, "order_id"],
            "order_id",
            "duplicate order_id (first seen on line 152)",
        ),
        (
            352,
            open_orders.loc[3, "order_id"],
            "order_id",
            "duplicate order_id (first seen on line 5)",
        ),
        (
            392,
            open_orders.loc[3, "order_id"],
            "order_id",
            "duplicate order_id (first seen on line 5)",
        ),
    ]
    assert (remote.scored, remote.rejected) == (local.scored, local.rejected) == (396, 4)
    assert remote.by_action == local.by_action
    assert remote.by_destination == local.by_destination
    assert_nothing_else_written(tmp_path)


def test_dask_matches_local_on_messy_csv(
    tmp_path: Path, cluster: LocalCluster, small_model: AdvisorModel
) -> None:
    source = write_csv(tmp_path / "orders.csv", MIXED, newline="\r\n", bom=True)
    run_local(job(source, tmp_path / "local.csv", small_model, 1000))
    run_dask(
        job(source, tmp_path / "dask.csv", small_model, 2), scheduler=cluster.scheduler_address
    )
    assert read_rejects(tmp_path / "dask.rejects.csv") == EXPECTED_REJECTS
    assert_same_files_as_local(tmp_path)


def test_dask_parquet_directory_in_and_out_and_into_one_file(
    tmp_path: Path,
    cluster: LocalCluster,
    small_model: AdvisorModel,
    open_orders: pd.DataFrame,
) -> None:
    frame = orders_with_duplicates(open_orders)
    folder = tmp_path / "in"
    folder.mkdir()
    for number, start in enumerate(range(0, len(frame), 150)):
        frame.iloc[start : start + 150].to_parquet(folder / f"{number:02d}.parquet", index=False)
    single = tmp_path / "all.parquet"
    frame.to_parquet(single, index=False)
    run_local(job(single, tmp_path / "local.parquet", small_model, 1000))
    summary = run_dask(
        job(folder, tmp_path / "scores", small_model, 100), scheduler=cluster.scheduler_address
    )
    assert summary.input_rows == len(frame)
    parts = sorted(p.name for p in (tmp_path / "scores").iterdir())
    assert parts == [f"part.{n:05d}.parquet" for n in range(len(parts))]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "scores"), pd.read_parquet(tmp_path / "local.parquet")
    )
    assert read_rejects(tmp_path / "scores.rejects.csv") == read_rejects(
        tmp_path / "local.rejects.csv"
    )
    # Into one Parquet file, partitions of 100 rows give the local run's bytes (1000-row chunks)
    run_dask(
        job(folder, tmp_path / "dask.parquet", small_model, 100),
        scheduler=cluster.scheduler_address,
    )
    assert (tmp_path / "dask.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()


def test_cli_dask_engine_with_scheduler(
    tmp_path: Path,
    cluster: LocalCluster,
    trained_model_dir: Path,
    open_orders: pd.DataFrame,
) -> None:
    source = tmp_path / "orders.parquet"
    open_orders.to_parquet(source, index=False)
    result = CliRunner().invoke(
        app,
        [
            "score",
            str(source),
            "--out",
            str(tmp_path / "o.csv"),
            "--engine",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
            "--chunk-rows",
            "100",
            "--model",
            str(trained_model_dir),
            "--as-of",
            AS_OF.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "scored 400 + rejected 0 = 400 input rows" in result.output
    assert len(pd.read_csv(tmp_path / "o.csv")) == 400


def test_unreachable_scheduler_is_a_one_line_error(
    tmp_path: Path, trained_model_dir: Path, open_orders: pd.DataFrame
) -> None:
    source = tmp_path / "orders.parquet"
    open_orders.to_parquet(source, index=False)
    result = CliRunner().invoke(
        app,
        [
            "score",
            str(source),
            "--out",
            str(tmp_path / "o.csv"),
            "--engine",
            "dask",
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--model",
            str(trained_model_dir),
            "--as-of",
            AS_OF.isoformat(),
        ],
    )
    assert result.exit_code == 1
    assert "cannot reach Dask scheduler tcp://127.0.0.1:9" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.parquet"]


def test_duplicates_across_partitions_are_scored_again_and_match_local(
    tmp_path: Path,
    cluster: LocalCluster,
    small_model: AdvisorModel,
    open_orders: pd.DataFrame,
) -> None:
    """Partitions of 50 rows: ids repeated in later partitions, of a rejected row, twice in one
    later partition, of an unparsable line; only partitions holding such an id are scored
    again, and the files are the local engine's byte for byte."""
    frame = open_orders.copy()
    frame["destination_country"] = frame["destination_country"].astype(object)
    frame.loc[77, "destination_country"] = "QQ"  # rejected (line 79) ...
    frame.loc[260, "order_id"] = frame.loc[77, "order_id"]  # ... and its id again in 250-299
    frame.loc[120, "order_id"] = frame.loc[10, "order_id"]  # twice in partition 100-149:
    frame.loc[130, "order_id"] = frame.loc[10, "order_id"]  # both cite line 12
    frame.loc[310, "order_id"] = "BROKEN-1"  # the id of an unparsable line (line 42) ...
    lines = frame.to_csv(index=False).splitlines()
    lines[41] = "BROKEN-1,DE,aliexpress_standard"  # ... wrong field count: not a first sighting
    source = tmp_path / "orders.csv"
    source.write_text("\n".join(lines) + "\n")

    # Same partitions as the local engine's chunks: CSV quoting is chosen per written chunk.
    local = run_local(job(source, tmp_path / "local.csv", small_model, 50))
    with Client(cluster) as client, get_task_stream(client) as stream:
        remote = run_dask(
            job(source, tmp_path / "dask.csv", small_model, 50),
            scheduler=cluster.scheduler_address,
        )
    assert remote.chunks == 8
    rescored = [t for t in stream.data if str(t["key"]).startswith("rescore_piece")]
    assert len(rescored) == 2  # partitions 100-149 and 250-299 only
    assert_same_files_as_local(tmp_path)
    rejects = read_rejects(tmp_path / "dask.rejects.csv")
    duplicate_of = open_orders.loc[10, "order_id"]
    assert rejects == [
        (42, "BROKEN-1", "(unparsable)", "expected 11 fields, found 3"),
        (
            79,
            open_orders.loc[77, "order_id"],
            "destination_country",
            "'QQ' is not an ISO 3166-1 alpha-2 country code",
        ),
        (122, duplicate_of, "order_id", "duplicate order_id (first seen on line 12)"),
        (132, duplicate_of, "order_id", "duplicate order_id (first seen on line 12)"),
        (
            262,
            open_orders.loc[77, "order_id"],
            "order_id",
            "duplicate order_id (first seen on line 79)",
        ),
    ]
    scored_ids = set(pd.read_csv(tmp_path / "dask.csv", dtype=str)["order_id"])
    assert "BROKEN-1" in scored_ids  # line 312: the unparsable line 42 did not count
    assert (remote.scored, remote.rejected) == (local.scored, local.rejected) == (395, 5)
    assert remote.by_destination == local.by_destination


def test_own_local_cluster_matches_local(
    tmp_path: Path,
    trained_model_dir: Path,
    small_model: AdvisorModel,
    open_orders: pd.DataFrame,
) -> None:
    """Without --scheduler: a local cluster of 2 processes started for the run, the model's
    tables filled by the client while it starts and sent with the model."""
    model, _ = load_model(trained_model_dir)  # a copy of its own, with the training tables
    shipped = model.hazard.n_tables
    assert shipped == model.hazard.n_shipped_tables
    source = tmp_path / "orders.csv"
    orders_with_duplicates(open_orders).to_csv(source, index=False)
    run_local(job(source, tmp_path / "local.csv", small_model, 1000))
    summary = run_dask(job(source, tmp_path / "dask.csv", model, 60), n_workers=2)
    assert summary.workers == 2 and summary.chunks == 7
    assert model.hazard.n_tables >= shipped
    assert_same_files_as_local(tmp_path)
    assert_nothing_else_written(tmp_path)


def test_dask_matches_local_with_events(
    tmp_path: Path, cluster: LocalCluster, scan_model: AdvisorModel
) -> None:
    """Same scored rows and the same scan rejects, whatever the engine and partitions: scans
    dated before shipment (rejected when their order is scored), scans of a duplicate row's
    order (taken once), scans of no order (counted)."""
    from data.generate import generate_open

    made = generate_open(400, seed=23, as_of=AS_OF)
    orders = orders_with_duplicates(made.frame)
    orders.to_csv(tmp_path / "orders.csv", index=False)
    events = made.events.copy()
    early = events.groupby("order_id").head(1).head(5).copy()
    early["event_at"] = early["event_at"] - pd.Timedelta(days=400)
    stray = early.assign(order_id="NOBODY")
    pd.concat([events, early, stray], ignore_index=True).to_csv(
        tmp_path / "events.csv", index=False
    )

    def make(output: str, chunk_rows: int) -> BatchJob:
        return BatchJob.create(
            tmp_path / "orders.csv",
            tmp_path / output,
            model=scan_model,
            policy=PolicyConfig(),
            as_of=AS_OF,
            chunk_rows=chunk_rows,
            events=tmp_path / "events.csv",
        )

    local = run_local(make("local.csv", 1000))
    remote = run_dask(make("dask.csv", 60), scheduler=cluster.scheduler_address)
    assert_same_files_as_local(tmp_path)
    assert (tmp_path / "dask.events-rejects.csv").read_bytes() == (
        tmp_path / "local.events-rejects.csv"
    ).read_bytes()
    rejected = read_rejects(tmp_path / "local.events-rejects.csv")
    assert [r[2] for r in rejected] == ["event_at"] * 5
    assert all("before the order's shipped_at" in r[3] for r in rejected)
    assert local.scans is not None and remote.scans is not None
    # Unknown: the stray scans, and those of the two orders whose rows became a duplicate
    # (rows 200 and 350/390 now repeat other ids) or were rejected (row 77).
    lost_ids = made.frame.loc[[77, 200, 350, 390], "order_id"]
    unknown = 5 + int(made.events["order_id"].isin(lost_ids).sum())
    for summary in (local, remote):
        assert summary.scans is not None
        assert (summary.scans.used, summary.scans.rejected, summary.scans.unknown_scans) == (
            local.scans.used,
            5,
            unknown,
        )
    source = local.scans.source
    assert local.scans.used + 5 + unknown + source.duplicates == source.rows
    scored = pd.read_csv(tmp_path / "local.csv")
    assert scored["last_milestone"].notna().sum() > 250
