"""The X-ray DICOMs recon writes are valid DX objects for presentation, as dicom3tools'
dciodvfy (an independent implementation of the standard's IOD tables) checks them: every Type 1
and 2 attribute present, the DX rescale fixed at slope 1, the DRR's mm per count in a Real
World Value Mapping that reads back exactly."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from cli_runs import require
from test_xray_io import small_ct

from recon.pipelines.common.dicom import read_dicom_image
from recon.pipelines.xray.xray import dicom_mm_per_count


def iod_errors(path) -> list[str]:
    """The lines of dciodvfy's report on path that name an error (warnings are advice)."""
    missing = "dciodvfy is missing (make test installs dicom3tools)"
    require(shutil.which("dciodvfy") is not None, missing)
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def unit(image: np.ndarray) -> np.ndarray:
    return (image - image.min()) / np.ptp(image)


@pytest.mark.parametrize(
    "rot, view, orientation",
    [([0, 0, 0], "AP", ["L", "F"]), ([90, 0, 0], "RL", ["P", "F"])],
    ids=["frontal", "lateral"],
)
def test_make_drr_writes_a_valid_dx_holding_its_scale(tmp_path, recon, rot, view, orientation):
    ct = small_ct(tmp_path / "ct.nii.gz")
    detector = ["--sdd", 600, "--size", 24, "--delx", 3.0, "--device", "cpu"]
    base = ["make-drr", "-v", ct, "--rot", *rot, "--xyz", 0, 300, 0, *detector, "--json"]
    code, out, err = recon(*base, "-o", tmp_path / "d.dcm")
    assert code == 0, err
    scale = json.loads(out)["files"][0]["mm_per_count"]
    assert recon(*base, "-o", tmp_path / "d.png")[0] == 0
    assert iod_errors(tmp_path / "d.dcm") == []
    ds = pydicom.dcmread(tmp_path / "d.dcm")
    assert (ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType) == (1, 0, "US")
    assert ds.PresentationIntentType == "FOR PRESENTATION" and ds.PresentationLUTShape == "IDENTITY"
    assert ds.ViewPosition == view and list(ds.PatientOrientation) == orientation
    # the counts times the mapping's slope are the DRR in mm, as the PNG of the same pose holds
    from recon.pipelines.common.io import read_image

    assert dicom_mm_per_count(ds) == scale
    png = read_image(tmp_path / "d.png").astype(np.float64)
    assert np.array_equal(ds.pixel_array.astype(np.float64), png)
    assert float(ds.pixel_array.max()) * scale == pytest.approx(65535 * scale)
    # the window spans the values used, so a viewer's and register's readings agree
    shown, raw = (read_dicom_image(tmp_path / "d.dcm", voi=v).pixels for v in (True, False))
    assert np.allclose(unit(shown), unit(raw), atol=1e-6) and np.ptp(raw) > 0


def test_synth_xray_writes_a_valid_dx(tmp_path, recon):
    ct = small_ct(tmp_path / "ct.nii.gz")
    args = ["-v", ct, "--count", 1, "--size", 16, "--sdd", 1000, "--field", 100, "--xyz-range", 5]
    code, _, err = recon("synth", "xray", "-o", tmp_path / "x", *args)
    assert code == 0, err
    path = tmp_path / "x" / "xray_000.dcm"
    assert iod_errors(path) == []
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.PresentationLUTShape == "INVERSE"
    assert dicom_mm_per_count(ds) is None  # transmitted counts, not line integrals


def test_a_file_without_the_mapping_is_flagged_and_its_slope_read(tmp_path, recon):
    """A DX with a rescale slope other than 1 (as make-drr wrote before) fails the IOD check,
    so the check can fail; its slope still reads as the scale of a kept DRR."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    args = ["make-drr", "-v", ct, "--size", 16, "--delx", 4.0, "--sdd", 600]
    args += ["--rot", 0, 0, 0, "--xyz", 0, 300, 0]
    assert recon(*args, "-o", tmp_path / "d.dcm")[0] == 0
    ds = pydicom.dcmread(tmp_path / "d.dcm")
    del ds.RealWorldValueMappingSequence
    ds.RescaleSlope = "0.25"
    ds.save_as(tmp_path / "old.dcm")
    assert any("Rescale Slope" in line for line in iod_errors(tmp_path / "old.dcm"))
    assert dicom_mm_per_count(pydicom.dcmread(tmp_path / "old.dcm")) == 0.25
