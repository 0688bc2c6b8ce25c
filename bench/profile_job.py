"""cProfile of one weekly run (where the time goes), saved for the owners of each stage.

    python -m bench.profile_job --size 100k

Writes results/profile_<size>.prof (open with snakeviz or pstats) and
results/profile_<size>.txt (top functions by own time and by cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

from bench.common import (
    RESULTS,
    batch_csv,
    emit,
    fresh_store,
    label,
    parse_size,
    scoring_engine,
    workbench,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="100k")
    ap.add_argument("--top", type=int, default=45)
    args = ap.parse_args()
    n = parse_size(args.size)
    path = batch_csv(n)
    store = fresh_store(f"profile_{label(n)}")
    engine = scoring_engine(store)
    wb = workbench(store)
    prof = cProfile.Profile()
    prof.enable()
    summary = wb.batches.run(path, scoring=engine, out_dir=RESULTS / "out" / f"profile_{label(n)}")
    prof.disable()
    base = RESULTS / f"profile_{label(n)}"
    prof.dump_stats(f"{base}.prof")
    buf = io.StringIO()
    for key in ("tottime", "cumulative"):
        buf.write(f"\n==== sorted by {key} ====\n")
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(args.top)
    base.with_suffix(".txt").write_text(buf.getvalue())
    emit({"size": n, "timings_under_profiler": summary.timings, "profile": f"{base}.txt"})


if __name__ == "__main__":
    main()
