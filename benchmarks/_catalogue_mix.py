"""Shared by the gasnet and eigen benchmarks: quasar redshift quality at the S/N mix of each
GaSNet-III quasar catalogue in ../shared/data/catalogs (simulated quasars reweighted)."""

from __future__ import annotations

import numpy as np
from _common import SHARED

from specsift.metrics import delta_z


def catalogue_mix(zp, zt, snr) -> dict:
    """Simulated-quasar GF reweighted to each GaSNet-III quasar catalogue's joint (S/N, z)
    distribution. The two catalogues are very different (median S/N 8.8 vs 3.1), and the
    simulator draws from both, so one number would hide where the errors are."""
    from astropy.table import Table
    s_edges = np.array([0, 1, 1.5, 2, 3, 4, 6, 8, 12, 20, np.inf])
    z_edges = np.array([0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 6])

    def density(s, z):
        h = np.histogram2d(s, z, [s_edges, z_edges])[0]
        return h / max(h.sum(), 1)
    dz = delta_z(zp, zt)
    h_sim = density(snr, zt)
    i = np.clip(np.digitize(snr, s_edges) - 1, 0, len(s_edges) - 2)
    j = np.clip(np.digitize(zt, z_edges) - 1, 0, len(z_edges) - 2)
    out = {}
    for name in ("gasnet3-sdss-qso-7884.fits", "gasnet3-sdss-qso-15000.fits"):
        path = SHARED / "catalogs" / name
        if not path.exists() or zt.size == 0:
            continue
        t = Table.read(path, hdu=1)
        cs, cz = np.asarray(t["SN_MEDIAN_ALL"], float), np.asarray(t["Z"], float)
        ok = np.isfinite(cs) & np.isfinite(cz)
        h_cat = density(cs[ok], cz[ok])
        w = np.divide(h_cat, h_sim, out=np.zeros_like(h_cat), where=h_sim > 0)[i, j]
        pub = np.abs(np.asarray(t["Best_fit_z"], float) - cz) / (1 + cz)
        out[name] = {"median_snr": float(np.median(cs[ok])),
                     "mass_covered": float(h_cat[h_sim > 0].sum()),
                     "effective_n": float(w.sum() ** 2 / max((w ** 2).sum(), 1e-12)),
                     "GF_0.003": float((w * (dz < 0.003)).sum() / w.sum()),
                     "GF_0.01": float((w * (dz < 0.01)).sum() / w.sum()),
                     "published_GF_0.003": float(np.mean(pub[ok] < 0.003)),
                     "published_GF_0.01": float(np.mean(pub[ok] < 0.01))}
    return out
