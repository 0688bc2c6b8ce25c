"""Access control: who is acting, and which roles may perform each action.

Every service method names its :class:`Action` and calls :func:`require` before it reads
or writes, so a page, a command or a script gets the same answer. A user may hold several
roles; an action that is not in :data:`PERMISSIONS` is a programming error and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from finflow_core.errors import PermissionDenied
from finflow_core.lending.terms import ROLES, Role

__all__ = ["ROLES", "Action", "Principal", "Role", "allowed_roles", "can", "require"]


@dataclass(frozen=True)
class Principal:
    """Who is acting: a signed-in user, or :data:`SYSTEM` for local bootstrap jobs."""

    user_id: int | None
    username: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        return role in self.roles


#: The local bootstrap actor (the demo set-up training the first model, storing samples).
SYSTEM = Principal(user_id=None, username="system", roles=frozenset({Role.ANALYST}))


class Action(StrEnum):
    UPLOAD_BATCH = "upload_batch"
    VOID_BATCH = "void_batch"
    VIEW_BATCHES = "view_batches"
    TRAIN_MODEL = "train_model"
    REGISTER_MODEL = "register_model"
    VIEW_MODELS = "view_models"
    PROMOTE_MODEL = "promote_model"
    EDIT_STRATEGY = "edit_strategy"
    VIEW_QUEUE = "view_queue"
    CLAIM_CASE = "claim_case"
    DECIDE_CASE = "decide_case"
    SUBMIT_APPLICATION = "submit_application"
    VIEW_PORTFOLIO = "view_portfolio"
    VIEW_DRIFT = "view_drift"
    VIEW_AUDIT = "view_audit"
    MANAGE_USERS = "manage_users"
    LOAD_OUTCOMES = "load_outcomes"
    VIEW_PERFORMANCE = "view_performance"
    MANAGE_EXPERIMENTS = "manage_experiments"
    BACKUP_STORE = "backup_store"


_A, _O, _M, _D = Role.ANALYST, Role.OFFICER, Role.MANAGER, Role.ADMIN
PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.UPLOAD_BATCH: frozenset({_A}),
    Action.VOID_BATCH: frozenset({_M}),
    Action.VIEW_BATCHES: frozenset({_A, _M}),
    Action.TRAIN_MODEL: frozenset({_A}),
    Action.REGISTER_MODEL: frozenset({_A}),
    Action.VIEW_MODELS: frozenset({_A, _M}),
    Action.PROMOTE_MODEL: frozenset({_M}),
    Action.EDIT_STRATEGY: frozenset({_M}),
    Action.VIEW_QUEUE: frozenset({_O, _M}),
    Action.CLAIM_CASE: frozenset({_O}),
    Action.DECIDE_CASE: frozenset({_O}),
    Action.SUBMIT_APPLICATION: frozenset({_O}),
    Action.VIEW_PORTFOLIO: frozenset({_M}),
    Action.VIEW_DRIFT: frozenset({_A, _M}),
    Action.VIEW_AUDIT: frozenset({_D, _M}),
    Action.MANAGE_USERS: frozenset({_D}),
    Action.LOAD_OUTCOMES: frozenset({_A}),
    Action.VIEW_PERFORMANCE: frozenset({_A, _M}),
    Action.MANAGE_EXPERIMENTS: frozenset({_M}),
    Action.BACKUP_STORE: frozenset({_D}),
}


def allowed_roles(action: str) -> tuple[Role, ...]:
    """The roles that may perform ``action``, in :data:`ROLES` order."""
    try:
        roles = PERMISSIONS[Action(action)]
    except ValueError:
        raise ValueError(
            f"unknown action {action!r}: add it to finflow_core.services.access.Action"
        ) from None
    return tuple(r for r in ROLES if r in roles)


def can(principal: Principal, action: str) -> bool:
    """Whether ``principal`` holds a role that allows ``action`` (never for an unknown action)."""
    try:
        return bool(principal.roles & set(allowed_roles(action)))
    except ValueError:
        return False


def require(principal: Principal, action: str) -> None:
    """Raise :class:`~finflow_core.errors.PermissionDenied` unless ``principal`` may ``action``."""
    needed = allowed_roles(action)
    if not principal.roles & set(needed):
        raise PermissionDenied(str(action), tuple(str(r) for r in needed), principal.username)
