"""Sessions that survive a reload, end when they should, and the same lockout for every name.

A "reload" is a new AppTest (new session state, as a browser reload gets) whose browser
sends the session cookie: ``state.browser_token`` is what reads ``st.context.cookies``.
The cookie itself comes from the hand-over route, called here as the page's image would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from app_support import PASSWORD, ROOT, app_as, new_app, no_exception, plain, texts
from sqlalchemy import update

from finflow_app import state
from finflow_core.store.tables import iso_utc, parse_utc, utcnow, web_sessions


def sign_in(at, username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    at.text_input(key="signin_username").input(username)
    at.text_input(key="signin_password").input(password)
    return at.form_submit_button[0].click().run()


def with_cookie(monkeypatch: pytest.MonkeyPatch, token: str | None):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(state, "browser_token", lambda: token)
    return new_app().run()


def fetch_cookie(inst, at) -> str:  # type: ignore[no-untyped-def]
    """What the browser does with the image sign-in draws: swap its code for the token."""
    images = [m.value for m in at.sidebar.markdown if m.value.startswith('<img src="/finflow/session?code=')]
    assert len(images) == 1, [m.value for m in at.sidebar.markdown]
    code = images[0].split("code=", 1)[1].split('"', 1)[0]
    assert code == at.session_state["ff_handoff"]
    token = inst.gate.sessions.hand_over(code)
    assert token is not None
    return token.token


def test_a_reload_keeps_the_user_signed_in_on_the_same_page(inst, monkeypatch) -> None:
    at = sign_in(app_as(None), "analyst")
    assert [t.value for t in at.title] == ["Batches"]
    token = fetch_cookie(inst, at)
    at.run()  # the browser has its cookie: no more image
    assert not [m for m in at.sidebar.markdown if "finflow/session" in m.value]

    again = with_cookie(monkeypatch, token)  # the reload: empty session state, the cookie sent
    no_exception(again)
    assert again.session_state["ff_user"].username == "analyst"
    assert [t.value for t in again.title] == ["Batches"]
    again.switch_page("pages/drift.py").run()
    assert [t.value for t in again.title] == ["Drift"]


def test_without_the_cookie_a_new_tab_shows_the_sign_in_form(inst, monkeypatch) -> None:
    at = with_cookie(monkeypatch, None)
    assert [t.value for t in at.title] == ["FinFlow"] and "ff_user" not in at.session_state
    at = with_cookie(monkeypatch, "a-token-nobody-was-given")
    assert [t.value for t in at.title] == ["FinFlow"] and "ff_user" not in at.session_state
    assert not at.warning  # an unknown cookie is no reason to warn anybody


def test_sign_out_ends_the_session_for_every_tab_and_clears_the_cookie(inst, monkeypatch) -> None:
    at = sign_in(app_as(None), "manager")
    token = fetch_cookie(inst, at)
    other_tab = with_cookie(monkeypatch, token)
    assert other_tab.session_state["ff_user"].username == "manager"
    at.sidebar.button(key="sign_out").click().run()
    no_exception(at)
    assert [t.value for t in at.title] == ["FinFlow"]
    assert '<img src="/finflow/session/end" alt="" width="1" height="1">' in [
        m.value for m in at.sidebar.markdown]
    assert not inst.gate.sessions.is_live(token)
    other_tab.run()  # the other tab's next click
    assert [t.value for t in other_tab.title] == ["FinFlow"]
    assert with_cookie(monkeypatch, token).session_state.get("ff_user") is None


def age_session(inst, session_id: int, minutes: float) -> None:  # type: ignore[no-untyped-def]
    with inst.store.begin() as conn:
        conn.execute(update(web_sessions).where(web_sessions.c.id == session_id)
                     .values(last_seen_at=iso_utc(utcnow() - timedelta(minutes=minutes))))


def test_an_idle_session_signs_out_with_the_reason(inst) -> None:
    at = sign_in(app_as(None), "analyst")
    sid = at.session_state["ff_session"]
    age_session(inst, sid, 29)
    at.run()
    assert [t.value for t in at.title] == ["Batches"]  # 29 minutes: still signed in
    age_session(inst, sid, 31)
    at.run()
    no_exception(at)
    assert [t.value for t in at.title] == ["FinFlow"]
    assert [plain(w.value) for w in at.warning] == [
        "You were signed out after 30 minutes without activity: sign in again."]


def test_an_admin_resetting_the_password_signs_the_user_out(inst) -> None:
    inst.wb("admin").users.add("resetme", PASSWORD, ["analyst"])
    at = sign_in(app_as(None), "resetme")
    assert [t.value for t in at.title] == ["Batches"]
    inst.wb("admin").users.reset_password("resetme", "a-reset-by-the-admin")
    at.run()
    assert [t.value for t in at.title] == ["FinFlow"]
    assert "your password was changed" in texts(at)


def test_changing_ones_own_password_keeps_this_tab_and_ends_the_others(inst, monkeypatch) -> None:
    inst.wb("admin").users.add("mover", PASSWORD, ["officer"])
    other = sign_in(app_as(None), "mover")
    other_token = fetch_cookie(inst, other)
    at = sign_in(app_as(None), "mover")
    at.switch_page("pages/account.py").run()
    at.text_input(key="ac_current").input(PASSWORD)
    at.text_input(key="ac_new").input("moving-to-a-new-phrase")
    at.text_input(key="ac_repeat").input("moving-to-a-new-phrase")
    at.form_submit_button[0].click().run()
    no_exception(at)
    assert [s.value for s in at.success] == ["Your password was changed."]
    at.run()
    assert [t.value for t in at.title] == ["My account"]  # still signed in here
    assert not inst.gate.sessions.is_live(other_token)
    other.run()
    assert [t.value for t in other.title] == ["FinFlow"]
    assert inst.gate.authenticate("mover", "moving-to-a-new-phrase").username == "mover"


@pytest.mark.parametrize("name", ["lock-known", "lock-nobody"])
def test_unknown_and_known_names_lock_out_the_same_way(inst, name: str) -> None:
    if name == "lock-known":
        inst.wb("admin").users.add(name, PASSWORD, ["analyst"])
    at = app_as(None)
    messages = []
    for _ in range(4):
        at = sign_in(at, name, "wrong-password-9")
        messages.append([plain(e.value) for e in at.error])
    assert messages[:3] == [["wrong username or password"]] * 3
    assert len(messages[3]) == 1 and messages[3][0].startswith("too many failed attempts: try again in ")


def test_the_cli_changes_ones_own_password_with_the_sign_in_password(inst) -> None:
    inst.wb("admin").users.add("clichanger", PASSWORD, ["analyst"])
    env = {**os.environ, **inst.env, "PYTHONPATH": str(ROOT), "FINFLOW_USER": "clichanger",
           "FINFLOW_PASSWORD": PASSWORD, "FINFLOW_NEW_PASSWORD": "changed-from-the-cli"}
    done = subprocess.run([sys.executable, "-m", "finflow_core.cli", "users", "passwd", "clichanger"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "password of clichanger changed" in done.stdout
    assert inst.gate.authenticate("clichanger", "changed-from-the-cli").username == "clichanger"
    env["FINFLOW_PASSWORD"] = "not-the-password"  # and with a wrong sign-in password: refused
    done = subprocess.run([sys.executable, "-m", "finflow_core.cli", "users", "passwd", "clichanger"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 7 and "wrong username or password" in done.stderr


def test_session_rows_hold_no_name_and_no_token(inst) -> None:
    at = sign_in(app_as(None), "officer2")
    token = fetch_cookie(inst, at)
    from sqlalchemy import select

    with inst.store.connect() as conn:
        row = conn.execute(select(web_sessions).where(web_sessions.c.id == at.session_state["ff_session"])).one()
    cells = [str(v) for v in row]
    assert token not in cells and "officer2" not in cells
    assert parse_utc(row.expires_at) - parse_utc(row.created_at) == timedelta(hours=12)
