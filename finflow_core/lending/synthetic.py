"""Seeded synthetic small-business loan applications for research, demos and tests.

The default is drawn from a logistic risk score ``sum(beta_i * x_i) - 3.5 + noise``. The
noise stands for what a lender cannot observe, so ``true_pd`` is the default probability
given the observable application: the average of the logistic over the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

INTERCEPT = -3.5
NOISE_SD = 0.6

INDUSTRIES: dict[str, tuple[float, float]] = {
    # name: (share of applications, risk offset)
    "retail": (0.17, 0.30),
    "hospitality": (0.12, 0.55),
    "construction": (0.13, 0.40),
    "manufacturing": (0.11, 0.05),
    "professional_services": (0.14, -0.30),
    "healthcare": (0.09, -0.35),
    "technology": (0.09, 0.10),
    "transport": (0.08, 0.25),
    "agriculture": (0.07, 0.15),
}
REGIONS: dict[str, tuple[float, float]] = {
    "northeast": (0.22, -0.10),
    "southeast": (0.22, 0.10),
    "midwest": (0.20, 0.00),
    "southwest": (0.16, 0.12),
    "west": (0.20, -0.05),
}
COLLATERAL: dict[str, tuple[float, float]] = {
    "none": (0.45, 0.0),
    "partial": (0.35, -0.35),
    "full": (0.20, -0.70),
}
TERMS = np.array([12, 24, 36, 48, 60])
TERM_SHARES = np.array([0.15, 0.25, 0.30, 0.15, 0.15])


@dataclass(frozen=True)
class Scenario:
    """A population shift, as a downturn or a new market would cause."""

    name: str
    description: str
    revenue_factor: float = 1.0
    loan_factor: float = 1.0
    credit_shift: float = 0.0
    delinquency_factor: float = 1.0
    dti_shift: float = 0.0
    years_factor: float = 1.0
    industry_tilt: tuple[tuple[str, float], ...] = ()


SCENARIOS: dict[str, Scenario] = {
    "none": Scenario("none", "the population the model was trained on"),
    "recession": Scenario(
        "recession",
        "revenues fall, credit scores and arrears worsen, businesses borrow more relative to revenue",
        revenue_factor=0.70,
        loan_factor=1.10,
        credit_shift=-45.0,
        delinquency_factor=2.2,
        dti_shift=0.18,
        industry_tilt=(("hospitality", 1.8), ("retail", 1.5), ("construction", 1.4)),
    ),
    "expansion": Scenario(
        "expansion",
        "young technology businesses ask for larger loans in a growing market",
        loan_factor=1.6,
        years_factor=0.45,
        credit_shift=10.0,
        industry_tilt=(("technology", 3.0), ("professional_services", 1.5)),
    ),
}


def generate_applications(
    rows: int,
    seed: int = 0,
    *,
    drift: str = "none",
    with_truth: bool = False,
    start: date = date(2026, 1, 5),
    days: int = 7,
) -> pd.DataFrame:
    """Applications with a ``default`` label (and ``true_pd`` when asked), reproducible by seed."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    if drift not in SCENARIOS:
        raise ValueError(f"unknown drift scenario {drift!r}; choose from {', '.join(SCENARIOS)}")
    sc = SCENARIOS[drift]
    rng = np.random.default_rng(seed)

    industry = _draw(rng, INDUSTRIES, rows, dict(sc.industry_tilt))
    region = _draw(rng, REGIONS, rows)
    collateral = _draw(rng, COLLATERAL, rows)
    years = np.round(np.clip(rng.lognormal(np.log(6.0), 0.8, rows) * sc.years_factor, 0.1, 80), 1)
    employees = np.clip(np.round(rng.lognormal(np.log(8) + 0.25 * np.log1p(years), 0.9)), 1, 5000)
    revenue = np.round(
        np.clip(employees * rng.lognormal(np.log(90_000), 0.45, rows) * sc.revenue_factor,
                20_000, 500_000_000), -2
    )
    credit = np.clip(
        np.round(rng.normal(695 + 6 * np.log1p(years) + sc.credit_shift, 55, rows)), 300, 850
    ).astype(int)
    loan_ratio = rng.lognormal(np.log(0.18), 0.55, rows) * sc.loan_factor
    loan = np.round(np.clip(revenue * loan_ratio, 5_000, 5_000_000), -2)
    term = rng.choice(TERMS, size=rows, p=TERM_SHARES)
    debt = np.round(revenue * rng.gamma(1.5, 0.12, rows) * rng.binomial(1, 0.75, rows), -2)
    dti = np.round(np.clip(debt * 0.35 / revenue + rng.normal(0.22, 0.07, rows) + sc.dti_shift,
                           0.0, 5.0), 3)
    lam = np.exp(-1.6 + (650 - credit) / 60) * sc.delinquency_factor
    delinquencies = np.minimum(rng.poisson(lam), 30)
    coll_none = (collateral == "none").astype(float)
    rate = np.round(np.clip(
        0.10 + 0.0005 * (760 - credit) + 0.02 * coll_none + 0.0008 * (term - 36)
        + rng.normal(0, 0.015, rows), 0.05, 0.36), 4)

    z = risk_score(credit=credit, loan=loan, revenue=revenue, dti=dti, delinquencies=delinquencies,
                   years=years, employees=employees, term=term, industry=industry, region=region,
                   collateral=collateral)
    true_pd = expected_logistic(z, NOISE_SD)
    default = rng.binomial(1, true_pd)

    # a few applications leave employees blank, as real forms do
    employees_col = pd.array(employees.astype("int64"), dtype="Int64")
    employees_col[rng.random(rows) < 0.02] = pd.NA

    offsets = rng.integers(0, max(days, 1), rows)
    dates = [(start + timedelta(days=int(o))).isoformat() for o in offsets]
    df = pd.DataFrame(
        {
            "application_id": [f"APP-{seed}-{i + 1:07d}" for i in range(rows)],
            "application_date": dates,
            "annual_revenue": revenue,
            "loan_amount": loan,
            "term_months": term.astype("int64"),
            "interest_rate": rate,
            "credit_score": credit,
            "years_in_business": years,
            "employees": employees_col,
            "existing_debt": debt,
            "debt_to_income": dti,
            "recent_delinquencies": delinquencies.astype("int64"),
            "industry": industry,
            "region": region,
            "collateral": collateral,
            "default": default.astype("int64"),
        }
    )
    if with_truth:
        df["true_pd"] = np.round(true_pd, 6)
    return df


