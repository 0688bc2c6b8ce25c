"""The model lifecycle's rows are sealed too: four-eyes proposals, experiments, a split's arms,
a shadow's scores, outcome files and outcomes. Someone who can write the database file (but
lacks the installation key) changes, deletes or inserts one, and ``audit verify`` names it by
table and row; the normal flows verify clean; rows from before sealing are adopted."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text
from store_helpers import ANALYST, MANAGER, PASSWORD, SECRET_KEY, BatchFiles, Lending
from trail import audit_rows

from finflow_core.cli import main
from finflow_core.services.access import Principal
from finflow_core.services.audit import VerificationReport
from finflow_core.services.context import Context
from finflow_core.services.review import Proposal
from finflow_core.services.workbench import Workbench
from finflow_core.store.seals import SealBroken

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

WHEN = datetime(2027, 9, 2, tzinfo=UTC)
LIFECYCLE = ("proposals", "experiments", "application_arms", "shadow_scores", "outcome_files",
             "outcomes")


def wb(ff: Lending, who: Principal) -> Workbench:
    return Workbench(Context(ff.config, ff.store, clock=lambda: WHEN), who)


def second_version(ff: Lending) -> str:
    """The session model registered again under a new version (a challenger)."""
    from finflow_core.store.model_files import load_bundle, save_bundle

    bundle = load_bundle(ff.model.folder, SECRET_KEY.encode())
    bundle.version = ff.version[:-8] + "0ddba11e"
    bundle.card = {**bundle.card, "version": bundle.version}
    bundle.strategy = bundle.strategy.with_edges(0.02, 0.9)
    folder = save_bundle(bundle, ff.config.paths.models_dir, SECRET_KEY.encode())
    ff.wb(ANALYST).models.register(bundle, folder)
    return bundle.version


@dataclass(frozen=True)
class Flows:
    confirmed: int  # a proposal a second officer confirmed
    rejected: int  # one a second officer sent back
    split: int  # a split that ran over batch b, then stopped
    idle: int  # a split started and stopped without a batch
    shadow: int  # a shadow that ran over the recession batch (still running)
    split_batch: str
    shadow_batch: str
    plain_batch: str  # batch a: no test ran over it
    outcome_file: int
    open_split_row: dict[str, object]  # the split's row while it ran (sealed, recorded)


def lifecycle(ff: Lending, batches: BatchFiles) -> Flows:
    """Every lifecycle flow once, through the services."""
    people = ff.users()
    admin = ff.wb(people["admin"])
    oscar = people["officer"]
    paula = admin.users.add("paula.officer", PASSWORD, ["officer"]).principal()
    admin.users.set_limit("oscar.officer", 1)  # every approval of his needs a second officer
    admin.users.set_limit("paula.officer", 10**9)
    cases = ff.pending_ids()
    proposed = []
    for case in cases[:2]:
        p = ff.wb(oscar).review.decide(case, "approve", note="good payer")
        assert isinstance(p, Proposal)
        proposed.append(p.id)
    ff.wb(paula).review.confirm(proposed[0], note="checked")
    ff.wb(paula).review.reject(proposed[1], note="income not verified")

    other = second_version(ff)
    manager = wb(ff, MANAGER)
    split = manager.experiments.start(other, share=0.2, reason="wider review band", seed=3)
    with ff.store.connect() as conn:
        open_row = dict(conn.execute(text("SELECT * FROM experiments WHERE id = :e"),
                                     {"e": split.id}).mappings().one())
    split_batch = ff.run(batches.b).batch_id
    manager.experiments.stop(split.id, reason="enough cases")
    idle = manager.experiments.start(other, share=0.1, reason="again", seed=4)
    manager.experiments.stop(idle.id, reason="started by mistake")
    shadow = manager.experiments.start(other, kind="shadow", reason="score it beside")
    shadow_batch = ff.run(batches.recession).batch_id

    analyst = wb(ff, ANALYST)
    plain = ff.batch_ids()[0]
    drawn = analyst.outcomes.simulate([plain], as_of=date(2027, 9, 1), seed=4)
    load = analyst.outcomes.load(drawn.to_csv(index=False).encode(), name="outcomes.csv")
    return Flows(proposed[0], proposed[1], split.id, idle.id, shadow.id, split_batch,
                 shadow_batch, plain, load.file_id, open_row)


def verify(ff: Lending) -> VerificationReport:
    return ff.wb(MANAGER).audit.verify()


def named(report: VerificationReport, table: str, row: str, problem: str) -> bool:
    return any(f.table == table and f.row.startswith(row) and f.problem == problem
               for f in report.findings)


def lines(report: VerificationReport) -> list[str]:
    return [f"{f.problem}: {f.line()}" for f in report.findings]


def sqlite_raw(ff: Lending, *statements: str, **params: object) -> None:
    """Statements on the database file itself, as an attacker with the sqlite3 shell runs them
    (no foreign keys enforced, the append-only triggers dropped first)."""
    path = ff.url.removeprefix("sqlite:///")
    db = sqlite3.connect(path)
    try:
        db.execute("DROP TRIGGER IF EXISTS outcomes_no_update")
        db.execute("DROP TRIGGER IF EXISTS outcomes_no_delete")
        for s in statements:
            db.execute(s, params)
        db.commit()
    finally:
        db.close()


def value(ff: Lending, sql: str, **params: object) -> object:
    with ff.store.connect() as conn:
        return conn.execute(text(sql), params).scalar()


@pytest.fixture
def flows(ffa_sqlite: Lending, batches_dir: BatchFiles) -> Flows:
    made = lifecycle(ffa_sqlite, batches_dir)
    report = verify(ffa_sqlite)
    assert report.ok, lines(report)
    return made


# -- the normal flows -------------------------------------------------------------------------

def test_the_lifecycle_flows_are_sealed_recorded_and_verify_clean(
    ffa: Lending, batches_dir: BatchFiles,
) -> None:
    ff = ffa  # both backends: PostgreSQL writes the arms, shadow scores and outcomes by COPY
    made = lifecycle(ff, batches_dir)
    for table in LIFECYCLE:
        assert ff.count(table) > 0, table
        assert ff.count(table, "WHERE seal IS NULL") == 0, table
    report = verify(ff)
    assert report.ok, lines(report)
    checked = report.integrity.checked
    assert checked["proposals"] == 2 and checked["experiments"] == 3
    assert checked["application_arms"] == ff.count("application_arms") > 500
    assert checked["shadow_scores"] == ff.count("shadow_scores") > 500
    assert checked["outcomes"] == ff.count("outcomes") > 0 and checked["outcome_files"] == 1
    scored = {e["subject_id"]: e["details"] for e in audit_rows(ff.store, action="batch_scored")}
    assert scored[made.split_batch]["seals"]["application_arms"]["n"] == ff.count("application_arms")
    assert scored[made.shadow_batch]["seals"]["shadow_scores"]["n"] == ff.count("shadow_scores")
    assert "application_arms" not in scored[made.plain_batch]["seals"]
    [loaded] = audit_rows(ff.store, action="outcomes_loaded")
    assert loaded["details"]["seals"]["outcomes"]["n"] == ff.count("outcomes")
    assert loaded["details"]["row_seal"]["table"] == "outcome_files"


# -- changed, deleted, inserted: each named by table and row ----------------------------------

def test_a_changed_proposal_experiment_and_outcome_file_are_named(flows: Flows,
                                                                    ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    sqlite_raw(ff, "UPDATE proposals SET amount = 1 WHERE id = :p", p=flows.confirmed)
    sqlite_raw(ff, "UPDATE experiments SET share = 0.5 WHERE id = :e", e=flows.split)
    sqlite_raw(ff, "UPDATE outcome_files SET file_name = 'other.csv' WHERE id = :f",
               f=flows.outcome_file)
    report = verify(ff)
    assert named(report, "proposals", f"{flows.confirmed} (application", "changed"), lines(report)
    assert named(report, "experiments", f"{flows.split} (split test", "changed"), lines(report)
    assert named(report, "outcome_files", f"{flows.outcome_file} (other.csv", "changed")
    assert len(report.findings) == 3, lines(report)


def test_deleted_proposal_experiment_and_outcome_file_are_named(flows: Flows,
                                                                ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    sqlite_raw(ff, "DELETE FROM proposals WHERE id = :p", p=flows.rejected)
    sqlite_raw(ff, "DELETE FROM experiments WHERE id = :e", e=flows.idle)
    sqlite_raw(ff, "DELETE FROM outcome_files WHERE id = :f", f=flows.outcome_file)
    report = verify(ff)
    assert named(report, "proposals", str(flows.rejected), "missing"), lines(report)
    assert named(report, "experiments", str(flows.idle), "missing"), lines(report)
    assert named(report, "outcome_files", str(flows.outcome_file), "missing"), lines(report)
    assert len(report.findings) == 3, lines(report)


def test_inserted_proposal_experiment_and_outcome_file_are_named(flows: Flows,
                                                                 ffa_sqlite: Lending) -> None:
    """Copies of real rows under a new id, their seals included: a seal covers its row's id."""
    ff = ffa_sqlite
    for table, row in (("proposals", flows.confirmed), ("experiments", flows.idle),
                       ("outcome_files", flows.outcome_file)):
        columns = [c for c in _columns(ff, table) if c != "id"]
        listed = ", ".join(columns)
        sqlite_raw(ff, f"INSERT INTO {table} (id, {listed}) SELECT 900, {listed} FROM {table} "
                   "WHERE id = :r", r=row)
    sqlite_raw(ff, "INSERT INTO proposals (id, application_id, outcome, proposed_by, proposed_at, "
               "needs, amount, probability, suggestion, status) VALUES (901, 1, 'approve', "
               "'oscar.officer', '2027-09-02T00:00:00Z', 'authority', 5, 0.1, 'approve', "
               "'rejected')")
    report = verify(ff)
    for table in ("proposals", "experiments", "outcome_files"):
        assert named(report, table, "900 (", "changed"), (table, lines(report))
    assert named(report, "proposals", "901 (application 1", "unsealed"), lines(report)
    assert any("seal-legacy" in f.message for f in report.findings if f.problem == "unsealed")
    assert len(report.findings) == 4, lines(report)


