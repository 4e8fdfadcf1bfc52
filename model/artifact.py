"""Model artifacts: a directory with ``model.joblib`` and ``manifest.json``, verified on load.

The manifest records the model version, when and on what it was trained (sha256 of the
training data, row counts, as_of), the library versions, the holdout metrics and the sha256
of the model file. Loading refuses, with a one-line :class:`~model.errors.ArtifactError`, a
model file whose checksum differs (tampered or truncated) or that was written by an
incompatible scikit-learn / numpy / joblib.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib

from model.errors import ArtifactError, ModelNotFoundError
from model.predictor import AdvisorModel

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "file_sha256",
    "library_versions",
    "load_model",
    "read_manifest",
    "save_model",
]

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
# 2: interaction constraints renumbered (curves exact for regional lanes), relative time.
FORMAT_VERSION = 3  # 3: the model may carry a scan model
# Libraries whose pickles must match: (name, how many version parts must agree).
_PINNED = (("scikit-learn", 2), ("numpy", 1), ("joblib", 1), ("xgboost", 1))


def library_versions() -> dict[str, str]:
    import xgboost  # its wheel is named xgboost or xgboost-cpu: ask the module

    names = ("scikit-learn", "numpy", "pandas", "scipy", "joblib")
    return {
        "python": platform.python_version(),
        **{n: version(n) for n in names},
        "xgboost": xgboost.__version__,
    }


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
        os.replace(tmp_path, directory / MODEL_FILE)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    manifest_tmp = directory / (MANIFEST_FILE + ".tmp")
    manifest_tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(manifest_tmp, directory / MANIFEST_FILE)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not path.is_file() or not (directory / MODEL_FILE).is_file():
        raise ModelNotFoundError(
            f"no model in {directory} (expected {MODEL_FILE} and {MANIFEST_FILE});"
            " run `window-advisor train` first"
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
        manifest["model_sha256"], manifest["libraries"], manifest["model_version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"unreadable manifest {path}: {exc}") from None
    return manifest


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


def load_model(directory: Path) -> tuple[AdvisorModel, dict[str, Any]]:
    """Verify checksum and library versions, then load. Raises one-line errors otherwise."""
    manifest = read_manifest(directory)
    model_path = directory / MODEL_FILE
    actual = file_sha256(model_path)
    if actual != manifest["model_sha256"]:
        raise ArtifactError(
            f"model artifact {model_path} failed verification: sha256 {actual[:12]}... does not"
            f" match the manifest's {str(manifest['model_sha256'])[:12]}... (tampered or corrupt)"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"incompatible model artifact: format version {manifest.get('format_version')},"
            f" this install reads {FORMAT_VERSION}; retrain with `window-advisor train`"
        )
    _check_versions(manifest["libraries"])
    try:
        model = joblib.load(model_path)
    except Exception as exc:  # a verified file that still fails to unpickle
        raise ArtifactError(f"model artifact {model_path} could not be loaded: {exc}") from None
    if not isinstance(model, AdvisorModel):
        raise ArtifactError(f"{model_path} does not hold an advisor model")
    model.model_version = str(manifest["model_version"])
    return model, manifest
