"""Class sets and the one mapping from SDSS CLASS/SUBCLASS strings to each of them."""

from __future__ import annotations

import numpy as np

__all__ = ["CLASS_SETS", "labels", "map_sdss", "map_labels", "spectype_of", "subtype_of", "STAR_SUBTYPES_13",
           "SPECTYPE_Z_RANGE", "condition_on_redshift"]

STAR_SUBTYPES_13 = ("A0", "F5", "F9", "G2", "K1", "K3", "K5")

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "five": ("STAR", "GALAXY_AGN", "GALAXY_STARBURST", "GALAXY_STARFORMING", "QSO_BROADLINE"),
    "thirteen": ("QSO", "QSO_BROADLINE", "GALAXY", "GALAXY_STARFORMING", "GALAXY_STARBURST",
                 "GALAXY_AGN") + tuple(f"STAR_{s}" for s in STAR_SUBTYPES_13),
    "galaxy-types": ("S0", "Sa", "Sb", "Sc"),
    "three": ("STAR", "GALAXY", "QSO"),
    # Ondřejov / LAMOST emission-line star scheme (active learning, `vgg1d`): all are stars
    "ondrejov": ("ABSORPTION", "EMISSION", "DOUBLE_PEAK"),
}


def labels(class_set: str) -> tuple[str, ...]:
    try:
        return CLASS_SETS[class_set]
    except KeyError:
        raise ValueError(f"unknown class set {class_set!r}; choose from "
                         f"{', '.join(CLASS_SETS)}") from None


def _norm(s) -> str:
    if isinstance(s, bytes):
        s = s.decode("ascii", "replace")
    return " ".join(str(s).strip().upper().split())


def _one(cls: str, sub: str, class_set: str) -> str | None:
    cls, sub = _norm(cls), _norm(sub)
    words = set(sub.replace("_", " ").split())
    if class_set == "three":
        return cls if cls in ("STAR", "GALAXY", "QSO") else None
    if class_set == "galaxy-types":
        return sub.capitalize() if sub.capitalize() in ("S0", "Sa", "Sb", "Sc") else None
    if cls == "STAR":
        if class_set == "five":
            return "STAR"
        # SDSS subclasses look like 'K3', 'A0', 'F9', 'K1', 'G2', 'A0P', 'K5III' …
        code = sub[:2]
        return f"STAR_{code}" if code in STAR_SUBTYPES_13 else None
    if cls == "QSO":
        if "BROADLINE" in words:
            return "QSO_BROADLINE"
        return "QSO" if class_set == "thirteen" else None
    if cls == "GALAXY":
        if "AGN" in words:
            return "GALAXY_AGN"
        if "STARBURST" in words:
            return "GALAXY_STARBURST"
        if "STARFORMING" in words:
            return "GALAXY_STARFORMING"
        if "BROADLINE" in words:   # SDSS galaxies with broad lines: nearest five-class label
            return "GALAXY_AGN" if class_set == "five" else "GALAXY"
        return "GALAXY" if class_set == "thirteen" else None
    return None


def map_sdss(cls, subclass, class_set: str) -> np.ndarray:
    """Map SDSS CLASS/SUBCLASS (scalars or arrays) into ``class_set``; '' where none fits."""
    labels(class_set)
    cls_a = np.atleast_1d(np.asarray(cls, dtype=object))
    sub_a = np.atleast_1d(np.asarray(subclass, dtype=object))
    if sub_a.size == 1 and cls_a.size > 1:
        sub_a = np.repeat(sub_a, cls_a.size)
    out = [(_one(c, s, class_set) or "") for c, s in zip(cls_a, sub_a)]
    return np.array(out, dtype="U24")


def map_labels(labels_, class_set: str) -> np.ndarray:
    """Labels of any class set (a model's ``STAR_K3``, ``GALAXY_AGN`` …) in ``class_set``
    (``STAR``, ``GALAXY`` for 'three'); '' where none fits, as :func:`map_sdss`."""
    names = set(labels(class_set))
    out = []
    for lab in np.atleast_1d(np.asarray(labels_, dtype=str)):
        if lab in names or not lab:
            out.append(lab)
        else:
            out.append(_one(spectype_of(lab), subtype_of(lab).replace("_", " "), class_set) or "")
    return np.array(out, dtype="U24")


def spectype_of(label: str) -> str:
    """Redrock SPECTYPE (GALAXY/QSO/STAR) and SUBTYPE of a label of any class set."""
    label = str(label)
    if label.startswith("STAR") or label in CLASS_SETS["ondrejov"]:
        return "STAR"
    if label.startswith("QSO"):
        return "QSO"
    return "GALAXY"


def subtype_of(label: str) -> str:
    label = str(label)
    if label in ("S0", "Sa", "Sb", "Sc") or label in CLASS_SETS["ondrejov"]:
        return label
    head, _, tail = label.partition("_")
    return tail


#: redshifts each spectral type can have: stars within ±1500 km/s, galaxies up to z 1.2
#: (past BOSS/eBOSS), quasars from z 0.02 (SDSS has almost none below)
SPECTYPE_Z_RANGE = {"STAR": (-0.005, 0.005), "GALAXY": (-0.005, 1.2), "QSO": (0.02, 7.5)}


def condition_on_redshift(probs, names, z) -> tuple[np.ndarray, np.ndarray]:
    """Where the top class cannot have the reported redshift, the class probabilities
    given it: p(c | z) ∝ p(c)·[z in c's range].

    Why: a network whose class and redshift heads are separate can report a star at
    z = 0.4 or a galaxy at z = 4.7, a catalog row that contradicts itself. Zeroing the
    classes whose spectral type cannot have that z (:data:`SPECTYPE_Z_RANGE`) and
    renormalising keeps Z and makes CLASS_LABEL agree with it. Rows whose top class fits,
    and rows no class fits, keep their probabilities exactly (so does the probability
    calibration). Returns (probabilities, rows that were conditioned)."""
    probs = np.asarray(probs, float)
    z = np.asarray(z, float)[:, None]
    rng = np.array([SPECTYPE_Z_RANGE[spectype_of(n)] for n in names])
    fits = (z >= rng[None, :, 0]) & (z <= rng[None, :, 1])
    kept = np.where(fits, probs, 0.0)
    mass = kept.sum(axis=1, keepdims=True)
    top_fits = np.take_along_axis(fits, probs.argmax(axis=1)[:, None], axis=1)[:, 0]
    use = ~top_fits & (mass[:, 0] > 0)
    out = np.where(use[:, None], kept / np.where(mass > 0, mass, 1.0), probs)
    return out, use
