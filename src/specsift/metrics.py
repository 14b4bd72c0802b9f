"""The metrics of every report (DESIGN.md, "Metrics"), in one place.

Redshift: Δz = |z_pred − z_true|/(1 + z_true); GF(t) = fraction with Δz ≤ t at
t = 3e-4, 1e-3, 3e-3, 1e-2; MAD = median Δz; σ_NMAD = 1.4826·median|δ − median δ| with
δ = (z_pred − z_true)/(1 + z_true); NMAE = mean Δz; catastrophic fraction = Δz > 0.01
(configurable); R² of z_pred against z_true.  Uncertainty: fraction with
|z_pred − z_true| < k·ZERR for k = 1, 2 (68 % / 95 % when calibrated).
Classification: accuracy, per-class precision/recall/F1, confusion matrix, expected
calibration error and reliability-diagram data of the top-class probability.

Everything returns plain Python types so that ``json.dump`` works on the result.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from .classes import labels as class_labels
from .classes import map_labels, map_sdss

__all__ = ["delta_z", "redrock_agreement", "redshift_metrics", "zerr_coverage", "classification_metrics",
           "calibration", "evaluate_catalog", "match_rows", "truth_labels",
           "roc_auc", "GF_THRESHOLDS"]

GF_THRESHOLDS = (3e-4, 1e-3, 3e-3, 1e-2)


def delta_z(z_pred, z_true) -> np.ndarray:
    """|z_pred − z_true| / (1 + z_true)."""
    zp, zt = np.asarray(z_pred, float), np.asarray(z_true, float)
    return np.abs(zp - zt) / (1.0 + zt)


def roc_auc(scores_pos, scores_neg) -> float:
    """ROC AUC of a score separating positives (e.g. anomalies) from negatives: the
    probability that a random positive scores above a random negative, ties counting half."""
    from sklearn.metrics import roc_auc_score
    pos, neg = np.asarray(scores_pos, float), np.asarray(scores_neg, float)
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    return float(roc_auc_score(y, np.r_[pos, neg]))


def _gf_key(t: float) -> str:
    return f"GF_{t:g}"


def redshift_metrics(z_pred, z_true, catastrophic: float = 0.01,
                     thresholds=GF_THRESHOLDS) -> dict:
    """All redshift metrics over the finite pairs (``n`` says how many were used)."""
    zp, zt = np.asarray(z_pred, float), np.asarray(z_true, float)
    ok = np.isfinite(zp) & np.isfinite(zt)
    zp, zt = zp[ok], zt[ok]
    out: dict = {"n": int(zp.size)}
    if zp.size == 0:
        out.update({_gf_key(t): None for t in thresholds})
        out.update(MAD=None, sigma_NMAD=None, NMAE=None, catastrophic_fraction=None, R2=None)
        return out
    d = delta_z(zp, zt)
    delta = (zp - zt) / (1.0 + zt)
    for t in thresholds:
        out[_gf_key(t)] = float(np.mean(d <= t))
    out["MAD"] = float(np.median(d))
    out["sigma_NMAD"] = float(1.4826 * np.median(np.abs(delta - np.median(delta))))
    out["NMAE"] = float(np.mean(d))
    out["catastrophic_threshold"] = float(catastrophic)
    out["catastrophic_fraction"] = float(np.mean(d > catastrophic))
    ss_tot = float(np.sum((zt - zt.mean()) ** 2))
    ss_res = float(np.sum((zp - zt) ** 2))
    out["R2"] = (1.0 - ss_res / ss_tot) if ss_tot > 0 else None
    return out


def zerr_coverage(z_pred, z_true, zerr, ks=(1, 2)) -> dict:
    """Fraction with |z_pred − z_true| < k·ZERR (only rows with finite ZERR > 0)."""
    zp, zt, ze = (np.asarray(a, float) for a in (z_pred, z_true, zerr))
    ok = np.isfinite(zp) & np.isfinite(zt) & np.isfinite(ze) & (ze > 0)
    out = {"n_zerr": int(ok.sum())}
    for k in ks:
        out[f"coverage_{k}sigma"] = (float(np.mean(np.abs(zp[ok] - zt[ok]) < k * ze[ok]))
                                     if ok.any() else None)
    return out


def classification_metrics(y_true, y_pred, names) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix.

    Rows of the confusion matrix are true classes, columns predicted, in the order of
    ``names``; predictions outside ``names`` (e.g. '' for unusable spectra) count as wrong.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    yt, yp = np.asarray(y_true, str), np.asarray(y_pred, str)
    names = list(names)
    out: dict = {"n": int(yt.size), "labels": names}
    if yt.size == 0:
        out.update(accuracy=None, per_class={}, confusion_matrix=[], macro_f1=None)
        return out
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=names, zero_division=0)
    out["accuracy"] = float(np.mean(yt == yp))
    out["per_class"] = {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, n in enumerate(names)}
    present = s > 0
    out["macro_f1"] = float(np.mean(f[present])) if present.any() else None
    out["confusion_matrix"] = confusion_matrix(yt, yp, labels=names).astype(int).tolist()
    return out


def calibration(probs, y_true_idx, n_bins: int = 10) -> dict:
    """Expected calibration error of the top-class probability + reliability-diagram data.

    ECE = Σ_b (n_b/N)·|accuracy_b − confidence_b| over equal-width confidence bins.
    """
    probs = np.asarray(probs, float)
    y = np.asarray(y_true_idx, int)
    ok = (y >= 0) & np.all(np.isfinite(probs), axis=1)
    probs, y = probs[ok], y[ok]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = {"n": int(y.size), "bin_edges": edges.tolist(), "bin_count": [], "bin_accuracy": [],
           "bin_confidence": [], "ECE": None}
    if y.size == 0:
        return out
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for i in range(n_bins):
        sel = b == i
        cnt = int(sel.sum())
        out["bin_count"].append(cnt)
        out["bin_accuracy"].append(float(correct[sel].mean()) if cnt else None)
        out["bin_confidence"].append(float(conf[sel].mean()) if cnt else None)
        if cnt:
            ece += cnt / y.size * abs(correct[sel].mean() - conf[sel].mean())
    out["ECE"] = float(ece)
    return out


# ---------------------------------------------------------------------------- catalogs
def match_rows(pred: Table, truth: Table) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (i_pred, i_truth) of matching spectra: by TARGETID when both tables have
    unique ones, otherwise by order (then the tables must have the same length)."""
    if "TARGETID" in pred.colnames and "TARGETID" in truth.colnames:
        tp, tt = np.asarray(pred["TARGETID"]), np.asarray(truth["TARGETID"])
        if np.unique(tp).size == tp.size and np.unique(tt).size == tt.size:
            common, ip, it = np.intersect1d(tp, tt, return_indices=True)
            if common.size:
                order = np.argsort(ip)
                return ip[order], it[order]
            raise ValueError("catalog and truth share no TARGETID")
    if len(pred) != len(truth):
        raise ValueError(f"cannot match catalog ({len(pred)} rows) to truth ({len(truth)} rows): "
                         f"no unique TARGETIDs and different lengths")
    idx = np.arange(len(pred))
    return idx, idx


