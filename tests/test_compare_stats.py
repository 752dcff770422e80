"""The comparison statistics against independent computations on fixed arrays."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats as sps

from rlkit.compare import stats


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([10.0, 1.0, 7.0, 3.0, 5.0, 9.0, 2.0, 8.0])
    middle = np.sort(x)[2:6]  # drop the lowest and highest quarter
    assert stats.iqm(x) == pytest.approx(middle.mean())
    assert stats.iqm(x) == pytest.approx(6.25 - 0.5)  # (3 + 5 + 7 + 8) / 4 = 5.75


def test_mean_std_use_the_sample_standard_deviation():
    mean, std = stats.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))


def test_welch_matches_the_hand_formula():
    x, y = np.array([2.1, 2.5, 2.9, 3.4]), np.array([1.0, 1.6, 1.1])
    res = stats.welch_test(x, y)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    p = 2 * sps.t.sf(abs(t), df)
    assert res.t == pytest.approx(t) and res.df == pytest.approx(df) and res.p == pytest.approx(p)
    assert res.diff == pytest.approx(x.mean() - y.mean())


def test_benjamini_hochberg_on_a_hand_worked_example():
    p = [0.01, 0.04, 0.03, 0.20]
    # sorted: 0.01, 0.03, 0.04, 0.20 → m·p/rank: 0.04, 0.06, 0.0533, 0.20
    # step-up minimum from the top: 0.04, 0.0533, 0.0533, 0.20 → back to input order
    expected = [0.04, 0.16 / 3, 0.16 / 3, 0.20]
    np.testing.assert_allclose(stats.benjamini_hochberg(p), expected)
    assert math.isnan(stats.benjamini_hochberg([0.5, float("nan")])[1])


def test_probability_of_improvement_known_answer():
    # pairs: 3 beats 1,2 and ties 3; 4 and 5 beat all three → (2 + 0.5 + 3 + 3) / 9
    assert stats.probability_of_improvement([3, 4, 5], [1, 2, 3]) == pytest.approx(8.5 / 9)
    assert stats.probability_of_improvement([1, 2], [1, 2]) == pytest.approx(0.5)
    u = sps.mannwhitneyu([3, 4, 5], [1, 2, 3]).statistic
    assert stats.probability_of_improvement([3, 4, 5], [1, 2, 3]) == pytest.approx(u / 9)


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate():
    x = np.array([0.3, 0.9, 0.5, 0.7, 0.4])
    a = stats.iqm_ci(x, seed=0)
    b = stats.iqm_ci(x, seed=0)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.low < a.point < a.high and a.point == pytest.approx(stats.iqm(x))  # a real width
    assert x.min() <= a.low and a.high <= x.max()  # IQM replicates stay within the data
    rng = np.random.default_rng(0)  # the same percentile bootstrap, computed here
    reps = sps.trim_mean(x[rng.integers(0, x.size, size=(2000, x.size))], 0.25, axis=1)
    np.testing.assert_allclose((a.low, a.high), np.percentile(reps, [2.5, 97.5]))
    poi = stats.probability_of_improvement_ci([3, 4, 5], [1, 2, 3], seed=1)
    assert poi.low <= poi.point <= poi.high <= 1.0


def test_stratified_bootstrap_resamples_within_each_task():
    # two tasks with very different scales: a stratified resample keeps one run per task row
    scores = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])  # runs × tasks
    ci = stats.iqm_ci(scores, seed=0, n_resamples=500)
    assert 0 < ci.low <= ci.point <= ci.high < 102


def test_few_seeds_warning_uses_the_exact_rank_test_floor():
    for n, m in [(3, 3), (2, 4), (4, 4)]:
        floor = 2 / math.comb(n + m, n)
        assert stats.min_exact_mannwhitney_p(n, m) == pytest.approx(floor)
        # scipy's exact test on perfectly separated samples reaches exactly that floor
        exact = sps.mannwhitneyu(np.arange(n) + 100, np.arange(m), method="exact").pvalue
        assert exact == pytest.approx(floor)
    warning = stats.few_seeds_warning(3, 3)
    assert warning is not None and "0.1" in warning
    assert stats.few_seeds_warning(6, 6) is None


def test_pairwise_comparisons_cover_every_pair_and_adjust():
    scores = {"a": np.array([3.0, 4.0, 5.0]), "b": np.array([1.0, 2.0, 3.0]),
              "c": np.array([0.0, 0.5, 1.0])}
    result = stats.pairwise_comparisons(scores, seed=0)
    assert [(r.a, r.b) for r in result] == list(combinations(scores, 2))  # a before b
    for r in result:
        ref = sps.ttest_ind(scores[r.a], scores[r.b], equal_var=False)
        assert r.welch.t == pytest.approx(ref.statistic) and r.welch.p == pytest.approx(ref.pvalue)
        assert r.welch.diff == pytest.approx(scores[r.a].mean() - scores[r.b].mean())
        assert r.welch.diff > 0 and r.poi.point > 0.5  # a is the better of each pair here
    # BH by hand on the three raw p-values: sort, scale by m/rank, step-up minimum
    raw = np.array([r.welch.p for r in result])
    order = np.argsort(raw)
    scaled = raw[order] * 3 / np.array([1, 2, 3])
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    expected = np.empty(3)
    expected[order] = np.minimum(stepped, 1.0)
    np.testing.assert_allclose([r.p_adjusted for r in result], expected)


def test_probability_of_improvement_for_a_lower_is_better_metric_flips():
    scores = {"low": np.array([1.0, 2.0, 3.0]), "high": np.array([3.0, 4.0, 5.0])}
    (pair,) = stats.pairwise_comparisons(scores, goal="min", seed=0)
    assert pair.poi.point == pytest.approx(8.5 / 9)  # "low" improves on "high" when min is best


def test_common_grid_keeps_shared_x_and_interpolates_otherwise():
    x = np.array([0.0, 10.0, 20.0])
    grid, ys = stats.common_grid([x, x], [x * 2, x * 3])
    np.testing.assert_array_equal(grid, x)  # same evaluation schedule: no interpolation
    np.testing.assert_array_equal(ys, [x * 2, x * 3])
    grid, ys = stats.common_grid([x, x + 5.0], [x, x + 5.0], n_points=5)
    assert grid[0] == 5.0 and grid[-1] == 20.0  # only the range both runs cover
    np.testing.assert_allclose(ys, [grid, grid])  # y = x on both lines
    assert stats.common_grid([x, x + 100.0], [x, x]) is None  # nothing shared


def test_bootstrap_band_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(3)
    ys = rng.normal(size=(5, 7)) + np.arange(7)
    a = stats.bootstrap_band(np.arange(7), ys, seed=0, n_resamples=300)
    b = stats.bootstrap_band(np.arange(7), ys, seed=0, n_resamples=300)
    np.testing.assert_array_equal(a.low, b.low)
    np.testing.assert_allclose(a.mean, ys.mean(axis=0))
    assert np.all(a.low <= a.mean) and np.all(a.mean <= a.high) and np.all(a.low < a.high)
    one = stats.bootstrap_band(np.arange(7), ys[:1])
    np.testing.assert_array_equal(one.low, one.high)  # one seed: no spread to show


# --------------------------------------------------------------------------- honest aggregates


def test_aggregate_is_a_range_below_five_seeds_and_an_iqm_interval_from_five():
    three = stats.aggregate([0.1, 0.5, 0.3], n_resamples=200)
    assert (three.centre, three.interval) == ("mean", "range")  # IQM would trim nothing
    assert three.point == pytest.approx(0.3) and (three.low, three.high) == (0.1, 0.5)
    assert three.header() == "mean [range over 3 seeds]" and "95" not in three.header()

    four = stats.aggregate([0.0, 1.0, 2.0, 10.0], n_resamples=200)
    assert (four.centre, four.interval) == ("IQM", "range")  # 4 runs: one trimmed per end
    assert four.point == pytest.approx(1.5) and (four.low, four.high) == (0.0, 10.0)

    six = stats.aggregate([0.1, 0.5, 0.3, 0.2, 0.4, 0.35], n_resamples=500, seed=3)
    assert (six.centre, six.interval, six.header()) == ("IQM", "ci", "IQM [95% CI]")
    assert six.point == pytest.approx(stats.iqm([0.1, 0.5, 0.3, 0.2, 0.4, 0.35]))
    assert six.low < six.point < six.high

    one = stats.aggregate([0.7])
    assert one.interval == "none" and one.low == one.high == one.point == 0.7


def test_curve_band_is_the_min_max_range_below_five_seeds():
    ys = np.array([[0.0, 1.0, 2.0], [1.0, 3.0, 2.0], [2.0, 2.0, 5.0]])
    band = stats.curve_band(np.arange(3), ys)
    assert band.interval == "range" and "range over 3" in band.describe()
    np.testing.assert_array_equal(band.low, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(band.high, [2.0, 3.0, 5.0])
    rng = np.random.default_rng(0)
    assert stats.curve_band(np.arange(3), rng.normal(size=(5, 3)), n_resamples=100).interval == "ci"


def test_seeds_for_power_on_hand_values():
    # s_a² = 0.04, s_b² = 0.09, δ = 0.4: (1.959964 + 0.841621)² · 0.13 / 0.16 = 6.377 → 7
    a, b = [0.0, 0.2, 0.4], [0.3, 0.6, 0.9]
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert z**2 == pytest.approx(7.848879, abs=1e-5)
    assert stats.seeds_for_power(a, b) == 7 == stats.seeds_for_power(b, a)
    # half the difference needs four times the seeds: 25.5 → 26
    assert stats.seeds_for_power([0.0, 0.2, 0.4], [0.1, 0.4, 0.7]) == math.ceil(z**2 * 0.13 / 0.04)
    assert stats.seeds_for_power([1.0, 2.0], [1.0, 2.0]) == math.inf  # no difference observed
    assert math.isnan(stats.seeds_for_power([1.0], [1.0, 2.0]))  # variance unknown
    assert stats.seeds_for_power([1.0, 1.0], [2.0, 2.0]) == 2  # no noise: a variance needs 2
    pair = stats.pairwise_comparisons({"a": np.array(b), "b": np.array(a)}, seed=0)[0]
    assert pair.seeds_for_power == 7


def test_normalized_auc_on_hand_values():
    # trapezoids: 10·(0+1)/2 + 20·(1+1)/2 = 25 over a span of 30
    assert stats.normalized_auc([0, 10, 30], [0, 1, 1]) == pytest.approx(25 / 30)
    assert stats.normalized_auc([30, 0, 10], [1, 0, 1]) == pytest.approx(25 / 30)  # unsorted
    assert stats.normalized_auc([100, 200], [2, 4]) == pytest.approx(3.0)  # average height
    assert math.isnan(stats.normalized_auc([5], [1]))
    assert math.isnan(stats.normalized_auc([5, 5], [1, 2]))


def test_stratified_bootstrap_keeps_three_draws_per_task():
    # review probe m2: a pooled bootstrap would mix the tasks' draws
    scores = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])  # [3 runs, 2 tasks]
    reps = stats.stratified_bootstrap(scores, n_resamples=400, seed=0)
    assert reps.shape == (400, 6)
    assert np.isin(reps[:, :3], [0.0, 1.0, 2.0]).all()  # task 0's columns: its runs only
    assert np.isin(reps[:, 3:], [100.0, 101.0, 102.0]).all()
    assert ((reps < 50).sum(axis=1) == 3).all()  # every replicate: exactly 3 per task


def test_stratified_interval_differs_from_a_pooled_one():
    # With tasks as strata every replicate holds 3 low and 3 high scores; the IQM drops one
    # of each end and averages 2 low + 2 high, so it always lies in [50, 52]. Resampling the 6
    # pooled scores instead draws e.g. 5 low + 1 high (IQM ≈ 1): a far wider interval.
    scores = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])
    ci = stats.iqm_ci(scores, seed=0, n_resamples=2000)
    assert 50.0 <= ci.low <= ci.point <= ci.high <= 52.0
    rng = np.random.default_rng(0)
    pooled = stats.flat(scores)[rng.integers(0, 6, size=(2000, 6))]
    lo, hi = np.percentile(stats.iqm_rows(pooled), [2.5, 97.5])
    assert lo < 40 and hi > 60
