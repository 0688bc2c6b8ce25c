"""User rows and the first-admin set-up code: reads and writes inside the caller's transaction.

No permission checks here: the services decide who may call these. Who a user is and may
do (name, password hash, roles, active) is sealed with the installation key
(``store.seals``): every write of those columns re-seals the row, and the service records
the new seal in its audit event (:func:`seal_ref`). Sign-in throttling is not sealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from finflow_core.store import seals
from finflow_core.store.tables import iso_utc, setup_codes, users

#: The columns a change of which re-seals the row (the rest is sign-in throttling).
SEALED = frozenset(seals.SPECS["users"].columns)


@dataclass(frozen=True)
class UserRecord:
    """A user as stored (with the password hash: never hand this to a page)."""

    id: int
    username: str
    password_hash: str
    roles: frozenset[str]
    active: bool
    created_at: str
    created_by: str | None
    password_changed_at: str | None
    last_login_at: str | None
    failed_logins: int
    locked_until: str | None
    lending_limit: float | None = None  # read by all_users and lending_limit only


#: The columns sign-in reads (the lending limit is read where authority is decided, so
#: signing in works the same on a database from before the limit existed).
_ACCOUNT = [c for c in users.c if c.name != "lending_limit"]


def roles_text(roles: frozenset[str]) -> str:
    """Roles as stored: sorted, comma-separated."""
    return ",".join(sorted(str(r) for r in roles))


def _record(row: Any) -> UserRecord | None:
    if row is None:
        return None
    return UserRecord(
        id=row.id, username=row.username, password_hash=row.password_hash,
        roles=frozenset(r for r in row.roles.split(",") if r), active=bool(row.active),
        created_at=row.created_at, created_by=row.created_by,
        password_changed_at=row.password_changed_at, last_login_at=row.last_login_at,
        failed_logins=int(row.failed_logins), locked_until=row.locked_until,
        lending_limit=getattr(row, "lending_limit", None),
    )


def by_name(conn: Connection, username: str) -> UserRecord | None:
    return _record(conn.execute(select(*_ACCOUNT).where(users.c.username == username)).first())


def by_id(conn: Connection, user_id: int) -> UserRecord | None:
    return _record(conn.execute(select(*_ACCOUNT).where(users.c.id == user_id)).first())


def all_users(conn: Connection) -> list[UserRecord]:
    """Every user with their lending limit, by username."""
    rows = conn.execute(select(users).order_by(users.c.username)).all()
    return [r for r in (_record(x) for x in rows) if r is not None]


def lending_limit(conn: Connection, username: str) -> float | None:
    """The amount ``username`` may commit alone; None when not set (or no such user)."""
    value = conn.execute(select(users.c.lending_limit).where(users.c.username == username)).scalar()
    return None if value is None else float(value)


def set_lending_limit(conn: Connection, user_id: int, amount: float | None) -> None:
    update_user(conn, user_id, lending_limit=amount)  # sealed: it decides who needs four eyes


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def other_active_admins(conn: Connection, user_id: int) -> int:
    roles = conn.execute(select(users.c.roles).where(users.c.active.is_(True), users.c.id != user_id))
    return sum("admin" in r.split(",") for r in roles.scalars())


def insert_user(conn: Connection, name: str, password_hash: str, roles: frozenset[str], by: str,
                now: datetime) -> int:
    result = conn.execute(insert(users).values(
        username=name, password_hash=password_hash, roles=roles_text(roles), active=True,
        created_at=iso_utc(now), created_by=by, password_changed_at=iso_utc(now), failed_logins=0,
    ))
    key = result.inserted_primary_key
    assert key is not None  # a single-row INSERT always reports its key
    _reseal(conn, int(key[0]))
    return int(key[0])


def update_user(conn: Connection, user_id: int, **values: Any) -> None:
    if "roles" in values:
        values["roles"] = roles_text(values["roles"])
    conn.execute(update(users).where(users.c.id == user_id).values(**values))
    if SEALED & values.keys():
        _reseal(conn, user_id)


def _reseal(conn: Connection, user_id: int) -> None:
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().one()
    conn.execute(update(users).where(users.c.id == user_id)
                 .values(seal=seals.seal_row(seals.key_of(conn), "users", row)))


def seal_ref(conn: Connection, user_id: int) -> dict[str, Any]:
    """The row's current seal, for the audit event that records the change (merge it in)."""
    seal = conn.execute(select(users.c.seal).where(users.c.id == user_id)).scalar_one()
    return seals.seal_ref("users", user_id, seal)


# -- the one-time set-up code ----------------------------------------------------------------

@dataclass(frozen=True)
class SetupCodeRecord:
    id: int
    code_hash: str
    expires_at: str
    used_at: str | None
    failed_attempts: int
    locked_until: str | None


def live_setup_code(conn: Connection, *, for_update: bool = False) -> SetupCodeRecord | None:
    query = select(setup_codes).where(setup_codes.c.used_at.is_(None)).order_by(setup_codes.c.id.desc())
    row = conn.execute((query.with_for_update() if for_update else query).limit(1)).first()
    if row is None:
        return None
    return SetupCodeRecord(row.id, row.code_hash, row.expires_at, row.used_at,
                           int(row.failed_attempts), row.locked_until)


def setup_code_by_id(conn: Connection, code_id: int) -> SetupCodeRecord | None:
    row = conn.execute(select(setup_codes).where(setup_codes.c.id == code_id).with_for_update()).first()
    if row is None:
        return None
    return SetupCodeRecord(row.id, row.code_hash, row.expires_at, row.used_at,
                           int(row.failed_attempts), row.locked_until)


def replace_setup_code(conn: Connection, code_hash: str, created_at: str, expires_at: str) -> None:
    conn.execute(delete(setup_codes))
    conn.execute(insert(setup_codes).values(code_hash=code_hash, created_at=created_at,
                                            expires_at=expires_at))


def clear_setup_codes(conn: Connection) -> None:
    conn.execute(delete(setup_codes))


def update_setup_code(conn: Connection, code_id: int, **values: Any) -> None:
    conn.execute(update(setup_codes).where(setup_codes.c.id == code_id).values(**values))
