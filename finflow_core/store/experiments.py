"""Champion-challenger experiments in the store: the running split or shadow, and its arms.

Each experiment row is sealed (``finflow_core.store.seals``) when it starts and again when
it stops; the audit event of each records the new seal (:func:`seal_ref`). A batch scored
under a running test seals the arms and shadow scores it writes (``store.batch_writer``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from finflow_core.store import seals
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


def running(conn: Connection, *, checked: bool = False) -> list[ExperimentRecord]:
    """The running tests (``checked``: refusing any that fails its seal, before a batch is
    routed by it)."""
    rows = conn.execute(select(experiments).where(experiments.c.stopped_at.is_(None))
                        .order_by(experiments.c.id)).all()
    if checked:
        for r in rows:
            seals.check_seal(conn, "experiments", r, f"the running {r.kind} test")
    return [_record(r) for r in rows]


def by_id(conn: Connection, experiment_id: int) -> ExperimentRecord | None:
    row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).first()
    return None if row is None else _record(row)


def all_experiments(conn: Connection) -> list[ExperimentRecord]:
    return [_record(r) for r in conn.execute(select(experiments).order_by(experiments.c.id.desc()))]


def start(conn: Connection, *, kind: str, version: str, low: float, high: float, share: float, seed: int,
          reason: str, by: str, now: datetime) -> int:
    row = seals.sealed_insert_values(
        conn, experiments, kind=kind, challenger_version=version, low_edge=float(low),
        high_edge=float(high), share=float(share), seed=int(seed), reason=reason, started_by=by,
        started_at=iso_utc(now), stopped_by=None, stopped_at=None)
    conn.execute(experiments.insert().values(**row))
    return int(row["id"])


def stop(conn: Connection, experiment_id: int, by: str, now: datetime) -> int:
    """Stop a running test and seal it again; rows changed (0: not running)."""
    changed = conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                           .where(experiments.c.stopped_at.is_(None))
                           .values(stopped_by=by, stopped_at=iso_utc(now))).rowcount
    if changed:
        row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).mappings().one()
        conn.execute(update(experiments).where(experiments.c.id == experiment_id)
                     .values(seal=seals.seal_row(seals.key_of(conn), "experiments", row)))
    return changed


def seal_ref(conn: Connection, experiment_id: int) -> dict[str, Any]:
    """The row's current seal, for the audit event that records the write (merge it in)."""
    seal = conn.execute(select(experiments.c.seal).where(experiments.c.id == experiment_id)).scalar_one()
    return seals.seal_ref("experiments", experiment_id, seal)


def arm_application_ids(conn: Connection, experiment_id: int) -> set[int]:
    """The applications a split assigned an arm (either) while ``experiment_id`` ran."""
    return set(conn.execute(select(application_arms.c.application_id)
                            .where(application_arms.c.experiment_id == experiment_id)).scalars())
