"""``outcomes:``: how the lender's outcome files are laid out (its servicing system's export).

The defaults are FinFlow's own layout (docs/LIFECYCLE.md): ``application_id``,
``defaulted`` (yes / no ...), ``observed_on`` and the optional ``amount_lost``,
``days_past_due`` and ``batch_id``. A register that writes ``LoanNr_ChkDgt`` and
``MIS_Status`` with ``CHGOFF`` / ``P I F`` declares its names and words instead.
"""

from __future__ import annotations

from pydantic import model_validator
from pydantic.dataclasses import dataclass

from finflow_core.lending.config.columns import check_date_format
from finflow_core.lending.config.fields import DECLARED, Category, Problem, Text

#: Words read as "the loan defaulted" / "it did not", unless the config gives its own.
DEFAULTED_WORDS: tuple[str, ...] = ("yes", "y", "true", "1", "default", "defaulted")
REPAID_WORDS: tuple[str, ...] = ("no", "n", "false", "0", "repaid", "current", "performing")


@dataclass(frozen=True, config=DECLARED)
class OutcomeSpec:
    """How an outcome file is laid out: its column names and its words for the outcome
    (matched without regard to case or surrounding blanks)."""

    id_column: Text = "application_id"
    defaulted_column: Text = "defaulted"
    observed_column: Text = "observed_on"
    loss_column: Text = "amount_lost"
    dpd_column: Text = "days_past_due"
    batch_column: Text = "batch_id"
    defaulted_words: tuple[Category, ...] = DEFAULTED_WORDS
    repaid_words: tuple[Category, ...] = REPAID_WORDS
    date_format: Text | None = None  # strptime format of the observed date; None: YYYY-MM-DD

    @model_validator(mode="after")
    def _distinct(self) -> OutcomeSpec:
        keys = ("id_column", "defaulted_column", "observed_column", "loss_column", "dpd_column",
                "batch_column")
        seen: dict[str, str] = {}
        for key in keys:
            name = getattr(self, key)
            if not name.strip():
                raise Problem("a column name cannot be blank", (key,))
            if name in seen:
                raise Problem(f"{name!r} is already the {seen[name]}: each column is named once",
                              (key,))
            seen[name] = key
        for key in ("defaulted_words", "repaid_words"):
            words = getattr(self, key)
            if not words or any(not w.strip() for w in words):
                raise Problem("needs at least one word, and no blank one", (key,))
        if self.date_format is not None:
            check_date_format(self.date_format)
        both = {w.strip().lower() for w in self.defaulted_words} & {
            w.strip().lower() for w in self.repaid_words}
        if both:
            raise Problem(f"{sorted(both)[0]!r} is both a default and a repayment",
                          ("repaid_words",))
        return self

    @property
    def required(self) -> tuple[str, ...]:
        return (self.id_column, self.defaulted_column, self.observed_column)

    @property
    def optional(self) -> tuple[str, ...]:
        return (self.loss_column, self.dpd_column, self.batch_column)

    @property
    def truth(self) -> dict[str, bool]:
        """Each word in lower case: True when it says the loan defaulted, False when not."""
        return {**{w.strip().lower(): True for w in self.defaulted_words},
                **{w.strip().lower(): False for w in self.repaid_words}}
