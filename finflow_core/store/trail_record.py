"""What the audit trail says about stored rows, gathered in one walk of the chain.

Verify compares the stored rows with this record: the seal each row's latest event
recorded, what each batch's entries said (counts, edges, seal sums), each officer's
decision, each model's artifact hash and which model was promoted last, what each outcome
file's entry said of its outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SEALED_BY_EVENT = ("users", "strategies", "model_versions", "decisions", "proposals",
                   "experiments", "outcome_files")


@dataclass(frozen=True)
class Finding:
    """One problem, named by table and row."""

    table: str
    row: str
    problem: str  # changed | unsealed | unrecorded | rolled_back | missing | inconsistent | ...
    message: str

    def line(self) -> str:
        return f"{self.table} {self.row}: {self.message}"


@dataclass
class Recorded:
    """One event's seq and what it recorded."""

    seq: int
    details: dict[str, Any]
    actor: str = ""
    model_version: str | None = None


@dataclass
class TrailRecord:
    """Filled by :meth:`visit` (pass it to ``verify_audit(visit=...)``)."""

    seals: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    batch_uploaded: dict[str, Recorded] = field(default_factory=dict)
    batch_scored: dict[str, Recorded] = field(default_factory=dict)
    batch_voided: dict[str, Recorded] = field(default_factory=dict)
    manual: dict[int, Recorded] = field(default_factory=dict)
    trained: dict[str, Recorded] = field(default_factory=dict)
    promoted: dict[str, int] = field(default_factory=dict)  # version -> seq of its last promotion
    config: Recorded | None = None
    adopted: dict[str, int] = field(default_factory=dict)  # table -> seq of its legacy adoption
    adopted_batches: dict[str, Recorded] = field(default_factory=dict)
    outcomes_loaded: dict[str, Recorded] = field(default_factory=dict)  # by outcome file id
    anchors_started: Recorded | None = None  # the first: where the chain's anchors began

    def visit(self, row: Mapping[str, Any]) -> None:
        action, seq = row["action"], int(row["seq"])
        details = json.loads(row["details"])
        for ref in _refs(details):
            self.seals[(str(ref["table"]), str(ref["row"]))] = (seq, str(ref["seal"]))
        event = Recorded(seq, details, str(row["actor"]), row["model_version"])
        subject = str(row["subject_id"])
        if action == "batch_uploaded":
            self.batch_uploaded[subject] = event
        elif action == "batch_scored":
            self.batch_scored[subject] = event
        elif action == "batch_voided":
            self.batch_voided[subject] = event
        elif action == "outcomes_loaded":
            self.outcomes_loaded[subject] = event
        elif action == "case_decided" and "decision" in details:
            self.manual[int(details["decision"])] = event
        elif action == "model_trained":
            self.trained[subject] = event
        elif action in ("model_promoted", "model_rolled_back"):  # a rollback crowns its subject
            self.promoted[subject] = seq
        elif action == "anchors_started":
            self.anchors_started = self.anchors_started or event
        elif row["subject_type"] == "config":
            self.config = event
        elif action == "legacy_rows_sealed":
            for table in details.get("tables", {}):
                self.adopted[table] = seq
            for batch_id, sums in details.get("batches", {}).items():
                # a later adoption (of tables sealed since) adds to what an earlier one kept
                earlier = self.adopted_batches.get(batch_id)
                self.adopted_batches[batch_id] = Recorded(
                    seq, {**(earlier.details if earlier else {}), **sums})

    def champion(self) -> str | None:
        """The version promoted last (what should be champion now)."""
        return max(self.promoted, key=self.promoted.__getitem__) if self.promoted else None


def _refs(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    one = details.get("row_seal")
    many = details.get("row_seals") or []
    refs = ([one] if isinstance(one, Mapping) else []) + [r for r in many if isinstance(r, Mapping)]
    return [r for r in refs if {"table", "row", "seal"} <= set(r)]
