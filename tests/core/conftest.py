"""Shared fixtures of the core unit tests: one small model trained once per session."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from finflow_core.lending.config import Config, default_config_path, parse_config
from finflow_core.lending.intake.validation import ValidationReport, validate_batch
from finflow_core.lending.model.bundle import ModelBundle, build_bundle
from finflow_core.lending.model.training import TrainingResult, train
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.synthetic import generate_applications
from finflow_core.store.model_files import save_bundle

TRAIN_ROWS = 4000
TRAIN_SEED = 1
FRESH_ROWS = 3000
FRESH_SEED = 7
TEST_KEY = b"finflow-test-installation-key"


def csv_bytes(df: pd.DataFrame) -> bytes:
    """A frame as the CSV bytes a lender would upload."""
    return df.to_csv(index=False).encode("utf-8")


def small_raw_config(root: Path) -> dict[str, Any]:
    """The shipped config with small, fast models and every path under ``root``."""
    raw = yaml.safe_load(default_config_path().read_text())
    raw["model"]["random_forest"] = {**raw["model"]["random_forest"], "n_estimators": 60}
    # one LightGBM thread: on a shared 2-core machine OpenMP spin-waiting made training 10x slower
    raw["model"]["lightgbm"] = {**raw["model"]["lightgbm"], "n_estimators": 120, "num_threads": 1}
    raw["paths"] = {
        "models_dir": str(root / "models"),
        "data_dir": str(root / "data"),
        "database_url": f"sqlite:///{root / 'finflow.db'}",
    }
    return raw


@pytest.fixture(scope="session")
def to_csv() -> Callable[[pd.DataFrame], bytes]:
    """``to_csv(frame)``: the frame as uploaded CSV bytes."""
    return csv_bytes


@pytest.fixture(scope="session")
def default_raw() -> dict[str, Any]:
    """The shipped default config as a plain mapping (a fresh copy for each use)."""
    return yaml.safe_load(default_config_path().read_text())


@pytest.fixture(scope="session")
def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("finflow_home")


@pytest.fixture(scope="session")
def small_raw(session_root: Path) -> dict[str, Any]:
    return small_raw_config(session_root)


@pytest.fixture(scope="session")
def config(small_raw: dict[str, Any]) -> Config:
    return parse_config(copy.deepcopy(small_raw), source="small-test-config")


@pytest.fixture(scope="session")
def training_source() -> pd.DataFrame:
    """The generated training batch as written (with the ``default`` outcome)."""
    return generate_applications(TRAIN_ROWS, seed=TRAIN_SEED)


@pytest.fixture(scope="session")
def training_report(training_source: pd.DataFrame, config: Config) -> ValidationReport:
    return validate_batch(csv_bytes(training_source), config, require_target=True)


@pytest.fixture(scope="session")
def training_frame(training_report: ValidationReport) -> pd.DataFrame:
    return training_report.valid


@pytest.fixture(scope="session")
def trained(training_frame: pd.DataFrame, config: Config) -> TrainingResult:
    return train(training_frame, config)


@pytest.fixture(scope="session")
def bundle(
    trained: TrainingResult, training_frame: pd.DataFrame, config: Config,
    training_report: ValidationReport,
) -> ModelBundle:
    return build_bundle(
        trained, training_frame, config, training_sha256=training_report.batch.sha256,
        version="20260105T000000Z-test0001",
    )


@pytest.fixture(scope="session")
def engine(bundle: ModelBundle, config: Config) -> ScoringEngine:
    return ScoringEngine(bundle, config)


@dataclass
class Scored:
    """A fresh, same-population batch scored with the session model."""

    source: pd.DataFrame  # as generated, with the outcome
    report: ValidationReport
    decisions: pd.DataFrame
    drift_counts: dict[str, np.ndarray]


@pytest.fixture(scope="session")
def fresh_scored(engine: ScoringEngine, config: Config) -> Scored:
    source = generate_applications(FRESH_ROWS, seed=FRESH_SEED)
    report = validate_batch(csv_bytes(source.drop(columns="default")), config)
    counts: dict[str, np.ndarray] = {}
    decisions = engine.score(report.valid, report.row_numbers, drift=counts)
    return Scored(source, report, decisions, counts)


@pytest.fixture(scope="session")
def model_key() -> bytes:
    """The installation key the session model is signed with."""
    return TEST_KEY


@pytest.fixture(scope="session")
def saved_model(
    bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The session model saved once, signed with :data:`TEST_KEY` (copy it before changing it)."""
    models = tmp_path_factory.mktemp("saved_models")
    return save_bundle(copy.copy(bundle), models, TEST_KEY)
