"""Keyed per-row seals: a stored fact that drives or records a decision carries a MAC of itself.

``seal = BLAKE2b-128(key = K_table, message).hexdigest()`` where ``K_table =
HMAC-SHA256(K_rows, table name)``, ``K_rows`` is the installation key's ``row-seal/v1`` key
(``security.keys``), and the message is, in the order :data:`SPECS` declares::

    hex( little-endian int64 / float64 of each number column, then the int32 length of
         each text column (-1 for NULL) )  +  each text column's value (NULL as "")

Floats are taken exactly (NaN and -0.0 normalised: SQLite keeps neither). Lengths make
the concatenation unambiguous. Someone who can write the database but lacks the key cannot
make a seal, so a changed or inserted row fails its check; a row put back to an older
(validly sealed) state is caught by comparing with the seal its latest audit event recorded
(:func:`seal_ref`), and a deleted row by the counts and :class:`SealSum` of its batch.

Messages are built column-wise (numpy for the fixed part, one C-level join per row) so
sealing a million applications costs about a second per table.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select, text

from finflow_core.errors import FinFlowError
from finflow_core.security.keys import InstallationKey, load_key

#: Execution option that carries the installation key on a store's connections.
KEY_OPTION = "finflow_installation_key"
SEAL_LEN = 32
_HEX = re.compile(r"[0-9a-f]+")


class SealBroken(FinFlowError):
    """A sealed row failed its check when FinFlow was about to rely on it."""

    exit_code = 12


@dataclass(frozen=True)
class SealSpec:
    """Which columns of a table are sealed, and how: numbers (``i``/``f``) then texts."""

    table: str
    numbers: tuple[tuple[str, str], ...]
    texts: tuple[str, ...]
    nullable_ints: tuple[str, ...] = ()  # integer columns that may be NULL, sealed as text

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.numbers) + self.texts


SPECS: dict[str, SealSpec] = {s.table: s for s in (
    SealSpec("applications", (("id", "i"), ("row_number", "i"), ("amount", "f"), ("probability", "f")),
             ("batch_id", "external_id", "week_start", "segment_1", "segment_2", "segment_3", "data",
              "band")),
    SealSpec("scores", (("application_id", "i"), ("probability", "f"), ("ev_approve", "f"),
                        ("ev_review", "f")),
             ("model_version", "band", "reasons", "scored_at")),
    SealSpec("decisions", (("id", "i"), ("application_id", "i")),
             ("outcome", "kind", "decided_by", "reason", "note", "decided_at", "model_version",
              "supersedes_id", "suggestion", "proposed_by", "four_eyes"), nullable_ints=("supersedes_id",)),
    SealSpec("users", (("id", "i"), ("active", "i"), ("lending_limit", "f")),
             ("username", "password_hash", "roles", "created_at", "created_by")),
    SealSpec("strategies", (("id", "i"), ("low_edge", "f"), ("high_edge", "f")),
             ("model_version", "note", "saved_at", "saved_by")),
    SealSpec("model_versions", (("rows", "i"),),
             ("version", "model_name", "artifact_sha256", "training_data_sha256", "card",
              "created_at", "trained_by")),
    # the model lifecycle (revision 0011): four-eyes proposals, tests, arms, outcomes
    SealSpec("proposals", (("id", "i"), ("application_id", "i"), ("amount", "f"),
                           ("probability", "f"), ("authority_limit", "f")),
             ("outcome", "reason", "note", "supersedes_id", "proposed_by", "proposed_at", "needs",
              "suggestion", "status", "closed_by", "closed_at", "close_note", "decision_id"),
             nullable_ints=("supersedes_id", "decision_id")),
    SealSpec("experiments", (("id", "i"), ("seed", "i"), ("low_edge", "f"), ("high_edge", "f"),
                             ("share", "f")),
             ("kind", "challenger_version", "reason", "started_by", "started_at", "stopped_by",
              "stopped_at")),
    SealSpec("application_arms", (("application_id", "i"), ("experiment_id", "i")), ("arm",)),
    SealSpec("shadow_scores", (("application_id", "i"), ("experiment_id", "i"),
                               ("probability", "f"), ("ev_approve", "f")),
             ("model_version", "band")),
    SealSpec("outcome_files", (("id", "i"), ("rows", "i"), ("corrections", "i")),
             ("sha256", "file_name", "loaded_by", "loaded_at", "reason")),
    SealSpec("outcomes", (("id", "i"), ("application_id", "i"), ("file_id", "i"),
                          ("defaulted", "i"), ("amount_lost", "f"), ("exposure", "f"),
                          ("realised_profit", "f")),
             ("observed_on", "days_past_due", "months_on_book", "supersedes_id"),
             nullable_ints=("days_past_due", "months_on_book", "supersedes_id")),
)}


# -- the key on the store's connections -------------------------------------------------------

def bind_key(store: Any, key: InstallationKey) -> None:
    """Make ``key`` the one every connection of ``store`` seals and chains with."""
    store.engine.update_execution_options(**{KEY_OPTION: key})


def bound_key(store: Any) -> InstallationKey | None:
    """The key bound to ``store``, if any."""
    return store.engine.get_execution_options().get(KEY_OPTION)


def key_of(conn: Connection) -> InstallationKey:
    """The key bound to the connection's store, else this installation's default key."""
    key = conn.get_execution_options().get(KEY_OPTION)
    return key if key is not None else load_key()


def _table_key(key: InstallationKey, table: str) -> bytes:
    return hmac.new(key.seal_key, table.encode(), hashlib.sha256).digest()


# -- sealing ------------------------------------------------------------------------------------

def seal_rows(key: InstallationKey, table: str, columns: Mapping[str, Any], n: int) -> list[str]:
    """The seals of ``n`` rows given column-wise (arrays, lists, Series, or one scalar for all)."""
    if n == 0:
        return []
    spec = SPECS[table]
    fixed = np.empty(n, dtype=[(c, "<i8" if k == "i" else "<f8") for c, k in spec.numbers]
                     + [(f"len:{c}", "<i4") for c in spec.texts])
    for name, kind in spec.numbers:
        fixed[name] = _ints(columns[name], n) if kind == "i" else _floats(columns[name], n)
    texts: list[Iterable[str]] = []
    for name in spec.texts:
        values, lengths = _texts(columns[name], n, name in spec.nullable_ints)
        fixed[f"len:{name}"] = lengths
        texts.append(values)
    hexed = fixed.tobytes().hex()
    width = len(hexed) // n
    heads = [hexed[i:i + width] for i in range(0, n * width, width)]
    mac_key = _table_key(key, table)
    blake = hashlib.blake2b
    return [blake(m.encode(), key=mac_key, digest_size=16).hexdigest()
            for m in map("".join, zip(heads, *texts, strict=False))]


def seal_row(key: InstallationKey, table: str, row: Mapping[str, Any]) -> str:
    """The seal of one row (a mapping with at least the sealed columns)."""
    return seal_rows(key, table, {c: [row[c]] for c in SPECS[table].columns}, 1)[0]


def add_seals(conn: Connection, table: str, columns: dict[str, Any], n: int) -> list[str]:
    """Seal rows about to be bulk-inserted: adds their ``seal`` column and returns it."""
    columns["seal"] = seal_rows(key_of(conn), table, columns, n)
    return columns["seal"]


def sealed_values(conn: Connection, table: str, values: dict[str, Any]) -> dict[str, Any]:
    """One row's insert values with its seal added."""
    return {**values, "seal": seal_row(key_of(conn), table, values)}


