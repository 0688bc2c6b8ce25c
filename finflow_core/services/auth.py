"""Users, roles, sign-in and the first-admin set-up.

* Passwords are kept only as salted scrypt hashes (``scrypt$N$r$p$<salt>$<hash>``, base64),
  compared in constant time. There is no default account or password: with no users
  nobody can sign in until a first admin is created, either locally
  (:func:`create_first_admin`) or with a one-time set-up code (:func:`ensure_setup_code`,
  :func:`complete_setup`).
* Sign-in is throttled per user: from the 3rd consecutive failure the account is locked
  for ``2 ** (failures - 3)`` seconds (capped at 15 minutes); a sign-in attempt during the
  lock is refused without looking at the password. Unknown usernames cost the same scrypt
  work as known ones.
* Every change and every sign-in attempt is written to the audit trail in the same
  transaction. User management re-reads the acting admin from the database, so a session
  whose rights were revoked cannot keep using them.

All functions take ``clock=`` (a callable returning an aware UTC datetime) so tests and
tools can control time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from finflow_core.errors import AuthError, Conflict, FinFlowError, NotFound, PermissionDenied
from finflow_core.services.access import ROLES, allowed_roles, require
from finflow_core.store.audit_chain import append_audit, lock_chain
from finflow_core.store.engine import Store
from finflow_core.store.tables import (
    Clock,
    iso_utc,
    parse_utc,
    setup_codes,
    users,
    utcnow,
)

# scrypt cost: about 50 ms and 16 MiB per hash. Never lower these in production code.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
LOCK_AFTER_FAILURES = 3
MAX_LOCK_SECONDS = 15 * 60

SETUP_CODE_VALIDITY = timedelta(hours=24)
SETUP_CODE_MAX_FAILURES = 10
#: No 0/O, 1/I/L: a code read off a console is easy to type.
SETUP_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
SETUP_CODE_GROUPS = 3
SETUP_CODE_GROUP_LEN = 4

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
#: Names the audit trail uses for non-users; nobody may sign up as them.
RESERVED_USERNAMES = frozenset({"system", "anonymous"})

BAD_CREDENTIALS = "wrong username or password"
USER = "user"


class InvalidInput(FinFlowError):
    """A value a person typed does not meet the rules; ``field`` says which one."""

    exit_code = 2

    def __init__(self, message: str, *, field: str, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class PasswordPolicyError(InvalidInput):
    """The proposed password is too short, too long or too guessable."""


class LastAdminError(Conflict):
    """The change would leave FinFlow without an active admin."""


@dataclass(frozen=True)
class Principal:
    """Who is acting: a signed-in user, or :data:`SYSTEM` for local bootstrap jobs."""

    user_id: int | None
    username: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        return role in self.roles


#: The local bootstrap actor (e.g. the demo set-up registering the first model).
SYSTEM = Principal(user_id=None, username="system", roles=frozenset({"analyst"}))


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

    def principal(self) -> Principal:
        return Principal(self.user_id, self.username, self.roles)


# -- password hashing ---------------------------------------------------------------------

def hash_password(password: str) -> str:
    """A salted scrypt hash in a self-describing string."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against :func:`hash_password` output.

    A malformed or implausible hash string verifies as False rather than raising.
    """
    parsed = _parse_hash(encoded)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    actual = _scrypt(password, salt, n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)


def needs_rehash(encoded: str) -> bool:
    """Whether a stored hash uses weaker parameters than today's (rehash on next sign-in)."""
    parsed = _parse_hash(encoded)
    return parsed is None or (parsed[0], parsed[1], parsed[2]) != (SCRYPT_N, SCRYPT_R, SCRYPT_P)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 2**20
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=maxmem
    )


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    plausible = (
        2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
        and len(salt) >= 8 and 16 <= len(expected) <= 64
    )
    return (n, r, p, salt, expected) if plausible else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@cache
def _dummy_hash() -> str:
    """A hash to check unknown usernames against, so they cost the same time."""
    return hash_password(secrets.token_urlsafe(16))


# -- input rules --------------------------------------------------------------------------

