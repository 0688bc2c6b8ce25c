"""Data commands: demo data, training, the weekly run, models and batches."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from finflow_core.cli.common import Context, emit
from finflow_core.lending.synthetic import SCENARIOS, generate_applications
from finflow_core.lending.terms import DriftStatus

# The scoring stack (scikit-learn, LightGBM, SHAP) is imported by the commands that use it,
# so `finflow users ...`, `finflow audit ...` and `--help` start in a fraction of a second.

EXIT_DRIFT_ALERT = 11


def register(sub: Any) -> None:
    p = sub.add_parser("demo-data", help="write seeded synthetic loan applications to a CSV")
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--with-truth", action="store_true", help="add the true probability of default (true_pd)")
    p.add_argument("--drift", default="none", choices=sorted(SCENARIOS), help="shift the population")
    p.add_argument("--start-date", type=date.fromisoformat, default=date(2026, 1, 5))
    p.add_argument("--days", type=int, default=7, help="spread application dates over this many days")
    p.add_argument("--no-label", action="store_true", help="leave out the default column (a live batch)")
    p.set_defaults(handler=demo_data)

    p = sub.add_parser("train", help="train candidates on a labelled history and register the champion")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=train)

    p = sub.add_parser("weekly-run", help="validate, score, route, explain and measure drift of a batch")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, help="write decisions.csv, quarantine.csv and summary.json here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--fail-on-drift", action="store_true", help=f"exit {EXIT_DRIFT_ALERT} on a drift alert")
    p.add_argument("--chunk-rows", type=int, default=50_000)
    p.add_argument("--progress", action="store_true", help="print progress (default: on a terminal)")
    p.add_argument("--engine", choices=("local", "dask"), default="local")
    p.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster)")
    p.set_defaults(handler=weekly_run)

    p = sub.add_parser("models", help="list, show or promote model versions")
    msub = p.add_subparsers(dest="models_command", required=True)
    q = msub.add_parser("list")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=models_list)
    q = msub.add_parser("show")
    q.add_argument("version", nargs="?", help="default: the champion")
    q.set_defaults(handler=models_show)
    q = msub.add_parser("promote", help="make a version the champion (manager)")
    q.add_argument("version")
    q.add_argument("--note", "--reason", dest="note", default="",
                   help="why (required: recorded in the audit trail with the comparison)")
    q.set_defaults(handler=models_promote)

    p = sub.add_parser("batches", help="list stored batches or export one")
    bsub = p.add_subparsers(dest="batches_command", required=True)
    q = bsub.add_parser("list")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=batches_list)
    q = bsub.add_parser("export")
    q.add_argument("batch_id")
    q.add_argument("--out", required=True, type=Path)
    q.set_defaults(handler=batches_export)


def demo_data(ctx: Context, args: argparse.Namespace) -> int:
    df = generate_applications(
        args.rows, args.seed, drift=args.drift, with_truth=args.with_truth,
        start=args.start_date, days=args.days,
    )
    if args.no_label:
        df = df.drop(columns=["default"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    rate = f", default rate {df['default'].mean():.1%}" if "default" in df else ""
    print(f"wrote {len(df):,} applications to {args.out} (seed {args.seed}, drift {args.drift}{rate})")
    return 0


def train(ctx: Context, args: argparse.Namespace) -> int:
    outcome = ctx.workbench.models.train(args.data)
    card = outcome.card
    lines = [
        f"registered model {outcome.version} ({card['model']})"
        + (" as champion" if outcome.became_champion else " as candidate: a manager promotes it"),
        f"  rows {card['rows']:,}, default rate {card['default_rate']:.1%}, "
        f"{outcome.validation.rows_quarantined} rows quarantined",
    ]
    for c in outcome.candidates:
        m = c["metrics"]
        lines.append(f"  {c['name']:<16} AUC {m['auc']:.3f}  Brier {m['brier']:.4f}  "
                     f"out-of-fold profit {c['oof_profit']:,.0f}  cut-off {c['cutoff']:.3f}")
    s = card["strategy"]
    lines.append(f"  bands: approve below {s['low_edge']:.3f}, decline from {s['high_edge']:.3f}; "
                 f"automation {s['automation_rate']:.1%}")
    emit(args, {"version": outcome.version, "champion": outcome.became_champion, "card": card,
                "comparison": outcome.champion_comparison}, "\n".join(lines))
    return 0


def weekly_run(ctx: Context, args: argparse.Namespace) -> int:
    wb = ctx.workbench  # sign in before any work
    from finflow_core.services.batches import summary_payload

    progress = _progress_printer() if args.progress or sys.stderr.isatty() else None
    if args.engine == "dask":
        from finflow_core.pipeline.dask_engine import DaskEngine

        engine: Any = DaskEngine(args.scheduler)
    else:
        from finflow_core.pipeline.local import LocalEngine

        engine = LocalEngine(chunk_rows=args.chunk_rows)
    summary = wb.batches.run(args.data, engine=engine, progress=progress, out_dir=args.out)
    payload = summary_payload(summary)
    text = (
        f"batch {summary.batch_id}{' (already stored: nothing added)' if summary.already_stored else ''}\n"
        f"  rows {summary.rows_in:,}: {summary.rows_valid:,} valid, {summary.rows_quarantined:,} quarantined\n"
        f"  bands: {summary.bands['low']:,} approve, {summary.bands['medium']:,} review, "
        f"{summary.bands['high']:,} decline; automation {summary.automation_rate:.1%}\n"
        f"  expected profit {summary.expected_profit:,.0f}; {_drift_text(summary.drift)}"
        + (f"\n  reports in {args.out}" if args.out else "")
    )
    for w in summary.warnings:
        print(f"finflow: warning: {w}", file=sys.stderr)
    emit(args, payload, text)
    status = summary.drift["status"]
    if args.fail_on_drift and status == DriftStatus.ALERT:
        print("finflow: drift alert: retraining is recommended", file=sys.stderr)
        return EXIT_DRIFT_ALERT
    if args.fail_on_drift and status == DriftStatus.INSUFFICIENT:
        print(f"finflow: drift not measured: only {summary.drift.get('rows', 0):,} scored rows "
              f"(at least {summary.drift.get('min_rows', 0):,} are needed)", file=sys.stderr)
        return EXIT_DRIFT_ALERT
    return 0


def _drift_text(drift: dict[str, Any]) -> str:
    if drift["status"] == DriftStatus.INSUFFICIENT:
        return (f"drift not measured: {drift.get('rows', 0):,} scored rows, fewer than the "
                f"{drift.get('min_rows', 0):,} PSI needs")
    return f"drift {drift['status']} (score PSI {drift['score_psi']:.4f})"


def models_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ctx.workbench.models.versions()
    text = "\n".join(
        f"{r.version}  {r.status:<9} {r.model:<14} AUC {r.auc:.3f}  cut-off {r.cutoff:.3f}  "
        f"trained by {r.trained_by}" for r in rows
    ) or "no models yet: run `finflow train --data FILE.csv`"
    emit(args, [asdict(r) for r in rows], text)
    return 0


def models_show(ctx: Context, args: argparse.Namespace) -> int:
    print(json.dumps(ctx.workbench.models.card(args.version), indent=2))
    return 0


def models_promote(ctx: Context, args: argparse.Namespace) -> int:
    comparison = ctx.workbench.models.promote(args.version, args.note)
    if comparison is not None:
        print(f"compared on {comparison.source}")
        for w in comparison.warnings:
            print(f"warning: the candidate has {w}")
    print(f"model {args.version} is now the champion")
    return 0


def batches_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ctx.workbench.batches.list()
    text = "\n".join(
        f"{r.id}  {r.uploaded_at[:16]}  {r.file_name:<24} {r.rows_in:>8,} rows  "
        f"automation {r.automation_rate:.1%}  drift {r.drift_status}" for r in rows
    ) or "no batches stored yet"
    emit(args, [asdict(r) for r in rows], text)
    return 0


def batches_export(ctx: Context, args: argparse.Namespace) -> int:
    paths = ctx.workbench.batches.export(args.batch_id, args.out)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def _progress_printer() -> Any:
    """Progress on stderr: one updating line on a terminal, one line per chunk in a log."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        text = f"  {done:,} / ~{total:,} rows ({min(done / max(total, 1), 1):.0%})"
        print(("\r" + text) if tty else text, end="" if tty else "\n", file=sys.stderr, flush=True)
        if tty and done >= total:
            print(file=sys.stderr)
    return show
