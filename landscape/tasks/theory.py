"""Reference solutions of the Dichotomy theorem (Lyu et al. 2024): what a 2-homogeneous model
trained from a large init alpha with small weight decay lambda converges to, before and after
t ~ log(alpha)/lambda.

- Kernel regime, classification: the kernel SVM on the NTK features; for a diagonal net with
  u = v at init that is the L2 max-margin linear classifier (:func:`l2_max_margin`).
- Rich regime, classification: a KKT point of min ||theta||^2 s.t. y f >= 1; for the diagonal net
  its global optimum is the L1 max-margin linear classifier (:func:`l1_max_margin`).
- Matrix completion with W = UU^T - VV^T from U = V = alpha I: the kernel predictor fits the
  observed entries and their transposes and is 0 elsewhere (:func:`kernel_completion`); the rich
  regime's global optimum is the minimum nuclear-norm completion (:func:`min_nuclear_completion`).
- Two-layer ReLU nets with a zero last layer: the NTK at init is the random-feature kernel of the
  first layer (:func:`relu_kernel` at infinite width); :func:`kernel_interpolant` is its
  minimum-norm fit.

Pure numpy/scipy: no torch, so analysis and tests can use it anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import linprog, nnls
from threadpoolctl import threadpool_limits


def l2_max_margin(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """w minimising ||w||_2 subject to y_i <w, x_i> >= 1 (hard-margin SVM without bias).

    Solved exactly as a least-distance program through one non-negative least-squares problem
    (Lawson & Hanson 1974, ch. 23): with G = diag(y) X, the NNLS min_{a >= 0} ||E a - f|| for
    E = [G^T; 1^T], f = (0, ..., 0, 1) has residual r, and w = -r[:d] / r[d]. NNLS is an exact
    active-set method, so the answer carries no optimizer tolerance. ValueError if not separable.
    """
    g = np.asarray(y, dtype=float)[:, None] * np.asarray(x, dtype=float)
    e = np.vstack([g.T, np.ones(len(g))])
    f = np.zeros(len(e))
    f[-1] = 1.0
    a, _ = nnls(e, f, maxiter=50 * len(e))
    r = e @ a - f
    if abs(r[-1]) < 1e-12:
        raise ValueError("the data are not linearly separable through the origin")
    return -r[:-1] / r[-1]


def l1_max_margin(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """w minimising ||w||_1 subject to y_i <w, x_i> >= 1, as a linear program solved by HiGHS.

    Variables w+ and w- >= 0 with w = w+ - w-: min sum(w+ + w-) s.t. -y_i x_i^T (w+ - w-) <= -1.
    ValueError if not separable.
    """
    g = np.asarray(y, dtype=float)[:, None] * np.asarray(x, dtype=float)
    n, d = g.shape
    res = linprog(np.ones(2 * d), A_ub=-np.hstack([g, -g]), b_ub=-np.ones(n), bounds=(0, None), method="highs")
    if res.status == 2:
        raise ValueError("the data are not linearly separable through the origin")
    if res.status != 0:
        raise ValueError(f"L1 max-margin LP failed: {res.message}")
    return res.x[:d] - res.x[d:]


def margin(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """min_i y_i <w, x_i>: 1 for the max-margin solutions above."""
    return float(np.min(np.asarray(y) * (np.asarray(x) @ w)))


def classification_error(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean 0/1 error of sign(scores) against labels +-1, a tie (score 0) counting 1/2 (the authors' code)."""
    s = np.sign(np.asarray(scores, dtype=float)) * np.asarray(y, dtype=float)
    return float(np.mean(np.where(s > 0, 0.0, np.where(s < 0, 1.0, 0.5))))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two arrays (flattened); NaN when either is zero."""
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else float("nan")


def relu_kernel(cos: np.ndarray) -> np.ndarray:
    """The degree-1 arc-cosine kernel (Cho & Saul 2009): sin t + (pi - t) cos t with t = arccos(cos).

    2 pi E[relu(u) relu(v)] for standard Gaussians u, v of correlation ``cos``: up to a constant
    factor, the kernel of infinitely many ReLU features relu(<w, x>) with Gaussian w and no bias,
    between inputs at angle t.
    """
    t = np.arccos(np.clip(cos, -1.0, 1.0))
    return np.sin(t) + (np.pi - t) * np.cos(t)


def kernel_interpolant(k_train: np.ndarray, y: np.ndarray, k_query: np.ndarray) -> np.ndarray:
    """The minimum-RKHS-norm function through targets ``y`` (n, k) at the n training points, at the
    query points: k_query K^-1 y, with K = ``k_train`` (n, n) positive definite and ``k_query`` (m, n)."""
    return k_query @ cho_solve(cho_factor(k_train), y)


def symmetric_entries(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask and values of the observed entries of a symmetric d x d matrix and their transposes.

    W = UU^T - VV^T is symmetric, so observing (i, j) fixes (j, i) too.
    """
    mask = np.zeros((d, d), dtype=bool)
    target = np.zeros((d, d))
    mask[rows, cols] = mask[cols, rows] = True
    target[rows, cols] = target[cols, rows] = values
    return mask, target


