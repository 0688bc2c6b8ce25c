"""Attacks by someone who can write the database file and knows every documented formula, but
not the installation key: each change is named by ``audit verify`` by table and row."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import joblib
import pytest
from sqlalchemy import select, text
from store_helpers import (
    ADMIN,
    ANALYST,
    MANAGER,
    OFFICER,
    PASSWORD,
    SECRET_KEY,
    BatchFiles,
    Lending,
)
from tamper import cut_tail, drop_guards, one, raw_sql, rechain
from trail import audit_rows

from finflow_core.cli import main
from finflow_core.services.audit import VerificationReport
from finflow_core.store.chain_hash import canonical_json
from finflow_core.store.lending_tables import applications
from finflow_core.store.model_files import ARTIFACT, read_card, save_bundle, sha256_file, sign_card
from finflow_core.store.model_files import load_bundle as real_load_bundle
from finflow_core.store.seals import SealBroken

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def verify(ff: Lending) -> VerificationReport:
    return ff.wb(MANAGER).audit.verify()


def problems(report: VerificationReport) -> list[tuple[str, str, str]]:
    return [(f.table, f.row, f.problem) for f in report.findings]


def named(report: VerificationReport, table: str, row: str, problem: str | None = None) -> bool:
    """Whether a finding names ``table`` and a row whose label starts with ``row``."""
    return any(f.table == table and f.row.startswith(row) and problem in (None, f.problem)
               for f in report.findings)


def case_row(ff: Lending, application_id: int) -> str:
    with ff.store.connect() as conn:
        r = conn.execute(select(applications.c.batch_id, applications.c.row_number)
                         .where(applications.c.id == application_id)).one()
    return f"{application_id} (batch {r.batch_id} row {r.row_number}"


# -- the README's tamper demo, done properly ---------------------------------------------------

def test_the_readme_tamper_demo_done_properly_is_named(
    ff_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Triggers dropped; a manual decline made an approval in decisions, applications and the
    entry's details; every hash and prev_hash recomputed; the head moved."""
    ff = ff_sqlite
    ff.users()
    ff.run(batches_dir.a, actor=ff.gate.authenticate("ann.analyst", PASSWORD))
    officer = ff.gate.authenticate("oscar.officer", PASSWORD)
    case = ff.pending_ids()[0]
    declined = ff.wb(officer).review.decide(case, "decline", reason="thin file")
    assert verify(ff).ok
    entry = audit_rows(ff.store, action="case_decided")[-1]
    drop_guards(ff.store)
    with ff.store.begin() as conn:
        conn.execute(text("UPDATE decisions SET outcome = 'approve', reason = '' WHERE id = :d"),
                     {"d": declined.id})
        conn.execute(text("UPDATE applications SET status = 'approved', expected_profit = "
                          "(SELECT ev_approve FROM scores WHERE application_id = :a) WHERE id = :a"),
                     {"a": case})
        details = {**entry["details"], "outcome": "approve", "reason": ""}
        rechain(conn, {entry["seq"]: {"details": canonical_json(details)}})
    monkeypatch.setenv("FINFLOW_USER", "mia.manager")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["audit", "verify"]) == 12
    out = capsys.readouterr().out
    verdict = out.splitlines()[0]  # the chain's verdict comes first
    assert "recomputed without the installation key" in verdict and "re-chained" in verdict
    assert "anchor(s)" in out and "disagree with the chain" in out  # the batch's anchor
    assert f"decisions {declined.id} (by oscar.officer, application {case}): was changed" in out
    assert main(["audit", "verify", "--json"]) == 12
    report = json.loads(capsys.readouterr().out)
    tables = {(f["table"], f["problem"]) for f in report["findings"]}
    assert {("decisions", "changed"), ("audit_log", "rewritten")} <= tables


# -- users and roles -------------------------------------------------------------------------------

