"""Champion-challenger experiments in the store: the running split or shadow, and its arms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from finflow_core.store.lifecycle_tables import application_arms, experiments
from finflow_core.store.tables import iso_utc


@dataclass(frozen=True)
class ExperimentRecord:
    id: int
    kind: str  # "split" | "shadow"
    challenger_version: str
    low_edge: float
    high_edge: float
    share: float
    seed: int
    reason: str
    started_by: str
    started_at: str
    stopped_by: str | None
    stopped_at: str | None

    @property
    def running(self) -> bool:
        return self.stopped_at is None


def _record(r: Any) -> ExperimentRecord:
    return ExperimentRecord(r.id, r.kind, r.challenger_version, r.low_edge, r.high_edge, r.share, r.seed,
                            r.reason, r.started_by, r.started_at, r.stopped_by, r.stopped_at)


def running(conn: Connection) -> list[ExperimentRecord]:
    rows = conn.execute(select(experiments).where(experiments.c.stopped_at.is_(None))
                        .order_by(experiments.c.id)).all()
    return [_record(r) for r in rows]


def by_id(conn: Connection, experiment_id: int) -> ExperimentRecord | None:
    row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).first()
    return None if row is None else _record(row)


def all_experiments(conn: Connection) -> list[ExperimentRecord]:
    return [_record(r) for r in conn.execute(select(experiments).order_by(experiments.c.id.desc()))]


def start(conn: Connection, *, kind: str, version: str, low: float, high: float, share: float, seed: int,
          reason: str, by: str, now: datetime) -> int:
    return int(conn.execute(experiments.insert().values(
        kind=kind, challenger_version=version, low_edge=low, high_edge=high, share=share, seed=seed,
        reason=reason, started_by=by, started_at=iso_utc(now),
    ).returning(experiments.c.id)).scalar_one())


def stop(conn: Connection, experiment_id: int, by: str, now: datetime) -> int:
    return conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                        .where(experiments.c.stopped_at.is_(None))
                        .values(stopped_by=by, stopped_at=iso_utc(now))).rowcount


def arm_application_ids(conn: Connection, experiment_id: int) -> set[int]:
    """The applications a split assigned an arm (either) while ``experiment_id`` ran."""
    return set(conn.execute(select(application_arms.c.application_id)
                            .where(application_arms.c.experiment_id == experiment_id)).scalars())
