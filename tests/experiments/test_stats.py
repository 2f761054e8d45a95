"""The statistics on small synthetic samples: equal to statsmodels and scipy where they compute the
same thing, and covering at the nominal rate in small Monte Carlo checks where nothing does."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from ml.experiments import stats


def _moments(values: np.ndarray) -> tuple[int, float, float]:
    return len(values), values.sum(), (values**2).sum()


def test_welch_test_and_interval_equal_statsmodels_on_the_same_users():
    rng = np.random.default_rng(1)
    control, treatment = rng.poisson(0.4, 230).astype(float), rng.poisson(0.5, 190) * rng.lognormal(3, 0.6, 190)
    result = stats.compare(stats.mean_metric(*_moments(control)), stats.mean_metric(*_moments(treatment)), alpha=0.05)
    t, p, df = ttest_ind(treatment, control, usevar="unequal")
    low, high = CompareMeans(DescrStatsW(treatment), DescrStatsW(control)).tconfint_diff(alpha=0.05, usevar="unequal")
    assert (float(result.t_statistic), float(result.p_value), float(result.df)) == pytest.approx((t, p, df), rel=1e-10)
    assert (float(result.absolute_lower), float(result.absolute_upper)) == pytest.approx((low, high), rel=1e-10)
    assert float(result.absolute) == pytest.approx(treatment.mean() - control.mean(), rel=1e-12)
    scipy_t, scipy_p = scipy_stats.ttest_ind(treatment, control, equal_var=False)
    assert float(result.p_value) == pytest.approx(scipy_p, rel=1e-10)


def test_everything_is_computed_for_many_looks_at_once():
    rng = np.random.default_rng(2)
    looks = [rng.poisson(0.5, n).astype(float) for n in (40, 80, 160)]
    both = [stats.mean_metric(*_moments(v)) for v in looks]
    stacked = stats.mean_metric(*map(np.array, zip(*[_moments(v) for v in looks], strict=True)))
    assert np.allclose(stacked.variance, [b.variance for b in both])
    assert stats.mean_metric(1, 3.0, 9.0).variance != stats.mean_metric(1, 3.0, 9.0).variance  # nan below 2 users


def test_relative_lift_interval_covers_the_true_lift_at_the_nominal_rate():
    """Delta-method intervals of the lift of a per-user mean, over 4,000 simulated experiments."""
    rng = np.random.default_rng(3)
    reps, n, base, lift = 4000, 400, 0.45, 0.15
    control = rng.poisson(base, (reps, n)).astype(float)
    treatment = rng.poisson(base * (1 + lift), (reps, n)).astype(float)
    c = stats.mean_metric(n, control.sum(1), (control**2).sum(1))
    t = stats.mean_metric(n, treatment.sum(1), (treatment**2).sum(1))
    result = stats.compare(c, t)
    covered = (result.relative_lower <= lift) & (lift <= result.relative_upper)
    assert 0.935 <= covered.mean() <= 0.965


def test_the_lift_interval_holds_no_change_exactly_when_welchs_test_does_not_reject():
    """Fieller's interval inverts the same test: on 500 skewed samples it covers a lift of zero exactly
    when statsmodels' Welch test has p >= alpha, where the delta-method interval sometimes does not."""
    rng = np.random.default_rng(8)
    agree, delta_agree = [], []
    for _ in range(500):
        control = rng.poisson(0.3, 120) * rng.lognormal(3.5, 1.0, 120)
        treatment = rng.poisson(0.3, 110) * rng.lognormal(3.5, 1.0, 110)
        result = stats.compare(stats.mean_metric(*_moments(control)), stats.mean_metric(*_moments(treatment)))
        _, p, _ = ttest_ind(treatment, control, usevar="unequal")
        unbounded = np.isnan(result.relative_lower)  # the control's mean is not told from zero: every lift
        agree.append((unbounded or result.relative_lower <= 0 <= result.relative_upper) == (p >= 0.05))
        q = scipy_stats.t.ppf(0.975, result.df)
        delta_agree.append((abs(result.relative) <= q * result.relative_se) == (p >= 0.05))
    assert all(agree) and not all(delta_agree)


def test_a_ratio_metric_by_the_delta_method():
    rng = np.random.default_rng(4)
    orders = rng.poisson(1.2, 500).astype(float)
    revenue = orders * rng.lognormal(3.5, 0.4, 500)
    ratio = stats.ratio_metric(500, revenue.sum(), orders.sum(), (revenue**2).sum(), (orders**2).sum(),
                               (revenue * orders).sum())
    assert float(ratio.mean) == pytest.approx(revenue.sum() / orders.sum())
    # the delta method's variance is the variance of each user's linearised contribution
    linearised = (revenue - ratio.mean * orders) / orders.mean()
    assert float(ratio.variance) == pytest.approx(linearised.var(ddof=1), rel=1e-9)
    # with one unit of denominator per user, a ratio is a per-user mean
    as_ratio = stats.ratio_metric(500, revenue.sum(), 500.0, (revenue**2).sum(), 500.0, revenue.sum())
    as_mean = stats.mean_metric(*_moments(revenue))
    assert (float(as_ratio.mean), float(as_ratio.variance)) == pytest.approx(
        (float(as_mean.mean), float(as_mean.variance)), rel=1e-9)


