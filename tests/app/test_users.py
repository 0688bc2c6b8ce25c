"""The Users page: adding users one after another, and lending limits."""

from __future__ import annotations

from app_support import PASSWORD, no_exception, page_as, table_with


def _add(at, name: str, role: str):  # type: ignore[no-untyped-def]
    """Fill the add-user form as a person does (typing, ticking one more role) and submit."""
    at.text_input(key="us_new_name").input(name)
    at.text_input(key="us_new_password").input(PASSWORD)
    at.multiselect(key="us_new_roles").select(role)
    return next(b for b in at.form_submit_button if b.label == "Add user").click().run()


def test_adding_two_users_in_a_row_gives_each_only_their_own_roles(inst) -> None:
    at = page_as(inst.users["admin"], "pages/users.py")
    no_exception(at)
    at = _add(at, "mona.manager", "manager")
    no_exception(at)
    assert "Added mona.manager (manager)." in [s.value for s in at.success]
    # the form is empty again: no name, no password, no roles carried over
    assert at.text_input(key="us_new_name").value == ""
    assert at.text_input(key="us_new_password").value == ""
    assert at.multiselect(key="us_new_roles").value == []

    at = _add(at, "otto.officer", "officer")
    no_exception(at)
    roles = {u.username: u.roles for u in inst.wb("admin").users.list()}
    assert roles["mona.manager"] == {"manager"}
    assert roles["otto.officer"] == {"officer"}  # not "manager, officer"
    assert "Added otto.officer (officer)." in [s.value for s in at.success]


def test_a_failed_add_keeps_what_was_typed(inst) -> None:
    at = page_as(inst.users["admin"], "pages/users.py")
    at.text_input(key="us_new_name").input("kept.name")
    at.text_input(key="us_new_password").input("short")
    at.multiselect(key="us_new_roles").set_value(["analyst"])
    at = next(b for b in at.form_submit_button if b.label == "Add user").click().run()
    assert "too short" in at.error[0].value
    assert at.text_input(key="us_new_name").value == "kept.name"
    assert at.multiselect(key="us_new_roles").value == ["analyst"]


def test_an_admin_sets_an_officers_lending_limit(inst) -> None:
    at = page_as(inst.users["admin"], "pages/users.py")
    at.selectbox(key="us_pick").set_value("officer2").run()
    at.text_input(key="us_limit_officer2").input("125,000")
    at = next(b for b in at.form_submit_button if b.label == "Save limit").click().run()
    no_exception(at)
    limits = {u.username: u.lending_limit for u in inst.wb("admin").users.list()}
    assert limits["officer2"] == 125_000
    assert "officer2 may now approve up to USD 125,000 alone." in [s.value for s in at.success]
    row = table_with(at, "user").set_index("user").loc["officer2"]
    assert row["lending limit"] == "USD 125,000"
    assert table_with(at, "user").set_index("user").loc["officer"]["lending limit"] == "no limit"
    at.text_input(key="us_limit_officer2").input("lots")
    at = next(b for b in at.form_submit_button if b.label == "Save limit").click().run()
    assert "a lending limit is an amount" in at.error[0].value
    at.text_input(key="us_limit_officer2").input("")
    at = next(b for b in at.form_submit_button if b.label == "Save limit").click().run()
    assert {u.username: u.lending_limit for u in inst.wb("admin").users.list()}["officer2"] is None
