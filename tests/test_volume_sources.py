"""CT volumes of the kinds real files come in, for make-drr -v: a uint8 NIfTI is judged by its
values (not by a number wrapped into uint8), a volume whose values cannot be Hounsfield units
(an MR) draws a warning while real and synthetic CTs do not, a DICOM file or folder of another
Modality is refused for its Modality before anything else, and a gap in a series names its
folder. Inputs are made here, or copied from pydicom's and nibabel's own test files."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_files import edit_dicom, write_ct_series
from test_bad_input import refused

from recon.pipelines.xray.volume import load_ct

VIEW = ["--rot", 0, 0, 0, "--xyz", 0, 300, 0, "--sdd", 600, "--size", 24, "--delx", 3.0]
SPACING = np.diag([3.0, 3.0, 3.0, 1.0])


def bundled_dicom(name: str, target: Path) -> Path:
    """pydicom's test file `name` copied into the folder target; skips when it is not installed."""
    from pydicom.data import get_testdata_file

    source = get_testdata_file(name)
    if source is None:
        pytest.skip(f"pydicom's test file {name} is not installed")
    target.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, target / name))


def render(recon, tmp_path: Path, volume: Path) -> str:
    """make-drr of `volume`; asserts it drew tmp/NAME.png (NAME: the volume's), exit 0; its
    stderr."""
    out = tmp_path / f"{volume.name.split('.')[0]}.png"
    rc, _, err = recon("make-drr", "-v", volume, *VIEW, "-o", out)
    assert rc == 0, err
    assert out.is_file()
    return err


def body_ct() -> np.ndarray:
    """A synthetic CT in HU (24^3): air around a soft-tissue body holding a bone rod."""
    hu = np.full((24, 24, 24), -1000.0, np.float32)
    hu[4:20, 5:19, 2:22] = 40.0
    hu[10:13, 10:13, 2:22] = 900.0
    return hu


def test_a_4d_nifti_is_one_line_that_says_what_it_holds(recon, tmp_path):
    """nibabel's own 4D files (a functional series of 20 time points) were said to have "20
    channels"."""
    series = np.repeat(body_ct()[..., None], 3, axis=3)
    nib.save(nib.Nifti1Image(series, SPACING), tmp_path / "fmri.nii.gz")
    out = tmp_path / "d.png"
    err = refused(recon, tmp_path, "make-drr", "-v", tmp_path / "fmri.nii.gz", *VIEW, "-o", out)
    assert "holds 3 volumes (a fourth dimension: time points or channels); a CT is one" in err


def test_a_uint8_nifti_is_judged_by_its_values(recon, tmp_path):
    """-800 compared with a uint8 tensor wrapped to 224: 0..255 was said to hold no voxel
    between -800 and 350 while its values spanned 0 to 255."""
    values = np.zeros((24, 24, 24), np.uint8)
    values[4:20, 5:19, 2:22], values[10:13, 10:13, 2:22] = 40, 250
    nib.save(nib.Nifti1Image(values, SPACING), tmp_path / "u8.nii.gz")
    err = render(recon, tmp_path, tmp_path / "u8.nii.gz")
    assert "no CT voxel lies between" not in err


def mr_like(tmp_path: Path) -> Path:
    """An MR-like head (values 0..12000, median about 8000, no air below 0) as a NIfTI."""
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 60, (24, 24, 24)).astype(np.int16)
    values[2:22, 2:22, 2:22] = rng.uniform(6000, 12000, (20, 20, 20)).astype(np.int16)
    nib.save(nib.Nifti1Image(values, SPACING), tmp_path / "mr.nii.gz")
    return tmp_path / "mr.nii.gz"


def nibabel_anatomical(tmp_path: Path) -> Path:
    """nibabel's anatomical.nii (an MR: -610 to 30393, median 8935) copied into tmp_path."""
    source = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    if not source.is_file():
        pytest.skip("nibabel's tests/data/anatomical.nii is not installed")
    return Path(shutil.copy(source, tmp_path / "anatomical.nii"))


@pytest.mark.parametrize("make", [mr_like, nibabel_anatomical], ids=["synthetic", "nibabel"])
def test_a_volume_that_cannot_be_hounsfield_units_is_warned_of(recon, tmp_path, make):
    volume = make(tmp_path)
    err = render(recon, tmp_path, volume)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert warnings[0].startswith(f"warning: {volume}: its values cannot be Hounsfield units")


