"""Administration commands: first-run set-up, users, and the audit trail."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from finflow_core.cli.common import Context, ask_password, count, emit
from finflow_core.errors import InvalidInput
from finflow_core.lending.terms import ROLES
from finflow_core.services.sessions import normalise_username

EXIT_AUDIT_BROKEN = 12


def register(sub: Any) -> None:
    p = sub.add_parser("setup", help="prepare the store; with --demo, a seeded demo model and sample batches")
    p.add_argument("--demo", action="store_true", help="create demo data and train the demo model if none")
    p.add_argument("--rows", type=count, default=20_000, help="rows of demo history")
    p.set_defaults(handler=setup)

    p = sub.add_parser("users", help="manage users (admin)")
    usub = p.add_subparsers(dest="users_command", required=True)
    q = usub.add_parser("add", help="add a user; with no users yet, the first admin (no --user needed)")
    q.add_argument("username")
    q.add_argument("--role", action="append", choices=[str(r) for r in ROLES], required=True, help="repeat for several roles")
    q.set_defaults(handler=users_add)
    q = usub.add_parser("list")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=users_list)
    q = usub.add_parser("set-roles")
    q.add_argument("username")
    q.add_argument("--role", action="append", choices=[str(r) for r in ROLES], required=True)
    q.set_defaults(handler=users_set_roles)
    for name, fn in (("disable", users_disable), ("enable", users_enable)):
        q = usub.add_parser(name)
        q.add_argument("username")
        q.set_defaults(handler=fn)
    q = usub.add_parser("set-limit", help="set an officer's lending authority (admin)")
    q.add_argument("username")
    q.add_argument("amount", help="the loan amount they may approve alone; 'none' clears it")
    q.set_defaults(handler=users_set_limit)
    q = usub.add_parser("passwd", help="set a password (your own, or anyone's as admin)")
    q.add_argument("username")
    q.set_defaults(handler=users_passwd)

    p = sub.add_parser("audit", help="verify, anchor or export the audit trail (admin, manager)")
    asub = p.add_subparsers(dest="audit_command", required=True)
    q = asub.add_parser("verify", help="check the keyed chain, its anchors and every sealed row "
                        "(exit 12 naming each problem)")
    q.add_argument("--anchor", action="append", default=[], metavar="FILE_OR_LINE",
                   help="also check this anchor (a file, or the line kept in a ticket); repeatable")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=audit_verify)
    q = asub.add_parser("anchor", help="sign the chain's head now, write it to audit.anchor_dir "
                        "and print a line to keep elsewhere (a ticket, another machine)")
    q.add_argument("--out", type=Path, help="also write the anchor to this new file")
    q.set_defaults(handler=audit_anchor)
    q = asub.add_parser("seal-legacy", help="adopt rows written before FinFlow sealed rows "
                        "(admin, once after upgrading: an audited trust-on-first-use step)")
    q.set_defaults(handler=audit_seal_legacy)
    q = asub.add_parser("export", help="export the trail as CSV (all, or one application / user)")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--application", help="an application id: its full trail")
    q.add_argument("--actor", help="only entries by this user")
    q.add_argument("--since")
    q.add_argument("--until")
    q.set_defaults(handler=audit_export)


def setup(ctx: Context, args: argparse.Namespace) -> int:
    from finflow_core.services.demo_setup import bootstrap

    result = bootstrap(ctx.services, demo=args.demo, history_rows=args.rows, log=_log)
    if result.setup_code:
        bar = "=" * 64
        print(f"\n{bar}\n  FinFlow first-run set-up code: {result.setup_code}\n"
              f"  Open FinFlow in a browser and enter it to create the first admin\n"
              f"  (valid 24 hours; only its hash is stored).\n{bar}\n", flush=True)
    return 0


def users_add(ctx: Context, args: argparse.Namespace) -> int:
    if not ctx.gate.has_users():
        password = ask_password(f"password for the first admin {args.username}: ")
        if "admin" not in args.role:
            raise InvalidInput("the first user must hold the admin role", field="roles")
        info = ctx.gate.create_first_admin(args.username, password).account.me()
    else:
        wb = ctx.workbench
        password = ask_password(f"password for {args.username}: ")
        info = wb.users.add(args.username, password, args.role)
    print(f"created user {info.username} with roles {', '.join(sorted(info.roles))}")
    return 0


def users_list(ctx: Context, args: argparse.Namespace) -> int:
    users = ctx.workbench.users.list()
    rows = [{"username": u.username, "roles": sorted(u.roles), "active": u.active,
             "last_login_at": u.last_login_at, "failed_logins": u.failed_logins,
             "lending_limit": u.lending_limit} for u in users]
    text = "\n".join(f"{r['username']:<20} {','.join(r['roles']):<30} "
                     f"{'active' if r['active'] else 'disabled'}" for r in rows)
    emit(args, rows, text)
    return 0


def users_set_roles(ctx: Context, args: argparse.Namespace) -> int:
    info = ctx.workbench.users.set_roles(args.username, args.role)
    print(f"{info.username} now holds {', '.join(sorted(info.roles))}")
    return 0


def users_set_limit(ctx: Context, args: argparse.Namespace) -> int:
    from finflow_core.formatting import money

    info = ctx.workbench.users.set_limit(args.username, args.amount)
    currency = ctx.config.economics.currency
    shown = "no limit of their own" if info.lending_limit is None else money(info.lending_limit, currency)
    print(f"{info.username}: lending limit {shown}")
    return 0


def users_disable(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workbench.users.disable(args.username)
    print(f"{args.username} is disabled")
    return 0


def users_enable(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workbench.users.enable(args.username)
    print(f"{args.username} is enabled")
    return 0


def users_passwd(ctx: Context, args: argparse.Namespace) -> int:
    """Your own password (the current one is the one you signed in with), or anyone's as admin."""
    wb = ctx.workbench
    own = normalise_username(args.username) == wb.actor.username
    password = ask_password(f"new password for {args.username}: ")
    if own:
        wb.account.change_password(ctx.password, password)
    else:
        wb.users.reset_password(args.username, password)
    print(f"password of {args.username} changed")
    return 0


