"""DICOM files not made here: pydicom-data's clinical CR films (a PA chest, RG1, and a tibia, RG3,
each stored uncompressed and as JPEG 2000) and David Clunie's LUT test images (mlut_18: a
Modality LUT on signed 12-bit values; vlut_04: an 8-bit VOI LUT). What they say about
themselves (MONOCHROME1, 15 bits stored, PixelSpacing 0\\0, Body Part Examined) is read as they
say it; the chest film has no known Cobb angle, so its truth here is relative: the same film
turned by a known angle must turn the traced tilts by that angle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import refused

from recon.pipelines.corset.spine import load_spine_xray, measure_spine

CHEST_SPACING = (0.19, 0.19)  # the film's 1841 columns over an adult chest; not in the file


def real_file(name: str) -> Path:
    """pydicom-data's file `name` (a dev dependency: `make test` installs it)."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name)
    assert found is not None, f"pydicom-data's {name} is not installed"
    return Path(found)


@pytest.fixture(scope="module")
def chest() -> np.ndarray:
    return load_spine_xray(real_file("RG1_UNCR.dcm"), CHEST_SPACING).image


def test_a_chest_film_whose_spacing_is_0_is_measured_in_pixels(recon, tmp_path):
    """RG1 says PixelSpacing 0\\0 (unknown): it was refused, and --pixel-spacing, which
    overrides the file's spacing, was refused with it."""
    film = real_file("RG1_UNCR.dcm")
    rc, out, err = recon("embed-spine", film, "-o", tmp_path / "a.json", "--span", "T1-L1",
                         "--json")  # fmt: skip
    assert rc == 0, err
    assert "carries no pixel spacing (PixelSpacing (0028,0030) is 0\\0, unknown)" in err
    assert "millimetres are pixels" in err and "--pixel-spacing" in err
    measured = json.loads(out)
    assert measured["spacing_from"] == "none"
    assert all(name[0] in "TL" for name in measured["end_vertebrae"].values())
    rc, out, err = recon("embed-spine", film, "-o", tmp_path / "b.json", "--span", "T1-L1",
                         "--json", "--pixel-spacing", *CHEST_SPACING)  # fmt: skip
    assert rc == 0 and "millimetres are pixels" not in err, err
    assert json.loads(out)["spacing_mm"] == list(CHEST_SPACING)


def test_register_says_the_chest_films_spacing_is_unknown(recon, tmp_path):
    volume = tmp_path / "ct.nii.gz"
    import nibabel as nib

    hu = np.full((16, 16, 16), -1000.0, np.float32)
    hu[4:12, 4:12, 2:14] = 300.0
    nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), volume)
    film = real_file("RG1_UNCR.dcm")
    err = refused(recon, tmp_path, "register", film, "-v", volume, "--sdd", 1800,
                  "--orientation", "PA", "-o", tmp_path / "out")  # fmt: skip
    assert (
        "gives its pixel spacing as unknown (PixelSpacing (0028,0030) is 0\\0); pass "
        "--pixel-spacing ROW COL" in err
    )


