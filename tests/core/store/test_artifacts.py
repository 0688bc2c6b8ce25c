"""Model artifacts: save/load round trip, and every tampering refused before unpickling."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from finflow_core.errors import ModelError, ModelIntegrityError
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.store.model_files import (
    ARTIFACT,
    CARD,
    load_bundle,
    read_card,
    save_bundle,
    sign_card,
)


@pytest.fixture()
def model_copy(saved_model: Path, tmp_path: Path) -> Path:
    """A private copy of the saved session model, safe to tamper with."""
    return Path(shutil.copytree(saved_model, tmp_path / saved_model.name))


@pytest.fixture()
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any call of joblib.load fail the test: refusals must come before unpickling."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("joblib.load was called on an artifact that should be refused")

    monkeypatch.setattr(joblib, "load", forbidden)


def test_round_trip(saved_model: Path, model_key: bytes, bundle: ModelBundle,
                    training_frame: pd.DataFrame) -> None:
    loaded = load_bundle(saved_model, model_key)
    assert loaded.version == bundle.version == saved_model.name
    assert loaded.model_name == bundle.model_name
    assert loaded.strategy == bundle.strategy
    assert loaded.baseline.specs == bundle.baseline.specs
    assert loaded.feature_names == bundle.feature_names
    assert loaded.reference == bundle.reference
    assert loaded.card == read_card(saved_model)
    sample = training_frame.head(200)
    np.testing.assert_array_equal(loaded.model.predict_proba(sample), bundle.model.predict_proba(sample))
    # the registry's hash, when given, must match too
    again = load_bundle(saved_model, model_key, expected_sha256=loaded.card["artifact_sha256"])
    assert again.version == loaded.version


def test_card_is_not_inside_the_artifact(saved_model: Path, model_key: bytes) -> None:
    raw = joblib.load(saved_model / ARTIFACT)
    assert raw.card == {}
    card = json.loads((saved_model / CARD).read_text())
    assert card["signature"] == sign_card(card, model_key)


@pytest.mark.parametrize("how", ["flip-one-byte", "append-one-byte", "truncate"])
def test_tampered_artifact_is_refused_before_unpickling(
    model_copy: Path, model_key: bytes, no_unpickling: None, how: str
) -> None:
    artifact = model_copy / ARTIFACT
    data = bytearray(artifact.read_bytes())
    if how == "flip-one-byte":
        data[len(data) // 2] ^= 0x01
    elif how == "append-one-byte":
        data += b"\x00"
    else:
        data = data[:-10]
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as exc:
        load_bundle(model_copy, model_key)
    assert "model card records" in exc.value.message
    assert "changed or replaced" in exc.value.message
    assert exc.value.details["expected"] == read_card(model_copy)["artifact_sha256"]
    assert exc.value.details["actual"] != exc.value.details["expected"]


def test_edited_card_is_refused(model_copy: Path, model_key: bytes, no_unpickling: None) -> None:
    card = json.loads((model_copy / CARD).read_text())
    card["strategy"]["cutoff"] = 0.99  # a more lenient cut-off, written by hand
    (model_copy / CARD).write_text(json.dumps(card, indent=2, sort_keys=True))
    with pytest.raises(ModelIntegrityError, match="not signed by this installation"):
        load_bundle(model_copy, model_key)


def test_card_pointing_at_another_artifact_is_refused(
    model_copy: Path, model_key: bytes, no_unpickling: None
) -> None:
    # replace the artifact and update the recorded hash without the key
    artifact = model_copy / ARTIFACT
    artifact.write_bytes(artifact.read_bytes() + b"payload")
    card = json.loads((model_copy / CARD).read_text())
    card["artifact_sha256"] = hashlib.sha256(artifact.read_bytes()).hexdigest()
    (model_copy / CARD).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="not signed"):
        load_bundle(model_copy, model_key)


def test_model_from_another_installation_is_refused(
    model_copy: Path, no_unpickling: None
) -> None:
    with pytest.raises(ModelIntegrityError) as exc:
        load_bundle(model_copy, b"another-installation-key")
    assert "copied from elsewhere" in exc.value.message
    assert "refusing to load it" in exc.value.message


def test_registry_hash_mismatch_is_refused(model_copy: Path, model_key: bytes,
                                           no_unpickling: None) -> None:
    with pytest.raises(ModelIntegrityError) as exc:
        load_bundle(model_copy, model_key, expected_sha256="0" * 64)
    assert "the registry records 000000000000" in exc.value.message


def test_missing_or_broken_files(model_copy: Path, model_key: bytes, tmp_path: Path,
                                 no_unpickling: None) -> None:
    with pytest.raises(ModelError, match="no model card"):
        load_bundle(tmp_path / "empty", model_key)
    (model_copy / ARTIFACT).unlink()
    with pytest.raises(ModelError, match="artifact missing"):
        load_bundle(model_copy, model_key)
    (model_copy / CARD).write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        load_bundle(model_copy, model_key)
    (model_copy / CARD).write_text("[1, 2]")
    with pytest.raises(ModelIntegrityError, match="not a JSON object"):
        load_bundle(model_copy, model_key)


def test_save_refuses_an_existing_version(bundle: ModelBundle, saved_model: Path,
                                          model_key: bytes) -> None:
    with pytest.raises(ModelError, match="already exists"):
        save_bundle(copy.copy(bundle), saved_model.parent, model_key)


def test_saving_keeps_the_bundle_card(bundle: ModelBundle, tmp_path: Path, model_key: bytes) -> None:
    twin = copy.copy(bundle)
    twin.version = "20260106T000000Z-other001"
    twin.card = {**bundle.card, "version": twin.version}
    folder = save_bundle(twin, tmp_path, model_key)
    assert folder == tmp_path / twin.version
    assert twin.card["artifact_sha256"] == read_card(folder)["artifact_sha256"]
    assert load_bundle(folder, model_key).version == twin.version
    assert "artifact_sha256" not in bundle.card  # the session bundle is untouched


