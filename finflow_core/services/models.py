"""Model versions: training, the registry, promotion, band edges, what-ifs, loading for scoring.

The first model ever registered becomes champion at once (nothing could be scored
otherwise); any later one waits for a manager's promotion.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finflow_core.errors import BatchRejected, Conflict, InvalidInput, ModelError, NotFound
from finflow_core.formatting import count
from finflow_core.lending.config import FINFLOW_CSV, CsvForm
from finflow_core.lending.intake.reader import Source
from finflow_core.lending.intake.validation import ValidationReport, validate_batch
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.model.training_data import TrainingDataCheck
from finflow_core.lending.strategy import LoanValues, Strategy, evaluate_edges
from finflow_core.lending.terms import ModelStatus
from finflow_core.services.access import Action
from finflow_core.services.audit import anchored_write
from finflow_core.services.base import Service
from finflow_core.services.lineage import TRAINING_COPY, challenger_training_data, holdout_frame
from finflow_core.services.model_comparison import (
    EvidenceKind,
    ModelComparison,
    evaluation_frame,
    labelled_evidence,
    out_of_fold_evidence,
)
from finflow_core.services.model_comparison import compare as compare_on
from finflow_core.services.scoring_engines import active_strategy, load_version
from finflow_core.services.text_input import typed_text
from finflow_core.store import registry
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.model_files import installation_key, save_bundle
from finflow_core.store.registry import VersionRecord


@dataclass
class TrainingOutcome:
    """A newly registered version, how it was trained, and how it compares with the champion
    on the same data (None for the first model; ``comparison_error`` when it could not be)."""

    version: str
    card: dict[str, Any]
    validation: ValidationReport
    became_champion: bool
    champion_comparison: ModelComparison | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    comparison_error: str | None = None
    data_check: TrainingDataCheck | None = None
    reports: dict[str, Path] = field(default_factory=dict)  # quarantine report files written

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the lender must know about the data the model learned from."""
        return self.data_check.warnings if self.data_check is not None else ()


@dataclass(frozen=True)
class WhatIf:
    """Automation, expected profit and ROI of band edges on the model's out-of-fold scores."""

    low_edge: float
    high_edge: float
    automation_rate: float
    expected_profit: float
    roi: float
    share_low: float
    share_medium: float
    share_high: float
    expected_bad_rate_approved: float = float("nan")


def _end_tests_of(conn: Any, version: str, by: str, now: Any) -> None:
    """A challenger that becomes the champion has nothing left to be tested against: its
    running tests stop with the promotion (audited), so no batch runs two arms of one model."""
    from finflow_core.store import experiments as store_experiments

    for test in store_experiments.running(conn):
        if test.challenger_version == version and store_experiments.stop(conn, test.id, by, now) == 1:
            append_audit(conn, by, "experiment_stopped", "experiment", test.id,
                         {"reason": f"challenger {version} promoted to champion",
                          **store_experiments.seal_ref(conn, test.id)}, at=now)


