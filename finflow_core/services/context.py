"""What every service shares: the config, the store, the clock and the process's model cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finflow_core.lending.config import Config
from finflow_core.security.keys import load_key
from finflow_core.store import Store
from finflow_core.store.seals import bind_key, bound_key
from finflow_core.store.tables import Clock, utcnow

if TYPE_CHECKING:
    from finflow_core.services.model_cache import ModelCache


def _shared_cache() -> ModelCache:
    from finflow_core.services.model_cache import ModelCache

    return ModelCache.shared()


@dataclass(frozen=True)
class Context:
    """One installation as the services see it. Cheap to build; the model cache is shared.

    The installation key (``security.keys``) is bound to the store here, unless one is
    already: every audit entry and row seal written through this store uses it.
    """

    config: Config
    store: Store
    clock: Clock = utcnow
    models: ModelCache = field(default_factory=_shared_cache)

    def __post_init__(self) -> None:
        if bound_key(self.store) is None:
            bind_key(self.store, load_key(self.config))
