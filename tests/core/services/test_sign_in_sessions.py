"""Browser sessions (token hand-over, idle timeout, revocation) and the lockout of unknown names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from trail import audit_rows

from finflow_core.errors import AuthError
from finflow_core.lending.config import load_config
from finflow_core.security import passwords as auth
from finflow_core.services import sessions
from finflow_core.services.browser_sessions import HANDOFF_SECONDS, EndReason, SessionEnded
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate
from finflow_core.services.workbench import Workbench
from finflow_core.store import Store, open_store
from finflow_core.store.tables import sign_in_failures, web_sessions

PW = "correct horse battery"
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'finflow.db'}")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gate(store: Store, clock: Clock) -> Gate:
    g = Gate(Context(load_config(), store, clock=clock))
    admin = g.create_first_admin("root", PW)
    admin.users.add("bob", PW, ["analyst"])
    return g


def admin(gate: Gate) -> Workbench:
    return gate.sign_in("root", PW)


def signed_in(gate: Gate, name: str = "bob") -> tuple[int, str]:
    """Sign in, open a session and let the 'browser' fetch its token: (session id, token)."""
    principal = gate.authenticate(name, PW)
    grant = gate.sessions.open(principal)
    token = gate.sessions.hand_over(grant.handoff_code)
    assert token is not None and token.session_id == grant.session_id
    return grant.session_id, token.token


# -- unknown names lock out like real ones -------------------------------------------------------

def attempts(gate: Gate, name: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        with pytest.raises(AuthError) as caught:
            gate.authenticate(name, "not the password")
        out.append(caught.value.message)
    return out


@pytest.mark.parametrize("name", ["bob", "nobody-at-all"])
def test_the_fourth_attempt_is_locked_out_for_known_and_unknown_names(gate: Gate, clock: Clock,
                                                                      name: str) -> None:
    messages = attempts(gate, name, 4)
    assert messages[:3] == ["wrong username or password"] * 3
    assert messages[3].startswith("too many failed attempts: try again in 1 s")
    clock.advance(seconds=2)  # the 1 s lock is over; the next failure locks for 2 s
    again = attempts(gate, name, 2)
    assert again[0] == "wrong username or password"
    assert again[1].startswith("too many failed attempts: try again in 2 s")


def test_known_and_unknown_names_give_the_same_answers_and_the_same_work(
        gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = auth.verify_password
    def counting(password: str, encoded: str) -> bool:
        calls.append(encoded)
        return real(password, encoded)

    monkeypatch.setattr(auth, "verify_password", counting)  # the dummy check of unknown names
    monkeypatch.setattr(sessions, "verify_password", counting)  # the real check
    known, unknown = attempts(gate, "bob", 5), attempts(gate, "ghost", 5)
    assert known == unknown
    # a password is checked (one scrypt) for each of the first three; never while locked
    assert len(calls) == 6


def test_unknown_name_counters_are_stored_per_name_and_audited(gate: Gate, store: Store) -> None:
    attempts(gate, "ghost", 3)
    attempts(gate, "phantom", 1)
    with store.connect() as conn:
        rows = {r.username: r.failed_logins for r in conn.execute(select(sign_in_failures))}
    assert rows == {"ghost": 3, "phantom": 1}
    last = audit_rows(store, action="login_failed")[-2]
    assert last["subject_id"] == "ghost" and last["details"]["failures"] == 3


# -- sessions ------------------------------------------------------------------------------------

def test_a_handed_over_token_resumes_the_session_and_only_hashes_are_stored(gate: Gate,
                                                                          store: Store) -> None:
    principal = gate.authenticate("bob", PW)
    grant = gate.sessions.open(principal)
    token = gate.sessions.hand_over(grant.handoff_code)
    assert token is not None and token.max_age == 12 * 3600
    assert gate.sessions.hand_over(grant.handoff_code) is None  # the code works once
    live = gate.sessions.resume(token.token)
    assert live.principal == principal and live.session_id == grant.session_id and live.handed_over
    with store.connect() as conn:
        cells = [str(v) for row in conn.execute(select(web_sessions)) for v in row]
    assert token.token not in cells and grant.handoff_code not in cells
    assert "bob" not in cells  # the row names the user by id only


def test_a_hand_over_code_expires(gate: Gate, clock: Clock) -> None:
    grant = gate.sessions.open(gate.authenticate("bob", PW))
    assert gate.sessions.check(grant.session_id).handoff_open
    clock.advance(seconds=HANDOFF_SECONDS + 1)
    assert gate.sessions.hand_over(grant.handoff_code) is None
    assert not gate.sessions.check(grant.session_id).handoff_open


def test_an_idle_session_ends_and_activity_keeps_it(gate: Gate, clock: Clock) -> None:
    sid, token = signed_in(gate)
    for _ in range(4):  # used every 20 minutes for 80 minutes: still signed in
        clock.advance(minutes=20)
        assert gate.sessions.check(sid).principal.username == "bob"
    clock.advance(minutes=31)
    with pytest.raises(SessionEnded) as caught:
        gate.sessions.resume(token)
    assert caught.value.details["reason"] == EndReason.IDLE
    assert caught.value.message == "you were signed out after 30 minutes without activity: sign in again"
    with pytest.raises(SessionEnded):  # and it stays ended
        gate.sessions.check(sid)


def test_a_session_ends_at_its_limit_whatever_the_activity(gate: Gate, clock: Clock) -> None:
    sid, _ = signed_in(gate)
    for _ in range(12 * 3):
        clock.advance(minutes=20)
        try:
            gate.sessions.check(sid)
        except SessionEnded as exc:
            assert exc.details["reason"] == EndReason.EXPIRED
            assert clock.now - T0 >= timedelta(hours=12)
            return
    pytest.fail("the session outlived its 12-hour limit")


def test_sign_out_ends_the_session_and_is_audited(gate: Gate, store: Store) -> None:
    sid, token = signed_in(gate)
    gate.sessions.end(sid)
    assert not gate.sessions.is_live(token)
    with pytest.raises(SessionEnded) as caught:
        gate.sessions.resume(token)
    assert caught.value.details["reason"] == EndReason.SIGNED_OUT
    assert [e["action"] for e in audit_rows(store, subject_type="session")] == ["session_started",
                                                                                "session_ended"]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda a: a.users.reset_password("bob", "another long passphrase"), EndReason.PASSWORD_CHANGED),
    (lambda a: a.users.set_roles("bob", ["analyst", "manager"]), EndReason.ROLES_CHANGED),
    (lambda a: a.users.disable("bob"), EndReason.ACCOUNT_GONE),
])
def test_a_password_role_or_account_change_ends_every_session_of_the_user(gate: Gate, change,
                                                                           reason) -> None:
    sessions = [signed_in(gate) for _ in range(2)]
    other_sid, other_token = signed_in(gate, "root")
    change(admin(gate))
    for sid, token in sessions:
        assert not gate.sessions.is_live(token)
        with pytest.raises(SessionEnded) as caught:
            gate.sessions.check(sid)
        assert caught.value.details["reason"] == reason
    assert gate.sessions.check(other_sid).principal.username == "root"
    assert gate.sessions.is_live(other_token)


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(gate: Gate) -> None:
    (mine, my_token), (other, other_token) = signed_in(gate), signed_in(gate)
    wb = Workbench(gate.ctx, gate.sessions.check(mine).principal)
    wb.account.change_password(PW, "a brand new passphrase")
    gate.sessions.keep_after_password_change(mine, wb.actor)
    assert gate.sessions.resume(my_token).session_id == mine
    assert not gate.sessions.is_live(other_token)
    with pytest.raises(SessionEnded) as caught:
        gate.sessions.check(other)
    assert caught.value.details["reason"] == EndReason.PASSWORD_CHANGED


def test_tokens_that_are_unknown_empty_or_huge_are_refused(gate: Gate) -> None:
    signed_in(gate)
    for token in ("", "x" * 43, "y" * 10_000):
        assert not gate.sessions.is_live(token)
        with pytest.raises(SessionEnded):
            gate.sessions.resume(token)
    assert gate.sessions.hand_over("z" * 500) is None
