"""Model artifacts (model/artifact.py): manifest contents and verification on load."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from data.generate import DEFAULT_AS_OF as AS_OF
from model.artifact import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    confine_to_root,
    file_sha256,
    library_versions,
    load_model,
    read_manifest,
)
from model.errors import ArtifactError, ModelNotFoundError, ModelRootError
from model.predictor import AdvisorModel
from model.schema import validate_open_orders
from tests.conftest import scans_for


@pytest.fixture
def model_copy(trained_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's artifact, free to tamper with."""
    return Path(shutil.copytree(trained_model_dir, tmp_path / "model"))


def edit_manifest(directory: Path, change: Any) -> None:
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_manifest_records_provenance_versions_and_metrics(
    trained_model_dir: Path, small_history: pd.DataFrame
) -> None:
    rows = len(small_history)
    manifest = read_manifest(trained_model_dir)
    model_sha = file_sha256(trained_model_dir / MODEL_FILE)
    assert manifest["model_sha256"] == model_sha
    assert manifest["model_version"] == f"{AS_OF.isoformat().replace('-', '')}-{model_sha[:10]}"
    assert manifest["as_of"] == AS_OF.isoformat()
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.tzinfo is not None
    assert abs(datetime.now(created.tzinfo) - created) < timedelta(hours=6)
    libraries = manifest["libraries"]
    assert libraries == library_versions()
    for name in ("scikit-learn", "numpy", "pandas", "scipy", "joblib"):
        assert libraries[name] == version(name)
    data = manifest["data"]
    assert data["sha256"] == "0" * 64
    assert data["source"] == "tests:small_history"
    assert data["rows"] == rows
    assert data["rows_valid"] == rows
    assert data["rows_rejected"] == 0
    assert 0 < data["rows_used"] <= rows
    metrics = manifest["metrics"]
    split = date.fromisoformat(metrics["split_date"])
    assert split == AS_OF - timedelta(days=150)
    assert metrics["test_decisions"] > 0
    for key in ("p_late", "p_late_after_extension", "p_late_raw"):
        assert 0.5 < metrics[key]["auc"] <= 1.0
        assert 0.0 <= metrics[key]["brier"] < 0.25
    assert manifest["training"]["config"]["hazard"]["max_iter"] == 60


def test_load_sets_the_version_and_predicts(
    trained_model_dir: Path, open_orders: pd.DataFrame
) -> None:
    model, manifest = load_model(trained_model_dir)
    assert isinstance(model, AdvisorModel)
    assert model.model_version == manifest["model_version"]
    valid = validate_open_orders(open_orders, as_of=AS_OF).valid
    assert len(model.predict(valid, AS_OF)) == len(valid)


def test_one_flipped_byte_is_refused(model_copy: Path) -> None:
    path = model_copy / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    recorded = read_manifest(model_copy)["model_sha256"]
    actual = file_sha256(path)
    with pytest.raises(ArtifactError) as raised:
        load_model(model_copy)
    message = str(raised.value)
    assert message == (
        f"model artifact {path} failed verification: sha256 {actual[:12]}... does not"
        f" match the manifest's {recorded[:12]}... (tampered or corrupt)"
    )
    assert "\n" not in message


def test_truncated_model_file_is_refused(model_copy: Path) -> None:
    path = model_copy / MODEL_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="failed verification"):
        load_model(model_copy)


def test_other_scikit_learn_minor_version_is_refused(model_copy: Path) -> None:
    installed = version("scikit-learn")
    major, minor = installed.split(".")[:2]
    claimed = f"{major}.{int(minor) + 1}.0"
    edit_manifest(model_copy, lambda m: m["libraries"].update({"scikit-learn": claimed}))
    with pytest.raises(ArtifactError) as raised:
        load_model(model_copy)
    assert str(raised.value) == (
        f"incompatible model artifact: trained with scikit-learn {claimed},"
        f" this install has {installed}; retrain with `window-advisor train`"
    )


def test_older_artifact_format_is_refused(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda m: m.update({"format_version": 1}))
    with pytest.raises(ArtifactError) as raised:
        load_model(model_copy)
    assert str(raised.value) == (
        f"incompatible model artifact: format version 1, this install reads {FORMAT_VERSION};"
        " retrain with `window-advisor train`"
    )


def test_other_numpy_major_version_is_refused(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda m: m["libraries"].update({"numpy": "1.26.4"}))
    with pytest.raises(ArtifactError, match=r"^incompatible model artifact: trained with numpy"):
        load_model(model_copy)


