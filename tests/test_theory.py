"""Reference solutions of the Dichotomy theory against problems small enough to check by hand."""
import numpy as np
import pytest
from scipy.optimize import minimize

from landscape.tasks.theory import (
    classification_error, cosine, kernel_completion, l1_max_margin, l2_max_margin, margin, min_nuclear_completion,
)


def test_max_margin_of_one_point_differs_between_l2_and_l1():
    x, y = np.array([[2.0, 1.0]]), np.array([1.0])
    np.testing.assert_allclose(l2_max_margin(x, y), [0.4, 0.2], atol=1e-9)  # x / ||x||^2
    np.testing.assert_allclose(l1_max_margin(x, y), [0.5, 0.0], atol=1e-9)  # all weight on the largest coordinate


def test_max_margin_of_two_points_with_both_constraints_active():
    # 2 w1 + w2 >= 1 and -w1 + w2 >= 1: (0, 1) is optimal in both norms.
    x, y = np.array([[2.0, 1.0], [1.0, -1.0]]), np.array([1.0, -1.0])
    for solve in (l2_max_margin, l1_max_margin):
        np.testing.assert_allclose(solve(x, y), [0.0, 1.0], atol=1e-9)


def test_l2_max_margin_matches_a_generic_solver():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 6))
    y = np.sign(x @ rng.standard_normal(6))
    w = l2_max_margin(x, y)
    generic = minimize(lambda v: v @ v, np.ones(6) * 10, method="SLSQP",
                       constraints={"type": "ineq", "fun": lambda v: y * (x @ v) - 1}).x
    assert margin(w, x, y) == pytest.approx(1.0, abs=1e-9)
    assert w @ w == pytest.approx(generic @ generic, rel=1e-5)
    w1 = l1_max_margin(x, y)
    assert margin(w1, x, y) == pytest.approx(1.0, abs=1e-7)
    assert np.abs(w1).sum() <= np.abs(w).sum() / margin(w, x, y) + 1e-9


@pytest.mark.parametrize("solve", [l2_max_margin, l1_max_margin])
def test_max_margin_rejects_inseparable_data(solve):
    x, y = np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([1.0, -1.0])
    with pytest.raises(ValueError, match="separable"):
        solve(x, y)


def test_ties_count_half_and_cosine_of_zero_is_nan():
    assert classification_error(np.array([1.0, -1.0, 0.0]), np.ones(3)) == pytest.approx(0.5)
    assert np.isnan(cosine(np.zeros(3), np.ones(3)))
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 2.0])) == pytest.approx(2 ** -0.5)


def test_kernel_completion_fits_observed_entries_and_their_transposes_only():
    w = kernel_completion(np.array([0, 2]), np.array([1, 2]), np.array([5.0, 7.0]), 3)
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = 5.0
    expected[2, 2] = 7.0
    np.testing.assert_array_equal(w, expected)


def test_nuclear_completion_of_a_2x2_by_hand():
    # W = [[1, 1], [1, c]]: ||W||_* = 1 + c for c >= 1, sqrt((1 - c)^2 + 4) > 2 below: c = 1 is optimal.
    result = min_nuclear_completion(np.array([0, 0]), np.array([0, 1]), np.array([1.0, 1.0]), 2, tol=1e-8)
    # The norm is quadratic in c - 1 from below, so a 1e-8 gap pins c to about 1e-4.
    np.testing.assert_allclose(result.matrix, np.ones((2, 2)), atol=1e-3)
    assert result.nuclear_norm == pytest.approx(2.0, abs=1e-5)
    assert result.gap <= 1e-8


def test_nuclear_completion_recovers_a_rank_one_matrix():
    d = 10
    u = np.arange(1, d + 1) / d
    truth = np.outer(u, u)
    rows, cols = np.nonzero(np.random.default_rng(1).random((d, d)) < 0.5)
    result = min_nuclear_completion(rows, cols, truth[rows, cols], d, tol=1e-7)
    assert result.gap <= 1e-7 and result.lower_bound <= result.nuclear_norm
    np.testing.assert_allclose(result.matrix, truth, atol=1e-4)
    assert result.nuclear_norm == pytest.approx(u @ u, rel=1e-5)