def test_an_airless_volume_of_high_values_is_warned_of(recon, tmp_path):
    """No voxel near air and a median above any soft tissue's HU: not Hounsfield units."""
    values = np.zeros((24, 24, 24), np.int16)
    values[2:22, 2:22, 2:22] = 2000
    nib.save(nib.Nifti1Image(values, SPACING), tmp_path / "airless.nii.gz")
    assert "its values cannot be Hounsfield units" in render(
        recon, tmp_path, tmp_path / "airless.nii.gz"
    )


@pytest.mark.parametrize(
    "background", [-1000.0, 40.0, -2048.0], ids=["air", "soft tissue", "padding"]
)
def test_synthetic_cts_draw_no_warning(recon, tmp_path, background):
    hu = body_ct()
    hu[hu == -1000.0] = background
    nib.save(nib.Nifti1Image(hu, SPACING), tmp_path / "ct.nii.gz")
    err = render(recon, tmp_path, tmp_path / "ct.nii.gz")
    assert "warning:" not in err, err
    write_ct_series(tmp_path / "series", body_ct(), SPACING)
    err = render(recon, tmp_path, tmp_path / "series")
    assert "warning:" not in err, err


def test_the_bundled_chest_ct_draws_no_warning(capsys):
    load_ct()
    assert "warning:" not in capsys.readouterr().err


def test_a_dose_grid_is_refused_for_its_modality(recon, tmp_path):
    """pydicom's rtdose.dcm (15 frames, no functional groups) was parsed as an enhanced CT and
    refused for its missing Per-frame Functional Groups."""
    dose = bundled_dicom("rtdose.dcm", tmp_path / "rt")
    for given in (dose, dose.parent):
        err = refused(recon, tmp_path, "make-drr", "-v", given, *VIEW, "-o", tmp_path / "d.png")
        assert (
            err == f"error: {given}: Modality is RTDOSE, not CT; -v takes a CT (Hounsfield units)\n"
        )


def three_mr_series(folder: Path) -> Path:
    """Three one-slice MR series in a folder (as MR localisers are exported)."""
    for k in range(3):
        for path in write_ct_series(folder, body_ct()[:, :, 8 * k : 8 * k + 1], SPACING):
            edit_dicom(path, Modality="MR", SeriesDescription="FAST LOCALIZER")
    return folder


def pydicom_mr_localisers(folder: Path) -> Path:
    """pydicom's three MR localisers of dicomdirtests/98892003/MR1, copied."""
    for name in ("4919", "5641", "15820"):
        bundled_dicom(name, folder)
    return folder


@pytest.mark.parametrize("make", [three_mr_series, pydicom_mr_localisers], ids=["made", "pydicom"])
def test_a_folder_of_mr_series_is_refused_for_its_modality_not_its_series(recon, tmp_path, make):
    """It listed "3 DICOM series" to pick from, and only the series picked said it was MR."""
    folder = make(tmp_path / "mr")
    err = refused(recon, tmp_path, "make-drr", "-v", folder, *VIEW, "-o", tmp_path / "d.png")
    assert err == f"error: {folder}: Modality is MR, not CT; -v takes a CT (Hounsfield units)\n"


def test_an_mr_series_beside_a_ct_series_is_left_out(recon, tmp_path):
    folder = tmp_path / "exam"
    write_ct_series(folder, body_ct(), SPACING, description="chest")
    for path in write_ct_series(folder, body_ct(), SPACING, description="t1"):
        edit_dicom(path, Modality="MR")
    render(recon, tmp_path, folder)


def test_a_gap_in_a_series_names_its_folder(recon, tmp_path):
    """It named two slice files without their folder: "17106 and 17136: 202.50 mm apart"."""
    folder = tmp_path / "ct"
    files = write_ct_series(folder, body_ct(), SPACING)
    files[10].unlink()
    for given in (folder, files[3]):
        err = refused(recon, tmp_path, "make-drr", "-v", given, *VIEW, "-o", tmp_path / "d.png")
        assert err.startswith(
            f"error: {folder}: {files[9].name} and {files[11].name}: 6.00 mm apart"
        )


def test_pydicom_brain_ct_with_a_gap_names_its_folder(recon, tmp_path):
    folder = tmp_path / "CT2"
    for name in ("17106", "17136", "17166", "17196"):
        bundled_dicom(name, folder)
    err = refused(recon, tmp_path, "make-drr", "-v", folder, *VIEW, "-o", tmp_path / "d.png")
    assert err.startswith(f"error: {folder}: 17106 and 17136: 202.50 mm apart"), err


