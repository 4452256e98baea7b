"""The one DICOM reader (recon.pipelines.common.dicom), through embed-spine and the X-ray reader,
on files written by pydicom here (not by `recon synth`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.dicom import pixel_spacing, read_dicom_image
from recon.pipelines.common.errors import BadInput
from recon.pipelines.corset.spine import load_spine_xray
from recon.pipelines.xray.xray import read_xray

STORED = (np.arange(48 * 40).reshape(48, 40) * 7 % 3000 + 100).astype(np.uint16)


def write_dicom(path: Path, pixels: np.ndarray = STORED, drop: tuple[str, ...] = (), **tags):
    """A DX DICOM with an SDD, ImagerPixelSpacing [0.2, 0.3] and MONOCHROME2 unless tags say
    otherwise; drop removes tags."""
    from dicom_files import write_dx

    geometry = {"DistanceSourceToDetector": "1000", "ImagerPixelSpacing": ["0.2", "0.3"]}
    return write_dx(path, pixels, drop=drop, **{**geometry, **tags})


def test_monochrome1_with_rescale_is_inverted_after_the_modality_lut(tmp_path):
    path = write_dicom(
        tmp_path / "m1.dcm",
        PhotometricInterpretation="MONOCHROME1",
        RescaleSlope="2.5",
        RescaleIntercept="-100",
    )
    values = STORED * 2.5 - 100
    expected = values.max() + values.min() - values  # bright = dense, same range
    dicom = read_dicom_image(path)
    assert dicom.photometric == "MONOCHROME1"
    assert np.allclose(dicom.pixels, expected)
    # the X-ray reader keeps its behaviour: [0, 1], inverted, photometric recorded
    xray = read_xray(path)
    norm = (values - values.min()) / (values.max() - values.min())
    assert np.allclose(xray.image[0, 0].numpy(), 1 - norm, atol=1e-6)
    assert xray.photometric == "MONOCHROME1"
    # embed-spine reads the same image: MONOCHROME1 and MONOCHROME2 of one film agree
    plain = write_dicom(tmp_path / "m2.dcm", STORED.max() + STORED.min() - STORED)
    one, two = load_spine_xray(path).image, load_spine_xray(plain).image
    assert np.abs(one - two).max() < 1e-3


def test_imager_pixel_spacing_only_reads_row_then_column(tmp_path):
    path = write_dicom(tmp_path / "ips.dcm")
    xray = read_xray(path)
    assert (xray.intrinsics.dely, xray.intrinsics.delx) == pytest.approx((0.2, 0.3))
    assert xray.spacing_source == "ImagerPixelSpacing"
    spine = load_spine_xray(path)
    assert spine.spacing_mm == pytest.approx((0.2, 0.3))
    assert spine.spacing_source == "ImagerPixelSpacing"


def test_pixel_spacing_and_magnification_per_plane(tmp_path):
    import pydicom

    only = write_dicom(
        tmp_path / "ps.dcm",
        drop=("ImagerPixelSpacing",),
        PixelSpacing=["0.16", "0.24"],
        EstimatedRadiographicMagnificationFactor="1.25",
    )
    ds = pydicom.dcmread(only)
    assert pixel_spacing(ds, only, "detector")[0] == pytest.approx((0.2, 0.3))
    assert pixel_spacing(ds, only, "patient")[0] == pytest.approx((0.16, 0.24))
    assert (read_xray(only).intrinsics.dely, read_xray(only).intrinsics.delx) == pytest.approx(
        (0.2, 0.3)
    )
    assert load_spine_xray(only).spacing_mm == pytest.approx((0.16, 0.24))
    both = write_dicom(
        tmp_path / "both.dcm",
        PixelSpacing=["0.16", "0.24"],
        EstimatedRadiographicMagnificationFactor="1.25",
    )
    ds = pydicom.dcmread(both)
    assert pixel_spacing(ds, both, "detector") == ((0.2, 0.3), "ImagerPixelSpacing")
    assert pixel_spacing(ds, both, "patient") == ((0.16, 0.24), "PixelSpacing")
    assert load_spine_xray(both, (0.5, 0.5)).spacing_mm == (0.5, 0.5)


def test_voi_window_is_applied_only_when_asked(tmp_path):
    path = write_dicom(tmp_path / "w.dcm", WindowCenter="1000", WindowWidth="400")
    raw = read_dicom_image(path, voi=False).pixels
    shown = read_dicom_image(path, voi=True).pixels
    assert np.allclose(raw, STORED)
    inside = (STORED > 820) & (STORED < 1180)
    assert np.ptp(shown[STORED < 700]) == 0 and np.ptp(shown[STORED > 1300]) == 0  # clipped
    assert np.corrcoef(shown[inside], STORED[inside])[0, 1] > 0.999  # linear inside


@pytest.mark.parametrize(
    "tags,drop,message",
    [
        ({"PixelSpacing": "0.2"}, ("ImagerPixelSpacing",), "PixelSpacing (0028,0030) has 1 value"),
        ({"ImagerPixelSpacing": ["0.2", "-0.3"]}, (), "must be two positive numbers"),
        ({"DistanceSourceToDetector": ""}, (), "DistanceSourceToDetector (0018,1110); pass --sdd"),
        ({"DetectorActiveOrigin": "1.5"}, (), "DetectorActiveOrigin has 1 value"),
        ({}, ("ImagerPixelSpacing",), "pass --pixel-spacing ROW COL"),
    ],
)
def test_broken_tags_raise_one_clear_line(tmp_path, tags, drop, message):
    path = write_dicom(tmp_path / "bad.dcm", drop=drop, **tags)
    with pytest.raises(BadInput) as caught:
        read_xray(path)
    assert message in str(caught.value) and "bad.dcm" in str(caught.value)
    assert "\n" not in str(caught.value)
