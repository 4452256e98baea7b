"""X-ray DICOM edges: a Rescale Slope of 0, --init dicom without a source-to-patient distance or
with one beyond the detector, a source-to-detector distance of 0 (one line on stderr naming the
file and the tag, exit 2, nothing written), and a film stored on its side, whose record keeps
what the file said next to the orientation it was turned to."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bad_input import snapshot
from test_register_inputs import FAST, write_dicom
from test_xray_io import small_ct

from recon.pipelines.common.errors import BadInput


def _refused(recon, tmp_path, xray, *args) -> str:
    """register XRAY ARGS against a tiny CT (so that a run the old code let through ends
    quickly): exit 2, one line naming the file, nothing written; the line."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    before = snapshot(tmp_path)
    code, out, err = recon("register", xray, "-v", ct, "-o", tmp_path / "reg", *FAST, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and xray.name in lines[0], err
    assert snapshot(tmp_path) == before
    return lines[0]


@pytest.mark.parametrize("intercept", [None, "0"])
def test_a_rescale_slope_of_0_is_refused(tmp_path, recon, intercept):
    """Slope 0 maps every pixel to the intercept; without an intercept pydicom skipped the
    rescale and the film registered as stored, with one it read as a blank image."""
    tags = {"RescaleSlope": "0"} | ({"RescaleIntercept": intercept} if intercept else {})
    xray = write_dicom(tmp_path / "s.dcm", **tags)
    line = _refused(recon, tmp_path, xray)
    assert "RescaleSlope (0028,1053) is 0" in line


def test_init_dicom_names_only_the_missing_distance(tmp_path, recon):
    """Both angles present, no distance: the line named the angles too."""
    xray = write_dicom(tmp_path / "d.dcm", DistanceSourceToPatient="")
    line = _refused(recon, tmp_path, xray, "--init", "dicom")
    assert "no DistanceSourceToPatient (0018,1111)" in line
    assert "EstimatedRadiographicMagnificationFactor" in line  # the other way to the distance
    assert "PositionerPrimaryAngle" not in line and "PositionerSecondaryAngle" not in line


def test_init_dicom_names_a_missing_angle_alone(tmp_path):
    from recon.pipelines.xray.register_inputs import dicom_pose
    from recon.pipelines.xray.xray import read_xray

    xray = read_xray(write_dicom(tmp_path / "a.dcm", PositionerSecondaryAngle=""))
    with pytest.raises(BadInput) as caught:
        dicom_pose(xray, "AP")
    assert "no PositionerSecondaryAngle for --init dicom" in str(caught.value)
    assert "PositionerPrimaryAngle" not in str(caught.value)


@pytest.mark.parametrize(
    ("tags", "wanted"),
    [
        (
            {"DistanceSourceToPatient": "2000", "DistanceSourceToDetector": "1020"},
            "DistanceSourceToPatient (0018,1111) 2000 mm must be positive and less than "
            "DistanceSourceToDetector (0018,1110) 1020 mm",
        ),
        (
            {"DistanceSourceToPatient": "-5"},
            "DistanceSourceToPatient (0018,1111) -5 mm must be positive",
        ),
        (
            {"DistanceSourceToPatient": "", "EstimatedRadiographicMagnificationFactor": "0.9"},
            "EstimatedRadiographicMagnificationFactor (0018,1114) 0.9 must be above 1",
        ),
    ],
)
def test_a_source_to_patient_distance_beyond_the_detector_is_refused(tmp_path, recon, tags, wanted):
    """DistanceSourceToPatient 2000 with DistanceSourceToDetector 1020 started the pose behind
    the detector and the run ended below similarity 0.3 (exit 1)."""
    xray = write_dicom(tmp_path / "b.dcm", **tags)
    line = _refused(recon, tmp_path, xray, "--init", "dicom")
    assert wanted in line and "--init fixed" in line


def test_a_bad_distance_does_not_stop_another_start(tmp_path):
    """The distance only matters to --init dicom: the film still reads, for --init fixed."""
    from recon.pipelines.xray.xray import read_xray

    xray = read_xray(write_dicom(tmp_path / "f.dcm", DistanceSourceToPatient="2000"))
    assert xray.positioner is None and "DistanceSourceToPatient" in xray.positioner_problem


def test_a_source_to_detector_distance_of_0_names_the_tag(tmp_path, recon):
    """It said `sdd and pixel spacing must be positive numbers, got [0.0, 8.0, 8.0]`."""
    xray = write_dicom(tmp_path / "z.dcm", DistanceSourceToDetector="0")
    line = _refused(recon, tmp_path, xray)
    assert "DistanceSourceToDetector (0018,1110) must be a positive number of mm, not 0" in line


def test_a_film_stored_on_its_side_records_what_the_file_said(tmp_path, recon):
    """H\\L (head toward the right of the stored image) is turned to L\\F to register; the
    record said only L\\F. Its columns record now names the stored H\\L and the turn."""
    import pydicom

    from recon.pipelines.xray.xray import read_xray

    upright = write_dicom(tmp_path / "upright.dcm")
    ds = pydicom.dcmread(upright)
    side = np.ascontiguousarray(np.rot90(ds.pixel_array, -1))  # turned clockwise to store
    ds.Rows, ds.Columns = side.shape
    ds.PixelData = side.tobytes()
    ds.PatientOrientation = ["H", "L"]
    ds.save_as(tmp_path / "side.dcm")
    upright.unlink()
    xray = read_xray(tmp_path / "side.dcm")
    assert (xray.frame.quarter_turns, xray.frame.patient_orientation) == (1, "L\\F")
    assert "stored as H\\L, turned 90 deg counter-clockwise" in xray.frame.source
    flagged = read_xray(tmp_path / "side.dcm", reverse_x_axis=False)  # the flag keeps the turn
    assert "--reverse-x-axis" in flagged.frame.source and "stored as H\\L" in flagged.frame.source
    ct = small_ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "reg"
    code, _, err = recon("register", tmp_path / "side.dcm", "-v", ct, "-o", out, *FAST)
    assert code == 0, err
    row = json.loads((out / "side" / "result.json").read_text())
    assert row["patient_orientation"] == "L\\F" and row["reverse_x_axis"] is True
    assert "stored as H\\L, turned 90 deg counter-clockwise" in row["columns"]
    (listed,) = json.loads((out / "results.json").read_text())["results"]
    assert listed["columns"] == row["columns"]


def test_a_principal_point_off_the_detector_is_refused(tmp_path, recon):
    """DetectorActiveOrigin 1e6 mm: the whole registration ran and ended below similarity 0.3
    (exit 1); make-drr holds x0 and y0 to the detector's extent, and so does the film."""
    xray = write_dicom(tmp_path / "o.dcm", DetectorActiveOrigin=["1000000", "1000000"])
    line = _refused(recon, tmp_path, xray, "--init", "fixed")
    assert "DetectorActiveOrigin (0018,7028) puts the principal point" in line
    assert "off its 288 x 320 mm detector" in line


def test_a_magnification_below_1_is_not_used_for_the_spacing(tmp_path, recon):
    """PixelSpacing x EstimatedRadiographicMagnificationFactor 0.5 halved the detector spacing
    without a word (exit 0): no magnification is below 1 (sdd over the source-to-patient
    distance)."""
    from dicom_files import write_dx

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.xray import read_xray

    pixels = np.full((40, 36), 2000, np.uint16)
    pixels[10:30, 12:24] = 3000
    tags = dict(DistanceSourceToDetector="1000", PixelSpacing=["8.0", "8.0"])
    write_dx(tmp_path / "m.dcm", pixels, EstimatedRadiographicMagnificationFactor="0.5", **tags)
    with pytest.raises(BadInput, match="MagnificationFactor 0.5, which scales its PixelSpacing"):
        read_xray(tmp_path / "m.dcm")
    write_dx(tmp_path / "ok.dcm", pixels, EstimatedRadiographicMagnificationFactor="1.25", **tags)
    assert read_xray(tmp_path / "ok.dcm").intrinsics.delx == pytest.approx(10.0)
