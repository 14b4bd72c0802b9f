"""The line models fitted to galaxies and to quasars, built from the line table.

Galaxies: the narrow lines astronomers and the SDSS subclass rules use, in six rest-frame
windows, two kinematic groups (Balmer lines; forbidden lines), each with one width and one
velocity — SDSS's DR9 ties (idlspec2d ``etc/emlines.par``: one redshift for all lines, the
Balmer series with its own width).  Doublets with fixed atomic ratios share an amplitude.

Quasars: each broad line (Lyα with N V, C IV, C III], Mg II, Hβ, Hα) in its own window,
fitted independently of the others (their widths and blueshifts differ physically, and
independent windows keep each fit small).  A broad line is two Gaussians of widths s and
2.5 s sharing a centre (a peaky core and wings, the usual minimal broad-line profile); its
flux is their sum and its σ their second moment.  The narrow [O III], Hβ, Hα and [N II] in
the Hβ and Hα windows get one shared narrow width per window.  Backgrounds are a straight
line per window (SDSS fits quasar lines on linear backgrounds too, ``speclinefit.pro``).
"""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache

from ..constants import C_KMS
from .fit import Component, Group, LineModel
from .table import WAVE

__all__ = ["NARROW_LINES", "BROAD_LINES", "galaxy_model", "quasar_models", "WING_SCALE",
           "FEII_SIGMA_KMS", "rest_scaled", "window_groups", "line_stacks"]

#: (column name, table key) of the narrow lines measured in galaxies (and quasars where
#: their windows allow); doublet partners tied by ratio are listed after their partner
NARROW_LINES = (
    ("OII_3726", "OII_3726"), ("OII_3729", "OII_3729"), ("HBETA", "Hbeta"),
    ("OIII_4959", "OIII_4959"), ("OIII_5007", "OIII_5007"), ("OI_6300", "OI_6300"),
    ("NII_6548", "NII_6548"), ("HALPHA", "Halpha"), ("NII_6584", "NII_6584"),
    ("SII_6716", "SII_6717"), ("SII_6731", "SII_6731"),
)

#: (column name, table key) of the quasar broad lines
BROAD_LINES = (
    ("LYALPHA_BROAD", "Lyalpha"), ("CIV_BROAD", "CIV"), ("CIII_BROAD", "CIII"),
    ("MGII_BROAD", "MgII"), ("HBETA_BROAD", "Hbeta"), ("HALPHA_BROAD", "Halpha"),
)

WING_SCALE = 2.5
#: Fe II pseudo-continuum under C IV, Mg II (Vestergaard & Wilkes 2001 UV) and Hβ
#: (Boroson & Green 1992 optical): the bundled templates broadened to these σ (km/s), each a
#: free linear term (two widths combine to any width between).  Opt-in (``feii=True``):
#: on simulated quasars it brings C IV, Mg II and broad Hβ from 0.89–0.91 × the truth to
#: 0.97–0.98, but on real SDSS quasars the free Fe II trades off against the broad wings
#: (C IV at 8.5σ → 0.5σ in one spectrum) and four of 17 BROADLINE quasars lost the label
FEII_SIGMA_KMS = (1200.0, 3000.0)
_BALMER, _FORBIDDEN = 0, 1


