"""Users, roles, sign-in throttling, first-admin set-up and permissions."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from trail import audit_rows

from finflow_core.errors import AuthError, Conflict, InvalidInput, NotFound, PermissionDenied
from finflow_core.lending.config import load_config
from finflow_core.security import passwords as auth
from finflow_core.security.password_policy import PasswordPolicyError
from finflow_core.security.passwords import hash_password, needs_rehash, verify_password
from finflow_core.services.access import (
    PERMISSIONS,
    ROLES,
    SYSTEM,
    Principal,
    allowed_roles,
    can,
    require,
)
from finflow_core.services.context import Context
from finflow_core.services.sessions import BAD_CREDENTIALS, Gate, lockout_seconds
from finflow_core.services.users import LastAdminError, UserInfo, check_limit
from finflow_core.services.workbench import Workbench
from finflow_core.store import Store, open_store
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.tables import setup_codes, users

ALICE_PW = "correct horse battery"
BOB_PW = "bob's long passphrase"
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


class FakeClock:
    """A controllable clock: sign-in locks are tested without sleeping."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'finflow.db'}")
    yield s
    s.close()


@pytest.fixture
def any_store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def alice(store: Store, clock: FakeClock) -> Principal:
    return create_first_admin(store, "alice", ALICE_PW, clock=clock)


