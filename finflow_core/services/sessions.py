"""The way in: sign-in with throttling, the first-admin set-up, and refreshing a session.

:class:`Gate` is the only service that needs no principal; everything it lets through
comes back as a :class:`~finflow_core.services.workbench.Workbench`.

* Sign-in is throttled: from the 3rd consecutive failure the account is locked for
  ``2 ** (failures - 3)`` seconds (capped at 15 minutes); an attempt during the lock is
  refused without looking at the password. A name that is no user gets exactly the same:
  the same scrypt work, its own failure counter (``store.sign_in``), the same lock and
  messages, so neither the answer nor its timing tells which names exist.
* A signed-in browser keeps a server-side session (:attr:`Gate.sessions`, see
  :mod:`finflow_core.services.browser_sessions`).
* There is no default account: with no users nobody signs in until a first admin is
  created, locally (:meth:`Gate.create_first_admin`) or with a one-time set-up code.
* Every attempt and change is audited in the same transaction.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property

from finflow_core.errors import AuthError, Conflict, InvalidInput
from finflow_core.lending.terms import Role
from finflow_core.security.password_policy import check_password_policy
from finflow_core.security.passwords import (
    check_against_dummy,
    hash_password,
    needs_rehash,
    verify_password,
)
from finflow_core.services.access import Principal
from finflow_core.services.browser_sessions import BrowserSessions
from finflow_core.services.context import Context
from finflow_core.services.workbench import Workbench
from finflow_core.store import sign_in as sign_in_rows
from finflow_core.store import users as user_rows
from finflow_core.store.audit_chain import append_audit, lock_chain
from finflow_core.store.tables import iso_utc, parse_utc

LOCK_AFTER_FAILURES = 3
MAX_LOCK_SECONDS = 15 * 60
SETUP_CODE_VALIDITY = timedelta(hours=24)
SETUP_CODE_MAX_FAILURES = 10
#: No 0/O, 1/I/L: a code read off a console is easy to type.
SETUP_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
#: A failure counter of a name that is no user is forgotten after a day without failures.
FORGET_UNKNOWN_AFTER = timedelta(days=1)
#: Names the audit trail uses for non-users; nobody may sign up as them.
RESERVED_USERNAMES = frozenset({"system", "anonymous"})
BAD_CREDENTIALS = "wrong username or password"
USER = "user"


class Attempt(StrEnum):
    OK = "ok"
    FAILED = "failed"
    LOCKED = "locked"
    DISABLED = "disabled"


def lockout_seconds(failures: int) -> int:
    """How long an account stays locked after ``failures`` consecutive failed sign-ins."""
    if failures < LOCK_AFTER_FAILURES:
        return 0
    exponent = failures - LOCK_AFTER_FAILURES
    return MAX_LOCK_SECONDS if exponent >= 10 else min(2**exponent, MAX_LOCK_SECONDS)


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and compared trimmed and lower-case."""
    return username.strip().lower()


def check_username(username: str) -> str:
    """Validate a new username and return its normal form."""
    name = normalise_username(username)
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid username {username!r}: use 2-64 characters: letters, digits, '.', '_' "
            "or '-', starting with a letter or digit", field="username",
        )
    if name in RESERVED_USERNAMES:
        raise InvalidInput(f"the username {name!r} is reserved: choose another", field="username")
    return name


def parse_roles(roles: object) -> frozenset[Role]:
    """Roles from a list or a comma-separated string; at least one, all known."""
    items = roles.split(",") if isinstance(roles, str) else list(roles)  # type: ignore[call-overload]
    chosen = {str(r).strip().lower() for r in items if str(r).strip()}
    unknown = sorted(chosen - {r.value for r in Role})
    if unknown or not chosen:
        raise InvalidInput(
            f"roles must be one or more of {', '.join(Role)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""), field="roles",
        )
    return frozenset(Role(r) for r in chosen)


@dataclass(frozen=True)
class _Checked:
    """The result of the (slow, unlocked) password check, to be recorded."""

    user_id: int
    password_hash: str
    password_ok: bool
    rehash: str | None


