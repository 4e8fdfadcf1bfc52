"""The CLI's load paths under a signing key (issue 10): score, evaluate, report and serve
refuse an unsigned or mis-signed artifact with one line and exit 1, before unpickling;
settings errors are one line and never echo a key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from data.generate import DEFAULT_AS_OF as AS_OF
from data.generate import write_generated
from model.artifact import sign_artifact
from model.signing import SigningKeys
from service.api.settings import ApiSettings
from service.cli import app
from service.cli.serve import exposure_warnings
from service.settings import get_settings

KEY = "signing-key-" + "k" * 32
PREVIOUS = "previous-key-" + "p" * 32
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    get_settings.cache_clear()
    try:
        return runner.invoke(app, list(args), env=env, catch_exceptions=True)
    finally:
        get_settings.cache_clear()


def assert_one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [expected], result.stderr


@pytest.fixture
def orders_csv(open_orders: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    write_generated(open_orders.head(20), path, seed=5, as_of=AS_OF, kind="open")
    return path


def score(orders: Path, model: Path, out: Path, env: dict[str, str]) -> Result:
    return invoke(
        "score", str(orders), "--out", str(out), "--model", str(model),
        "--as-of", AS_OF.isoformat(), env=env,
    )  # fmt: skip


def test_score_never_runs_the_crafted_pickle_with_a_signing_key(
    orders_csv: Path, tmp_path: Path, exploit: Callable[[Path, Path], Path]
) -> None:
    marker = tmp_path / "pwned"
    crafted = exploit(tmp_path / "crafted", marker)
    out = tmp_path / "scored.csv"
    result = score(orders_csv, crafted, out, {"ADVISOR_SIGNING_KEY": KEY})
    assert_one_line_error(
        result,
        f"error: model artifact in {crafted} is not signed (no signature.json) and a signing"
        " key is configured; train it with ADVISOR_SIGNING_KEY set",
    )
    assert not marker.exists()
    assert not out.exists()


def test_score_with_signed_models_current_and_previous_key(
    trained_model_dir: Path, orders_csv: Path, tmp_path: Path
) -> None:
    model = Path(shutil.copytree(trained_model_dir, tmp_path / "model"))
    sign_artifact(model, SigningKeys(PREVIOUS.encode()))
    out = tmp_path / "scored.csv"
    refused = score(orders_csv, model, out, {"ADVISOR_SIGNING_KEY": KEY})
    assert refused.exit_code == 1
    assert "failed signature verification: it was signed with another key" in refused.stderr
    rotated = {"ADVISOR_SIGNING_KEY": KEY, "ADVISOR_SIGNING_KEY_PREVIOUS": PREVIOUS}
    result = score(orders_csv, model, out, rotated)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 20


def test_evaluate_and_report_refuse_an_unsigned_model(
    trained_model_dir: Path, small_history: pd.DataFrame, tmp_path: Path
) -> None:
    env = {"ADVISOR_SIGNING_KEY": KEY}
    expected = (
        f"error: model artifact in {trained_model_dir} is not signed (no signature.json) and a"
        " signing key is configured; train it with ADVISOR_SIGNING_KEY set"
    )
    history = tmp_path / "history.csv"
    small_history.head(2000).to_csv(history, index=False)
    result = invoke(
        "evaluate", "--history", str(history), "--model", str(trained_model_dir),
        "--out", str(tmp_path / "evaluation"), env=env,
    )  # fmt: skip
    assert_one_line_error(result, expected)
    assert not (tmp_path / "evaluation").exists()
    result = invoke(
        "report", "--history", str(history), "--model", str(trained_model_dir),
        "--out", str(tmp_path / "report.html"), env=env,
    )  # fmt: skip
    assert_one_line_error(result, expected)
    assert not (tmp_path / "report.html").exists()


def test_serve_does_not_start_on_an_unsigned_model(trained_model_dir: Path) -> None:
    result = invoke(
        "serve", "--model", str(trained_model_dir), "--port", "1",
        env={"ADVISOR_SIGNING_KEY": KEY},
    )  # fmt: skip
    assert_one_line_error(
        result,
        f"error: model artifact in {trained_model_dir} is not signed (no signature.json) and a"
        " signing key is configured; train it with ADVISOR_SIGNING_KEY set",
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ADVISOR_SIGNING_KEY": "too-short-secret"},
            "error: invalid settings: ADVISOR_SIGNING_KEY: needs at least 32 characters"
            " (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')",
        ),
        (
            {"ADVISOR_SIGNING_KEY_PREVIOUS": PREVIOUS},
            "error: invalid settings: ADVISOR_SIGNING_KEY_PREVIOUS is set without"
            " ADVISOR_SIGNING_KEY: set the new key too (the previous one is only accepted"
            " beside it)",
        ),
        (
            {"ADVISOR_ADMIN_KEY": "same-key-for-both", "ADVISOR_API_KEY": "same-key-for-both"},
            "error: invalid settings: ADVISOR_ADMIN_KEY equals ADVISOR_API_KEY: the admin key"
            " must be a key of its own",
        ),
        (
            {"ADVISOR_ADMIN_KEY": "short-admin"},
            "error: invalid settings: ADVISOR_ADMIN_KEY: needs at least 16 characters",
        ),
    ],
)
def test_bad_key_settings_are_one_line_and_never_echoed(
    env: dict[str, str], expected: str, trained_model_dir: Path
) -> None:
    result = invoke("serve", "--model", str(trained_model_dir), "--port", "1", env=env)
    assert_one_line_error(result, expected)
    for value in env.values():
        if value != PREVIOUS:  # PREVIOUS is a valid key: only its name is in the message
            assert value not in result.output


def test_serve_warns_when_exposed_without_keys(tmp_path: Path) -> None:
    assert exposure_warnings(ApiSettings(host="127.0.0.1")) == []
    assert exposure_warnings(ApiSettings(host="::1")) == []
    assert exposure_warnings(ApiSettings(host="0.0.0.0")) == [
        "binding 0.0.0.0, reachable from other machines",
        "no ADVISOR_API_KEY: every /v1 route is open; set one to require a key",
        "no ADVISOR_SIGNING_KEY: model artifacts are loaded unsigned, so whoever can write a"
        " model directory can run code in this service; set one and retrain",
    ]
    keyed = ApiSettings(host="10.0.0.5", api_key="k" * 20, signing_key=KEY)
    assert exposure_warnings(keyed) == ["binding 10.0.0.5, reachable from other machines"]
