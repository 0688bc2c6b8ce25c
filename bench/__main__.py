"""Run FinFlow's benchmarks and write bench/results/latest.md and latest.json.

    .venv/bin/python -m bench                          # full run: 10k, 100k, 1M (20-40 minutes)
    .venv/bin/python -m bench --sizes 10k --quick      # a quick look (about a minute)

Each measurement runs in a fresh subprocess (peak memory = that job's ru_maxrss). See
bench/README.md for what each row measures and the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import LOGS, RESULTS, ROOT, ensure_model, label, parse_size

TARGETS = {
    "weekly_100k_seconds": 60.0, "weekly_100k_vs_bare": 2.0, "weekly_1M_peak_mb": 3072.0,
    "weekly_1M_seconds": 40.0, "single_p95_ms": 100.0, "psi_1M_seconds": 0.5, "page_seconds": 1.0,
    "latency_p95_seconds": 1.0,
}
STAGES = ("read", "validate", "features", "predict", "explain", "drift", "store", "store_wait",
          "publish", "report", "other")


def job(name: str, module: str, *args: str, timeout: int = 7200) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process; its last BENCH-RESULT line is the result."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    load = os.getloadavg()[0]
    print(f"[bench] {name} ...", flush=True)
    started = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT.parent, stdout=subprocess.PIPE,
                              stderr=fh, text=True, timeout=timeout)
    fh_text = proc.stdout
    with open(log, "a") as fh:
        fh.write(fh_text)
    lines = [x for x in fh_text.splitlines() if x.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"[bench] {name} FAILED (exit {proc.returncode}); see {log}", flush=True)
        return {"error": f"exit {proc.returncode}; see {log}"}
    out = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
    out["job_seconds"] = time.perf_counter() - started
    out["load_before"] = load
    out["load_after"] = os.getloadavg()[0]
    print(f"[bench] {name} done in {out['job_seconds']:.0f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10k,100k,1M", help="weekly-run batch sizes (default 10k,100k,1M)")
    ap.add_argument("--dask-sizes", default="100k", help="sizes also run on a Dask LocalCluster ('' = none)")
    ap.add_argument("--pg-sizes", default="", help="sizes also stored in PostgreSQL (e.g. 100k)")
    ap.add_argument("--psi-rows", default="1M")
    ap.add_argument("--pages-rows", default="1M")
    ap.add_argument("--single-n", type=int, default=300)
    ap.add_argument("--latency-rows", default="1M", help="batch size stored during the latency probes")
    ap.add_argument("--profile", default="", help="also cProfile a weekly run of this size (e.g. 100k)")
    ap.add_argument("--skip", default="",
                    help="comma list of: weekly,bare,dask,single,psi,pages,latency")
    ap.add_argument("--quick", action="store_true", help="small PSI/pages/latency runs")
    args = ap.parse_args()
    if args.quick:
        args.psi_rows, args.pages_rows, args.single_n = "100k", "100k", 60
        args.latency_rows = "20k"
        args.dask_sizes = ""
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    model = ensure_model(log=lambda m: print(f"[bench] {m}", flush=True))
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "model_version": model,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "targets": TARGETS,
        "weekly": [], "bare": [], "dask": [],
    }
    for n in sizes:
        if "weekly" not in skip:
            results["weekly"].append(job(f"weekly_{label(n)}", "bench.weekly_job", "--size", str(n)))
        if "bare" not in skip:
            results["bare"].append(job(f"bare_{label(n)}", "bench.weekly_job", "--size", str(n), "--mode", "bare"))
    for s in [x for x in args.pg_sizes.split(",") if x.strip()]:
        if "weekly" not in skip:
            results["weekly"].append(job(f"weekly_pg_{s}", "bench.weekly_job", "--size", s,
                                         "--backend", "postgresql"))
    for s in [x for x in args.dask_sizes.split(",") if x.strip()]:
        if "dask" not in skip:
            results["dask"].append(job(f"dask_{s}", "bench.weekly_job", "--size", s, "--mode", "dask"))
    if "single" not in skip:
        results["single"] = job("single", "bench.single_job", "--n", str(args.single_n),
                                "--submit", str(max(args.single_n // 3, 20)))
    if "psi" not in skip:
        results["psi"] = job("psi", "bench.psi_job", "--rows", args.psi_rows)
    if "pages" not in skip:
        results["pages"] = job("pages", "bench.pages_job", "--rows", args.pages_rows)
    if "latency" not in skip:
        results["latency"] = job(f"latency_{args.latency_rows}", "bench.latency_job", "--size",
                                 args.latency_rows)
    if args.profile:
        results["profile"] = job(f"profile_{args.profile}", "bench.profile_job", "--size", args.profile)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=float))
    md = render(results)
    (RESULTS / "latest.md").write_text(md)
    print(md)


def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, (int, float)):
        return f"{v:,.{nd}f}"
    return str(v)


def render(r: dict[str, Any]) -> str:
    out = [f"# FinFlow benchmarks ({r['started']}, {r['machine']['cpus']} cores, model {r['model_version']})", ""]
    bare = {b["rows"]: b for b in r["bare"] if "rows" in b}
    if r["weekly"] or r["bare"]:
        out += ["## Weekly run (seconds; each size in a fresh process)", "",
                "| rows | run | wall s | CPU s | rows/s | peak RSS MB | " + " | ".join(STAGES)
                + " | × bare | CPU × bare |",
                "|---|---|---|---|---|---|" + "---|" * len(STAGES) + "---|---|"]
        for w in r["weekly"] + r["bare"] + r["dask"]:
            if "rows" not in w:
                out.append(f"| ? | failed | {w.get('error')} |")
                continue
            st = w["stages"]
            ratio = w["wall"] / bare[w["rows"]]["wall"] if w["rows"] in bare and w["mode"] != "bare" else None
            cpu_ratio = (w["cpu_s"] / bare[w["rows"]]["cpu_s"] if ratio is not None and "cpu_s" in w
                         and "cpu_s" in bare[w["rows"]] else None)
            rss = w["peak_rss_mb"] + (w.get("workers_peak_rss_mb") or 0)
            out.append(f"| {label(w['rows'])} | {w['mode']} | {_f(w['wall'], 1)} | {_f(w.get('cpu_s'), 1)} | "
                       f"{_f(w['rows_per_s'], 0)} | {_f(rss, 0)} | "
                       + " | ".join(_f(st.get(s), 2) for s in STAGES) + f" | {_f(ratio)} | {_f(cpu_ratio)} |")
        out += ["", "finflow = `wb.batches.run` (50k-row chunks, each stored in short transactions "
                "under the invisible loading state by a writer thread while the next chunk is made, "
                "then published) + `wb.batches.export`; store = the writer thread's seconds "
                "(overlapped), store_wait = the run waiting for it, other = the run's own thread "
                "outside every named stage; bare = "
                "pandas.read_csv + champion predict_proba + TreeSHAP of review/decline rows; dask = "
                "`wb.batches.run(engine=DaskEngine(...))` on a LocalCluster (stage seconds summed over "
                "workers; peak RSS = driver + largest worker).", ""]
    s = r.get("single")
    if s and "score_one" in s:
        out += ["## One application typed in (ms)", "", "| path | median | p95 | n |", "|---|---|---|---|",
                f"| single.score_one (in process) | {_f(s['score_one']['median'] * 1e3, 1)} | "
                f"{_f(s['score_one']['p95'] * 1e3, 1)} | {s['score_one']['n']} |",
                f"| single.submit_application (stored) | {_f(s['submit_application']['median'] * 1e3, 1)} | "
                f"{_f(s['submit_application']['p95'] * 1e3, 1)} | {s['submit_application']['n']} |", "",
                "median breakdown of one decision (ms): " + ", ".join(
                    f"{k} {v * 1e3:.1f}" for k, v in s["breakdown_median"].items()), ""]
    p = r.get("psi")
    if p and "finflow" in p:
        ev = p.get("evidently", {})
        fin = p["finflow"]["seconds_median"]
        out += [f"## PSI, every feature and the score ({p['columns']} columns) at {label(p['rows'])} rows", "",
                "| implementation | seconds | × FinFlow |", "|---|---|---|",
                f"| FinFlow (bin counts with fixed bins + PSI) | {_f(fin, 3)} | 1.00 |"]
        if ev:
            out += [f"| evidently {ev['evidently']} Report, ValueDrift(method='psi') per column | "
                    f"{_f(ev['report_seconds'], 3)} | {_f(ev['report_seconds'] / fin, 1)} |",
                    f"| evidently PSI function, its own binning | {_f(ev['own_binning_seconds'], 3)} | "
                    f"{_f(ev['own_binning_seconds'] / fin, 1)} |",
                    f"| evidently PSI function on FinFlow's bins | {_f(ev['finflow_bins_seconds'], 3)} | "
                    f"{_f(ev['finflow_bins_seconds'] / fin, 1)} |", "",
                    f"Same bins, same values: largest difference {p['max_abs_diff_on_finflow_bins']:.2e}. "
                    "evidently's own binning (Sturges equal-width bins over both samples for numeric columns "
                    "with more than 20 distinct values, value counts otherwise) gives other values:", "",
                    "| column | FinFlow (baseline deciles) | evidently own bins | evidently on FinFlow bins |",
                    "|---|---|---|---|"]
            for k, (a, b) in p["own_binning_vs_finflow"].items():
                out.append(f"| {k} | {a:.6f} | {_f(b, 6)} | {ev['psi_on_finflow_bins'][k]:.6f} |")
        else:
            out.append(f"| evidently | {p.get('evidently_error', 'not run')[:200]} | |")
        out.append("")
    g = r.get("pages")
    if g and "portfolio_summary" in g:
        out += [f"## Pages over {g['applications']:,} stored applications ({g['pending']:,} pending; "
                f"roll-ups consistent: {g['rollups_consistent']}; {g['source']})", "",
                "| page | median s | p95 s | runs |", "|---|---|---|---|"]
        for k in ("portfolio_summary", "portfolio_summary_by_industry", "review_queue_oldest", "review_queue_largest"):
            out.append(f"| {k} | {_f(g[k]['median'], 4)} | {_f(g[k]['p95'], 4)} | {g[k]['n']} |")
        out.append("")
    out += latency_section(r.get("latency"))
    out += ["## Targets", ""] + targets(r)
    return "\n".join(out) + "\n"


LATENCY_PROBES = ("sign_in", "queue", "decide", "write_lock")


def latency_section(lat: dict[str, Any] | None) -> list[str]:
    if not lat or "during" not in lat:
        return []
    loader = lat.get("loader", {})
    out = [f"## Working during a {label(lat['rows'])}-row weekly run (SQLite; seconds)", "",
           f"The run took {_f(loader.get('wall'), 1)} s in its own process (store "
           f"{_f(loader.get('timings', {}).get('store'), 1)} s); probes every {lat['pause_s']} s.", "",
           "| probe | idle median | idle p95 | during median | during p95 | during max | n | errors |",
           "|---|---|---|---|---|---|---|---|"]
    for k in LATENCY_PROBES:
        i, d = lat["idle"].get(k, {}), lat["during"].get(k, {})
        out.append(f"| {k} | {_f(i.get('median'), 3)} | {_f(i.get('p95'), 3)} | {_f(d.get('median'), 3)} | "
                   f"{_f(d.get('p95'), 3)} | {_f(d.get('max'), 3)} | {d.get('n', 0)} | "
                   f"{d.get('errors', 0)} |")
    errors = sorted({e for k in LATENCY_PROBES for e in lat["during"].get(k, {}).get("first_errors", [])})
    if errors:
        out += ["", "errors during the run: " + "; ".join(errors)]
    return [*out, ""]


def targets(r: dict[str, Any]) -> list[str]:
    t = r["targets"]
    lines = []
    w = {x["rows"]: x for x in r["weekly"] if "rows" in x and x.get("mode") == "finflow"}
    b = {x["rows"]: x for x in r["bare"] if "rows" in x}
    if 100_000 in w:
        ok = w[100_000]["wall"] <= t["weekly_100k_seconds"]
        lines.append(f"- 100k end to end ≤ {t['weekly_100k_seconds']:.0f} s: {w[100_000]['wall']:.1f} s — "
                     f"{'met' if ok else 'NOT met'}")
        if 100_000 in b:
            ratio = w[100_000]["wall"] / b[100_000]["wall"]
            cpu = (f" (CPU seconds: {w[100_000]['cpu_s'] / b[100_000]['cpu_s']:.2f}×)"
                   if "cpu_s" in w[100_000] and "cpu_s" in b[100_000] else "")
            lines.append(f"- 100k ≤ {t['weekly_100k_vs_bare']}× bare minimum: {ratio:.2f}×{cpu} — "
                         f"{'met' if ratio <= t['weekly_100k_vs_bare'] else 'NOT met'}")
    if 1_000_000 in w:
        sec = w[1_000_000]["wall"]
        lines.append(f"- 1M end to end ≤ {t['weekly_1M_seconds']:.0f} s: {sec:.1f} s — "
                     f"{'met' if sec <= t['weekly_1M_seconds'] else 'NOT met'}")
        rss = w[1_000_000]["peak_rss_mb"]
        lines.append(f"- 1M in bounded memory (< 3 GB): peak {rss:,.0f} MB, {w[1_000_000]['wall']:.0f} s — "
                     f"{'met' if rss < t['weekly_1M_peak_mb'] else 'NOT met'}")
    s = r.get("single")
    if s and "score_one" in s:
        p95 = s["score_one"]["p95"] * 1e3
        lines.append(f"- one application p95 < {t['single_p95_ms']:.0f} ms in process: {p95:.0f} ms — "
                     f"{'met' if p95 < t['single_p95_ms'] else 'NOT met'}")
    p = r.get("psi")
    if p and "finflow" in p:
        sec = p["finflow"]["seconds_median"]
        lines.append(f"- PSI every feature + score at {label(p['rows'])} rows < {t['psi_1M_seconds']} s: {sec:.3f} s — "
                     f"{'met' if sec < t['psi_1M_seconds'] else 'NOT met'}")
    g = r.get("pages")
    if g and "portfolio_summary" in g:
        worst = max(g[k]["median"] for k in ("portfolio_summary", "portfolio_summary_by_industry",
                                              "review_queue_oldest", "review_queue_largest"))
        lines.append(f"- portfolio and review-queue pages < {t['page_seconds']:.0f} s at {g['applications']:,} "
                     f"applications: slowest median {worst:.3f} s — {'met' if worst < t['page_seconds'] else 'NOT met'}")
    lat = r.get("latency")
    if lat and "during" in lat:
        limit = t["latency_p95_seconds"]
        for k in ("sign_in", "queue"):
            d = lat["during"].get(k, {})
            p95, errs = d.get("p95"), d.get("errors", 0)
            ok = p95 is not None and p95 < limit and errs == 0
            lines.append(f"- {k} during a {label(lat['rows'])}-row run: p95 < {limit:.0f} s, no errors: "
                         f"{_f(p95, 3)} s, {errs} errors — {'met' if ok else 'NOT met'}")
    return lines


if __name__ == "__main__":
    main()
