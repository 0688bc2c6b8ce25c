"""What sealing and verifying cost: one weekly run of N applications, sealing timed inside it.

    python -m bench.integrity_job --size 100k [--size 1M] [--chunk 50000]

Trains a small LightGBM champion in a throw-away home, writes N synthetic applications,
stores them with ``wb.batches.run`` (SQLite) while timing every ``BatchSeals.seal_columns`` call
(the row seals of applications and scores, built column-wise), then times
``finflow audit verify`` (chain, anchors, every sealed row) over the stored batch.
Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml


def parse_size(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t.rstrip("km")) * mult)


def setup(home: Path) -> None:
    from finflow_core.lending.config import default_config_path

    os.environ.update({"FINFLOW_HOME": str(home), "FINFLOW_SECRET_KEY": "bench-installation-key-0123456789",
                       "FINFLOW_DATABASE_URL": f"sqlite:///{home / 'data' / 'finflow.db'}"})
    raw = yaml.safe_load(default_config_path().read_text())
    raw["model"]["candidates"] = ["lightgbm"]
    raw["model"]["cv_folds"] = 3
    (home / "config.yaml").write_text(yaml.safe_dump(raw))
    os.environ["FINFLOW_CONFIG"] = str(home / "config.yaml")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", action="append", default=[])
    parser.add_argument("--chunk", type=int, default=50_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="finflow-integrity-bench-"))
    setup(home)
    from finflow_core.lending.config import load_config
    from finflow_core.lending.synthetic import generate_applications
    from finflow_core.pipeline.local import LocalEngine
    from finflow_core.services.access import SYSTEM, Principal
    from finflow_core.services.context import Context
    from finflow_core.services.workbench import Workbench
    from finflow_core.store import open_store, seals

    config = load_config()
    store = open_store(config.paths.database_url)
    wb = Workbench(Context(config, store), SYSTEM)
    history = home / "history.csv"
    generate_applications(10_000, seed=3).to_csv(history, index=False)
    wb.models.train(history)
    spent = {"seconds": 0.0, "rows": 0}
    original = seals.BatchSeals.seal_columns

    def timed(self, table, columns, n):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        out = original(self, table, columns, n)
        spent["seconds"] += time.perf_counter() - started
        spent["rows"] += n
        return out

    seals.BatchSeals.seal_columns = timed
    manager = Workbench(Context(config, store), Principal(None, "bench", frozenset({"manager"})))
    for size in args.size or ["100k"]:
        n = parse_size(size)
        path = home / f"week_{n}.csv"
        frame = generate_applications(n, seed=n % 997).drop(columns="default")
        frame["application_id"] = [f"B{n}-{i:08d}" for i in range(n)]
        frame.to_csv(path, index=False)
        spent.update(seconds=0.0, rows=0)
        started = time.perf_counter()
        summary = wb.batches.run(path, engine=LocalEngine(chunk_rows=args.chunk))
        run = time.perf_counter() - started
        started = time.perf_counter()
        report = manager.audit.verify()
        verify = time.perf_counter() - started
        print(json.dumps({
            "rows": n, "run_s": round(run, 2), "seal_s": round(spent["seconds"], 2),
            "sealed_rows": spent["rows"], "verify_s": round(verify, 2), "ok": report.ok,
            "checked": report.integrity.checked, "stored": summary.rows_valid,
            "load_avg": os.getloadavg()[0],
        }), flush=True)
        if not report.ok:
            print(report.message, file=sys.stderr)


if __name__ == "__main__":
    main()
