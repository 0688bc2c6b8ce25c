"""The audit trail in an auditor's words.

An audit entry is stored as an action code (``login``, ``case_decided``) and a details
record in canonical JSON (``{"purpose": "sign_in"}``): exact, hashed, and what the export
and ``finflow audit export`` give. People read the trail on screen; this module words it:

* :func:`action_words`: ``login`` -> ``Signed in``, ``case_decided`` -> ``Case decided``;
* :func:`details_words`: the details as labelled parts (``Rows in: 2,000; Quarantined: 3``),
  enum values in words (``wrong_password`` -> ``wrong password``), money with the currency,
  probabilities as percentages, times to the minute, and the purely technical fields (hashes,
  row seals, internal row ids) left out: they stay in the record as stored.

What a person typed (a reason, a note, a file name, a user name) is shown as written (control
characters removed), never translated or interpreted. An action or key this module does not
know still reads: underscores become spaces. Nothing here changes what is stored.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from finflow_core import formatting as _f


class Kind(StrEnum):
    """How a details value is worded."""

    TEXT = "text"  # as written (typed text, names, versions)
    WORDS = "words"  # a code: worded from CODE_WORDS, else underscores as spaces
    MONEY = "money"
    LIMIT = "limit"  # a lending limit: money, or none for no limit
    PROBABILITY = "probability"
    MEASURE = "measure"  # a PSI, an AUC: three decimals
    SHARE = "share"  # 0.1 -> 10.0%
    COUNT = "count"
    WHEN = "when"
    BANDS = "bands"  # {"low": 1249, ...} -> "low 1,249, medium 586, high 165"
    ROLES = "roles"
    PHRASE = "phrase"  # the worded code stands alone, without its label


ACTION_WORDS: dict[str, str] = {
    "login": "Signed in",
    "login_failed": "Sign-in failed",
    "login_refused": "Sign-in refused",
    "session_started": "Session started",
    "session_ended": "Session ended",
    "sessions_ended": "Other sessions ended",
    "setup_code_issued": "Set-up code issued",
    "setup_code_used": "Set-up code used",
    "setup_code_rejected": "Set-up code rejected",
    "user_created": "User added",
    "roles_changed": "Roles changed",
    "lending_limit_changed": "Lending limit changed",
    "password_changed": "Password changed",
    "user_disabled": "User disabled",
    "user_enabled": "User enabled",
    "config_loaded": "Configuration loaded",
    "config_changed": "Configuration changed",
    "batch_uploaded": "Batch uploaded",
    "batch_scored": "Batch scored",
    "drift_measured": "Drift measured",
    "batch_voided": "Batch voided",
    "batch_load_abandoned": "Unfinished batch load removed",
    "model_trained": "Model trained",
    "model_promoted": "Model promoted to champion",
    "model_rolled_back": "Model rolled back",
    "strategy_saved": "Band edges saved",
    "experiment_started": "Experiment started",
    "experiment_stopped": "Experiment stopped",
    "case_claimed": "Case claimed",
    "case_proposed": "Decision proposed for a second officer",
    "proposal_confirmed": "Proposal confirmed",
    "proposal_rejected": "Proposal rejected",
    "proposal_withdrawn": "Proposal withdrawn",
    "case_decided": "Case decided",
    "letter_issued": "Decline letter issued",
    "letters_issued": "Decline letters issued",
    "outcomes_loaded": "Outcomes loaded",
    "outcome_corrected": "Outcome corrected",
    "store_backed_up": "Store backed up",
    "store_restored": "Store restored",
    "legacy_rows_sealed": "Earlier rows sealed",
    "anchors_started": "First anchor of the audit chain written",
    # events of an application's trail that are not audit entries
    "scored": "Scored",
    "decision_approve": "Approved",
    "decision_decline": "Declined",
    "decision_refer": "Referred",
}

#: Codes stored in details, in words (only for fields of kind WORDS or PHRASE).
CODE_WORDS: dict[str, str] = {
    # purpose of a password check
    "sign_in": "at sign-in",
    "password_change": "to change their own password",
    # why a sign-in failed, was refused, or a session ended
    "wrong_password": "wrong password",
    "unknown_user": "unknown user name",
    "locked": "account locked after failed attempts",
    "disabled": "account disabled",
    "signed_out": "signed out",
    "idle": "no activity for too long",
    "expired": "session time limit reached",
    "password_changed": "password changed",
    "roles_changed": "roles changed",
    "account_gone": "account disabled or removed",
    # who did it
    "admin": "an admin",
    "self": "the user themselves",
    "setup_code": "the one-time set-up code",
    "bootstrap": "the command line",
    # decisions, bands, drift
    "approve": "approve",
    "decline": "decline",
    "refer": "refer",
    "review": "manual review",
    "auto": "automatic",
    "manual": "by an officer",
    "low": "low risk",
    "medium": "medium (review)",
    "high": "high risk",
    "stable": "stable",
    "watch": "watch",
    "alert": "alert",
    "insufficient_data": "too few rows",
    # where a batch came from; experiments
    "file": "an uploaded file",
    "form": "an application typed in",
    "split": "split (a share of each batch)",
    "shadow": "shadow (scored alongside, decides nothing)",
}

#: key -> (label, kind); a label of "" words the value alone (PHRASE).
FIELDS: dict[str, tuple[str, Kind]] = {
    "outcome": ("Outcome", Kind.WORDS),
    "suggestion": ("Model suggested", Kind.WORDS),
    "band": ("Band", Kind.WORDS),
    "probability": ("Probability of default", Kind.PROBABILITY),
    "amount": ("Amount", Kind.MONEY),
    "authority_limit": ("Lending limit", Kind.LIMIT),
    "reason": ("Reason", Kind.TEXT),
    "note": ("Note", Kind.TEXT),
    "confirm_note": ("Confirming note", Kind.TEXT),
    "model": ("Model", Kind.TEXT),
    "challenger": ("Challenger", Kind.TEXT),
    "kind": ("Kind", Kind.WORDS),
    "share": ("Share", Kind.SHARE),
    "file": ("File", Kind.TEXT),
    "rows_in": ("Rows in", Kind.COUNT),
    "rows_valid": ("Valid", Kind.COUNT),
    "rows_quarantined": ("Quarantined", Kind.COUNT),
    "rows": ("Rows", Kind.COUNT),
    "defaults": ("Defaults", Kind.COUNT),
    "corrections": ("Corrections", Kind.COUNT),
    "bands": ("Bands", Kind.BANDS),
    "automatic_approvals": ("Approved automatically", Kind.COUNT),
    "automatic_declines": ("Declined automatically", Kind.COUNT),
    "expected_profit": ("Expected profit", Kind.MONEY),
    "low_edge": ("Low band below", Kind.PROBABILITY),
    "high_edge": ("High band from", Kind.PROBABILITY),
    "auc": ("AUC", Kind.MEASURE),
    "cutoff": ("Cut-off", Kind.PROBABILITY),
    "status": ("Status", Kind.WORDS),
    "score_psi": ("Score PSI", Kind.MEASURE),
    "alerts": ("Alerts", Kind.TEXT),
    "roles": ("Roles", Kind.ROLES),
    "origin": ("From", Kind.WORDS),
    "via": ("Through", Kind.WORDS),
    "by": ("By", Kind.WORDS),
    "expires_at": ("Valid until", Kind.WHEN),
    "locked_until": ("Locked until", Kind.WHEN),
    "started_at": ("Started", Kind.WHEN),
    "last_heartbeat": ("Last sign of life", Kind.WHEN),
    "observed_on": ("Observed on", Kind.TEXT),
    "failures": ("Failed attempts", Kind.COUNT),
    "cleared_failures": ("Failed attempts cleared", Kind.COUNT),
    "was_active": ("Was active", Kind.TEXT),
    "known_user": ("Known user", Kind.TEXT),
    "code_invalidated": ("Code invalidated", Kind.TEXT),
    "previous_champion": ("Previous champion", Kind.TEXT),
    "comparison": ("Comparison", Kind.TEXT),
    "decision": ("Decision no.", Kind.COUNT),
    "proposal": ("Proposal no.", Kind.COUNT),
    "supersedes": ("Replaces decision no.", Kind.COUNT),
    "proposed_by": ("Proposed by", Kind.TEXT),
    "four_eyes": ("Second officer needed", Kind.TEXT),
    "needs": ("Needs", Kind.TEXT),
    "taken_over_from": ("Taken over from", Kind.TEXT),
    "sessions": ("Sessions ended", Kind.COUNT),
    "format": ("Format", Kind.WORDS),
    "letters": ("Letters", Kind.COUNT),
    "reasons": ("Reasons", Kind.TEXT),
    "open_cases_removed": ("Open cases removed", Kind.COUNT),
    "uploaded_by": ("Uploaded by", Kind.TEXT),
    "rows_removed": ("Rows removed", Kind.TEXT),
    "row_number": ("Row", Kind.COUNT),
    "batch": ("Batch", Kind.TEXT),
    "source": ("Source", Kind.TEXT),
    "bytes": ("Size (bytes)", Kind.COUNT),
    "audit_seq": ("Audit entries", Kind.COUNT),
    "replaced_data": ("Replaced existing data", Kind.TEXT),
    "chain_ok": ("Audit chain intact", Kind.TEXT),
    "decisions_ok": ("Decisions intact", Kind.TEXT),
    "tables": ("Rows sealed", Kind.TEXT),
    "path": ("Written to", Kind.TEXT),
    "from": ("From", Kind.TEXT),
    "to": ("To", Kind.TEXT),
    "purpose": ("", Kind.PHRASE),
    "first_anchor_seq": ("First anchored entry", Kind.COUNT),
    "folder": ("Folder", Kind.TEXT),
}

#: Per action, keys worded otherwise than in FIELDS.
ACTION_FIELDS: dict[tuple[str, str], tuple[str, Kind]] = {
    ("roles_changed", "from"): ("From", Kind.ROLES),
    ("roles_changed", "to"): ("To", Kind.ROLES),
    ("lending_limit_changed", "from"): ("From", Kind.LIMIT),
    ("lending_limit_changed", "to"): ("To", Kind.LIMIT),
    ("store_restored", "from"): ("From file", Kind.TEXT),
    ("model_rolled_back", "from"): ("From champion", Kind.TEXT),
    **{(action, "reason"): ("Reason", Kind.WORDS)  # a code here, not typed text
       for action in ("login_failed", "login_refused", "session_ended", "sessions_ended")},
}

#: Technical fields: exact in the record as stored, not worth a person's reading on screen.
HIDDEN_KEYS = frozenset({"row_seal", "row_seals", "seal", "application", "loader_pid", "loader_host",
                         "batches", "seals", "seed"})


_BAND_ORDER = {"low": 0, "medium": 1, "high": 2}
_FIELD_ORDER = {key: i for i, key in enumerate(FIELDS)}


def _hidden(key: str) -> bool:
    return key in HIDDEN_KEYS or key == "sha256" or key.endswith("_sha256")


def action_words(action: str) -> str:
    """An action code as an auditor says it; an unknown code with underscores as spaces."""
    known = ACTION_WORDS.get(action)
    if known is not None:
        return known
    said = _f.clean(str(action)).replace("_", " ").strip()
    return said[:1].upper() + said[1:] if said else _f.MISSING


def code_words(value: Any) -> str:
    """A stored code in words (``wrong_password`` -> ``wrong password``)."""
    if _f.is_missing(value):
        return _f.MISSING
    s = str(value.value if isinstance(value, StrEnum) else value)
    return CODE_WORDS.get(s, _f.clean(s).replace("_", " "))


def _value(value: Any, kind: Kind, currency: str, tz: str) -> str:
    if kind is Kind.LIMIT and _f.is_missing(value):
        return "no limit"
    if isinstance(value, list | tuple | Mapping) and not value:
        return "none"
    match kind:
        case Kind.WORDS | Kind.PHRASE:
            if isinstance(value, list | tuple):
                return ", ".join(code_words(v) for v in value) or _f.MISSING
            return code_words(value)
        case Kind.MONEY | Kind.LIMIT:
            return _f.money(value, currency)
        case Kind.PROBABILITY:
            return _f.probability(value)
        case Kind.MEASURE:
            return _f.number(value, 3)
        case Kind.SHARE:
            return _f.percent(value, 1)
        case Kind.COUNT:
            return _f.count(value) if isinstance(value, int) else _f.text(value, tz)
        case Kind.WHEN:
            return _f.when(value, tz)
        case Kind.BANDS if isinstance(value, Mapping):
            ordered = sorted(value.items(), key=lambda kv: _BAND_ORDER.get(str(kv[0]), len(_BAND_ORDER)))
            return ", ".join(f"{code_words(k)} {_f.count(v)}" for k, v in ordered)
        case Kind.ROLES if isinstance(value, list | tuple):
            return ", ".join(_f.clean(str(r)) for r in value) or "none"
    return _f.text(value, tz)


def detail_parts(action: str, details: Mapping[str, Any], *, currency: str = "",
                 tz: str = "UTC") -> list[str]:
    """The details worded, one part per field shown (technical fields left out)."""
    parts = []
    # stored with sorted keys: shown in the order a person reads them (FIELDS), unknown last
    for key, value in sorted(details.items(), key=lambda kv: _FIELD_ORDER.get(kv[0], len(FIELDS))):
        if _hidden(key) or (_f.is_missing(value) and (action, key) not in ACTION_FIELDS
                                                     and key != "authority_limit"):
            continue  # a technical field, or nothing recorded: the record as stored has it
        label, kind = ACTION_FIELDS.get((action, key)) or FIELDS.get(
            key, (_f.clean(str(key)).replace("_", " ").capitalize(), Kind.TEXT))
        worded = _value(value, kind, currency, tz)
        if kind is Kind.PHRASE:
            parts.append(worded[:1].upper() + worded[1:])
        else:
            parts.append(f"{label}: {worded}")
    return parts


def details_words(action: str, details: Mapping[str, Any] | str | None, *, currency: str = "",
                  tz: str = "UTC") -> str:
    """The details of one entry as a line an auditor reads (``–`` when there is nothing to
    say); ``details`` is the dict or its stored JSON text."""
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return _f.text(details, tz)
    if not isinstance(details, Mapping):
        return _f.text(details, tz)
    return "; ".join(detail_parts(action, details, currency=currency, tz=tz)) or _f.MISSING


def stored_record(action: str, details: Mapping[str, Any] | str | None) -> str:
    """The entry's action code and details as stored (canonical JSON), for an auditor who
    needs the record itself: ``login {"purpose":"sign_in"}``. A character that would not show
    or would reorder the line (a control or bidi character) is written as its JSON escape
    (``\\u202e``): the same JSON, visible."""
    if not isinstance(details, str):
        details = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                             default=str)
    return "".join(f"\\u{ord(ch):04x}" if ch in _f.BIDI_CONTROLS or unicodedata.category(ch) == "Cc"
                   else ch for ch in f"{action} {details}")
