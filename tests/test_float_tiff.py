"""Floating-point TIFFs Pillow does not open (64- and 16-bit samples, RGB floats, planar or
interleaved), written by tifffile as scientific pipelines write them: read as float32 by every
picture reader, measured as the same film, and refused in one line where they cannot be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def film():
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    return synth_spine_xray(24.0, rows=192, seed=3)


def test_pillow_itself_cannot_open_these_files(tmp_path):
    """What the reader is for: without it these files were 'cannot identify image file'."""
    from PIL import Image, UnidentifiedImageError

    path = tmp_path / "f64.tif"
    tifffile.imwrite(path, np.zeros((16, 16)))
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)


@pytest.mark.parametrize(
    "dtype,layout", [("f8", "grey"), ("f2", "grey"), ("f4", "planar"), ("f8", "contig")]
)
def test_float_tiffs_read_as_their_values(tmp_path, dtype, layout):
    from recon.pipelines.common.io import grey_pixels, picture_size, read_image

    rng = np.random.default_rng(0)
    grey = rng.random((24, 40))
    path = tmp_path / "x.tif"
    if layout == "grey":
        tifffile.imwrite(path, grey.astype(dtype))
    else:
        rgb = np.stack([grey, grey * 0.5, 1 - grey], axis=-1).astype(dtype)
        planar = layout == "planar"
        data = np.moveaxis(rgb, -1, 0) if planar else rgb
        tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate" if planar else None)
    array = read_image(path, one_frame=True)
    assert array.dtype == np.float32 and array.shape[:2] == (24, 40)
    if layout == "grey":
        np.testing.assert_allclose(array, grey, atol=1e-3 if dtype == "f2" else 1e-7)
    else:
        np.testing.assert_allclose(array[..., 1], grey * 0.5, atol=1e-7)  # channels in order
        np.testing.assert_allclose(
            grey_pixels(array), (grey + grey * 0.5 + 1 - grey) / 3, atol=1e-6
        )
    assert picture_size(path) == (40, 24)  # (width, height), as for any picture


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_float_tiff_is_turned_upright_as_its_orientation_says(tmp_path, orientation):
    """Stored pixels made from the upright picture by the EXIF definition of each value (as
    tests/test_image_files.py makes them for Pillow's formats); tifffile reads them as stored,
    so every value, quarter turns too, gives the upright picture and its size."""
    from test_image_files import STORED, picture

    from recon.pipelines.common.io import picture_size, read_image

    upright = picture().astype(np.float64) / 255.0  # 48 x 32, no symmetry
    path = tmp_path / "o.tif"
    stored = np.ascontiguousarray(STORED[orientation](upright))
    tifffile.imwrite(path, stored, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    assert np.array_equal(read_image(path), upright.astype(np.float32))
    assert picture_size(path) == (32, 48)


def test_a_float64_film_measures_as_its_16_bit_png(cobb_of, tmp_path, film):
    """The same spine film as a 16-bit PNG and as a float64 TIFF: the same Cobb angle."""
    from recon.pipelines.common.io import write_png

    png = write_png(tmp_path / "film.png", film.image)
    tiff = tmp_path / "film.tif"
    tifffile.imwrite(tiff, film.image.astype(np.float64) / 65535.0)
    angles = [cobb_of(path, film.spacing_mm) for path in (png, tiff)]
    assert abs(angles[0] - film.cobb_deg) < 3.0
    assert abs(angles[1] - angles[0]) < 0.05, angles


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: tifffile.imwrite(p, np.full((64, 48), np.nan)), "NaN or infinite"),
        (lambda p: tifffile.imwrite(p, np.zeros((2, 64, 48))), "holds 2 images"),
        (lambda p: p.write_bytes(b"II*\0" + b"\0" * 12), "not a readable image"),  # no pages
    ],
    ids=["nan", "stack", "damaged"],
)
def test_unusable_float_tiffs_are_one_line(recon, tmp_path, caplog, make, message):
    path = tmp_path / "bad.tif"
    make(path)
    before = snapshot(tmp_path)
    rc, _, err = recon("embed-spine", path, "-o", tmp_path / "e.json", "--pixel-spacing", 1, 1)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not caplog.records, caplog.records  # tifffile's own warnings would reach stderr
    assert message in err and str(path) in err
    assert snapshot(tmp_path) == before


def test_a_pair_image_outside_0_1_is_refused_as_any_float_picture(tmp_path):
    """The translation pairs read floats as [0, 1] intensities, as from Pillow's float TIFFs."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.pairs import image_size, read_gray

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, np.linspace(0, 3, 64 * 48).reshape(64, 48))
    assert image_size(path) == (64, 48)  # (rows, columns)
    with pytest.raises(BadInput, match=r"values span \[0, 3\]"):
        read_gray(path)
    tifffile.imwrite(path, np.linspace(0, 1, 64 * 48).reshape(64, 48))
    pixels, bits = read_gray(path)
    assert pixels.dtype == np.float32 and bits == 16 and pixels.max() == 1.0


def test_the_server_takes_a_float_tiff_upload_and_refuses_one_it_cannot_use(tmp_path):
    """A float32 TIFF Pillow decodes itself passed the upload with values to 2 (202) and failed
    in the job; it is refused at the upload, as the float64 one Pillow cannot open was."""
    from PIL import Image

    from recon.pipelines.web.uploads import UploadError, check_image

    good, bad, junk = tmp_path / "good.bin", tmp_path / "bad.bin", tmp_path / "junk.bin"
    pillows = tmp_path / "pillows.bin"
    tifffile.imwrite(good, np.linspace(0, 1, 30 * 40).reshape(30, 40))
    tifffile.imwrite(bad, np.full((30, 40), 7.0))
    Image.fromarray(np.full((30, 40), 2.0, np.float32), mode="F").save(pillows, format="TIFF")
    junk.write_bytes(b"II*\0" + b"\0" * 12)
    assert check_image(good) == ("tif", 40, 30)
    with pytest.raises(UploadError) as refused:
        check_image(good, max_pixels=100)
    assert refused.value.status == 413
    for path, reason in (
        (bad, "the TIFF file cannot be used: float image values span [7, 7]"),
        (pillows, "the TIFF file cannot be used: float image values span [2, 2]"),
        (junk, "a TIFF that holds no image"),
    ):
        with pytest.raises(UploadError) as refused:
            check_image(path)
        assert refused.value.status == 415 and reason in str(refused.value), refused.value
        assert str(tmp_path) not in str(refused.value)  # the server's paths stay its own
