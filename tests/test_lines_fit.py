"""The line fit's solver pieces against reference computations: the block Jacobian of
``Problem.evaluate`` against finite differences of its model, the block-sparse normal
equations against the dense ones, and the reused-profile path against a fresh evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from specsift.lines.fit import fit_lines, fit_pixels
from specsift.lines.models import galaxy_model, quasar_models
from specsift.lines.problem import Problem, _take_constants
from specsift.lines.profiles import GRAM, _erf
from specsift.spectra import DEFAULT_GRID


def _problem(model, n=6, z=0.12, seed=0, extra=False):
    rng = np.random.default_rng(seed)
    grid = DEFAULT_GRID
    flux = rng.normal(0, 1, (n, grid.size)).astype(np.float32)
    ivar = rng.uniform(0.5, 2.0, (n, grid.size)).astype(np.float32)
    ivar[:, ::37] = 0                                    # some bad pixels
    zz = z + 0.01 * np.arange(n)
    ex = None
    if extra:
        m = fit_pixels(model, grid.loglam, zz).shape[1]
        ex = rng.uniform(0.5, 1.5, (n, m, len(model.templates))).astype(np.float32)
    prob = Problem(model, grid.loglam, flux, ivar, zz, 65.0, ex)
    theta = np.zeros((n, prob.np))
    theta[:, :prob.ks] = rng.uniform(5, 50, (n, prob.ks))                # amplitudes, backs
    theta[:, prob.ks:prob.ku] = prob.s_start * rng.uniform(0.7, 1.4, prob.s_start.shape)
    theta[:, prob.ku:] = rng.uniform(-1.5, 1.5, (n, prob.np - prob.ku))  # pixels
    return prob, theta


def _dense(prob, blocks):
    """The (N, M, P) Jacobian the blocks stand for."""
    J = np.zeros((prob.n, prob.m, prob.np))
    for (sl, cols), blk in zip(prob.blocks, blocks):
        J[:, sl][:, :, cols] = blk.transpose(0, 2, 1)
    return J


def _models():
    out = [("galaxy", galaxy_model()[0], 0.12, False)]
    for col, model, _ in quasar_models():
        if col in ("HBETA_BROAD", "HALPHA_BROAD", "MGII_BROAD"):
            out.append((col, model, 0.3 if col != "MGII_BROAD" else 1.1, False))
    for col, model, _ in quasar_models(feii=True):
        if col == "MGII_BROAD":
            out.append((col + " with Fe II", model, 1.1, True))
    return out


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_block_jacobian_matches_finite_differences(name, model, z, extra):
    prob, theta = _problem(model, z=z, extra=extra)
    _, blocks = prob.evaluate(theta)
    J = _dense(prob, blocks)
    # every column outside a window's block is zero by construction; check all of them.
    # Steps: linear terms exactly linear (large step); a width or velocity step 2 % of its
    # group's width in each row (float32 rounding above, truncation below)
    g = len(model.groups)
    for p in range(prob.np):
        if p < prob.ks:
            h = np.full(prob.n, 5.0)
        else:
            h = 0.02 * theta[:, prob.ks + (p - prob.ks) % g]
        up, dn = theta.copy(), theta.copy()
        up[:, p] += h
        dn[:, p] -= h
        fd = (prob.evaluate(up, jac=False)[0].astype(float)
              - prob.evaluate(dn, jac=False)[0].astype(float)) / (2 * h[:, None])
        scale = np.abs(fd).max() + 1e-3
        assert np.abs(J[:, :, p] - fd).max() < 3e-3 * scale, (name, p)


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_block_normal_equations_equal_the_dense_ones(name, model, z, extra):
    prob, theta = _problem(model, z=z, extra=extra, seed=1)
    out, blocks = prob.evaluate(theta)
    r = prob.y - out
    H, g = prob.gram(blocks, r)
    J = _dense(prob, blocks)
    Jw = J * prob.w[..., None]
    np.testing.assert_allclose(H, Jw.transpose(0, 2, 1) @ J, rtol=1e-4,
                               atol=1e-6 * np.abs(H).max())
    np.testing.assert_allclose(g, np.einsum("nmp,nm->np", Jw, r), rtol=1e-4,
                               atol=1e-6 * np.abs(g).max())
    lin = prob.ks
    Hl, gl = prob.gram(blocks, r, limit=lin)
    np.testing.assert_allclose(Hl, H[:, :lin, :lin], rtol=1e-5, atol=1e-7 * np.abs(H).max())
    np.testing.assert_allclose(gl, g[:, :lin], rtol=1e-5, atol=1e-7 * np.abs(g).max())


def test_reused_profiles_give_the_fresh_evaluation():
    """Profiles computed at θ and completed at new amplitudes and backgrounds (same widths
    and velocities), as ``linear.linear_solve`` does, equal a fresh evaluation."""
    prob, theta = _problem(quasar_models()[4][1], z=0.3, seed=2)
    parts = prob.profiles(theta)
    new = theta.copy()
    new[:, :prob.ks] *= 1.7
    out_a, J_a = prob.complete(new, parts, prob.linear_design(parts))
    out_b, J_b = prob.evaluate(new)
    np.testing.assert_allclose(out_a, out_b, rtol=1e-6, atol=1e-6)
    for a, b in zip(J_a, J_b):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _reference_profiles(prob, theta, cs, first, ws):
    """The profiles and derivatives as the fit computed them before the folded form of
    ``Problem._profiles_at`` (the same float32 operations): φ, e·φ and each derivative on
    its own."""
    f32 = np.float32
    sc = prob.scale[cs]
    sg = theta[:, prob.ks + prob.group[cs]] * sc
    s = np.sqrt(sg * sg + prob.s_inst_l[:, cs] ** 2)[..., None]
    cen = (prob.c0[:, cs] + theta[:, prob.ku + prob.group[cs]])[..., None]
    e = prob.x[:, first, None, None] - f32(0.5) + f32(prob.bin) * np.arange(ws + 1, dtype=f32) - cen
    u = e / s
    E = _erf(u / f32(np.sqrt(2.0)))
    phi = np.exp(-0.5 * u * u) / (f32(np.sqrt(2.0 * np.pi)) * s)
    ephi = e * phi
    integ = 0.5 * (E[..., 1:] - E[..., :-1])
    d_c = phi[..., :-1] - phi[..., 1:]
    d_s = (ephi[..., :-1] - ephi[..., 1:]) / s
    inv = prob.ratio[cs][None, :, None] * prob.inv_dlam[:, None, first:first + ws]
    return integ * inv, ((sc * sg / s[..., 0])[..., None] * d_s) * inv, d_c * inv


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_folded_profiles_equal_the_reference_formulas(name, model, z, extra):
    prob, theta = _problem(model, z=z, extra=extra, seed=3)
    th = theta.astype(np.float32)
    for k, (sl, _) in enumerate(prob.blocks):
        for cs, off, ws, _ in prob.sets[k]:
            got = prob._profiles_at(th, cs, *prob._set_constants(cs, sl.start + off, ws))
            ref = _reference_profiles(prob, th, cs, sl.start + off, ws)
            for g, r in zip(got, ref):
                assert g.dtype == np.float32
                np.testing.assert_allclose(g, r, rtol=0, atol=1e-5 * np.abs(r).max())


@pytest.mark.parametrize("b", [1, 2, 4])
def test_window_runs_equal_the_pixel_by_pixel_gather(b):
    """Fit-bin pixels copied as runs, for windows inside the spectrum and running off
    either end, equal a gather of every pixel with 0 off the spectrum."""
    from specsift.lines.problem import _pixels
    rng = np.random.default_rng(4)
    n, p = 7, 300
    arr = rng.normal(size=(n, p)).astype(np.float32)
    slices = [slice(0, 20), slice(20, 31)]
    starts = np.array([[-50, 0], [-7, 5], [0, 150], [100, 280], [290, 299], [310, -400],
                       [3, p - b * 11]])
    idx = np.concatenate([starts[:, [k]] + b * np.arange(sl.stop - sl.start)
                          for k, sl in enumerate(slices)], axis=1)
    fine = idx[:, :, None] + np.arange(b)
    inside = (fine >= 0) & (fine < p)
    ref = np.where(inside, arr[np.arange(n)[:, None, None], np.clip(fine, 0, p - 1)], 0)
    got = _pixels(arr, idx, slices, b)
    assert got.shape == ref.shape and got.dtype == arr.dtype
    np.testing.assert_array_equal(got, ref)


def test_instrument_rows_stay_views_and_equal_indexing():
    """σ rows of a batch's subset: the same values as indexing, without materialising
    the rows of one shared curve or of one value per spectrum."""
    from specsift.lines.measure import _inst_rows, _sub_rows
    n, p = 9, 50
    rows = np.array([0, 3, 4, 8])
    curve = np.linspace(50, 80, p)
    for sig in (_inst_rows(69.0, n, p), _inst_rows(curve, n, p),
                _inst_rows(np.arange(n) + 60.0, n, p),
                _inst_rows(np.random.default_rng(0).uniform(50, 80, (n, p)), n, p)):
        got = _sub_rows(sig, rows)
        np.testing.assert_array_equal(got, sig[rows])
        if sig.strides[0] == 0 or sig.strides[1] == 0:
            assert not got.flags.owndata or got.base is not None
            assert got.nbytes > 0 and (got.strides[0] == 0 or got.strides[1] == 0)


def test_profiles_and_jacobian_hold_no_subnormals():
    """Far line wings are held at exp(−5.5²) instead of running into float32 subnormals
    (slow on the CPU); the model and Jacobian still match finite differences (above)."""
    prob, theta = _problem(quasar_models()[4][1], z=0.3, seed=5)
    tiny = np.finfo(np.float32).tiny
    out, blocks = prob.evaluate(theta)
    for arr in [out, *blocks]:
        a = np.abs(arr)
        assert not np.any((a > 0) & (a < tiny))
    H, _ = prob.gram(blocks, prob.y - out)
    assert np.all(np.isfinite(H))


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_merged_sets_and_narrow_reach_give_the_same_model_and_blocks(name, model, z, extra):
    """The sets evaluated together (``Problem.merged``) and the narrow lines' bins cut to
    where they are non-zero (``Problem._reaches``) give the model and Jacobian blocks of
    one call per set over its whole span, bit for bit — at widths from the start to the
    largest allowed, so that a cut range can also reach a set's ends."""
    prob, theta = _problem(model, z=z, extra=extra, seed=5)


    if sum(len(sets) for sets in prob.sets) > 1:
        assert any(len(g) > 1 for g in prob.merged)       # something is merged
    solo = Problem.__new__(Problem)
    solo.__dict__.update(prob.__dict__)
    solo._consts = {}
    solo.merged = [[(k, e)] for k in range(len(prob.blocks)) for e in range(len(prob.sets[k]))]
    solo._reaches = lambda theta, sets: [(off, ws) for _, _, off, ws in sets]

    for scale in (1.0, 3.0, 100.0):
        th = theta.copy()
        th[:, prob.ks:prob.ku] = np.minimum(th[:, prob.ks:prob.ku] * scale, prob.s_max)
        out, blocks = prob.evaluate(th)
        out_s, blocks_s = solo.evaluate(th)
        np.testing.assert_array_equal(out, out_s)
        for b, bs in zip(blocks, blocks_s):
            np.testing.assert_array_equal(b, bs)


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_first_writers_store_what_adding_to_zeros_gives(name, model, z, extra):
    """Block rows stored by their first writer (``scatter.first_writers``) equal every
    writer adding to the zeros, bit for bit; each row has exactly one first writer."""
    prob, theta = _problem(model, z=z, extra=extra, seed=6)
    adding = Problem.__new__(Problem)
    adding.__dict__.update(prob.__dict__)
    adding._consts = {}
    adding.sets = [[(cs, off, ws, tuple(tuple((q, sel, False) for q, sel, _ in spec)
                                        for spec in rows))
                    for cs, off, ws, rows in sets] for sets in prob.sets]
    for k, sets in enumerate(prob.sets):
        firsts = [q for *_, rows in sets for spec in rows for q, _, first in spec if first]
        written = {q for *_, rows in sets for spec in rows for q, _, _ in spec}
        assert sorted(firsts) == sorted(written)
    out, blocks = prob.evaluate(theta)
    out_a, blocks_a = adding.evaluate(theta)
    np.testing.assert_array_equal(out, out_a)
    for b, ba in zip(blocks, blocks_a):
        np.testing.assert_array_equal(b, ba)


