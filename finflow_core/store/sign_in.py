"""Browser sessions and the failure counter of names that are no user: rows in the caller's
transaction.

No permission checks and no policy here (:mod:`finflow_core.services.sessions` decides
when a session lives or ends); only hashes of tokens and hand-over codes are ever stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from finflow_core.store.tables import iso_utc, sign_in_failures, web_sessions


def digest(secret: str) -> str:
    """What is stored for a token or code: its SHA-256 (hex). Tokens are 256-bit random, so
    an unsalted fast hash is enough: there is nothing to guess."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SessionRecord:
    id: int
    user_id: int
    password_stamp: str
    roles: str
    created_at: str
    last_seen_at: str
    expires_at: str
    handed_over: bool
    handoff_expires_at: str | None
    revoked_at: str | None
    revoked_reason: str | None


def _record(row: Any) -> SessionRecord | None:
    if row is None:
        return None
    return SessionRecord(row.id, row.user_id, row.password_stamp, row.roles, row.created_at,
                         row.last_seen_at, row.expires_at, row.token_hash is not None,
                         row.handoff_expires_at, row.revoked_at, row.revoked_reason)


def insert_session(conn: Connection, *, user_id: int, password_stamp: str, roles: str,
                   handoff_hash: str, handoff_expires_at: datetime, now: datetime,
                   expires_at: datetime) -> int:
    result = conn.execute(insert(web_sessions).values(
        user_id=user_id, password_stamp=password_stamp, roles=roles, handoff_hash=handoff_hash,
        handoff_expires_at=iso_utc(handoff_expires_at), created_at=iso_utc(now),
        last_seen_at=iso_utc(now), expires_at=iso_utc(expires_at),
    ))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def by_id(conn: Connection, session_id: int) -> SessionRecord | None:
    return _record(conn.execute(select(web_sessions).where(web_sessions.c.id == session_id)).first())


def by_token(conn: Connection, token_hash: str) -> SessionRecord | None:
    return _record(conn.execute(select(web_sessions).where(web_sessions.c.token_hash == token_hash))
                   .first())


def by_handoff(conn: Connection, handoff_hash: str) -> SessionRecord | None:
    return _record(conn.execute(select(web_sessions).where(web_sessions.c.handoff_hash == handoff_hash))
                   .first())


def hand_over(conn: Connection, session_id: int, token_hash: str) -> bool:
    """Give a session its browser token and burn the code; False if it was used meanwhile."""
    done = conn.execute(update(web_sessions)
                        .where(web_sessions.c.id == session_id, web_sessions.c.token_hash.is_(None),
                               web_sessions.c.handoff_hash.is_not(None))
                        .values(token_hash=token_hash, handoff_hash=None, handoff_expires_at=None))
    return done.rowcount == 1


def touch(conn: Connection, session_id: int, now: datetime) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.id == session_id)
                 .values(last_seen_at=iso_utc(now)))


def restamp(conn: Connection, session_id: int, password_stamp: str, roles: str) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.id == session_id)
                 .values(password_stamp=password_stamp, roles=roles))


def revoke(conn: Connection, session_id: int, reason: str, now: datetime) -> bool:
    """End one session (a no-op if it already ended); True if this call ended it."""
    done = conn.execute(update(web_sessions)
                        .where(web_sessions.c.id == session_id, web_sessions.c.revoked_at.is_(None))
                        .values(revoked_at=iso_utc(now), revoked_reason=reason[:32], handoff_hash=None))
    return done.rowcount == 1


def revoke_user(conn: Connection, user_id: int, reason: str, now: datetime,
                keep: int | None = None) -> int:
    """End every live session of a user (but ``keep``); how many ended."""
    q = (update(web_sessions)
         .where(web_sessions.c.user_id == user_id, web_sessions.c.revoked_at.is_(None)))
    if keep is not None:
        q = q.where(web_sessions.c.id != keep)
    return int(conn.execute(q.values(revoked_at=iso_utc(now), revoked_reason=reason[:32],
                                     handoff_hash=None)).rowcount)


# -- names that are no user ---------------------------------------------------------------------

@dataclass(frozen=True)
class FailureRecord:
    username: str
    failed_logins: int
    locked_until: str | None


def failures(conn: Connection, username: str) -> FailureRecord | None:
    row = conn.execute(select(sign_in_failures).where(sign_in_failures.c.username == username)).first()
    return None if row is None else FailureRecord(row.username, int(row.failed_logins), row.locked_until)


def record_failure(conn: Connection, username: str, failed_logins: int, locked_until: str | None,
                   now: datetime) -> None:
    values = {"failed_logins": failed_logins, "locked_until": locked_until, "last_failed_at": iso_utc(now)}
    done = conn.execute(update(sign_in_failures).where(sign_in_failures.c.username == username)
                        .values(**values))
    if done.rowcount == 0:
        conn.execute(insert(sign_in_failures).values(username=username, **values))


def forget_failures_before(conn: Connection, moment: datetime) -> None:
    """Drop counters nobody has added to since ``moment`` (the table stays small under a
    flood of invented names)."""
    conn.execute(delete(sign_in_failures).where(sign_in_failures.c.last_failed_at < iso_utc(moment)))