def next_id(conn: Connection, table: Any) -> int:
    """A fresh primary key for one row of ``table`` (taken before the insert, because the
    seal covers the id and some sealed tables refuse UPDATE): PostgreSQL's sequence, or on
    SQLite max + 1 under the write lock the transaction holds."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text("SELECT nextval(pg_get_serial_sequence(:t, 'id'))"),
                                {"t": table.name}).scalar_one())
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1


def sealed_insert_values(conn: Connection, table: Any, **values: Any) -> dict[str, Any]:
    """Insert values for one new row of ``table``: a fresh ``id`` and its ``seal`` added."""
    values = {"id": next_id(conn, table), **values}
    return sealed_values(conn, table.name, values)


class BatchSeals:
    """Seals a batch's applications and scores (and a running test's arms and shadow scores)
    as they are written; their :class:`SealSum` goes into the batch's ``batch_scored`` audit
    entry (:meth:`details`). A test's tables appear there only when the batch wrote rows to
    them."""

    def __init__(self, conn: Connection) -> None:
        self.key = key_of(conn)
        self.sums = {"applications": SealSum(), "scores": SealSum()}

    def seal_columns(self, table: Any, columns: dict[str, Any], n: int) -> list[str]:
        """The seals of rows of ``table`` (not yet counted: see :meth:`add_stored`)."""
        return seal_rows(self.key, table.name, columns, n)

    def add_stored(self, table: Any, seals: list[str]) -> None:
        """Count seals of rows inserted into ``table`` in the batch's sum."""
        self.sums.setdefault(table.name, SealSum()).add(seals)

    def details(self) -> dict[str, Any]:
        return {"seals": {t: s.value() for t, s in self.sums.items()}}


