"""The audit trail as plain dicts, for tests that compare entries field by field."""

from __future__ import annotations

from typing import Any

from finflow_core.store import Store
from finflow_core.store.audit_chain import audit_trail


def audit_rows(store: Store, *args: Any, **filters: Any) -> list[dict[str, Any]]:
    return [e.as_dict() for e in audit_trail(store, *args, **filters)]