def test_scikit_learn_patch_difference_is_accepted(model_copy: Path) -> None:
    major, minor = version("scikit-learn").split(".")[:2]
    edit_manifest(
        model_copy, lambda m: m["libraries"].update({"scikit-learn": f"{major}.{minor}.99"})
    )
    model, _ = load_model(model_copy)
    assert isinstance(model, AdvisorModel)


def test_missing_directory_is_model_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelNotFoundError) as raised:
        load_model(missing)
    assert str(raised.value) == (
        f"no model in {missing} (expected {MODEL_FILE} and {MANIFEST_FILE});"
        " run `window-advisor train` first"
    )


def test_manifest_without_model_file_is_model_not_found(model_copy: Path) -> None:
    (model_copy / MODEL_FILE).unlink()
    with pytest.raises(ModelNotFoundError):
        load_model(model_copy)


def test_unreadable_manifest_is_an_artifact_error(model_copy: Path) -> None:
    (model_copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match=r"^unreadable manifest "):
        load_model(model_copy)
    (model_copy / MANIFEST_FILE).write_text(json.dumps({"model_version": "x"}))
    with pytest.raises(ArtifactError, match=r"^unreadable manifest .*'model_sha256'"):
        load_model(model_copy)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A model root with one model directory in it, and a directory outside it."""
    (tmp_path / "root" / "model").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def test_directories_inside_the_root_are_resolved(root: Path) -> None:
    assert confine_to_root(Path("model"), root) == root / "model"  # relative: under the root
    assert confine_to_root(root / "model", root) == root / "model"
    assert confine_to_root(root / "model" / ".." / "model", root) == root / "model"
    assert confine_to_root(root / "not-yet", root) == root / "not-yet"  # loading will say so
    (root / "current").symlink_to(root / "model")  # a link that stays inside is fine
    assert confine_to_root(root / "current", root) == root / "model"


@pytest.mark.parametrize(
    "name", ["../outside", "model/../../outside", "ABSOLUTE_OUTSIDE", "/etc", "/"]
)
def test_traversal_and_absolute_paths_out_of_the_root_are_refused(root: Path, name: str) -> None:
    outside = root.parent / "outside"
    requested = Path(str(outside) if name == "ABSOLUTE_OUTSIDE" else name)
    with pytest.raises(ModelRootError) as raised:
        confine_to_root(requested, root)
    resolved = (root / requested).resolve()
    assert str(raised.value) == (
        f"model directory {requested} resolves to {resolved}, outside the model root {root};"
        " only directories inside ADVISOR_MODEL_ROOT may be loaded"
    )


def test_a_symlink_out_of_the_root_is_refused(root: Path) -> None:
    (root / "escape").symlink_to(root.parent / "outside")
    with pytest.raises(ModelRootError, match=r"resolves to .*/outside, outside the model root"):
        confine_to_root(Path("escape"), root)


def test_artifact_files_linking_out_of_the_root_are_refused(root: Path) -> None:
    (root.parent / "outside" / MODEL_FILE).write_bytes(b"not read")
    (root / "model" / MODEL_FILE).symlink_to(root.parent / "outside" / MODEL_FILE)
    with pytest.raises(ModelRootError) as raised:
        confine_to_root(root / "model", root)
    assert str(raised.value) == (
        f"{root / 'model' / MODEL_FILE} links to {root.parent / 'outside' / MODEL_FILE},"
        f" outside the model root {root}; only files inside ADVISOR_MODEL_ROOT may be loaded"
    )


def test_unusable_paths_are_refused(root: Path) -> None:
    with pytest.raises(ModelRootError, match="is not a usable path"):
        confine_to_root(Path("bad\x00dir"), root)


def test_a_scan_model_round_trips_with_identical_predictions(
    tmp_path: Path,
    scan_model: AdvisorModel,
    scan_model_dir: Path,
    small_events: pd.DataFrame,
) -> None:
    """The trees travel in XGBoost's own format inside the artifact and predict the same."""
    from data.generate import generate_open

    made = generate_open(200, seed=31, as_of=AS_OF)
    orders = validate_open_orders(made.frame, as_of=AS_OF).valid
    scans = scans_for(made.events, orders)
    loaded, _ = load_model(scan_model_dir)
    assert loaded.scans is not None and "booster_" not in vars(loaded.scans)
    before = scan_model.predict(orders, AS_OF, scans=scans)
    after = loaded.predict(orders, AS_OF, scans=scans)
    pd.testing.assert_frame_equal(before, after)
    assert before["last_milestone"].notna().sum() > 150