def truth_labels(truth: Table, class_set: str) -> np.ndarray:
    """Truth labels in ``class_set``: CLASS_LABEL if present, else mapped from SDSS
    CLASS/SUBCLASS (or SPECTYPE/SUBTYPE); '' where no label of the set fits."""
    names = set(class_labels(class_set))
    if "CLASS_LABEL" in truth.colnames:
        lab = np.asarray(truth["CLASS_LABEL"], str)
        if np.isin(lab[lab != ""], list(names)).all():
            return lab
    for c, s in (("CLASS", "SUBCLASS"), ("SPECTYPE", "SUBTYPE")):
        if c in truth.colnames:
            sub = truth[s] if s in truth.colnames else np.full(len(truth), "")
            return map_sdss(np.asarray(truth[c], str), np.asarray(sub, str), class_set)
    if "CLASS_LABEL" in truth.colnames:
        lab = np.asarray(truth["CLASS_LABEL"], str)
        return np.where(np.isin(lab, list(names)), lab, "")
    raise ValueError("truth table has no CLASS_LABEL, CLASS/SUBCLASS or SPECTYPE column")


def _truth_z(truth: Table) -> np.ndarray | None:
    for c in ("Z", "Z_TRUE", "REDSHIFT"):
        if c in truth.colnames:
            return np.asarray(truth[c], float)
    return None


