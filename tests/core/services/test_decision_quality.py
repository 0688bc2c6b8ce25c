"""Decision quality: officers' manual decisions against the model's leaning, per officer and
for the four-eyes and referral paths, with how the approvals turned out."""

from __future__ import annotations

from datetime import UTC, date, datetime

from store_helpers import ANALYST, MANAGER, PASSWORD, Lending

from finflow_core.services.context import Context
from finflow_core.services.performance import AFTER_REFERRAL_ROW, FOUR_EYES_ROW
from finflow_core.services.review import Proposal
from finflow_core.services.workbench import Workbench

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def test_each_path_is_counted_apart_and_approvals_meet_their_outcomes(ffa: Lending) -> None:
    people = ffa.users()
    admin = ffa.wb(people["admin"])
    paula = admin.users.add("paula.officer", PASSWORD, ["officer"]).principal()
    oscar = people["officer"]
    admin.users.set_limit("oscar.officer", 0)  # every approval of his needs a second officer
    queue = [r.id for r in ffa.wb(paula).review.queue(limit=50).rows]
    four_eyes, referred, plain = queue[0], queue[1], queue[2]

    proposal = ffa.wb(oscar).review.decide(four_eyes, "approve", note="strong accounts")
    assert isinstance(proposal, Proposal)
    ffa.wb(paula).review.confirm(proposal.id, note="agreed")
    referral = ffa.wb(paula).review.decide(referred, "refer", note="ask for the latest accounts")
    ffa.wb(paula).review.decide(referred, "approve", note="accounts arrived", supersedes=referral.id)
    ffa.wb(paula).review.decide(plain, "decline", reason="thin file")

    [batch] = ffa.batch_ids()
    later = Workbench(Context(ffa.config, ffa.store, clock=lambda: datetime(2027, 9, 2, tzinfo=UTC)), ANALYST)
    drawn = later.outcomes.simulate([batch], as_of=date(2027, 9, 1), seed=2)
    later.outcomes.load(drawn.to_csv(index=False).encode())

    rows = {q.officer: q for q in ffa.wb(MANAGER).performance.decision_quality()}
    assert rows["paula.officer"].decisions == 3 and rows["paula.officer"].approvals == 2
    assert "oscar.officer" not in rows  # he proposed; paula's confirmation is the decision
    assert (rows[FOUR_EYES_ROW].decisions, rows[FOUR_EYES_ROW].approvals) == (1, 1)
    assert (rows[AFTER_REFERRAL_ROW].decisions, rows[AFTER_REFERRAL_ROW].approvals) == (1, 1)
    assert rows["everyone"].decisions == 3 and rows["everyone"].approved_with_outcome == 2
    defaulted = drawn.set_index("application_id")["defaulted"].eq("yes")
    approved = [ffa.wb(paula).review.case(i).external_id for i in (four_eyes, referred)]
    assert rows["everyone"].approved_default_rate == defaulted[approved].mean()