def kernel_completion(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, d: int) -> np.ndarray:
    """The kernel-regime predictor of W = UU^T - VV^T from U = V = alpha I (Cor. 3.11).

    The NTK of entry (i, j) spans only e_i e_j^T + e_j e_i^T, so the min-norm interpolant fits the
    observed entries and their transposes and leaves every other entry at its initial value 0.
    """
    return symmetric_entries(rows, cols, values, d)[1]


@dataclass(frozen=True)
class NuclearCompletion:
    """A minimum nuclear-norm completion and its certificate."""

    matrix: np.ndarray
    nuclear_norm: float
    #: Lower bound on the optimum from the dual variable: ||W||_* - bound <= gap is certified.
    lower_bound: float
    iterations: int

    @property
    def gap(self) -> float:
        """Relative duality gap (||W||_* - lower bound) / ||W||_*."""
        return (self.nuclear_norm - self.lower_bound) / max(self.nuclear_norm, 1e-300)


def min_nuclear_completion(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, d: int, *,
                           tol: float = 1e-5, max_iter: int = 20_000, rho: float | None = None) -> NuclearCompletion:
    """min ||W||_* over symmetric d x d W with W_ij = W_ji = values on the observed entries.

    ADMM on W = Z, Z in the affine set of completions: W <- singular-value thresholding of Z - U at
    1/rho, Z <- W + U with the observed entries reset, U <- U + W - Z. Convex, so ADMM converges
    to the optimum; we stop at relative gap ``tol`` of a dual certificate: Y = -rho U (zero off
    the observed entries) satisfies <Y, W'> = <Y, target> for every feasible W', hence
    ||W'||_* >= <Y, target> / ||Y||_2 (spectral norm) bounds the optimum from below.
    The symmetric problem has the same optimum as the unconstrained one (average W with W^T).
    """
    mask, target = symmetric_entries(rows, cols, values, d)
    # Step 3 / ||P(X)||_2: scale-free, and the fastest of 0.3..30 on the d = 97 multiplication table.
    rho = rho if rho is not None else 3.0 / max(np.linalg.norm(target, 2), 1e-12)
    with threadpool_limits(1):  # small eigh calls: threaded BLAS only contends (30x slower on a busy CPU)
        return _admm(mask, target, rho, tol, max_iter)


def _admm(mask: np.ndarray, target: np.ndarray, rho: float, tol: float, max_iter: int) -> NuclearCompletion:
    z, u = target.copy(), np.zeros_like(target)
    bound = -np.inf
    for it in range(1, max_iter + 1):
        w = _shrink_singular_values(z - u, 1.0 / rho)
        z = np.where(mask, target, w + u)
        u += w - z
        if it % 20 == 0:
            y = -rho * u  # the Z update keeps u zero off the observed entries
            spectral = np.linalg.norm(y, 2)
            if spectral > 0:
                bound = max(bound, float(np.sum(y * target)) / spectral)
            nuc = _nuclear(z)  # z is feasible: its norm is an upper bound
            if nuc - bound <= tol * nuc:
                break
    return NuclearCompletion(z, _nuclear(z), bound, it)


def _shrink_singular_values(a: np.ndarray, tau: float) -> np.ndarray:
    """Proximal map of tau ||.||_* on symmetric matrices: soft-threshold the eigenvalues' magnitudes."""
    lam, q = np.linalg.eigh((a + a.T) / 2)
    return (q * (np.sign(lam) * np.maximum(np.abs(lam) - tau, 0.0))) @ q.T


def _nuclear(a: np.ndarray) -> float:
    return float(np.abs(np.linalg.eigvalsh((a + a.T) / 2)).sum())
