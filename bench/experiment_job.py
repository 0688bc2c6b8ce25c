"""What a running champion-challenger test costs a weekly run: plain, 10% split, shadow.

    python -m bench.experiment_job --size 10k [--repeat 3]

Trains a small LightGBM champion in a throw-away home, registers the same model again
under a second version with other band edges (the challenger: the same scoring cost, so
the figure is the routing, the second engine and the extra rows written), then stores
``--repeat`` fresh files of N applications each way with ``wb.batches.run`` (SQLite) and
prints one JSON line per mode: the median run seconds, the challenger share observed, and
whether ``audit verify`` is OK at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.integrity_job import parse_size, setup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="10k")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="finflow-experiment-bench-"))
    setup(home)
    from sqlalchemy import func, select

    from finflow_core.lending.config import load_config
    from finflow_core.lending.synthetic import generate_applications
    from finflow_core.services.access import SYSTEM, Principal
    from finflow_core.services.context import Context
    from finflow_core.services.workbench import Workbench
    from finflow_core.store import open_store
    from finflow_core.store.lending_tables import applications
    from finflow_core.store.lifecycle_tables import application_arms
    from finflow_core.store.model_files import installation_key, load_bundle, save_bundle

    config = load_config()
    store = open_store(config.paths.database_url)
    wb = Workbench(Context(config, store), SYSTEM)
    history = home / "history.csv"
    generate_applications(10_000, seed=3).to_csv(history, index=False)
    champion = wb.models.train(history)
    key = installation_key(config)
    bundle = load_bundle(config.paths.models_dir / champion.version, key)
    bundle.version = champion.version[:-8] + "0ddba11e"
    bundle.card = {**bundle.card, "version": bundle.version}
    bundle.strategy = bundle.strategy.with_edges(0.02, 0.9)
    wb.models.register(bundle, save_bundle(bundle, config.paths.models_dir, key))
    manager = Workbench(Context(config, store), Principal(None, "bench", frozenset({"manager"})))
    n = parse_size(args.size)
    serial = 0

    def run_once() -> tuple[float, str]:
        nonlocal serial
        serial += 1
        path = home / f"week_{serial}.csv"
        frame = generate_applications(n, seed=serial).drop(columns="default")
        frame["application_id"] = [f"W{serial}-{i:08d}" for i in range(n)]
        frame.to_csv(path, index=False)
        started = time.perf_counter()
        summary = wb.batches.run(path)
        return time.perf_counter() - started, summary.batch_id

    run_once()  # warm-up: models loaded, caches filled
    for mode in ("plain", "split", "shadow"):
        exp = None
        if mode != "plain":
            exp = manager.experiments.start(bundle.version, kind=mode, share=0.10, reason="bench", seed=1)
        seconds, shares = [], []
        for _ in range(args.repeat):
            s, bid = run_once()
            seconds.append(s)
            with store.connect() as conn:
                arms = conn.execute(select(func.count()).select_from(application_arms.join(
                    applications, applications.c.id == application_arms.c.application_id))
                    .where(applications.c.batch_id == bid)
                    .where(application_arms.c.arm == "challenger")).scalar_one()
            shares.append(arms / n)
        if exp is not None:
            manager.experiments.stop(exp.id, reason="bench done")
        print(json.dumps({"mode": mode, "rows": n, "median_run_s": round(statistics.median(seconds), 3),
                          "runs_s": [round(x, 3) for x in seconds],
                          "challenger_share": [round(x, 4) for x in shares]}), flush=True)
    print(json.dumps({"verify_ok": manager.audit.verify().ok}), flush=True)


if __name__ == "__main__":
    main()
