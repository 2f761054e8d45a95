"""The statistics of an A/B test, computed from each variant's sufficient statistics.

Every function takes arrays (one value per day an experiment is looked at, or per simulated test)
and answers element by element, so a whole experiment's history, or thousands of simulated tests,
cost one call. The distributions, tests and corrections are scipy's and statsmodels': the t and
normal distributions, the chi-square goodness-of-fit test, Holm's step-down adjustment and root
finding. What is written here is the algebra around them, each formula with its source:

- a per-user mean's variance from sums and sums of squares; a ratio of sums' variance by the delta
  method (Deng et al., "Applying the Delta Method in Metric Analytics", KDD 2018);
- Welch's t-test with the Welch-Satterthwaite degrees of freedom on the absolute difference; the
  relative lift's standard error by the delta method (what GrowthBook's frequentist engine uses, and
  what the confidence sequence and the chance to win read) and its interval by Fieller's theorem,
  the ratios that Welch's test does not reject: with a few hundred users of skewed revenue the
  delta-method interval covers a null lift less often than 95 % (bench/experiments.py measures both);
- CUPED (Deng et al., WSDM 2013): the metric minus theta times its pre-exposure value, theta
  pooled over the variants;
- the asymptotic always-valid confidence sequence of Waudby-Smith et al. (2023, eq. 9, with the
  rho of eq. 161), the one GrowthBook's sequential engine uses: it holds at every look at once, so
  a daily look does not inflate false positives. No package on PyPI ships it in a form that
  installs here (`confseq` has no wheel for Python 3.11; GrowthBook's `gbstats` pins pandas < 2);
- the chance to win: the normal posterior of the relative lift under a flat prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests

# GrowthBook's default: the total sample size around which the confidence sequence is tightest.
SEQUENTIAL_TUNING = 5000
# The confidence sequence is asymptotic (normal): it is drawn, and decisions made, from this many users
# in each variant on, the minimum sample size platforms such as GrowthBook also apply before any result.
MIN_USERS_PER_VARIANT = 100
# A chi-square p-value below this flags a sample-ratio mismatch (the usual threshold: a real
# mismatch gives far smaller p-values, and checking every day must not cry wolf).
SRM_THRESHOLD = 0.001


def _array(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


@dataclass(frozen=True)
class Estimate:
    """One variant's estimate of a metric: `mean` (per user, or a ratio of sums) and the per-user
    `variance` such that the estimate's own variance is variance / n."""

    n: np.ndarray
    mean: np.ndarray
    variance: np.ndarray

    @property
    def standard_error(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(self.variance / self.n)


def sample_variance(n, total, sum_squares) -> np.ndarray:
    """The unbiased variance of values with count `n`, sum `total` and sum of squares (nan below 2)."""
    n, total, sum_squares = _array(n), _array(total), _array(sum_squares)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (sum_squares - total**2 / n) / (n - 1)
    return np.where(n >= 2, np.maximum(variance, 0.0), np.nan)


def sample_covariance(n, total_x, total_y, sum_xy) -> np.ndarray:
    n = _array(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        covariance = (_array(sum_xy) - _array(total_x) * _array(total_y) / n) / (n - 1)
    return np.where(n >= 2, covariance, np.nan)


def mean_metric(n, total, sum_squares) -> Estimate:
    """A per-user mean (orders per user, conversion rate) from the users' count, sum and sum of squares."""
    n = _array(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = _array(total) / n
    return Estimate(n, np.where(n > 0, mean, np.nan), sample_variance(n, total, sum_squares))


def ratio_metric(n, numerator, denominator, numerator_squares, denominator_squares, cross) -> Estimate:
    """A ratio of sums over users (average order value = revenue / orders), by the delta method:
    Var(N/D) ~ (s_N^2 / m_D^2 - 2 m_N s_ND / m_D^3 + m_N^2 s_D^2 / m_D^4) / n, with per-user means m
    and (co)variances s."""
    n = _array(n)
    var_n = sample_variance(n, numerator, numerator_squares)
    var_d = sample_variance(n, denominator, denominator_squares)
    cov = sample_covariance(n, numerator, denominator, cross)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_n, mean_d = _array(numerator) / n, _array(denominator) / n
        ratio = mean_n / mean_d
        variance = var_n / mean_d**2 - 2 * mean_n * cov / mean_d**3 + mean_n**2 * var_d / mean_d**4
    ok = (n > 0) & (mean_d != 0)
    return Estimate(n, np.where(ok, ratio, np.nan), np.where(ok, variance, np.nan))


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: the absolute difference and the relative lift (treatment / control - 1),
    each with its two-sided confidence interval, and Welch's test of no difference."""

    absolute: np.ndarray
    absolute_lower: np.ndarray
    absolute_upper: np.ndarray
    relative: np.ndarray
    relative_se: np.ndarray
    relative_lower: np.ndarray
    relative_upper: np.ndarray
    t_statistic: np.ndarray
    df: np.ndarray
    p_value: np.ndarray


def welch_df(control: Estimate, treatment: Estimate) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom."""
    a, b = control.variance / control.n, treatment.variance / treatment.n
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a + b) ** 2 / (a**2 / (control.n - 1) + b**2 / (treatment.n - 1))


def relative_variance(control: Estimate, treatment: Estimate) -> np.ndarray:
    """Var(treatment / control - 1) by the delta method, the variants independent."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (treatment.variance / (control.mean**2 * treatment.n)
                + control.variance * treatment.mean**2 / (control.mean**4 * control.n))


def fieller_interval(control: Estimate, treatment: Estimate, quantile) -> tuple[np.ndarray, np.ndarray]:
    """The interval of treatment / control - 1 by Fieller's theorem: the ratios R for which
    (mean_t - R mean_c)^2 <= q^2 (se_t^2 + R^2 se_c^2), the variants independent. Unbounded (nan)
    while the control's mean is not itself distinguishable from zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        se_c2, se_t2 = control.variance / control.n, treatment.variance / treatment.n
        a = control.mean**2 - quantile**2 * se_c2
        b = treatment.mean * control.mean
        root = np.sqrt(b**2 - a * (treatment.mean**2 - quantile**2 * se_t2))
        bounded = a > 0
        return np.where(bounded, (b - root) / a - 1, np.nan), np.where(bounded, (b + root) / a - 1, np.nan)


def compare(control: Estimate, treatment: Estimate, alpha: float = 0.05) -> Comparison:
    """Welch's t-test and interval for the difference; the relative lift with its delta-method
    standard error and its Fieller interval, which holds zero exactly when the test does not reject."""
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = treatment.mean - control.mean
        se = np.sqrt(control.variance / control.n + treatment.variance / treatment.n)
        df = welch_df(control, treatment)
        t = diff / se
        p = 2 * stats.t.sf(np.abs(t), df)
        q = stats.t.ppf(1 - alpha / 2, df)
        defined = control.mean != 0  # no lift relative to nothing
        relative = np.where(defined, treatment.mean / control.mean - 1, np.nan)
        relative_se = np.where(defined, np.sqrt(relative_variance(control, treatment)), np.nan)
    lower, upper = fieller_interval(control, treatment, q)
    return Comparison(diff, diff - q * se, diff + q * se, relative, relative_se, lower, upper, t, df, p)


@dataclass(frozen=True)
class Cuped:
    control: Estimate
    treatment: Estimate
    theta: np.ndarray
    variance_reduction: np.ndarray  # 1 - Var(adjusted difference) / Var(difference)


def cuped(control_post: Estimate, treatment_post: Estimate, moments: dict[str, dict[str, np.ndarray]]) -> Cuped:
    """CUPED: each user's metric y minus theta (x - mean x), x the same metric before exposure.

    `moments[arm]` (arm "control" or "treatment") holds the sums "x", "xx" and "xy" of the arm's
    users; theta = Cov(x, y) / Var(x) over both arms together. The adjusted means keep the metric's
    scale (x is centred on its pooled mean), so the relative lift reads as the unadjusted one.
    """
    c, t = moments["control"], moments["treatment"]
    n = control_post.n + treatment_post.n
    total_y = control_post.mean * control_post.n + treatment_post.mean * treatment_post.n
    pooled_sxy = c["xy"] + t["xy"]
    var_x = sample_variance(n, c["x"] + t["x"], c["xx"] + t["xx"])
    cov_xy = sample_covariance(n, c["x"] + t["x"], total_y, pooled_sxy)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(var_x > 0, cov_xy / var_x, 0.0)
        mean_x = (c["x"] + t["x"]) / n

    def adjust(post: Estimate, arm: dict[str, np.ndarray]) -> Estimate:
        with np.errstate(divide="ignore", invalid="ignore"):
            arm_mean_x = arm["x"] / post.n
        var_x_arm = sample_variance(post.n, arm["x"], arm["xx"])
        cov_arm = sample_covariance(post.n, arm["x"], post.mean * post.n, arm["xy"])
        variance = post.variance + theta**2 * var_x_arm - 2 * theta * cov_arm
        return Estimate(post.n, post.mean - theta * (arm_mean_x - mean_x), np.maximum(variance, 0.0))

    adjusted_c, adjusted_t = adjust(control_post, c), adjust(treatment_post, t)
    with np.errstate(divide="ignore", invalid="ignore"):
        before = control_post.variance / control_post.n + treatment_post.variance / treatment_post.n
        after = adjusted_c.variance / adjusted_c.n + adjusted_t.variance / adjusted_t.n
        reduction = 1 - after / before
    return Cuped(adjusted_c, adjusted_t, theta, reduction)


def sequential_halfwidth(standard_error, n_total, alpha: float = 0.05,
                         tuning: float = SEQUENTIAL_TUNING) -> np.ndarray:
    """Half the width of the always-valid (1 - alpha) confidence sequence around an estimate whose
    standard error is `standard_error` after `n_total` users (Waudby-Smith et al. 2023, eq. 9)."""
    n = _array(n_total)
    rho_sq = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning
    with np.errstate(divide="ignore", invalid="ignore"):
        per_user_var = _array(standard_error) ** 2 * n
        return np.sqrt(per_user_var * 2 * (n * rho_sq + 1) / (n**2 * rho_sq) * np.log(np.sqrt(n * rho_sq + 1) / alpha))


def confidence_sequence(estimate, standard_error, n_total, alpha: float = 0.05,
                        tuning: float = SEQUENTIAL_TUNING) -> tuple[np.ndarray, np.ndarray]:
    """The always-valid interval: with probability 1 - alpha it covers the truth at every look at once."""
    width = sequential_halfwidth(standard_error, n_total, alpha, tuning)
    return _array(estimate) - width, _array(estimate) + width


def sample_ratio_mismatch(observed, expected_shares) -> np.ndarray:
    """The chi-square goodness-of-fit p-value of users per variant against the declared shares.

    `observed` is (..., variants): one row per look; nan where no user is exposed yet."""
    observed = _array(observed)
    shares = _array(expected_shares) / np.sum(expected_shares)
    totals = observed.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = stats.chisquare(observed, f_exp=totals * shares, axis=-1).pvalue
    return np.where(totals[..., 0] > 0, p, np.nan)


def chance_to_win(relative, relative_se) -> np.ndarray:
    """P(the treatment is better) under a flat prior: the normal posterior of the lift above zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats.norm.cdf(_array(relative) / _array(relative_se))


def adjust_p_values(p_values, method: str = "holm") -> np.ndarray:
    """p-values of several metrics adjusted for their multiple comparison (statsmodels; nan kept)."""
    p = _array(p_values)
    adjusted = np.full_like(p, np.nan)
    known = ~np.isnan(p)
    if known.any():
        adjusted[known] = multipletests(p[known], method=method)[1]
    return adjusted


def users_needed(control: Estimate, minimum_detectable_effect: float, alpha: float = 0.05, power: float = 0.8,
                 tuning: float = SEQUENTIAL_TUNING) -> float:
    """Users per variant for the confidence sequence to exclude zero with probability `power` when the
    true relative lift is the minimum detectable effect (treatment assumed as variable as control).

    Solves MDE - halfwidth(n) = z_power * se(n) for n, and never answers fewer than the minimum
    sample (`MIN_USERS_PER_VARIANT`); inf if the control has no mean or variance yet.
    """
    mean, variance = float(np.asarray(control.mean)), float(np.asarray(control.variance))
    if not (np.isfinite(mean) and np.isfinite(variance)) or mean == 0 or variance <= 0:
        return float("inf")
    mde = abs(minimum_detectable_effect)
    z = stats.norm.ppf(power)
    per_user = variance * (1 + (1 + mde) ** 2) / mean**2  # n * Var(relative lift), equal n per variant

    def margin(n: float) -> float:
        se = np.sqrt(per_user / n)
        return mde - float(sequential_halfwidth(se, 2 * n, alpha, tuning)) - z * se

    low, high = float(MIN_USERS_PER_VARIANT), 1e12
    if margin(high) < 0:
        return float("inf")
    if margin(low) >= 0:
        return low
    return float(optimize.brentq(margin, low, high, xtol=0.5))