def evaluate_catalog(pred: Table, truth: Table, class_set: str | None = None,
                     catastrophic: float = 0.01, n_bins: int = 10) -> dict:
    """Compare a model catalog with the truth; a JSON-serialisable dict.

    ``class_set`` defaults to the one implied by the catalog's PROB_<label> columns.
    Rows flagged as unusable (Z < 0 with ZWARN NODATA) count as misclassified
    and are left out of redshift metrics (``n_no_data`` says how many).  Redshift metrics
    are given overall and per true class.
    """
    from .flags import ZWARN
    class_set = class_set or _infer_class_set(pred)
    names = class_labels(class_set)
    ip, it = match_rows(pred, truth)
    p, t = pred[ip], truth[it]
    out: dict = {"class_set": class_set, "n_matched": int(len(ip)),
                 "n_pred": int(len(pred)), "n_truth": int(len(truth))}
    zw = np.asarray(p["ZWARN"], np.int64) if "ZWARN" in p.colnames else np.zeros(len(p), np.int64)
    nodata = (zw & int(ZWARN.NODATA)) != 0
    out["n_no_data"] = int(nodata.sum())
    tl = truth_labels(t, class_set)
    has = tl != ""
    out["n_unlabelled_truth"] = int((~has).sum())
    pl = np.asarray(p["CLASS_LABEL"], str) if "CLASS_LABEL" in p.colnames else None
    if pl is not None:
        pl = map_labels(pl, class_set)       # a thirteen-class model judged on 'three'
        out["classification"] = classification_metrics(tl[has], pl[has], names)
        probs = _probs_in(p, class_set)
        if probs is not None:
            yidx = np.array([names.index(x) if x in names else -1 for x in tl])
            out["calibration"] = calibration(probs[has & ~nodata], yidx[has & ~nodata], n_bins)
    zt = _truth_z(t)
    if zt is not None and "Z" in p.colnames:
        zp = np.asarray(p["Z"], float)
        use = ~nodata & np.isfinite(zt)
        out["redshift"] = redshift_metrics(zp[use], zt[use], catastrophic)
        if "ZERR" in p.colnames:
            out["redshift"].update(zerr_coverage(zp[use], zt[use], np.asarray(p["ZERR"], float)[use]))
        out["redshift_per_class"] = {}
        for name in names:
            sel = use & (tl == name)
            if sel.any():
                out["redshift_per_class"][name] = redshift_metrics(zp[sel], zt[sel], catastrophic)
    return out


def _probs_in(pred: Table, class_set: str) -> np.ndarray | None:
    """(N, K) probabilities over ``class_set``: the catalog's PROB_<label> columns summed
    over the labels that map to each label of the set (None when some has none)."""
    names = class_labels(class_set)
    src = [c[5:] for c in pred.colnames if c.startswith("PROB_")]
    mapped = map_labels(src, class_set) if src else np.zeros(0, str)
    cols = []
    for name in names:
        members = [s for s, m in zip(src, mapped) if m == name]
        if not members:
            return None
        cols.append(np.sum([np.asarray(pred[f"PROB_{s}"], float) for s in members], axis=0))
    return np.stack(cols, axis=1)


def _infer_class_set(pred: Table) -> str:
    from .classes import CLASS_SETS
    probs = {c[5:] for c in pred.colnames if c.startswith("PROB_")}
    for name, labs in CLASS_SETS.items():
        if probs == set(labs):
            return name
    raise ValueError("cannot tell the catalog's class set from its PROB_ columns; "
                     "pass class_set")


def redrock_agreement(spectype, z, ref_spectype, ref_z, ref_zwarn, ref_deltachi2,
                      min_deltachi2: float = 25.0, max_kms: float = 1000.0) -> dict:
    """Agreement with a reference Redrock catalog where Redrock is confident (ZWARN 0 and
    DELTACHI2 > ``min_deltachi2``, the DESI targets' definition): the same SPECTYPE and
    |Δz|/(1+z) below ``max_kms``/c (Redrock's own 1000 km/s "same solution" scale).

    Returns ``n`` (confident rows), ``agree`` (their share that agrees, NaN when none),
    ``confident`` and ``agrees`` (per-row boolean arrays) so that a table can list the misses."""
    from .constants import C_KMS
    st = np.char.strip(np.char.upper(np.asarray(spectype, dtype=str)))
    rs = np.char.strip(np.char.upper(np.asarray(ref_spectype, dtype=str)))
    z, rz = np.asarray(z, float), np.asarray(ref_z, float)
    conf = (np.asarray(ref_zwarn) == 0) & (np.asarray(ref_deltachi2, float) > min_deltachi2)
    with np.errstate(invalid="ignore"):
        ok = (st == rs) & (np.abs(z - rz) / (1 + rz) < max_kms / C_KMS)
    n = int(conf.sum())
    return {"n": n, "agree": float(ok[conf].mean()) if n else float("nan"),
            "confident": conf, "agrees": ok & conf}
