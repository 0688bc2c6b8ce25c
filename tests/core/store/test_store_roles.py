"""Roles are enforced by the core whatever the entry point, and nothing is written when refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from store_helpers import (
    ANALYST,
    OFFICER,
    PASSWORD,
    SECRET_KEY,
    BatchFiles,
    Lending,
)

from finflow_core.errors import AuthError, PermissionDenied
from finflow_core.lending.intake.reader import open_batch
from finflow_core.pipeline.local import LocalEngine
from finflow_core.services.access import ROLES, Principal, allowed_roles
from finflow_core.services.audit import AuditFilter
from finflow_core.services.workbench import Workbench
from finflow_core.store.batch_queries import drift_history, list_batches
from finflow_core.store.model_files import load_bundle

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

Call = Callable[[Workbench, Lending, dict[str, Any]], Any]


def record_of(path: Path) -> dict[str, Any]:
    row = pd.read_csv(path, dtype=str, keep_default_na=False).iloc[0].to_dict()
    row["application_id"] = "FORM-0001"
    return row


#: Every service method that writes to the store, with the action it needs.
WRITES: dict[str, tuple[str, Call]] = {
    "batches.run": ("upload_batch", lambda wb, ff, ctx: wb.batches.run(ctx["batch"], scoring=ff.engine)),
    "batches.preview": ("upload_batch", lambda wb, ff, ctx: wb.batches.preview(ctx["batch"])),
    "batches._store": ("upload_batch", lambda wb, ff, ctx: wb.batches._store(
        open_batch(ctx["batch"], ff.config), LocalEngine(), scoring=ff.engine)),
    "models.train": ("train_model", lambda wb, ff, ctx: wb.models.train(ff.model.history)),
    "models.register": ("register_model", lambda wb, ff, ctx: wb.models.register(
        ctx["bundle"], ff.model.folder)),
    "models.promote": ("promote_model", lambda wb, ff, ctx: wb.models.promote(ff.version)),
    "models.save_strategy": ("edit_strategy", lambda wb, ff, ctx: wb.models.save_strategy(
        0.05, 0.3, "", ff.version)),
    "review.claim": ("claim_case", lambda wb, ff, ctx: wb.review.claim(ctx["case"])),
    "review.release": ("claim_case", lambda wb, ff, ctx: wb.review.release(ctx["claimed"])),
    "review.decide": ("decide_case", lambda wb, ff, ctx: wb.review.decide(ctx["case"], "approve")),
    "applications.submit": ("submit_application", lambda wb, ff, ctx: wb.applications.submit(
        ctx["record"], engine=ff.engine)),
    "users.add": ("manage_users", lambda wb, ff, ctx: wb.users.add("newbie", PASSWORD, ["officer"])),
    "users.set_roles": ("manage_users", lambda wb, ff, ctx: wb.users.set_roles(
        "vic.victim", ["officer", "manager"])),
    "users.reset_password": ("manage_users", lambda wb, ff, ctx: wb.users.reset_password(
        "vic.victim", "someone else's new password")),
    "users.disable": ("manage_users", lambda wb, ff, ctx: wb.users.disable("vic.victim")),
    "users.enable": ("manage_users", lambda wb, ff, ctx: wb.users.enable("vic.victim")),
    "maintenance.backup": ("backup_store", lambda wb, ff, ctx: wb.maintenance.backup(
        ff.home / f"backup_{wb.actor.username}.db")),
    "batches.void": ("void_batch", lambda wb, ff, ctx: wb.batches.void(ctx["batch_id"], "a test")),
}

#: Every service method that reads, with the action it needs.
READS: dict[str, tuple[str, Call]] = {
    "batches.list": ("view_batches", lambda wb, ff, ctx: wb.batches.list()),
    "batches.summary": ("view_batches", lambda wb, ff, ctx: wb.batches.summary(ctx["batch_id"])),
    "batches.decisions": ("view_batches", lambda wb, ff, ctx: wb.batches.decisions(ctx["batch_id"])),
    "batches.quarantine": ("view_batches", lambda wb, ff, ctx: wb.batches.quarantine(ctx["batch_id"])),
    "batches.issues": ("view_batches", lambda wb, ff, ctx: wb.batches.issues(ctx["batch_id"])),
    "batches.export": ("view_batches", lambda wb, ff, ctx: wb.batches.export(
        ctx["batch_id"], ff.home / f"export_{wb.actor.username}")),
    "applications.score": ("submit_application", lambda wb, ff, ctx: wb.applications.score(
        ctx["record"], engine=ff.engine)),
    "review.queue": ("view_queue", lambda wb, ff, ctx: wb.review.queue()),
    "review.counts": ("view_queue", lambda wb, ff, ctx: wb.review.counts()),
    "review.case": ("view_queue", lambda wb, ff, ctx: wb.review.case(ctx["case"])),
    "review.open": ("view_queue", lambda wb, ff, ctx: wb.review.open(ctx["case"], claim=False)),
    "review.find": ("view_queue", lambda wb, ff, ctx: wb.review.find("A-1")),
    "review.next_case": ("view_queue", lambda wb, ff, ctx: wb.review.next_case()),
    "review.model_name": ("view_queue", lambda wb, ff, ctx: wb.review.model_name(ff.version)),
    "portfolio.summary": ("view_portfolio", lambda wb, ff, ctx: wb.portfolio.summary()),
    "portfolio.filter_options": ("view_portfolio", lambda wb, ff, ctx: wb.portfolio.filter_options()),
    "drift.runs": ("view_drift", lambda wb, ff, ctx: wb.drift.runs()),
    "drift.distribution": ("view_drift", lambda wb, ff, ctx: wb.drift.distribution(
        ctx["drift_run"], "score")),
    "models.champion": ("view_models", lambda wb, ff, ctx: wb.models.champion()),
    "models.versions": ("view_models", lambda wb, ff, ctx: wb.models.versions()),
    "models.card": ("view_models", lambda wb, ff, ctx: wb.models.card()),
    "models.bundle": ("view_models", lambda wb, ff, ctx: wb.models.bundle(ff.version)),
    "models.active_strategy": ("view_models", lambda wb, ff, ctx: wb.models.active_strategy()),
    "models.what_if": ("view_models", lambda wb, ff, ctx: wb.models.what_if(0.1, 0.4)),
    "audit.entries": ("view_audit", lambda wb, ff, ctx: wb.audit.entries(AuditFilter())),
    "audit.verify": ("view_audit", lambda wb, ff, ctx: wb.audit.verify()),
    "audit.export_csv": ("view_audit", lambda wb, ff, ctx: wb.audit.export_csv()),
    "audit.application_trail": ("view_audit", lambda wb, ff, ctx: wb.audit.application_trail("A-1")),
    "audit.application_trail_csv": ("view_audit", lambda wb, ff, ctx: wb.audit.application_trail_csv(
        "A-1")),
    "users.list": ("manage_users", lambda wb, ff, ctx: wb.users.list()),
}


@pytest.fixture
def world(ffa_sqlite: Lending, batches_dir: BatchFiles) -> tuple[Lending, dict[str, Any]]:
    """Real users, a stored batch, an open case and a claimed one."""
    ff_sqlite = ffa_sqlite
    users = ff_sqlite.users()
    ff_sqlite.wb(users["admin"]).users.add("vic.victim", PASSWORD, ["officer"])
    case, claimed = ff_sqlite.pending_ids()[:2]
    ff_sqlite.wb(users["officer"]).review.claim(claimed)
    ctx = {"batch": batches_dir.b, "case": case, "claimed": claimed, "users": users,
           "record": record_of(batches_dir.b),
           "bundle": load_bundle(ff_sqlite.model.folder, SECRET_KEY.encode()),
           "batch_id": list_batches(ff_sqlite.store)[0].id,
           "drift_run": drift_history(ff_sqlite.store)[0]}
    return ff_sqlite, ctx


def without(action: str, users: dict[str, Principal]) -> list[Principal]:
    """Every user (real, signed in) lacking the role, and a principal with no role at all."""
    allowed = set(allowed_roles(action))
    lacking = [u for role, u in users.items() if role not in allowed]
    return [*lacking, Principal(None, "nobody", frozenset())]


def roles_that_may(name: str) -> set[str]:
    action = WRITES[name][0]
    if name == "batches._store":  # a batch of one is how an officer's form is stored
        return {*allowed_roles(action), *allowed_roles("submit_application")}
    return set(allowed_roles(action))


def test_every_write_refuses_a_principal_without_the_role_and_writes_nothing(
    world: tuple[Lending, dict[str, Any]]
) -> None:
    """For each write: each real user lacking the role, and a role-less principal, is refused
    with PermissionDenied (exit code 8) and no row changes anywhere, no model file is saved."""
    ff, ctx = world
    models_dir = ff.config.paths.models_dir
    before, files = ff.counts(), sorted(models_dir.rglob("*")) if models_dir.exists() else []
    problems = []
    for name, (_, call) in WRITES.items():
        may = roles_that_may(name)
        refused = [u for role, u in ctx["users"].items() if role not in may]
        refused.append(Principal(None, "nobody", frozenset()))
        for who in refused:
            try:
                call(ff.wb(who), ff, ctx)
            except PermissionDenied as exc:
                if exc.exit_code != 8 or who.username not in exc.message:
                    problems.append(f"{name} by {who.username}: unclear refusal {exc.message!r}")
            except Exception as exc:  # noqa: BLE001 - collected
                problems.append(f"{name} by {who.username}: {type(exc).__name__}: {exc}")
            else:
                problems.append(f"{name} by {who.username} was allowed")
            if ff.counts() != before:
                problems.append(f"{name} by {who.username} wrote to the store")
                before = ff.counts()
    assert problems == []
    assert (sorted(models_dir.rglob("*")) if models_dir.exists() else []) == files


def test_every_read_refuses_a_principal_without_the_role(world: tuple[Lending, dict[str, Any]]) -> None:
    """For each read: each real user lacking the role, and a role-less principal, is refused
    with PermissionDenied (exit code 8) naming the user; nothing is returned to them."""
    ff, ctx = world
    problems = []
    for name, (action, call) in READS.items():
        for who in without(action, ctx["users"]):
            try:
                call(ff.wb(who), ff, ctx)
            except PermissionDenied as exc:
                if exc.exit_code != 8 or who.username not in exc.message:
                    problems.append(f"{name} by {who.username}: unclear refusal {exc.message!r}")
            except Exception as exc:  # noqa: BLE001 - collected
                problems.append(f"{name} by {who.username}: {type(exc).__name__}: {exc}")
            else:
                problems.append(f"{name} by {who.username} was allowed")
    assert problems == []


def test_the_same_reads_answer_the_role_that_may(world: tuple[Lending, dict[str, Any]]) -> None:
    ff, ctx = world
    for name, (action, call) in READS.items():
        wb = ff.wb(ctx["users"][allowed_roles(action)[0]])
        assert call(wb, ff, ctx) is not None or name in ("models.champion", "review.next_case"), name


def test_the_same_writes_succeed_for_the_role_that_may(world: tuple[Lending, dict[str, Any]]) -> None:
    """The refusals above are about roles, not broken calls: the right role gets through."""
    ff, ctx = world
    for name, (action, call) in WRITES.items():
        if name in ("models.train", "models.register", "models.promote", "batches.preview"):
            continue  # slow, needs a second version (see test_store_audit), or writes nothing
        if name == "batches._store":
            ctx["batch"] = ff.home / "other.csv"
            ctx["batch"].write_bytes(ff.model.history.read_bytes()[:20_000].rsplit(b"\n", 1)[0])
        before = ff.counts()
        call(ff.wb(ctx["users"][allowed_roles(action)[0]]), ff, ctx)
        # every call writes (at least its audit entry); users.enable follows users.disable
        assert ff.counts() != before, name


def test_forged_roles_do_not_get_past_user_management(world: tuple[Lending, dict[str, Any]]) -> None:
    """User management re-reads the actor: a principal claiming admin but not one is refused."""
    ff, ctx = world
    officer = ctx["users"]["officer"]
    forged = Principal(officer.user_id, officer.username, frozenset({"admin"}))
    before = ff.counts()
    with pytest.raises(PermissionDenied):
        ff.wb(forged).users.add("sneaky", PASSWORD, ["admin"])
    with pytest.raises(PermissionDenied):
        ff.wb(forged).users.list()
    assert ff.counts() == before


def test_with_no_users_nobody_gets_in(ff: Lending) -> None:
    for name in ("admin", "system", "ada.admin", ""):
        with pytest.raises(AuthError):
            ff.gate.authenticate(name, PASSWORD)
    assert not ff.gate.has_users()


def test_each_role_holds_exactly_its_writes() -> None:
    table = {name: allowed_roles(action) for name, (action, _) in WRITES.items()}
    assert table["batches.run"] == table["models.train"] == ("analyst",)
    assert table["review.decide"] == table["review.claim"] == table["applications.submit"] == ("officer",)
    assert table["models.promote"] == table["models.save_strategy"] == ("manager",)
    assert table["users.add"] == ("admin",)
    assert set(ROLES) == {"analyst", "officer", "manager", "admin"}


def test_an_officer_may_store_a_single_application_but_not_a_batch(
    world: tuple[Lending, dict[str, Any]]
) -> None:
    ff, ctx = world
    officer = ff.wb(ctx["users"]["officer"])
    decision = officer.applications.submit(ctx["record"], engine=ff.engine)
    assert decision.valid and decision.stored_id is not None
    again = officer.applications.submit(ctx["record"], engine=ff.engine)
    assert again.stored_id == decision.stored_id  # the same form twice is stored once
    with pytest.raises(PermissionDenied):
        officer.batches.run(ctx["batch"], scoring=ff.engine)
    assert ff.count("batches", f"WHERE id = '{open_batch(ctx['batch'], ff.config).batch_id}'") == 0
    assert ANALYST.has_role("analyst") and not OFFICER.has_role("analyst")
