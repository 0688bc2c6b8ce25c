"""Users: an admin adds users, changes roles, disables or enables them and resets passwords."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.MANAGE_USERS)

import pandas as pd  # noqa: E402

from finflow_app.fmt import Formatter, md  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.lending.terms import ROLES  # noqa: E402
from finflow_core.security.password_policy import MIN_PASSWORD_LENGTH  # noqa: E402

ROLE_HELP = {"analyst": "uploads batches, trains models", "officer": "works the review queue",
             "manager": "portfolio, strategy, promotion, audit", "admin": "users, audit"}

cfg = wb.context.config
f = Formatter(cfg.economics.currency, cfg.display.timezone)
ADD_KEYS = {"us_new_name": "", "us_new_password": "", "us_new_roles": []}


def limit_text(limit: float | None) -> str:
    return "no limit" if limit is None else f.money(limit)


def add_user() -> None:
    """The form's submit callback: add the user, then empty the form for the next one (a
    callback runs before the widgets are drawn, so it may reset them); on a refusal the
    form keeps what was typed."""
    state_ = st.session_state
    try:
        info = wb.users.add(state_.get("us_new_name", ""), state_.get("us_new_password", ""),
                            state_.get("us_new_roles", []))
    except FinFlowError as exc:
        state_["us_add_error"] = exc.message
        return
    for key, empty in ADD_KEYS.items():
        state_[key] = type(empty)()
    state.notify(f"Added {md(info.username)} ({', '.join(sorted(info.roles))}).")


st.title("Users")
people = wb.users.list()
st.dataframe(pd.DataFrame([
    {"user": u.username, "roles": ", ".join(sorted(u.roles)), "active": "yes" if u.active else "no",
     "lending limit": limit_text(u.lending_limit) if "officer" in u.roles else "",
     "last sign-in": f.when(u.last_login_at), "failed sign-ins": u.failed_logins,
     "locked until": f.when(u.locked_until) if u.locked_until else "", "created": f.when(u.created_at),
     "created by": f.text(u.created_by)}
    for u in people
]), hide_index=True, key="us_table")

st.subheader("Add a user")
with st.form("us_add", enter_to_submit=False, clear_on_submit=False):
    c = st.columns(3)
    c[0].text_input("Username", key="us_new_name")
    c[1].text_input("Initial password", type="password", key="us_new_password",
                    help=f"At least {MIN_PASSWORD_LENGTH} characters; tell the user to "
                         "change it on My account.")
    c[2].multiselect("Roles", list(ROLES), key="us_new_roles",
                     format_func=lambda r: f"{r} ({ROLE_HELP[r]})")
    st.form_submit_button("Add user", type="primary", on_click=add_user)
if "us_add_error" in st.session_state:
    st.error(md(st.session_state.pop("us_add_error")))  # it quotes what was typed

st.subheader("Change a user")
names = [u.username for u in people]
chosen = st.selectbox("User", names, key="us_pick")
target = next(u for u in people if u.username == chosen)
st.caption(f"{md(target.username)}: {'active' if target.active else 'disabled'}; roles "
           f"{', '.join(sorted(target.roles))}.")
left, right = st.columns(2)
with left, st.form(f"us_roles_{chosen}", enter_to_submit=False):
    roles = st.multiselect("Roles", list(ROLES), default=sorted(target.roles), key=f"us_roles_value_{chosen}")
    set_roles = st.form_submit_button("Save roles")
with right, st.form(f"us_password_{chosen}", enter_to_submit=False):
    reset = st.text_input("New password", type="password", key=f"us_reset_{chosen}")
    do_reset = st.form_submit_button("Reset password")
with st.form(f"us_limit_form_{chosen}", enter_to_submit=False):
    typed = st.text_input(
        f"Lending limit ({md(cfg.economics.currency)})", key=f"us_limit_{chosen}",
        value="" if target.lending_limit is None else f"{target.lending_limit:,.0f}",
        help="The loan amount this officer may approve alone; above it a second officer whose "
             "limit covers the amount must confirm. Empty: no limit of their own.")
    set_limit = st.form_submit_button("Save limit")
if set_limit:
    try:
        changed = wb.users.set_limit(chosen, typed)
    except FinFlowError as exc:
        state.error(exc)
    else:
        state.notify(f"{md(chosen)} has no limit of their own." if changed.lending_limit is None
                     else f"{md(chosen)} may now approve up to {md(f.money(changed.lending_limit))} alone.")
        st.rerun()
if set_roles:
    state.act(lambda: wb.users.set_roles(chosen, roles),
              f"{md(chosen)} now holds {', '.join(sorted(roles))}.")
if do_reset:
    state.act(lambda: wb.users.reset_password(chosen, reset),
              f"Password of {md(chosen)} reset (and any sign-in lock cleared).")
if target.active:
    if st.button(f"Disable {md(chosen)}", key="us_disable", icon=":material/block:"):
        state.act(lambda: wb.users.disable(chosen),
                  f"{md(chosen)} is disabled: their open sessions end at their next click.")
elif st.button(f"Enable {md(chosen)}", key="us_enable", icon=":material/check_circle:"):
    state.act(lambda: wb.users.enable(chosen),
              f"{md(chosen)} is enabled.")
if target.active and target.locked_until and st.button(f"Clear {md(chosen)}'s sign-in lock", key="us_unlock"):
    state.act(lambda: wb.users.enable(chosen),
              f"Sign-in lock of {md(chosen)} cleared.")
