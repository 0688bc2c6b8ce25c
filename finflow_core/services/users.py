"""People and roles: an admin manages users; every user manages their own password.

User management re-reads the acting admin from the store inside the transaction, so a
session whose rights were revoked cannot keep using them; the last active admin can
neither lose the role nor be disabled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import Connection

from finflow_core.errors import AuthError, Conflict, InvalidInput, NotFound, PermissionDenied
from finflow_core.lending.terms import Role
from finflow_core.security.password_policy import check_password_policy
from finflow_core.security.passwords import hash_password
from finflow_core.services.access import Action, Principal, allowed_roles
from finflow_core.services.audit import anchored_write
from finflow_core.services.base import Service
from finflow_core.services.sessions import (
    USER,
    Gate,
    check_username,
    normalise_username,
    parse_roles,
)
from finflow_core.store import users as user_rows
from finflow_core.store.audit_chain import append_audit, lock_chain
from finflow_core.store.tables import iso_utc


class LastAdminError(Conflict):
    """The change would leave FinFlow without an active admin."""


@dataclass(frozen=True)
class UserInfo:
    """A user as shown to admins (never carries the password hash)."""

    user_id: int
    username: str
    roles: frozenset[str]
    active: bool
    created_at: str
    created_by: str | None
    password_changed_at: str | None
    last_login_at: str | None
    failed_logins: int
    locked_until: str | None
    lending_limit: float | None = None  # lending authority (listed users and set_limit)

    def principal(self) -> Principal:
        return Principal(self.user_id, self.username, self.roles)


def _info(row: user_rows.UserRecord | None) -> UserInfo:
    assert row is not None  # callers pass a row they just read or wrote
    return UserInfo(row.id, row.username, row.roles, row.active, row.created_at, row.created_by,
                    row.password_changed_at, row.last_login_at, row.failed_logins, row.locked_until,
                    row.lending_limit)


class UserService(Service):
    """User administration (admin only)."""

    def list(self) -> list[UserInfo]:
        """All users, by username (no password hashes)."""
        self.require(Action.MANAGE_USERS)
        with self.ctx.store.connect() as conn:
            _current_admin(conn, self.actor)
            return [_info(r) for r in user_rows.all_users(conn)]

    def add(self, username: str, password: str, roles: Iterable[str] | str) -> UserInfo:
        self.require(Action.MANAGE_USERS)
        name = check_username(username)
        role_set = parse_roles(roles)
        check_password_policy(password, name)
        password_hash = hash_password(password)
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            lock_chain(conn)
            by = _current_admin(conn, self.actor).username
            if user_rows.by_name(conn, name) is not None:
                raise Conflict(f"the username {name!r} is taken: choose another", username=name)
            user_id = user_rows.insert_user(conn, name, password_hash, role_set, by, now)
            append_audit(conn, by, "user_created", USER, name,
                         {"roles": sorted(role_set), "via": "admin",
                          **user_rows.seal_ref(conn, user_id)}, at=now)
            return _info(user_rows.by_id(conn, user_id))

    def set_roles(self, username: str, roles: Iterable[str] | str) -> UserInfo:
        """Replace a user's roles; the last active admin keeps the admin role."""
        self.require(Action.MANAGE_USERS)
        new = parse_roles(roles)
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            lock_chain(conn)
            by = _current_admin(conn, self.actor)
            row = _require_user(conn, username)
            old = row.roles
            if Role.ADMIN in old and Role.ADMIN not in new and row.active:
                _keep_an_admin(conn, row, "remove its admin role")
            if new != old:
                user_rows.update_user(conn, row.id, roles=new)
                append_audit(conn, by.username, "roles_changed", USER, row.username,
                             {"from": sorted(old), "to": sorted(new),
                              **user_rows.seal_ref(conn, row.id)}, at=now)
            return _info(user_rows.by_id(conn, row.id))

    def set_limit(self, username: str, amount: float | None) -> UserInfo:
        """Set a user's lending authority: the loan amount they may approve alone (None
        clears it, and the configured ``review.four_eyes.default_limit`` applies)."""
        self.require(Action.MANAGE_USERS)
        limit = check_limit(amount)
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            lock_chain(conn)
            by = _current_admin(conn, self.actor)
            row = _require_user(conn, username)
            old = user_rows.lending_limit(conn, row.username)
            if old != limit:
                user_rows.set_lending_limit(conn, row.id, limit)  # re-seals the row
                append_audit(conn, by.username, "lending_limit_changed", USER, row.username,
                             {"from": old, "to": limit, **user_rows.seal_ref(conn, row.id)}, at=now)
            return replace(_info(user_rows.by_id(conn, row.id)), lending_limit=limit)

    def reset_password(self, username: str, new_password: str) -> None:
        """Set anyone's password (admin); clears any sign-in lock on the account."""
        self.require(Action.MANAGE_USERS)
        name = normalise_username(username)
        check_password_policy(new_password, name)
        password_hash = hash_password(new_password)
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            lock_chain(conn)
            by = _current_admin(conn, self.actor)
            row = _require_user(conn, name)
            user_rows.update_user(conn, row.id, password_hash=password_hash,
                                  password_changed_at=iso_utc(now), failed_logins=0, locked_until=None)
            append_audit(conn, by.username, "password_changed", USER, row.username,
                         {"by": "admin", **user_rows.seal_ref(conn, row.id)}, at=now)

    def disable(self, username: str) -> UserInfo:
        """Stop a user from signing in; the last active admin cannot be disabled."""
        self.require(Action.MANAGE_USERS)
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            lock_chain(conn)
            by = _current_admin(conn, self.actor)
            row = _require_user(conn, username)
            if row.active:
                if Role.ADMIN in row.roles:
                    _keep_an_admin(conn, row, "disable it")
                user_rows.update_user(conn, row.id, active=False)
                append_audit(conn, by.username, "user_disabled", USER, row.username,
                             user_rows.seal_ref(conn, row.id), at=now)
            return _info(user_rows.by_id(conn, row.id))

    def enable(self, username: str) -> UserInfo:
        """Let a user sign in again; also clears a sign-in lock."""
        self.require(Action.MANAGE_USERS)
        now = self.ctx.clock()
        with anchored_write(self.ctx) as conn:  # then anchored (services.audit)
            lock_chain(conn)
            by = _current_admin(conn, self.actor)
            row = _require_user(conn, username)
            if not row.active or row.failed_logins or row.locked_until:
                user_rows.update_user(conn, row.id, active=True, failed_logins=0, locked_until=None)
                append_audit(conn, by.username, "user_enabled", USER, row.username,
                             {"was_active": row.active, "cleared_failures": row.failed_logins,
                              **user_rows.seal_ref(conn, row.id)}, at=now)
            return _info(user_rows.by_id(conn, row.id))


