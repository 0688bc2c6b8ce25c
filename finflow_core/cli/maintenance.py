"""Maintenance commands: ``finflow backup`` (admin) and ``finflow restore`` (on the server)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from finflow_core.cli.common import Context, emit

EXIT_AUDIT_BROKEN = 12


def register(sub: Any) -> None:
    p = sub.add_parser("backup", help="copy the store to a file (SQLite online backup; admin)")
    p.add_argument("--out", required=True, type=Path, help="the backup file (must not exist)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=backup)

    p = sub.add_parser("restore", help="copy a backup into the store, then verify the audit trail "
                                       "(run on the server, FinFlow stopped; no sign-in needed)")
    p.add_argument("--from", dest="source", required=True, type=Path, help="a `finflow backup` file")
    p.add_argument("--force", action="store_true", help="replace a store that already holds data")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=restore)


def backup(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.workbench.maintenance.backup(args.out)
    emit(args, {"path": str(result.path), "bytes": result.bytes, "sha256": result.sha256,
                "audit_entries": result.audit_entries, "seconds": round(result.seconds, 3)},
         f"backed up the store to {result.path} ({result.bytes:,} bytes, {result.audit_entries:,} "
         f"audit entries, sha256 {result.sha256[:16]}...) in {result.seconds:.1f} s")
    return 0


def restore(ctx: Context, args: argparse.Namespace) -> int:
    from finflow_core.services.maintenance import restore as restore_store

    result = restore_store(ctx.config, args.source, force=args.force)
    emit(args, {"path": str(result.path), "from": str(result.source), "ok": result.ok,
                "replaced_data": result.replaced_data, "revision": result.revision,
                "chain": result.chain.message, "decisions": result.decisions.message},
         f"restored {result.path} from {result.source} (schema {result.revision})\n{result.message}")
    return 0 if result.ok else EXIT_AUDIT_BROKEN
