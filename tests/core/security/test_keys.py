"""The installation key: made once outside the data folder, 0600 in 0700, never trusted loose."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import pytest

from finflow_core.errors import ConfigError
from finflow_core.lending.config import ENV_ANCHOR_DIR, Config, parse_config
from finflow_core.security.keys import (
    ENV_KEY_FILE,
    ENV_SECRET,
    InstallationKeyError,
    has_key,
    key_path,
    load_key,
)
from finflow_core.store.model_files import installation_key


@pytest.fixture(autouse=True)
def no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.delenv(ENV_ANCHOR_DIR, raising=False)


def config_in(root: Path, small_raw: dict[str, Any], **audit: str) -> Config:
    raw = copy.deepcopy(small_raw)
    raw["paths"] = {"models_dir": str(root / "models"), "data_dir": str(root / "data"),
                    "database_url": f"sqlite:///{root / 'data' / 'finflow.db'}"}
    raw["audit"] = {"key_file": str(root / "secrets" / "installation.key"),
                    "anchor_dir": str(root / "anchors"), **audit}
    return parse_config(raw)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_is_made_once_0600_in_a_0700_folder_outside_the_data_folder(
    tmp_path: Path, small_raw: dict[str, Any]
) -> None:
    cfg = config_in(tmp_path, small_raw)
    assert not has_key(cfg)
    key = load_key(cfg)
    path = tmp_path / "secrets" / "installation.key"
    assert key.source == str(path) and key_path(cfg) == path and has_key(cfg)
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    assert len(key.secret) == 64 and not (tmp_path / "data").exists()
    assert load_key(cfg) == key and installation_key(cfg) == key.secret  # stable, one secret
    other = config_in(tmp_path / "elsewhere", small_raw)
    assert load_key(other).secret != key.secret  # another installation, another key
    assert key.secret.decode() not in repr(key)


def test_the_environment_wins_and_each_purpose_has_its_own_key(
    tmp_path: Path, small_raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_in(tmp_path, small_raw)
    monkeypatch.setenv(ENV_SECRET, "from-the-environment")
    key = load_key(cfg)
    assert (key.secret, key.source) == (b"from-the-environment", "$FINFLOW_SECRET_KEY")
    assert not (tmp_path / "secrets").exists()
    derived = {key.chain_key, key.seal_key, key.anchor_key, key.secret}
    assert len(derived) == 4 and len(key.fingerprint) == 16
    monkeypatch.setenv(ENV_SECRET, "short")
    with pytest.raises(InstallationKeyError, match="shorter than 16"):
        load_key(cfg)
    monkeypatch.delenv(ENV_SECRET)
    elsewhere = tmp_path / "vault" / "finflow.key"
    monkeypatch.setenv(ENV_KEY_FILE, str(elsewhere))
    assert load_key(cfg).source == str(elsewhere) and mode(elsewhere) == 0o600
    assert not (tmp_path / "secrets").exists()


def test_a_key_others_may_read_is_refused(tmp_path: Path, small_raw: dict[str, Any]) -> None:
    cfg = config_in(tmp_path, small_raw)
    path = key_path(cfg)
    load_key(cfg)
    path.chmod(0o644)
    with pytest.raises(InstallationKeyError, match="chmod 600") as caught:
        load_key(cfg)
    assert caught.value.exit_code == 3


def test_a_key_that_cannot_be_made_is_one_clear_error(tmp_path: Path, small_raw: dict[str, Any]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cfg = config_in(tmp_path, small_raw, key_file=str(blocker / "sub" / "installation.key"))
    with pytest.raises(InstallationKeyError, match="cannot create the installation key .*FINFLOW_KEY_FILE"):
        load_key(cfg)


def test_the_key_of_an_older_installation_leaves_the_data_folder(
    tmp_path: Path, small_raw: dict[str, Any]
) -> None:
    cfg = config_in(tmp_path, small_raw)
    legacy = tmp_path / "data" / ".finflow_secret"
    legacy.parent.mkdir()
    legacy.write_text("a-key-made-by-an-older-finflow-0123456789\n")
    key = load_key(cfg)
    assert key.secret == b"a-key-made-by-an-older-finflow-0123456789"  # old cards still verify
    assert not legacy.exists() and mode(key_path(cfg)) == 0o600


@pytest.mark.parametrize("where", ["data/keys/installation.key", "data/installation.key"])
def test_the_config_refuses_a_key_beside_the_database(
    tmp_path: Path, small_raw: dict[str, Any], where: str
) -> None:
    with pytest.raises(ConfigError, match="audit.key_file"):
        config_in(tmp_path, small_raw, key_file=str(tmp_path / where))
    with pytest.raises(ConfigError, match="audit.anchor_dir"):
        config_in(tmp_path, small_raw, anchor_dir=str(tmp_path / "data" / "anchors"))


def test_finflow_anchor_dir_overrides_the_config_and_is_held_to_the_same_rule(
    tmp_path: Path, small_raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_ANCHOR_DIR, str(tmp_path / "worm" / "anchors"))
    cfg = config_in(tmp_path, small_raw)
    assert cfg.audit is not None and cfg.audit.anchor_dir == tmp_path / "worm" / "anchors"
    monkeypatch.setenv(ENV_ANCHOR_DIR, str(tmp_path / "data"))
    with pytest.raises(ConfigError, match="audit.anchor_dir"):
        config_in(tmp_path, small_raw)



def test_a_lost_key_file_is_reported_not_replaced_by_a_fresh_one(
    tmp_path: Path, small_raw: dict[str, Any]
) -> None:
    """A chain keyed already and no key file: the key was lost (a fresh one was made, and
    every later message called it "this installation's key"). A folder in its place is
    named as such, not as a key "others may read"."""
    from finflow_core.store import open_store
    from finflow_core.store.audit_chain import append_audit
    from finflow_core.store.config_log import record_config

    cfg = config_in(tmp_path, small_raw)
    (tmp_path / "data").mkdir()
    with open_store(cfg.paths.database_url) as store:
        record_config(store, cfg)
        with store.begin() as conn:
            append_audit(conn, "system", "test", "test", "1", {})
    path = key_path(cfg)
    fingerprint = load_key(cfg).fingerprint
    path.unlink()
    missing = f"is missing.*keyed with key {fingerprint}"
    with open_store(cfg.paths.database_url) as store, pytest.raises(InstallationKeyError, match=missing):
        record_config(store, cfg)
    assert not path.exists()
    path.mkdir()
    with pytest.raises(InstallationKeyError, match="is a folder or device, not a key file"):
        load_key(cfg)