def test_granting_admin_then_deleting_those_entries_and_moving_the_head_back_is_named(
    ff: Lending, batches_dir: BatchFiles
) -> None:
    ff.users()
    admin = ff.gate.authenticate("ada.admin", PASSWORD)
    keep = audit_rows(ff.store)[-1]["seq"]
    ff.wb(admin).users.set_roles("ann.analyst", ["analyst", "admin"])
    drop_guards(ff.store)
    cut_tail(ff.store, keep)  # a valid, shorter chain: the chain alone cannot tell
    report = verify(ff)
    assert report.chain.ok
    assert named(report, "users", "2 (ann.analyst, roles admin,analyst)", "rolled_back")
    assert named(report, "audit_log", f"entries {keep + 1} to", "truncated")  # anchored at once
    assert not report.ok


def test_a_cut_off_tail_is_named_by_the_anchor_taken_after_it(ff: Lending) -> None:
    ff.users()
    admin = ff.gate.authenticate("ada.admin", PASSWORD)
    keep = audit_rows(ff.store)[-1]["seq"]
    ff.wb(admin).users.set_roles("ann.analyst", ["analyst", "admin"])
    anchor = ff.wb(ADMIN).audit.anchor()
    drop_guards(ff.store)
    cut_tail(ff.store, keep)
    raw_sql(ff.store, "UPDATE users SET roles = 'analyst', seal = NULL WHERE username = 'ann.analyst'")
    report = verify(ff)
    assert named(report, "audit_log", f"entries {keep + 1} to {anchor.anchor.seq}", "truncated")
    assert named(report, "users", "2 (ann.analyst", "unsealed")


def test_roles_granted_by_sql_are_named(ff: Lending) -> None:
    ff.users()
    raw_sql(ff.store, "UPDATE users SET roles = 'admin,analyst' WHERE username = 'ann.analyst'")
    report = verify(ff)
    assert problems(report) == [("users", "2 (ann.analyst, roles admin,analyst)", "changed")]


def test_a_password_put_back_to_an_older_sealed_one_is_named(ff: Lending) -> None:
    ff.users()
    old = one(ff.store, "SELECT password_hash, seal FROM users WHERE username = 'oscar.officer'")
    ff.wb(ff.gate.authenticate("ada.admin", PASSWORD)).users.reset_password(
        "oscar.officer", "another long test password")
    raw_sql(ff.store, "UPDATE users SET password_hash = :h, seal = :s WHERE username = 'oscar.officer'",
            h=old.password_hash, s=old.seal)
    assert named(verify(ff), "users", "3 (oscar.officer", "rolled_back")


# -- the lending record -----------------------------------------------------------------------------

def pending(ff: Lending) -> int:
    return ff.pending_ids()[0]


def decided(ff: Lending) -> int:
    case = ff.pending_ids()[1]
    ff.wb(OFFICER).review.decide(case, "approve", note="fine")
    return case


def declined(ff: Lending) -> int:
    with ff.store.connect() as conn:
        return int(conn.execute(text("SELECT min(id) FROM applications WHERE band = 'high'"))
                   .scalar_one())


