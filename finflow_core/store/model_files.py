"""Saving and loading model versions: a joblib artifact beside a signed model card.

joblib runs code when it loads a file, so nothing is unpickled before the artifact's
SHA-256 matches the card and the card's HMAC matches this installation's key (and, when
a registry gives one, the hash recorded when the version was registered, which the
registry checks against the row's keyed seal first: see ``store.registry``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import joblib

from finflow_core.errors import ModelError, ModelIntegrityError
from finflow_core.lending.config import Config
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.security.keys import load_key

ARTIFACT = "model.joblib"
CARD = "model_card.json"


def installation_key(config: Config) -> bytes:
    """The secret that signs model cards: this installation's key (``security.keys``), kept
    outside the data folder so that whoever writes the database cannot re-sign a card."""
    return load_key(config).secret


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sign_card(card: dict[str, Any], key: bytes) -> str:
    body = {k: v for k, v in card.items() if k != "signature"}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def save_bundle(bundle: ModelBundle, models_dir: Path, key: bytes) -> Path:
    """Write ``<models_dir>/<version>/model.joblib`` and its signed card; return the folder."""
    folder = models_dir / bundle.version
    if folder.exists():
        raise ModelError(f"model version {bundle.version} already exists at {folder}", version=bundle.version)
    folder.mkdir(parents=True)
    artifact = folder / ARTIFACT
    card = dict(bundle.card)
    bundle.card = {}  # the card lives beside the artifact, not inside it
    try:
        joblib.dump(bundle, artifact, compress=3)
    finally:
        bundle.card = card
    card["artifact_sha256"] = sha256_file(artifact)
    card["artifact_bytes"] = artifact.stat().st_size
    card["signature"] = sign_card(card, key)
    (folder / CARD).write_text(json.dumps(card, indent=2, sort_keys=True))
    bundle.card = card
    return folder


def read_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD
    if not path.is_file():
        raise ModelError(f"no model card at {path}: is this a FinFlow model folder?", path=str(path))
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"model card {path} is not valid JSON", path=str(path)) from exc
    if not isinstance(card, dict):
        raise ModelIntegrityError(f"model card {path} is not a JSON object", path=str(path))
    return card


def load_bundle(folder: Path, key: bytes, expected_sha256: str | None = None) -> ModelBundle:
    """Load a model version after checking its card signature and artifact hash."""
    card = read_card(folder)
    if not hmac.compare_digest(str(card.get("signature", "")), sign_card(card, key)):
        raise ModelIntegrityError(
            f"model card in {folder} is not signed by this installation (changed, or copied from "
            "elsewhere): refusing to load it. Retrain, or register it with the right key.",
            path=str(folder),
        )
    artifact = folder / ARTIFACT
    if not artifact.is_file():
        raise ModelError(f"model artifact missing: {artifact}", path=str(artifact))
    actual = sha256_file(artifact)
    for source, want in (("model card", card.get("artifact_sha256")), ("registry", expected_sha256)):
        if want is not None and not hmac.compare_digest(actual, str(want)):
            raise ModelIntegrityError(
                f"model file {artifact} has SHA-256 {actual[:12]}..., but the {source} records "
                f"{str(want)[:12]}...: the file was changed or replaced; refusing to load it",
                path=str(artifact), expected=want, actual=actual,
            )
    bundle = joblib.load(artifact)
    if not isinstance(bundle, ModelBundle) or bundle.version != card.get("version"):
        raise ModelIntegrityError(f"{artifact} does not hold model version {card.get('version')}")
    bundle.card = card
    return bundle
