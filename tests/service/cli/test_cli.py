"""The ``window-advisor`` CLI end to end: generate -> train -> score -> evaluate, and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from data.generate import DEFAULT_AS_OF as AS_OF
from data.generate import generate_open_orders, generate_shipments, write_generated
from model.artifact import MODEL_FILE, read_manifest
from model.signing import SigningKeys, key_id
from service.cli import app
from service.evaluation.backtest import STRATEGIES
from service.settings import get_settings

SIGNING_KEY = "round-trip-signing-key-0123456789abcdef"
HISTORY_ROWS = 8000
OPEN_ROWS = 300
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    get_settings.cache_clear()  # settings come from the environment of each invocation
    try:
        return runner.invoke(app, list(args), env=env, catch_exceptions=True)
    finally:
        get_settings.cache_clear()


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


def assert_one_line_error(result: Result, expected_start: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected_start), lines[0]


def test_round_trip_generate_train_score_evaluate(tmp_path: Path) -> None:
    """The whole path through the CLI (one test: parallel workers must not repeat it)."""
    history = tmp_path / "history.csv"
    result = invoke(
        "generate", "--rows", str(HISTORY_ROWS), "--out", str(history),
        "--seed", "3", "--as-of", AS_OF.isoformat(),
    )  # fmt: skip
    assert_ok(result)
    assert f"wrote {HISTORY_ROWS:,} shipments to {history}" in result.stdout
    check_generated(history)

    model_dir = tmp_path / "model"
    signing = {"ADVISOR_SIGNING_KEY": SIGNING_KEY}  # train signs, score and evaluate verify
    result = invoke(
        "train", "--history", str(history), "--as-of", AS_OF.isoformat(),
        env={"ADVISOR_MODEL_DIR": str(model_dir), **signing},
    )  # fmt: skip
    assert_ok(result)
    assert f"HMAC-SHA256, key id {key_id(SIGNING_KEY.encode())}" in result.stdout
    keys = SigningKeys(SIGNING_KEY.encode())
    manifest = read_manifest(model_dir, keys=keys)  # the model went where the environment said
    assert manifest["as_of"] == AS_OF.isoformat()
    assert manifest["data"]["rows"] == HISTORY_ROWS
    assert manifest["data"]["source"] == str(history)

    orders = tmp_path / "orders.csv"
    write_generated(
        generate_open_orders(OPEN_ROWS, seed=9, as_of=AS_OF), orders, seed=9, as_of=AS_OF,
        kind="open",
    )  # fmt: skip
    scored_path = tmp_path / "scored.csv"
    result = invoke(
        "score", str(orders), "--out", str(scored_path),
        "--model", str(model_dir), "--as-of", AS_OF.isoformat(), env=signing,
    )  # fmt: skip
    assert_ok(result)
    check_scored(scored_path, orders, manifest["model_version"])

    out_dir = tmp_path / "evaluation"
    result = invoke(
        "evaluate", "--history", str(history), "--model", str(model_dir), "--out", str(out_dir),
        env=signing,
    )  # fmt: skip
    assert_ok(result)
    check_evaluation(out_dir)


def check_generated(history: Path) -> None:
    frame = pd.read_csv(history, dtype=str)
    assert len(frame) == HISTORY_ROWS
    assert frame["order_id"].is_unique
    meta = json.loads(history.with_name(history.name + ".generator.json").read_text())
    assert (meta["seed"], meta["as_of"], meta["rows"]) == (3, AS_OF.isoformat(), HISTORY_ROWS)


def check_scored(scored_path: Path, orders_path: Path, version: str) -> None:
    scored = pd.read_csv(scored_path, dtype=str, keep_default_na=False)
    orders = pd.read_csv(orders_path, dtype=str)
    assert scored["order_id"].tolist() == orders["order_id"].tolist()
    assert list(scored.columns) == [
        "order_id", "action", "extend_by_days", "new_deadline", "days_remaining",
        "p_late", "p_late_after_extension", "respond_by", "reasons", "model_version",
        "last_milestone", "days_since_last_scan",
    ]  # fmt: skip
    assert set(scored["action"]) <= {"extend", "escalate", "respond_to_dispute", "none"}
    assert set(scored["model_version"]) == {version}
    p_late = scored["p_late"].astype(float)
    p_after = scored["p_late_after_extension"].astype(float)
    assert ((p_after >= 0) & (p_after <= p_late) & (p_late <= 1)).all()


def check_evaluation(out_dir: Path) -> None:
    """An evaluation without scans: the strategies that need none."""
    summary = json.loads((out_dir / "evaluation.json").read_text())
    names = [row["strategy"] for row in summary["strategies"]]
    assert names == [s for s in STRATEGIES if "scans" not in s] == [
        "policy", "never_act", "extend_all_in_window", "extend_brazil_only",
        "policy_kaplan_meier", "bayes_limit",
    ]  # fmt: skip
    assert "scans" not in summary
    assert summary["decisions"] > 0
    for key in ("p_late", "p_late_kaplan_meier", "calibration_table", "lanes"):
        assert summary[key]
    for png in ("lag_by_destination.png", "calibration.png"):
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def orders_csv(open_orders: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    write_generated(open_orders.head(20), path, seed=5, as_of=AS_OF, kind="open")
    return path


@pytest.mark.parametrize("events_name", ["events.csv", "events.parquet"])
def test_generate_writes_the_scans(tmp_path: Path, events_name: str) -> None:
    history, events = tmp_path / "history.csv", tmp_path / events_name
    result = invoke(
        "generate", "--rows", "400", "--out", str(history), "--events", str(events),
        "--seed", "4",
    )  # fmt: skip
    assert_ok(result)
    expected = generate_shipments(400, seed=4, as_of=AS_OF)
    untracked = 400 - expected.events["order_id"].nunique()
    assert (
        f"wrote {len(expected.events):,} scans of {400 - untracked:,} orders to {events}"
        f" ({untracked:,} orders without any scan)"
    ) in " ".join(result.stdout.split())
    if events_name.endswith(".csv"):
        raw = pd.read_csv(events, dtype=str, keep_default_na=False)
        assert raw["event_at"].str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}").all()
        back = raw.assign(event_at=pd.to_datetime(raw["event_at"]).astype("datetime64[ns]"))
    else:
        back = pd.read_parquet(events)
    assert list(back.columns) == list(expected.events.columns)
    assert (back["event_at"].to_numpy() == expected.events["event_at"].to_numpy()).all()
    assert back["milestone"].tolist() == expected.events["milestone"].tolist()
    meta = json.loads(events.with_name(events.name + ".generator.json").read_text())
    assert (meta["kind"], meta["rows"], meta["seed"]) == ("events", len(expected.events), 4)
    frame = pd.read_csv(history, dtype=str)
    assert frame["order_id"].tolist() == expected.frame["order_id"].tolist()


def test_generate_refuses_an_unknown_events_suffix(tmp_path: Path) -> None:
    result = invoke(
        "generate", "--rows", "10", "--out", str(tmp_path / "h.csv"),
        "--events", str(tmp_path / "e.xlsx"),
    )  # fmt: skip
    assert_one_line_error(result, f"error: {tmp_path / 'e.xlsx'}: unsupported file type")
    assert not (tmp_path / "h.csv").exists()


def test_missing_history_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = invoke("train", "--history", str(missing), "--model", str(tmp_path / "m"))
    assert_one_line_error(result, f"error: {missing}: no such file")
    assert not (tmp_path / "m").exists()


def test_tampered_model_is_refused_with_one_line(
    trained_model_dir: Path, orders_csv: Path, tmp_path: Path
) -> None:
    model_dir = Path(shutil.copytree(trained_model_dir, tmp_path / "model"))
    path = model_dir / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    out = tmp_path / "scored.csv"
    result = invoke(
        "score", str(orders_csv), "--out", str(out),
        "--model", str(model_dir), "--as-of", AS_OF.isoformat(),
    )  # fmt: skip
    assert_one_line_error(result, f"error: model artifact {path} failed verification")
    assert not out.exists()


def test_missing_model_is_one_line_and_exit_1(orders_csv: Path, tmp_path: Path) -> None:
    result = invoke(
        "score", str(orders_csv), "--out", str(tmp_path / "scored.csv"),
        env={"ADVISOR_MODEL_DIR": str(tmp_path / "absent")},
    )  # fmt: skip
    assert_one_line_error(result, f"error: no model in {tmp_path / 'absent'}")


def test_as_of_out_of_range_is_one_line_and_exit_1(orders_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "scored.csv"
    result = invoke("score", str(orders_csv), "--out", str(out), "--as-of", "2300-01-01")
    assert_one_line_error(
        result, "error: --as-of 2300-01-01 is out of the supported range 1900-01-01 to 2199-12-31"
    )
    assert not out.exists()


def test_round_trip_with_scans(tmp_path: Path) -> None:
    """generate --events -> train --events -> score --events -> evaluate --events."""
    from data.generate import generate_open

    history, events = tmp_path / "history.csv", tmp_path / "events.csv.gz"
    result = invoke(
        "generate", "--rows", "6000", "--out", str(history), "--events", str(events),
        "--seed", "8", "--as-of", AS_OF.isoformat(),
    )  # fmt: skip
    assert_ok(result)
    model_dir = tmp_path / "model"
    result = invoke(
        "train", "--history", str(history), "--events", str(events), "--as-of",
        AS_OF.isoformat(), "--model", str(model_dir),
    )  # fmt: skip
    assert_ok(result)
    manifest = read_manifest(model_dir)
    assert manifest["data"]["events"]["rows"] == len(pd.read_csv(events))
    assert manifest["data"]["events"]["rows_rejected"] == 0

    made = generate_open(OPEN_ROWS, seed=9, as_of=AS_OF)
    orders, open_events = tmp_path / "orders.csv", tmp_path / "open_events.parquet"
    write_generated(made.frame, orders, seed=9, as_of=AS_OF, kind="open")
    write_generated(made.events, open_events, seed=9, as_of=AS_OF, kind="events")
    scored_path = tmp_path / "scored.csv"
    result = invoke(
        "score", str(orders), "--out", str(scored_path), "--events", str(open_events),
        "--model", str(model_dir), "--as-of", AS_OF.isoformat(),
    )  # fmt: skip
    assert_ok(result)
    check_scored(scored_path, orders, manifest["model_version"])
    scored = pd.read_csv(scored_path, dtype=str, keep_default_na=False)
    tracked = set(made.events["order_id"])
    has_milestone = scored["last_milestone"] != ""
    assert has_milestone.tolist() == scored["order_id"].isin(tracked).tolist()
    assert "0 rejected" in " ".join(result.stdout.split())

    out_dir = tmp_path / "evaluation"
    result = invoke(
        "evaluate", "--history", str(history), "--events", str(events),
        "--model", str(model_dir), "--out", str(out_dir),
    )  # fmt: skip
    assert_ok(result)
    summary = json.loads((out_dir / "evaluation.json").read_text())
    names = [row["strategy"] for row in summary["strategies"]]
    assert names == list(STRATEGIES)
    assert summary["scans"]["decisions_with_scans"] > 0
    assert summary["scans"]["by_last_milestone"]


def test_console_entry_runs_the_command_and_leaves_garbage_collection_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` (the ``window-advisor`` script) pauses the collector only while the commands
    import: a command's own garbage must still be collected (a batch run is long), and the
    exit code is the command's."""
    import gc

    from service.cli import main

    out = tmp_path / "history.csv"
    argv = ["window-advisor", "generate", "--rows", "50", "--out", str(out), "--seed", "1"]
    monkeypatch.setattr("sys.argv", argv)
    frozen_before = gc.get_freeze_count()
    try:
        with pytest.raises(SystemExit) as stopped:
            main()
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()  # this test process goes on; its objects are collected as before
    assert stopped.value.code == 0
    assert len(pd.read_csv(out)) == 50

    monkeypatch.setattr("sys.argv", ["window-advisor", "generate", "--rows", "-1"])
    try:
        with pytest.raises(SystemExit) as refused:
            main()
        assert gc.isenabled()
    finally:
        gc.unfreeze()
    assert refused.value.code == 2  # a usage error, as Click reports it