#: case -> (pick the application, the SQL that changes it, the (table, problem)s verify names)
ATTACKS: dict[str, tuple[Callable[[Lending], int], list[str], set[tuple[str, str]]]] = {
    "probability of a pending case": (pending, [
        "UPDATE scores SET probability = 0.01 WHERE application_id = :a",
        "UPDATE applications SET probability = 0.01 WHERE id = :a"],
        {("scores", "changed"), ("applications", "changed")}),
    "probability of an officer-decided case": (decided, [
        "UPDATE scores SET probability = 0.99 WHERE application_id = :a",
        "UPDATE applications SET probability = 0.99 WHERE id = :a"],
        {("scores", "changed"), ("applications", "changed")}),
    "reason codes of a declined case": (declined, [
        "UPDATE scores SET reasons = '[]' WHERE application_id = :a"],
        {("scores", "changed"), ("decisions", "changed")}),
    "loan amount": (pending, [
        "UPDATE applications SET amount = amount * 10 WHERE id = :a"],
        {("applications", "changed")}),
    "the status an application shows": (declined, [
        "UPDATE applications SET status = 'approved' WHERE id = :a"],
        {("applications", "inconsistent")}),
    "an automatic decline made an approval": (declined, [
        "UPDATE decisions SET outcome = 'approve' WHERE application_id = :a"],
        {("decisions", "changed")}),
    "an application deleted with its score and decision": (declined, [
        "UPDATE applications SET current_decision_id = NULL WHERE id = :a",
        "DELETE FROM decisions WHERE application_id = :a",
        "DELETE FROM scores WHERE application_id = :a",
        "DELETE FROM applications WHERE id = :a"],
        {("applications", "missing"), ("scores", "missing"), ("decisions", "missing")}),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_changed_fact_is_named_by_table_and_row(ffa: Lending, attack: str) -> None:
    pick, statements, expected = ATTACKS[attack]
    case = pick(ffa)
    assert verify(ffa).ok
    label = case_row(ffa, case)
    drop_guards(ffa.store)
    raw_sql(ffa.store, *statements, a=case)
    report = verify(ffa)
    assert not report.ok
    assert expected <= {(f.table, f.problem) for f in report.findings}, problems(report)
    if "deleted" in attack:  # named by the file's row number: every row is stored or quarantined
        batch, row = label.split("(batch ")[1].split(" row ")
        assert named(report, "applications", f"batch {batch} row {row}", "missing")
        return
    for table, problem in expected:
        assert any(f.table == table and f.problem == problem and str(case) in f.row
                   for f in report.findings), (table, problem, problems(report))


def test_only_the_changed_rows_are_named(ffa: Lending, batches_dir: BatchFiles) -> None:
    b = ffa.run(batches_dir.b)
    case = ffa.pending_ids(b.batch_id)[0]
    raw_sql(ffa.store, "UPDATE scores SET ev_approve = ev_approve + 1 WHERE application_id = :a", a=case)
    report = verify(ffa)
    assert [(f.table, f.problem) for f in report.findings] == [("scores", "changed")]
    assert report.findings[0].row.startswith(f"application {case_row(ffa, case)}")
    assert b.batch_id in report.findings[0].row


# -- what drives the next decision: strategies and models -----------------------------------------

def test_an_inserted_strategy_is_refused_and_named(ff: Lending, batches_dir: BatchFiles) -> None:
    """Approve everything below 0.95: the next batch would run at 100% automation."""
    raw_sql(ff.store, "INSERT INTO strategies (model_version, low_edge, high_edge, note, saved_at, "
            "saved_by) VALUES (:v, 0.95, 0.99, '', '2026-12-01T00:00:00.000000+00:00', "
            "'mia.manager')", v=ff.version)
    with pytest.raises(SealBroken, match="band edges saved for .* no seal") as caught:
        ff.wb(ANALYST).batches.run(batches_dir.b)  # the real champion engine, not the cached one
    assert caught.value.exit_code == 12 and ff.batch_ids() == []
    report = verify(ff)
    assert named(report, "strategies", "1 (model", "unsealed")


def test_changed_band_edges_are_refused_and_named(ff: Lending, batches_dir: BatchFiles) -> None:
    ff.wb(MANAGER).models.save_strategy(0.05, 0.4, "tighter")
    raw_sql(ff.store, "UPDATE strategies SET low_edge = 0.95, high_edge = 0.99")
    with pytest.raises(SealBroken, match="fails its seal"):
        ff.wb(ANALYST).batches.run(batches_dir.b)
    assert problems(verify(ff)) == [("strategies", f"1 (model {ff.version}, band edges 0.95/0.99)",
                                     "changed")]


def swapped_champion(ff: Lending) -> tuple[str, Any]:
    """A champion of this installation's own (a copy of the session model), and its folder."""
    bundle = real_load_bundle(ff.model.folder, SECRET_KEY.encode())
    bundle.version = ff.version[:-8] + "5a5a5a5a"
    bundle.card = {**bundle.card, "version": bundle.version}
    folder = save_bundle(bundle, ff.config.paths.models_dir, SECRET_KEY.encode())
    ff.wb(ANALYST).models.register(bundle, folder)
    ff.wb(MANAGER).models.promote(bundle.version, "own copy")
    evil = folder / ARTIFACT
    joblib.dump({"not": "the model"}, evil)  # stands in for a hostile pickle
    return bundle.version, folder


@pytest.mark.parametrize("signing_key", [b"a-guessed-key-0123456789", SECRET_KEY.encode()],
                         ids=["card-re-signed-with-a-guess", "card-re-signed-with-the-real-key"])
def test_a_swapped_model_with_a_re_signed_card_and_hash_is_refused_unpickled_and_named(
    ff: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch, signing_key: bytes
) -> None:
    version, folder = swapped_champion(ff)
    card = read_card(folder)
    card["artifact_sha256"] = sha256_file(folder / ARTIFACT)
    card["signature"] = sign_card(card, signing_key)
    (folder / "model_card.json").write_text(json.dumps(card))
    raw_sql(ff.store, "UPDATE model_versions SET artifact_sha256 = :s WHERE version = :v",
            s=card["artifact_sha256"], v=version)
    monkeypatch.setattr("finflow_core.store.model_files.joblib.load", _never)
    with pytest.raises(SealBroken, match=f"model version {version} .*fails its seal"):
        ff.wb(ANALYST).batches.run(batches_dir.b)
    report = verify(ff)
    assert named(report, "model_versions", version, "changed")
    assert any(f.row == version and "the model was swapped" in f.message for f in report.findings)
    guessed = signing_key != SECRET_KEY.encode()
    assert any("not signed with this installation's key" in f.message
               for f in report.findings) is guessed


def test_a_key_holder_who_re_seals_the_swapped_row_is_still_named_by_the_trail(
    ff: Lending, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finflow_core.security.keys import load_key
    from finflow_core.store.seals import seal_row

    version, folder = swapped_champion(ff)
    new_sha = sha256_file(folder / ARTIFACT)
    with ff.store.begin() as conn:
        row = dict(conn.execute(text("SELECT * FROM model_versions WHERE version = :v"),
                                {"v": version}).mappings().one())
        row["artifact_sha256"] = new_sha
        conn.execute(text("UPDATE model_versions SET artifact_sha256 = :s, seal = :seal "
                          "WHERE version = :v"),
                     {"s": new_sha, "seal": seal_row(load_key(), "model_versions", row), "v": version})
    report = verify(ff)
    assert any(f.row == version and "audit entry" in f.message and "swapped" in f.message
               for f in report.findings), problems(report)


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a swapped model file was unpickled")


# -- the CLI names every problem ------------------------------------------------------------------

def test_cli_verify_exits_12_and_lists_every_problem(
    ffa_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ff = ffa_sqlite
    ff.users()
    case, high = ff.pending_ids()[0], declined(ff)
    drop_guards(ff.store)
    raw_sql(ff.store, "UPDATE applications SET amount = 1 WHERE id = :a", a=case)
    raw_sql(ff.store, "UPDATE decisions SET outcome = 'approve' WHERE application_id = :a", a=high)
    raw_sql(ff.store, "UPDATE users SET roles = 'admin' WHERE username = 'oscar.officer'")
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["audit", "verify"]) == 12
    out = capsys.readouterr().out
    assert "problem(s):" in out and "audit chain intact" in out
    for line in (f"applications {case} (batch", "(automatic, application ",
                 "users 3 (oscar.officer, roles admin)"):
        assert line in out, out


def test_verify_pages_over_interleaved_batches_and_names_a_row_past_a_page_boundary(
    ffa_sqlite: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages follow the primary key (a rowid range per batch), so rows of another batch inside
    the range are skipped, not blamed, and nothing is checked twice or left out."""
    ff = ffa_sqlite
    b = ff.run(batches_dir.b)
    monkeypatch.setattr("finflow_core.store.verify_batches.PAGE", 7)
    with ff.store.connect() as conn:
        first_a = conn.execute(text("SELECT min(id) FROM applications")).scalar_one()
    drop_guards(ff.store)
    clean = verify(ff)
    assert clean.ok, clean.message
    total = ff.count("applications")
    assert clean.integrity.checked["applications"] == total
    case = ff.pending_ids(b.batch_id)[10]
    raw_sql(ff.store, "UPDATE applications SET amount = amount + 1 WHERE id = :a", a=case)
    raw_sql(ff.store, "UPDATE applications SET batch_id = :b, row_number = -1 WHERE id = :a",
            b=b.batch_id, a=first_a + 3)  # a row of a, now claimed by b, inside a's range
    report = verify(ff)
    assert report.integrity.checked["applications"] == total
    assert named(report, "applications", f"{case} (batch {b.batch_id}", "changed")
    assert named(report, "applications", f"{first_a + 3} (batch {b.batch_id} row -1", "changed")


def test_a_malformed_seal_is_named_not_a_crash(ffa: Lending) -> None:
    case = pending(ffa)
    raw_sql(ffa.store, "UPDATE scores SET seal = :s WHERE application_id = :a",
            s="not a seal, but 32 characters!!!", a=case)
    report = verify(ffa)
    assert named(report, "scores", f"application {case_row(ffa, case)}", "changed")
    assert named(report, "scores", "batch ", "missing")  # its batch's seal sum no longer adds up


# -- a batch's state and config -------------------------------------------------------------------

def test_a_batch_voided_or_put_back_or_its_config_changed_by_sql_is_named(ffa: Lending) -> None:
    """Voiding takes a batch's open cases out of the queue: by SQL it passed verify."""
    (bid,) = ffa.batch_ids()
    raw_sql(ffa.store, "UPDATE batches SET state = 'voided', voided_by = 'mia.manager', "
            "void_reason = 'x' WHERE id = :b", b=bid)
    assert problems(verify(ffa)) == [("batches", bid, "changed")]
    raw_sql(ffa.store, "UPDATE batches SET state = 'published', voided_by = NULL, "
            "void_reason = NULL WHERE id = :b", b=bid)
    assert verify(ffa).ok
    ffa.wb(MANAGER).batches.void(bid, "wrong config")
    assert verify(ffa).ok  # voided through FinFlow: recorded
    raw_sql(ffa.store, "UPDATE batches SET void_reason = 'routine' WHERE id = :b", b=bid)
    assert [f.message for f in verify(ffa).findings] == [
        "void_reason 'routine' differs from audit entry "
        f"{max(r['seq'] for r in audit_rows(ffa.store) if r['action'] == 'batch_voided')} "
        "('wrong config')"]
    raw_sql(ffa.store, "UPDATE batches SET state = 'published', void_reason = 'wrong config' "
            "WHERE id = :b", b=bid)
    assert named(verify(ffa), "batches", bid, "changed")  # its cases back in the queue
    raw_sql(ffa.store, "UPDATE batches SET state = 'voided', config_sha256 = :c WHERE id = :b",
            b=bid, c="0" * 64)
    assert [f.message.split(" differs")[0] for f in verify(ffa).findings] == [
        f"config_sha256 '{'0' * 64}'"]


def test_a_batch_scored_under_a_config_without_a_file_hash_verifies(
    ff: Lending, batches_dir: BatchFiles,
) -> None:
    """A config built in code (no file, so no hash) is stored as NULL and audited as "": the
    two mean the same and must not read as a changed config."""
    from dataclasses import replace

    from finflow_core.services.scoring_engines import champion_engine

    ff.config = replace(ff.config, sha256="")
    summary = ff.run(batches_dir.a, scoring=champion_engine(ff.context))
    assert summary.config_sha256 == ""
    assert verify(ff).ok, [f.message for f in verify(ff).findings]
    raw_sql(ff.store, "UPDATE batches SET config_sha256 = :c WHERE id = :b",
            b=summary.batch_id, c="0" * 64)
    assert problems(verify(ff)) == [("batches", summary.batch_id, "changed")]
