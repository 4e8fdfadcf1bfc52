"""Signed artifacts (model/signing.py, model/artifact.py): a signature over manifest and
model bytes, verified before anything is unpickled; the previous key still verifies."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from model.artifact import (
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    load_model,
    read_manifest,
    save_model,
    sign_artifact,
)
from model.errors import ArtifactError, SignatureError
from model.predictor import AdvisorModel
from model.signing import ALGORITHM, SigningKeys, artifact_mac, key_id

KEY = b"k" * 32
OTHER = b"o" * 32
NEW = b"n" * 32


@pytest.fixture
def signed(trained_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's artifact, signed with ``KEY``."""
    directory = Path(shutil.copytree(trained_model_dir, tmp_path / "model"))
    sign_artifact(directory, SigningKeys(KEY))
    return directory


def test_signature_record_covers_manifest_and_model_bytes(signed: Path) -> None:
    record = json.loads((signed / SIGNATURE_FILE).read_text())
    manifest, model = (signed / MANIFEST_FILE).read_bytes(), (signed / MODEL_FILE).read_bytes()
    assert record == {
        "algorithm": ALGORITHM,
        "key_id": key_id(KEY),
        "signed": [MANIFEST_FILE, MODEL_FILE],
        "signature": artifact_mac(KEY, manifest, model),
    }
    # The key id names the key without being it, and differs between keys.
    assert KEY.decode() not in (signed / SIGNATURE_FILE).read_text()
    assert key_id(KEY) != key_id(OTHER)


def test_valid_signature_loads(signed: Path) -> None:
    model, manifest = load_model(signed, keys=SigningKeys(KEY))
    assert isinstance(model, AdvisorModel)
    assert model.model_version == manifest["model_version"]
    assert read_manifest(signed, keys=SigningKeys(KEY)) == manifest


def test_previous_key_still_verifies_during_a_rotation(signed: Path) -> None:
    model, _ = load_model(signed, keys=SigningKeys(NEW, previous=KEY))
    assert isinstance(model, AdvisorModel)


def test_wrong_key_is_refused_as_another_key(signed: Path) -> None:
    with pytest.raises(SignatureError) as raised:
        load_model(signed, keys=SigningKeys(OTHER, previous=NEW))
    assert str(raised.value) == (
        f"model artifact in {signed} failed signature verification: it was signed with"
        f" another key (key id {key_id(KEY)}), neither ADVISOR_SIGNING_KEY nor"
        " ADVISOR_SIGNING_KEY_PREVIOUS"
    )


def test_tampered_manifest_is_refused(signed: Path) -> None:
    path = signed / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["metrics"]["p_late"]["auc"] = 0.99  # a flattering edit, checksum untouched
    path.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(SignatureError) as raised:
        read_manifest(signed, keys=SigningKeys(KEY))
    assert str(raised.value) == (
        f"model artifact in {signed} failed signature verification: its manifest or model"
        " file changed after it was signed (tampered)"
    )
    with pytest.raises(SignatureError, match=r"\(tampered\)$"):
        load_model(signed, keys=SigningKeys(KEY))


def test_tampered_model_is_refused_by_the_signature_before_the_checksum(signed: Path) -> None:
    path = signed / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"failed signature verification: .*\(tampered\)$"):
        load_model(signed, keys=SigningKeys(KEY))
    # Without a key, the checksum still catches it, as before.
    with pytest.raises(ArtifactError, match=r"failed verification: sha256"):
        load_model(signed)


def test_model_and_manifest_resigned_by_an_attacker_with_another_key(signed: Path) -> None:
    sign_artifact(signed, SigningKeys(OTHER))
    with pytest.raises(SignatureError, match=rf"another key \(key id {key_id(OTHER)}\)"):
        load_model(signed, keys=SigningKeys(KEY))


def test_unsigned_artifact_is_refused_with_a_key_and_loads_without(
    trained_model_dir: Path,
) -> None:
    with pytest.raises(SignatureError) as raised:
        load_model(trained_model_dir, keys=SigningKeys(KEY))
    assert str(raised.value) == (
        f"model artifact in {trained_model_dir} is not signed (no {SIGNATURE_FILE}) and a"
        " signing key is configured; train it with ADVISOR_SIGNING_KEY set"
    )
    model, _ = load_model(trained_model_dir)  # no key configured: as before
    assert isinstance(model, AdvisorModel)


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"algorithm": "HMAC-MD5", "signature": "00"}), json.dumps([1])],
)
def test_unreadable_signature_file_is_refused(signed: Path, content: str) -> None:
    (signed / SIGNATURE_FILE).write_text(content)
    with pytest.raises(SignatureError, match=rf"^unreadable signature file {signed}/"):
        load_model(signed, keys=SigningKeys(KEY))


def test_oversized_signature_file_is_refused_unread(signed: Path) -> None:
    (signed / SIGNATURE_FILE).write_text(" " * 10_000)
    with pytest.raises(SignatureError, match="is larger than 4,096 bytes"):
        load_model(signed, keys=SigningKeys(KEY))


def test_crafted_pickle_runs_without_a_key_and_never_with_one(
    exploit: Callable[[Path, Path], Path], tmp_path: Path
) -> None:
    """The attack itself: the control shows the file does run code when unpickled, so the
    signed case proves the signature check, not a broken exploit, keeps it from running."""
    marker = tmp_path / "pwned"
    crafted = exploit(tmp_path / "crafted", marker)
    with pytest.raises(SignatureError, match="is not signed"):
        load_model(crafted, keys=SigningKeys(KEY))
    with pytest.raises(SignatureError, match="is not signed"):
        read_manifest(crafted, keys=SigningKeys(KEY))
    assert not marker.exists()

    with pytest.raises(ArtifactError, match="does not hold an advisor model"):
        load_model(crafted)  # no signing key: the checksum matches, and the pickle runs
    assert marker.exists()


def test_save_signs_with_the_current_key_and_drops_a_stale_signature(
    small_model: AdvisorModel, tmp_path: Path
) -> None:
    directory = tmp_path / "model"
    save_model(
        small_model, directory, data_sha256="0" * 64, data_source="t", keys=SigningKeys(NEW, KEY)
    )
    assert json.loads((directory / SIGNATURE_FILE).read_text())["key_id"] == key_id(NEW)
    load_model(directory, keys=SigningKeys(NEW))
    save_model(small_model, directory, data_sha256="0" * 64, data_source="t")  # no key
    assert not (directory / SIGNATURE_FILE).exists()


def test_keys_never_show_and_short_keys_are_refused() -> None:
    keys = SigningKeys(KEY, previous=OTHER)
    assert "kkkk" not in repr(keys) and "oooo" not in repr(keys)
    with pytest.raises(ValueError, match="at least 32 characters"):
        SigningKeys(b"short")
    with pytest.raises(ValueError, match="at least 32 characters"):
        SigningKeys(KEY, previous=b"short")
