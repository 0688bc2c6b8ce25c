"""Data commands: demo data, training, the weekly run, models and batches."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from finflow_core.cli.common import Context, count, emit
from finflow_core.lending.synthetic import SCENARIOS, generate_applications
from finflow_core.lending.terms import DriftStatus

# The scoring stack (scikit-learn, LightGBM, SHAP) is imported by the commands that use it,
# so `finflow users ...`, `finflow audit ...` and `--help` start in a fraction of a second.

EXIT_DRIFT_ALERT = 11


def register(sub: Any) -> None:
    p = sub.add_parser("demo-data", help="write seeded synthetic loan applications to a CSV")
    p.add_argument("--rows", type=count, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--with-truth", action="store_true", help="add the true probability of default (true_pd)")
    p.add_argument("--drift", default="none", choices=sorted(SCENARIOS), help="shift the population")
    p.add_argument("--start-date", type=date.fromisoformat, default=date(2026, 1, 5))
    p.add_argument("--days", type=count, default=7, help="spread application dates over this many days")
    p.add_argument("--no-label", action="store_true", help="leave out the default column (a live batch)")
    p.set_defaults(handler=demo_data)

    p = sub.add_parser("train", help="train candidates on a labelled history and register the champion")
    p.add_argument("--data", type=Path, help="a labelled history (CSV); not with --challenger")
    p.add_argument("--challenger", action="store_true",
                   help="train on the champion's own data plus every stored application with an outcome")
    p.add_argument("--out", type=Path, help="write the training file's quarantine report here")
    p.add_argument("--allow-quarantine", action="store_true",
                   help="train even when more rows are quarantined than model.max_quarantine_share")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=train)

    p = sub.add_parser("weekly-run", help="validate, score, route, explain and measure drift of a batch")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, help="write decisions.csv, quarantine.csv and summary.json here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--fail-on-drift", action="store_true", help=f"exit {EXIT_DRIFT_ALERT} on a drift alert")
    p.add_argument("--chunk-rows", type=count, default=50_000)
    p.add_argument("--progress", action="store_true", help="print progress (default: on a terminal)")
    p.add_argument("--engine", choices=("local", "dask"), default="local")
    d = p.add_argument_group("Dask (--engine dask; see docs/SCALE_OUT.md)")
    d.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="the Dask scheduler (default: a local cluster started for the run)")
    d.add_argument("--connect-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                   help="to reach the scheduler and wait for a worker (default 10)")
    d.add_argument("--send-data", action="store_true",
                   help="send each partition from here (workers without the file on shared storage)")
    d.add_argument("--partitions", type=count, metavar="N",
                   help="about N partitions (default: ~75,000 applications each)")
    p.set_defaults(handler=weekly_run)

    p = sub.add_parser("models", help="list, show, compare, promote or roll back model versions")
    msub = p.add_subparsers(dest="models_command", required=True)
    q = msub.add_parser("list", help="every registered version and its status")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=models_list)
    q = msub.add_parser("show", help="a version's model card (JSON)")
    q.add_argument("version", nargs="?", help="default: the champion")
    q.set_defaults(handler=models_show)
    q = msub.add_parser("compare", help="a version against the champion (or --against) on the same outcomes")
    q.add_argument("version")
    q.add_argument("--against", help="the version to beat (default: the champion)")
    q.add_argument("--data", type=Path, help="a labelled CSV/Parquet of recent applications (an "
                   "out-of-time holdout); default: the version's own training rows, out of fold")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=models_compare)
    q = msub.add_parser("promote", help="make a version the champion (manager)")
    q.add_argument("version")
    q.add_argument("--reason", "--note", dest="reason", required=True,
                   help="why (recorded in the audit trail with the comparison)")
    q.set_defaults(handler=models_promote)
    q = msub.add_parser("rollback", help="restore the previous champion in one step (manager)")
    q.add_argument("--reason", required=True, help="why (audited)")
    q.set_defaults(handler=models_rollback)

    p = sub.add_parser("batches", help="list stored batches, export or void one")
    bsub = p.add_subparsers(dest="batches_command", required=True)
    q = bsub.add_parser("list")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=batches_list)
    q = bsub.add_parser("export")
    q.add_argument("batch_id")
    q.add_argument("--out", required=True, type=Path)
    q.set_defaults(handler=batches_export)
    q = bsub.add_parser("void", help="take a batch out of the queue and the portfolio so its file "
                                     "can be run again (manager; kept in the history)")
    q.add_argument("batch_id")
    q.add_argument("--reason", required=True, help="why (audited)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=batches_void)


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
    models = ctx.workbench.models
    if args.challenger == (args.data is not None):
        from finflow_core.errors import InvalidInput

        raise InvalidInput("give --data FILE.csv, or --challenger (the champion's data plus outcomes)",
                           field="data")
    if args.challenger:
        outcome = models.train_challenger(allow_over_limit=args.allow_quarantine, report_dir=args.out)
    else:
        outcome = models.train(args.data, allow_over_limit=args.allow_quarantine, report_dir=args.out)
    for w in outcome.warnings:
        print(f"finflow: warning: {w}", file=sys.stderr)
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
                     f"out-of-fold profit {_money(c['oof_profit'])}  cut-off {c['cutoff']:.3f}")
    s = card["strategy"]
    lines.append(f"  bands: approve below {s['low_edge']:.3f}, decline from {s['high_edge']:.3f}; "
                 f"automation {s['automation_rate']:.1%}; cut-off by {s.get('cutoff_method', 'profit')}")
    pricing = card.get("pricing") or {}
    if pricing.get("mode") == "none":
        lines.append("  pricing: none (no interest rate): profit figures are not computed")
    elif pricing.get("assumed"):
        lines.append(f"  pricing: assumed from the config for {', '.join(pricing['assumed'])}")
    if s.get("warning"):
        lines.append(f"  strategy: {s['warning']}")
    for name, path in outcome.reports.items():
        lines.append(f"  {name}: {path}")
    comparison = outcome.champion_comparison
    if comparison is not None:
        lines += comparison_lines(comparison)
    elif outcome.comparison_error:
        lines.append(f"  no comparison with the champion: {outcome.comparison_error}")
    emit(args, {"version": outcome.version, "champion": outcome.became_champion, "card": card,
                "comparison": None if comparison is None else comparison.audit_details(),
                "comparison_error": outcome.comparison_error}, "\n".join(lines))
    return 0


def comparison_lines(c: Any) -> list[str]:
    """A :class:`~finflow_core.services.model_comparison.ModelComparison` as a person reads it."""
    lines = [f"  against {c.champion.version} on {c.source}:"]
    for label, m in (("candidate", c.candidate), ("champion", c.champion)):
        auc = f"{m.auc:.3f}" if m.auc == m.auc else "not measurable (one outcome only)"
        lines.append(f"    {label:<9} {m.version:<28} AUC {auc}  calibration error "
                     f"{m.calibration_error:.3f}  profit {_money(m.profit)}  automation {m.automation_rate:.1%}")
    lines += [f"  warning: the candidate has {w}" for w in c.warnings]
    return lines


def _money(value: Any) -> str:
    from finflow_core.formatting import money

    return "not priced" if value is None or value != value else money(value)


def weekly_run(ctx: Context, args: argparse.Namespace) -> int:
    from finflow_core.services.files import check_out_dir

    if args.out is not None:
        check_out_dir(args.out)  # before signing in, reading or storing anything
    wb = ctx.workbench  # sign in before any work
    from finflow_core.services.batches import already_stored_text, summary_payload

    progress = _progress_printer() if args.progress or sys.stderr.isatty() else None
    engine = _engine(args)
    data = Path(os.path.abspath(args.data.expanduser()))  # workers may run in another folder
    summary = wb.batches.run(data, engine=engine, progress=progress, out_dir=args.out)
    payload = summary_payload(summary)
    profit = ("not priced" if summary.expected_profit is None
              else f"expected profit {summary.expected_profit:,.0f}")
    text = (
        f"batch {summary.batch_id}{' (already stored: nothing added)' if summary.already_stored else ''}\n"
        f"  rows {summary.rows_in:,}: {summary.rows_valid:,} valid, {summary.rows_quarantined:,} quarantined\n"
        f"  bands: {summary.bands['low']:,} approve, {summary.bands['medium']:,} review, "
        f"{summary.bands['high']:,} decline; automation {summary.automation_rate:.1%}\n"
        f"  {profit}; {_drift_text(summary.drift)}"
        + (f"\n  reports in {args.out}" if args.out else "")
    )
    if summary.already_stored:
        print(f"finflow: {already_stored_text(summary)}", file=sys.stderr)
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


def _engine(args: argparse.Namespace) -> Any:
    """The engine the options ask for (the Dask options need --engine dask)."""
    dask_only = [flag for flag, given in (("--scheduler", args.scheduler), ("--send-data", args.send_data),
                                          ("--partitions", args.partitions)) if given]
    if args.engine != "dask":
        if dask_only:
            from finflow_core.errors import InvalidInput

            raise InvalidInput(f"{', '.join(dask_only)} needs --engine dask", field="engine")
        from finflow_core.pipeline.local import LocalEngine

        return LocalEngine(chunk_rows=args.chunk_rows)
    from finflow_core.pipeline.dask_engine import DaskEngine

    return DaskEngine(args.scheduler, partitions=args.partitions, send_data=args.send_data,
                      connect_timeout=args.connect_timeout)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a number of seconds above 0")
    return value


def _drift_text(drift: dict[str, Any]) -> str:
    if drift.get("status") is None:
        return "drift not measured"
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


def models_compare(ctx: Context, args: argparse.Namespace) -> int:
    comparison = ctx.workbench.models.compare(args.version, args.against, data=args.data)
    emit(args, comparison.audit_details(), "\n".join(comparison_lines(comparison)).removeprefix("  "))
    return 0


def models_promote(ctx: Context, args: argparse.Namespace) -> int:
    comparison = ctx.workbench.models.promote(args.version, args.reason)
    if comparison is not None:
        print("\n".join(comparison_lines(comparison)).removeprefix("  "))
    print(f"model {args.version} is now the champion")
    return 0


def models_rollback(ctx: Context, args: argparse.Namespace) -> int:
    version = ctx.workbench.models.rollback(args.reason)
    print(f"rolled back: model {version} is the champion again")
    return 0


def batches_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ctx.workbench.batches.list()
    text = "\n".join(
        f"{r.id}  {r.uploaded_at[:16]}  {r.file_name:<24} {r.rows_in:>8,} rows  "
        f"automation {r.automation_rate:.1%}  drift {r.drift_status}"
        + (f"  VOIDED by {r.voided_by}: {r.void_reason}" if r.state == "voided" else "")
        for r in rows
    ) or "no batches stored yet"
    emit(args, [asdict(r) for r in rows], text)
    return 0


def batches_void(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.workbench.batches.void(args.batch_id, args.reason)
    emit(args, asdict(result),
         f"batch {result.batch_id} ({result.file_name}) is voided: {result.open_cases:,} open "
         "case(s) left the queue and its applications left the portfolio (all kept in the history "
         "and the audit trail); the same file can now be run again")
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