def training_copy(source: Source) -> bytes:
    """The training file as given, gzip-compressed, kept with the model for later retraining."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _write_quarantine_report(report: ValidationReport, folder: Path) -> dict[str, Path]:
    """quarantine.csv and quarantine_issues.csv of a training file, as a weekly run writes them."""
    from finflow_core.store.exports import write_csv

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"quarantine": folder / "quarantine.csv", "issues": folder / "quarantine_issues.csv"}
    write_csv(report.quarantined, paths["quarantine"])
    write_csv(report.issues, paths["issues"])
    return paths


# -- the service ----------------------------------------------------------------------------

class ModelService(Service):
    """Analysts train and register versions; managers promote them and set band edges."""

    def champion(self) -> VersionRecord | None:
        self.require(Action.VIEW_MODELS)
        with self.ctx.store.connect() as conn:
            name = registry.champion_version(conn)
            return None if name is None else registry.version(conn, name)

    def versions(self) -> list[VersionRecord]:
        """Every registered version, newest first."""
        self.require(Action.VIEW_MODELS)
        with self.ctx.store.connect() as conn:
            return registry.versions(conn)

    def card(self, version: str | None = None) -> dict[str, Any]:
        """A version's model card (the champion's by default)."""
        self.require(Action.VIEW_MODELS)
        with self.ctx.store.connect() as conn:
            name = version or registry.champion_version(conn)
            found = None if name is None else registry.card(conn, name)
        if found is None:
            raise NotFound(f"no model version {version!r}" if version else "no champion model yet",
                           version=version)
        return found

    def bundle(self, version: str) -> ModelBundle:
        """A registered version, loaded (for distributions, explanations, what-ifs)."""
        self.require(Action.VIEW_MODELS)
        return load_version(self.ctx, version)

    def active_strategy(self, version: str | None = None) -> Strategy:
        self.require(Action.VIEW_MODELS)
        champion = self.champion()
        name = version or (champion.version if champion else None)
        if name is None:
            raise NotFound("no champion model yet")
        return active_strategy(self.ctx, load_version(self.ctx, name))

    def what_if(self, low_edge: float, high_edge: float, version: str | None = None) -> WhatIf:
        """Other band edges on the out-of-fold scores kept with the model; changes nothing."""
        self.require(Action.VIEW_MODELS)
        champion = self.champion()
        name = version or (champion.version if champion else None)
        if name is None:
            raise NotFound("no champion model yet")
        bundle = load_version(self.ctx, name)
        if bundle.loan_values is None:
            raise ModelError("this model version has no stored loan values for a what-if")
        figures = evaluate_edges(bundle.model.oof_proba_, LoanValues(**bundle.loan_values),
                                 self.ctx.config.economics, low_edge, high_edge)
        return WhatIf(low_edge, high_edge, **figures)

    def train(self, source: Source, *, name: str | None = None, allow_over_limit: bool = False,
              report_dir: Path | None = None, lineage: dict[str, Any] | None = None,
              form: CsvForm | None = None) -> TrainingOutcome:
        """Validate a labelled history, train every candidate, save and register the champion.

        The training file goes through the same quality gate as a batch: a quarantine share
        above ``model.max_quarantine_share`` is refused unless ``allow_over_limit``, and a
        significant difference between the default rates of kept and quarantined rows is a
        warning recorded in the model card. ``report_dir`` gets the quarantine report.
        """
        self.require(Action.TRAIN_MODEL)
        from finflow_core.lending.explain import global_importance
        from finflow_core.lending.model.bundle import build_bundle
        from finflow_core.lending.model.training import train
        from finflow_core.lending.model.training_data import check_training_data

        config = self.ctx.config
        report = validate_batch(source, config, name=name, require_target=True, form=form)
        reports = _write_quarantine_report(report, report_dir) if report_dir is not None else {}
        check = check_training_data(report, config)
        check.enforce(allow_over_limit=allow_over_limit)
        result = train(report.valid, config)
        bundle = build_bundle(result, report.valid, config, training_sha256=report.batch.sha256,
                              training_data=check)
        bundle.card["global_importance"] = global_importance(bundle, config, report.valid)
        copy = training_copy(source)
        bundle.card["training_copy_sha256"] = hashlib.sha256(copy).hexdigest()
        bundle.card["training_copy_form"] = {"encoding": report.batch.encoding,  # the copy is as given
                                             "delimiter": report.batch.delimiter}
        bundle.card["lineage"] = lineage or {
            "parent_version": None,
            "data": [{"file": report.batch.name, "sha256": report.batch.sha256, "rows": report.rows_in}],
        }
        bundle.evaluation = evaluation_frame(report.valid, bundle.model.oof_proba_, config)
        comparison, comparison_error = self._compare_with_champion(bundle)
        folder = save_bundle(bundle, config.paths.models_dir, installation_key(config))
        (folder / TRAINING_COPY).write_bytes(copy)  # its hash is in the signed card
        try:
            became = self.register(bundle, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # nothing registered, nothing left behind
            raise
        return TrainingOutcome(bundle.version, bundle.card, report, became, comparison,
                               [c.card() for c in result.candidates], comparison_error, check, reports)

    def train_challenger(self, *, allow_over_limit: bool = False,
                         report_dir: Path | None = None) -> TrainingOutcome:
        """Train on the champion's own training data plus every stored application with an
        outcome since (funded loans only: the model still never sees declined applicants)."""
        self.require(Action.TRAIN_MODEL)
        with self.ctx.store.connect() as conn:
            parent = registry.champion_version(conn)
        if parent is None:
            raise ModelError("no champion yet: train a first model with `finflow train --data FILE.csv`")
        data, lineage = challenger_training_data(self.ctx, parent)
        return self.train(data, name=f"challenger of {parent}", allow_over_limit=allow_over_limit,
                          report_dir=report_dir, lineage=lineage, form=FINFLOW_CSV)

    def rollback(self, reason: str) -> str:
        """Make the previous champion the champion again, in one step; returns its version."""
        self.require(Action.PROMOTE_MODEL)
        reason = typed_text(reason, "reason",
                            needed="a rollback needs a reason (it is recorded in the audit trail)")
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored, as a promotion is
            current = registry.champion_version(conn)
            previous = registry.previous_champion(conn)
            if current is None or previous is None:
                raise NotFound("there is no earlier champion to roll back to")
            registry.make_champion(conn, previous, self.actor.username, now, note=reason)
            append_audit(conn, self.actor.username, "model_rolled_back", "model", previous,
                         {"from": current, "reason": reason}, model_version=previous, at=now)
        return previous

    def register(self, bundle: ModelBundle, folder: Path) -> bool:
        """Record a saved version; True when it became champion (the first model)."""
        self.require(Action.REGISTER_MODEL)
        card = bundle.card
        now = self.ctx.clock()
        by = self.actor.username
        with self.ctx.store.begin() as conn:
            first = registry.champion_version(conn) is None
            sealed = registry.insert_version(conn, bundle, folder, by, now, champion=first,
                                             models_dir=self.ctx.config.paths.models_dir)
            append_audit(conn, by, "model_trained", "model", bundle.version, {
                "model": bundle.model_name, "rows": card["rows"],
                "training_data_sha256": card["training_data_sha256"],
                "artifact_sha256": card["artifact_sha256"],
                "auc": card["metrics_out_of_fold"]["auc"], "cutoff": card["strategy"]["cutoff"],
                **sealed,
            }, model_version=bundle.version, at=now)
            if first:
                append_audit(conn, by, "model_promoted", "model", bundle.version,
                             {"reason": "first model registered: champion by default"},
                             model_version=bundle.version, at=now)
        return first

    def compare(self, candidate: str, against: str | None = None, *, data: Source | None = None,
                name: str | None = None) -> ModelComparison:
        """``candidate`` against ``against`` (the champion by default) on the same outcomes:
        a labelled file when given; else the out-of-time holdout of stored outcomes (the
        candidate's held-out vintages, or the most recent labelled vintage neither model
        learned from); else the candidate's own training rows (out of fold).

        See :mod:`finflow_core.services.model_comparison` for the figures and the rules.
        """
        self.require(Action.VIEW_MODELS)
        champion = against or self._champion_name()
        cand, champ = load_version(self.ctx, candidate), load_version(self.ctx, champion)
        config = self.ctx.config
        holdout = None if data is not None else holdout_frame(self.ctx, cand.card, champ.card)
        if data is not None:
            report = validate_batch(data, config, name=name, require_target=True)
            evidence = labelled_evidence(report.valid, labelled_source(report), cand, champ, config)
        elif holdout is not None:
            frame, vintages = holdout
            evidence = labelled_evidence(frame, f"the out-of-time holdout ({', '.join(vintages)}), which "
                                         "neither model learned from", cand, champ, config,
                                         EvidenceKind.RECENT_VINTAGES)
        else:
            found = out_of_fold_evidence(cand, champ, config)
            if found is None:
                raise ModelError(f"model {candidate} kept no training rows to compare on: compare it on "
                                 "a labelled file of recent applications instead", version=candidate)
            evidence = found
        return compare_on(cand, active_strategy(self.ctx, cand), champ, active_strategy(self.ctx, champ),
                          evidence, config)

    def promote(self, version: str, reason: str = "", *,
                comparison: ModelComparison | None = None) -> ModelComparison | None:
        """Make ``version`` the champion (the previous one is retired), for a reason a person
        gives; the comparison with the champion (made here unless given) goes into the trail."""
        self.require(Action.PROMOTE_MODEL)
        why = typed_text(reason, "reason", needed="give the reason for promoting this model (it is "
                         "recorded in the audit trail)")
        compared: dict[str, Any]
        if comparison is None:
            try:
                comparison = self.compare(version)
            except (ModelError, NotFound) as exc:
                compared = {"error": exc.message}
        if comparison is not None:
            compared = comparison.audit_details()
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            rec = registry.version(conn, version)
            if rec is None:
                raise NotFound(f"no model version {version!r}", version=version)
            if rec.status == ModelStatus.CHAMPION:
                raise Conflict(f"model {version} is already the champion", version=version)
            old = registry.champion_version(conn)
            if comparison is not None and comparison.champion.version != old:
                raise Conflict(f"the champion changed to {old} meanwhile: compare again before promoting",
                               version=version)
            registry.make_champion(conn, version, self.actor.username, now, note=why)
            append_audit(conn, self.actor.username, "model_promoted", "model", version,
                         {"previous_champion": old, "note": why, "comparison": compared},
                         model_version=version, at=now)
            _end_tests_of(conn, version, self.actor.username, now)
        return comparison

    def save_strategy(self, low_edge: float, high_edge: float, note: str = "",
                      version: str | None = None) -> None:
        """Save new band edges for a version (the champion by default); audited."""
        self.require(Action.EDIT_STRATEGY)
        if not 0 <= low_edge <= high_edge <= 1:
            raise InvalidInput("band edges need 0 <= low edge <= high edge <= 1", field="edges",
                               low_edge=low_edge, high_edge=high_edge)
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            name = version or registry.champion_version(conn)
            if name is None or registry.version(conn, name) is None:
                raise NotFound(f"no model version {name!r}", version=name)
            sealed = registry.insert_edges(conn, name, low_edge, high_edge, note,
                                           self.actor.username, now)
            append_audit(conn, self.actor.username, "strategy_saved", "model", name,
                         {"low_edge": low_edge, "high_edge": high_edge, "note": note, **sealed},
                         model_version=name, at=now)

    def _champion_name(self) -> str:
        with self.ctx.store.connect() as conn:
            name = registry.champion_version(conn)
        if name is None:
            raise NotFound("no champion model yet")
        return name

    def _compare_with_champion(self, new: ModelBundle) -> tuple[ModelComparison | None, str | None]:
        """A new version against the champion on the new version's training rows."""
        with self.ctx.store.connect() as conn:
            version = registry.champion_version(conn)
        if version is None:
            return None, None
        try:
            champ = load_version(self.ctx, version)
        except ModelError as exc:
            return None, exc.message
        holdout = holdout_frame(self.ctx, new.card, champ.card)
        if holdout is not None:  # a challenger: judged on the vintages it did not learn from
            frame, vintages = holdout
            evidence = labelled_evidence(frame, f"the out-of-time holdout ({', '.join(vintages)}), "
                                         "which neither model learned from", new, champ,
                                         self.ctx.config, EvidenceKind.RECENT_VINTAGES)
        else:
            found = out_of_fold_evidence(new, champ, self.ctx.config)
            assert found is not None  # train() kept the rows
            evidence = found
        strategy = new.strategy
        return compare_on(new, strategy, champ, active_strategy(self.ctx, champ), evidence,
                          self.ctx.config), None


def labelled_source(report: ValidationReport) -> str:
    """The labelled file a comparison is made on, with the rows its quality gate left out
    (a blank outcome, a value out of range) counted by rule; a file with no row left is
    refused, naming the rules, before either model scores it."""
    name, rules = report.batch.name, ", ".join(
        f"{rule} ×{n:,}" for rule, n in report.rule_counts().items())
    if report.rows_valid == 0:
        raise BatchRejected(
            f"{name}: none of its {count(report.rows_in)} rows can be compared on: all were "
            f"quarantined ({rules or 'see the quarantine report'}); a labelled file needs the "
            "columns the model reads and each row's outcome", reason="no_valid_rows",
            rows=report.rows_in, rules=report.rule_counts())
    if not report.rows_quarantined:
        return name
    return (f"{name} ({count(report.rows_quarantined)} of its {count(report.rows_in)} rows "
            f"quarantined and left out: {rules})")
