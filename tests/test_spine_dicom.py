"""The one DICOM reader (recon.pipelines.common.dicom), through embed-spine and the X-ray reader,
on files written by pydicom here (not by `recon synth`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.dicom import read_dicom_image
from recon.pipelines.common.dicom_spacing import pixel_spacing
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


@pytest.mark.parametrize(
    "tags,patient,source",
    [
        # PixelSpacing equal to ImagerPixelSpacing is not calibrated (PS3.3 10.7.1.1): the
        # patient plane is the imager's over the magnification
        ({"PixelSpacing": ["0.2", "0.3"]}, (0.16, 0.24), "ImagerPixelSpacing / 1.25"),
        # ... unless its calibration type says it was calibrated (then it is taken as it is)
        (
            {"PixelSpacing": ["0.2", "0.3"], "PixelSpacingCalibrationType": "GEOMETRY"},
            (0.2, 0.3),
            "PixelSpacing",
        ),
        # a PixelSpacing other than the imager's is calibrated, whatever the type says
        ({"PixelSpacing": ["0.17", "0.25"]}, (0.17, 0.25), "PixelSpacing"),
        ({}, (0.16, 0.24), "ImagerPixelSpacing / 1.25"),  # no PixelSpacing
    ],
)
def test_patient_plane_spacing_follows_pixel_spacings_calibration(tmp_path, tags, patient, source):
    import pydicom

    path = write_dicom(tmp_path / "x.dcm", EstimatedRadiographicMagnificationFactor="1.25", **tags)
    ds = pydicom.dcmread(path)
    found, named = pixel_spacing(ds, path, "patient")
    assert found == pytest.approx(patient) and named.startswith(source), named
    assert load_spine_xray(path).spacing_mm == pytest.approx(patient)
    # the detector plane is the imager's in every case, and not in doubt
    assert pixel_spacing(ds, path, "detector") == ((0.2, 0.3), "ImagerPixelSpacing")
    assert read_xray(path).spacing_doubt == ""


@pytest.mark.parametrize(
    "tags,doubt",
    [
        ({"EstimatedRadiographicMagnificationFactor": "1.25"}, True),
        (
            {
                "EstimatedRadiographicMagnificationFactor": "1.25",
                "PixelSpacingCalibrationType": "GEOMETRY",
            },
            False,
        ),
        (
            {
                "EstimatedRadiographicMagnificationFactor": "1.25",
                "PixelSpacingCalibrationType": "FIDUCIAL",
            },
            False,
        ),
        ({}, False),  # no factor: both readings give the same detector
    ],
)
def test_pixel_spacing_alone_is_read_as_calibrated_and_a_guess_says_so(tmp_path, tags, doubt):
    """Without ImagerPixelSpacing, PixelSpacing x the factor is the detector's spacing; when the
    file states no calibration that is a guess (PS3.3 10.7.1.1: it cannot be determined) that
    changes the detector by the factor, and the X-ray says so."""
    path = write_dicom(
        tmp_path / "x.dcm", drop=("ImagerPixelSpacing",), PixelSpacing=["0.16", "0.24"], **tags
    )
    xray = read_xray(path)
    scale = 1.25 if tags else 1.0
    assert (xray.intrinsics.dely, xray.intrinsics.delx) == pytest.approx(
        (0.16 * scale, 0.24 * scale)
    )
    if doubt:
        assert xray.spacing_doubt.startswith("PixelSpacing (0028,0030) states no calibration")
        assert "--pixel-spacing ROW COL" in xray.spacing_doubt
    else:
        assert xray.spacing_doubt == ""
    # --pixel-spacing: the file's spacing is not read, so nothing is in doubt
    assert read_xray(path, spacing=(0.5, 0.5)).spacing_doubt == ""


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
        (
            {"ImagerPixelSpacing": ["0", "0"]},
            (),
            "gives its pixel spacing as unknown (ImagerPixelSpacing (0018,1164) is 0\\0); pass "
            "--pixel-spacing ROW COL",
        ),
    ],
)
def test_broken_tags_raise_one_clear_line(tmp_path, tags, drop, message):
    path = write_dicom(tmp_path / "bad.dcm", drop=drop, **tags)
    with pytest.raises(BadInput) as caught:
        read_xray(path)
    assert message in str(caught.value) and "bad.dcm" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_rescale_slope_of_0_is_refused_by_every_reader(tmp_path):
    """Slope 0 maps every pixel to one value; without an intercept pydicom skips the rescale,
    and embed-spine measured the film as stored (register's reader refused it alone)."""
    path = write_dicom(tmp_path / "zero.dcm", RescaleSlope="0")
    for read in (read_xray, load_spine_xray, read_dicom_image):
        with pytest.raises(BadInput, match=r"zero\.dcm: RescaleSlope \(0028,1053\) is 0"):
            read(path)


@pytest.fixture(scope="module")
def film():
    """A 25 deg spine film (16-bit) drawn upright: head up, the patient's left at the right."""
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    return synth_spine_xray(25.0, rows=192, seed=4)


@pytest.mark.parametrize(
    ("stored", "tags", "done"),
    [
        (lambda a: a, {}, "L\\F (DICOM without orientation tags: radiological display)"),
        (lambda a: a[:, ::-1], {"PatientOrientation": ["R", "F"]}, "stored R\\F; mirrored"),
        (lambda a: a[::-1, ::-1], {"PatientOrientation": ["R", "H"]}, "turned 180 deg"),
        (lambda a: np.rot90(a, -1), {"PatientOrientation": ["H", "L"]}, "turned 90 deg"),
        (lambda a: np.rot90(a, 1), {"FieldOfViewRotation": "270"}, "turned 270 deg"),
        (lambda a: a[:, ::-1], {"FieldOfViewHorizontalFlip": "YES"}, "mirrored"),
    ],
    ids=["no tags", "R-F", "R-H", "H-L", "FOV rotation", "FOV flip"],
)
def test_films_stored_turned_or_mirrored_measure_as_the_upright_one(
    recon, tmp_path, film, stored, tags, done
):
    """A film stored upside down, on its side or mirrored, as its orientation tags say: the same
    Cobb angle, the same signed embedding (the convex side) and the same end vertebrae as the
    upright film. Before, the tags were ignored: a mirrored film flipped the convex side and an
    upside-down one swapped the vertebra names."""
    from dicom_files import write_dx

    spacing = {"ImagerPixelSpacing": [film.spacing_mm, film.spacing_mm]}
    results = {}
    for name, pixels, extra in (("upright", film.image, {"PatientOrientation": ["L", "F"]}),
                                ("stored", stored(film.image), tags)):  # fmt: skip
        path = write_dx(tmp_path / f"{name}.dcm", np.ascontiguousarray(pixels), **spacing, **extra)
        rc, out, err = recon("embed-spine", path, "-o", tmp_path / f"{name}.json", "--json")
        assert rc == 0, err
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    upright, turned = results["upright"], results["stored"]
    assert abs(upright["cobb_deg"] - film.cobb_deg) < 3.0
    assert turned["cobb_deg"] == pytest.approx(upright["cobb_deg"], abs=1e-6)
    assert turned["embedding"] == pytest.approx(upright["embedding"], abs=1e-6)
    assert turned["end_vertebrae"] == upright["end_vertebrae"]
    assert done in turned["orientation"] and turned["orientation"].startswith("L\\F")


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"ViewPosition": "LL"}, "View Position (0018,5101) LL is a lateral view"),
        ({"PatientOrientation": ["A", "F"]}, "Patient Orientation A\\F puts the patient's front"),
    ],
)
def test_a_lateral_film_is_refused(recon, tmp_path, film, tags, message):
    from dicom_files import write_dx

    path = write_dx(tmp_path / "lat.dcm", film.image, ImagerPixelSpacing=["2", "2"], **tags)
    rc, _, err = recon("embed-spine", path, "-o", tmp_path / "e.json")
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert "embed-spine measures frontal (AP or PA) spine films" in err
    assert not (tmp_path / "e.json").exists()


