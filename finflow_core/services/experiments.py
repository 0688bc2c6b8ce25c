"""Champion against challenger in production: a random split of each batch, a shadow run
beside the champion, a replay over past applications, and the arms compared.

A split sends a configured share of every batch (chosen by a keyed hash of the application
id and a recorded seed) to the challenger's model and strategy, which then decide those
applications; a shadow scores every application with the challenger too, but the champion
decides. Both are started and stopped by a manager, with a reason, and audited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finflow_core.errors import Conflict, InvalidInput, NotFound
from finflow_core.lending.experiments import ArmComparison, compare_arms
from finflow_core.lending.intake.reader import make_chunk
from finflow_core.lending.intake.validation import BatchValidator
from finflow_core.lending.terms import BAND_RECOMMENDATION, Band, Status
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.services.scoring_engines import active_strategy, engine_for, load_version
from finflow_core.services.text_input import typed_text
from finflow_core.store import experiments as store_experiments
from finflow_core.store import outcomes as rows_of
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.experiments import ExperimentRecord

KINDS = ("split", "shadow")


@dataclass(frozen=True)
class Replay:
    """A version's decisions over past applications, against what was decided."""

    version: str
    applications: int
    changed: int  # recommendation (approve / review / decline) differs
    to_approve: int  # now approved automatically, before not
    to_decline: int
    to_review: int
    mean_probability_before: float
    mean_probability_after: float
    transitions: pd.DataFrame  # before, after, n

    @property
    def changed_share(self) -> float:
        return self.changed / self.applications if self.applications else 0.0


class ExperimentService(Service):
    """Managers run champion-challenger tests; analysts and managers read their results."""

    def running(self) -> list[ExperimentRecord]:
        self.require(Action.VIEW_PERFORMANCE)
        with self.ctx.store.connect() as conn:
            return store_experiments.running(conn)

    def history(self) -> list[ExperimentRecord]:
        self.require(Action.VIEW_PERFORMANCE)
        with self.ctx.store.connect() as conn:
            return store_experiments.all_experiments(conn)

    def start(self, version: str, *, kind: str = "split", share: float = 0.10, reason: str,
              seed: int | None = None) -> ExperimentRecord:
        """Start a split (``share`` of each batch decided by ``version``) or a shadow run."""
        self.require(Action.MANAGE_EXPERIMENTS)
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
        if not 0 < share <= 0.5 and kind == "split":
            raise InvalidInput("a challenger arm takes more than 0% and at most 50% of a batch", field="share")
        reason = typed_text(reason, "reason",
                            needed="starting a test needs a reason (it is recorded in the audit trail)")
        bundle = load_version(self.ctx, version)  # refused when missing or tampered with
        strategy = active_strategy(self.ctx, bundle)
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        now = self.ctx.clock()
        with self.ctx.store.begin() as conn:
            if any(e.kind == kind for e in store_experiments.running(conn)):
                raise Conflict(f"a {kind} test is already running: stop it first", kind=kind)
            from finflow_core.store import registry

            if registry.champion_version(conn) == version:
                raise InvalidInput(f"{version} is the champion: pick a challenger", field="version")
            exp_id = store_experiments.start(conn, kind=kind, version=version, low=strategy.low_edge,
                                             high=strategy.high_edge, share=share if kind == "split" else 1.0,
                                             seed=seed, reason=reason, by=self.actor.username, now=now)
            append_audit(conn, self.actor, "experiment_started", "experiment", exp_id, {
                "kind": kind, "challenger": version, "share": share, "seed": seed,
                "low_edge": strategy.low_edge, "high_edge": strategy.high_edge, "reason": reason,
                **store_experiments.seal_ref(conn, exp_id),
            }, model_version=version, at=now)
            record = store_experiments.by_id(conn, exp_id)
        assert record is not None
        return record

    def stop(self, experiment_id: int, *, reason: str) -> None:
        self.require(Action.MANAGE_EXPERIMENTS)
        reason = typed_text(reason, "reason",
                            needed="stopping a test needs a reason (it is recorded in the audit trail)")
        now = self.ctx.clock()
        with self.ctx.store.begin() as conn:
            if store_experiments.stop(conn, experiment_id, self.actor.username, now) != 1:
                raise NotFound(f"no running experiment {experiment_id}", experiment=experiment_id)
            append_audit(conn, self.actor, "experiment_stopped", "experiment", experiment_id,
                         {"reason": reason, **store_experiments.seal_ref(conn, experiment_id)},
                         at=now)

    def compare(self, experiment_id: int) -> ArmComparison:
        """The two arms of a split, side by side with confidence intervals (outcomes so far)."""
        self.require(Action.VIEW_PERFORMANCE)
        with self.ctx.store.connect(snapshot=True) as conn:
            frame = rows_of.performance_rows(conn)
            record = store_experiments.by_id(conn, experiment_id)
            ids = store_experiments.arm_application_ids(conn, experiment_id)
        if record is None:
            raise NotFound(f"no experiment {experiment_id}", experiment=experiment_id)
        # this test's arms only (an earlier or later split assigned arms of its own)
        frame = frame[frame["arm"].notna() & frame["application_id"].isin(ids)]
        frame = frame.assign(approved=frame["status"] == Status.APPROVED)
        return compare_arms(frame, seed=record.seed)

    def replay(self, version: str, *, batch_ids: tuple[str, ...] = ()) -> Replay:
        """Score past applications with ``version`` and its strategy (nothing is stored)."""
        self.require(Action.VIEW_PERFORMANCE)
        bundle = load_version(self.ctx, version)
        engine = engine_for(self.ctx, bundle, active_strategy(self.ctx, bundle), explain=False)
        with self.ctx.store.connect(snapshot=True) as conn:
            perf = rows_of.performance_rows(conn, batch_ids=batch_ids)
            data = rows_of.stored_data(conn, perf["application_id"].astype(int).tolist())
        if data.empty:
            raise NotFound("no stored application to replay")
        columns = [c for c in data.columns if c != "batch_id"]
        chunk = make_chunk(tuple(columns), data[columns].fillna("").astype(str).values.tolist(),
                           list(range(1, len(data) + 1)), list(range(2, len(data) + 2)), [])
        checked = BatchValidator(self.ctx.config).validate(chunk)
        scored = engine.score(checked.valid, checked.row_numbers)
        before = perf.iloc[checked.row_numbers - 1]
        old = before["band"].map(lambda b: BAND_RECOMMENDATION[Band(b)]).to_numpy()
        new = scored["decision"].to_numpy()
        transitions = (pd.DataFrame({"before": old, "after": new}).value_counts().rename("n").reset_index())
        changed = old != new
        return Replay(
            version, len(scored), int(changed.sum()), int((changed & (new == "approve")).sum()),
            int((changed & (new == "decline")).sum()), int((changed & (new == "review")).sum()),
            float(before["probability"].mean()), float(np.mean(scored["probability"])), transitions,
        )


__all__ = ["ExperimentService", "Replay"]
