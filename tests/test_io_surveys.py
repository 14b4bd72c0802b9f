"""One real file of every LAMOST layout and the DESI resolution data, checked against the
labels the folders ship (``labels.csv``), plus the walk over every real spectrum file in
../shared/data: 100 % read, with labels wherever the file carries them (issue 18)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from specsift.flags import InputFlag
from specsift.io import READERS, Reader, detect_format, expand_paths, read, register
from specsift.io.desi import resolution_sigma

#: folder → one file of its layout (lamost-real/README.md)
LAYOUTS = {
    "dr1-b6212": ("spectra/spec-55862-B6212_sp06-003.fits", "lamost"),
    "dr5": ("spectra/spec-55862-B6202_sp01-001.fits.gz", "lamost"),
    "dr7-sbc": ("spectra/101008.fits", "lamost"),
    "dr8-ccf": ("spectra/spec-55859-F5902_sp03-232.fits.gz", "lamost"),
    "dr10-afg": ("spectra/spec-59522-EG224840N075042B03_sp03-013.fits.gz", "lamost-dr8"),
}
#: folders of ../shared/data that hold spectra (catalogs/ and templates/ do not)
SPECTRA_FOLDERS = ("sdss", "desi", "lamost", "lamost-real")


def _labels(folder: Path) -> dict[str, dict]:
    with open(folder / "labels.csv", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


@pytest.mark.parametrize("folder", sorted(LAYOUTS))
def test_one_real_file_of_each_lamost_layout(shared_data, folder):
    root = shared_data / "lamost-real" / folder
    rel, kind = LAYOUTS[folder]
    path = root / rel
    truth = _labels(root)[rel]
    assert detect_format(path) == kind
    b = read(path, grid=None)
    m = b.meta
    assert len(b) == 1 and m["SURVEY"][0] == "LAMOST"
    assert m["CLASS"][0] == truth["CLASS"] and m["SUBCLASS"][0] == truth["SUBCLASS"]
    assert m["Z"][0] == pytest.approx(float(truth["Z"]))
    assert m["RA"][0] == pytest.approx(float(truth["RA"]))
    assert m["DEC"][0] == pytest.approx(float(truth["DEC"]))
    assert (m["SPID"][0], m["FIBERID"][0]) == (int(truth["SPID"]), int(truth["FIBERID"]))
    assert m["PLANID"][0] == truth["PLANID"]
    if truth.get("OBSID"):
        assert m["TARGETID"][0] == m["OBSID"][0] == int(truth["OBSID"])
    assert b.npix == int(truth["npix"])              # the wavelengths of the file
    assert b.wave[0] == pytest.approx(float(truth["wave_min"]), rel=1e-6)
    assert b.wave[-1] == pytest.approx(float(truth["wave_max"]), rel=1e-6)
    good = (b.ivar[0] > 0).mean()
    assert good == pytest.approx(float(truth["frac_ivar_pos"]), abs=0.01)


def test_dr1_wavelengths_come_from_the_header_wcs_not_the_subcontinuum(shared_data):
    path = shared_data / "lamost-real" / LAYOUTS["dr1-b6212"][0].join(["dr1-b6212/", ""])
    hdr = fits.getheader(path)
    assert "Subcontinuum" in hdr["EXTEN0"]
    b = read(path, grid=None)
    np.testing.assert_allclose(b.loglam, hdr["CRVAL1"] + hdr["CD1_1"] * np.arange(b.npix),
                               atol=1e-9)


def test_tile_compressed_lamost_image_reads_as_the_plain_file(tmp_path, shared_data):
    src = shared_data / "lamost-real" / "dr7-sbc" / LAYOUTS["dr7-sbc"][0]
    with fits.open(src) as hdul:
        comp = fits.CompImageHDU(np.asarray(hdul[0].data), hdul[0].header,
                                 compression_type="GZIP_2", quantize_level=0.0)
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(tmp_path / "101008.fits.fz")
    plain, packed = read(src), read(tmp_path / "101008.fits.fz")
    assert detect_format(tmp_path / "101008.fits.fz") == "lamost"
    np.testing.assert_array_equal(plain.flux, packed.flux)
    assert packed.meta["OBSID"][0] == plain.meta["OBSID"][0] == 101008
    assert packed.meta["CLASS"][0] == "STAR"


@pytest.mark.parametrize("exten0", ["Flux Inverse Wavelength Andmask Ormask",
                                    "Flux, Inverse, Wavelength, Andmask, Ormask",
                                    "flux;ivar;wave;and_mask;or_mask", ""])
def test_exten0_however_spelled(tmp_path, shared_data, exten0):
    src = shared_data / "lamost-real" / "dr7-sbc" / LAYOUTS["dr7-sbc"][0]
    with fits.open(src) as hdul:
        hdul[0].header["EXTEN0"] = exten0
        hdul.writeto(tmp_path / "x.fits")
    np.testing.assert_array_equal(read(tmp_path / "x.fits").flux, read(src).flux)


def test_desi_resolution_is_a_per_pixel_sigma_on_the_common_grid(shared_data):
    path = shared_data / "desi" / "fastspecfit" / "coadd-4-80613-thru20210324.fits"
    b = read(path)                                  # the default grid
    assert b.resolution is not None and b.resolution.shape == b.flux.shape
    covered = ~b.mask[0]
    sig = b.resolution[0, covered]
    assert np.isfinite(sig).all()
    assert 0.5 < np.median(sig) < 1.0               # DESI: FWHM ≈ 1.8 Å → σ ≈ 0.75 Å
    with fits.open(path) as hdul:                   # the B arm's own σ at 4500 Å
        wave = hdul["B_WAVELENGTH"].data
        s_b = resolution_sigma(hdul["B_RESOLUTION"].data.astype(float))[0] * np.gradient(wave)
    k = np.argmin(np.abs(b.wave - 4500))
    assert b.resolution[0, k] == pytest.approx(np.interp(b.wave[k], wave, s_b), rel=0.02)
    sub = b[[0]]                                    # slicing and stacking carry it along
    assert np.array_equal(sub.resolution, b.resolution)
    assert read(shared_data / "sdss" / "spec-0266-51602-0013.fits").resolution is None


def test_resolution_sigma_of_a_gaussian_kernel():
    off = np.arange(5, -6, -1.0)
    kern = np.exp(-0.5 * (off / 1.3) ** 2)
    res = np.repeat((kern / kern.sum())[None, :, None], 4, axis=2)
    np.testing.assert_allclose(resolution_sigma(res), 1.3, rtol=0.01)


def test_registry_is_one_ordered_list_and_takes_new_formats(tmp_path):
    names = [r.name for r in READERS]
    assert names[:3] == ["sdss", "desi", "lamost"] and "npz" in names
    p = tmp_path / "x.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 50), "f4"), name="MYFLUX")]
                 ).writeto(p)
    with pytest.raises(ValueError, match="no recognised spectra HDU"):
        detect_format(p)

    def sniff(src):
        return "MYFLUX" in src.handle

    def read_my(src, grid, batch_size):
        from specsift.io._common import finalize
        yield finalize(src.path, 3.6 + 1e-4 * np.arange(50), src.handle["MYFLUX"].data,
                       np.ones((2, 50)), None, None, grid)

    register(Reader("myformat", "fits", sniff, read_my), before="fits-table")
    try:
        assert detect_format(p) == "myformat" and len(read(p, grid=None)) == 2
    finally:
        READERS[:] = [r for r in READERS if r.name != "myformat"]


def _walk(shared: Path):
    """(folder, file) for every spectra file under the spectra folders."""
    for p in expand_paths([shared / f for f in SPECTRA_FOLDERS]):
        yield str(p.parent.relative_to(shared)).removesuffix("/spectra"), p


def test_every_real_spectrum_file_reads_with_labels(shared_data):
    """100 % of the real spectra files read (no READ_ERROR); every LAMOST, SDSS and DESI
    file whose pipeline labelled it (a LAMOST header CLASS, SDSS SPECOBJ/SPALL, a Redrock
    file beside a DESI coadd) comes with CLASS and Z; Redrock files are labels, not spectra."""
    from specsift.io import NotSpectraError
    from specsift.io.registry import identify, open_source

    per_folder: dict[str, list[int]] = {}
    for folder, path in _walk(shared_data):
        counts = per_folder.setdefault(folder, [0, 0, 0])
        with warnings.catch_warnings(), open_source(path) as src:
            warnings.simplefilter("ignore")
            header_class = src.handle[0].header.get("CLASS") if src.container == "fits" else None
            try:
                batches = list(identify(src).read(src, None, 4096))
            except NotSpectraError:
                assert path.name.startswith("redrock-")
                continue
        counts[0] += 1
        assert batches and not any(
            (np.asarray(b.meta["INPUT_FLAGS"]) & InputFlag.READ_ERROR).any() for b in batches)
        counts[1] += 1
        meta = batches[0].meta
        labelled = "CLASS" in meta.colnames and all(str(c) for c in meta["CLASS"])
        counts[2] += labelled
        rr = path.with_name(path.name.replace("coadd-", "redrock-"))
        expects = (header_class not in (None, "")                         # LAMOST header
                   or folder == "sdss" or ("coadd-" in path.name and rr.exists()))
        if expects:
            assert labelled and "Z" in meta.colnames, path
        else:                      # no pipeline labels in the file: still an object id
            assert {"TARGETID"} <= set(meta.colnames) and ("OBJECT" in meta.colnames
                                                           or folder.startswith("desi"))
    real = per_folder["lamost-real/dr1-b6212"][1] + sum(
        per_folder[f"lamost-real/{d}"][1] for d in ("dr5", "dr7-sbc", "dr8-ccf", "dr10-afg"))
    assert real == 1535
    assert all(c[0] == c[1] for c in per_folder.values()), per_folder
