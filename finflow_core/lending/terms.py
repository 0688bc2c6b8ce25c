"""The words of small-business lending as FinFlow uses them: one type per idea.

They are ``StrEnum``s, so a stored or typed value compares equal to its member
(``Band("medium") is Band.MEDIUM``, ``Band.MEDIUM == "medium"``) and JSON, CSV and the
database keep plain text.
"""

from __future__ import annotations

from enum import StrEnum


class Band(StrEnum):
    """Risk band a probability of default falls in."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Recommendation(StrEnum):
    """What the strategy does with a band."""

    APPROVE = "approve"
    REVIEW = "review"
    DECLINE = "decline"


class Outcome(StrEnum):
    """A recorded decision: automatic (approve, decline) or an officer's (also refer)."""

    APPROVE = "approve"
    DECLINE = "decline"
    REFER = "refer"


class Status(StrEnum):
    """Where an application stands now."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    REFERRED = "referred"


class DecisionKind(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class DriftStatus(StrEnum):
    """PSI verdict; ``INSUFFICIENT`` when too few rows were seen for PSI to mean anything."""

    STABLE = "stable"
    WATCH = "watch"
    ALERT = "alert"
    INSUFFICIENT = "insufficient_data"


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"


class Role(StrEnum):
    """What a person does in the lending team (a user may hold several)."""

    ANALYST = "analyst"
    OFFICER = "officer"
    MANAGER = "manager"
    ADMIN = "admin"


BANDS: tuple[Band, ...] = (Band.LOW, Band.MEDIUM, Band.HIGH)
ROLES: tuple[Role, ...] = tuple(Role)
#: The strategy: low risk approved, high risk declined, the middle band to a person.
BAND_RECOMMENDATION: dict[Band, Recommendation] = {
    Band.LOW: Recommendation.APPROVE, Band.MEDIUM: Recommendation.REVIEW, Band.HIGH: Recommendation.DECLINE,
}
#: Bands decided without a person, and the decision recorded for them.
AUTO_OUTCOME: dict[Band, Outcome] = {Band.LOW: Outcome.APPROVE, Band.HIGH: Outcome.DECLINE}
#: An application's status right after scoring.
STATUS_OF_BAND: dict[Band, Status] = {
    Band.LOW: Status.APPROVED, Band.MEDIUM: Status.PENDING, Band.HIGH: Status.DECLINED,
}
STATUS_OF_OUTCOME: dict[Outcome, Status] = {
    Outcome.APPROVE: Status.APPROVED, Outcome.DECLINE: Status.DECLINED, Outcome.REFER: Status.REFERRED,
}
#: Statuses an officer can still act on.
OPEN_STATUSES: tuple[Status, ...] = (Status.PENDING, Status.REFERRED)


class Light(StrEnum):
    """A supervisor's traffic light for a calibration test."""

    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    NONE = "no_data"


class Arm(StrEnum):
    """Which model and strategy decided an application in a champion-challenger test."""

    CHAMPION = "champion"
    CHALLENGER = "challenger"
class BatchOrigin(StrEnum):
    """Where a batch came from: an uploaded file, or one application typed into the form."""

    FILE = "file"
    FORM = "form"


class BatchState(StrEnum):
    """A stored batch's life: written while ``loading`` (invisible), then ``published``;
    ``aborting`` while a failed or abandoned load is removed; ``voided`` by a manager
    (kept in the history, out of the queue and the portfolio)."""

    LOADING = "loading"
    ABORTING = "aborting"
    PUBLISHED = "published"
    VOIDED = "voided"
