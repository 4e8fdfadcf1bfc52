"""Model artifacts: a directory with ``model.joblib`` and ``manifest.json`` (and, when a
signing key is configured, ``signature.json``), verified on load.

The manifest records the model version, when and on what it was trained (sha256 of the
training data, row counts, as_of), the library versions, the holdout metrics and the sha256
of the model file. Loading refuses, with a one-line :class:`~model.errors.ArtifactError`, a
model file whose checksum differs (corrupt or truncated) or that was written by an
incompatible scikit-learn / numpy / joblib.

The model file is a pickle, and unpickling runs code. The checksum sits beside it, so it
cannot tell tampering from a fresh artifact: with :class:`~model.signing.SigningKeys` given,
the artifact must carry an HMAC-SHA256 signature (``signature.json``) over the manifest and
the model bytes, checked before anything else is parsed or unpickled
(:class:`~model.errors.SignatureError` otherwise). The bytes are read once; the ones verified
are the ones unpickled, so a file swapped in between cannot slip through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import os
import platform
import re
import tempfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import joblib

from model.errors import ArtifactError, ModelNotFoundError, ModelRootError, SignatureError
from model.predictor import AdvisorModel
from model.signing import ALGORITHM, SigningKeys, artifact_mac, key_id

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "SIGNATURE_FILE",
    "confine_to_root",
    "file_sha256",
    "library_versions",
    "load_model",
    "read_manifest",
    "save_model",
    "sign_artifact",
]

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "signature.json"
ARTIFACT_FILES = (MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE)
# Upper bounds of the small files, so a hostile directory cannot make a load read gigabytes.
MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 4096
_HEX = re.compile(r"[0-9a-f]{1,64}")
# 2: interaction constraints renumbered (curves exact for regional lanes), relative time.
# 3: the model may carry a scan model. 4: the hazard classifier travels as bytes, unpickled
# on first use, with the logit tables of its training history.
FORMAT_VERSION = 4
# Libraries whose pickles must match: (name, how many version parts must agree).
_PINNED = (("scikit-learn", 2), ("numpy", 1), ("joblib", 1), ("xgboost", 1))


def library_versions() -> dict[str, str]:
    names = ("scikit-learn", "numpy", "pandas", "scipy", "joblib")
    return {
        "python": platform.python_version(),
        **{n: version(n) for n in names},
        "xgboost": _xgboost_version(),
    }


def _xgboost_version() -> str:
    """From the installed distribution's metadata (importing xgboost costs ~1.5 s); its
    wheel is named xgboost or xgboost-cpu."""
    for name in ("xgboost", "xgboost-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    raise PackageNotFoundError("xgboost")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    model: AdvisorModel,
    directory: Path,
    *,
    keys: SigningKeys | None = None,  # signs with keys.current; None drops an old signature
    data_sha256: str,
    data_source: str,
    rows_rejected: int = 0,
    events: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the model and its manifest atomically; returns the manifest. ``events``
    describes the training scans (source, sha256, counts), when there were any."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        # Without the hazard's logit tables (kept when a model is pickled for a worker), so
        # the file does not depend on what the model predicted before it was saved.
        cold = dataclasses.replace(model, hazard=model.hazard.without_tables())
        joblib.dump(cold, tmp_path, compress=3)
        model_sha = file_sha256(tmp_path)
        as_of = model.training["as_of"]
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_version": f"{as_of.replace('-', '')}-{model_sha[:10]}",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "as_of": as_of,
            "model_sha256": model_sha,
            "data": {
                "source": data_source,
                "sha256": data_sha256,
                "rows": model.training["rows"] + rows_rejected,
                "rows_valid": model.training["rows"],
                "rows_rejected": rows_rejected,
                "rows_used": model.training["rows_used"],
                **({"events": events} if events is not None else {}),
            },
            "libraries": library_versions(),
            "training": {k: v for k, v in model.training.items() if k != "holdout"},
            "metrics": model.training.get("holdout", {}),
        }
        (directory / SIGNATURE_FILE).unlink(missing_ok=True)  # it signed the old files
        os.replace(tmp_path, directory / MODEL_FILE)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _write_atomically(directory / MANIFEST_FILE, json.dumps(manifest, indent=2, default=str) + "\n")
    if keys is not None:
        sign_artifact(directory, keys)
    return manifest


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    os.replace(partial, path)


def sign_artifact(directory: Path, keys: SigningKeys) -> dict[str, Any]:
    """Sign the artifact in ``directory`` as it is now with ``keys.current``: writes
    ``signature.json`` and returns its record. Whoever calls this vouches for the files."""
    manifest_bytes, model_bytes = _artifact_bytes(directory)
    record = {
        "algorithm": ALGORITHM,
        "key_id": key_id(keys.current),
        "signed": [MANIFEST_FILE, MODEL_FILE],
        "signature": artifact_mac(keys.current, manifest_bytes, model_bytes),
    }
    _write_atomically(directory / SIGNATURE_FILE, json.dumps(record, indent=2) + "\n")
    return record


def confine_to_root(directory: Path, root: Path) -> Path:
    """``directory`` (a relative one taken under ``root``) resolved after ``..`` and
    symlinks, refused with :class:`ModelRootError` unless it and the artifact files in it
    resolve inside ``root``. Only names and links are looked at: no file is opened."""
    try:
        real_root = Path(os.path.realpath(root))
        real = Path(os.path.realpath(real_root / directory))
        links = [
            (real / name, Path(os.path.realpath(real / name)))
            for name in ARTIFACT_FILES
            if os.path.lexists(real / name)
        ]
    except (ValueError, OSError) as exc:  # a NUL byte, a symlink loop
        raise ModelRootError(f"model directory {directory} is not a usable path: {exc}") from None
    if not real.is_relative_to(real_root):
        raise ModelRootError(
            f"model directory {directory} resolves to {real}, outside the model root"
            f" {real_root}; only directories inside ADVISOR_MODEL_ROOT may be loaded"
        )
    for path, target in links:
        if not target.is_relative_to(real_root):
            raise ModelRootError(
                f"{path} links to {target}, outside the model root {real_root};"
                " only files inside ADVISOR_MODEL_ROOT may be loaded"
            )
    return real


def _require_files(directory: Path) -> None:
    if not (directory / MANIFEST_FILE).is_file() or not (directory / MODEL_FILE).is_file():
        raise ModelNotFoundError(
            f"no model in {directory} (expected {MODEL_FILE} and {MANIFEST_FILE});"
            " run `window-advisor train` first"
        )


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ArtifactError(f"{path} is larger than {limit:,} bytes: not an artifact file")
    return data


def _artifact_bytes(directory: Path) -> tuple[bytes, bytes]:
    """The manifest's and the model file's bytes, each read once."""
    _require_files(directory)
    manifest_bytes = _read_bounded(directory / MANIFEST_FILE, MAX_MANIFEST_BYTES)
    return manifest_bytes, (directory / MODEL_FILE).read_bytes()


def _parse_manifest(data: bytes, path: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(data)
        manifest["model_sha256"], manifest["libraries"], manifest["model_version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"unreadable manifest {path}: {exc}") from None
    return manifest


def read_manifest(directory: Path, *, keys: SigningKeys | None = None) -> dict[str, Any]:
    """The manifest; with ``keys``, only once the artifact's signature and checksum verify
    (the model file is read, never unpickled)."""
    if keys is not None:
        return _verified(directory, keys)[0]
    _require_files(directory)
    path = directory / MANIFEST_FILE
    return _parse_manifest(_read_bounded(path, MAX_MANIFEST_BYTES), path)


def _verify_signature(
    directory: Path, manifest_bytes: bytes, model_bytes: bytes, keys: SigningKeys
) -> None:
    path = directory / SIGNATURE_FILE
    if not path.is_file():
        raise SignatureError(
            f"model artifact in {directory} is not signed (no {SIGNATURE_FILE}) and a signing"
            " key is configured; train it with ADVISOR_SIGNING_KEY set"
        )
    try:
        record = json.loads(_read_bounded(path, MAX_SIGNATURE_BYTES))
        claimed = record["signature"]
        if record["algorithm"] != ALGORITHM or not isinstance(claimed, str):
            raise ValueError(f"not an {ALGORITHM} signature")
    except (ValueError, KeyError, TypeError, ArtifactError) as exc:
        raise SignatureError(f"unreadable signature file {path}: {exc}") from None
    claimed_bytes = claimed.encode("utf-8", "replace")
    for key in keys.verifying():
        expected = artifact_mac(key, manifest_bytes, model_bytes).encode()
        if hmac.compare_digest(expected, claimed_bytes):
            return
    # Which message: the key id says which key the signer claims to have used (never
    # trusted for the decision above; only to tell a wrong key from tampering).
    recorded = record.get("key_id")
    recorded = recorded if isinstance(recorded, str) and _HEX.fullmatch(recorded) else "?"
    if recorded in keys.key_ids():
        reason = "its manifest or model file changed after it was signed (tampered)"
    else:
        reason = (
            f"it was signed with another key (key id {recorded}), neither ADVISOR_SIGNING_KEY"
            " nor ADVISOR_SIGNING_KEY_PREVIOUS"
        )
    raise SignatureError(f"model artifact in {directory} failed signature verification: {reason}")


def _verified(directory: Path, keys: SigningKeys | None) -> tuple[dict[str, Any], bytes]:
    """Read the artifact once; check the signature (with ``keys``), then the checksum."""
    manifest_bytes, model_bytes = _artifact_bytes(directory)
    if keys is not None:
        _verify_signature(directory, manifest_bytes, model_bytes, keys)
    manifest = _parse_manifest(manifest_bytes, directory / MANIFEST_FILE)
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != manifest["model_sha256"]:
        raise ArtifactError(
            f"model artifact {directory / MODEL_FILE} failed verification: sha256"
            f" {actual[:12]}... does not match the manifest's"
            f" {str(manifest['model_sha256'])[:12]}... (tampered or corrupt)"
        )
    return manifest, model_bytes


def _check_versions(recorded: dict[str, str]) -> None:
    current = library_versions()
    for name, parts in _PINNED:
        then = recorded.get(name, "?").split(".")[:parts]
        now = current[name].split(".")[:parts]
        if then != now:
            raise ArtifactError(
                f"incompatible model artifact: trained with {name} {recorded.get(name)},"
                f" this install has {current[name]}; retrain with `window-advisor train`"
            )


def load_model(
    directory: Path, *, keys: SigningKeys | None = None
) -> tuple[AdvisorModel, dict[str, Any]]:
    """Verify signature (with ``keys``), checksum and library versions, then unpickle the
    very bytes verified. Raises one-line errors otherwise."""
    manifest, model_bytes = _verified(directory, keys)
    model_path = directory / MODEL_FILE
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"incompatible model artifact: format version {manifest.get('format_version')},"
            f" this install reads {FORMAT_VERSION}; retrain with `window-advisor train`"
        )
    _check_versions(manifest["libraries"])
    try:
        model = joblib.load(io.BytesIO(model_bytes))
    except Exception as exc:  # a verified file that still fails to unpickle
        raise ArtifactError(f"model artifact {model_path} could not be loaded: {exc}") from None
    if not isinstance(model, AdvisorModel):
        raise ArtifactError(f"{model_path} does not hold an advisor model")
    model.model_version = str(manifest["model_version"])
    return model, manifest