PYDICOM_FILES = Path(__import__("pydicom.data").data.__file__).parent / "test_files"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("CT_small.dcm", "Modality (0008,0060) CT is a CT slice, not a projection X-ray"),
        ("MR_small.dcm", "Modality (0008,0060) MR is an MR image, not a projection X-ray"),
        (None, "Modality (0008,0060) SEG is a segmentation, not a projection X-ray"),
        # objects that hold no pixels at all were "no pixel data (is the file cut short?)"
        (
            "rtplan.dcm",
            "Modality (0008,0060) RTPLAN is a radiotherapy plan, not a projection X-ray",
        ),
        (
            "waveform_ecg.dcm",
            "Modality (0008,0060) ECG is an electrocardiogram, not a projection X-ray",
        ),
    ],
)
@pytest.mark.parametrize("command", ["embed-spine", "register"])
def test_a_dicom_that_is_no_projection_x_ray_is_refused(recon, tmp_path, source, message, command):
    """pydicom's own CT and MR slices (not made here) were measured as spine films: a head CT
    slice gave a 50 deg Cobb angle, exit 0, no warning."""
    import shutil

    path = tmp_path / "film.dcm"
    if source is None:
        write_dicom(path, Modality="SEG")
    else:
        shutil.copy(PYDICOM_FILES / source, path)
    out = tmp_path / ("s.json" if command == "embed-spine" else "out")
    args = [path, "-o", out] if command == "embed-spine" else [path, "-v", path, "-o", out]
    code, _, err = recon(command, *args)
    assert code == 2, err
    assert err.strip().splitlines() == [f"error: {path}: {message} (DX, CR, RF, XA)"], err
    assert not out.exists()