@pytest.mark.parametrize("named", ["hdr", "img"])
def test_an_analyze_pair_is_refused_and_a_nifti_pair_read(recon, tmp_path, named):
    """An ANALYZE 7.5 .hdr/.img pair has no orientation fields: SimpleITK read one with the AP
    axis the other way round from the same data as NIfTI (a DRR 6.7% off, exit 0) and put four
    ITK warnings on stderr. Refused in one line, for either file of the pair; a NIfTI pair
    (.hdr/.img with its qform) renders as the single-file NIfTI does."""
    from PIL import Image

    hu = body_ct().astype(np.int16)
    hu[2:8, 18:22, 2:22] = 900  # a second rod, off the AP axis's centre, so a flip shows
    affine = np.diag([3.0, -3.0, 3.0, 1.0])
    nib.save(nib.AnalyzeImage(hu, affine), tmp_path / "analyze.hdr")
    err = refused(recon, tmp_path, "make-drr", "-v", tmp_path / f"analyze.{named}", *VIEW,
                  "-o", tmp_path / "a.png")  # fmt: skip
    assert "an ANALYZE 7.5 file, which gives no orientation" in err
    nib.save(nib.Nifti1Pair(hu, affine), tmp_path / "pair.hdr")
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "single.nii.gz")
    render(recon, tmp_path, tmp_path / f"pair.{named}")
    render(recon, tmp_path, tmp_path / "single.nii.gz")
    pair, single = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("pair", "single"))
    assert np.array_equal(pair, single)


