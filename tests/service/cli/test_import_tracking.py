"""``window-advisor import aftership|17track``: files written, summary printed, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from data.tables import read_table
from model.events import EVENT_COLUMNS, MILESTONES
from service.cli import app

runner = CliRunner()


def checkpoint(when: str | None, subtag: str, message: str) -> dict[str, object]:
    found: dict[str, object] = {"tag": subtag.split("_")[0], "subtag": subtag, "message": message}
    if when is not None:
        found["checkpoint_time"] = when
    return found


def webhook(order_id: str, checkpoints: list[dict[str, object]]) -> str:
    tracking = {"order_id": order_id, "slug": "cainiao", "checkpoints": checkpoints}
    return json.dumps({"ts": 1790000000, "event": "tracking_update", "msg": tracking})


ACCEPTED = checkpoint("2026-08-01T08:00:00+08:00", "InTransit_002", "Accepted")
MOVING = checkpoint("2026-08-02T08:00:00+08:00", "InTransit_001", "In transit")
DEPARTED = checkpoint("2026-08-03T20:00:00+08:00", "InTransit_007", "Departed")
CUSTOMS = checkpoint("2026-08-15T10:00:00-03:00", "InTransit_006", "Customs")
NO_TIME = checkpoint(None, "InTransit_004", "Arrived")

WEBHOOKS = [
    webhook("A-1", [ACCEPTED, MOVING]),  # line 1
    webhook("A-1", [ACCEPTED, MOVING, DEPARTED]),  # line 2: A-1 again, one checkpoint more
    webhook("A-2", [NO_TIME, CUSTOMS]),  # line 3
    '{"msg": {"order_id": "A-3", "checkpoints": [}}',  # line 4: not JSON
]


@pytest.fixture
def webhooks(tmp_path: Path) -> Path:
    path = tmp_path / "webhooks.jsonl"
    path.write_text("\n".join(WEBHOOKS) + "\n", encoding="utf-8")
    return path


def flat(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize("name", ["events.csv", "events.parquet"])
def test_aftership_writes_events_and_rejects_and_accounts_for_everything(
    webhooks: Path, tmp_path: Path, name: str
) -> None:
    out = tmp_path / name
    result = runner.invoke(app, ["import", "aftership", str(webhooks), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rejects_path = tmp_path / "events.rejects.csv"
    text = flat(result.output)
    assert "AfterShip export: trackings 3, checkpoints 7" in text
    assert f"│ 3 │ written to {out}" in text
    assert "│ 2 │ duplicate: counted once" in text
    assert "│ 1 │ unmapped: InTransit_001" in text
    assert "│ 1 │ rejected: checkpoint_time: missing: the checkpoint has no checkpoint_time" in text
    assert "│ 1 │ rejected: (record): not valid JSON: Expecting value (column 45)" in text
    assert (
        f"wrote 3 events to {out}; unmapped 1; duplicates 2; rejected 2 (listed in {rejects_path})"
        in text
    )
    written = read_table(out)
    assert list(written.columns) == list(EVENT_COLUMNS)
    assert written["milestone"].isin(MILESTONES).all()
    assert written[["order_id", "event_at", "milestone", "carrier"]].values.tolist() == [
        ["A-1", "2026-08-01T08:00:00+08:00", "picked_up", "cainiao"],
        ["A-1", "2026-08-03T20:00:00+08:00", "departed_origin", "cainiao"],
        ["A-2", "2026-08-15T10:00:00-03:00", "customs_hold", "cainiao"],
    ]
    rejects = pd.read_csv(rejects_path, dtype={"order_id": str}, keep_default_na=False)
    assert rejects.values.tolist() == [
        [3, "A-2", "checkpoint_time", "missing: the checkpoint has no checkpoint_time"],
        [4, "", "(record)", "not valid JSON: Expecting value (column 45)"],
    ]


def test_17track_push_to_csv_gz(tmp_path: Path) -> None:
    events = [
        {"time_iso": "2026-08-02T10:00:00+08:00", "sub_status": "InTransit_PickedUp"},
        {"time_utc": "2026-08-20T13:00:00Z", "sub_status": "InTransit_CustomsReleased"},
        {"time_iso": "2026-08-21T09:00:00-03:00", "sub_status": "InTransit_Other"},
    ]
    push = {
        "event": "TRACKING_UPDATED",
        "data": {
            "number": "RR1",
            "tag": "B-1",
            "track_info": {
                "tracking": {"providers": [{"provider": {"name": "Correios"}, "events": events}]}
            },
        },
    }
    path = tmp_path / "push.json"
    path.write_text(json.dumps(push, indent=2), encoding="utf-8")
    out = tmp_path / "scans.csv.gz"
    result = runner.invoke(app, ["import", "17track", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "17TRACK export: trackings 1, checkpoints 3" in text
    assert "│ 1 │ unmapped: InTransit_Other" in text
    written = read_table(out)
    assert list(written.columns) == list(EVENT_COLUMNS)
    assert written[["order_id", "event_at", "milestone", "carrier"]].values.tolist() == [
        ["B-1", "2026-08-02T10:00:00+08:00", "picked_up", "Correios"],
        ["B-1", "2026-08-20T13:00:00Z", "customs_cleared", "Correios"],
    ]
    assert read_table(tmp_path / "scans.rejects.csv").empty


def test_malformed_document_exits_1_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text('{\n  "data": {"trackings": [\n    {"order_id": "A-1",}\n  ]}\n}\n')
    out = tmp_path / "events.csv"
    result = runner.invoke(app, ["import", "aftership", str(path), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {path}: not valid JSON: Expecting property name enclosed in double quotes"
        " (line 3, column 24)"
    )
    assert not out.exists() and not (tmp_path / "events.rejects.csv").exists()


def test_no_event_at_all_exits_1_and_writes_only_the_rejects(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.jsonl"
    path.write_text(webhook("A-1", [MOVING]) + "\n" + webhook("A-2", [NO_TIME]) + "\n")
    out = tmp_path / "events.parquet"
    result = runner.invoke(app, ["import", "aftership", str(path), "--out", str(out)])
    assert result.exit_code == 1
    assert (
        f"error: no event to write: {path} has 2 checkpoints (1 unmapped, 0 duplicates,"
        f" 1 rejected) and 0 rejected records; nothing written to {out};"
        f" rejects in {tmp_path / 'events.rejects.csv'}"
    ) in flat(result.output)
    assert not out.exists()
    assert read_table(tmp_path / "events.rejects.csv")["line"].tolist() == ["2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["17track", "{input}", "--out", "{tmp}/events.xlsx"], "unsupported file type"),
        (["aftership", "{tmp}/missing.json", "--out", "{tmp}/events.csv"], "no such file"),
        (["17track", "{input}", "--out", "{tmp}/events.csv"], "no event to write"),
    ],
)
def test_unusable_input_or_output_exits_1(
    webhooks: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    filled = [arg.format(input=webhooks, tmp=tmp_path) for arg in args]
    result = runner.invoke(app, ["import", *filled])
    assert result.exit_code == 1
    assert "error: " in result.output and message in result.output