def test_a_proposal_and_a_test_put_back_to_an_older_sealed_state_are_named(
    flows: Flows, ffa_sqlite: Lending,
) -> None:
    """The split reopened with the seal it had while it ran: its seal matches, but not the
    one its stop recorded (and the next batch would be routed by it)."""
    ff = ffa_sqlite
    old = flows.open_split_row
    sqlite_raw(ff, "UPDATE experiments SET stopped_by = NULL, stopped_at = NULL, seal = :s "
               "WHERE id = :e", s=old["seal"], e=flows.split)
    report = verify(ff)
    assert named(report, "experiments", f"{flows.split} (split test", "rolled_back"), lines(report)
    assert len(report.findings) == 1, lines(report)


def test_changed_arms_shadow_scores_and_outcomes_are_named(flows: Flows,
                                                           ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    arm = value(ff, "SELECT min(application_id) FROM application_arms WHERE arm = 'champion'")
    shadow = value(ff, "SELECT min(application_id) FROM shadow_scores")
    outcome = value(ff, "SELECT min(id) FROM outcomes")
    sqlite_raw(ff, "UPDATE application_arms SET arm = 'challenger' WHERE application_id = :a",
               a=arm)
    sqlite_raw(ff, "UPDATE shadow_scores SET probability = 0.5 WHERE application_id = :a", a=shadow)
    sqlite_raw(ff, "UPDATE outcomes SET defaulted = 1 - defaulted WHERE id = :o", o=outcome)
    report = verify(ff)
    assert named(report, "application_arms", f"application {arm} (batch {flows.split_batch} row",
                 "changed"), lines(report)
    assert named(report, "shadow_scores", f"application {shadow} (batch {flows.shadow_batch}",
                 "changed"), lines(report)
    assert named(report, "outcomes", f"{outcome} (application", "changed"), lines(report)
    assert len(report.findings) == 3, lines(report)


def test_deleted_arms_shadow_scores_and_outcomes_are_named(flows: Flows,
                                                           ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    arm = value(ff, "SELECT max(application_id) FROM application_arms WHERE arm = 'challenger'")
    shadow = value(ff, "SELECT max(application_id) FROM shadow_scores")
    outcome = value(ff, "SELECT max(id) FROM outcomes")
    sqlite_raw(ff, "DELETE FROM application_arms WHERE application_id = :a", a=arm)
    sqlite_raw(ff, "DELETE FROM shadow_scores WHERE application_id = :a", a=shadow)
    sqlite_raw(ff, "DELETE FROM outcomes WHERE id = :o", o=outcome)
    report = verify(ff)
    assert named(report, "application_arms", f"application {arm} (batch {flows.split_batch} row",
                 "missing"), lines(report)
    assert named(report, "shadow_scores", f"application {shadow} (batch {flows.shadow_batch}",
                 "missing"), lines(report)
    assert named(report, "outcomes", f"{outcome} (outcome file {flows.outcome_file})", "missing")
    assert len(report.findings) == 3, lines(report)


def test_inserted_arms_shadow_scores_and_outcomes_are_named(flows: Flows,
                                                            ffa_sqlite: Lending) -> None:
    """An arm and a shadow score given to an application of the batch no test ran over, and an
    outcome copied under a new id, each with a real row's seal."""
    ff = ffa_sqlite
    target = value(ff, "SELECT min(id) FROM applications WHERE batch_id = :b", b=flows.plain_batch)
    sqlite_raw(ff, "INSERT INTO application_arms (application_id, experiment_id, arm, seal) "
               "SELECT :t, experiment_id, 'challenger', seal FROM application_arms LIMIT 1", t=target)
    sqlite_raw(ff, "INSERT INTO shadow_scores (application_id, experiment_id, model_version, "
               "probability, band, ev_approve, seal) SELECT :t, experiment_id, model_version, "
               "probability, band, ev_approve, seal FROM shadow_scores LIMIT 1", t=target)
    columns = ", ".join(c for c in _columns(ff, "outcomes") if c not in ("id", "supersedes_id"))
    sqlite_raw(ff, f"INSERT INTO outcomes (id, {columns}, supersedes_id) SELECT 9000, {columns}, "
               "id FROM outcomes ORDER BY id LIMIT 1")  # as a correction of the first
    sqlite_raw(ff, "INSERT INTO application_arms (application_id, experiment_id, arm) VALUES "
               "(:t, :e, 'champion')", t=target + 1, e=flows.split)
    report = verify(ff)
    where = f"application {target} (batch {flows.plain_batch} row"
    assert named(report, "application_arms", where, "changed"), lines(report)
    assert named(report, "shadow_scores", where, "changed"), lines(report)
    assert named(report, "outcomes", "9000 (application", "changed"), lines(report)
    assert named(report, "application_arms", f"application {target + 1} (batch", "unsealed")


def test_a_tampered_running_test_is_not_used_to_route_a_batch(flows: Flows, ffa_sqlite: Lending,
                                                              batches_dir: BatchFiles) -> None:
    ff = ffa_sqlite
    sqlite_raw(ff, "UPDATE experiments SET high_edge = 0.99 WHERE id = :e", e=flows.shadow)
    fresh = b"\n".join(batches_dir.a.read_bytes().splitlines()[:50]) + b"\n"  # not stored yet
    with pytest.raises(SealBroken, match="running shadow test"):
        ff.run(fresh)


def test_a_tampered_proposal_cannot_be_confirmed(ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    people = ff.users()
    admin = ff.wb(people["admin"])
    paula = admin.users.add("paula.officer", PASSWORD, ["officer"]).principal()
    admin.users.set_limit("oscar.officer", 1)
    admin.users.set_limit("paula.officer", 10**9)
    proposed = ff.wb(people["officer"]).review.decide(ff.pending_ids()[0], "approve", note="ok")
    assert isinstance(proposed, Proposal)
    sqlite_raw(ff, "UPDATE proposals SET amount = 1 WHERE id = :p", p=proposed.id)
    with pytest.raises(SealBroken, match="proposals row"):
        ff.wb(paula).review.confirm(proposed.id)


# -- rows from before sealing -----------------------------------------------------------------

def test_lifecycle_rows_from_before_sealing_are_named_then_adopted(
    flows: Flows, ffa_sqlite: Lending, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a database upgraded to 0011 looks like: the lifecycle's rows carry no seal."""
    ff = ffa_sqlite
    sqlite_raw(ff, *[f"UPDATE {t} SET seal = NULL" for t in LIFECYCLE])
    before = verify(ff)
    unsealed = {f.table for f in before.findings if f.problem == "unsealed"}
    assert unsealed == set(LIFECYCLE), lines(before)
    assert all("seal-legacy" in f.message for f in before.findings
               if f.problem == "unsealed" and "more row(s)" not in f.message)
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["audit", "seal-legacy"]) == 0
    capsys.readouterr()
    [adoption] = audit_rows(ff.store, action="legacy_rows_sealed")
    assert set(adoption["details"]["tables"]) == set(LIFECYCLE)
    after = verify(ff)
    assert after.ok, lines(after)
    assert ff.count("outcomes", "WHERE seal IS NULL") == ff.count("outcomes")  # kept in the trail
    outcome = value(ff, "SELECT min(id) FROM outcomes")
    sqlite_raw(ff, "UPDATE outcomes SET amount_lost = 0 WHERE id = :o", o=outcome)
    sqlite_raw(ff, "DELETE FROM application_arms WHERE application_id = (SELECT max("
               "application_id) FROM application_arms)")
    report = verify(ff)
    assert named(report, "outcomes", f"{outcome} (application", "changed"), lines(report)
    assert named(report, "application_arms", "application", "missing"), lines(report)
    assert len(report.findings) == 2, lines(report)


def _columns(ff: Lending, table: str) -> list[str]:
    with ff.store.connect() as conn:
        return [r[1] for r in conn.execute(text(f"PRAGMA table_info({table})"))]