class AccountService(Service):
    """What every signed-in user may do about their own account."""

    def me(self) -> UserInfo:
        with self.ctx.store.connect() as conn:
            return _info(_current_self(conn, self.actor))

    def change_password(self, current_password: str, new_password: str) -> None:
        """Change one's own password: the current one is checked like a sign-in (throttled)."""
        name = self.actor.username
        if not current_password:
            raise InvalidInput("give your current password to change it", field="current_password")
        check_password_policy(new_password, name)
        Gate(self.ctx).authenticate(name, current_password, purpose="password_change")
        password_hash = hash_password(new_password)
        now = self.ctx.clock()
        with self.ctx.store.begin() as conn:
            lock_chain(conn)
            row = _current_self(conn, self.actor)
            user_rows.update_user(conn, row.id, password_hash=password_hash,
                                  password_changed_at=iso_utc(now), failed_logins=0, locked_until=None)
            append_audit(conn, name, "password_changed", USER, name,
                         {"by": "self", **user_rows.seal_ref(conn, row.id)}, at=now)


def check_limit(amount: float | str | None) -> float | None:
    """A lending limit as typed: a non-negative amount (``250000``, ``250,000``), or
    None / ``none`` / empty to clear it."""
    if amount is None or (isinstance(amount, str) and amount.strip().lower() in ("", "none")):
        return None
    try:
        value = float(str(amount).replace(",", "").strip()) if isinstance(amount, str) else float(amount)
    except ValueError:
        raise InvalidInput(f"a lending limit is an amount such as 250000, got {amount!r}",
                           field="lending_limit") from None
    if not math.isfinite(value):  # 1e309, nan, inf: float() reads them, but no amount
        raise InvalidInput(f"a lending limit is an amount such as 250000, got {amount!r}",
                           field="lending_limit")
    if value < 0:
        raise InvalidInput(f"a lending limit must be zero or more, got {amount!r}",
                           field="lending_limit")
    return value


def _current_admin(conn: Connection, actor: Principal) -> Principal:
    """The actor as the store knows them now: still active, still an admin."""
    row = _current_self(conn, actor)
    needed = allowed_roles(Action.MANAGE_USERS)
    if not row.roles & set(needed):
        raise PermissionDenied(str(Action.MANAGE_USERS), tuple(map(str, needed)), actor.username)
    return Principal(row.id, row.username, row.roles)


def _current_self(conn: Connection, actor: Principal) -> user_rows.UserRecord:
    row = None if actor.user_id is None else user_rows.by_id(conn, actor.user_id)
    if row is None or not row.active or row.username != actor.username:
        raise AuthError(f"the account {actor.username!r} is disabled or no longer exists: sign in again",
                        reason="account_gone")
    return row


def _require_user(conn: Connection, username: str) -> user_rows.UserRecord:
    name = normalise_username(username)
    row = user_rows.by_name(conn, name)
    if row is None:
        raise NotFound(f"there is no user {name!r}: check the name with `finflow users list`",
                       username=name)
    return row


def _keep_an_admin(conn: Connection, row: user_rows.UserRecord, what: str) -> None:
    if user_rows.other_active_admins(conn, row.id) == 0:
        raise LastAdminError(
            f"{row.username!r} is the last active admin, so FinFlow cannot {what}: give another "
            "user the admin role first", username=row.username,
        )
