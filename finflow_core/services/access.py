"""Who may do what: one table mapping each action to the roles allowed to perform it.

Roles:

* ``analyst`` — uploads application batches, trains models;
* ``officer`` — works the manual-review queue;
* ``manager`` — portfolio view, approves a model promotion, edits the decision strategy;
* ``admin``   — manages users.

A user may hold several roles. Other modules add their actions with :func:`register_action`
(or by extending :data:`PERMISSIONS` here); checking an action that is not in the table is
a programming error and is refused, never allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from finflow_core.errors import PermissionDenied

if TYPE_CHECKING:
    from finflow_core.services.auth import Principal

ROLES: tuple[str, ...] = ("analyst", "officer", "manager", "admin")

PERMISSIONS: dict[str, frozenset[str]] = {
    "upload_batch": frozenset({"analyst"}),
    "train_model": frozenset({"analyst"}),
    "register_model": frozenset({"analyst"}),
    "claim_case": frozenset({"officer"}),
    "decide_case": frozenset({"officer"}),
    "view_queue": frozenset({"officer", "manager"}),
    "promote_model": frozenset({"manager"}),
    "view_portfolio": frozenset({"manager"}),
    "edit_strategy": frozenset({"manager"}),
    "view_audit": frozenset({"admin", "manager"}),
    "manage_users": frozenset({"admin"}),
    "view_batches": frozenset({"analyst", "manager"}),
    "view_models": frozenset({"analyst", "manager"}),
    "view_drift": frozenset({"analyst", "manager"}),
    "submit_application": frozenset({"officer"}),
}


def register_action(action: str, roles: Iterable[str]) -> None:
    """Add an action to the table; re-registering with the same roles is a no-op."""
    wanted = frozenset(roles)
    unknown = wanted - set(ROLES)
    if not wanted or unknown:
        raise ValueError(
            f"action {action!r} needs at least one role out of {', '.join(ROLES)}"
            + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
        )
    existing = PERMISSIONS.get(action)
    if existing is not None and existing != wanted:
        raise ValueError(
            f"action {action!r} is already allowed for {', '.join(sorted(existing))}: "
            "change finflow_core/permissions.py instead of redefining it"
        )
    PERMISSIONS[action] = wanted


def allowed_roles(action: str) -> tuple[str, ...]:
    """The roles that may perform ``action``, in :data:`ROLES` order."""
    try:
        roles = PERMISSIONS[action]
    except KeyError:
        raise ValueError(
            f"unknown action {action!r}: add it to finflow_core.services.access.PERMISSIONS"
        ) from None
    return tuple(r for r in ROLES if r in roles)


def can(principal: Principal, action: str) -> bool:
    """Whether ``principal`` holds a role that allows ``action``."""
    return bool(principal.roles & PERMISSIONS.get(action, frozenset()))


def require(principal: Principal, action: str) -> None:
    """Raise :class:`~finflow_core.errors.PermissionDenied` unless ``principal`` may ``action``."""
    needed = allowed_roles(action)
    if not principal.roles & set(needed):
        raise PermissionDenied(action, needed, principal.username)
