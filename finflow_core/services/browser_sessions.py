"""Server-side sessions of signed-in browsers: what keeps a person signed in over a reload.

The design, and why:

* **The browser holds only a random token** (256 bits, ``secrets.token_urlsafe``) in an
  ``HttpOnly; SameSite=Strict`` cookie; the store keeps its SHA-256, the user, when it was
  created and last used, when it expires and whether it was revoked. Never the user name or
  the roles: a stolen cookie is worth only as long as the session lives, and page scripts
  cannot read it.
* **The cookie is set by FinFlow's own HTTP route, not by the app script** (Streamlit cannot
  set cookies). Signing in creates the session with a one-time *hand-over code* (hashed too,
  valid :data:`HANDOFF_SECONDS`); the page then loads ``/finflow/session?code=...`` as an
  image, and that route (``finflow_app.server``) swaps the code for the token and sets the
  cookie. The code works once; the token itself never appears in a URL, a page or a log.
* **Every script run checks the session** (one small read): revoked, expired, idle for
  longer than ``security.session_idle_minutes``, the account disabled, its password or its
  roles changed since sign-in all end it at once, with a message saying why. A password
  changed in the CLI or by an admin therefore ends every session of that user without any
  hook in the user services. Last use is written at most once a minute (:data:`TOUCH_EVERY`)
  so a page's reruns do not queue behind a long batch write.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from finflow_core.errors import AuthError
from finflow_core.services.access import Principal
from finflow_core.services.context import Context
from finflow_core.store import sign_in as rows
from finflow_core.store import users as user_rows
from finflow_core.store.audit_chain import append_audit, lock_chain
from finflow_core.store.tables import parse_utc

#: How long the page has to fetch its cookie after sign-in.
HANDOFF_SECONDS = 120
#: Last use is recorded at most this often (the idle timeout is precise to this).
TOUCH_EVERY = timedelta(seconds=60)
SESSION = "session"


class EndReason(StrEnum):
    SIGNED_OUT = "signed_out"
    IDLE = "idle"
    EXPIRED = "expired"
    PASSWORD_CHANGED = "password_changed"
    ROLES_CHANGED = "roles_changed"
    ACCOUNT_GONE = "account_gone"
    UNKNOWN = "unknown"


MESSAGES = {
    EndReason.SIGNED_OUT: "you signed out (in this or another tab): sign in again",
    EndReason.IDLE: "you were signed out after {idle} minutes without activity: sign in again",
    EndReason.EXPIRED: "your session reached its {hours}-hour limit: sign in again",
    EndReason.PASSWORD_CHANGED: "you were signed out because your password was changed: sign in "
                                "with the new one",
    EndReason.ROLES_CHANGED: "you were signed out because your roles were changed: sign in again",
    EndReason.ACCOUNT_GONE: "the account was disabled or removed: sign in again",
    EndReason.UNKNOWN: "you are not signed in",
}


class SessionEnded(AuthError):
    """The browser's session is over; ``reason`` says why (an :class:`EndReason`)."""


@dataclass(frozen=True)
class SessionGrant:
    """A session just opened: its id (kept by the app) and the one-time hand-over code."""

    session_id: int
    handoff_code: str
    expires_at: datetime


@dataclass(frozen=True)
class LiveSession:
    """A session that is still valid, with its user as the store knows them now."""

    session_id: int
    principal: Principal
    handed_over: bool  # the browser has its cookie
    handoff_open: bool  # not yet, and the code still works


@dataclass(frozen=True)
class BrowserToken:
    """What the cookie route sets: the token (never stored) and how long the cookie lives."""

    token: str
    max_age: int
    session_id: int