def seal_ref(table: str, row: int | str, seal: str) -> dict[str, Any]:
    """What an audit event records about the row it wrote (merge into its details)."""
    return {"row_seal": {"table": table, "row": row, "seal": seal}}


def check_seal(conn: Connection, table: str, row: Any, what: str) -> None:
    """Refuse to rely on a row whose seal does not match (raises :class:`SealBroken`)."""
    mapping = row._mapping if hasattr(row, "_mapping") else row
    stored = mapping.get("seal")
    if stored is None or not hmac.compare_digest(str(stored), seal_row(key_of(conn), table, mapping)):
        raise SealBroken(
            f"{what} ({table} row {_row_name(table, mapping)}) fails its seal: it was changed "
            "or inserted outside FinFlow, so it is not used. Run `finflow audit verify`.",
            table=table)


def _row_name(table: str, row: Mapping[str, Any]) -> str:
    for pk in ("id", "application_id", "version"):
        if pk in row:
            return str(row[pk])
    return "?"


class SealSum:
    """An order-independent digest of a set of seals (per 64-bit half, sums mod 2**64).

    The writer adds a batch's seals chunk by chunk; verify adds what is stored, in any
    order. Without the key nobody can make a seal, so the only way to keep the sum is to
    keep the rows: a deleted row changes it (and the count).
    """

    def __init__(self) -> None:
        self.n = 0
        self._sum = np.zeros(2, dtype=np.uint64)

    def add(self, seals: Sequence[str | None]) -> None:
        present = [s for s in seals if s]
        raw = _seal_bytes(present)
        if raw is None:  # a malformed seal (written outside FinFlow) counts as none
            present = [s for s in present if len(s) == SEAL_LEN and _HEX.fullmatch(s)]
            raw = bytes.fromhex("".join(present))
        if present:
            halves = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
            with np.errstate(over="ignore"):
                self._sum += halves.sum(axis=0, dtype=np.uint64)
        self.n += len(seals)

    def value(self) -> dict[str, Any]:
        return {"n": self.n, "sum": f"{int(self._sum[0]):016x}{int(self._sum[1]):016x}"}


def _seal_bytes(seals: list[str]) -> bytes | None:
    """All seals as bytes in one call, or None if any is not 32 hex digits (then each is
    checked on its own: the usual case needs no per-seal check)."""
    joined = "".join(seals)
    if len(joined) != SEAL_LEN * len(seals):
        return None
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    return raw if len(raw) == SEAL_LEN // 2 * len(seals) else None  # fromhex skips spaces


# -- column conversions -------------------------------------------------------------------------

def _plain(column: Any, n: int) -> list[Any]:
    if column is None or isinstance(column, str | int | float | bool):
        return list(itertools.repeat(column, n))
    if isinstance(column, pd.Series):
        column = column.to_numpy(dtype=object)
    values = column.tolist() if hasattr(column, "tolist") else list(column)
    if len(values) != n:
        raise ValueError(f"a column has {len(values)} values for {n} rows")
    return values


def _ints(column: Any, n: int) -> np.ndarray:
    if isinstance(column, int | bool | np.integer):
        return np.full(n, int(column), dtype=np.int64)
    return np.asarray(_plain(column, n) if not isinstance(column, np.ndarray) else column,
                      dtype=np.int64)


def _floats(column: Any, n: int) -> np.ndarray:
    values = np.full(n, column, dtype=float) if isinstance(column, float | int) or column is None \
        else np.asarray(column if isinstance(column, np.ndarray) else _plain(column, n), dtype=float)
    values = values + 0.0  # -0.0 -> 0.0
    values[np.isnan(values)] = np.nan  # one NaN
    return values


def _texts(column: Any, n: int, from_int: bool) -> tuple[Iterable[str], Any]:
    """The values as text ("" for NULL) and their lengths (-1 for NULL)."""
    if column is None or isinstance(column, str):
        return itertools.repeat(column or "", n), -1 if column is None else len(column)
    values = _plain(column, n)
    if from_int:
        values = [None if v is None else str(int(v)) for v in values]
    if None in values:
        return (["" if v is None else v for v in values],
                [-1 if v is None else len(v) for v in values])
    return values, np.fromiter(map(len, values), dtype=np.int32, count=n)
