"""Loaded model versions and scoring engines, shared by every session of a process.

Loading a model means checking its signature and hash and unpickling tens of megabytes,
and building an engine builds a SHAP explainer: both are done once per process and
version (and band edges), then shared. Cached objects are never mutated.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import ScoringEngine


class ModelCache:
    """A small thread-safe LRU of bundles and engines."""

    _shared: ClassVar[ModelCache | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, max_entries: int = 8) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()

    @classmethod
    def shared(cls) -> ModelCache:
        """The process-wide cache."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = make()  # under the lock: two sessions never load the same model twice
            self._items[key] = value
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
            return value

    def bundle(self, key: Hashable, make: Callable[[], ModelBundle]) -> ModelBundle:
        return self.get(("bundle", key), make)

    def engine(self, key: Hashable, make: Callable[[], ScoringEngine]) -> ScoringEngine:
        return self.get(("engine", key), make)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