def test_the_chest_film_is_read_bone_bright_and_alike_from_jpeg_2000(chest):
    """MONOCHROME1 (bright = air when displayed as stored): the lungs either side of the
    mediastinum must come out darker than it; the lossless JPEG 2000 copy is the same film."""
    rows, cols = chest.shape
    band = chest[rows // 4 : rows // 2]
    middle = band[:, int(cols * 0.45) : int(cols * 0.55)].mean()
    right, left = (
        band[:, int(cols * 0.2) : int(cols * 0.3)],
        band[:, int(cols * 0.7) : int(cols * 0.8)],
    )
    lungs = np.r_[right, left]
    assert lungs.mean() < middle - 0.15, (lungs.mean(), middle)
    lossless = load_spine_xray(real_file("RG1_J2KR.dcm"), CHEST_SPACING).image
    assert np.array_equal(lossless, chest)


def test_turning_the_chest_film_turns_its_traced_tilts_by_as_much(chest):
    """The film turned by +-6 deg about its centre: the traced levels' mean tilt must turn by
    6 deg (measured: 5.78 and 5.86, error <= 0.22 deg)."""
    from scipy.ndimage import rotate

    inner = slice(1, -1)  # the 15 scored levels
    base = measure_spine(chest, CHEST_SPACING, "T1-L1").tilts_deg[inner].mean()
    for angle in (-6.0, 6.0):
        turned = rotate(chest, angle, reshape=False, order=1, mode="nearest")
        tilts = measure_spine(turned, CHEST_SPACING, "T1-L1").tilts_deg[inner]
        # rotate() turns counter-clockwise as displayed: the column leans the other way
        assert tilts.mean() - base == pytest.approx(-angle, abs=0.5), (angle, tilts.mean() - base)


def test_the_chest_film_exported_as_a_small_jpeg_measures_alike(recon, chest, tmp_path):
    """What a user often has instead of the DICOM: an 8-bit JPEG export at about half size
    (1024 px wide, quality 85). Its Cobb angle must be the DICOM's to within 0.5 deg
    (measured: 13.31 against 13.09; 512 to 1841 px and quality 75 to 95: 13.08-13.31)."""
    from PIL import Image

    width = 1024
    height = round(chest.shape[0] * width / chest.shape[1])
    export = Image.fromarray((chest * 255).round().astype(np.uint8)).resize((width, height))
    export.save(tmp_path / "chest.jpg", quality=85)
    scale = CHEST_SPACING[0] * chest.shape[1] / width
    cobb = {}
    for name, film, spacing in (
        ("dicom", real_file("RG1_UNCR.dcm"), CHEST_SPACING[0]),
        ("jpeg", tmp_path / "chest.jpg", scale),
    ):
        rc, out, err = recon("embed-spine", film, "-o", tmp_path / f"{name}.json", "--json",
                             "--span", "T1-L1", "--pixel-spacing", spacing, spacing)  # fmt: skip
        assert rc == 0, err
        cobb[name] = json.loads(out)["cobb_deg"]
    assert cobb["jpeg"] == pytest.approx(cobb["dicom"], abs=0.5), cobb


def test_a_tibia_film_is_no_spine(recon, tmp_path):
    """RG3 (Body Part Examined EXTREMITY, an AP tibia) was measured: Cobb 17.3 deg, exit 0.
    predict corset reads its --spine through the same loader."""
    from recon.pipelines.common.errors import BadInput

    film = real_file("RG3_UNCR.dcm")
    err = refused(recon, tmp_path, "embed-spine", film, "-o", tmp_path / "e.json")
    assert "Body Part Examined (0018,0015) EXTREMITY shows no spine" in err, err
    with pytest.raises(BadInput, match="EXTREMITY shows no spine"):
        load_spine_xray(film)


def test_clunies_modality_lut_image_maps_each_value_to_its_entry():
    """mlut_18: signed 12-bit values -2048..2047 through a 4096-entry Modality LUT whose first
    mapped value is -2048 and whose entries rise by 16: every pixel must become
    (value + 2048) x 16, as pydicom's own lookup also gives."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from recon.pipelines.common.dicom_values import modality_values

    path = real_file("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    assert stored.min() == -2048 and stored.max() == 2047
    values = modality_values(stored, ds, path)
    table = np.asarray(ds.ModalityLUTSequence[0].LUTData, dtype=np.int64)
    assert table[0] == 0 and table[-1] == 65535 and set(np.diff(table)) == {16, 17}
    assert np.array_equal(values, table[stored.astype(np.int64) + 2048])
    assert np.array_equal(values, apply_modality_lut(stored, ds))


def test_clunies_voi_lut_image_maps_each_value_to_its_entry():
    """vlut_04: 8-bit values through a 256-entry VOI LUT of 16-bit entries with slope +1: the
    display must rise with the stored value, entry by entry, as pydicom's lookup gives."""
    import pydicom
    from pydicom.pixels import apply_voi_lut

    from recon.pipelines.common.dicom_values import apply_voi

    path = real_file("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    table = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
    shown = apply_voi(stored.astype(np.float64), ds, path)
    assert np.array_equal(shown, table[stored])
    assert np.all(np.diff(table) >= 0) and table[-1] > table[0]
    assert np.array_equal(shown, apply_voi_lut(stored, ds))