@lru_cache(maxsize=None)
def galaxy_model() -> tuple[LineModel, dict[str, tuple[int, float, int]]]:
    """The narrow-line model and, per column name, (amplitude index, ratio, group)."""
    # windows: the lines ± ~1200 km/s (room for the background level and velocity range)
    regions = ((3712.0, 3745.0), (4843.0, 4882.0), (4940.0, 5028.0), (6280.0, 6324.0),
               (6525.0, 6611.0), (6697.0, 6754.0))
    groups = (Group("balmer", 80.0, 500.0, 500.0), Group("forbidden", 80.0, 500.0, 500.0))
    spec = (  # column, key, region, group, amp, ratio
        ("OII_3726", "OII_3726", 0, _FORBIDDEN, 0, 1.0),
        ("OII_3729", "OII_3729", 0, _FORBIDDEN, 1, 1.0),
        ("HBETA", "Hbeta", 1, _BALMER, 2, 1.0),
        ("OIII_5007", "OIII_5007", 2, _FORBIDDEN, 3, 1.0),
        ("OIII_4959", "OIII_4959", 2, _FORBIDDEN, 3, 1 / 2.98),
        ("OI_6300", "OI_6300", 3, _FORBIDDEN, 4, 1.0),
        ("NII_6584", "NII_6584", 4, _FORBIDDEN, 5, 1.0),
        ("NII_6548", "NII_6548", 4, _FORBIDDEN, 5, 1 / 3.05),
        ("HALPHA", "Halpha", 4, _BALMER, 6, 1.0),
        ("SII_6716", "SII_6717", 5, _FORBIDDEN, 7, 1.0),
        ("SII_6731", "SII_6731", 5, _FORBIDDEN, 8, 1.0),
    )
    comps = tuple(Component(k, WAVE[k], g, a, r, ratio) for _, k, r, g, a, ratio in spec)
    index = {col: (a, ratio, g) for col, _, _, g, a, ratio in spec}
    # SDSS fits a galaxy's lines with the best-fit velocity-dispersion model as the only
    # background term (one free scale over the whole spectrum; idlspec2d speclinefit.pro:
    # "The first background term is simply the best-fit dispersion template for
    # galaxies", local flat terms only where that model does not exist), so its
    # LINEAREA_ERR is a line error with the continuum known: the rules' errors hold our
    # window constants fixed.  Checked on the SPZLINE HDUs of two SDSS galaxies: Hα, Hβ,
    # [O III] errors within 1–4 % of SDSS's (7–10 % larger with the constants free).
    # narrow lines only: variable projection from the first iteration (the broad lines'
    # windows keep the first steps of the joint fit, :data:`.solver.FULL_STEPS`, which decide
    # which of their minima a quasar goes to)
    return LineModel(comps, groups, regions, n_amp=9, slope=False,
                     white_fixed_background=True, full_steps=0), index


@lru_cache(maxsize=None)
def quasar_models(single: bool = False,
                  feii: bool = False) -> tuple[tuple[str, LineModel, dict], ...]:
    """One small model per broad-line window: (broad column, model, narrow columns' index).

    In each model amplitude 0 is the broad core, 1 the broad wings (group 0); narrow lines
    (group 1) follow.  ``index`` maps narrow column names to (amplitude, ratio, group).
    ``single``: one Gaussian per broad line (the wing amplitude is pinned at 0), the profile
    SDSS's own line fit uses.  ``feii``: Fe II pseudo-continuum terms under C IV, Mg II and
    Hβ (:data:`FEII_SIGMA_KMS`)."""
    half = 15000.0 / C_KMS
    out = []
    for col, key in BROAD_LINES:
        w0 = WAVE[key]
        region = ((w0 * (1 - half), w0 * (1 + half)),)
        bg = Group(col, 2000.0, 9000.0, 3000.0)
        comps = [Component(key, w0, 0, 0, 0),
                 Component(key, w0, 0, 1, 0, ratio=0.0 if single else 1.0, scale=WING_SCALE)]
        groups = [bg]
        index = {}
        narrow = {"Lyalpha": (("NV", "NV", 1.0, True),),
                  "Hbeta": (("OIII_5007", "OIII_5007", 1.0, False),
                            ("OIII_4959", "OIII_5007", 1 / 2.98, False),
                            ("HBETA", "Hbeta", 1.0, False)),
                  "Halpha": (("HALPHA", "Halpha", 1.0, False),
                             ("NII_6584", "NII_6584", 1.0, False),
                             ("NII_6548", "NII_6584", 1 / 3.05, False))}.get(key, ())
        if narrow:
            groups.append(Group("narrow", 150.0, 900.0, 600.0) if key != "Lyalpha"
                          else Group("NV", 2000.0, 9000.0, 3000.0))
        amp = 2
        amps = {}
        for ncol, nkey, ratio, _ in narrow:
            a = amps.setdefault(nkey, amp if nkey not in amps else amps[nkey])
            if a == amp:
                amp += 1
            wave = WAVE["OIII_4959"] if ncol == "OIII_4959" else (
                WAVE["NII_6548"] if ncol == "NII_6548" else WAVE[nkey])
            comps.append(Component(ncol, wave, 1, a, 0, ratio))
            index[ncol] = (a, ratio, 1)
        # bins: 4 pixels (276 km/s) under broad lines only, 2 where narrow lines (σ ≥ 150
        # km/s ⊕ the instrument, ≥ 2.3 px) share the window
        binning = 2 if key in ("Hbeta", "Halpha") else 4
        fe = {"CIV": "feii_uv", "MgII": "feii_uv", "Hbeta": "feii_opt"}
        templates = tuple(f"{fe[key]}:{s:g}" for s in FEII_SIGMA_KMS) \
            if feii and key in fe else ()
        out.append((col, LineModel(tuple(comps), tuple(groups), region, n_amp=amp, slope=True,
                                   bin=binning, templates=templates), index))
    return tuple(out)