def risk_score(*, credit: np.ndarray, loan: np.ndarray, revenue: np.ndarray, dti: np.ndarray,
               delinquencies: np.ndarray, years: np.ndarray, employees: np.ndarray, term: np.ndarray,
               industry: np.ndarray, region: np.ndarray, collateral: np.ndarray) -> np.ndarray:
    """The generator's logistic risk score (before the unobservable noise)."""
    return (
        INTERCEPT
        + 0.024 * (694 - credit)
        + 1.1 * np.log(loan / revenue / 0.05)
        + 2.5 * dti
        + 0.55 * delinquencies
        - 0.30 * np.log1p(years)
        - 0.12 * np.log1p(employees)
        + 0.008 * (term - 12)
        + _offsets(industry, INDUSTRIES)
        + _offsets(region, REGIONS)
        + _offsets(collateral, COLLATERAL)
    )


def true_default_probability(frame: pd.DataFrame, *, downturn: float = 0.0) -> np.ndarray:
    """The true probability of default of applications in the demo's columns (as stored or
    typed), optionally under a downturn that adds ``downturn`` to every risk score.

    A blank employee count (2% of demo applications) is read as the median business (8).
    """
    def num(col: str) -> np.ndarray:
        return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)

    employees = num("employees")
    employees = np.where(np.isfinite(employees), employees, 8.0)
    z = risk_score(credit=num("credit_score"), loan=num("loan_amount"), revenue=num("annual_revenue"),
                   dti=num("debt_to_income"), delinquencies=num("recent_delinquencies"),
                   years=num("years_in_business"), employees=employees, term=num("term_months"),
                   industry=frame["industry"].astype(str).to_numpy(), region=frame["region"].astype(str).to_numpy(),
                   collateral=frame["collateral"].astype(str).to_numpy())
    return expected_logistic(z + downturn, NOISE_SD)


