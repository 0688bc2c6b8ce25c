"""The app's screens: which file, which URL, which action a user needs to see it."""

from __future__ import annotations

from dataclasses import dataclass

from finflow_core.services.access import Action, Principal, can


@dataclass(frozen=True)
class PageSpec:
    path: str  # relative to app.py
    title: str
    url_path: str  # the page's URL (same as the file name, so legacy URLs are the same pages)
    action: Action | None  # None: any signed-in user
    icon: str
    section: str


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/review_queue.py", "Review queue", "review_queue", Action.VIEW_QUEUE,
             ":material/inbox:", "Decisions"),
    PageSpec("pages/new_application.py", "New application", "new_application", Action.SUBMIT_APPLICATION,
             ":material/edit_note:", "Decisions"),
    PageSpec("pages/upload.py", "Batches", "upload", Action.VIEW_BATCHES, ":material/upload_file:", "Data"),
    PageSpec("pages/portfolio.py", "Portfolio", "portfolio", Action.VIEW_PORTFOLIO,
             ":material/monitoring:", "Oversight"),
    PageSpec("pages/drift.py", "Drift", "drift", Action.VIEW_DRIFT, ":material/trending_up:", "Oversight"),
    PageSpec("pages/performance.py", "Performance", "performance", Action.VIEW_PERFORMANCE,
             ":material/insights:", "Oversight"),
    PageSpec("pages/model.py", "Model & strategy", "model", Action.VIEW_MODELS, ":material/model_training:",
             "Oversight"),
    PageSpec("pages/audit.py", "Audit trail", "audit", Action.VIEW_AUDIT, ":material/fact_check:",
             "Administration"),
    PageSpec("pages/users.py", "Users", "users", Action.MANAGE_USERS, ":material/group:", "Administration"),
    PageSpec("pages/account.py", "My account", "account", None, ":material/person:", "Account"),
)

#: The page a role lands on after sign-in (the first one the user may see).
LANDING_ORDER = ("portfolio", "review_queue", "upload", "users", "audit", "account")


def allowed(user: Principal) -> list[PageSpec]:
    return [p for p in PAGES if p.action is None or can(user, p.action)]


def landing(user: Principal) -> str:
    urls = {p.url_path for p in allowed(user)}
    return next(u for u in LANDING_ORDER if u in urls)
