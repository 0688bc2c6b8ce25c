"""The one use-case API: everything a screen, a command or a script does goes through here.

A :class:`Workbench` is one principal's view of one installation. Its services check the
principal's permission on every read and write (:mod:`finflow_core.services.access`),
return typed results and take their time from the context's clock. Nobody signed in yet?
Start at :class:`finflow_core.services.sessions.Gate`, which hands out workbenches.

    wb = Gate(context).sign_in("ann", password)
    preview = wb.batches.preview("week.csv")
    summary = wb.batches.commit(preview)
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from finflow_core.services.access import Action, Principal, can, require
from finflow_core.services.context import Context

if TYPE_CHECKING:  # the services import the scoring stack: load each on first use
    from finflow_core.services.applications import ApplicationService
    from finflow_core.services.audit import AuditService
    from finflow_core.services.batches import BatchService
    from finflow_core.services.experiments import ExperimentService
    from finflow_core.services.letters import LetterService
    from finflow_core.services.maintenance import MaintenanceService
    from finflow_core.services.models import ModelService
    from finflow_core.services.monitoring import DriftService
    from finflow_core.services.outcomes import OutcomeService
    from finflow_core.services.performance import PerformanceService
    from finflow_core.services.portfolio import PortfolioService
    from finflow_core.services.review import ReviewService
    from finflow_core.services.users import AccountService, UserService


class Workbench:
    """A principal's services over one installation."""

    def __init__(self, context: Context, actor: Principal) -> None:
        self.context = context
        self.actor = actor

    # -- access ----------------------------------------------------------------------------
    def can(self, action: Action | str) -> bool:
        return can(self.actor, action)

    def require(self, action: Action | str) -> None:
        require(self.actor, action)

    # -- the use cases ---------------------------------------------------------------------
    @cached_property
    def batches(self) -> BatchService:
        from finflow_core.services.batches import BatchService

        return BatchService(self)

    @cached_property
    def applications(self) -> ApplicationService:
        from finflow_core.services.applications import ApplicationService

        return ApplicationService(self)

    @cached_property
    def review(self) -> ReviewService:
        from finflow_core.services.review import ReviewService

        return ReviewService(self)

    @cached_property
    def letters(self) -> LetterService:
        from finflow_core.services.letters import LetterService

        return LetterService(self)

    @cached_property
    def portfolio(self) -> PortfolioService:
        from finflow_core.services.portfolio import PortfolioService

        return PortfolioService(self)

    @cached_property
    def drift(self) -> DriftService:
        from finflow_core.services.monitoring import DriftService

        return DriftService(self)

    @cached_property
    def models(self) -> ModelService:
        from finflow_core.services.models import ModelService

        return ModelService(self)

    @cached_property
    def audit(self) -> AuditService:
        from finflow_core.services.audit import AuditService

        return AuditService(self)

    @cached_property
    def outcomes(self) -> OutcomeService:
        from finflow_core.services.outcomes import OutcomeService

        return OutcomeService(self)

    @cached_property
    def experiments(self) -> ExperimentService:
        from finflow_core.services.experiments import ExperimentService

        return ExperimentService(self)

    @cached_property
    def performance(self) -> PerformanceService:
        from finflow_core.services.performance import PerformanceService

        return PerformanceService(self)

    @cached_property
    def users(self) -> UserService:
        from finflow_core.services.users import UserService

        return UserService(self)

    @cached_property
    def maintenance(self) -> MaintenanceService:
        from finflow_core.services.maintenance import MaintenanceService

        return MaintenanceService(self)

    @cached_property
    def account(self) -> AccountService:
        from finflow_core.services.users import AccountService

        return AccountService(self)
