"""Model versions of record: training, registration, promotion, strategy edits, loading.

The store is the registry of record: it holds each version's card and artifact hash and
which version is champion; the files live under ``models/``. A model is loaded only if
its file still hashes to what was registered.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update

from finflow_core.errors import Conflict, ModelError, NotFound
from finflow_core.lending.config import Config
from finflow_core.lending.explain import global_importance
from finflow_core.lending.intake.reader import Source
from finflow_core.lending.intake.validation import ValidationReport, validate_batch
from finflow_core.lending.model.bundle import ModelBundle, build_bundle
from finflow_core.lending.model.training import TrainingResult, train
from finflow_core.lending.strategy import LoanValues, Strategy, evaluate_edges
from finflow_core.services.access import require
from finflow_core.services.auth import Principal
from finflow_core.store import Store
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.lending_tables import model_versions, strategies
from finflow_core.store.model_files import installation_key, load_bundle, save_bundle
from finflow_core.store.tables import iso_utc, utcnow


@dataclass
class TrainingOutcome:
    """A newly registered version, how it was trained, and how the champion did on the same data."""

    version: str
    card: dict[str, Any]
    validation: ValidationReport
    became_champion: bool
    champion_comparison: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)


def train_and_register(
    store: Store, actor: Principal, source: Source, config: Config, *, name: str | None = None
) -> TrainingOutcome:
    """Validate a labelled history, train every candidate, save and register the champion.

    The first model ever registered becomes champion at once (nothing could be scored
    otherwise); any later one waits for a manager's promotion.
    """
    require(actor, "train_model")
    report = validate_batch(source, config, name=name, require_target=True)
    result: TrainingResult = train(report.valid, config)
    bundle = build_bundle(result, report.valid, config, training_sha256=report.batch.sha256)
    bundle.card["global_importance"] = global_importance(bundle, config, report.valid)
    comparison = _compare_with_champion(store, config, report, bundle)
    key = installation_key(config)
    folder = save_bundle(bundle, config.paths.models_dir, key)
    try:
        became = register(store, actor, bundle, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing registered, nothing left behind
        raise
    return TrainingOutcome(
        version=bundle.version, card=bundle.card, validation=report, became_champion=became,
        champion_comparison=comparison, candidates=[c.card() for c in result.candidates],
    )


def register(store: Store, actor: Principal, bundle: ModelBundle, folder: Path) -> bool:
    """Record a saved version; returns True when it became champion (the first model)."""
    require(actor, "train_model")
    card = bundle.card
    now = iso_utc(utcnow())
    with store.begin() as conn:
        has_champion = conn.execute(
            select(model_versions.c.version).where(model_versions.c.status == "champion")
        ).first() is not None
        conn.execute(model_versions.insert().values(
            version=bundle.version, model_name=bundle.model_name,
            status="candidate" if has_champion else "champion",
            artifact_sha256=card["artifact_sha256"],
            training_data_sha256=card["training_data_sha256"], rows=card["rows"],
            folder=str(folder), card=json.dumps(card, sort_keys=True), created_at=now,
            trained_by=actor.username,
            promoted_at=None if has_champion else now,
            promoted_by=None if has_champion else actor.username,
        ))
        append_audit(conn, actor.username, "model_trained", "model", bundle.version, {
            "model": bundle.model_name, "rows": card["rows"],
            "training_data_sha256": card["training_data_sha256"],
            "artifact_sha256": card["artifact_sha256"],
            "auc": card["metrics_out_of_fold"]["auc"], "cutoff": card["strategy"]["cutoff"],
        }, model_version=bundle.version)
        if not has_champion:
            append_audit(conn, actor.username, "model_promoted", "model", bundle.version,
                         {"reason": "first model registered: champion by default"},
                         model_version=bundle.version)
    return not has_champion


def promote(store: Store, actor: Principal, version: str, note: str = "") -> None:
    """Make ``version`` the champion; the previous champion is retired. Managers only."""
    require(actor, "promote_model")
    now = iso_utc(utcnow())
    with store.begin() as conn:
        row = conn.execute(select(model_versions).where(model_versions.c.version == version)).first()
        if row is None:
            raise NotFound(f"no model version {version!r}", version=version)
        if row.status == "champion":
            raise Conflict(f"model {version} is already the champion", version=version)
        old = conn.execute(
            select(model_versions.c.version).where(model_versions.c.status == "champion")
        ).scalar()
        conn.execute(update(model_versions).where(model_versions.c.status == "champion")
                     .values(status="retired"))
        conn.execute(update(model_versions).where(model_versions.c.version == version)
                     .values(status="champion", promoted_at=now, promoted_by=actor.username))
        append_audit(conn, actor.username, "model_promoted", "model", version,
                     {"previous_champion": old, "note": note}, model_version=version)


def champion_version(store: Store) -> str | None:
    with store.connect() as conn:
        return conn.execute(
            select(model_versions.c.version).where(model_versions.c.status == "champion")
        ).scalar()


def list_versions(store: Store) -> list[dict[str, Any]]:
    """Every registered version, newest first, with its headline figures."""
    with store.connect() as conn:
        rows = conn.execute(select(model_versions).order_by(model_versions.c.created_at.desc())).all()
    out = []
    for r in rows:
        card = json.loads(r.card)
        out.append({
            "version": r.version, "model": r.model_name, "status": r.status,
            "created_at": r.created_at, "trained_by": r.trained_by, "rows": r.rows,
            "auc": card["metrics_out_of_fold"]["auc"], "cutoff": card["strategy"]["cutoff"],
            "oof_profit": card["strategy"]["oof_profit_banded"],
            "promoted_by": r.promoted_by, "promoted_at": r.promoted_at,
        })
    return out


def model_card(store: Store, version: str) -> dict[str, Any]:
    with store.connect() as conn:
        card = conn.execute(
            select(model_versions.c.card).where(model_versions.c.version == version)
        ).scalar()
    if card is None:
        raise NotFound(f"no model version {version!r}", version=version)
    return json.loads(card)


def load_version(store: Store, config: Config, version: str) -> ModelBundle:
    """Load a registered version, refusing a file that no longer matches the registry."""
    with store.connect() as conn:
        row = conn.execute(select(model_versions).where(model_versions.c.version == version)).first()
    if row is None:
        raise NotFound(f"no model version {version!r} is registered", version=version)
    bundle = load_bundle(Path(row.folder), installation_key(config), expected_sha256=row.artifact_sha256)
    bundle.check_compatible(config)
    return bundle


def load_champion(store: Store, config: Config) -> ModelBundle:
    version = champion_version(store)
    if version is None:
        raise ModelError(
            "no champion model yet: train one with `finflow train --data FILE.csv` "
            "(or the Model page) before scoring",
        )
    return load_version(store, config, version)


def active_strategy(store: Store, bundle: ModelBundle) -> Strategy:
    """The model's strategy with the band edges a manager last saved for it, if any."""
    with store.connect() as conn:
        row = conn.execute(
            select(strategies).where(strategies.c.model_version == bundle.version)
            .order_by(strategies.c.id.desc()).limit(1)
        ).first()
    if row is None:
        return bundle.strategy
    return bundle.strategy.with_edges(row.low_edge, row.high_edge)