def password_stamp(password_hash: str) -> str:
    """A fingerprint of the stored password hash: a different one means a changed password."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()


class BrowserSessions:
    """Open, check, hand over and end browser sessions (reached through ``Gate.sessions``)."""

    def __init__(self, context: Context) -> None:
        self.ctx = context
        sec = context.config.security
        self.idle = timedelta(minutes=sec.session_idle_minutes)
        self.lifetime = timedelta(hours=sec.session_max_hours)

    def open(self, principal: Principal) -> SessionGrant:
        """A new session for a user who just proved who they are."""
        if principal.user_id is None:
            raise AuthError("only a signed-in user has a browser session", reason="no_user")
        now = self.ctx.clock()
        code = secrets.token_urlsafe(32)
        with self.ctx.store.begin() as conn:
            lock_chain(conn)
            user = user_rows.by_id(conn, principal.user_id)
            if user is None or not user.active:
                raise SessionEnded(MESSAGES[EndReason.ACCOUNT_GONE], reason=EndReason.ACCOUNT_GONE)
            expires = now + self.lifetime
            sid = rows.insert_session(
                conn, user_id=user.id, password_stamp=password_stamp(user.password_hash),
                roles=user_rows.roles_text(user.roles), handoff_hash=rows.digest(code),
                handoff_expires_at=now + timedelta(seconds=HANDOFF_SECONDS), now=now, expires_at=expires)
            append_audit(conn, user.username, "session_started", SESSION, str(sid),
                         {"expires_at": expires.isoformat(timespec="minutes")}, at=now)
        return SessionGrant(sid, code, expires)

    def hand_over(self, code: str) -> BrowserToken | None:
        """Swap a hand-over code for the browser's token, once; None if the code is no good."""
        if not code or len(code) > 128:
            return None
        now = self.ctx.clock()
        token = secrets.token_urlsafe(32)
        with self.ctx.store.begin() as conn:
            rec = rows.by_handoff(conn, rows.digest(code))
            if (rec is None or rec.revoked_at is not None or rec.handoff_expires_at is None
                    or parse_utc(rec.handoff_expires_at) <= now or parse_utc(rec.expires_at) <= now):
                return None
            if not rows.hand_over(conn, rec.id, rows.digest(token)):
                return None
            max_age = int((parse_utc(rec.expires_at) - now).total_seconds())
        return BrowserToken(token, max_age, rec.id)

    def check(self, session_id: int) -> LiveSession:
        """The session the app holds, still valid (SessionEnded otherwise); records its use."""
        with self.ctx.store.connect() as conn:
            rec = rows.by_id(conn, session_id)
        return self._live(rec)

    def resume(self, token: str) -> LiveSession:
        """The session of a browser's cookie (after a reload or a new tab)."""
        if not token or len(token) > 128:
            raise SessionEnded(MESSAGES[EndReason.UNKNOWN], reason=EndReason.UNKNOWN)
        with self.ctx.store.connect() as conn:
            rec = rows.by_token(conn, rows.digest(token))
        return self._live(rec)

    def is_live(self, token: str | None) -> bool:
        """Whether a cookie belongs to a live session (read only: for the upload guard)."""
        if not token or len(token) > 128:
            return False
        now = self.ctx.clock()
        with self.ctx.store.connect() as conn:
            rec = rows.by_token(conn, rows.digest(token))
            user = None if rec is None else user_rows.by_id(conn, rec.user_id)
        return rec is not None and self._problem(rec, user, now) is None

    def end(self, session_id: int, reason: EndReason = EndReason.SIGNED_OUT) -> None:
        """End a session (sign-out); ending one that already ended does nothing."""
        now = self.ctx.clock()
        with self.ctx.store.begin() as conn:
            lock_chain(conn)
            rec = rows.by_id(conn, session_id)
            if rec is None:
                return
            if rows.revoke(conn, session_id, reason, now):
                user = user_rows.by_id(conn, rec.user_id)
                append_audit(conn, user.username if user else "anonymous", "session_ended", SESSION,
                             str(session_id), {"reason": str(reason)}, at=now)

    def end_by_token(self, token: str | None) -> None:
        if token and len(token) <= 128:
            with self.ctx.store.connect() as conn:
                rec = rows.by_token(conn, rows.digest(token))
            if rec is not None:
                self.end(rec.id)

    def keep_after_password_change(self, session_id: int, principal: Principal) -> None:
        """The user changed their own password in this session: it stays, every other one of
        theirs ends now."""
        now = self.ctx.clock()
        with self.ctx.store.begin() as conn:
            lock_chain(conn)
            rec = rows.by_id(conn, session_id)
            user = None if principal.user_id is None else user_rows.by_id(conn, principal.user_id)
            if rec is None or user is None or rec.user_id != user.id or rec.revoked_at is not None:
                return
            rows.restamp(conn, session_id, password_stamp(user.password_hash), user_rows.roles_text(user.roles))
            ended = rows.revoke_user(conn, user.id, EndReason.PASSWORD_CHANGED, now, keep=session_id)
            if ended:
                append_audit(conn, user.username, "sessions_ended", "user", user.username,
                             {"reason": str(EndReason.PASSWORD_CHANGED), "sessions": ended}, at=now)

    # -- the rules --------------------------------------------------------------------------
    def _live(self, rec: rows.SessionRecord | None) -> LiveSession:
        now = self.ctx.clock()
        if rec is None:
            raise SessionEnded(MESSAGES[EndReason.UNKNOWN], reason=EndReason.UNKNOWN)
        with self.ctx.store.connect() as conn:
            user = user_rows.by_id(conn, rec.user_id)
        problem = self._problem(rec, user, now)
        if problem is not None:
            if rec.revoked_at is None:
                self.end(rec.id, problem)
            raise SessionEnded(self.message(problem), reason=problem)
        assert user is not None
        if now - parse_utc(rec.last_seen_at) >= TOUCH_EVERY:
            with self.ctx.store.begin() as conn:
                rows.touch(conn, rec.id, now)
        handoff_open = (not rec.handed_over and rec.handoff_expires_at is not None
                        and parse_utc(rec.handoff_expires_at) > now)
        return LiveSession(rec.id, Principal(user.id, user.username, user.roles), rec.handed_over,
                           handoff_open)

    def _problem(self, rec: rows.SessionRecord, user: user_rows.UserRecord | None,
                 now: datetime) -> EndReason | None:
        if rec.revoked_at is not None:
            return EndReason(rec.revoked_reason) if rec.revoked_reason in set(EndReason) else EndReason.UNKNOWN
        if user is None or not user.active:
            return EndReason.ACCOUNT_GONE
        if password_stamp(user.password_hash) != rec.password_stamp:
            return EndReason.PASSWORD_CHANGED
        if user_rows.roles_text(user.roles) != rec.roles:
            return EndReason.ROLES_CHANGED
        if parse_utc(rec.expires_at) <= now:
            return EndReason.EXPIRED
        if parse_utc(rec.last_seen_at) + self.idle <= now:
            return EndReason.IDLE
        return None

    def message(self, reason: EndReason) -> str:
        sec = self.ctx.config.security
        return MESSAGES[reason].format(idle=f"{sec.session_idle_minutes:g}", hours=f"{sec.session_max_hours:g}")
