"""Key settings (service/settings.py, service/api/settings.py) and the rule that every
model load in service/ passes the signing keys."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from model.signing import SigningKeys
from service.api.settings import ApiSettings
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 40
PREVIOUS = "p" * 40


def test_signing_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().signing_keys() is None
    monkeypatch.setenv("ADVISOR_SIGNING_KEY", KEY)
    monkeypatch.setenv("ADVISOR_SIGNING_KEY_PREVIOUS", PREVIOUS)
    settings = Settings()
    assert settings.signing_keys() == SigningKeys(KEY.encode(), PREVIOUS.encode())
    # Neither the settings nor the keys show a key.
    for shown in (repr(settings), str(settings), repr(settings.signing_keys())):
        assert KEY not in shown and PREVIOUS not in shown


def test_a_bad_key_is_never_echoed_in_the_validation_error() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(signing_key="short-but-secret")
    assert "short-but-secret" not in str(raised.value)
    assert "needs at least 32 characters" in str(raised.value)
    with pytest.raises(ValidationError) as raised:
        ApiSettings(api_key="same-secret-value-1", admin_key="same-secret-value-1")
    assert "same-secret-value-1" not in str(raised.value)
    assert "ADVISOR_ADMIN_KEY equals ADVISOR_API_KEY" in str(raised.value)


def test_the_model_root_defaults_to_the_model_directorys_parent(tmp_path: Path) -> None:
    assert ApiSettings(model_dir=tmp_path / "m").resolved_model_root() == tmp_path.resolve()
    chosen = ApiSettings(model_dir=tmp_path / "m", model_root=tmp_path / "models")
    assert chosen.resolved_model_root() == (tmp_path / "models").resolve()


# Calls that load or read an artifact, and the one place allowed to read a manifest without
# the keys (serve's "is a model there yet?" check, followed by a verified load).
LOADERS = {"load_model", "load_snapshot", "read_manifest", "reload"}
UNVERIFIED_ALLOWED = {("service/cli/serve.py", "read_manifest")}


def loader_called(node: ast.Call) -> str | None:
    """The loader a call runs: ``load_model(...)``, ``holder.reload(...)``, or one handed
    to another function (``asyncio.to_thread(load_snapshot, ..., keys=...)``)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in LOADERS:
        return name
    if node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in LOADERS:
        return node.args[0].id
    return None


def test_every_model_load_in_service_passes_the_signing_keys() -> None:
    missing, seen = [], set()
    for path in sorted((ROOT / "service").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if not isinstance(node, ast.Call):
                continue
            name = loader_called(node)
            if name is None or (relative, name) in UNVERIFIED_ALLOWED:
                continue
            seen.add(name)
            if not any(keyword.arg == "keys" for keyword in node.keywords):
                missing.append(f"{relative}:{node.lineno} {name}")
    assert missing == []
    assert seen == LOADERS  # the check did find the loaders it is about