class Gate:
    """Sign-in and first-run set-up: the services that run before anyone is signed in."""

    def __init__(self, context: Context) -> None:
        self.ctx = context

    @property
    def store(self):  # noqa: ANN201 - the Store
        return self.ctx.store

    @cached_property
    def sessions(self) -> BrowserSessions:
        """Browser sessions: open at sign-in, checked at every page run, ended at sign-out."""
        return BrowserSessions(self.ctx)

    # -- who is there ----------------------------------------------------------------------
    def has_users(self) -> bool:
        """Whether any user exists (if not, the app shows the first-admin set-up)."""
        with self.store.connect() as conn:
            return user_rows.count(conn) > 0

    def workbench(self, principal: Principal) -> Workbench:
        """A workbench for a principal the caller already trusts (refreshed from the store)."""
        return Workbench(self.ctx, self.refresh(principal))

    def refresh(self, principal: Principal) -> Principal:
        """Re-read a signed-in user: current roles, or AuthError if disabled or removed."""
        if principal.user_id is None:
            return principal
        with self.store.connect() as conn:
            row = user_rows.by_id(conn, principal.user_id)
        if row is None or not row.active or row.username != principal.username:
            raise AuthError(f"the account {principal.username!r} was disabled or removed: sign in again",
                            reason="account_gone")
        return Principal(row.id, row.username, row.roles)

    # -- sign-in ---------------------------------------------------------------------------
    def sign_in(self, username: str, password: str) -> Workbench:
        """Check a username and password; raises AuthError otherwise."""
        return Workbench(self.ctx, self.authenticate(username, password))

    def authenticate(self, username: str, password: str, *, purpose: str = "sign_in") -> Principal:
        name = normalise_username(username)
        now = self.ctx.clock()
        with self.store.connect() as conn:
            row = user_rows.by_name(conn, name)
        if row is None:
            raise self._refuse_unknown(name[:64], password, now, purpose)
        locked = _lock_end(row.locked_until, now)
        password_ok = locked is None and verify_password(password, row.password_hash)
        rehash = hash_password(password) if password_ok and needs_rehash(row.password_hash) else None
        outcome, fresh = self._record_attempt(_Checked(row.id, row.password_hash, password_ok, rehash),
                                              now, purpose)
        if outcome is Attempt.OK and fresh is not None:
            return Principal(fresh.id, fresh.username, fresh.roles)
        if outcome is Attempt.LOCKED and fresh is not None:
            raise locked_error(_lock_end(fresh.locked_until, now) or now, now)
        if outcome is Attempt.DISABLED:
            raise AuthError(f"the account {name!r} is disabled: ask an administrator to enable it",
                            reason="disabled")
        raise AuthError(BAD_CREDENTIALS, reason="bad_credentials")

    def _refuse_unknown(self, name: str, password: str, now: datetime, purpose: str) -> AuthError:
        """A name that is no user: counted and locked like a real account (see module doc)."""
        with self.store.connect() as conn:
            seen = sign_in_rows.failures(conn, name)
        if _lock_end(seen.locked_until if seen else None, now) is None:
            check_against_dummy(password)  # the work a real password check costs
        with self.store.begin() as conn:
            lock_chain(conn)
            seen = sign_in_rows.failures(conn, name)  # again, under the lock
            lock_end = _lock_end(seen.locked_until if seen else None, now)
            if lock_end is not None:
                append_audit(conn, "anonymous", "login_refused", USER, name,
                             {"reason": "locked", "locked_until": seen.locked_until if seen else None,
                              "known_user": False, "purpose": purpose}, at=now)
            else:
                failures = (seen.failed_logins if seen else 0) + 1
                seconds = lockout_seconds(failures)
                until = iso_utc(now + timedelta(seconds=seconds)) if seconds else None
                sign_in_rows.record_failure(conn, name, failures, until, now)
                sign_in_rows.forget_failures_before(conn, now - FORGET_UNKNOWN_AFTER)
                append_audit(conn, "anonymous", "login_failed", USER, name,
                             {"reason": "unknown_user", "failures": failures, "locked_until": until,
                              "purpose": purpose}, at=now)
        if lock_end is not None:
            return locked_error(lock_end, now)
        return AuthError(BAD_CREDENTIALS, reason="bad_credentials")

    def _record_attempt(self, checked: _Checked, now: datetime,
                        purpose: str) -> tuple[Attempt, user_rows.UserRecord | None]:
        """Update the throttle and audit one attempt; re-reads the row under the lock so
        concurrent attempts count correctly and a lock set meanwhile is honoured."""
        with self.store.begin() as conn:
            lock_chain(conn)
            row = user_rows.by_id(conn, checked.user_id)
            if row is None:  # deleted meanwhile: like an unknown user
                append_audit(conn, "anonymous", "login_failed", USER, str(checked.user_id),
                             {"reason": "unknown_user", "purpose": purpose}, at=now)
                return Attempt.FAILED, None

            def audit(action: str, details: dict[str, object]) -> None:
                append_audit(conn, row.username, action, USER, row.username,
                             {**details, "purpose": purpose}, at=now)

            # a password changed since we checked it does not count as the right one
            password_ok = checked.password_ok and row.password_hash == checked.password_hash
            if _lock_end(row.locked_until, now) is not None:
                audit("login_refused", {"reason": "locked", "locked_until": row.locked_until})
                return Attempt.LOCKED, row
            if not password_ok:
                failures = row.failed_logins + 1
                seconds = lockout_seconds(failures)
                until = iso_utc(now + timedelta(seconds=seconds)) if seconds else None
                user_rows.update_user(conn, row.id, failed_logins=failures, locked_until=until)
                audit("login_failed", {"reason": "wrong_password", "failures": failures,
                                       "locked_until": until})
                return Attempt.FAILED, row
            if not row.active:
                audit("login_refused", {"reason": "disabled"})
                return Attempt.DISABLED, row
            user_rows.update_user(conn, row.id, failed_logins=0, locked_until=None,
                                  last_login_at=iso_utc(now))
            sealed: dict[str, object] = {}
            if checked.rehash is not None:  # stored with other parameters than today's
                user_rows.update_user(conn, row.id, password_hash=checked.rehash)
                sealed = user_rows.seal_ref(conn, row.id)  # the re-sealed row, in the trail
            audit("login", sealed)
            return Attempt.OK, row

    # -- the first admin -------------------------------------------------------------------
    def issue_setup_code(self) -> str | None:
        """A one-time code for creating the first admin, or None once users exist.

        Only its hash is stored, so every call issues a fresh code (valid 24 hours) and
        invalidates the previous one. Print it where the operator can read it.
        """
        code = "-".join("".join(secrets.choice(SETUP_CODE_ALPHABET) for _ in range(4)) for _ in range(3))
        code_hash = hash_password(_normalise_code(code))
        now = self.ctx.clock()
        with self.store.begin() as conn:
            lock_chain(conn)
            if user_rows.count(conn) > 0:
                return None
            expires = iso_utc(now + SETUP_CODE_VALIDITY)
            user_rows.replace_setup_code(conn, code_hash, iso_utc(now), expires)
            append_audit(conn, "system", "setup_code_issued", "setup", "first_admin",
                         {"expires_at": expires}, at=now)
        return code

    def complete_setup(self, code: str, username: str, password: str) -> Workbench:
        """Create the first admin with a valid set-up code; the code is then used up."""
        name = check_username(username)
        check_password_policy(password, name)
        now = self.ctx.clock()
        with self.store.connect() as conn:
            already = user_rows.count(conn) > 0
            row = user_rows.live_setup_code(conn)
        if already:
            raise _already_set_up()
        if row is None or parse_utc(row.expires_at) <= now:
            raise _no_setup_code()
        locked = _lock_end(row.locked_until, now)
        if locked is not None:
            raise locked_error(locked, now)
        code_ok = verify_password(_normalise_code(code), row.code_hash)
        new_hash = hash_password(password) if code_ok else ""
        admin = frozenset({Role.ADMIN})
        with self.store.begin() as conn:
            lock_chain(conn)
            outcome, lock_end = _use_setup_code(conn, row.id, code_ok, now)
            if outcome == "ok":
                user_id = user_rows.insert_user(conn, name, new_hash, admin, "system", now)
                append_audit(conn, "system", "user_created", USER, name,
                             {"roles": ["admin"], "via": "setup_code",
                              **user_rows.seal_ref(conn, user_id)}, at=now)
        if outcome == "ok":
            return Workbench(self.ctx, Principal(user_id, name, admin))
        if outcome == "already":
            raise _already_set_up()
        if outcome == "gone":
            raise _no_setup_code()
        if outcome == "locked" and lock_end is not None:
            raise locked_error(lock_end, now)
        raise AuthError("wrong set-up code: check it and try again", reason="bad_setup_code")

    def create_first_admin(self, username: str, password: str) -> Workbench:
        """Local bootstrap (a command run on the server): create the first admin directly."""
        name = check_username(username)
        check_password_policy(password, name)
        password_hash = hash_password(password)
        now = self.ctx.clock()
        admin = frozenset({Role.ADMIN})
        with self.store.begin() as conn:
            lock_chain(conn)
            if user_rows.count(conn) > 0:
                raise Conflict("users already exist: sign in as an admin to add users",
                               reason="already_set_up")
            user_rows.clear_setup_codes(conn)  # a pending set-up code is now pointless
            user_id = user_rows.insert_user(conn, name, password_hash, admin, "system", now)
            append_audit(conn, "system", "user_created", USER, name,
                         {"roles": ["admin"], "via": "bootstrap",
                          **user_rows.seal_ref(conn, user_id)}, at=now)
        return Workbench(self.ctx, Principal(user_id, name, admin))


