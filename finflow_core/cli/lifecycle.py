"""Lifecycle commands: outcomes in, performance by vintage, the monitor a scheduler runs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from finflow_core.cli.common import Context, emit
from finflow_core.lending.terms import DriftStatus

EXIT_DRIFT_ALERT = 11
EXIT_PERFORMANCE_ALERT = 21


def register(sub: Any) -> None:
    p = sub.add_parser("outcomes", help="load realised outcomes (who defaulted) of funded loans")
    osub = p.add_subparsers(dest="outcomes_command", required=True)
    q = osub.add_parser("load", help="check an outcome file and record it, all or nothing (analyst)")
    q.add_argument("--data", required=True, type=Path)
    q.add_argument("--correction", metavar="REASON", default="",
                   help="the file corrects outcomes already recorded: why (audited)")
    q.add_argument("--out", type=Path, help="write outcome_issues.csv here when the file is refused")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=outcomes_load)
    q = osub.add_parser("simulate", help="demo: draw outcomes of stored batches from the generator's truth")
    q.add_argument("--batch", action="append", required=True, help="a stored batch id (repeat)")
    q.add_argument("--as-of", type=date.fromisoformat, required=True, help="observation date YYYY-MM-DD")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--downturn", type=float, default=0.0,
                   help="add this to every risk score (0.8 is a sharp downturn)")
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(handler=outcomes_simulate)

    p = sub.add_parser("performance", help="how the model did, vintage by vintage (analyst, manager)")
    p.add_argument("--by", choices=("batch", "month"), default="batch")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=performance)

    p = sub.add_parser("experiments", help="champion against challenger: split, shadow, replay")
    esub = p.add_subparsers(dest="experiments_command", required=True)
    q = esub.add_parser("start", help="send a share of each batch to a challenger (manager)")
    q.add_argument("version")
    q.add_argument("--share", type=float, default=0.10, help="share of each batch (default 0.10)")
    q.add_argument("--shadow", action="store_true", help="score beside the champion, never deciding")
    q.add_argument("--seed", type=int, help="the assignment's seed (default: a random one, recorded)")
    q.add_argument("--reason", required=True)
    q.set_defaults(handler=experiments_start)
    q = esub.add_parser("stop", help="stop a running test (manager)")
    q.add_argument("id", type=int)
    q.add_argument("--reason", required=True)
    q.set_defaults(handler=experiments_stop)
    q = esub.add_parser("list", help="running and past tests")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=experiments_list)
    q = esub.add_parser("compare", help="the two arms of a split, with confidence intervals")
    q.add_argument("id", type=int)
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=experiments_compare)
    q = esub.add_parser("replay", help="the decisions a version would have changed on past applications")
    q.add_argument("version")
    q.add_argument("--batch", action="append", default=[], help="only these batches (repeat)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=experiments_replay)

    p = sub.add_parser("monitor", help=f"drift and performance alerts for schedulers (exit "
                                       f"{EXIT_DRIFT_ALERT} drift, {EXIT_PERFORMANCE_ALERT} performance)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=monitor)


def outcomes_load(ctx: Context, args: argparse.Namespace) -> int:
    from finflow_core.services.files import write_csv

    wb = ctx.workbench
    preview = wb.outcomes.preview(args.data, correction_reason=args.correction)
    if not preview.ok and args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(preview.issues, args.out / "outcome_issues.csv")
        print(f"finflow: issues written to {args.out / 'outcome_issues.csv'}", file=sys.stderr)
    elif not preview.ok:
        for r in preview.issues.head(20).itertuples(index=False):
            print(f"  row {r.row_number}: {r.message}", file=sys.stderr)
    load = wb.outcomes.load(preview)  # refuses (exit 4) when the file has any issue
    emit(args, asdict(load), f"recorded {load.rows:,} outcomes ({load.defaults:,} defaults, "
                             f"{load.corrections:,} corrections) from {load.file_name}")
    return 0


def outcomes_simulate(ctx: Context, args: argparse.Namespace) -> int:
    frame = ctx.workbench.outcomes.simulate(args.batch, as_of=args.as_of, seed=args.seed,
                                            downturn=args.downturn)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame):,} outcomes ({(frame['defaulted'] == 'yes').mean():.1%} defaulted) to "
          f"{args.out}")
    return 0


def performance(ctx: Context, args: argparse.Namespace) -> int:
    report = ctx.workbench.performance.vintages(args.by)
    rows = [_vintage_row(v) for v in report.vintages]
    lines = [f"{'vintage':<24} {'funded':>7} {'outcomes':>9} {'expected':>9} {'observed':>9} "
             f"{'AUC':>6} light"]
    for r in rows:
        lines.append(f"{r['vintage']:<24} {r['funded']:>7,} {r['with_outcome']:>9,} "
                     f"{_pct(r['expected_default_rate']):>9} {_pct(r['observed_default_rate']):>9} "
                     f"{_num(r['auc']):>6} {r['light']}")
    lines += [f"ALERT {a.vintage}: {a.message}" for a in report.alerts]
    lines.append(report.notes[0])
    emit(args, {"by": report.by, "vintages": rows, "alerts": [asdict(a) for a in report.alerts],
                "notes": list(report.notes)}, "\n".join(lines))
    return 0


def monitor(ctx: Context, args: argparse.Namespace) -> int:
    wb = ctx.workbench
    runs = wb.drift.runs(limit=52)
    latest = next((r for r in runs if r.status != DriftStatus.INSUFFICIENT), None)
    report = wb.performance.vintages()
    payload = {
        "drift": None if latest is None else {"batch_id": latest.batch_id, "status": latest.status,
                                              "score_psi": latest.score_psi},
        "performance_alerts": [asdict(a) for a in report.alerts],
        "vintages_with_outcomes": sum(1 for v in report.vintages if v.with_outcome),
    }
    drift_alert = latest is not None and latest.status == DriftStatus.ALERT
    text = [f"drift: {latest.status if latest else 'no measurement yet'}"
            + (f" (batch {latest.batch_id}, score PSI {latest.score_psi:.3f})" if latest else "")]
    text += [f"performance alert {a.vintage}: {a.message}" for a in report.alerts] or ["performance: no alert"]
    emit(args, payload, "\n".join(text))
    if report.alerts:
        return EXIT_PERFORMANCE_ALERT
    return EXIT_DRIFT_ALERT if drift_alert else 0


def experiments_start(ctx: Context, args: argparse.Namespace) -> int:
    exp = ctx.workbench.experiments.start(args.version, kind="shadow" if args.shadow else "split",
                                          share=args.share, reason=args.reason, seed=args.seed)
    what = "in shadow (scored, never deciding)" if exp.kind == "shadow" else f"on {exp.share:.0%} of each batch"
    print(f"experiment {exp.id}: {exp.challenger_version} runs {what}; seed {exp.seed}")
    return 0


def experiments_stop(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workbench.experiments.stop(args.id, reason=args.reason)
    print(f"experiment {args.id} stopped")
    return 0


def experiments_list(ctx: Context, args: argparse.Namespace) -> int:
    rows = ctx.workbench.experiments.history()
    text = "\n".join(f"{e.id:>4} {e.kind:<7} {e.challenger_version} share {e.share:.0%} seed {e.seed} "
                     f"{'running' if e.running else 'stopped ' + (e.stopped_at or '')[:16]}" for e in rows)
    emit(args, [asdict(e) for e in rows], text or "no experiment yet")
    return 0


def experiments_compare(ctx: Context, args: argparse.Namespace) -> int:
    result = ctx.workbench.experiments.compare(args.id)
    lines = []
    for a in (result.champion, result.challenger):
        lines.append(f"{a.arm:<11} {a.applications:>7,} applications, approval {a.approval_rate:.1%}, "
                     f"{a.with_outcome:,} outcomes, default rate {_pct(a.default_rate)} "
                     f"[{_pct(a.default_interval[0])}, {_pct(a.default_interval[1])}]")
    if result.default_rate_difference is not None:
        lo, hi = result.difference_interval
        lines.append(f"challenger minus champion: {result.default_rate_difference:+.1%} "
                     f"[{lo:+.1%}, {hi:+.1%}]" + ("" if result.conclusive else " (not conclusive yet)"))
    emit(args, json.loads(json.dumps(asdict(result), default=str)), "\n".join(lines))
    return 0


def experiments_replay(ctx: Context, args: argparse.Namespace) -> int:
    r = ctx.workbench.experiments.replay(args.version, batch_ids=tuple(args.batch))
    text = (f"{args.version} over {r.applications:,} past applications: {r.changed:,} decisions change "
            f"({r.changed_share:.1%}): {r.to_approve:,} to approve, {r.to_review:,} to review, "
            f"{r.to_decline:,} to decline")
    payload = {k: v for k, v in asdict(r).items() if k != "transitions"}
    payload["transitions"] = r.transitions.to_dict("records")
    emit(args, payload, text)
    return 0


def _vintage_row(v: Any) -> dict[str, Any]:
    d = asdict(v)
    d["light"] = str(v.light)
    d["outcome_share"] = v.outcome_share
    return json.loads(json.dumps(d, default=str))


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"
