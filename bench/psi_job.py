"""PSI of every feature and the score at 1M rows: FinFlow's vectorised PSI (bins fixed at
training) next to evidently's PSI on the same data (run in its own venv, pandas < 3).

    python -m bench.psi_job [--rows 1M] [--evidently-python bench/.venv-evidently/bin/python]

FinFlow's time is bin counts + the report with its sampling bounds (what PSI sampling
alone gives at this batch size, per column), measured cold (bounds cache cleared before
each repeat) and warm. ``report_by_rows`` times a cold report alone at small batch sizes,
where the bounds are simulated rather than taken from the chi-square.

Writes the current batch (features as the model sees them, categories as labels, and the
score) and the model's training baseline to Parquet, plus each row's FinFlow bin, so that
evidently can compute (a) its own PSI with its own binning and (b) its PSI function on
FinFlow's bins, which must equal FinFlow's values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    DATA,
    ROOT,
    config,
    emit,
    ensure_model,
    fresh_store,
    label,
    parse_size,
    peak_rss_mb,
    scoring_engine,
)

EVIDENTLY_PY = ROOT / ".venv-evidently" / "bin" / "python"


def bin_index(spec, values) -> np.ndarray:
    """Each value's FinFlow bin (the same rule as BinSpec.counts), as an integer."""
    if spec.kind == "categorical":
        s = pd.Series(values, copy=False).astype(object)
        codes = pd.Index(list(spec.categories), dtype=object).get_indexer(s).astype(np.int64)
        codes = np.where(codes < 0, len(spec.categories), codes)
        codes[s.isna().to_numpy()] = len(spec.categories) + 1
        return codes
    arr = pd.to_numeric(pd.Series(values, copy=False), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.searchsorted(np.asarray(spec.edges), arr, side="left").astype(np.int64)
    out[np.isnan(arr)] = len(spec.edges) + 1
    return out


def main() -> None:
    from finflow_core.lending import psi_sampling
    from finflow_core.lending.drift import SCORE, psi_from_counts
    from finflow_core.lending.intake.validation import validate_batch
    from finflow_core.lending.synthetic import generate_applications
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1M")
    ap.add_argument("--evidently-python", default=str(EVIDENTLY_PY))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = parse_size(args.rows)
    ensure_model()  # standalone runs: the bench home's demo model, trained once
    cfg = config()
    store = fresh_store("psi")
    engine = scoring_engine(store, explain=False)
    bundle = engine.bundle
    baseline = bundle.baseline
    names = list(bundle.feature_names)

    # the current batch, typed as the quality gate would type it
    frame = pd.concat([generate_applications(min(200_000, n - i), seed=5000 + i // 200_000)
                       for i in range(0, n, 200_000)], ignore_index=True).drop(columns="default")
    for c, cats in bundle.categorical.items():  # as the quality gate types them
        frame[c] = pd.Categorical(frame[c], categories=list(cats))
    matrix = engine.features(frame)
    p = engine.predict(matrix)

    # FinFlow: bin counts of every feature and the score (what a weekly run does), then PSI
    # with its sampling bounds; cold: no bound cached from an earlier repeat
    times, warm = [], []
    for _ in range(args.repeat):
        psi_sampling.clear_cache()
        t = time.perf_counter()
        counts = engine.drift_counts(frame, matrix, p)
        report = baseline.report(counts)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        baseline.report(counts)
        warm.append(time.perf_counter() - t)
    methods = {k: psi_sampling.sampling_bound(s.expected, n, baseline.floor, 0.95, baseline.rows).method
               for k, s in baseline.specs.items()}
    # the report alone (the bounds dominate) at small batch sizes: rows drawn from this batch
    by_rows = {}
    rng = np.random.default_rng(0)
    for size in (50, 100, 200, 1_000, 10_000):
        idx = rng.integers(0, n, size)
        small = baseline.counts(frame.iloc[idx], p[idx], matrix[idx], names)
        cold = []
        for _ in range(args.repeat):
            psi_sampling.clear_cache()
            t = time.perf_counter()
            small_report = baseline.report(small)
            cold.append(time.perf_counter() - t)
        by_rows[size] = {"seconds_median": float(np.median(cold)), "status": str(small_report.status)}
    assert report.score_psi == round(psi_from_counts(np.asarray(baseline.specs[SCORE].expected),
                                                     counts[SCORE], baseline.floor), 4)
    # unrounded values (the stored report rounds to 4 places) for the comparison with evidently
    exact = {k: psi_from_counts(np.asarray(s.expected), counts[k], baseline.floor)
             for k, s in baseline.specs.items()}

    # data for evidently: current and reference (training features + out-of-fold scores)
    out = DATA / f"psi_{label(n)}"
    out.mkdir(parents=True, exist_ok=True)
    readable = pd.DataFrame(matrix, columns=names)
    for c in bundle.categorical:
        readable[c] = frame[c].astype(object).to_numpy()
    readable[SCORE] = p
    history = cfg.paths.data_dir / "demo_history.csv"
    ref_report = validate_batch(history, cfg, require_target=True)
    ref = bundle.model.features_.frame(ref_report.valid).reset_index(drop=True)
    ref[SCORE] = bundle.model.oof_proba_
    cur_bins = pd.DataFrame({k: bin_index(s, readable[k]) for k, s in baseline.specs.items()})
    ref_bins = pd.DataFrame({k: bin_index(s, ref[k]) for k, s in baseline.specs.items()})
    # check: the reference bins give back the stored baseline proportions
    for k, s in baseline.specs.items():
        props = np.bincount(ref_bins[k], minlength=s.n_bins) / len(ref_bins)
        assert np.allclose(props, s.expected), k
    cols = list(baseline.specs)
    readable[cols].to_parquet(out / "current.parquet", index=False)
    ref[cols].to_parquet(out / "reference.parquet", index=False)
    cur_bins.to_parquet(out / "current_bins.parquet", index=False)
    ref_bins.to_parquet(out / "reference_bins.parquet", index=False)
    kinds = {k: s.kind for k, s in baseline.specs.items()}
    (out / "columns.json").write_text(json.dumps(kinds))

    result = {
        "rows": n, "columns": len(cols),
        "finflow": {"seconds_median": float(np.median(times)), "seconds_all": times, "psi": exact,
                    "warm_seconds_median": float(np.median(warm))},
        "sampling": {"status": str(report.status), "rows": report.rows,
                     "columns": report.columns(), "method": methods,
                     "report_by_rows": by_rows},
        "peak_rss_mb": peak_rss_mb(),
    }
    py = Path(args.evidently_python)
    if py.exists():
        proc = subprocess.run([str(py), str(ROOT / "evidently_psi.py"), str(out)], capture_output=True,
                              text=True, timeout=3600)
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        if proc.returncode == 0 and line:
            ev = json.loads(line[-1])
            result["evidently"] = ev
            same = ev.get("psi_on_finflow_bins", {})
            diffs = {k: abs(same[k] - exact[k]) for k in same if k in exact}
            result["max_abs_diff_on_finflow_bins"] = max(diffs.values()) if diffs else None
            result["diffs_on_finflow_bins"] = diffs
            result["own_binning_vs_finflow"] = {k: [exact[k], ev["psi_own_binning"].get(k)] for k in exact}
        else:
            result["evidently_error"] = (proc.stderr or proc.stdout)[-3000:]
    else:
        result["evidently_error"] = f"no evidently venv at {py}: run bench/setup_evidently.sh"
    warnings.simplefilter("ignore")
    emit(result)


if __name__ == "__main__":
    main()
