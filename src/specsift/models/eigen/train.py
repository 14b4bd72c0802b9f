"""Learning the eigenspectra of one class: weighted PCA start, then χ² refinement.

The loss is the issue's: the ivar-weighted χ² of every training spectrum against
Σ_k a_k E_k shifted to its true z plus a quadratic continuum, with the coefficients
solved by least squares.  For a fixed set of coefficients the loss is quadratic in the
eigenspectra and for fixed eigenspectra quadratic in the coefficients, so alternating
least squares (ALS) minimises it exactly step by step — the heteroscedastic matrix
factorisation of Tsalmantza & Hogg (2012), with gaps.  It needs no learning rate and
converges in a few tens of closed-form iterations, which is why this model does not
use the minibatch SGD loop of :mod:`specsift.training`.

Everything happens on the class's rest grid: each spectrum is moved there by linear
interpolation at its (fractional) true shift; pixels it does not cover have zero
weight.  The polynomial is {1, t, t²} in the rest-grid coordinate t: a quadratic in
log λ restricted to any window spans the same space as a quadratic Legendre series on
that window, so this is exactly the continuum freedom of the scan.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ...spectra import SpectraBatch

__all__ = ["to_rest", "train_basis", "basis_chi2", "labels_of", "load_training_rows"]


def to_rest(flux, ivar, shift, jmax: int, nrest: int):
    """Place spectra on the rest grid (N, R) at fractional ``shift`` (log10(1+z)/δ).

    Observed pixel p sits at rest position p + jmax − shift; rest pixel r takes the
    linear interpolation of the two observed pixels around r − (jmax − shift).
    """
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    n, p = flux.shape
    u = jmax - np.asarray(shift, np.float64)                 # rest offset of pixel 0
    r = np.arange(nrest)
    pos = r[None, :] - u[:, None]                            # observed position of rest r
    p0 = np.floor(pos).astype(np.int64)
    t = pos - p0
    ok = (p0 >= 0) & (p0 + 1 <= p - 1)
    p0c = np.clip(p0, 0, p - 2)
    rows = np.arange(n)[:, None]
    f0, f1 = flux[rows, p0c], flux[rows, p0c + 1]
    w0, w1 = ivar[rows, p0c], ivar[rows, p0c + 1]
    good = ok & (w0 > 0) & (w1 > 0)
    var = (1 - t) ** 2 / np.where(w0 > 0, w0, 1) + t ** 2 / np.where(w1 > 0, w1, 1)
    fr = np.where(good, (1 - t) * f0 + t * f1, 0.0)
    wr = np.where(good, 1.0 / var, 0.0)
    return fr.astype(np.float32), wr.astype(np.float32)


def _poly_rest(nrest: int, npoly: int) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, nrest)
    return np.stack([t ** m for m in range(npoly)])


def _solve_coeffs(X, f, w, ridge=1e-8):
    """Per-spectrum LS coefficients for rows of X (Q, R): returns (N, Q) and χ² (N,)."""
    q = X.shape[0]
    ia, ib = np.triu_indices(q)
    prods = (X[ia] * X[ib]).T                                # (R, QQ)
    g = w @ prods                                            # (N, QQ)
    G = torch.zeros((f.shape[0], q, q), dtype=torch.float64)
    G[:, ia, ib] = g
    G[:, ib, ia] = g
    rhs = (w * f) @ X.T                                      # (N, Q)
    d = torch.diagonal(G, dim1=1, dim2=2)
    G = G + torch.diag_embed(ridge * d.amax(1, keepdim=True).expand_as(d) + 1e-12)
    coef = torch.linalg.solve(G, rhs[..., None])[..., 0]
    chi2 = (w * f * f).sum(1) - (coef * rhs).sum(1)
    return coef, chi2


def train_basis(flux, ivar, shift, jmin: int, jmax: int, nvec: int, npoly: int = 3,
                iterations: int = 30, ridge: float = 1e-3, val=None, seed: int = 0,
                progress: bool = True, label: str = "", clip: float | None = None,
                init: np.ndarray | None = None,
                smooth_below: float | None = None, smooth_px: float = 8.0,
                rest_start: float | None = None, step: float = 1e-4) -> tuple[np.ndarray, dict]:
    """Eigenspectra (nvec, R) of one class from spectra at known fractional shifts.

    ``val`` = (flux, ivar, shift) of held-out spectra of the class for monitoring.
    ``clip``: from the third iteration on, pixels more than ``clip`` σ from the current
    fit get zero weight (off by default: for stars every sky line sits at the same rest
    pixel, so clipping leaves the basis unconstrained there; the model's excess
    variance handles sky residuals instead).  ``init``: start from this basis instead
    of the weighted PCA.  ``smooth_below`` (Å, rest):
    the basis is Gaussian-smoothed by ``smooth_px`` pixels blueward of it after every
    update — the Lyα forest is random from object to object, and a basis with forest-like
    noise would fit noise at any shift.  Returns the basis (rows orthonormal) and a history.
    """
    torch.manual_seed(seed)
    p = np.asarray(flux).shape[1]
    nrest = p + jmax - jmin
    fr, wr = to_rest(flux, ivar, shift, jmax, nrest)
    keep = (wr > 0).sum(1) > 10 * (nvec + npoly)
    if keep.sum() < nvec + 1:
        raise ValueError(f"class {label!r}: only {int(keep.sum())} usable training spectra "
                         f"for {nvec} eigenspectra")
    f = torch.as_tensor(fr[keep], dtype=torch.float64)
    w = torch.as_tensor(wr[keep], dtype=torch.float64)
    # normalise each spectrum to unit rms so bright ones do not dominate the PCA start
    ng = (w > 0).sum(1).clamp_min(1)
    s = torch.sqrt(((f * f) * (w > 0)).sum(1) / ng).clamp_min(1e-30)[:, None]
    f, w = f / s, w * s * s
    poly = torch.as_tensor(_poly_rest(nrest, npoly))
    w0 = w.clone()
    nsmooth = 0
    if smooth_below is not None and rest_start is not None:
        nsmooth = int(np.clip((np.log10(smooth_below) - rest_start) / step, 0, nrest))
    # ---- weighted PCA start: fill gaps with the weighted mean, SVD of the centred data
    cover = (w > 0).double()
    mean = (w * f).sum(0) / w.sum(0).clamp_min(1e-30)
    filled = torch.where(w > 0, f, mean[None, :].expand_as(f))
    wt = torch.sqrt(cover.sum(0) / cover.shape[0])           # down-weight rarely seen pixels
    if init is not None:
        E = torch.as_tensor(np.asarray(init, np.float64)).clone()
    elif nvec > 1:
        _, _, v = torch.svd_lowrank((filled - mean) * wt, q=min(nvec + 4, *f.shape), niter=3)
        E = torch.cat([mean[None], v.T[: nvec - 1] * mean.abs().max()], dim=0)
    else:
        E = mean[None].clone()
    hist = {"train_chi2": [], "val_chi2": []}
    it = tqdm(range(iterations), desc=f"eigen {label}", disable=not progress, leave=False)
    for iteration in it:
        X = torch.cat([E, poly])
        coef, chi2 = _solve_coeffs(X, f, w)
        if clip and iteration >= 2:
            resid = (f - coef @ X) * torch.sqrt(w0)
            w = torch.where(resid.abs() < clip, w0, torch.zeros_like(w0))
            coef, chi2 = _solve_coeffs(X, f, w)
        a, c = coef[:, :nvec], coef[:, nvec:]
        y = f - c @ poly                                     # data minus continuum
        # per rest pixel: (Σ_n w a aᵀ + λ) E_r = Σ_n w y a
        ia, ib = np.triu_indices(nvec)
        H = torch.zeros((nrest, nvec, nvec), dtype=torch.float64)
        h = w.T @ (a[:, ia] * a[:, ib])
        H[:, ia, ib] = h
        H[:, ib, ia] = h
        rhs = (w * y).T @ a
        # ridge per component, relative to that component's own mean curvature: invariant
        # to the rescaling done by the orthonormalisation below (a common λ would damp
        # the minor components a little more at every iteration)
        lam = ridge * torch.diagonal(H, dim1=1, dim2=2).mean(0) + 1e-12
        H = H + torch.diag(lam)
        E = torch.linalg.solve(H, rhs[..., None])[..., 0].T.contiguous()
        if nsmooth > 0:
            from scipy.ndimage import gaussian_filter1d
            sm = gaussian_filter1d(E[:, : nsmooth + 4 * int(smooth_px)].numpy(), smooth_px, axis=1)
            E[:, :nsmooth] = torch.as_tensor(sm[:, :nsmooth])
        # orthonormalise (the span is what matters): mean-like direction first
        u_, sv, vh = torch.linalg.svd(E, full_matrices=False)
        E = vh * np.sqrt(nrest)
        if E[0].sum() < 0:
            E[0] = -E[0]
        tr = float(chi2.sum() / w.gt(0).sum())
        hist.setdefault("clipped_fraction", []).append(float(1 - w.gt(0).sum() / w0.gt(0).sum()))
        hist["train_chi2"].append(tr)
        if val is not None:
            hist["val_chi2"].append(basis_chi2(E.numpy(), *val, jmax=jmax, npoly=npoly))
        it.set_postfix(rchi2=f"{tr:.3f}")
    return E.numpy().astype(np.float32), hist


def basis_chi2(E, flux, ivar, shift, jmax: int, npoly: int = 3) -> float:
    """Reduced χ² of spectra at known shifts against basis E (+ polynomial)."""
    nrest = E.shape[1]
    fr, wr = to_rest(flux, ivar, shift, jmax, nrest)
    f = torch.as_tensor(fr, dtype=torch.float64)
    w = torch.as_tensor(wr, dtype=torch.float64)
    X = torch.cat([torch.as_tensor(E, dtype=torch.float64),
                   torch.as_tensor(_poly_rest(nrest, npoly))])
    _, chi2 = _solve_coeffs(X, f, w)
    dof = (w > 0).sum() - f.shape[0] * X.shape[0]
    return float(chi2.sum() / max(int(dof), 1))


# ---------------------------------------------------------------------------- training rows
def labels_of(batch: SpectraBatch, class_set: str) -> np.ndarray:
    """True label of every row in ``class_set`` ('' where it has none)."""
    from ...metrics import truth_labels
    return truth_labels(batch.meta, class_set)


def load_training_rows(data, per_class: int | None, class_set: str, seed: int,
          exclude=()) -> SpectraBatch:
    """A store / path / batch → one in-memory batch, at most ``per_class`` rows per label,
    without rows whose SUBTYPE/SUBCLASS starts with one of ``exclude``."""
    from ...io.store import SpectralStore
    from ...metrics import truth_labels
    if isinstance(data, SpectraBatch):
        meta, store = data.meta, None
    else:
        store = data if isinstance(data, SpectralStore) else SpectralStore(data, "r")
        cols = [c for c in ("CLASS_LABEL", "CLASS", "SUBCLASS", "SPECTYPE", "SUBTYPE", "Z")
                if c in store.meta_columns]
        meta = store.read_meta(cols)
    lab = truth_labels(meta, class_set)
    if exclude:
        for col in ("SUBTYPE", "SUBCLASS"):
            if col in meta.colnames:
                sub = np.char.upper(np.asarray(meta[col], str))
                drop = np.zeros(len(sub), bool)
                for e in exclude:
                    drop |= np.char.startswith(sub, str(e).upper())
                lab = np.where(drop, "", lab)
    idx = _cap(lab, per_class, seed)
    if store is None:
        return data[idx] if len(idx) < len(data) else data
    return store.read(idx)


def _cap(lab, per_class, seed):
    rng = np.random.default_rng(seed)
    out = []
    for name in np.unique(lab[lab != ""]):
        rows = np.nonzero(lab == name)[0]
        if per_class is not None and rows.size > per_class:
            rows = np.sort(rng.choice(rows, per_class, replace=False))
        out.append(rows)
    return np.sort(np.concatenate(out)) if out else np.zeros(0, int)
