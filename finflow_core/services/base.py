"""What every use-case service shares: the workbench it serves and the permission check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finflow_core.services.access import Action, require

if TYPE_CHECKING:
    from finflow_core.services.workbench import Workbench


class Service:
    """Base of the use-case services: the workbench's context and principal at hand."""

    def __init__(self, workbench: Workbench) -> None:
        self.wb = workbench
        self.ctx = workbench.context
        self.actor = workbench.actor

    def require(self, action: Action | str) -> None:
        require(self.actor, action)