def audit_verify(ctx: Context, args: argparse.Namespace) -> int:
    report = ctx.workbench.audit.verify(args.anchor)
    integrity = report.integrity
    emit(args, {"ok": report.ok, "chain": asdict(report.chain), "anchors": asdict(integrity.anchors),
                "checked": integrity.checked, "findings": [asdict(f) for f in report.findings],
                "decisions": asdict(report.decisions)},
         report.message)
    return 0 if report.ok else EXIT_AUDIT_BROKEN


def audit_anchor(ctx: Context, args: argparse.Namespace) -> int:
    made = ctx.workbench.audit.anchor(args.out)
    print(made.line)
    for path in made.paths:
        print(f"written to {path}", file=sys.stderr)
    return 0


def audit_seal_legacy(ctx: Context, args: argparse.Namespace) -> int:
    adoption = ctx.workbench.audit.seal_legacy()
    if adoption.seq is None:
        print("nothing to adopt: every row is sealed")
    else:
        rows = ", ".join(f"{t} {n:,}" for t, n in adoption.counts.items())
        print(f"sealed rows from before sealing ({rows}), recorded as audit entry {adoption.seq}")
    return 0


def audit_export(ctx: Context, args: argparse.Namespace) -> int:
    from finflow_core.services.audit import AuditFilter

    audit = ctx.workbench.audit
    if args.application:
        args.out.write_text(audit.application_trail_csv(args.application), encoding="utf-8")
    else:
        audit.export_csv(AuditFilter(actor=args.actor, since=args.since, until=args.until), args.out)
    print(f"wrote {args.out}")
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
