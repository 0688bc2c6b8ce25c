"""The model lifecycle end to end on seeded demo data, as the lifecycle issue checks it.

    python -m bench.lifecycle_job [--rows 4000] [--weeks 4]

In a throw-away home: a demo champion; ``--weeks`` weekly vintages, the later half drawn
under a drifted population; outcomes simulated for every vintage, the later ones under a
downturn; the vintage report; a challenger trained on the outcomes (holding out the latest
vintage) and compared with the champion on it; a promotion with a reason, a new batch
scored by it, a rollback; a 10% split; the arms compared. Prints one JSON object with the
figures (nothing is asserted: the tests do that; this is what a person would read).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="applications per weekly vintage")
    parser.add_argument("--weeks", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="finflow-lifecycle-") as tmp:
        print(json.dumps(walk(Path(tmp), args.rows, args.weeks), indent=2, default=str))


def walk(home: Path, rows: int, weeks: int) -> dict[str, Any]:
    os.environ.update({"FINFLOW_HOME": str(home),
                       "FINFLOW_KEY_FILE": str(home / "keys" / "installation.key"),
                       "FINFLOW_ANCHOR_DIR": str(home / "anchors")})
    os.environ.pop("FINFLOW_DATABASE_URL", None)
    from finflow_core.lending.config import load_config
    from finflow_core.lending.synthetic import generate_applications
    from finflow_core.services.context import Context
    from finflow_core.services.demo_setup import bootstrap
    from finflow_core.services.maintenance import open_context
    from finflow_core.services.sessions import Gate
    from finflow_core.services.workbench import Workbench

    started = time.perf_counter()
    ctx = open_context(load_config())
    bootstrap(ctx, demo=True, history_rows=6000)
    admin = Gate(ctx).create_first_admin("root", "lifecycle-walk-Passw0rd!")
    password = "lifecycle-walk-Passw0rd!"
    analyst = admin.users.add("ann", password, {"analyst"}).principal()
    manager = admin.users.add("maya", password, {"manager"}).principal()

    def as_of(who: Any, day: date) -> Workbench:
        return Workbench(Context(ctx.config, ctx.store, clock=lambda: datetime.combine(
            day, datetime.min.time(), UTC) + timedelta(hours=9)), who)

    champion = as_of(manager, date(2026, 12, 1)).models.champion().version
    first = date(2026, 9, 7)
    vintages = []
    for k in range(weeks):
        drift = "recession" if k >= weeks // 2 else "none"
        df = generate_applications(rows, seed=700 + k, drift=drift, start=first + timedelta(weeks=k), days=7)
        data = df.drop(columns="default").to_csv(index=False).encode()
        vintages.append(as_of(analyst, first + timedelta(weeks=k, days=7)).batches.run(
            data, name=f"week-{k + 1}.csv").batch_id)
    observed = date(2027, 9, 1)
    for k, batch in enumerate(vintages):
        drawn = as_of(analyst, observed).outcomes.simulate(
            [batch], as_of=observed, seed=k, downturn=0.8 if k >= weeks // 2 else 0.0)
        as_of(analyst, observed).outcomes.load(drawn.to_csv(index=False).encode())
    report = as_of(manager, observed).performance.vintages()
    table = [{"vintage": v.vintage, "funded": v.funded, "with_outcome": v.with_outcome, "auc": v.auc,
              "expected_default_rate": v.expected_default_rate,
              "observed_default_rate": v.observed_default_rate, "light": str(v.light)}
             for v in report.vintages]
    trained = as_of(analyst, observed).models.train_challenger()
    comparison = trained.champion_comparison
    challenger = trained.version
    promote = as_of(manager, observed).models
    promote.promote(challenger, "beats the champion on the latest labelled vintage")
    after = generate_applications(rows, seed=900, drift="recession", start=date(2027, 9, 6), days=7)
    scored_by = as_of(analyst, date(2027, 9, 13)).batches.run(
        after.drop(columns="default").to_csv(index=False).encode(), name="after-promotion.csv").model_version
    rolled_back_to = promote.rollback("walk: back to the old champion")
    experiments = as_of(manager, date(2027, 9, 14)).experiments
    test = experiments.start(challenger, share=0.10, reason="walk: a 10% arm", seed=42)
    split = generate_applications(rows, seed=901, drift="recession", start=date(2027, 9, 13), days=7)
    split_batch = as_of(analyst, date(2027, 9, 20)).batches.run(
        split.drop(columns="default").to_csv(index=False).encode(), name="split.csv").batch_id
    drawn = as_of(analyst, date(2028, 3, 1)).outcomes.simulate([split_batch], as_of=date(2028, 3, 1),
                                                               seed=9, downturn=0.8)
    as_of(analyst, date(2028, 3, 1)).outcomes.load(drawn.to_csv(index=False).encode())
    arms = experiments.compare(test.id)
    verified = as_of(admin.actor, date(2028, 3, 2)).audit.verify()
    return {
        "rows_per_vintage": rows, "champion": champion, "vintages": table,
        "alerts": [a.message for a in report.alerts],
        "challenger": challenger, "challenger_lineage": trained.card.get("lineage"),
        "comparison": None if comparison is None else comparison.audit_details(),
        "promoted_batch_scored_by": scored_by, "rolled_back_to": rolled_back_to,
        "split": {"experiment": test.id, "champion": arms.champion.__dict__,
                  "challenger": arms.challenger.__dict__,
                  "default_rate_difference": arms.default_rate_difference,
                  "difference_interval": arms.difference_interval},
        "audit_verify_ok": verified.ok,
        "audit_findings": [f.line() for f in verified.findings][:10],
        "seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    main()
