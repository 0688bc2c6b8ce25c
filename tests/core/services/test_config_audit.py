"""A change of the config file is an audit event, noticed by whichever entry point reads it."""

from __future__ import annotations

from pathlib import Path

import yaml
from trail import audit_rows

from finflow_core.lending.config import default_config_path, load_config
from finflow_core.store import open_store
from finflow_core.store.anchors import read_anchors
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.config_log import last_recorded, record_config


def test_first_use_then_a_change_are_recorded_once_each(tmp_path: Path, _anchors_apart: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    path = tmp_path / "finflow.yaml"
    raw = yaml.safe_load(default_config_path().read_text())
    path.write_text(yaml.safe_dump(raw))
    first = load_config(path)
    assert record_config(store, first) is True
    assert record_config(store, first) is False  # same file: nothing new
    [(_, anchor)] = read_anchors(_anchors_apart)  # the new chain's first anchor, once
    assert not isinstance(anchor, str) and anchor.seq == 1
    raw["economics"]["review_cost"] = 250.0
    path.write_text(yaml.safe_dump(raw))
    changed = load_config(path)
    assert changed.sha256 != first.sha256
    assert record_config(store, changed, actor="ana") is True
    entries = audit_rows(store, "config", first.dataset_name)
    assert [e["action"] for e in entries] == ["config_loaded", "config_changed"]
    assert entries[1]["actor"] == "ana"
    assert entries[1]["details"] == {"sha256": changed.sha256, "previous_sha256": first.sha256,
                                     "source": str(path)}
    assert last_recorded(store, changed) == changed.sha256
    assert verify_audit(store).ok
