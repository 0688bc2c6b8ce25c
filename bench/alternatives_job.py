"""The explanation stage with other model choices: what a 100k weekly run would spend on it.

    python -m bench.alternatives_job [--rows 20k]

Trains LightGBM variants on the demo history (80/20 split), and times TreeSHAP per 1,000
review/decline rows and the predict step, with the hold-out AUC so speed is not bought with
quality unseen. "declines only" is the lazy option: reasons for declines at batch time,
review cases explained when an officer opens them (one row: a few ms).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from bench.common import config, emit, fresh_store, scoring_engine


def main() -> None:
    import lightgbm as lgb
    import shap
    from sklearn.metrics import roc_auc_score

    from finflow_core.lending.intake.validation import validate_batch

    ap = argparse.ArgumentParser()
    ap.add_argument("--explain-rows", type=int, default=4000)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cfg = config()
    store = fresh_store("alternatives")
    engine = scoring_engine(store)
    bundle = engine.bundle
    history = validate_batch(cfg.paths.data_dir / "demo_history.csv", cfg, require_target=True).valid
    X = bundle.model.features_.transform(history)
    y = history[cfg.target_column].astype(int).to_numpy()
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.2
    base = dict(bundle.model.estimator_.get_params())
    variants = {
        "champion: LightGBM 300 trees, 15 leaves": {},
        "LightGBM 100 trees, lr 0.09, 15 leaves": {"n_estimators": 100, "learning_rate": 0.09},
        "LightGBM 150 trees, lr 0.06, 7 leaves": {"n_estimators": 150, "learning_rate": 0.06, "num_leaves": 7},
        "LightGBM 60 trees, lr 0.15, 7 leaves": {"n_estimators": 60, "learning_rate": 0.15, "num_leaves": 7},
    }
    rows = X[test][: args.explain_rows]
    out = {}
    for name, change in variants.items():
        model = lgb.LGBMClassifier(**{**base, **change}).fit(X[~test], y[~test])
        auc = roc_auc_score(y[test], model.predict_proba(X[test])[:, 1])
        explainer = shap.TreeExplainer(model)
        t = time.perf_counter()
        explainer.shap_values(rows, check_additivity=False)
        shap_ms = (time.perf_counter() - t) / len(rows) * 1e3
        t = time.perf_counter()
        model.booster_.predict(rows, pred_contrib=True, num_threads=2)
        contrib_ms = (time.perf_counter() - t) / len(rows) * 1e3
        out[name] = {"holdout_auc": round(float(auc), 4), "treeshap_ms_per_row": shap_ms,
                     "lightgbm_pred_contrib_2threads_ms_per_row": contrib_ms,
                     "explain_100k_all_review_decline_s": shap_ms * 36_000 / 1e3,
                     "explain_100k_declines_only_s": shap_ms * 6_000 / 1e3}
    emit({"variants": out, "note": "36% of a 100k batch is review or decline, 6% decline (demo model)"})


if __name__ == "__main__":
    main()
