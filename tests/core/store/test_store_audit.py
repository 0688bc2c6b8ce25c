"""Every event is in the audit trail; tampering with the trail or the decisions is found."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import select, text
from store_helpers import (
    PASSWORD,
    SECRET_KEY,
    BatchFiles,
    Lending,
    raw_sql,
    small_config_raw,
)
from trail import audit_rows

from finflow_core.cli import main
from finflow_core.errors import AuthError, ConfigError
from finflow_core.lending.config import load_config
from finflow_core.services.access import Principal
from finflow_core.store import Store
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.decision_check import (
    application_trail,
    application_trail_csv,
    verify_decisions,
)
from finflow_core.store.lending_tables import applications, decisions
from finflow_core.store.model_files import load_bundle, save_bundle

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def drop_audit_guards(store: Store) -> None:
    """What an attacker with direct database access does first."""
    if store.dialect == "sqlite":
        raw_sql(store, "DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete")
    else:
        raw_sql(store, "DROP TRIGGER audit_log_append_only ON audit_log")


def drop_decision_guards(store: Store) -> None:
    if store.dialect == "sqlite":
        raw_sql(store, "DROP TRIGGER decisions_no_update", "DROP TRIGGER decisions_no_delete")
    else:
        raw_sql(store, "DROP TRIGGER decisions_append_only ON decisions")


def second_version(ff: Lending) -> str:
    """A second registered version (a copy of the session model under a new version)."""
    bundle = load_bundle(ff.model.folder, SECRET_KEY.encode())
    bundle.version = ff.version[:-8] + "c0ffee00"
    bundle.card = {**bundle.card, "version": bundle.version}
    folder = save_bundle(bundle, ff.config.paths.models_dir, SECRET_KEY.encode())
    analyst = ff.gate.authenticate("ann.analyst", PASSWORD)
    assert ff.wb(analyst).models.register(bundle, folder) is False
    return bundle.version


def test_every_event_is_in_the_trail_with_who_what_when_and_model_version(
    ff: Lending, batches_dir: BatchFiles
) -> None:
    users = ff.users()  # user_created x4
    analyst = ff.gate.authenticate("ann.analyst", PASSWORD)  # login
    officer = ff.gate.authenticate("oscar.officer", PASSWORD)
    manager = ff.gate.authenticate("mia.manager", PASSWORD)
    admin = ff.gate.authenticate("ada.admin", PASSWORD)
    with pytest.raises(AuthError):
        ff.gate.authenticate("oscar.officer", "not the password")  # login_failed
    summary = ff.run(batches_dir.a, actor=analyst)  # batch_uploaded, batch_scored, drift_measured
    case = ff.pending_ids()[0]
    ff.wb(officer).review.claim(case)  # case_claimed
    decided = ff.wb(officer).review.decide(case, "approve", note="ok")  # case_decided
    ff.wb(manager).models.save_strategy(0.04, 0.35, "tighter", ff.version)
    new = second_version(ff)  # model_trained by the analyst
    ff.wb(manager).models.promote(new, "challenger won")  # model_promoted
    ff.wb(admin).users.set_roles("oscar.officer", ["officer", "manager"])  # roles_changed
    ff.wb(admin).users.disable("mia.manager")  # user_disabled
    assert users["admin"].username == admin.username

    trail = audit_rows(ff.store)
    by_action: dict[str, list[dict]] = {}
    for e in trail:
        assert e["at"] and e["actor"] and e["subject_type"] and e["subject_id"] is not None
        by_action.setdefault(e["action"], []).append(e)

    def one(action: str, **match: object) -> dict:
        found = [e for e in by_action.get(action, [])
                 if all(e[k] == v for k, v in match.items())]
        assert found, f"no {action} entry matching {match}: {sorted(by_action)}"
        return found[-1]

    one("user_created", actor="system", subject_id="ada.admin")
    one("user_created", actor="ada.admin", subject_id="oscar.officer")
    one("login", actor="ann.analyst")
    one("login_failed", subject_id="oscar.officer")
    for action in ("batch_uploaded", "batch_scored", "drift_measured"):
        e = one(action, actor="ann.analyst", subject_id=summary.batch_id)
        assert e["model_version"] == ff.version
    scored = one("batch_scored")["details"]
    assert scored["automatic_approvals"] == summary.bands["low"]
    assert scored["automatic_declines"] == summary.bands["high"]
    external = ff_external_id(ff, case)
    claim = one("case_claimed", actor="oscar.officer", subject_id=external)
    assert claim["details"]["application"] == case
    dec = one("case_decided", actor="oscar.officer", subject_id=external)
    assert dec["model_version"] == ff.version
    assert (dec["details"]["decision"], dec["details"]["outcome"]) == (decided.id, "approve")
    assert one("strategy_saved", actor="mia.manager")["model_version"] == ff.version
    first = one("model_trained", subject_id=ff.version)
    assert (first["actor"], first["model_version"]) == ("system", ff.version)
    assert one("model_trained", subject_id=new)["actor"] == "ann.analyst"
    promoted = one("model_promoted", actor="mia.manager", subject_id=new)
    assert promoted["model_version"] == new
    assert promoted["details"]["previous_champion"] == ff.version
    one("roles_changed", actor="ada.admin", subject_id="oscar.officer")
    one("user_disabled", actor="ada.admin", subject_id="mia.manager")
    assert [e["seq"] for e in trail] == list(range(1, len(trail) + 1))
    assert [e["at"] for e in trail] == sorted(e["at"] for e in trail)
    assert verify_audit(ff.store).ok
    assert verify_decisions(ff.store).ok


def ff_external_id(ff: Lending, application_id: int) -> str:
    with ff.store.connect() as conn:
        return conn.execute(select(applications.c.external_id)
                            .where(applications.c.id == application_id)).scalar_one()


def test_audit_verify_exits_12_and_names_the_changed_entry(
    ff: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ff.users()
    ff.run(batches_dir.a)
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
    target = audit_rows(ff.store, action="batch_scored")[0]["seq"]
    drop_audit_guards(ff.store)
    raw_sql(ff.store, "UPDATE audit_log SET details = replace(details, '\"automatic_declines\"', "
                      f"'\"automatic_declines_\"') WHERE seq = {target}")
    assert main(["audit", "verify"]) == 12
    out = capsys.readouterr().out
    assert f"entry {target} was changed" in out
    assert main(["audit", "verify", "--json"]) == 12
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["chain"]["first_bad_seq"]) == (False, target)


@contextmanager
def tampered(store: Store, table: str, column: str, key: str, key_value: int, value: str) -> Iterator[None]:
    """Change one stored value by hand (as someone with database access), then put it back."""
    with store.connect() as conn:
        original = conn.execute(text(f"SELECT {column} FROM {table} WHERE {key} = {key_value}")).scalar_one()
    raw_sql(store, f"UPDATE {table} SET {column} = {value} WHERE {key} = {key_value}")
    try:
        yield
    finally:
        with store.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE {key} = {key_value}"),
                         {"v": original})


def test_changing_a_stored_decision_or_probability_is_reported_with_its_batch_and_row(
    ffa: Lending, batches_dir: BatchFiles
) -> None:
    ff = ffa
    [a_id] = ff.batch_ids()
    b = ff.run(batches_dir.b)
    case = ff.pending_ids(b.batch_id)[0]
    manual = ff.wb(review_officer()).review.decide(case, "decline", reason="thin file")
    assert verify_decisions(ff.store).ok
    with ff.store.connect() as conn:
        auto = conn.execute(
            select(decisions.c.id, decisions.c.application_id).join(
                applications, applications.c.id == decisions.c.application_id)
            .where(applications.c.batch_id == b.batch_id, decisions.c.outcome == "decline",
                   decisions.c.kind == "auto").limit(1)).one()
    seq = audit_rows(ff.store, action="case_decided")[0]["seq"]
    drop_decision_guards(ff.store)
    tampering = {
        "an automatic decision's outcome": ("decisions", "outcome", "id", auto.id, "'approve'"),
        "a stored score": ("scores", "probability", "application_id", auto.application_id,
                           "probability / 2"),
        "the probability an application shows": ("applications", "probability", "id",
                                                 auto.application_id, "0.01"),
        "the status an application shows": ("applications", "status", "id", auto.application_id,
                                            "'approved'"),
        "an officer's decision": ("decisions", "outcome", "id", manual.id, "'approve'"),
    }
    for what, change in tampering.items():
        with tampered(ff.store, *change):
            result = verify_decisions(ff.store)
        assert not result.ok, f"changing {what} went unnoticed"
        assert a_id not in result.message, what  # the untouched batch is not blamed
        if change[3] == manual.id:
            assert (f"decisions {manual.id} (by oscar.officer, application {case}): differs from "
                    f"audit entry {seq}") in result.problems
        else:
            assert any(b.batch_id in p for p in result.problems), (what, result.problems)
        assert all(b.batch_id in p or f"decisions {manual.id} " in p for p in result.problems), what
        assert verify_decisions(ff.store).ok, f"{what}: restoring the value did not restore the check"


def review_officer() -> Principal:
    return Principal(None, "oscar.officer", frozenset({"officer"}))


def test_cli_audit_verify_also_checks_the_decisions(
    ff_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ff_sqlite.users()
    summary = ff_sqlite.run(batches_dir.a)
    drop_decision_guards(ff_sqlite.store)
    raw_sql(ff_sqlite.store, "UPDATE decisions SET outcome = 'approve' WHERE outcome = 'decline' "
                             "AND id = (SELECT min(id) FROM decisions WHERE outcome = 'decline')")
    monkeypatch.setenv("FINFLOW_USER", "mia.manager")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["audit", "verify"]) == 12
    assert summary.batch_id in capsys.readouterr().out


def test_one_applications_trail_holds_its_scoring_claim_and_decisions(ffa: Lending) -> None:
    ff = ffa
    [batch_id] = ff.batch_ids()
    case = ff.pending_ids()[0]
    external = ff_external_id(ff, case)
    officer, other = review_officer(), Principal(None, "paula.officer", frozenset({"officer"}))
    ff.wb(officer).review.claim(case)
    first = ff.wb(officer).review.decide(case, "refer", note="check the accounts")
    ff.wb(other).review.decide(case, "decline", reason="=SUM(A1)", supersedes=first.id)

    events = ff.wb(Principal(None, "ada.admin", frozenset({"admin"}))).audit.application_trail(external)
    actions = [e.action for e in events]
    for wanted in ("batch_uploaded", "batch_scored", "scored", "case_claimed", "decision_refer",
                   "decision_decline", "case_decided"):
        assert wanted in actions, f"{wanted} missing from {actions}"
    assert actions.count("case_decided") == 2
    scored = next(e for e in events if e.action == "scored")
    assert scored.model_version == ff.version
    assert scored.details["batch"] == batch_id

    text_csv = application_trail_csv(ff.store, external)
    rows = list(csv.DictReader(io.StringIO(text_csv)))
    assert [r["action"] for r in rows] == actions
    assert {r["actor"] for r in rows} >= {"oscar.officer", "paula.officer", "ann.analyst",
                                          f"model:{ff.version}"}
    assert not any(v.startswith("=") for r in rows for v in r.values())
    # another application's trail does not carry this one's decisions
    other_case = ff.pending_ids()[0]
    assert other_case != case  # (the decided case left the queue)
    other_actions = [e.action for e in application_trail(ff.store, ff_external_id(ff, other_case))]
    assert "case_decided" not in other_actions and "case_claimed" not in other_actions


def test_ids_longer_than_the_store_keeps_are_quarantined_never_cut(
    ff_sqlite: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without a max_length the id column takes the store's limit (128): a longer id is
    quarantined with its full text, so two ids sharing a prefix never become one."""
    raw = small_config_raw()
    for column in raw["dataset"]["columns"]:
        column.pop("max_length", None)
    path = tmp_path / "no_max_length.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("FINFLOW_CONFIG", str(path))
    ff_sqlite.config = load_config()
    df = pd.read_csv(batches_dir.b, dtype=str, keep_default_na=False).head(300)
    long_id = "LONG-" * 30
    df.loc[:9, "application_id"] = [f"{long_id}{i:05d}" for i in range(10)]
    summary = ff_sqlite.run(df.to_csv(index=False).encode(), name="long_ids.csv", engine=None)
    assert summary.issues_by_rule.get("max_length") == 10
    assert summary.rows_valid + summary.rows_quarantined == 300 and summary.rows_valid > 0
    check = verify_decisions(ff_sqlite.store)
    assert check.ok, check.message
    raw["dataset"]["columns"][0]["max_length"] = 500
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="max_length"):
        load_config()


def test_checks_and_exports_write_nothing(ffa_sqlite: Lending) -> None:
    """Reading trails, exports and checks writes nothing (they are safe for auditors)."""
    ff_sqlite = ffa_sqlite
    before = ff_sqlite.counts()
    verify_audit(ff_sqlite.store)
    verify_decisions(ff_sqlite.store)
    application_trail_csv(ff_sqlite.store, ff_external_id(ff_sqlite, ff_sqlite.pending_ids()[0]))
    assert ff_sqlite.counts() == before
