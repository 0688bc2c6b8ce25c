"""A second lender, with other columns, trains and scores from a config alone (no code change)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from finflow_core.errors import BatchRejected
from finflow_core.lending.config import (
    ENV_CONFIG,
    ENV_HOME,
    Config,
    default_config_path,
    load_config,
)
from finflow_core.lending.intake.validation import validate_batch
from finflow_core.lending.model.bundle import build_bundle
from finflow_core.lending.model.training import train
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.synthetic import generate_applications
from finflow_core.store.model_files import installation_key, load_bundle, save_bundle

CONFIG_PATH = Path(__file__).parents[1] / "fixtures" / "other_lender.yaml"
SECTOR_RISK = {"retail": 0.2, "services": -0.3, "industry": 0.0, "farming": 0.4}
DEFAULT_DATASET_COLUMNS = {"application_id", "credit_score", "annual_revenue", "loan_amount",
                           "term_months", "industry", "region", "collateral", "default"}


def make_loans(rows: int, seed: int) -> pd.DataFrame:
    """Microloans whose outcome follows a logistic link of the observable fields."""
    rng = np.random.default_rng(seed)
    income = np.round(rng.lognormal(np.log(4500), 0.5, rows), 2)
    amount = np.clip(np.round(income * rng.lognormal(np.log(2.5), 0.6, rows), -1), 100, 1_000_000)
    duration = rng.choice([6, 12, 18, 24, 36], rows)
    score = np.clip(np.round(rng.normal(640, 90, rows)), 0, 999)
    sector = rng.choice(list(SECTOR_RISK), rows, p=[0.3, 0.3, 0.25, 0.15])
    guarantor = rng.choice(["yes", "no"], rows, p=[0.35, 0.65])
    apr = np.round(np.clip(0.09 + 0.0003 * (700 - score) + rng.normal(0, 0.02, rows), 0.02, 0.6), 4)
    z = (
        -2.3
        + 0.9 * np.log(amount / income / 2.5)
        - 0.013 * (score - 640)
        + 0.02 * (duration - 18)
        + np.array([SECTOR_RISK[s] for s in sector])
        + 0.7 * (guarantor == "no")
    )
    bad = rng.binomial(1, 1 / (1 + np.exp(-z)))
    bureau = pd.array(score.astype("int64"), dtype="Int64")
    bureau[rng.random(rows) < 0.03] = pd.NA  # some applicants have no bureau record
    return pd.DataFrame(
        {
            "loan_id": [f"L{seed:02d}-{i:06d}" for i in range(rows)],
            "monthly_income": income,
            "requested_amount": amount,
            "duration_months": duration.astype("int64"),
            "apr": apr,
            "bureau_score": bureau,
            "sector": sector,
            "has_guarantor": guarantor,
            "bad": bad.astype("int64"),
        }
    )


@pytest.fixture()
def lender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv(ENV_HOME, str(tmp_path))
    monkeypatch.setenv(ENV_CONFIG, str(CONFIG_PATH))
    monkeypatch.setenv("FINFLOW_SECRET_KEY", "other-lender-key")
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    return load_config()


def test_config_declares_the_other_dataset(lender: Config, tmp_path: Path) -> None:
    assert lender.source == str(CONFIG_PATH)
    assert lender.dataset_name == "microloans-eu"
    assert (lender.id_column, lender.target_column) == ("loan_id", "bad")
    assert (lender.amount_column, lender.rate_column, lender.term_column) == (
        "requested_amount", "apr", "duration_months"
    )
    assert lender.date_column is None
    assert lender.feature_names == (
        "monthly_income", "requested_amount", "duration_months", "apr", "bureau_score", "sector",
        "has_guarantor", "amount_to_income",
    )
    assert lender.categorical_features == ("sector", "has_guarantor")
    assert lender.column("has_guarantor").categories == ("yes", "no")
    assert lender.model.cv_folds == 3 and lender.model.reason_codes == 3
    assert lender.economics.currency == "EUR"
    assert lender.paths.models_dir == tmp_path.resolve() / "lender_models"


def test_quality_gate_uses_the_other_schema(lender: Config) -> None:
    df = make_loans(40, seed=3).astype(object)
    df.loc[2, "bureau_score"] = "1000"
    df.loc[4, "sector"] = "mining"
    df.loc[6, "has_guarantor"] = "maybe"
    df.loc[8, "loan_id"] = df.loc[1, "loan_id"]
    df.loc[10, "duration_months"] = "12.5"
    df.loc[12, "bureau_score"] = ""  # nullable here: still valid
    report = validate_batch(df.drop(columns="bad").to_csv(index=False).encode(), lender)
    assert report.rows_in == 40
    rules = report.issues.set_index("row_number")["rule"].to_dict()
    assert rules == {3: "in_range", 9: "duplicate_id", 11: "integer"}
    assert report.issues.set_index("row_number").loc[3, "column"] == "bureau_score"
    assert report.valid["bureau_score"].isna().sum() >= 1
    assert "[0 to 999]" in report.issues["message"].iloc[0]
    # undeclared codes keep their rows (read as missing) and are counted
    assert sorted(report.mapping_lines()) == ["has_guarantor: 'maybe' ×1 mapped to missing",
                                              "sector: 'mining' ×1 mapped to missing"]
    valid = report.valid.set_index(pd.Index(report.row_numbers))
    assert pd.isna(valid.loc[5, "sector"]) and pd.isna(valid.loc[7, "has_guarantor"])


def test_each_config_refuses_the_other_lenders_batch(lender: Config) -> None:
    default = load_config(default_config_path())
    ours = make_loans(20, seed=4).to_csv(index=False).encode()
    with pytest.raises(BatchRejected) as exc:
        validate_batch(ours, default)
    assert exc.value.reason == "missing_columns"
    assert "application_id" in exc.value.details["missing"]
    theirs = generate_applications(20, seed=4).to_csv(index=False).encode()
    with pytest.raises(BatchRejected) as exc:
        validate_batch(theirs, lender)
    assert "loan_id" in exc.value.details["missing"]


def test_train_save_load_and_score_the_other_lender(lender: Config) -> None:
    history = make_loans(3000, seed=1)
    assert 0.12 < history["bad"].mean() < 0.35
    training = validate_batch(history.to_csv(index=False).encode(), lender, require_target=True)
    assert training.rows_quarantined == 0 and training.rows_valid == 3000

    result = train(training.valid, lender)
    assert [c.name for c in result.candidates] == ["random_forest", "lightgbm"]
    assert sorted(np.unique(result.champion.model.folds_)) == [0, 1, 2]
    assert result.champion.metrics["auc"] > 0.7
    assert result.champion.strategy.automation_rate >= 0.75 - 1e-4

    bundle = build_bundle(result, training.valid, lender, training_sha256=training.batch.sha256)
    assert bundle.card["features"] == list(lender.feature_names)
    assert bundle.card["dataset"] == "microloans-eu"
    assert set(bundle.baseline.specs) == {"score", *lender.feature_names}
    assert len(bundle.baseline.specs["bureau_score"].edges) <= 4  # monitoring.bins: 5
    assert set(bundle.required_columns) == set(lender.feature_names) - {"amount_to_income"}

    folder = save_bundle(bundle, lender.paths.models_dir, installation_key(lender))
    assert folder.parent == lender.paths.models_dir
    loaded = load_bundle(folder, installation_key(lender))

    fresh = make_loans(2000, seed=2)
    batch = validate_batch(fresh.drop(columns="bad").to_csv(index=False).encode(), lender)
    assert batch.rows_valid == 2000
    decisions = ScoringEngine(loaded, lender).score(batch.valid, batch.row_numbers)

    assert len(decisions) == 2000
    assert decisions["application_id"].tolist() == fresh["loan_id"].tolist()
    p = decisions["probability"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert roc_auc_score(fresh["bad"], p) > 0.7
    assert abs(p.mean() - fresh["bad"].mean()) < 0.03
    assert set(decisions["band"]) == {"low", "medium", "high"}
    assert (decisions["decision"] == decisions["band"].map(
        {"low": "approve", "medium": "review", "high": "decline"})).all()
    assert (decisions["band"] != "medium").mean() > 0.65

    flagged = decisions[decisions["decision"] != "approve"]
    assert (decisions.loc[decisions["decision"] == "approve", "reasons"].map(len) == 0).all()
    assert (flagged["reasons"].map(len) >= 1).all()
    assert (flagged["reasons"].map(len) <= 3).all()
    cited = {r["feature"] for rs in flagged["reasons"] for r in rs}
    assert cited <= set(lender.feature_names)
    assert "bureau_score" in cited and "amount_to_income" in cited
    assert not cited & ({"loan_id", "bad"} | DEFAULT_DATASET_COLUMNS)
    texts = [r["text"] for rs in flagged["reasons"] for r in rs]
    assert any(t.startswith("The credit bureau score is low (Bureau score ") for t in texts)
    assert any(t.startswith("No one guarantees the loan (Guarantor: no)") for t in texts)
    for t in texts:
        assert "credit_score" not in t and "application_id" not in t and "bureau_score" not in t