def _reference_gram(prob, J, r, limit=None):
    """JᵀWJ and JᵀW r summed window by window with fancy-indexed ``+=`` (the gram before
    the one-bincount assembly)."""
    n, P = prob.n, prob.np if limit is None else limit
    H, g = np.zeros((n, P, P)), np.zeros((n, P))
    for (sl, cols), Jr in zip(prob.blocks, J):
        if limit is not None:
            nk = int(np.searchsorted(cols, limit))
            cols, Jr = cols[:nk], Jr[:, :nk]
        Jw = Jr * prob.w[:, None, sl]
        H[:, cols[:, None], cols[None, :]] += np.matmul(Jw, Jr.transpose(0, 2, 1))
        g[:, cols] += np.matmul(Jw, r[:, sl, None].astype(np.float32))[..., 0]
    return H, g


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_gram_assembly_equals_the_window_by_window_sums(name, model, z, extra):
    """The windows' products placed by one bincount (``ModelEvaluation.gram``) equal the
    window-by-window sums bit for bit, full and linear-only, also after ``take``."""
    prob, theta = _problem(model, z=z, extra=extra, seed=7)
    for p in (prob, prob.take(np.array([4, 1, 2]))):
        out, blocks = p.evaluate(theta[:p.n] if p is prob else theta[[4, 1, 2]])
        r = p.y - out
        for limit in (None, p.ks):
            H, g = p.gram(blocks, r, limit=limit)
            H_ref, g_ref = _reference_gram(p, blocks, r, limit)
            assert H.dtype == g.dtype == np.float64
            np.testing.assert_array_equal(H, H_ref)
            np.testing.assert_array_equal(g, g_ref)
        assert p.gram(blocks)[1] is None


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_take_keeps_the_constants_of_its_rows(name, model, z, extra):
    """A re-sliced problem (``Problem.take``) starts from its rows' slices of the per-set
    constants; it evaluates bit for bit as one that makes them afresh."""
    prob, theta = _problem(model, z=z, extra=extra, seed=8)
    prob.evaluate(theta)                                   # constants made
    keep = np.array([5, 0, 3])
    sub = prob.take(keep)
    assert sub._consts and not any(k[0] == GRAM for k in sub._consts)
    fresh = prob.take(keep)
    fresh._consts = {}
    out, blocks = sub.evaluate(theta[keep])
    out_f, blocks_f = fresh.evaluate(theta[keep])
    np.testing.assert_array_equal(out, out_f)
    for b, bf in zip(blocks, blocks_f):
        np.testing.assert_array_equal(b, bf)
    H, g = sub.gram(blocks, sub.y - out)
    H_f, g_f = fresh.gram(blocks_f, fresh.y - out_f)
    np.testing.assert_array_equal(H, H_f)
    np.testing.assert_array_equal(g, g_f)


