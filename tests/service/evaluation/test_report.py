"""The HTML report: self-contained (no ``http``, every image inline) with every section."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from data.generate import generate_history, write_generated
from model.artifact import read_manifest
from model.schema import validate_history
from model.train import lane_table
from service.cli import app
from service.evaluation.report import (
    SECTION_IDS,
    ReportContext,
    late_share_by_month,
    png_data_uri,
    region_table,
    render_report,
)
from service.policy import PolicyConfig

runner = CliRunner()
AS_OF = date(2026, 11, 1)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG_SRC = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"")


def assert_self_contained(page: str) -> list[str]:
    """No reference leaves the file; returns the image sources (all inline PNGs)."""
    assert "http" not in page.lower()
    for external in ("<link", "<script", "<iframe", "url(", "@import", "srcset"):
        assert external not in page.lower(), external
    sources = IMG_SRC.findall(page)
    assert len(sources) == page.count("<img")
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    # Nothing else is loaded from anywhere: every src= is an inline image.
    assert page.count("src=") == len(sources)
    return sources


def assert_sections(page: str) -> None:
    titles = {
        "transit": "Transit-time distributions",
        "late-by-month": "Late share by month",
        "calibration": "Calibration of p_late",
        "decision-cost": "Decision cost: policy beside the rules",
        "scans": "What the scans change",
        "lanes": "Per-lane table",
    }
    assert tuple(titles) == SECTION_IDS
    for section, title in titles.items():
        assert f'<section id="{section}"><h2>{title}</h2>' in page


def test_png_data_uri_is_inline_and_names_no_web_site() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    uri = png_data_uri(fig)
    assert uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png.startswith(PNG_SIGNATURE)
    assert b"matplotlib" not in png.lower() and b"http" not in png.lower()
    assert not plt.get_fignums()  # the figure was closed


def _history(rows: Sequence[tuple[str, str, str, str | None, str | None]]) -> pd.DataFrame:
    raw = pd.DataFrame(
        rows,
        columns=["order_id", "shipped_at", "deadline", "delivered_at", "destination_region"],
    )
    raw["destination_country"] = "BR"
    return validate_history(raw).valid


def test_late_share_by_month_counts_whole_months_only() -> None:
    history = _history(
        [
            ("a", "2025-01-01", "2025-01-11", "2025-01-05", None),  # Jan: too early
            ("b", "2025-02-01", "2025-02-11", "2025-02-15", None),  # Feb: late
            ("c", "2025-02-05", "2025-02-15", "2025-02-15", None),  # Feb: on the day
            ("d", "2025-02-10", "2025-02-20", None, None),  # Feb: never
            ("e", "2025-02-25", "2025-03-07", "2025-03-01", None),  # Mar: on time
            ("f", "2025-04-01", "2025-04-11", "2025-04-03", None),  # Apr: month not over
        ]
    )
    table = late_share_by_month(history, date(2025, 4, 15))
    assert table.to_dict(orient="records") == [
        {"month": "2025-02", "orders": 3, "late": 2, "late_share": pytest.approx(2 / 3)},
        {"month": "2025-03", "orders": 1, "late": 0, "late_share": 0.0},
    ]


def test_region_table_flags_regions_the_model_pools() -> None:
    rows = [(f"s{i}", "2025-01-01", "2025-01-20", "2025-01-08", "SP") for i in range(4)]
    rows += [("r1", "2025-01-01", "2025-01-20", "2025-02-20", "RR")]
    table = region_table(_history(rows), date(2025, 3, 1), min_shipments=3)
    assert table.to_dict(orient="records") == [
        {
            "region": "BR/SP",
            "shipments": 4,
            "median_transit_days": 7.0,
            "late_share": 0.0,
            "pooled": False,
        },
        {
            "region": "BR/RR",
            "shipments": 1,
            "median_transit_days": 50.0,
            "late_share": 1.0,
            "pooled": True,
        },
    ]


def test_report_without_backtest_still_has_every_section() -> None:
    history = validate_history(generate_history(1500, seed=2, as_of=AS_OF)).valid
    page = render_report(
        ReportContext(
            history=history,
            as_of=AS_OF,
            source="tiny <history>.csv",
            policy=PolicyConfig(),
            lanes=lane_table(history, AS_OF),
            backtest_note="no decision points between 2026-06-04 and 2026-11-01",
        )
    )
    assert_sections(page)
    sources = assert_self_contained(page)
    assert len(sources) == 3  # transit by country and by region, late share by month
    assert "tiny &lt;history&gt;.csv" in page  # user text is escaped
    # Calibration, decision cost and scans each say so.
    assert page.count("No backtest: no decision points between 2026-06-04 and 2026-11-01.") == 3


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory, trained_model_dir: Path) -> str:
    """``window-advisor report`` end to end on a small generated history and the test model."""
    directory = tmp_path_factory.mktemp("report")
    history = directory / "history.parquet"
    write_generated(
        generate_history(8000, seed=3, as_of=AS_OF), history, seed=3, as_of=AS_OF, kind="history"
    )
    out = directory / "nested" / "report.html"
    result = runner.invoke(
        app,
        [
            "report",
            "--history",
            str(history),
            "--model",
            str(trained_model_dir),
            "--as-of",
            AS_OF.isoformat(),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in " ".join(result.output.split())
    return out.read_text(encoding="utf-8")


def test_report_is_self_contained(report_page: str) -> None:
    sources = assert_self_contained(report_page)
    # transit by country and by region, late share by month, calibration, decision cost
    assert len(sources) == 5
    assert report_page.startswith("<!DOCTYPE html>")
    assert report_page.rstrip().endswith("</html>")


def test_report_has_every_section(report_page: str, trained_model_dir: Path) -> None:
    assert_sections(report_page)
    assert read_manifest(trained_model_dir)["model_version"] in report_page
    # the backtest ran: metrics, the policy beside the rules, the Bayes limit (generated data)
    for text in (
        "advisor p_late",
        "per-lane Kaplan-Meier p_late",
        "extend every order in the window",
        "never act",
        "Bayes limit (true probabilities)",
        "savings captured",
    ):
        assert text in report_page, text


def test_report_lane_table_rows(report_page: str) -> None:
    lanes = report_page.split('<section id="lanes">', 1)[1]
    rows = re.findall(r"<tr( class=\"flag\")?><td class=\"text\">([A-Z]{2})</td>", lanes)
    countries = [country for _, country in rows]
    assert "BR" in countries and "US" in countries
    flagged = {country for flag, country in rows if flag}
    assert "BR" in flagged  # structural lag is highlighted
    assert "US" not in flagged


def test_report_without_a_model_uses_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVISOR_MODEL_DIR", str(tmp_path / "no-model"))
    history = tmp_path / "history.csv"
    # Two months of history: too short for the 150-day backtest.
    frame = generate_history(1500, seed=4, as_of=AS_OF)
    frame = frame.loc[pd.to_datetime(frame["shipped_at"]) >= pd.Timestamp("2026-09-01")]
    frame.to_csv(history, index=False)
    out = tmp_path / "report.html"
    result = runner.invoke(
        app, ["report", "--history", str(history), "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"no model in {tmp_path / 'no-model'}: lane table from the history" in text
    page = out.read_text(encoding="utf-8")
    assert_sections(page)
    assert_self_contained(page)
    assert "no backtest: the 150-day backtest could not run" in text
    assert page.count("No backtest: the 150-day backtest could not run: ") == 3


def test_report_with_a_missing_model_directory_is_an_error(tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    generate_history(300, seed=5, as_of=AS_OF).to_csv(history, index=False)
    missing = tmp_path / "missing"
    result = runner.invoke(
        app,
        ["report", "--history", str(history), "--model", str(missing), "--out", "r.html"],
    )
    assert result.exit_code == 1
    assert f"error: no model in {missing}" in result.output
    assert "Traceback" not in result.output


def test_images_never_spell_http_by_chance() -> None:
    """Base64 text can contain 'http' by accident; the encoder retries until it does not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    for _ in range(8):
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.imshow(rng.random((60, 60)))  # noisy pixels: long, varied base64
        assert "http" not in png_data_uri(fig).lower()
