"""The ``finflow`` command: the same core functions the app calls, for scripts and schedulers.

Exit codes (also in ``finflow --help``):
  0 success · 1 unexpected error · 2 bad command line (also an unusable --out) · 3 config
  error · 4 file rejected (not a batch, too large, too many columns) · 5 model missing or
  refused · 6 training data unusable · 7 sign-in failed · 8 role not allowed · 9 not found ·
  10 conflict (already decided / taken, the same file being stored by another run, a
  non-empty store to restore over) · 11 drift alert with --fail-on-drift · 12 audit chain
  broken · 13 database schema newer than this FinFlow · 14 database busy (locked by another
  process beyond the busy timeout) · 15 disk full · 16 not writable (read-only home, data
  folder or --out; database server unreachable) · 17 database damaged (not a database,
  truncated, failing its integrity check, or missing/empty where one was) · 18 not
  available for this database (PostgreSQL backup/restore: use pg_dump/pg_restore) · 19 Dask
  cluster unusable · 20 Dask cluster lost during the run (nothing stored) · 21 performance
  alert (``finflow monitor``) · 130 interrupted (Ctrl+C) · 141 the output's reader closed it
  (``| head``: the output is cut, the work was done)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from finflow_core.cli import admin, data, lifecycle, maintenance
from finflow_core.cli.common import run_command

EPILOG = """exit codes:
  0 success            5 model missing or refused      9 not found
  1 unexpected error   6 training data unusable       10 conflict (already decided/taken, being stored)
  2 bad command line   7 sign-in failed               11 drift alert or too few rows (--fail-on-drift)
  3 config error       8 role not allowed             12 audit chain broken
  4 file rejected      13 database from a newer FinFlow   14 database busy (locked too long)
  15 disk full         16 not writable (read-only home/data folder/--out, server unreachable)
  17 database damaged (not a database, truncated, failed integrity check, missing/empty)
  18 not for this database (PostgreSQL: use pg_dump / pg_restore)
  (4 = not a batch: empty, not CSV, wrong encoding, missing columns, too large, too many columns)
  19 Dask cluster unusable (address, no workers, workers that cannot read the file)
  20 Dask cluster lost during the run (nothing stored)   21 performance alert (monitor)
  130 interrupted (Ctrl+C)   141 output closed by its reader (| head: output cut, work done)

commands that change the store need a user: --user NAME (or FINFLOW_USER) and the password
in FINFLOW_PASSWORD, or typed at the prompt."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finflow",
        description="FinFlow: credit-risk decisioning for small-business lending.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="config YAML (default: $FINFLOW_CONFIG or the shipped one)")
    parser.add_argument("--user", help="acting user (default: $FINFLOW_USER)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data.register(sub)
    lifecycle.register(sub)
    admin.register(sub)
    maintenance.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