def save_strategy(
    store: Store, actor: Principal, version: str, low_edge: float, high_edge: float, note: str = ""
) -> None:
    """Save new band edges for a model version. Managers only; audited."""
    require(actor, "edit_strategy")
    if not 0 <= low_edge <= high_edge <= 1:
        from finflow_core.errors import FinFlowError

        raise FinFlowError("band edges need 0 <= low edge <= high edge <= 1",
                           low_edge=low_edge, high_edge=high_edge)
    with store.begin() as conn:
        exists = conn.execute(
            select(model_versions.c.version).where(model_versions.c.version == version)
        ).first()
        if exists is None:
            raise NotFound(f"no model version {version!r}", version=version)
        conn.execute(strategies.insert().values(
            model_version=version, low_edge=float(low_edge), high_edge=float(high_edge),
            note=note, saved_at=iso_utc(utcnow()), saved_by=actor.username,
        ))
        append_audit(conn, actor.username, "strategy_saved", "model", version,
                     {"low_edge": low_edge, "high_edge": high_edge, "note": note},
                     model_version=version)


def what_if(bundle: ModelBundle, config: Config, low_edge: float, high_edge: float) -> dict[str, float]:
    """Automation rate, expected profit and ROI of other band edges on the training baseline.

    Uses the out-of-fold probabilities and loan values kept with the model; changes nothing.
    """
    p = bundle.model.oof_proba_
    values = bundle.loan_values
    if values is None:
        raise ModelError("this model version has no stored loan values for a what-if")
    return evaluate_edges(p, LoanValues(**values), config.economics, low_edge, high_edge)


def _compare_with_champion(
    store: Store, config: Config, report: ValidationReport, new: ModelBundle
) -> dict[str, Any] | None:
    """Champion and challenger on the same labelled data (champion in-sample if it saw it)."""
    from sklearn.metrics import roc_auc_score

    version = champion_version(store)
    if version is None:
        return None
    try:
        champ = load_version(store, config, version)
    except ModelError as exc:
        return {"champion": version, "error": exc.message}
    y = report.valid[config.target_column].astype(int).to_numpy()
    p_champ = champ.model.predict_proba(report.valid)[:, 1]
    same_data = champ.card.get("training_data_sha256") == report.batch.sha256
    return {
        "champion": version,
        "champion_auc": round(float(roc_auc_score(y, p_champ)), 4),
        "champion_mean_pd": round(float(np.mean(p_champ)), 4),
        "challenger": new.version,
        "challenger_auc_out_of_fold": new.card["metrics_out_of_fold"]["auc"],
        "observed_default_rate": round(float(y.mean()), 4),
        "champion_saw_this_data": same_data,
    }
