"""Sign-in, sign-out, lockout, first-run set-up, own password and user management."""

from __future__ import annotations

import pytest
from app_support import PASSWORD, app_as, no_exception, page_as, plain, texts

from finflow_core.errors import AuthError
from finflow_core.lending.config import load_config
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate


def sign_in(at, username: str, password: str):  # type: ignore[no-untyped-def]
    at.text_input(key="signin_username").input(username)
    at.text_input(key="signin_password").input(password)
    return at.form_submit_button[0].click().run()


def test_sign_in_with_the_right_password_opens_the_role_s_first_page(inst) -> None:
    at = sign_in(app_as(None), "officer", PASSWORD)
    no_exception(at)
    assert [t.value for t in at.title] == ["Review queue"]
    assert at.session_state["ff_user"].username == "officer"
    # the sidebar names who is signed in, as plain text
    assert [t.value for t in at.sidebar.text] == ["officer", "role: officer"]


def test_sign_in_with_a_wrong_password_is_refused(inst) -> None:
    at = sign_in(app_as(None), "manager", "not-the-password")
    no_exception(at)
    assert [plain(e.value) for e in at.error] == ["wrong username or password"]
    assert [t.value for t in at.title] == ["FinFlow"]
    assert "ff_user" not in at.session_state
    assert not at.metric and not at.dataframe


def test_repeated_failures_lock_the_account_and_say_when_to_retry(inst) -> None:
    inst.wb("admin").users.add("lockme", PASSWORD, ["analyst"])
    at = app_as(None)
    for _ in range(3):
        at = sign_in(at, "lockme", "wrong-password-0")
    # the third failure set a lock: even the right password is refused while it lasts
    at = sign_in(at, "lockme", PASSWORD)
    messages = [plain(e.value) for e in at.error]
    assert len(messages) == 1
    assert messages[0].startswith("too many failed attempts: try again in ")
    assert "ff_user" not in at.session_state


def test_sign_out_returns_to_the_sign_in_form(inst) -> None:
    at = app_as(inst.users["analyst"])
    assert [t.value for t in at.title] == ["Batches"]
    at.sidebar.button(key="sign_out").click().run()
    no_exception(at)
    assert [t.value for t in at.title] == ["FinFlow"]
    assert "ff_user" not in at.session_state
    assert not at.dataframe


def test_first_run_shows_only_the_set_up_and_creates_the_first_admin(fresh_home) -> None:
    store, code = fresh_home
    at = app_as(None)
    no_exception(at)
    assert [t.value for t in at.title] == ["Set up FinFlow"]
    assert not at.sidebar.button and not at.dataframe

    at.text_input(key="setup_code").input("AAAA-BBBB-CCCC")
    at.text_input(key="setup_username").input("boss")
    at.text_input(key="setup_password").input(PASSWORD)
    at.text_input(key="setup_repeat").input(PASSWORD)
    at.form_submit_button[0].click().run()
    assert [plain(e.value) for e in at.error] == ["wrong set-up code: check it and try again"]
    assert not Gate(Context(load_config(), store)).has_users()

    at.text_input(key="setup_code").input(code.lower())
    at.form_submit_button[0].click().run()
    no_exception(at)
    assert Gate(Context(load_config(), store)).has_users()
    assert at.session_state["ff_user"].username == "boss"
    assert [t.value for t in at.title] == ["Users"]
    assert "first administrator" in texts(at)
    # the code is used up: the set-up screen is gone for everybody
    assert [t.value for t in app_as(None).title] == ["FinFlow"]


def test_set_up_refuses_differing_passwords(fresh_home) -> None:
    store, code = fresh_home
    at = app_as(None)
    at.text_input(key="setup_code").input(code)
    at.text_input(key="setup_username").input("boss")
    at.text_input(key="setup_password").input(PASSWORD)
    at.text_input(key="setup_repeat").input(PASSWORD + "x")
    at.form_submit_button[0].click().run()
    assert [plain(e.value) for e in at.error] == ["The two passwords differ."]
    assert not Gate(Context(load_config(), store)).has_users()


def test_a_user_changes_their_own_password(inst) -> None:
    me = inst.wb("admin").users.add("changer", PASSWORD, ["officer"]).principal()
    at = page_as(me, "pages/account.py")
    at.text_input(key="ac_current").input("not-my-password")
    at.text_input(key="ac_new").input("a-brand-new-password")
    at.text_input(key="ac_repeat").input("a-brand-new-password")
    at.form_submit_button[0].click().run()
    assert [plain(e.value) for e in at.error] == ["wrong username or password"]
    at.text_input(key="ac_current").input(PASSWORD)
    at.text_input(key="ac_new").input("a-brand-new-password")
    at.text_input(key="ac_repeat").input("a-brand-new-password")
    at.form_submit_button[0].click().run()
    no_exception(at)
    assert [s.value for s in at.success] == ["Your password was changed."]
    assert inst.gate.authenticate("changer", "a-brand-new-password").username == "changer"
    with pytest.raises(AuthError):
        inst.gate.authenticate("changer", PASSWORD)


def test_admin_adds_a_user_changes_roles_resets_password_and_disables(inst) -> None:
    at = page_as(inst.users["admin"], "pages/users.py")
    no_exception(at)
    assert "officer2" in at.dataframe[0].value["user"].tolist()

    at.text_input(key="us_new_name").input("newbie")
    at.text_input(key="us_new_password").input("short")
    at.multiselect(key="us_new_roles").set_value(["analyst"])
    at.form_submit_button[0].click().run()
    assert "too short" in plain(at.error[0].value)
    assert "newbie" not in [u.username for u in inst.wb("admin").users.list()]

    at.text_input(key="us_new_password").input(PASSWORD)
    at.form_submit_button[0].click().run()
    no_exception(at)
    assert "Added newbie (analyst)." in [s.value for s in at.success]
    assert "newbie" in at.dataframe[0].value["user"].tolist()

    at.selectbox(key="us_pick").set_value("newbie").run()
    at.multiselect(key="us_roles_value_newbie").set_value(["analyst", "manager"])
    next(b for b in at.form_submit_button if b.label == "Save roles").click().run()
    info = {u.username: u for u in inst.wb("admin").users.list()}
    assert info["newbie"].roles == {"analyst", "manager"}

    at.text_input(key="us_reset_newbie").input("reset-password-42")
    next(b for b in at.form_submit_button if b.label == "Reset password").click().run()
    assert inst.gate.authenticate("newbie", "reset-password-42").username == "newbie"

    at.button(key="us_disable").click().run()
    no_exception(at)
    with pytest.raises(AuthError, match="disabled"):
        inst.gate.authenticate("newbie", "reset-password-42")
    at.button(key="us_enable").click().run()
    assert inst.gate.authenticate("newbie", "reset-password-42").username == "newbie"


def test_the_last_admin_cannot_be_disabled_from_the_page(inst) -> None:
    at = page_as(inst.users["admin"], "pages/users.py")
    at.selectbox(key="us_pick").set_value("admin").run()
    at.button(key="us_disable").click().run()
    assert "last active admin" in plain(at.error[0].value)
    assert inst.gate.refresh(inst.users["admin"]).username == "admin"
