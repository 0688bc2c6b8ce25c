"""The declared columns of a lender's file: types, roles, value rules and reason wording."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import model_validator
from pydantic.dataclasses import dataclass

from finflow_core.lending.config.fields import (
    DECLARED,
    Category,
    Codes,
    Flag,
    Names,
    Number,
    Problem,
    Text,
    Whole,
    Wording,
)

ColumnType = Literal["string", "integer", "float", "category", "date"]
Role = Literal[
    "id", "feature", "target", "loan_amount", "interest_rate", "term", "income", "date", "info",
    "protected",
]
UnknownPolicy = Literal["quarantine", "missing", "other"]
#: How a person reads a number (the review desk, letters): an amount in the configured
#: currency, a rate as a percentage, a count of months or years. Default from the role
#: (loan_amount and income: money, interest_rate: percent, term: months).
Unit = Literal["money", "percent", "months", "years"]
UNITS: tuple[str, ...] = ("money", "percent", "months", "years")
COLUMN_TYPES: tuple[str, ...] = ("string", "integer", "float", "category", "date")
ROLES: tuple[str, ...] = (
    "id", "feature", "target", "loan_amount", "interest_rate", "term", "income", "date", "info",
    "protected",
)
#: Roles a dataset must have exactly one column for (rate and term may come from config).
REQUIRED_ROLES: tuple[str, ...] = ("id", "target", "loan_amount")
#: Roles at most one column may have.
SINGLE_ROLES: tuple[str, ...] = ("interest_rate", "term", "income", "date")
#: Longest application id the store keeps (longer ones are quarantined, never cut).
ID_MAX_LENGTH = 128
#: Roles whose columns feed the model unless ``model_input: false``.
MODEL_ROLES: tuple[str, ...] = ("feature", "loan_amount", "interest_rate", "term", "income")
NUMERIC_ROLES: tuple[str, ...] = ("loan_amount", "interest_rate", "term", "income", "target")
UNKNOWN_POLICIES: tuple[str, ...] = ("quarantine", "missing", "other")
#: Roles every application needs a value of: it is identified, sized and priced by them
#: (a blank would be stored as a loan without an id, or priced as an interest-free loan),
#: and what to write instead of ``nullable: true``.
NEVER_BLANK_ROLES: dict[str, str] = {
    "id": "an application without an id cannot be stored, decided or given an outcome",
    "loan_amount": "a loan without an amount cannot be priced or decided",
    "interest_rate": "a blank rate would be priced as an interest-free loan. To price every "
                     "loan at an assumed rate instead, give the column role feature and "
                     "pricing: {interest_rate: ...}",
    "term": "a loan without a term cannot be priced. To assume one term for every loan "
            "instead, give the column role feature and pricing: {term_months: ...}",
}
#: Digit-grouping marks a number may be written with (``thousands:``); "." is the decimal mark.
THOUSANDS_MARKS: tuple[str, ...] = (",", " ", "'", "_", "\u00a0", "\u202f")
#: How dates are written unless a column says otherwise (``date_format:``).
ISO_DATE = "%Y-%m-%d"

#: Words in a column name that suggest a protected characteristic (matched as whole words;
#: entries ending in ``*`` also match as a prefix: ``ethnic*`` matches ``ethnicity``).
PROTECTED_HINTS: tuple[str, ...] = (
    "sex", "gender*", "race", "racial", "ethnic*", "age", "birth*", "dob", "marital*",
    "married", "religio*", "faith", "nationalit*", "citizen*", "disab*", "pregnan*",
    "orientation", "minority", "women", "woman", "female", "veteran*",
)


@dataclass(frozen=True, config=DECLARED)
class ColumnSpec:
    """One declared column: how its cells are read, judged and used.

    ``on_unknown`` is what the quality gate does with a category code that is not
    declared: ``quarantine`` the row, read it as ``missing`` (the default: the row is kept
    and the code counted), or map it to the declared ``other`` category. ``missing_values``
    lists texts that mean "no value" in this column (``NA``, ``?``); ``nullable`` then
    decides whether a missing value is allowed. Only a ``protected`` column may be
    ``required: false`` (absent from a file).

    How numbers and dates are written in the file (the cells are stored as written; only
    reading them changes): ``thousands`` is a digit-grouping mark (``1,250,000``; groups of
    three, so ``1,25`` is not a number), ``decimal`` is the decimal mark (``,`` for
    ``1.250,50`` with ``thousands: "."``), ``strip`` lists texts around a number that are not
    part of it (a currency sign or code, a unit: ``$``, ``USD``, ``months``), ``percent``
    reads ``12.5%`` or ``12.5`` as 0.125 (min and max then apply to 0.125), and
    ``date_format`` is the strptime format of a date column (``%d-%b-%y`` for
    ``02-Oct-22``; default ``%Y-%m-%d``). ``codes`` are texts a number column holds instead
    of a number, each read as the number given: an outcome written ``CHGOFF`` / ``P I F``
    is ``{CHGOFF: 1, "P I F": 0}``.
    """

    name: Text
    type: ColumnType
    role: Role | None = None  # default: info for text and dates, else feature
    nullable: Flag = False
    min: Number | None = None
    max: Number | None = None
    categories: tuple[Category, ...] = ()
    max_length: Whole | None = None
    label: Text = ""
    model_input: Flag | None = None  # default: true, except for protected columns
    reason_high: Text | None = None
    reason_low: Text | None = None
    reason_category: Wording | None = None
    on_unknown: UnknownPolicy | None = None  # default: missing, for category columns
    other: Category | None = None
    missing_values: tuple[Category, ...] = ()
    required: Flag = True
    unit: Unit | None = None
    thousands: Text | None = None
    strip: tuple[Text, ...] = ()
    percent: Flag = False
    date_format: Text | None = None
    codes: Codes = ()
    decimal: Literal[".", ","] = "."

    def __post_init__(self) -> None:
        # defaults that depend on other settings, resolved once so the object says what it does
        if self.role is None:
            object.__setattr__(self, "role", "info" if self.type in ("string", "date") else "feature")
        if self.model_input is None:
            object.__setattr__(self, "model_input", self.role != "protected")
        if self.on_unknown is None and self.type == "category":
            object.__setattr__(self, "on_unknown", "missing")
        if self.role == "id" and self.max_length is None:
            object.__setattr__(self, "max_length", ID_MAX_LENGTH)

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        ctype, role = self.type, self.role
        if role == "feature" and ctype in ("string", "date"):
            raise Problem(f"a {ctype} column cannot be a model feature: declare it as a category "
                          "(with its categories) or a number, or give it role info", ("role",))
        if ctype == "category" and not self.categories:
            raise Problem(f"category column {self.name!r} needs its categories", ("categories",))
        if ctype != "category" and self.categories:
            raise Problem(f"only a category column has categories (this one is {ctype})",
                          ("categories",))
        if role in NUMERIC_ROLES and ctype not in ("integer", "float"):
            raise Problem(f"a {role} column must be numeric", ("type",))
        if self.unit is not None and ctype not in ("integer", "float"):
            raise Problem(f"a unit applies to numbers, not to a {ctype} column", ("unit",))
        if self.min is not None and self.max is not None and self.min > self.max:
            raise Problem(f"min {self.min:g} is above max {self.max:g}", ("min",))
        if (self.min is not None or self.max is not None) and ctype not in ("integer", "float"):
            raise Problem(f"min and max apply to numbers, not to a {ctype} column",
                          ("min" if self.min is not None else "max",))
        if self.nullable and role in NEVER_BLANK_ROLES:
            raise Problem(f"a column with role {role} cannot be nullable (without nullable: true "
                          f"a row with a blank one is quarantined, rule not_null): "
                          f"{NEVER_BLANK_ROLES[role]}", ("nullable",))
        if role == "term" and (self.min is None or self.min < 1):
            got = "no min" if self.min is None else f"min {self.min:g}"
            raise Problem(f"a term column must have min: 1 or more, got {got}: a loan is priced "
                          "by its months, and a term of 0 months cannot be amortised (its profit "
                          "would be unknown). A row with a term below min is quarantined (rule "
                          "in_range)", ("min",))
        if role == "id" and not 1 <= (self.max_length or 0) <= ID_MAX_LENGTH:
            raise Problem(f"an id column's max_length must be 1 to {ID_MAX_LENGTH}", ("max_length",))
        if self.max_length is not None and self.max_length < 1:
            raise Problem("max_length must be at least 1", ("max_length",))
        self._check_unknown_policy()
        self._check_wording()
        self._check_written_form()
        if role == "protected":
            self._check_protected()
        elif not self.required:
            raise Problem("only a protected column may be absent from a file (required: false); "
                          "every other declared column must be in the header", ("required",))
        return self

    def _check_unknown_policy(self) -> None:
        if self.type != "category":
            if self.on_unknown is not None or self.other is not None:
                key = "on_unknown" if self.on_unknown is not None else "other"
                raise Problem("on_unknown and other apply to category columns only", (key,))
            return
        if self.on_unknown == "other":
            if self.other is None:
                raise Problem("on_unknown: other needs the category to map to: add other: "
                              f"<one of {', '.join(self.categories)}>", ("other",))
            if self.other not in self.categories:
                raise Problem(f"other must be one of the declared categories "
                              f"({', '.join(self.categories)}), got {self.other!r}", ("other",))
        elif self.other is not None:
            raise Problem(f"other is used only with on_unknown: other (this column has "
                          f"on_unknown: {self.on_unknown})", ("other",))
        clash = [v for v in self.missing_values if v in self.categories]
        if clash:
            raise Problem(f"{clash[0]!r} is both a category and a missing value", ("missing_values",))

    def _check_wording(self) -> None:
        if self.reason_category is None:
            return
        if self.type != "category":
            raise Problem(f"reason_category applies to category columns only (this one is "
                          f"{self.type}): use reason_high or reason_low", ("reason_category",))
        if isinstance(self.reason_category, str):
            return
        for i, (code, _) in enumerate(self.reason_category):
            if code not in self.categories:
                raise Problem(f"{code!r} is not one of the declared categories "
                              f"({', '.join(self.categories)})", ("reason_category", i))

    def category_reason(self, code: str) -> str | None:
        """The lender's statement for a code of this category column: its own, or the one
        for every code; None when the config words no reason for it."""
        wording = self.reason_category
        if wording is None or isinstance(wording, str):
            return wording
        return dict(wording).get(code)

    def _check_written_form(self) -> None:
        number_keys = [k for k in ("thousands", "strip", "percent", "codes") if getattr(self, k)]
        number_keys += ["decimal"] if self.decimal != "." else []
        if number_keys and not self.is_numeric:
            raise Problem(f"{number_keys[0]} applies to number columns, not to a {self.type} column",
                          (number_keys[0],))
        marks = (*THOUSANDS_MARKS, ".") if self.decimal == "," else THOUSANDS_MARKS
        if self.thousands is not None and self.thousands not in marks or self.thousands == self.decimal:
            shown = ", ".join(repr(m) for m in marks if m != self.decimal)
            why = {".": " ('.' is the decimal mark here: for 1.250,50 declare decimal: \",\" too)",
                   ",": " (',' is the decimal mark here)"}.get(str(self.thousands), "")
            raise Problem(f"thousands must be one of {shown}, got {self.thousands!r}{why}",
                          ("thousands",))
        for i, text in enumerate(self.strip):
            bad = "%" if "%" in text else next((ch for ch in text if ch.isdigit() or ch in "+-.,"), None)
            if not text.strip() or bad is not None:
                hint = ("a percentage is read with percent: true (12.5% is 0.125)" if bad == "%"
                        else "list currency signs, codes or units only (no digits, signs or marks)")
                raise Problem(f"strip cannot hold {text!r}: {hint}", ("strip", i))
        for i, (code, number) in enumerate(self.codes):
            if not code.strip() or code in self.missing_values:
                why = "is blank" if not code.strip() else "is also a missing value"
                raise Problem(f"code {code!r} {why}", ("codes", i))
            if self.type == "integer" and number != int(number):
                raise Problem(f"code {code!r} reads as {number:g}, not a whole number", ("codes", i))
        if self.percent and self.type != "float":
            raise Problem("percent applies to float columns (12.5% is read as 0.125)", ("percent",))
        if self.date_format is not None:
            if self.type != "date":
                raise Problem(f"date_format applies to date columns, not to a {self.type} column",
                              ("date_format",))
            check_date_format(self.date_format)

    def cell_text(self, value: Any) -> str:
        """A value typed into a form, written as this column's cells are (a percentage as
        12.5, a date in the column's format); text is kept as it is, blank for nothing."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if self.type == "date" and isinstance(value, date):
            return value.strftime(self.date_format or ISO_DATE)
        if self.percent and isinstance(value, int | float):
            value = float(f"{float(value) * 100:.12g}")
        text = str(value)
        return text.replace(".", ",") if self.decimal == "," and isinstance(value, float) else text

    def _check_protected(self) -> None:
        if self.model_input:
            raise Problem("a protected characteristic is never a model input: remove "
                          "model_input: true (FinFlow keeps the column to report approval "
                          "rates by group)", ("model_input",))
        for key in ("reason_high", "reason_low", "reason_category"):
            if getattr(self, key) is not None:
                raise Problem("a protected characteristic is never given as a reason", (key,))

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def is_numeric(self) -> bool:
        return self.type in ("integer", "float")

    @property
    def is_model_input(self) -> bool:
        return self.role in MODEL_ROLES and bool(self.model_input)

    @property
    def is_protected(self) -> bool:
        return self.role == "protected"

    @property
    def maps_unknown(self) -> bool:
        """True when an undeclared category code keeps its row (missing or other)."""
        return self.type == "category" and self.on_unknown != "quarantine"

    @property
    def unknown_maps_to(self) -> str | None:
        """What an undeclared code becomes: ``"missing"``, the other category, or None."""
        if not self.maps_unknown:
            return None
        return self.other if self.on_unknown == "other" else "missing"


