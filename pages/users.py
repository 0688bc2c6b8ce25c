"""Users: an admin adds users, changes roles, disables or enables them and resets passwords."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.MANAGE_USERS)

import pandas as pd  # noqa: E402

from finflow_app.fmt import when  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.lending.terms import ROLES  # noqa: E402
from finflow_core.security.password_policy import MIN_PASSWORD_LENGTH  # noqa: E402

ROLE_HELP = {"analyst": "uploads batches, trains models", "officer": "works the review queue",
             "manager": "portfolio, strategy, promotion, audit", "admin": "users, audit"}

st.title("Users")
people = wb.users.list()
st.dataframe(pd.DataFrame([
    {"user": u.username, "roles": ", ".join(sorted(u.roles)), "active": u.active,
     "last sign-in": when(u.last_login_at), "failed sign-ins": u.failed_logins,
     "locked until": when(u.locked_until) if u.locked_until else "", "created": when(u.created_at),
     "created by": u.created_by}
    for u in people
]), hide_index=True, key="us_table")

st.subheader("Add a user")
with st.form("us_add", enter_to_submit=False, clear_on_submit=False):
    c = st.columns(3)
    new_name = c[0].text_input("Username", key="us_new_name")
    new_password = c[1].text_input("Initial password", type="password", key="us_new_password",
                                   help=f"At least {MIN_PASSWORD_LENGTH} characters; tell the user to "
                                        "change it on My account.")
    new_roles = c[2].multiselect("Roles", list(ROLES), key="us_new_roles",
                                 format_func=lambda r: f"{r} ({ROLE_HELP[r]})")
    add = st.form_submit_button("Add user", type="primary")
if add:
    try:
        info = wb.users.add(new_name, new_password, new_roles)
    except FinFlowError as exc:
        state.error(exc)
    else:
        state.notify(f"Added {info.username} ({', '.join(sorted(info.roles))}).")
        st.rerun()

st.subheader("Change a user")
names = [u.username for u in people]
chosen = st.selectbox("User", names, key="us_pick")
target = next(u for u in people if u.username == chosen)
st.caption(f"{target.username}: {'active' if target.active else 'disabled'}; roles "
           f"{', '.join(sorted(target.roles))}.")
left, right = st.columns(2)
with left, st.form(f"us_roles_{chosen}", enter_to_submit=False):
    roles = st.multiselect("Roles", list(ROLES), default=sorted(target.roles), key=f"us_roles_value_{chosen}")
    set_roles = st.form_submit_button("Save roles")
with right, st.form(f"us_password_{chosen}", enter_to_submit=False):
    reset = st.text_input("New password", type="password", key=f"us_reset_{chosen}")
    do_reset = st.form_submit_button("Reset password")
if set_roles:
    state.act(lambda: wb.users.set_roles(chosen, roles),
              f"{chosen} now holds {', '.join(sorted(roles))}.")
if do_reset:
    state.act(lambda: wb.users.reset_password(chosen, reset),
              f"Password of {chosen} reset (and any sign-in lock cleared).")
if target.active:
    if st.button(f"Disable {chosen}", key="us_disable", icon=":material/block:"):
        state.act(lambda: wb.users.disable(chosen),
                  f"{chosen} is disabled: their open sessions end at their next click.")
elif st.button(f"Enable {chosen}", key="us_enable", icon=":material/check_circle:"):
    state.act(lambda: wb.users.enable(chosen),
              f"{chosen} is enabled.")
if target.active and target.locked_until and st.button(f"Clear {chosen}'s sign-in lock", key="us_unlock"):
    state.act(lambda: wb.users.enable(chosen),
              f"Sign-in lock of {chosen} cleared.")