def check_password_policy(password: str, username: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` unless ``password`` is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"the password is too short ({len(password)} characters): use at least "
            f"{MIN_PASSWORD_LENGTH}; a few unrelated words make a good one",
            field="password", min_length=MIN_PASSWORD_LENGTH,
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"the password is longer than {MAX_PASSWORD_LENGTH} characters",
            field="password", max_length=MAX_PASSWORD_LENGTH,
        )
    if not password.strip():
        raise PasswordPolicyError("the password cannot be only spaces", field="password")
    if username and password.strip().casefold() == username.casefold():
        raise PasswordPolicyError("the password cannot be the username", field="password")


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and compared trimmed and lower-case."""
    return username.strip().lower()


def check_username(username: str) -> str:
    """Validate a new username and return its normal form."""
    name = normalise_username(username)
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid username {username!r}: use 2-64 characters: letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
            field="username",
        )
    if name in RESERVED_USERNAMES:
        raise InvalidInput(f"the username {name!r} is reserved: choose another", field="username")
    return name


def parse_roles(roles: Iterable[str] | str) -> frozenset[str]:
    """Roles from a list or a comma-separated string; at least one, all known."""
    items = roles.split(",") if isinstance(roles, str) else roles
    chosen = frozenset(r.strip().lower() for r in items if r.strip())
    unknown = sorted(chosen - set(ROLES))
    if unknown or not chosen:
        raise InvalidInput(
            f"roles must be one or more of {', '.join(ROLES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            field="roles",
        )
    return chosen


def _roles_text(roles: frozenset[str]) -> str:
    return ",".join(sorted(roles))


def _roles_of(text: str) -> frozenset[str]:
    return frozenset(r for r in text.split(",") if r)


# -- sign-in ------------------------------------------------------------------------------

def lockout_seconds(failures: int) -> int:
    """How long an account stays locked after ``failures`` consecutive failed sign-ins."""
    if failures < LOCK_AFTER_FAILURES:
        return 0
    exponent = failures - LOCK_AFTER_FAILURES
    return MAX_LOCK_SECONDS if exponent >= 10 else min(2**exponent, MAX_LOCK_SECONDS)


def authenticate(store: Store, username: str, password: str, *, clock: Clock = utcnow) -> Principal:
    """Check a username and password and return who signed in; raises AuthError otherwise."""
    return _check_credentials(store, username, password, clock, purpose="sign_in")


def _check_credentials(
    store: Store, username: str, password: str, clock: Clock, *, purpose: str
) -> Principal:
    name = normalise_username(username)
    now = clock()
    with store.connect() as conn:
        row = _user_row(conn, name)
    if row is None:
        verify_password(password, _dummy_hash())
        with store.begin() as conn:
            append_audit(conn, "anonymous", "login_failed", USER, name[:64],
                         {"reason": "unknown_user", "purpose": purpose}, at=now)
        raise AuthError(BAD_CREDENTIALS, reason="bad_credentials")
    # During a lock the password is not even looked at.
    locked = _lock_end(row.locked_until, now)
    password_ok = locked is None and verify_password(password, row.password_hash)
    rehash = hash_password(password) if password_ok and needs_rehash(row.password_hash) else None
    checked = _Checked(row.id, row.password_hash, password_ok, rehash)
    outcome, fresh = _record_attempt(store, checked, now, purpose)
    if outcome == "ok" and fresh is not None:
        return Principal(fresh.id, fresh.username, _roles_of(fresh.roles))
    if outcome == "locked" and fresh is not None:
        raise _locked_error(_lock_end(fresh.locked_until, now) or now, now)
    if outcome == "disabled":
        raise AuthError(
            f"the account {name!r} is disabled: ask an administrator to enable it",
            reason="disabled",
        )
    raise AuthError(BAD_CREDENTIALS, reason="bad_credentials")


@dataclass(frozen=True)
class _Checked:
    """The result of the (slow, unlocked) password check, to be recorded."""

    user_id: int
    password_hash: str
    password_ok: bool
    rehash: str | None


def _record_attempt(
    store: Store, checked: _Checked, now: datetime, purpose: str
) -> tuple[str, Row[Any] | None]:
    """Update the throttle and audit one attempt; re-reads the row under the lock so
    concurrent attempts count correctly and a lock set meanwhile is honoured."""
    with store.begin() as conn:
        lock_chain(conn)
        row = _user_row_by_id(conn, checked.user_id)
        if row is None:  # deleted meanwhile: treat like an unknown user
            append_audit(conn, "anonymous", "login_failed", USER, str(checked.user_id),
                         {"reason": "unknown_user", "purpose": purpose}, at=now)
            return "failed", None
        # A password changed since we checked it does not count as the right one.
        password_ok = checked.password_ok and row.password_hash == checked.password_hash
        audit = _audit_for(conn, row, now, purpose)
        locked = _lock_end(row.locked_until, now)
        if locked is not None:
            audit("login_refused", {"reason": "locked", "locked_until": iso_utc(locked)})
            return "locked", row
        if not password_ok:
            failures = row.failed_logins + 1
            seconds = lockout_seconds(failures)
            until = iso_utc(now + timedelta(seconds=seconds)) if seconds else None
            _update_user(conn, row.id, failed_logins=failures, locked_until=until)
            audit("login_failed", {"reason": "wrong_password", "failures": failures,
                                   "locked_until": until})
            return "failed", row
        if not row.active:
            audit("login_refused", {"reason": "disabled"})
            return "disabled", row
        _update_user(conn, row.id, failed_logins=0, locked_until=None,
                     last_login_at=iso_utc(now))
        if checked.rehash is not None:  # stored with weaker parameters than today's
            _update_user(conn, row.id, password_hash=checked.rehash)
        audit("login", {})
        return "ok", row


def _audit_for(
    conn: Connection, row: Row[Any], now: datetime, purpose: str
) -> Callable[[str, dict[str, Any]], None]:
    """An audit writer for sign-in events about one user."""
    def write(action: str, details: dict[str, Any]) -> None:
        append_audit(conn, row.username, action, USER, row.username,
                     {**details, "purpose": purpose}, at=now)

    return write


def _lock_end(locked_until: str | None, now: datetime) -> datetime | None:
    """When the current lock ends, or None if the account is not locked at ``now``."""
    if locked_until is None:
        return None
    end = parse_utc(locked_until)
    return end if end > now else None


def _locked_error(until: datetime, now: datetime) -> AuthError:
    wait = max(1, math.ceil((until - now).total_seconds()))
    return AuthError(
        f"too many failed attempts: try again in {wait} s (after {iso_utc(until)[:19]} UTC)",
        reason="locked", retry_after_seconds=wait, retry_at=iso_utc(until),
    )


def refresh_principal(store: Store, principal: Principal) -> Principal:
    """Re-read a signed-in user: their current roles, or AuthError if disabled or removed.

    Call it on each request of a long-lived session so revoked rights take effect.
    """
    if principal.user_id is None:
        return principal
    with store.connect() as conn:
        row = _user_row_by_id(conn, principal.user_id)
    if row is None or not row.active or row.username != principal.username:
        raise AuthError(
            f"the account {principal.username!r} was disabled or removed: sign in again",
            reason="account_gone",
        )
    return Principal(row.id, row.username, _roles_of(row.roles))


def has_users(store: Store) -> bool:
    """Whether any user exists (if not, the app shows the first-admin set-up)."""
    with store.connect() as conn:
        return _user_count(conn) > 0


# -- first admin --------------------------------------------------------------------------

def ensure_setup_code(store: Store, *, clock: Clock = utcnow) -> str | None:
    """A one-time code for creating the first admin, or None once users exist.

    Only the code's hash is stored, so the code cannot be shown again: every call issues a
    fresh code (valid 24 hours) and invalidates the previous one. Call it once at server
    start-up and print the result where the operator can read it.
    """
    code = "-".join(
        "".join(secrets.choice(SETUP_CODE_ALPHABET) for _ in range(SETUP_CODE_GROUP_LEN))
        for _ in range(SETUP_CODE_GROUPS)
    )
    code_hash = hash_password(_normalise_code(code))
    now = clock()
    with store.begin() as conn:
        lock_chain(conn)
        if _user_count(conn) > 0:
            return None
        conn.execute(delete(setup_codes))
        expires = iso_utc(now + SETUP_CODE_VALIDITY)
        conn.execute(insert(setup_codes).values(
            code_hash=code_hash, created_at=iso_utc(now), expires_at=expires,
        ))
        append_audit(conn, "system", "setup_code_issued", "setup", "first_admin",
                     {"expires_at": expires}, at=now)
    return code


def complete_setup(
    store: Store, code: str, username: str, password: str, *, clock: Clock = utcnow
) -> Principal:
    """Create the first admin with a valid set-up code; the code is then used up."""
    name = check_username(username)
    check_password_policy(password, name)
    now = clock()
    with store.connect() as conn:
        already = _user_count(conn) > 0
        row = _live_setup_code(conn)
    if already:
        raise _already_set_up()
    if row is None or parse_utc(row.expires_at) <= now:
        raise _no_setup_code()
    locked = _lock_end(row.locked_until, now)
    if locked is not None:
        raise _locked_error(locked, now)
    code_ok = verify_password(_normalise_code(code), row.code_hash)
    new_hash = hash_password(password) if code_ok else ""
    with store.begin() as conn:
        lock_chain(conn)
        outcome, lock_end = _use_setup_code(conn, row.id, code_ok, now)
        if outcome == "ok":
            user_id = _insert_user(conn, name, new_hash, frozenset({"admin"}), "system", now)
            append_audit(conn, "system", "user_created", USER, name,
                         {"roles": ["admin"], "via": "setup_code"}, at=now)
    if outcome == "ok":
        return Principal(user_id, name, frozenset({"admin"}))
    if outcome == "already":
        raise _already_set_up()
    if outcome == "gone":
        raise _no_setup_code()
    if outcome == "locked" and lock_end is not None:
        raise _locked_error(lock_end, now)
    raise AuthError("wrong set-up code: check it and try again", reason="bad_setup_code")


def _use_setup_code(
    conn: Connection, code_id: int, code_ok: bool, now: datetime
) -> tuple[str, datetime | None]:
    """Burn the code on success; count (and throttle) a wrong one.

    Returns the outcome and, for "locked", when the lock ends.
    """
    if _user_count(conn) > 0:
        return "already", None
    row = conn.execute(
        select(setup_codes).where(setup_codes.c.id == code_id).with_for_update()
    ).first()
    if row is None or row.used_at is not None or parse_utc(row.expires_at) <= now:
        return "gone", None
    lock_end = _lock_end(row.locked_until, now)
    if lock_end is not None:
        return "locked", lock_end
    if code_ok:
        conn.execute(update(setup_codes).where(setup_codes.c.id == code_id)
                     .values(used_at=iso_utc(now)))
        append_audit(conn, "system", "setup_code_used", "setup", "first_admin", {}, at=now)
        return "ok", None
    failures = row.failed_attempts + 1
    seconds = lockout_seconds(failures)
    burned = failures >= SETUP_CODE_MAX_FAILURES
    conn.execute(update(setup_codes).where(setup_codes.c.id == code_id).values(
        failed_attempts=failures,
        locked_until=iso_utc(now + timedelta(seconds=seconds)) if seconds else None,
        used_at=iso_utc(now) if burned else None,
    ))
    append_audit(conn, "anonymous", "setup_code_rejected", "setup", "first_admin",
                 {"failures": failures, "code_invalidated": burned}, at=now)
    return "wrong", None


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _live_setup_code(conn: Connection) -> Row[Any] | None:
    return conn.execute(
        select(setup_codes).where(setup_codes.c.used_at.is_(None))
        .order_by(setup_codes.c.id.desc()).limit(1)
    ).first()


def _already_set_up() -> AuthError:
    return AuthError(
        "FinFlow is already set up: sign in, or ask an administrator for an account",
        reason="already_set_up",
    )


def _no_setup_code() -> AuthError:
    return AuthError(
        "there is no valid set-up code (it expired, was used, or was replaced): restart "
        "FinFlow or ask its operator for the new code printed on the server console",
        reason="no_setup_code",
    )


def create_first_admin(
    store: Store, username: str, password: str, *, clock: Clock = utcnow
) -> Principal:
    """Local bootstrap (e.g. a CLI run on the server): create the first admin directly."""
    return add_user(store, None, username, password, ["admin"], clock=clock).principal()


# -- user management ----------------------------------------------------------------------

def add_user(
    store: Store,
    actor: Principal | None,
    username: str,
    password: str,
    roles: Iterable[str] | str,
    *,
    clock: Clock = utcnow,
) -> UserInfo:
    """Create a user. ``actor=None`` is the local bootstrap: allowed only for the very
    first user, who must be an admin."""
    name = check_username(username)
    role_set = parse_roles(roles)
    check_password_policy(password, name)
    if actor is None and "admin" not in role_set:
        raise InvalidInput("the first user must hold the admin role", field="roles")
    if actor is not None:
        require(actor, "manage_users")
    password_hash = hash_password(password)
    now = clock()
    with store.begin() as conn:
        lock_chain(conn)
        if actor is None:
            if _user_count(conn) > 0:
                raise Conflict(
                    "users already exist: sign in as an admin to add users",
                    reason="already_set_up",
                )
            by = "system"
            conn.execute(delete(setup_codes))  # a pending set-up code is now pointless
        else:
            by = _current_actor(conn, actor, "manage_users").username
        if _user_row(conn, name) is not None:
            raise Conflict(f"the username {name!r} is taken: choose another", username=name)
        user_id = _insert_user(conn, name, password_hash, role_set, by, now)
        append_audit(conn, by, "user_created", USER, name,
                     {"roles": sorted(role_set), "via": "bootstrap" if actor is None else "admin"},
                     at=now)
        return _info(_user_row_by_id(conn, user_id))


def set_roles(
    store: Store, actor: Principal, username: str, roles: Iterable[str] | str,
    *, clock: Clock = utcnow,
) -> UserInfo:
    """Replace a user's roles (admin only); the last active admin keeps the admin role."""
    require(actor, "manage_users")
    new = parse_roles(roles)
    now = clock()
    with store.begin() as conn:
        lock_chain(conn)
        by = _current_actor(conn, actor, "manage_users")
        row = _require_user(conn, username)
        old = _roles_of(row.roles)
        if "admin" in old and "admin" not in new and row.active:
            _keep_an_admin(conn, row, "remove its admin role")
        if new != old:
            _update_user(conn, row.id, roles=_roles_text(new))
            append_audit(conn, by.username, "roles_changed", USER, row.username,
                         {"from": sorted(old), "to": sorted(new)}, at=now)
        return _info(_user_row_by_id(conn, row.id))


def set_password(
    store: Store,
    actor: Principal,
    username: str,
    new_password: str,
    *,
    current_password: str | None = None,
    clock: Clock = utcnow,
) -> None:
    """Set a password: admins for anyone; a user for themself, giving the current one.

    Clears any sign-in lock on the account.
    """
    name = normalise_username(username)
    check_password_policy(new_password, name)
    own = actor.user_id is not None and actor.username == name
    if not own:
        require(actor, "manage_users")
    elif current_password is None:
        raise InvalidInput("give your current password to change it", field="current_password")
    else:  # re-authenticate: throttled and audited like a sign-in
        _check_credentials(store, name, current_password, clock, purpose="password_change")
    password_hash = hash_password(new_password)
    now = clock()
    with store.begin() as conn:
        lock_chain(conn)
        by = _current_self(conn, actor) if own else _current_actor(conn, actor, "manage_users")
        row = _require_user(conn, name)
        _update_user(conn, row.id, password_hash=password_hash, password_changed_at=iso_utc(now),
                     failed_logins=0, locked_until=None)
        append_audit(conn, by.username, "password_changed", USER, row.username,
                     {"by": "self" if own else "admin"}, at=now)


def disable_user(store: Store, actor: Principal, username: str, *, clock: Clock = utcnow) -> UserInfo:
    """Stop a user from signing in (admin only); the last active admin cannot be disabled."""
    require(actor, "manage_users")
    now = clock()
    with store.begin() as conn:
        lock_chain(conn)
        by = _current_actor(conn, actor, "manage_users")
        row = _require_user(conn, username)
        if row.active:
            if "admin" in _roles_of(row.roles):
                _keep_an_admin(conn, row, "disable it")
            _update_user(conn, row.id, active=False)
            append_audit(conn, by.username, "user_disabled", USER, row.username, {}, at=now)
        return _info(_user_row_by_id(conn, row.id))


def enable_user(store: Store, actor: Principal, username: str, *, clock: Clock = utcnow) -> UserInfo:
    """Let a user sign in again (admin only); also clears a sign-in lock."""
    require(actor, "manage_users")
    now = clock()
    with store.begin() as conn:
        lock_chain(conn)
        by = _current_actor(conn, actor, "manage_users")
        row = _require_user(conn, username)
        if not row.active or row.failed_logins or row.locked_until:
            _update_user(conn, row.id, active=True, failed_logins=0, locked_until=None)
            append_audit(conn, by.username, "user_enabled", USER, row.username,
                         {"was_active": bool(row.active), "cleared_failures": row.failed_logins},
                         at=now)
        return _info(_user_row_by_id(conn, row.id))


def list_users(store: Store, actor: Principal) -> list[UserInfo]:
    """All users, by username (admin only; no password hashes)."""
    require(actor, "manage_users")
    with store.connect() as conn:
        _current_actor(conn, actor, "manage_users")
        rows = conn.execute(select(users).order_by(users.c.username)).all()
    return [_info(r) for r in rows]


# -- helpers ------------------------------------------------------------------------------

def _user_row(conn: Connection, username: str) -> Row[Any] | None:
    return conn.execute(select(users).where(users.c.username == username)).first()


def _user_row_by_id(conn: Connection, user_id: int) -> Row[Any] | None:
    return conn.execute(select(users).where(users.c.id == user_id)).first()


def _require_user(conn: Connection, username: str) -> Row[Any]:
    name = normalise_username(username)
    row = _user_row(conn, name)
    if row is None:
        raise NotFound(f"there is no user {name!r}: check the name with list_users",
                       username=name)
    return row


def _user_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def _insert_user(
    conn: Connection, name: str, password_hash: str, roles: frozenset[str], by: str,
    now: datetime,
) -> int:
    result = conn.execute(insert(users).values(
        username=name, password_hash=password_hash, roles=_roles_text(roles), active=True,
        created_at=iso_utc(now), created_by=by, password_changed_at=iso_utc(now),
        failed_logins=0,
    ))
    key = result.inserted_primary_key
    assert key is not None  # a single-row INSERT always reports its key
    return int(key[0])


def _update_user(conn: Connection, user_id: int, **values: Any) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(**values))


def _current_actor(conn: Connection, actor: Principal, action: str) -> Principal:
    """The actor as the database knows them now: still active, still holding the role."""
    current = _current_self(conn, actor)
    if not current.roles & set(allowed_roles(action)):
        raise PermissionDenied(action, allowed_roles(action), actor.username)
    return current


def _current_self(conn: Connection, actor: Principal) -> Principal:
    row = None if actor.user_id is None else _user_row_by_id(conn, actor.user_id)
    if row is None or not row.active or row.username != actor.username:
        raise AuthError(
            f"the account {actor.username!r} is disabled or no longer exists: sign in again",
            reason="account_gone",
        )
    return Principal(row.id, row.username, _roles_of(row.roles))


def _keep_an_admin(conn: Connection, row: Row[Any], what: str) -> None:
    others = conn.execute(
        select(users.c.roles).where(users.c.active.is_(True), users.c.id != row.id)
    ).scalars()
    if not any("admin" in _roles_of(r) for r in others):
        raise LastAdminError(
            f"{row.username!r} is the last active admin, so FinFlow cannot {what}: give "
            "another user the admin role first",
            username=row.username,
        )


def _info(row: Row[Any] | None) -> UserInfo:
    assert row is not None  # callers pass a row they just read or wrote
    return UserInfo(
        user_id=row.id, username=row.username, roles=_roles_of(row.roles),
        active=bool(row.active), created_at=row.created_at, created_by=row.created_by,
        password_changed_at=row.password_changed_at, last_login_at=row.last_login_at,
        failed_logins=row.failed_logins, locked_until=row.locked_until,
    )
