"""What image files say about themselves, honoured by every image reader: an EXIF Orientation
tag (phone photos stored sideways) is applied, the stored pixels made here from the upright
picture by the EXIF specification's own definition of each value, not by Pillow; palette and
CMYK images give colours, not codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.io import read_image

# Stored pixels S of an upright picture A (H, W, ...) for each Orientation value, from the EXIF
# definition ("the 0th row is the visual ..., the 0th column is the visual ...").
STORED = {
    1: lambda a: a,  # top, left
    2: lambda a: a[:, ::-1],  # top, right
    3: lambda a: a[::-1, ::-1],  # bottom, right
    4: lambda a: a[::-1, :],  # bottom, left
    5: lambda a: np.swapaxes(a, 0, 1),  # left, top
    6: lambda a: np.rot90(a, 1),  # right, top
    7: lambda a: np.rot90(a, 1)[:, ::-1],  # right, bottom
    8: lambda a: np.rot90(a, -1),  # left, bottom
}


def picture() -> np.ndarray:
    """An upright RGB picture (48 x 32) with no symmetry: a ramp down, a ramp across, a block."""
    rows, cols = np.mgrid[0:48, 0:32]
    image = np.stack([rows * 5, cols * 7, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    image[4:14, 20:28, 2] = 255
    return image


def save_with_orientation(path: Path, upright: np.ndarray, orientation: int) -> Path:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = np.ascontiguousarray(STORED[orientation](upright))
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_read_image_turns_the_stored_pixels_upright(tmp_path, orientation, suffix):
    from recon.pipelines.common.io import open_image, upright_size

    upright = picture()
    path = save_with_orientation(tmp_path / f"p{suffix}", upright, orientation)
    got = read_image(path)
    assert got.shape == upright.shape
    error = np.abs(got.astype(int) - upright).mean()
    assert error < (3.0 if suffix == ".jpg" else 1e-9), error
    with open_image(path) as image:
        assert upright_size(image) == (32, 48)


def test_every_reader_agrees_on_a_sideways_photo(tmp_path):
    """The skull/voxel network input, the check-data size and the X-ray pair reader."""
    from recon.pipelines.occupancy.checks import image_size
    from recon.pipelines.skull.data import image_tensor
    from recon.pipelines.xray.pairs import read_gray

    upright = picture()
    plain = save_with_orientation(tmp_path / "plain.png", upright, 1)
    turned = save_with_orientation(tmp_path / "turned.png", upright, 6)
    assert image_size(turned) == image_size(plain) == (32, 48)
    assert np.allclose(image_tensor(turned, 64).numpy(), image_tensor(plain, 64).numpy())
    assert np.array_equal(read_gray(turned)[0], read_gray(plain)[0])


def test_embed_spine_measures_a_film_photographed_sideways(recon, tmp_path):
    """A spine film saved as a phone would (JPEG, stored a quarter turn, Orientation 8): the
    same Cobb angle as the upright PNG, within 3 deg of the truth."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    film = synth_spine_xray(25.0, rows=192, seed=4)
    grey = (film.image >> 8).astype(np.uint8)
    write_png(tmp_path / "upright.png", grey)
    save_with_orientation(tmp_path / "phone.jpg", np.stack([grey] * 3, axis=-1), 8)
    cobb, spacing = {}, [film.spacing_mm] * 2
    for name in ("upright.png", "phone.jpg"):
        rc, out, err = recon("embed-spine", tmp_path / name, "-o", tmp_path / f"{name}.json",
                             "--pixel-spacing", *spacing, "--json")  # fmt: skip
        assert rc == 0, err
        cobb[name] = json.loads(out)["cobb_deg"]
    assert abs(cobb["upright.png"] - film.cobb_deg) < 3.0
    assert abs(cobb["phone.jpg"] - cobb["upright.png"]) < 1.0, cobb


@pytest.mark.parametrize("kind", ["palette", "palette-transparent", "cmyk"])
def test_palette_and_cmyk_images_give_colours(tmp_path, kind):
    """Before, a palette PNG came back as its palette indices (one channel) and a CMYK JPEG as
    four channels that the photo reader took for RGB + alpha."""
    from PIL import Image

    from recon.pipelines.occupancy.images import rgb_image

    upright = picture()
    image = Image.fromarray(upright)
    if kind == "cmyk":
        path = tmp_path / "p.jpg"
        image.convert("CMYK").save(path, quality=95)
    else:
        path = tmp_path / "p.png"
        palette = image.quantize(128)
        if kind == "palette-transparent":
            palette.info["transparency"] = 255  # an unused entry: nothing is see-through
        palette.save(path, **({"transparency": 255} if kind == "palette-transparent" else {}))
    got = read_image(path)
    assert got.shape == upright.shape[:2] + ((4,) if kind == "palette-transparent" else (3,))
    assert np.abs(rgb_image(path).astype(int) - upright).mean() < 4.0