@dataclass(frozen=True, config=DECLARED)
class RatioSpec:
    """An engineered feature: sum(numerator) / sum(denominator)."""

    name: Text
    numerator: Names
    denominator: Names
    label: Text = ""
    reason_high: Text | None = None
    reason_low: Text | None = None
    unit: Unit | None = None  # e.g. money for revenue per employee; default: a plain ratio

    @model_validator(mode="after")
    def _not_empty(self) -> RatioSpec:
        for key in ("numerator", "denominator"):
            if not getattr(self, key):
                raise Problem("must name at least one column", (key,))
        return self

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def inputs(self) -> tuple[str, ...]:
        return (*self.numerator, *self.denominator)


def check_date_format(fmt: str) -> None:
    """A date format must write a month and a year (a day too, or it reads the 1st: ``Dec-2015``)
    and read back what it wrote."""
    if not (re.search(r"%[mbBj]", fmt) and re.search(r"%[yY]", fmt)):
        raise Problem(f"date_format {fmt!r} must have a month (%m, %b or %B) and a year (%Y or %y), "
                      "and usually a day (%d)", ("date_format",))
    sample = date(2026, 1, 31) if re.search(r"%[dj]", fmt) else date(2026, 1, 1)
    try:
        ok = datetime.strptime(sample.strftime(fmt), fmt).date() == sample
    except ValueError:
        ok = False
    if not ok:
        raise Problem(f"date_format {fmt!r} does not read back the dates it writes: use strptime "
                      "codes such as %Y-%m-%d or %d-%b-%y", ("date_format",))


def protected_hint(name: str) -> str | None:
    """The word of a column name that suggests a protected characteristic, if any."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)  # applicantSex -> applicant_Sex
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    for word in words:
        for hint in PROTECTED_HINTS:
            if word == hint.rstrip("*") or (hint.endswith("*") and word.startswith(hint[:-1])):
                return word
    return None


__all__ = [
    "COLUMN_TYPES", "ID_MAX_LENGTH", "ISO_DATE", "THOUSANDS_MARKS", "MODEL_ROLES", "NEVER_BLANK_ROLES",
    "NUMERIC_ROLES", "PROTECTED_HINTS", "REQUIRED_ROLES", "ROLES", "SINGLE_ROLES", "UNKNOWN_POLICIES", "ColumnSpec", "ColumnType",
    "RatioSpec", "Role", "UnknownPolicy", "protected_hint",
]
