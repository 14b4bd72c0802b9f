"""Post-hoc calibration fitted on a validation set and stored in the model file.

* :func:`fit_temperature` — temperature scaling of class logits (Guo et al. 2017): one T
  minimising the validation negative log-likelihood; it changes confidence, never the argmax.
* :class:`SigmaCalibration` — redshift errors: σ_cal = √(a²(σ² + w·σ_x²) + b²) in
  u = ln(1+z), one (a, b, w) per predicted spectral type, fitted so that the fraction with
  |u − u_true| < kσ is 68.3 % (k = 1) and 95.4 % (k = 2).  σ is the width of the chosen peak
  of p(z) and σ_x² the rest of its variance (other peaks: possible line misidentification);
  ``a`` fixes an over/under-confident network, ``b`` is a floor for the precision it cannot
  resolve, ``w`` how much the other peaks count.  Catastrophic failures the network is sure
  about cannot be covered by any width, so the fit weighs both coverages equally rather
  than chasing 95 % with a huge floor.
* :class:`SigmaRegression` — the step before: a heteroscedastic error model
  ln σ = (c₀ + c₁ ln σ_peak)_type + c₂ ln σ_x + c₃ ln S/N + c₄ ln² S/N + c₅ ln(1 − p_near),
  fitted by the likelihood of a Student t with ν = 3 on validation residuals (its heavy
  tails keep the few catastrophic failures from widening every error; a capped Gaussian
  would be unbounded as σ → 0).  A per-type scale alone cannot cover
  1σ and 2σ at once when faint spectra have much wider errors than bright ones of the same
  peak width; S/N is what separates them.
* :class:`MahalanobisOOD` — an out-of-distribution score (Lee et al. 2018): squared
  Mahalanobis distance of the network embedding to the nearest class mean (shared
  covariance), divided by its 99th percentile on validation data.  1 ≈ "as odd as the
  1 % oddest simulated spectrum"; used as ANOMALY_SCORE.
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax", "log_softmax", "fit_temperature", "fit_chi2_temperature",
           "SigmaCalibration", "SigmaRegression", "MahalanobisOOD", "COVERAGE_TARGETS"]

COVERAGE_TARGETS = (0.6827, 0.9545)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log softmax (max subtracted first: no overflow)."""
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def softmax(x: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Row-wise softmax computed in float64 (max subtracted first), returned as ``dtype``;
    the one softmax of class scores (network logits, −χ²/2T) in specsift."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(dtype)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """T > 0 minimising the mean NLL of softmax(logits / T) (grid then golden refinement)."""
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y, int)
    ok = y >= 0
    logits, y = logits[ok], y[ok]
    if y.size == 0:
        return 1.0

    def nll(t):
        return -log_softmax(logits / t)[np.arange(y.size), y].mean()

    grid = np.exp(np.linspace(np.log(0.2), np.log(10), 60))
    best = grid[np.argmin([nll(t) for t in grid])]
    lo, hi = best / 1.1, best * 1.1
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def fit_chi2_temperature(chi2_class: np.ndarray, y: np.ndarray):
    """Temperature T and per-class χ² penalties b (b of the first class fixed at 0) that
    minimise the validation NLL of p_c ∝ exp(−(χ²_c + b_c)/(2T)): class probabilities of
    a χ² scan (the eigen model), where raw χ² differences are far too sharp to be
    probabilities.  Returns (T, b shifted to min 0, NLL)."""
    from scipy.optimize import minimize
    ok = (y >= 0) & np.all(np.isfinite(chi2_class), axis=1)
    x, yy = chi2_class[ok], y[ok]
    ncls = x.shape[1]
    if len(yy) == 0:
        return 1.0, np.zeros(ncls), float("nan")

    def nll(theta):
        t = np.exp(theta[0])
        b = np.concatenate([[0.0], theta[1:]])
        lp = log_softmax(-(x + b) / (2 * t))
        return -lp[np.arange(len(yy)), yy].mean()

    best = None
    for t0 in (1.0, 10.0, 100.0, 1000.0):
        r = minimize(nll, np.r_[np.log(t0), np.zeros(ncls - 1)], method="Nelder-Mead",
                     options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 4000})
        if best is None or r.fun < best.fun:
            best = r
    pen = np.concatenate([[0.0], best.x[1:]])
    return float(np.exp(best.x[0])), pen - pen.min(), float(best.fun)


def _coverages(du: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    r = du / s
    return float(np.mean(r < 1)), float(np.mean(r < 2))


class SigmaCalibration:
    """σ_cal = √(a²(σ² + w·σ_x²) + b²) per group (spectral type); see the module docstring.

    ``sigma`` is the width of the chosen peak of p(z); the optional ``extra`` σ_x² is the
    rest of p(z)'s variance (other peaks), so spectra whose p(z) is multimodal get a wide
    ZERR and confident ones keep a narrow one; w = 0 ignores it.
    """

    A_GRID = np.exp(np.linspace(np.log(0.05), np.log(50), 50))
    W_GRID = (0.0, 0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)

    def __init__(self, params: dict | None = None):
        self.params = {k: tuple(v) for k, v in (params or {}).items()}   # group → (a, b, w)

    @classmethod
    def fit_one(cls, du, sigma, extra=None) -> tuple[float, float, float]:
        """(a, b, w) minimising the squared distance of the 1σ/2σ coverages to their targets."""
        du, sigma = np.abs(np.asarray(du, float)), np.asarray(sigma, float)
        extra = np.zeros_like(sigma) if extra is None else np.asarray(extra, float)
        ok = np.isfinite(du) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(extra)
        du, sigma, extra = du[ok], sigma[ok], np.maximum(extra[ok], 0)
        if du.size < 20:
            return 1.0, 0.0, 0.0
        med = float(np.median(sigma))
        best, cost = (1.0, 0.0, 0.0), np.inf
        b_grid = (0.0, *(med * np.exp(np.linspace(np.log(0.01), np.log(30), 30))))
        for w in (cls.W_GRID if extra.any() else (0.0,)):
            s0 = np.sqrt(sigma ** 2 + w * extra ** 2)
            for a in cls.A_GRID:
                for b in b_grid:
                    s = np.sqrt((a * s0) ** 2 + b ** 2)
                    c1, c2 = _coverages(du, s)
                    c = (c1 - COVERAGE_TARGETS[0]) ** 2 + (c2 - COVERAGE_TARGETS[1]) ** 2
                    if c < cost - 1e-12:
                        best, cost = (float(a), float(b), float(w)), c
        return best

    def fit(self, du, sigma, groups, extra=None) -> "SigmaCalibration":
        groups = np.asarray(groups, str)
        du, sigma = np.asarray(du, float), np.asarray(sigma, float)
        extra = None if extra is None else np.asarray(extra, float)
        self.params = {"*": self.fit_one(du, sigma, extra)}
        for g in np.unique(groups):
            sel = groups == g
            if sel.sum() >= 50:
                self.params[str(g)] = self.fit_one(du[sel], sigma[sel],
                                                   None if extra is None else extra[sel])
        return self

    def apply(self, sigma, groups, extra=None) -> np.ndarray:
        sigma = np.asarray(sigma, float)
        extra = np.zeros_like(sigma) if extra is None else np.maximum(np.asarray(extra, float), 0)
        out = np.empty_like(sigma)
        groups = np.asarray(groups, str)
        for g in np.unique(groups) if groups.size else []:
            a, b, *w = self.params.get(str(g), self.params.get("*", (1.0, 0.0, 0.0)))
            w = w[0] if w else 0.0
            sel = groups == g
            out[sel] = np.sqrt(a ** 2 * (sigma[sel] ** 2 + w * extra[sel] ** 2) + b ** 2)
        return out


class SigmaRegression:
    """ln σ from the peak width, the other peaks' spread, S/N and p_near (module docstring).

    ``params`` = {"groups": [...], "theta": [...]}; a group unseen in fitting gets the mean
    of the fitted groups' coefficients.
    """

    NU = 3.0              # Student-t degrees of freedom of the likelihood

    def __init__(self, params: dict | None = None):
        self.params = dict(params or {})

    @staticmethod
    def _shared(extra, snr, p_near) -> np.ndarray:
        ln_snr = np.log(np.clip(np.asarray(snr, float), 0.3, 100.0))
        return np.column_stack([np.log(np.asarray(extra, float) + 1e-5), ln_snr, ln_snr ** 2,
                                np.log(np.clip(1 - np.asarray(p_near, float), 1e-4, 1.0))])

    def _design(self, sigma, groups, extra, snr, p_near) -> np.ndarray:
        ln_s = np.log(np.asarray(sigma, float))
        groups = np.asarray(groups, str)
        known = self.params["groups"]
        seen = np.isin(groups, known)
        cols = []
        for g in known:         # unseen groups get 1/n of every group's intercept and slope
            w = np.where(groups == g, 1.0, np.where(seen, 0.0, 1.0 / len(known)))
            cols += [w, w * ln_s]
        return np.column_stack(cols + [self._shared(extra, snr, p_near)])

    def fit(self, du, sigma, groups, extra, snr, p_near) -> "SigmaRegression":
        from scipy.optimize import minimize
        du, sigma = np.asarray(du, float), np.asarray(sigma, float)
        ok = (np.isfinite(du) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(extra)
              & np.isfinite(snr) & np.isfinite(p_near))
        groups = np.asarray(groups, str)
        self.params = {"groups": sorted(set(groups[ok].tolist())) or ["*"]}
        x = self._design(sigma[ok], groups[ok], np.asarray(extra)[ok], np.asarray(snr)[ok],
                         np.asarray(p_near)[ok])
        d2 = du[ok] ** 2

        nu = self.NU

        def nll(theta):
            ln_sig = x @ theta
            q = d2 * np.exp(-2 * ln_sig) / nu
            grad = x.T @ (1 - (nu + 1) * q / (1 + q)) / len(d2)
            return np.mean(ln_sig + (nu + 1) / 2 * np.log1p(q)), grad

        theta0 = np.zeros(x.shape[1])
        theta0[0:2 * len(self.params["groups"]):2] = np.log(np.median(np.abs(du[ok])) + 1e-12)
        theta = minimize(nll, theta0, jac=True, method="L-BFGS-B").x if d2.size >= 20 else theta0
        self.params["theta"] = [float(t) for t in theta]
        return self

    def apply(self, sigma, groups, extra, snr, p_near) -> np.ndarray:
        if not self.params:
            return np.asarray(sigma, float)
        x = self._design(sigma, groups, extra, snr, p_near)
        return np.exp(x @ np.asarray(self.params["theta"]))


class MahalanobisOOD:
    """Class-conditional Gaussian embedding model with a shared covariance."""

    def __init__(self, state: dict | None = None):
        self.state = state

    def fit(self, emb: np.ndarray, y: np.ndarray, n_classes: int, emb_val=None) -> "MahalanobisOOD":
        emb = np.asarray(emb, np.float64)
        y = np.asarray(y, int)
        means = np.zeros((n_classes, emb.shape[1]))
        resid = []
        for k in range(n_classes):
            sel = y == k
            if sel.any():
                means[k] = emb[sel].mean(0)
                resid.append(emb[sel] - means[k])
        r = np.concatenate(resid)
        cov = r.T @ r / max(len(r) - 1, 1)
        cov += np.eye(cov.shape[0]) * (1e-3 * np.trace(cov) / cov.shape[0] + 1e-8)
        w = np.linalg.cholesky(np.linalg.inv(cov))                       # precision = W Wᵀ
        self.state = {"whiten": w.astype(np.float32), "means_w": (means @ w).astype(np.float32),
                      "scale": 1.0}
        ref = self.distance(emb if emb_val is None else emb_val)
        self.state["scale"] = float(np.percentile(ref, 99)) or 1.0
        return self

    def distance(self, emb: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class mean (unscaled)."""
        ew = np.asarray(emb, np.float32) @ self.state["whiten"]        # whitened: Euclidean
        mw = self.state["means_w"]
        d2 = (ew ** 2).sum(1)[:, None] - 2 * ew @ mw.T + (mw ** 2).sum(1)[None]
        return np.maximum(d2.min(axis=1), 0.0)

    def score(self, emb: np.ndarray) -> np.ndarray:
        return (self.distance(emb) / self.state["scale"]).astype(np.float32)