def _use_setup_code(conn, code_id: int, code_ok: bool, now: datetime):  # noqa: ANN001, ANN202
    """Burn the code on success; count (and throttle) a wrong one."""
    if user_rows.count(conn) > 0:
        return "already", None
    row = user_rows.setup_code_by_id(conn, code_id)
    if row is None or row.used_at is not None or parse_utc(row.expires_at) <= now:
        return "gone", None
    lock_end = _lock_end(row.locked_until, now)
    if lock_end is not None:
        return "locked", lock_end
    if code_ok:
        user_rows.update_setup_code(conn, code_id, used_at=iso_utc(now))
        append_audit(conn, "system", "setup_code_used", "setup", "first_admin", {}, at=now)
        return "ok", None
    failures = row.failed_attempts + 1
    seconds = lockout_seconds(failures)
    burned = failures >= SETUP_CODE_MAX_FAILURES
    user_rows.update_setup_code(
        conn, code_id, failed_attempts=failures,
        locked_until=iso_utc(now + timedelta(seconds=seconds)) if seconds else None,
        used_at=iso_utc(now) if burned else None,
    )
    append_audit(conn, "anonymous", "setup_code_rejected", "setup", "first_admin",
                 {"failures": failures, "code_invalidated": burned}, at=now)
    return "wrong", None


def _lock_end(locked_until: str | None, now: datetime) -> datetime | None:
    """When the current lock ends, or None if not locked at ``now``."""
    if locked_until is None:
        return None
    end = parse_utc(locked_until)
    return end if end > now else None


def locked_error(until: datetime, now: datetime) -> AuthError:
    wait = max(1, math.ceil((until - now).total_seconds()))
    return AuthError(
        f"too many failed attempts: try again in {wait} s (after "
        f"{until.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC)",
        reason="locked", retry_after_seconds=wait, retry_at=iso_utc(until),
    )


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _already_set_up() -> AuthError:
    return AuthError("FinFlow is already set up: sign in, or ask an administrator for an account",
                     reason="already_set_up")


def _no_setup_code() -> AuthError:
    return AuthError(
        "there is no valid set-up code (it expired, was used, or was replaced): restart "
        "FinFlow or ask its operator for the new code printed on the server console",
        reason="no_setup_code",
    )
