"""Verify the small sealed tables (users, strategies, model versions) and the batch records.

Each sealed row must (1) carry a seal, (2) match it, and (3) carry the seal its latest
audit event recorded: (2) catches a change by SQL, (3) a row put back to an older sealed
state or an event deleted from the tail of the trail. Model versions are also checked
against their files (artifact hash, card signature) and the trail (the artifact hash
``model_trained`` recorded, the last promotion); batch rows against their batch entries.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from finflow_core.lending.terms import ModelStatus
from finflow_core.security.keys import InstallationKey
from finflow_core.store.lending_tables import batches, model_versions, strategies
from finflow_core.store.model_files import ARTIFACT, read_card, sha256_file, sign_card
from finflow_core.store.seals import seal_row
from finflow_core.store.tables import users
from finflow_core.store.trail_record import Finding, Recorded, TrailRecord

ADOPT_HINT = "an admin adopts rows from before sealing with `finflow audit seal-legacy`"


def check_sealed(key: InstallationKey, table: str, rows: Iterable[Mapping[str, Any]],
                 pk: str, label: Callable[[Mapping[str, Any]], str],
                 record: TrailRecord) -> tuple[list[Finding], int]:
    """Findings for one sealed table, and how many rows were checked."""
    found: list[Finding] = []
    seen: set[str] = set()
    for row in rows:
        seen.add(str(row[pk]))
        name = label(row)
        stored = row["seal"]
        if stored is None:
            found.append(Finding(table, name, "unsealed", "has no seal: it was written outside "
                                 f"FinFlow (or before FinFlow sealed rows: {ADOPT_HINT})"))
            continue
        if not hmac.compare_digest(str(stored), seal_row(key, table, row)):
            found.append(Finding(table, name, "changed", "was changed outside FinFlow: it no "
                                 "longer matches its seal"))
            continue
        recorded = record.seals.get((table, str(row[pk])))
        if recorded is None:
            found.append(Finding(table, name, "unrecorded", "no audit entry records this row as "
                                 "it is: the entries that wrote it were deleted"))
        elif recorded[1] != stored:
            found.append(Finding(table, name, "rolled_back", f"differs from what audit entry "
                                 f"{recorded[0]} recorded: it was put back to an older state, or "
                                 "the entries that changed it since were deleted"))
    for (t, row_id), (seq, _) in sorted(record.seals.items()):
        if t == table and row_id not in seen:
            found.append(Finding(table, row_id, "missing", f"recorded by audit entry {seq} but no "
                                 "longer stored: it was deleted"))
    return found, len(seen)


def check_users(conn: Connection, key: InstallationKey, record: TrailRecord) -> tuple[list[Finding], int]:
    rows = conn.execute(select(users).order_by(users.c.id)).mappings()
    return check_sealed(key, "users", rows, "id", lambda r: f"{r['id']} ({r['username']}, roles "
                        f"{r['roles']})", record)


def check_strategies(conn: Connection, key: InstallationKey,
                     record: TrailRecord) -> tuple[list[Finding], int]:
    rows = conn.execute(select(strategies).order_by(strategies.c.id)).mappings()
    return check_sealed(key, "strategies", rows, "id", lambda r: f"{r['id']} (model "
                        f"{r['model_version']}, band edges {r['low_edge']:g}/{r['high_edge']:g})",
                        record)


def check_models(conn: Connection, key: InstallationKey, record: TrailRecord, *,
                 folder_of: Callable[[str], Path] = Path,
                 files: bool = True) -> tuple[list[Finding], int]:
    """Seals, the artifact hash against the trail and the file, the card, the champion."""
    rows = conn.execute(select(model_versions).order_by(model_versions.c.created_at)).mappings().all()
    found, n = check_sealed(key, "model_versions", rows, "version", lambda r: str(r["version"]),
                            record)
    champion = record.champion()
    for r in rows:
        name, sha = str(r["version"]), str(r["artifact_sha256"])
        trained = record.trained.get(name)
        if trained is not None and trained.details.get("artifact_sha256") not in (None, sha):
            found.append(Finding("model_versions", name, "changed", f"records artifact SHA-256 "
                                 f"{sha[:12]}..., but audit entry {trained.seq} recorded "
                                 f"{str(trained.details['artifact_sha256'])[:12]}...: the model "
                                 "was swapped"))
        if r["status"] == ModelStatus.CHAMPION and champion not in (None, name):
            found.append(Finding("model_versions", name, "inconsistent", "is the champion, but the "
                                 f"last promotion in the trail (entry {record.promoted[champion]}) "
                                 f"made {champion} champion"))
        if files:
            found.extend(_model_files(folder_of(str(r["folder"])), name, sha, key))
    return found, n


def _model_files(folder: Path, name: str, sha: str, key: InstallationKey) -> list[Finding]:
    artifact = folder / ARTIFACT
    if not artifact.is_file():
        return [Finding("model_versions", name, "missing", f"its model file {artifact} is missing")]
    found = []
    actual = sha256_file(artifact)
    if actual != sha:
        found.append(Finding("model_versions", name, "changed", f"its model file {artifact} has "
                             f"SHA-256 {actual[:12]}..., not the registered {sha[:12]}...: the "
                             "file was replaced"))
    try:
        card = read_card(folder)
    except Exception as exc:  # noqa: BLE001 - any unreadable card is one finding
        return [*found, Finding("model_versions", name, "changed", f"its model card: {exc}")]
    if not hmac.compare_digest(str(card.get("signature", "")), sign_card(card, key.secret)):
        found.append(Finding("model_versions", name, "changed", f"its model card in {folder} is "
                             "not signed with this installation's key (edited or re-signed)"))
    return found


_BATCH_FIELDS = (("sha256", "uploaded", "sha256"), ("rows_in", "uploaded", "rows_in"),
                 ("rows_valid", "uploaded", "rows_valid"),
                 ("rows_quarantined", "uploaded", "rows_quarantined"),
                 ("config_sha256", "uploaded", "config_sha256"),
                 ("low_edge", "scored", "low_edge"), ("high_edge", "scored", "high_edge"))
#: stored NULL, audited "": a config built in code has no file and so no hash
_BLANK_MEANS_NONE = frozenset({"config_sha256"})


def _as_recorded(column: str, value: Any) -> Any:
    return (value or None) if column in _BLANK_MEANS_NONE else value


def check_batches(conn: Connection, record: TrailRecord) -> tuple[list[Finding], int]:
    """Each stored batch against what its batch_uploaded and batch_scored entries say."""
    found: list[Finding] = []
    state = next((c for c in ("state", "status") if c in batches.c), None)
    rows = conn.execute(select(batches).order_by(batches.c.uploaded_at)).mappings().all()
    seen = set()
    for b in rows:
        bid = str(b["id"])
        events = {"uploaded": record.batch_uploaded.get(bid), "scored": record.batch_scored.get(bid)}
        if (state is not None and b[state] in ("loading", "aborting")
                and events["uploaded"] is None and events["scored"] is None):
            continue  # not published yet: its entries are written when it is (a batch the
            # trail records is checked whatever state it claims to be in)
        seen.add(bid)
        if events["uploaded"] is None and events["scored"] is None:
            found.append(Finding("batches", bid, "unrecorded", "has no audit entries: it was "
                                 "inserted outside FinFlow"))
            continue
        for column, which, detail in _BATCH_FIELDS:
            event = events[which]
            if (event is not None and detail in event.details
                    and _as_recorded(column, event.details[detail]) != _as_recorded(column, b[column])):
                found.append(Finding("batches", bid, "changed", f"{column} {b[column]!r} differs "
                                     f"from audit entry {event.seq} ({event.details[detail]!r})"))
        if state is not None:
            found.extend(_void_problems(bid, b, state, record.batch_voided.get(bid)))
        scored = events["scored"]
        if scored is not None:
            bands = scored.details.get("bands", {})
            for band in ("low", "medium", "high"):
                if band in bands and bands[band] != b[f"n_{band}"]:
                    found.append(Finding("batches", bid, "changed", f"n_{band} {b[f'n_{band}']} "
                                         f"differs from audit entry {scored.seq} ({bands[band]})"))
            if scored.model_version not in (None, b["model_version"]):
                found.append(Finding("batches", bid, "changed", f"model_version "
                                     f"{b['model_version']} differs from audit entry {scored.seq} "
                                     f"({scored.model_version})"))
    for bid, event in sorted(record.batch_uploaded.items()):
        if bid not in seen and not (state is not None and _loading(conn, bid, state)):
            found.append(Finding("batches", bid, "missing", f"recorded by audit entry {event.seq} "
                                 "but no longer stored: it was deleted"))
    return found, len(seen)


def _void_problems(bid: str, b: Any, state: str, voided: Recorded | None) -> list[Finding]:
    """A batch's voided state against its batch_voided entry: voiding takes its open cases
    out of the queue and its loans out of the portfolio, so neither may change unseen."""
    if b[state] == "voided" and voided is None:
        return [Finding("batches", bid, "changed", "is voided, but no batch_voided entry records "
                        "it: voided outside FinFlow (its open cases left the review queue)")]
    if voided is None:
        return []
    if b[state] != "voided":
        return [Finding("batches", bid, "changed", f"shows state {b[state]!r}, but audit entry "
                        f"{voided.seq} voided it: put back outside FinFlow")]
    recorded = {"voided_by": voided.actor, "void_reason": voided.details.get("reason")}
    return [Finding("batches", bid, "changed", f"{column} {b[column]!r} differs from audit entry "
                    f"{voided.seq} ({want!r})")
            for column, want in recorded.items() if b[column] != want]


def _loading(conn: Connection, batch_id: str, state: str) -> bool:
    value = conn.execute(select(batches.c[state]).where(batches.c.id == batch_id)).scalar()
    return value == "loading"