def test_a_nifti_whose_sform_and_qform_disagree_is_refused(recon, tmp_path):
    """SimpleITK (the CT reader) takes the qform where there is one, nibabel and FSL the sform.
    A file stored LPS with the true sform and a RAS qform drew mirrored (exit 0); a sheared
    sform beside an orthogonal qform drew without its shear. Both refused in one line; a qform
    that agrees (up to its origin, which DRRs centre away) renders as the sform alone does."""
    from PIL import Image

    hu = body_ct().astype(np.int16)
    hu[2:8, 18:22, 2:22] = 900  # off centre across, so a mirror shows
    ras = np.diag([3.0, 3.0, 3.0, 1.0])
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(hu.shape[:2]) - 1.0  # voxel i -> n - 1 - i along x and y
    lps = ras @ flip
    cases = {
        "mirrored": (lps, ras, "the NIfTI sform and qform disagree (voxel axes 180 deg apart)"),
        "sheared": (
            ras
            @ np.array(
                [[1, np.tan(np.radians(10)), 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
            ),
            ras,
            "sheared.nii.gz: its voxel axes are not at right angles (sheared 10.00 deg",
        ),
    }
    for name, (sform, qform, message) in cases.items():
        image = nib.Nifti1Image(hu[::-1, ::-1].copy() if name == "mirrored" else hu, None)
        image.set_sform(sform, 2)
        image.set_qform(qform, 1)
        nib.save(image, tmp_path / f"{name}.nii.gz")
        err = refused(recon, tmp_path, "make-drr", "-v", tmp_path / f"{name}.nii.gz", *VIEW,
                      "-o", tmp_path / f"{name}.png")  # fmt: skip
        assert message in err, err
    agree = nib.Nifti1Image(hu[::-1, ::-1].copy(), None)
    agree.set_sform(lps, 2)
    moved = lps.copy()
    moved[:3, 3] += 40.0  # another origin: the same drawing
    agree.set_qform(moved, 1)
    nib.save(agree, tmp_path / "agree.nii.gz")
    nib.save(nib.Nifti1Image(hu, ras), tmp_path / "plain.nii.gz")
    render(recon, tmp_path, tmp_path / "agree.nii.gz")
    render(recon, tmp_path, tmp_path / "plain.nii.gz")
    agreed, plain = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("agree", "plain"))
    assert np.array_equal(agreed, plain)


def test_a_volume_of_another_format_is_refused(recon, tmp_path):
    """nibabel's bundled MINC file was rendered (exit 0) after a line of libminc's on stderr:
    the reader behind the documented formats falls back to nibabel, which reads more."""
    import nibabel

    minc = Path(nibabel.__file__).parent / "tests" / "data" / "minc1_1_scale.mnc"
    err = refused(recon, tmp_path, "make-drr", "-v", minc, *VIEW, "-o", tmp_path / "m.png")
    assert f"{minc}: not a CT file recon reads" in err, err


def test_every_command_takes_one_ct_spacing_range():
    """--ct-spacing was 0.5-20 mm in synth pairs, 0.1-50 in register and (0, 100] in train
    pose's ct_spacing_mm: one range now."""
    import dataclasses

    from recon.pipelines.xray.pose_task import PoseConfig
    from recon.pipelines.xray.volume import CT_SPACING_RANGE

    meta = {f.name: f.metadata for f in dataclasses.fields(PoseConfig)}["ct_spacing_mm"]
    assert (meta["low"], meta["high"]) == CT_SPACING_RANGE == (0.1, 50.0)


def test_a_ct_spacing_finer_than_memory_allows_is_one_line(recon, tmp_path):
    """0.1 mm over the bundled chest CT would be 4.6e10 voxels (185 GB as float32): refused
    with the finest spacing that fits, before that memory is asked for; nothing is written."""
    err = refused(recon, tmp_path, "synth", "pairs", "-o", tmp_path / "p", "-n", 1,
                  "--ct-spacing", 0.1, "--device", "cpu")  # fmt: skip
    assert "CT spacing 0.1 mm would make" in err and "; give 0." in err, err
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "ct.nii.gz"  # a small CT may be resampled finely
    nib.save(nib.Nifti1Image(body_ct(), SPACING), path)
    assert load_ct(path, spacing_mm=0.5).volume.spatial_shape == (144, 144, 144)


def test_a_water_cylinder_phantom_draws_its_chord_lengths(recon, tmp_path):
    """A phantom has no voxels between air and water (a scanned body has partial-volume ones at
    every value), where diffdrr's density transform makes air as dense as the least dense
    tissue: the water was as dense as air and the DRR blank. Each pixel of an AP DRR of a water
    cylinder (radius 72 mm, axis head to feet through the isocentre) must read the ray's chord
    through it: 2 sqrt(r^2 - d^2) mm, d the ray's distance from the axis."""
    i, j, _ = np.mgrid[:64, :64, :64]
    hu = np.full((64, 64, 64), -1000.0, np.float32)
    hu[(i - 31.5) ** 2 + (j - 31.5) ** 2 < 24**2] = 0.0
    nib.save(nib.Nifti1Image(hu, SPACING), tmp_path / "water.nii.gz")
    out = tmp_path / "water.png"
    rc, _, err = recon(
        "make-drr", "-v", tmp_path / "water.nii.gz", "--rot", 0, 0, 0, "--xyz", 0, 850, 0,
        "--sdd", 1020, "--size", 64, "--delx", 4.0, "-o", out,
    )  # fmt: skip
    assert rc == 0 and "warning:" not in err, err
    from PIL import Image

    with Image.open(out) as png:
        mm = np.asarray(png, dtype=np.float64)[32] * float(png.text["mm_per_count"])
    u = (np.arange(64) - 31.5) * 4.0  # detector column centres, mm
    d = 850.0 * np.sin(np.arctan(u / 1020.0))
    chord = 2 * np.sqrt(np.clip(72.0**2 - d**2, 0, None))
    inside, outside = np.abs(d) < 0.8 * 72, np.abs(d) > 1.1 * 72
    assert np.abs(mm - chord)[inside].mean() < 3.0, np.c_[mm, chord][inside].round(1)
    assert mm[outside].max() == 0.0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchio's, in diffdrr's read
def test_a_scanned_ct_masked_to_its_vertebrae_keeps_diffdrr_densities_when_coarsened():
    """Registration renders coarser copies of a masked CT (volume.coarsen), whose volume is 0 HU
    outside the kept labels: no voxel near -800 HU is left, yet the CT is a scanned one, so its
    densities stay diffdrr's own at every scale (the phantom floor is judged on the whole CT)."""
    import torch
    from diffdrr.data import read

    from recon.pipelines.xray.volume import _resample, coarsen

    subject = load_ct(keep=(29, 30, 31))
    volume, mask = _resample(subject.volume, subject.mask, 8.0)
    values = volume.data[(volume.data > -800) & (volume.data <= 350)]
    assert float(values.min()) > -700  # a phantom, judged on its own
    direct = read(volume, mask, [29, 30, 31], orientation="AP")
    assert torch.equal(coarsen(subject, 8.0).density.data, direct.density.data)
