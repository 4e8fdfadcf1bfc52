"""``score --engine dask`` on a local cluster of 2 worker processes gives exactly the local
engine's results: same rows, same values, same order, same rejects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from distributed import LocalCluster
from test_batch import EXPECTED_REJECTS, MIXED, read_rejects, write_csv
from typer.testing import CliRunner

from model.predictor import AdvisorModel
from service.batch import BatchJob, run_local
from service.cli import app
from service.dask_engine import run_dask
from service.policy import PolicyConfig

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
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    rejects = (tmp_path / "dask.rejects.csv").read_bytes()
    assert rejects == (tmp_path / "local.rejects.csv").read_bytes()
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dask.csv",
        "dask.rejects.csv",
        "local.csv",
        "local.rejects.csv",
        "orders.csv",
    ]


def test_dask_matches_local_on_messy_csv(
    tmp_path: Path, cluster: LocalCluster, small_model: AdvisorModel
) -> None:
    source = write_csv(tmp_path / "orders.csv", MIXED, newline="\r\n", bom=True)
    run_local(job(source, tmp_path / "local.csv", small_model, 1000))
    run_dask(
        job(source, tmp_path / "dask.csv", small_model, 2), scheduler=cluster.scheduler_address
    )
    assert read_rejects(tmp_path / "dask.rejects.csv") == EXPECTED_REJECTS
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


def test_dask_parquet_directory_in_and_out(
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
