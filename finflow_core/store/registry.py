"""The registry of record: model versions, which one is champion, and saved band edges.

The files live under the models folder; the store holds each version's card and artifact
hash, so a model is loaded only if its file still hashes to what was registered. Both kinds
of rows are sealed with the installation key (``store.seals``) when written, and checked
before they are relied on (:func:`trusted_version`, :func:`saved_edges`): a row changed or
inserted by SQL (an artifact hash updated to match a swapped model, band edges that approve
everything) is refused with :class:`~finflow_core.store.seals.SealBroken`, and so is a row
without a seal (until an admin adopts rows from before sealing: ``finflow audit seal-legacy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, select, update

from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.terms import ModelStatus
from finflow_core.store import seals
from finflow_core.store.lending_tables import model_versions, strategies
from finflow_core.store.tables import iso_utc


@dataclass(frozen=True)
class VersionRecord:
    """A registered model version with its headline figures."""

    version: str
    model: str
    status: ModelStatus
    created_at: str
    trained_by: str
    rows: int
    auc: float
    cutoff: float
    oof_profit: float | None  # None when the lender has no pricing
    promoted_by: str | None
    promoted_at: str | None
    folder: str
    artifact_sha256: str


@dataclass(frozen=True)
class SavedEdges:
    low_edge: float
    high_edge: float
    note: str
    saved_at: str
    saved_by: str


def _figure(value: Any) -> float | None:
    return None if value is None else float(value)


def _record(r: Any) -> VersionRecord:
    card = json.loads(r.card)
    return VersionRecord(
        r.version, r.model_name, ModelStatus(r.status), r.created_at, r.trained_by, int(r.rows),
        float(card["metrics_out_of_fold"]["auc"]), float(card["strategy"]["cutoff"]),
        _figure(card["strategy"].get("oof_profit_banded")), r.promoted_by, r.promoted_at, r.folder,
        r.artifact_sha256,
    )


def champion_version(conn: Connection) -> str | None:
    return conn.execute(select(model_versions.c.version)
                        .where(model_versions.c.status == ModelStatus.CHAMPION)).scalar()


def version(conn: Connection, name: str) -> VersionRecord | None:
    row = conn.execute(select(model_versions).where(model_versions.c.version == name)).first()
    return None if row is None else _record(row)


def versions(conn: Connection) -> list[VersionRecord]:
    rows = conn.execute(select(model_versions).order_by(model_versions.c.created_at.desc())).all()
    return [_record(r) for r in rows]


def card(conn: Connection, name: str) -> dict[str, Any] | None:
    text = conn.execute(select(model_versions.c.card).where(model_versions.c.version == name)).scalar()
    return None if text is None else json.loads(text)


def stored_folder(folder: Path, models_dir: Path | None) -> str:
    """A model folder as the registry keeps it: relative to the installation's models folder
    when it lies inside it (a copied or restored home then loads its own models)."""
    if models_dir is not None:
        try:
            return Path(folder).resolve().relative_to(Path(models_dir).resolve()).as_posix()
        except ValueError:
            pass
    return str(folder)


def model_folder(stored: str, models_dir: Path) -> Path:
    """Where a registered version's files are: relative rows under ``models_dir``; an old
    absolute row where it says, or under ``models_dir`` by name if that place is gone."""
    path = Path(stored)
    if not path.is_absolute():
        return models_dir / path
    if not path.exists() and (models_dir / path.name).is_dir():
        return models_dir / path.name  # a home copied from elsewhere, registered before 0004
    return path


def trusted_version(conn: Connection, name: str) -> VersionRecord | None:
    """A version about to be loaded and scored with: its row must pass its seal."""
    row = conn.execute(select(model_versions).where(model_versions.c.version == name)).first()
    if row is None:
        return None
    _check(conn, model_versions, row, f"model version {name}")
    return _record(row)


def insert_version(conn: Connection, bundle: ModelBundle, folder: Path, trained_by: str, now: datetime,
                   *, champion: bool, models_dir: Path | None = None) -> dict[str, Any]:
    """Register a version (sealed); returns what its audit event records about the row."""
    c = bundle.card
    values = seals.sealed_values(conn, "model_versions", dict(
        version=bundle.version, model_name=bundle.model_name,
        status=ModelStatus.CHAMPION if champion else ModelStatus.CANDIDATE,
        artifact_sha256=c["artifact_sha256"], training_data_sha256=c["training_data_sha256"],
        rows=c["rows"], folder=stored_folder(folder, models_dir), card=json.dumps(c, sort_keys=True), created_at=iso_utc(now),
        trained_by=trained_by, promoted_at=iso_utc(now) if champion else None,
        promoted_by=trained_by if champion else None,
    ))
    conn.execute(model_versions.insert().values(**values))
    return seals.seal_ref("model_versions", bundle.version, values["seal"])


def make_champion(conn: Connection, name: str, by: str, now: datetime, *, note: str = "") -> None:
    """Retire the champion and crown ``name``, in the caller's transaction."""
    conn.execute(update(model_versions).where(model_versions.c.status == ModelStatus.CHAMPION)
                 .values(status=ModelStatus.RETIRED))
    conn.execute(update(model_versions).where(model_versions.c.version == name)
                 .values(status=ModelStatus.CHAMPION, promoted_at=iso_utc(now), promoted_by=by,
                         promotion_note=note or None))


def previous_champion(conn: Connection) -> str | None:
    """The retired version that was champion most recently (what a rollback restores)."""
    return conn.execute(
        select(model_versions.c.version).where(model_versions.c.status == ModelStatus.RETIRED)
        .where(model_versions.c.promoted_at.is_not(None))
        .order_by(model_versions.c.promoted_at.desc()).limit(1)
    ).scalar()


def saved_edges(conn: Connection, name: str) -> SavedEdges | None:
    """The band edges a manager last saved for a version, if any (refused if not sealed)."""
    row = conn.execute(select(strategies).where(strategies.c.model_version == name)
                       .order_by(strategies.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    _check(conn, strategies, row, f"the band edges saved for {name}")
    return SavedEdges(row.low_edge, row.high_edge, row.note, row.saved_at, row.saved_by)


def insert_edges(conn: Connection, name: str, low: float, high: float, note: str, by: str,
                 now: datetime) -> dict[str, Any]:
    """Save band edges (sealed); returns what its audit event records about the row."""
    values = seals.sealed_insert_values(conn, strategies, model_version=name, low_edge=float(low),
                                        high_edge=float(high), note=note, saved_at=iso_utc(now),
                                        saved_by=by)
    conn.execute(strategies.insert().values(**values))
    return seals.seal_ref("strategies", values["id"], values["seal"])


def _check(conn: Connection, table: Table, row: Any, what: str) -> None:
    """Refuse a row that fails its seal or has none: a row written outside FinFlow is never
    scored with. Rows from before FinFlow sealed them are adopted once by an admin
    (``finflow audit seal-legacy``, an audited step) and then pass."""
    if row.seal is None:
        raise seals.SealBroken(
            f"{what} ({table.name} row) has no seal: it was written outside FinFlow, or before "
            "FinFlow sealed rows (an admin adopts those once with `finflow audit seal-legacy`). "
            "It is not used; run `finflow audit verify`.", table=table.name)
    seals.check_seal(conn, table.name, row, what)
