"""The audit chain's format: the canonical form of an entry and its (keyed) hash.

Each entry's ``hash`` is::

    HMAC-SHA256(K_chain, prev_hash + "|" + canonical_json({seq, at, actor, action,
                subject_type, subject_id, model_version, details})).hexdigest()

where ``K_chain`` is the installation key's ``audit-chain/v1`` key (``security.keys``: never
in the database), ``details`` is the stored canonical JSON *text* and canonical JSON means
``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``. The first
entry's ``prev_hash`` is 64 zeros. Entries written by FinFlow before the chain was keyed
used plain ``sha256`` of the same text; a chain continued from such entries records where
it was re-keyed (a ``chain_keyed`` entry) and is verified as such.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from finflow_core.store.tables import iso_utc

HASHED_FIELDS: tuple[str, ...] = (
    "seq", "at", "actor", "action", "subject_type", "subject_id", "model_version", "details",
)
CSV_FIELDS: tuple[str, ...] = HASHED_FIELDS + ("prev_hash", "hash")
#: The entry that marks where a chain written without a key continues keyed.
REKEY_ACTION = "chain_keyed"


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as stored (``details`` is the canonical JSON text)."""

    seq: int
    at: str
    actor: str
    action: str
    subject_type: str
    subject_id: str
    model_version: str | None
    details: str
    prev_hash: str
    hash: str

    @property
    def detail(self) -> dict[str, Any]:
        """``details`` parsed back into a dict."""
        return json.loads(self.details)

    def as_dict(self) -> dict[str, Any]:
        """A plain dict with ``details`` parsed back into a dict."""
        row = asdict(self)
        row["details"] = self.detail
        return row


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, dates/decimals/numpy scalars converted."""
    return json.dumps(
        _jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=canonical_json)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | Path):
        return str(value)
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas arrays
        return _jsonable(value.tolist())
    if hasattr(value, "item"):
        return _jsonable(value.item())
    raise TypeError(
        f"audit details cannot hold a {type(value).__name__}: convert it to a str, number, "
        "list or dict first"
    )


def entry_hash(prev_hash: str, fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """The chain hash of one entry: keyed with ``key`` (the chain key), or the unkeyed
    SHA-256 of entries written before FinFlow keyed its chain (``key=None``)."""
    payload = canonical_json({name: fields[name] for name in HASHED_FIELDS})
    message = f"{prev_hash}|{payload}".encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