def test_cuped_adjusts_by_the_pooled_regression_slope_and_removes_the_explained_variance():
    rng = np.random.default_rng(5)
    pre_c, pre_t = rng.gamma(2, 1, 300), rng.gamma(2, 1, 280)
    post_c, post_t = pre_c + rng.normal(0, 1, 300), 0.3 + pre_t + rng.normal(0, 1, 280)

    def arm(pre, post):
        return {"x": pre.sum(), "xx": (pre**2).sum(), "xy": (pre * post).sum()}

    c, t = stats.mean_metric(*_moments(post_c)), stats.mean_metric(*_moments(post_t))
    result = stats.cuped(c, t, {"control": arm(pre_c, post_c), "treatment": arm(pre_t, post_t)})
    x, y = np.r_[pre_c, pre_t], np.r_[post_c, post_t]
    slope = OLS(y - y.mean(), x - x.mean()).fit().params[0]
    assert float(result.theta) == pytest.approx(slope, rel=1e-9)
    adjusted_c, adjusted_t = post_c - slope * (pre_c - x.mean()), post_t - slope * (pre_t - x.mean())
    # the adjusted comparison is Welch's test on the adjusted values, as statsmodels computes it
    adjusted = stats.compare(result.control, result.treatment)
    t_stat, p, df = ttest_ind(adjusted_t, adjusted_c, usevar="unequal")
    assert (float(adjusted.t_statistic), float(adjusted.p_value), float(adjusted.df)) == pytest.approx((t_stat, p, df),
                                                                                                    rel=1e-8)
    correlation = np.corrcoef(x, y)[0, 1]
    assert float(result.variance_reduction) == pytest.approx(correlation**2, abs=0.05)
    assert float(result.variance_reduction) > 0.4


def test_sample_ratio_mismatch_is_scipys_chi_square_and_flags_a_60_40_split():
    p = stats.sample_ratio_mismatch([[600, 400], [505, 495], [0, 0]], [0.5, 0.5])
    assert p[0] == pytest.approx(scipy_stats.chisquare([600, 400]).pvalue) and p[0] < stats.SRM_THRESHOLD
    assert p[1] > 0.5 and np.isnan(p[2])
    assert stats.sample_ratio_mismatch([700, 300], [70, 30]) == pytest.approx(1.0)


def test_the_confidence_sequence_is_wider_than_the_interval_and_valid_under_daily_looks():
    rng = np.random.default_rng(6)
    assert stats.sequential_halfwidth(0.1, 1000) > scipy_stats.norm.ppf(0.975) * 0.1
    # 2,000 A/A streams looked at after every 100 users per arm, 30 times: the fixed-horizon test
    # rejects somewhere far more often than 5 %; the sequence stays under
    reps, looks, step = 2000, 30, 100
    a = rng.normal(1.0, 2.0, (reps, looks * step)).reshape(reps, looks, step).sum(2).cumsum(1)
    b = rng.normal(1.0, 2.0, (reps, looks * step)).reshape(reps, looks, step).sum(2).cumsum(1)
    n = step * np.arange(1, looks + 1)
    diff, se = (b - a) / n, np.sqrt(2 * 4.0 / n)
    low, high = stats.confidence_sequence(diff, se, 2 * n)
    assert ((low > 0) | (high < 0)).any(axis=1).mean() < 0.05
    assert (np.abs(diff / se) > scipy_stats.norm.ppf(0.975)).any(axis=1).mean() > 0.15


def test_chance_to_win_and_holm_adjustment_come_from_the_normal_and_statsmodels():
    assert stats.chance_to_win(0.0, 0.1) == pytest.approx(0.5)
    assert stats.chance_to_win(0.2, 0.1) == pytest.approx(scipy_stats.norm.cdf(2.0))
    p = np.array([0.01, 0.04, np.nan, 0.03])
    adjusted = stats.adjust_p_values(p)
    assert np.isnan(adjusted[2])
    assert adjusted[[0, 1, 3]] == pytest.approx(multipletests(p[[0, 1, 3]], method="holm")[1])


def test_users_needed_gives_the_planned_power_to_the_sequence_and_more_than_a_single_look_needs():
    control = stats.Estimate(np.array(500.0), np.array(0.45), np.array(0.5))
    needed = stats.users_needed(control, 0.1, alpha=0.05, power=0.8)
    se = np.sqrt(0.5 * (1 + 1.1**2) / 0.45**2 / needed)
    power = scipy_stats.norm.cdf((0.1 - stats.sequential_halfwidth(se, 2 * needed)) / se)
    assert power == pytest.approx(0.8, abs=1e-3)
    fixed = NormalIndPower().solve_power(effect_size=0.045 / np.sqrt(0.5), alpha=0.05, power=0.8)
    assert fixed < needed < 10 * fixed
    assert stats.users_needed(control, 0.2) < needed
    assert stats.users_needed(stats.Estimate(np.array(9.0), np.array(0.0), np.array(0.0)), 0.1) == float("inf")
    assert stats.users_needed(stats.Estimate(np.array(9.0), np.array(100.0), np.array(1e-6)), 0.1) == \
        stats.MIN_USERS_PER_VARIANT