#: fields that only name a component or group (a window's C IV / Mg II): left out of
#: :func:`rest_scaled`, so windows differing in names alone are the same fit
_NAMES = ("key", "name")


def rest_scaled(model: LineModel, drop: tuple[str, ...] = ()) -> tuple:
    """``model`` with every wavelength in units of its first component's (its broad line's):
    two windows with the same value are the same fit at redshifts whose (1 + z) differ by
    the ratio of their lines' wavelengths — on a log-λ grid a window, its lines' centres and
    its bins are then the same pixels (:func:`window_groups`).  Wavelength ratios are
    rounded to 12 digits (w0 (1 ± h) / w0 is not exactly 1 ± h in floating point).

    Built from the dataclasses' fields, not a hand list: a field added to
    :class:`LineModel`, :class:`Component` or :class:`Group` enters the key by value
    (two windows differing in it are not stacked) without anyone remembering it here.
    ``drop``: component and group fields left out as well (:func:`line_stacks`)."""
    w0 = model.components[0].wave

    def rest(obj):
        return tuple(round(v / w0, 12) if f.name == "wave" else v
                     for f in fields(obj) if f.name not in _NAMES + drop
                     for v in (getattr(obj, f.name),))

    parts = {"components": tuple(rest(c) for c in model.components),
             "groups": tuple(rest(g) for g in model.groups),
             "regions": tuple((round(lo / w0, 12), round(hi / w0, 12))
                              for lo, hi in model.regions)}
    return tuple(parts.get(f.name, getattr(model, f.name)) for f in fields(model))


@lru_cache(maxsize=None)
def window_groups(single: bool = False, feii: bool = False) -> tuple[tuple[int, ...], ...]:
    """The quasar windows of :func:`quasar_models` (their positions) grouped by
    :func:`rest_scaled`: C IV, C III] and Mg II are one broad line each in the same
    ±15000 km/s window, so their (row, window) pairs are fitted as one problem.

    Why: a window's fit on the few dozen quasars of a batch that reach it is numpy-call
    bound (~1 ms an iteration whatever its rows, a one-off profile), and every window
    pays its own 20-odd iterations (``benchmarks/lines_speed.py``'s iterations column);
    stacked, three windows pay them once.  Each pair stays its own row, and the solver's
    rows are independent, so the answers are those of separate fits, bit for bit
    (``tests/test_ljoint_batching.py`` says why)."""
    return _grouped([rest_scaled(model) for _, model, _ in quasar_models(single, feii)])


#: component fields a stacked problem's rows carry for themselves (:mod:`.stack`): windows
#: differing only in these are fitted as one problem, each row with its own model
PER_ROW = ("wave", "ratio", "amp")


@lru_cache(maxsize=None)
def line_stacks(single: bool = False, feii: bool = False) -> tuple[tuple[int, ...], ...]:
    """The groups of :func:`window_groups` (their positions) whose models have the same
    layout — :func:`rest_scaled` but for their lines' wavelengths, tie ratios and
    amplitudes (:data:`PER_ROW`) — fitted as one problem whose rows keep their own models
    (:func:`.stack.stack_problems`): the Hβ and Hα windows (a broad core and wings, one
    narrow group of three lines, four amplitudes, bins of 2).

    Why: each of those windows is reached by a few dozen quasars of a batch, a fit that is
    numpy-call bound (~1 ms an iteration whatever its rows), and stacked they pay their
    ~20 iterations once; every row's answer is its separate fit's, bit for bit
    (``tests/test_linesfix_stack.py``)."""
    models = quasar_models(single, feii)
    return _grouped([rest_scaled(models[members[0]][1], PER_ROW)
                     for members in window_groups(single, feii)])


def _grouped(keys: list) -> tuple[tuple[int, ...], ...]:
    """The positions of ``keys`` grouped by equal key, groups in order of first appearance."""
    out: dict = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return tuple(tuple(g) for g in out.values())