def test_a_12_bit_jpeg_extended_film_says_how_to_read_it(recon, tmp_path):
    """No installed decoder reads it: the line says so and names a way out."""
    import pydicom

    ds = pydicom.dcmread(PYDICOM_FILES / "JPEG-lossy.dcm")  # 12-bit JPEG Extended
    ds.Modality = "DX"
    ds.save_as(tmp_path / "film.dcm")
    code, _, err = recon("embed-spine", tmp_path / "film.dcm", "-o", tmp_path / "s.json")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "(JPEG Extended (Process 2 and 4))" in err and "dcmdjpeg IN OUT" in err
    assert not (tmp_path / "s.json").exists()


def test_a_batch_of_films_none_measured_does_not_speak_of_the_rest(recon, tmp_path):
    import shutil

    shutil.copy(PYDICOM_FILES / "CT_small.dcm", tmp_path / "ct.dcm")
    code, _, err = recon("embed-spine", tmp_path / "ct.dcm", "-o", tmp_path / "out")
    assert code == 1, err
    assert err.strip().endswith(f"X-ray (DX, CR, RF, XA)); each film's status is in {tmp_path}/out")
    assert "unreadable" in (tmp_path / "out" / "cobb.csv").read_text()


def test_a_dicom_object_that_holds_no_image_says_so(recon, tmp_path):
    """A DICOM whose SOP class holds no pixels (an RT plan without its Modality tag) was asked
    whether it was cut short."""
    import pydicom

    ds = pydicom.dcmread(PYDICOM_FILES / "rtplan.dcm")
    del ds.Modality
    ds.save_as(tmp_path / "plan.dcm")
    code, _, err = recon("embed-spine", tmp_path / "plan.dcm", "-o", tmp_path / "s.json")
    assert code == 2 and err.count("\n") == 1, err
    assert "plan.dcm: holds no image: a DICOM RT Plan object" in err, err
    assert not (tmp_path / "s.json").exists()