#: Loss given default in the simulated outcomes: the config's 45%, with the spread of real recoveries.
SIMULATED_LGD = 0.45


def simulate_outcomes(frame: pd.DataFrame, *, as_of: date, seed: int = 0, downturn: float = 0.0,
                      lgd: float = SIMULATED_LGD) -> pd.DataFrame:
    """Outcome-file rows for funded demo applications, drawn from their true probability.

    A loan that will default does so in a month drawn uniformly over its term; by ``as_of``
    (months on book since its application date) it has defaulted if that month has passed,
    is 30 / 60 / 90 days past due in the three months before, and is performing otherwise.
    Loans still on book report their current state, so early delinquency shows before
    defaults mature (vintage curves).
    """
    ids = frame["application_id"].astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")  # the draw depends on the ids, not the row order
    rng = np.random.default_rng(seed)
    u_default, u_month, u_loss = rng.random(len(ids)), rng.random(len(ids)), rng.random(len(ids))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    u_default, u_month, u_loss = u_default[inv], u_month[inv], u_loss[inv]
    pd_true = true_default_probability(frame, downturn=downturn)
    term = pd.to_numeric(frame["term_months"], errors="coerce").fillna(36).to_numpy(dtype=float)
    applied = pd.to_datetime(frame["application_date"], errors="coerce")
    mob = np.maximum(((pd.Timestamp(as_of) - applied).dt.days.fillna(0).to_numpy() // 30), 0).astype(int)
    will_default = u_default < pd_true
    month = np.ceil(u_month * term).clip(1, None)
    defaulted = will_default & (month <= mob)
    ahead = month - mob  # months until default, for the loans that will default
    dpd = np.where(will_default & ~defaulted & (ahead <= 3), (4 - ahead) * 30, 0)
    dpd = np.where(defaulted, 90, dpd).astype(int)
    amount = pd.to_numeric(frame["loan_amount"], errors="coerce").to_numpy(dtype=float)
    loss = np.where(defaulted, np.round(amount * lgd * (0.6 + 0.8 * u_loss), 2), np.nan)
    return pd.DataFrame({
        "application_id": ids,
        "defaulted": np.where(defaulted, "yes", "no"),
        "observed_on": as_of.isoformat(),
        "amount_lost": loss,
        "days_past_due": dpd,
        "months_on_book": mob,
    })


def expected_logistic(z: np.ndarray, sd: float, nodes: int = 32) -> np.ndarray:
    """E[sigmoid(z + e)] for e ~ N(0, sd^2), by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    return (w[None, :] / (1.0 + np.exp(-(z[:, None] + sd * x[None, :])))).sum(axis=1)


def _draw(
    rng: np.random.Generator, table: dict[str, tuple[float, float]], n: int,
    tilt: dict[str, float] | None = None,
) -> np.ndarray:
    names = list(table)
    p = np.array([table[k][0] * (tilt or {}).get(k, 1.0) for k in names])
    return rng.choice(np.array(names, dtype=object), size=n, p=p / p.sum())


def _offsets(values: np.ndarray, table: dict[str, tuple[float, float]]) -> np.ndarray:
    lookup = {k: v[1] for k, v in table.items()}
    return np.array([lookup[v] for v in values])