@pytest.fixture
def bob(store: Store, alice: Principal, clock: FakeClock) -> Principal:
    return add_user(store, alice, "bob", BOB_PW, ["analyst"], clock=clock).principal()


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every password verification sign-in performs."""
    calls: list[str] = []
    real = auth.verify_password

    def counting(password: str, encoded: str) -> bool:
        calls.append(encoded)
        return real(password, encoded)

    monkeypatch.setattr(auth, "verify_password", counting)
    return calls


def user_row(store: Store, name: str) -> Any:
    with store.connect() as conn:
        return conn.execute(select(users).where(users.c.username == name)).one()


def actions(store: Store, **filters: Any) -> list[str]:
    return [e["action"] for e in audit_rows(store, **filters)]


# -- the services, called the way the tests read best -------------------------------------------

def _ctx(store: Store, clock: Any = None) -> Context:
    return Context(load_config(), store, **({"clock": clock} if clock is not None else {}))


def has_users(store: Store) -> bool:
    return Gate(_ctx(store)).has_users()


def authenticate(store: Store, username: str, password: str, *, clock: Any = None) -> Principal:
    return Gate(_ctx(store, clock)).authenticate(username, password)


def refresh_principal(store: Store, principal: Principal) -> Principal:
    return Gate(_ctx(store)).refresh(principal)


def ensure_setup_code(store: Store, *, clock: Any = None) -> str | None:
    return Gate(_ctx(store, clock)).issue_setup_code()


def complete_setup(store: Store, code: str, username: str, password: str, *, clock: Any = None) -> Principal:
    return Gate(_ctx(store, clock)).complete_setup(code, username, password).actor


def create_first_admin(store: Store, username: str, password: str, *, clock: Any = None) -> Principal:
    return Gate(_ctx(store, clock)).create_first_admin(username, password).actor


def _users(store: Store, actor: Principal, clock: Any = None):  # type: ignore[no-untyped-def]
    return Workbench(_ctx(store, clock), actor).users


def add_user(store: Store, actor: Principal | None, username: str, password: str, roles: Any, *,
             clock: Any = None) -> UserInfo:
    if actor is None:  # the local bootstrap: only the first admin
        if "admin" not in (roles.split(",") if isinstance(roles, str) else list(roles)):
            raise InvalidInput("the first user must hold the admin role", field="roles")
        return Workbench(_ctx(store, clock), create_first_admin(store, username, password,
                                                                 clock=clock)).account.me()
    return _users(store, actor, clock).add(username, password, roles)


def set_roles(store: Store, actor: Principal, username: str, roles: Any) -> UserInfo:
    return _users(store, actor).set_roles(username, roles)


def set_password(store: Store, actor: Principal, username: str, new_password: str, *,
                 current_password: str | None = None, clock: Any = None) -> None:
    wb = Workbench(_ctx(store, clock), actor)
    if actor.username == username.strip().lower() and actor.user_id is not None:
        wb.account.change_password(current_password or "", new_password)
    else:
        wb.users.reset_password(username, new_password)


def disable_user(store: Store, actor: Principal, username: str) -> UserInfo:
    return _users(store, actor).disable(username)


def enable_user(store: Store, actor: Principal, username: str) -> UserInfo:
    return _users(store, actor).enable(username)


def list_users(store: Store, actor: Principal) -> list[UserInfo]:
    return _users(store, actor).list()


# -- hashing and policy ---------------------------------------------------------------------

def test_passwords_are_stored_as_salted_scrypt_strings() -> None:
    first, second = hash_password(ALICE_PW), hash_password(ALICE_PW)
    name, n, r, p, salt, digest = first.split("$")
    assert (name, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert first != second  # fresh salt each time
    assert verify_password(ALICE_PW, first) and verify_password(ALICE_PW, second)
    assert not verify_password(ALICE_PW + "x", first)
    assert not needs_rehash(first)
    assert needs_rehash(first.replace("$16384$", "$1024$", 1))


@pytest.mark.parametrize("encoded", [
    "", "plain-text-password", "pbkdf2$1$2$3$4$5", "scrypt$16384$8$1$!!notb64!!$AAAA",
    "scrypt$3$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,  # n not a power of two
    "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,  # absurd cost: refused
])
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert verify_password(ALICE_PW, encoded) is False


def test_short_passwords_are_refused_with_a_clear_message(store: Store) -> None:
    with pytest.raises(PasswordPolicyError, match="at least 10") as caught:
        create_first_admin(store, "alice", "short1234")
    assert caught.value.details == {"field": "password", "min_length": 10}
    with pytest.raises(PasswordPolicyError, match="username"):
        create_first_admin(store, "alice.smith", "Alice.Smith")
    assert not has_users(store)


@pytest.mark.parametrize("name", ["Bad Name!", "x", "system", "anonymous", "-dash", "a" * 65])
def test_invalid_or_reserved_usernames_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        create_first_admin(store, name, ALICE_PW)
    assert caught.value.details["field"] == "username"


def test_roles_are_exactly_the_four_and_unknown_ones_are_refused(
    store: Store, alice: Principal
) -> None:
    assert ROLES == ("analyst", "officer", "manager", "admin")
    with pytest.raises(InvalidInput, match="unknown: superuser"):
        add_user(store, alice, "carol", BOB_PW, ["analyst", "superuser"])
    with pytest.raises(InvalidInput, match="one or more"):
        add_user(store, alice, "carol", BOB_PW, [])


# -- first admin and sign-in ----------------------------------------------------------------

@pytest.mark.parametrize("name,password", [
    ("admin", "admin"), ("admin", "password123"), ("system", ""), ("root", "changeme!!"),
])
def test_with_no_users_nobody_gets_in(any_store: Store, name: str, password: str) -> None:
    assert not has_users(any_store)
    with pytest.raises(AuthError):
        authenticate(any_store, name, password)


def test_first_admin_signs_in_and_usernames_ignore_case(any_store: Store) -> None:
    created = create_first_admin(any_store, "Alice", ALICE_PW)
    assert created.username == "alice" and created.roles == frozenset({"admin"})
    signed_in = authenticate(any_store, "  ALICE ", ALICE_PW)
    assert signed_in == created
    assert actions(any_store) == ["user_created", "login"]
    assert audit_rows(any_store)[0]["actor"] == "system"
    assert verify_audit(any_store).ok


def test_local_bootstrap_works_only_for_the_first_user(store: Store, alice: Principal) -> None:
    with pytest.raises(Conflict, match="already exist"):
        create_first_admin(store, "mallory", "mallory's password")
    with pytest.raises(Conflict):
        add_user(store, None, "mallory", "mallory's password", ["admin"])
    assert [u.username for u in list_users(store, alice)] == ["alice"]


def test_bootstrap_user_must_be_an_admin(store: Store) -> None:
    with pytest.raises(InvalidInput, match="admin role"):
        add_user(store, None, "bob", BOB_PW, ["analyst"])
    assert not has_users(store)


def test_wrong_password_is_refused_counted_and_audited(any_store: Store) -> None:
    create_first_admin(any_store, "alice", ALICE_PW)
    with pytest.raises(AuthError) as caught:
        authenticate(any_store, "alice", "not the password")
    assert caught.value.message == BAD_CREDENTIALS
    assert user_row(any_store, "alice").failed_logins == 1
    failure = audit_rows(any_store, action="login_failed")[0]
    assert (failure["actor"], failure["subject_id"]) == ("alice", "alice")
    assert failure["details"]["reason"] == "wrong_password"
    assert failure["details"]["failures"] == 1


def test_unknown_users_cost_a_hash_and_get_the_same_answer(
    store: Store, alice: Principal, verify_calls: list[str]
) -> None:
    with pytest.raises(AuthError) as caught:
        authenticate(store, "nobody", "some password here")
    assert caught.value.message == BAD_CREDENTIALS
    assert len(verify_calls) == 1 and verify_calls[0].startswith("scrypt$16384$")
    failure = audit_rows(store, action="login_failed")[-1]
    assert (failure["actor"], failure["subject_id"]) == ("anonymous", "nobody")
    assert failure["details"]["reason"] == "unknown_user"


def test_lockout_schedule_grows_and_is_capped() -> None:
    assert [lockout_seconds(n) for n in range(8)] == [0, 0, 0, 1, 2, 4, 8, 16]
    assert lockout_seconds(12) == 512
    assert lockout_seconds(13) == lockout_seconds(10_000) == 900


def test_lockout_refuses_without_checking_the_password_then_expires(
    store: Store, alice: Principal, clock: FakeClock, verify_calls: list[str]
) -> None:
    for _ in range(2):
        with pytest.raises(AuthError, match="wrong username"):
            authenticate(store, "alice", "wrong password!", clock=clock)
    assert user_row(store, "alice").locked_until is None
    with pytest.raises(AuthError, match="wrong username"):  # 3rd failure: locked for 1 s
        authenticate(store, "alice", "wrong password!", clock=clock)
    assert user_row(store, "alice").locked_until == "2025-03-01T09:00:01.000000+00:00"

    clock.advance(0.5)
    verify_calls.clear()
    with pytest.raises(AuthError, match="try again in 1 s") as caught:
        authenticate(store, "alice", ALICE_PW, clock=clock)  # right password, still refused
    assert verify_calls == []
    assert caught.value.details["reason"] == "locked"
    assert caught.value.details["retry_at"] == "2025-03-01T09:00:01.000000+00:00"

    clock.advance(0.6)  # lock over; a 4th failure locks for 2 s
    with pytest.raises(AuthError, match="wrong username"):
        authenticate(store, "alice", "wrong password!", clock=clock)
    row = user_row(store, "alice")
    assert row.failed_logins == 4
    assert row.locked_until == "2025-03-01T09:00:03.100000+00:00"

    clock.advance(2.0)
    assert authenticate(store, "alice", ALICE_PW, clock=clock).username == "alice"
    row = user_row(store, "alice")
    assert (row.failed_logins, row.locked_until) == (0, None)
    assert row.last_login_at == "2025-03-01T09:00:03.100000+00:00"
    assert actions(store, actor="alice") == [
        "login_failed", "login_failed", "login_failed", "login_refused", "login_failed", "login",
    ]


def test_weaker_hashes_are_upgraded_at_sign_in(store: Store, alice: Principal) -> None:
    salt = b"0123456789abcdef"
    weak = hashlib.scrypt(ALICE_PW.encode(), salt=salt, n=2**10, r=8, p=1, dklen=32)
    encoded = f"scrypt$1024$8$1${base64.b64encode(salt).decode()}${base64.b64encode(weak).decode()}"
    with store.begin() as conn:
        conn.execute(update(users).where(users.c.username == "alice").values(password_hash=encoded))
    assert authenticate(store, "alice", ALICE_PW) == alice
    assert user_row(store, "alice").password_hash.startswith("scrypt$16384$8$1$")
    assert authenticate(store, "alice", ALICE_PW) == alice


def test_disabled_users_cannot_sign_in_until_enabled(
    store: Store, alice: Principal, bob: Principal
) -> None:
    disable_user(store, alice, "bob")
    with pytest.raises(AuthError, match="disabled") as caught:
        authenticate(store, "bob", BOB_PW)
    assert caught.value.details["reason"] == "disabled"
    with pytest.raises(AuthError):
        refresh_principal(store, bob)
    enable_user(store, alice, "bob")
    assert authenticate(store, "bob", BOB_PW) == bob
    assert actions(store, subject_id="bob") == [
        "user_created", "user_disabled", "login_refused", "user_enabled", "login",
    ]


# -- permissions ----------------------------------------------------------------------------

PAIRS = [(action, role) for action in sorted(PERMISSIONS) for role in ROLES]


@pytest.mark.parametrize("action,role", PAIRS)
def test_each_role_gets_exactly_the_actions_the_table_grants(action: str, role: str) -> None:
    who = Principal(7, f"a-{role}", frozenset({role}))
    if role in PERMISSIONS[action]:
        require(who, action)
        assert can(who, action)
        return
    with pytest.raises(PermissionDenied) as caught:
        require(who, action)
    assert not can(who, action)
    assert caught.value.details == {
        "action": action, "needed": list(allowed_roles(action)), "user": who.username,
    }


def test_the_permission_table_matches_the_product_rules() -> None:
    expected = {
        "upload_batch": ("analyst",), "train_model": ("analyst",),
        "claim_case": ("officer",), "decide_case": ("officer",),
        "promote_model": ("manager",), "manage_users": ("admin",),
        "view_audit": ("manager", "admin"), "view_queue": ("officer", "manager"),
        "edit_strategy": ("manager",),
    }
    assert {a: allowed_roles(a) for a in expected} == expected
    assert SYSTEM.roles == frozenset({"analyst"}) and SYSTEM.user_id is None
    with pytest.raises(PermissionDenied):
        require(SYSTEM, "manage_users")


def test_unknown_actions_are_refused_not_allowed(alice: Principal) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        require(alice, "launch_rocket")
    assert not can(alice, "launch_rocket")


@pytest.mark.parametrize("role", ["analyst", "officer", "manager"])
def test_user_management_is_for_admins_only(
    store: Store, alice: Principal, clock: FakeClock, role: str
) -> None:
    who = add_user(store, alice, f"{role}1", BOB_PW, [role]).principal()
    attempts: list[Callable[[], object]] = [
        lambda: add_user(store, who, "carol", BOB_PW, ["admin"]),
        lambda: set_roles(store, who, who.username, ["admin"]),
        lambda: set_roles(store, who, "alice", ["analyst"]),
        lambda: disable_user(store, who, "alice"),
        lambda: enable_user(store, who, "alice"),
        lambda: list_users(store, who),
        lambda: set_password(store, who, "alice", "taken over password"),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied, match="manage_users"):
            attempt()
    assert [(u.username, u.roles) for u in list_users(store, alice)] == [
        ("alice", frozenset({"admin"})), (who.username, frozenset({role})),
    ]


def test_last_active_admin_is_protected(store: Store, alice: Principal) -> None:
    with pytest.raises(LastAdminError, match="last active admin"):
        set_roles(store, alice, "alice", ["manager"])
    with pytest.raises(LastAdminError):
        disable_user(store, alice, "alice")
    assert user_row(store, "alice").active and user_row(store, "alice").roles == "admin"

    carol = add_user(store, alice, "carol", BOB_PW, ["admin", "manager"]).principal()
    disable_user(store, alice, "carol")
    with pytest.raises(LastAdminError):  # a disabled admin does not count
        set_roles(store, alice, "alice", ["manager"])
    enable_user(store, alice, "carol")
    assert set_roles(store, alice, "alice", ["manager"]).roles == frozenset({"manager"})
    with pytest.raises(LastAdminError):
        disable_user(store, carol, "carol")


def test_revoked_rights_stop_working_in_an_open_session(store: Store, alice: Principal) -> None:
    carol = add_user(store, alice, "carol", BOB_PW, ["admin"]).principal()
    set_roles(store, carol, "alice", ["manager"])
    with pytest.raises(PermissionDenied):  # alice's Principal still says admin
        add_user(store, alice, "dave", BOB_PW, ["analyst"])
    assert refresh_principal(store, alice).roles == frozenset({"manager"})
    disable_user(store, carol, "alice")
    with pytest.raises(AuthError, match="sign in again"):
        refresh_principal(store, alice)
    assert refresh_principal(store, SYSTEM) is SYSTEM


def test_user_list_never_carries_hashes(store: Store, alice: Principal, bob: Principal) -> None:
    listed = list_users(store, alice)
    assert [u.username for u in listed] == ["alice", "bob"]
    assert "password_hash" not in {f.name for f in fields(listed[0])}
    assert not any("scrypt" in str(v) for u in listed for v in vars(u).values())


def test_usernames_are_unique_regardless_of_case(store: Store, alice: Principal) -> None:
    add_user(store, alice, "bob", BOB_PW, "analyst,officer")
    with pytest.raises(Conflict, match="taken"):
        add_user(store, alice, "BOB", BOB_PW, ["analyst"])
    with pytest.raises(NotFound, match="no user"):
        set_roles(store, alice, "nobody", ["analyst"])


def test_passwords_change_by_self_with_the_old_one_or_by_an_admin(
    store: Store, alice: Principal, bob: Principal, clock: FakeClock
) -> None:
    with pytest.raises(InvalidInput, match="current password"):
        set_password(store, bob, "bob", "bob's brand new secret")
    with pytest.raises(AuthError):
        set_password(store, bob, "bob", "bob's brand new secret", current_password="guess123456")
    set_password(store, bob, "bob", "bob's brand new secret", current_password=BOB_PW)
    assert authenticate(store, "bob", "bob's brand new secret") == bob
    with pytest.raises(AuthError):
        authenticate(store, "bob", BOB_PW)
    with pytest.raises(PermissionDenied):
        set_password(store, bob, "alice", "bob owns alice now")
    with pytest.raises(PasswordPolicyError):
        set_password(store, alice, "bob", "short")

    for _ in range(3):  # lock bob out; an admin reset clears the lock
        with pytest.raises(AuthError):
            authenticate(store, "bob", "wrong password!", clock=clock)
    assert user_row(store, "bob").locked_until is not None
    set_password(store, alice, "bob", "reset by the admin", clock=clock)
    assert authenticate(store, "bob", "reset by the admin", clock=clock) == bob
    changes = audit_rows(store, action="password_changed")
    assert [(c["actor"], c["details"]["by"]) for c in changes] == [("bob", "self"), ("alice", "admin")]
    assert "reset by the admin" not in str(audit_rows(store))


# -- one-time set-up code -------------------------------------------------------------------

def test_setup_code_creates_the_first_admin_once(any_store: Store) -> None:
    code = ensure_setup_code(any_store)
    assert code is not None and re.fullmatch(r"[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}", code)
    with any_store.connect() as conn:
        stored = conn.execute(select(setup_codes)).one()
    assert stored.code_hash.startswith("scrypt$") and code.replace("-", "") not in str(stored)

    with pytest.raises(AuthError, match="wrong set-up code"):
        complete_setup(any_store, "AAAA-BBBB-CCCC", "alice", ALICE_PW)
    assert not has_users(any_store)

    admin = complete_setup(any_store, code.lower().replace("-", " "), "alice", ALICE_PW)
    assert admin.roles == frozenset({"admin"})
    assert authenticate(any_store, "alice", ALICE_PW) == admin
    with pytest.raises(AuthError, match="already set up"):
        complete_setup(any_store, code, "mallory", "mallory's password")
    assert ensure_setup_code(any_store) is None
    assert actions(any_store) == [
        "setup_code_issued", "setup_code_rejected", "setup_code_used", "user_created", "login",
    ]
    assert verify_audit(any_store).ok


def test_a_new_setup_code_replaces_the_old_one(store: Store) -> None:
    old, new = ensure_setup_code(store), ensure_setup_code(store)
    assert old is not None and new is not None and old != new
    with pytest.raises(AuthError, match="wrong set-up code"):
        complete_setup(store, old, "alice", ALICE_PW)
    assert complete_setup(store, new, "alice", ALICE_PW).username == "alice"


def test_setup_codes_expire_after_a_day(store: Store, clock: FakeClock) -> None:
    code = ensure_setup_code(store, clock=clock)
    assert code is not None
    clock.advance(24 * 3600 + 1)
    with pytest.raises(AuthError, match="no valid set-up code"):
        complete_setup(store, code, "alice", ALICE_PW, clock=clock)


def test_setup_code_guesses_are_throttled_then_burn_the_code(
    store: Store, clock: FakeClock
) -> None:
    code = ensure_setup_code(store, clock=clock)
    assert code is not None
    for _ in range(3):
        with pytest.raises(AuthError, match="wrong set-up code"):
            complete_setup(store, "AAAA-AAAA-AAAA", "alice", ALICE_PW, clock=clock)
    with pytest.raises(AuthError, match="try again") as caught:
        complete_setup(store, code, "alice", ALICE_PW, clock=clock)
    assert caught.value.details["reason"] == "locked"
    for _ in range(7):  # 10 wrong codes in all, waiting out each lock
        clock.advance(1000)
        with pytest.raises(AuthError, match="wrong set-up code"):
            complete_setup(store, "AAAA-AAAA-AAAA", "alice", ALICE_PW, clock=clock)
    clock.advance(1000)
    with pytest.raises(AuthError, match="no valid set-up code"):
        complete_setup(store, code, "alice", ALICE_PW, clock=clock)
    assert not has_users(store)
    assert audit_rows(store, action="setup_code_rejected")[-1]["details"] == {
        "code_invalidated": True, "failures": 10,
    }


def test_creating_the_first_admin_locally_voids_a_pending_code(store: Store) -> None:
    code = ensure_setup_code(store)
    assert code is not None
    create_first_admin(store, "alice", ALICE_PW)
    with pytest.raises(AuthError, match="already set up"):
        complete_setup(store, code, "mallory", "mallory's password")
    with store.connect() as conn:
        assert conn.execute(select(setup_codes)).all() == []


@pytest.mark.parametrize("typed", ["1e309", "nan", "inf", "-inf"])
def test_a_lending_limit_that_is_no_amount_is_named_so_not_negative(typed: str) -> None:
    """float() reads these; the message said "must be zero or more" for 1e309 and nan."""
    with pytest.raises(InvalidInput, match="is an amount such as 250000"):
        check_limit(typed)
    with pytest.raises(InvalidInput, match="must be zero or more"):
        check_limit("-5")
    assert check_limit("250,000") == 250_000 and check_limit(" none ") is None