def test_take_refuses_a_cached_kind_it_has_no_rule_for():
    """A new kind of cached constants is not sliced by guesswork (a wrong slice would
    misalign rows silently): ``_take_constants`` raises until it is given a rule."""
    with pytest.raises(KeyError, match="no rule"):
        _take_constants({("new kind", 0): (np.zeros((4, 3)), np.zeros((4, 3)))}, [0, 2])


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_fit_lines_of_no_spectra_is_an_empty_result_shaped_as_a_fit(name, model, z, extra):
    """0 rows (a batch where no spectrum reaches a window): every field has 0 rows and
    the trailing shape and dtype of a real fit's, instead of a reshape error inside."""
    p = DEFAULT_GRID.size
    from specsift.lines.continuum import template_columns
    tpl = template_columns(model, DEFAULT_GRID.loglam, np.array([z])) if extra else None
    one = fit_lines(model, DEFAULT_GRID.loglam, np.zeros((1, p), np.float32),
                    np.ones((1, p), np.float32), [z], extra=tpl)
    for kw in ({}, {"rows": np.zeros(0, np.int64)}):
        n = 0 if not kw else 1
        empty = fit_lines(model, DEFAULT_GRID.loglam, np.zeros((n, p), np.float32),
                          np.ones((n, p), np.float32), np.zeros(0), **kw)
        for f in dataclasses.fields(one):
            a, b = getattr(empty, f.name), getattr(one, f.name)
            assert a.shape == (0,) + b.shape[1:] and a.dtype == b.dtype, f.name


def test_fit_lines_names_a_non_finite_redshift():
    """A NaN redshift has no windows: a ValueError saying so and which rows, not a
    cast error from inside the geometry (measure_lines leaves such spectra out)."""
    p = DEFAULT_GRID.size
    model = galaxy_model()[0]
    with pytest.raises(ValueError, match=r"redshift not finite .* 1 of 3 spectra .*\[1\]"):
        fit_lines(model, DEFAULT_GRID.loglam, np.zeros((3, p), np.float32),
                  np.ones((3, p), np.float32), [0.1, np.nan, 0.2])
