"""The audit trail in an auditor's words: codes worded, technical fields left out, typed text
as written, and the record as stored kept exact."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from finflow_core.services.audit_wording import (
    ACTION_WORDS,
    action_words,
    details_words,
    stored_record,
)

CORE = Path(__file__).resolve().parents[3] / "finflow_core"


def test_a_sign_in_reads_as_words_not_tokens() -> None:
    assert action_words("login") == "Signed in"
    assert details_words("login", '{"purpose":"sign_in"}') == "At sign-in"
    said = details_words("login_failed", {"failures": 3, "locked_until": "2026-12-02T06:30:00+00:00",
                                          "purpose": "password_change", "reason": "wrong_password"})
    assert said == ("Reason: wrong password; Locked until: 2026-12-02 06:30; Failed attempts: 3; "
                    "To change their own password")


def test_hashes_seals_and_internal_ids_stay_in_the_record_only() -> None:
    details = {"application": 17, "decision": 5, "outcome": "approve", "reason": "strong cash flow",
               "note": None, "probability": 0.23915, "band": "medium", "suggestion": "review",
               "row_seal": {"row": 5, "seal": "f5d2ed7041f39e65", "table": "decisions"},
               "sha256": "9c2efde80b5246e9b1", "config_sha256": "ce370e50e9eb"}
    said = details_words("case_decided", details, currency="USD")
    assert said == ("Outcome: approve; Model suggested: manual review; Band: medium (review); "
                    "Probability of default: 23.9%; Reason: strong cash flow; Decision no.: 5")
    assert not re.search(r"seal|sha|[0-9a-f]{12}|_", said)
    record = stored_record("case_decided", details)
    assert record.startswith("case_decided {") and json.loads(record.split(" ", 1)[1]) == details


def test_money_bands_roles_and_limits_are_worded() -> None:
    scored = details_words("batch_scored", {"automatic_approvals": 1249, "automatic_declines": 165,
                                            "bands": {"high": 165, "low": 1249, "medium": 586},
                                            "expected_profit": 65317312.1, "high_edge": 0.444,
                                            "low_edge": 0.129, "auto_decisions_sha256": "2f28"},
                           currency="USD")
    assert scored == ("Bands: low risk 1,249, medium (review) 586, high risk 165; Approved automatically: "
                      "1,249; Declined automatically: 165; Expected profit: USD 65,317,312; "
                      "Low band below: 12.9%; High band from: 44.4%")
    assert details_words("roles_changed", {"from": ["analyst"], "to": ["analyst", "manager"]}) == \
        "From: analyst; To: analyst, manager"
    assert details_words("lending_limit_changed", {"from": None, "to": 50000}, currency="EUR") == \
        "From: no limit; To: EUR 50,000"
    assert details_words("drift_measured", {"alerts": [], "score_psi": 0.0033, "status": "stable"}) == \
        "Status: stable; Score PSI: 0.003; Alerts: none"
    assert details_words("drift_measured", {"status": "insufficient_data"}) == "Status: too few rows"


def test_typed_text_is_never_translated_and_unknown_codes_still_read() -> None:
    # an officer's reason that happens to look like a code stays as typed
    assert details_words("case_decided", {"reason": "sign_in **x** [a](http://x)"}) == \
        "Reason: sign_in **x** [a](http://x)"
    assert action_words("something_new_happened") == "Something new happened"
    assert details_words("something_new", {"odd_key": "v"}) == "Odd key: v"
    assert details_words("x", {}) == "–" and details_words("x", "not json") == "not json"


def test_the_record_as_stored_shows_hidden_characters_as_escapes() -> None:
    record = stored_record("case_decided", {"note": "a\u202eb\x07"})
    assert record == 'case_decided {"note":"a\\u202eb\\u0007"}'
    assert json.loads(record.split(" ", 1)[1]) == {"note": "a\u202eb\x07"}


def test_every_action_the_code_records_has_words() -> None:
    """A new audit action without words would show as a raw code: add it to ACTION_WORDS."""
    recorded: set[str] = set()
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "append_audit" \
                    and len(node.args) >= 3 and isinstance(node.args[2], ast.Constant):
                recorded.add(node.args[2].value)
    assert len(recorded) > 30
    assert recorded - set(ACTION_WORDS) == set()
