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
    cobb, orientation, spacing = {}, {}, [film.spacing_mm] * 2
    for name in ("upright.png", "phone.jpg"):
        rc, out, err = recon("embed-spine", tmp_path / name, "-o", tmp_path / f"{name}.json",
                             "--pixel-spacing", *spacing, "--json")  # fmt: skip
        assert rc == 0, err
        cobb[name] = json.loads(out)["cobb_deg"]
        orientation[name] = json.loads((tmp_path / f"{name}.json").read_text())["orientation"]
    assert abs(cobb["upright.png"] - film.cobb_deg) < 3.0
    assert abs(cobb["phone.jpg"] - cobb["upright.png"]) < 1.0, cobb
    # the pixel positions it gives are in the turned frame, and it says so (it said "as stored")
    assert orientation["upright.png"].startswith("as stored (an image file")
    assert orientation["phone.jpg"].startswith("as its EXIF Orientation 8 turns it (an image")


def test_bmp_and_webp_films_are_read_by_every_x_ray_command(recon, tmp_path):
    """BMP and (lossless) WebP films were refused by embed-spine and left out of register's
    folders: they measure the Cobb angle of the PNG, and a folder lists them."""
    from PIL import Image

    from recon.pipelines.common.io import write_png
    from recon.pipelines.corset.spine_xray import synth_spine_xray
    from recon.pipelines.xray.register_inputs import expand_inputs

    film = synth_spine_xray(25.0, rows=192, seed=4)
    grey = (film.image >> 8).astype(np.uint8)
    (tmp_path / "films").mkdir()
    write_png(tmp_path / "films" / "a.png", grey)
    Image.fromarray(grey).save(tmp_path / "films" / "b.bmp")
    Image.fromarray(grey).save(tmp_path / "films" / "c.webp", lossless=True)
    rc, out, err = recon("embed-spine", tmp_path / "films", "-o", tmp_path / "cobb",
                         "--pixel-spacing", film.spacing_mm, film.spacing_mm, "--json")  # fmt: skip
    assert rc == 0, err
    cobb = {Path(row["xray"]).name: row["cobb_deg"] for row in json.loads(out)["results"]}
    assert sorted(cobb) == ["a.png", "b.bmp", "c.webp"]
    assert cobb["b.bmp"] == cobb["c.webp"] == cobb["a.png"]
    files, _ = expand_inputs([tmp_path / "films"])
    assert [p.name for p in files] == ["a.png", "b.bmp", "c.webp"]


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


def grey_ramp() -> np.ndarray:
    rows, cols = np.mgrid[0:64, 0:48]
    return ((rows * 3 + cols) % 256).astype(np.uint8)


@pytest.mark.parametrize("kind", ["float", "16-bit", "grey+alpha"])
def test_every_reader_reads_other_grey_encodings_as_the_8_bit_png(tmp_path, kind):
    """A float TIFF in [0, 1], a 16-bit PNG and a grey PNG with an opaque alpha channel hold the
    same picture as the 8-bit PNG. Before, the skull reader saturated the 16-bit one and blackened
    the float one, the photo reader blackened the float one, the pair reader refused it and
    averaged grey with alpha, and embed-spine refused grey with alpha."""
    from PIL import Image

    from recon.pipelines.corset.spine import load_spine_xray
    from recon.pipelines.occupancy.images import rgb_image
    from recon.pipelines.skull.data import image_tensor
    from recon.pipelines.xray.pairs import read_gray

    grey = grey_ramp()
    Image.fromarray(grey).save(tmp_path / "plain.png")
    other = {
        "float": ("f.tif", Image.fromarray(grey.astype(np.float32) / 255)),
        "16-bit": ("w.png", Image.fromarray(grey.astype(np.uint16) * 257)),
        "grey+alpha": ("la.png", Image.fromarray(grey).convert("LA")),
    }[kind]
    other[1].save(tmp_path / other[0])
    plain, path = tmp_path / "plain.png", tmp_path / other[0]
    assert np.abs(rgb_image(path).astype(int) - rgb_image(plain)).max() <= 1
    assert np.abs(read_gray(path)[0] - read_gray(plain)[0]).max() <= 1 / 255 + 1e-6
    assert np.abs(image_tensor(path, 32).numpy() - image_tensor(plain, 32).numpy()).max() < 0.05
    if kind != "float":  # embed-spine takes PNG/JPEG/TIFF; a float TIFF is one too
        assert np.abs(load_spine_xray(path).image - load_spine_xray(plain).image).max() < 1e-2


@pytest.mark.parametrize(
    "values,problem",
    [
        ([0.0, 4.0], "values span [0, 4]"),
        ([-1.0, 0.5], "values span [-1, 0.5]"),
        ([0.0, float("nan")], "has NaN or infinite values (3072 of 3072)"),
        ([0.0, 0.5, float("nan")], "has NaN or infinite values (1 of 3072)"),  # one masked pixel
        ([0.0, 0.5, float("inf")], "has NaN or infinite values (1 of 3072)"),
    ],
)
def test_a_float_image_outside_0_1_is_one_line(tmp_path, values, problem):
    """Its scale (raw counts, HU) cannot be known: refused by the photo and pair readers. A
    NaN pixel was reported as values spanning [nan, nan]."""
    from PIL import Image

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.occupancy.images import rgb_image
    from recon.pipelines.xray.pairs import read_gray

    pixels = np.linspace(values[0], values[1], 64 * 48, dtype=np.float32).reshape(64, 48)
    if len(values) == 3:
        pixels[5, 7] = values[2]
    Image.fromarray(pixels).save(tmp_path / "f.tif")
    for reader in (rgb_image, read_gray):
        with pytest.raises(BadInput, match="float images are read as intensities in") as caught:
            reader(tmp_path / "f.tif")
        assert f"f.tif: float image {problem};" in str(caught.value)
        assert "\n" not in str(caught.value)


def test_a_stack_is_refused_as_an_x_ray_and_read_as_its_first_frame_as_a_photo(tmp_path):
    """A two-page TIFF: the X-ray readers (register, embed-spine, X-ray pairs) refuse it in one
    line; it used to be read from its first page without a word. Photos keep the first frame."""
    from PIL import Image

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.corset.spine import load_spine_xray
    from recon.pipelines.occupancy.images import rgb_image
    from recon.pipelines.xray.pairs import read_gray
    from recon.pipelines.xray.xray import read_xray

    grey = grey_ramp()
    pages = [Image.fromarray(grey), Image.fromarray(255 - grey)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    readers = (read_gray, load_spine_xray, lambda p: read_xray(p, sdd=1000, spacing=(1, 1)))
    for reader in readers:
        with pytest.raises(BadInput, match="stack.tif: holds 2 images"):
            reader(tmp_path / "stack.tif")
    assert np.array_equal(rgb_image(tmp_path / "stack.tif")[..., 0], grey)


def test_integers_beyond_16_bits_are_refused_by_the_pair_reader(tmp_path):
    """A 32-bit TIFF holding values up to 236000 was divided by 65535 and clipped (saturated)."""
    from PIL import Image

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.pairs import read_gray

    Image.fromarray(grey_ramp().astype(np.int32) * 1000).save(tmp_path / "wide.tif")
    with pytest.raises(BadInput, match=r"int32 values span \[0, 236000\], beyond the 16-bit"):
        read_gray(tmp_path / "wide.tif")
    Image.fromarray(grey_ramp().astype(np.int32) * 257).save(tmp_path / "fits.tif")
    assert np.abs(read_gray(tmp_path / "fits.tif")[0] - grey_ramp() / 255).max() < 1e-6


def test_a_32_bit_tiff_of_8_bit_levels_reads_as_8_bit_in_the_pair_reader(tmp_path):
    """A 32-bit integer TIFF states no scale: levels 0-255 (an 8-bit picture converted) were
    divided by 65535, 257 times too dark; they read as the photo reader reads them."""
    from PIL import Image

    from recon.pipelines.common.io import read_rgb
    from recon.pipelines.xray.pairs import read_gray

    Image.fromarray(grey_ramp().astype(np.int32)).save(tmp_path / "levels.tif")
    grey, bits = read_gray(tmp_path / "levels.tif")
    assert bits == 8 and np.abs(grey - grey_ramp() / 255).max() < 1e-6
    assert np.array_equal(read_rgb(tmp_path / "levels.tif")[..., 0], grey_ramp())


def test_a_phone_mpo_jpeg_is_one_x_ray(tmp_path):
    """Phone cameras save multi-picture JPEGs (the picture and its previews): one X-ray, read
    from its first picture, where a stack is refused."""
    from PIL import Image

    from recon.pipelines.corset.spine import load_spine_xray

    grey = Image.fromarray(grey_ramp()).convert("RGB")
    grey.save(tmp_path / "phone.jpg", format="MPO", save_all=True,
              append_images=[grey.resize((24, 32))], quality=95)  # fmt: skip
    grey.save(tmp_path / "plain.jpg", quality=95)
    assert Image.open(tmp_path / "phone.jpg").n_frames == 2
    phone, plain = load_spine_xray(tmp_path / "phone.jpg"), load_spine_xray(tmp_path / "plain.jpg")
    assert np.abs(phone.image - plain.image).max() < 0.02


def _turned_tiff(path: Path, upright: np.ndarray, orientation: int, kind: str) -> Path:
    """A TIFF of the upright picture's pixels stored as `orientation` says (STORED), written by
    Pillow (uncompressed, Deflate or LZW) or by tifffile (WhiteIsZero)."""
    from PIL import Image

    stored = np.ascontiguousarray(STORED[orientation](upright))
    if kind == "white-is-zero":
        import tifffile

        tifffile.imwrite(path, 65535 - stored, photometric="miniswhite",
                         extratags=[(274, "H", 1, orientation, True)])  # fmt: skip
    else:
        compression = {"deflate rgb": "tiff_adobe_deflate", "lzw rgb": "tiff_lzw"}.get(kind)
        Image.fromarray(stored).save(path, tiffinfo={274: orientation}, compression=compression)
    return path


@pytest.mark.parametrize("kind", ["16-bit grey", "deflate rgb", "white-is-zero"])
@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_a_tiff_stored_a_quarter_turn_is_read_upright(tmp_path, orientation, kind):
    """Pillow turns some such TIFFs itself while reading and scrambles others (uncompressed
    grey): they were refused. Their stored pixels, read by tifffile and turned as the tag says,
    give the upright picture, its size to every reader, and WhiteIsZero ones the right way
    round."""
    from recon.pipelines.common.io import picture_size
    from recon.pipelines.occupancy.checks import image_size

    upright = picture() if kind == "deflate rgb" else grey_ramp().astype(np.uint16) * 257
    path = _turned_tiff(tmp_path / "t.tif", upright, orientation, kind)
    assert np.array_equal(read_image(path), upright)
    assert picture_size(path) == image_size(path) == (upright.shape[1], upright.shape[0])


@pytest.mark.parametrize(
    "kind, message",
    [
        ("palette", "p.tif: a TIFF of 1 samples per pixel with photometric 3 stored a quarter"),
        ("lzw rgb", "p.tif: a TIFF stored a quarter turn compressed with LZW; save it upright"),
    ],
)
def test_a_turned_tiff_recon_cannot_turn_is_one_line(recon, tmp_path, kind, message):
    """A palette TIFF stored a quarter turn (tifffile's stored pixels are colour codes) and an
    LZW one (which tifffile decodes only with imagecodecs, not installed): one line naming why,
    nothing written."""
    from PIL import Image

    if kind == "palette":
        Image.fromarray(grey_ramp()).convert("P").save(tmp_path / "p.tif", tiffinfo={274: 6})
    else:
        _turned_tiff(tmp_path / "p.tif", picture(), 6, kind)
    out = tmp_path / "e.json"
    rc, _, err = recon("embed-spine", tmp_path / "p.tif", "-o", out, "--pixel-spacing", 1, 1)
    assert rc == 2 and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()
    # recon serve refuses the upload (it was queued and failed in the job)
    from recon.pipelines.web.uploads import UploadError, check_image

    with pytest.raises(UploadError) as refused:
        check_image(tmp_path / "p.tif")
    reason = message.removeprefix("p.tif: ")
    assert refused.value.status == 415 and f"the TIFF file cannot be used: {reason}" in str(
        refused.value
    )


def test_register_reads_grey_plus_alpha_as_the_grey(tmp_path):
    from PIL import Image

    from recon.pipelines.xray.xray import read_xray

    grey = grey_ramp()
    Image.fromarray(grey).save(tmp_path / "g.png")
    alpha = np.linspace(0, 255, grey.size).reshape(grey.shape).astype(np.uint8)
    Image.fromarray(np.stack([grey, alpha], axis=-1), mode="LA").save(tmp_path / "la.png")
    one, two = (read_xray(tmp_path / n, sdd=1000, spacing=(1, 1)) for n in ("g.png", "la.png"))
    assert np.array_equal(one.image.numpy(), two.image.numpy())


def wide_integer_tiffs(path: Path, grey: np.ndarray) -> dict[str, tuple[Path, np.ndarray]]:
    """TIFFs written by Pillow and tifffile, not by recon: name -> (file, what a [0, 255]
    reading of its samples is), each on the scale its type or tags give."""
    import tifffile
    from PIL import Image

    wide = grey.astype(np.int64)
    twelve_bit = np.rint(wide * 4095 / 255).astype(np.uint16)
    files = {
        # Pillow's own conversion of an 8-bit picture: mode "I", 32-bit signed samples
        "pillow I from 8-bit": (Image.fromarray(grey).convert("I"), wide),
        "int32 of 16-bit values": (wide.astype(np.int32) * 257, wide),
        # no 8- or 16-bit scale holds them: read on their own maximum
        "int32 beyond 16 bits": (wide.astype(np.int32) * 1000, wide * 255 / wide.max()),
        # unsigned 32-bit, which Pillow holds as int32: values over 2^31 wrapped negative
        "uint32 over 2^31": (wide.astype(np.uint32) * 16843009, wide * 255 / wide.max()),
        "int16": (wide.astype(np.int16) * 128, wide * 128 * 255 / 32767),
        "uint16 big-endian (I;16B)": (wide.astype(np.uint16) * 257, wide),
        # 12-bit samples in 16-bit words, as scientific cameras write them
        "uint16 with MaxSampleValue 4095": (twelve_bit, twelve_bit / 4095 * 255),
    }
    written = {}
    for number, (name, (pixels, expected)) in enumerate(files.items()):
        target = path / f"wide{number}.tif"
        if isinstance(pixels, Image.Image):
            pixels.save(target)
        elif "4095" in name:
            tifffile.imwrite(target, pixels, extratags=[(281, "H", 1, 4095, True)])
        else:
            tifffile.imwrite(target, pixels, byteorder=">" if "big" in name else "<")
        written[name] = (target, np.clip(np.rint(expected), 0, 255))
    return written


def test_integer_tiffs_wider_than_8_bits_are_read_on_their_own_scale(tmp_path):
    """32-bit integer TIFFs (Pillow mode "I") were divided by 257 as if 16-bit: a picture
    converted from 8 bits came out nearly black, one beyond 16 bits saturated white, and
    unsigned values over 2^31 wrapped negative. 16-bit ones keep the 16-bit scale unless the
    file states its maximum (12-bit samples came out 16 times too dark)."""
    from PIL import Image

    from recon.pipelines.common.io import read_rgb
    from recon.pipelines.occupancy.images import rgb_image

    grey = grey_ramp()
    files = wide_integer_tiffs(tmp_path, grey)
    modes = {name: Image.open(path).mode for name, (path, _) in files.items()}
    assert modes["pillow I from 8-bit"] == modes["uint32 over 2^31"] == modes["int16"] == "I"
    assert modes["uint16 big-endian (I;16B)"] == "I;16B"
    assert modes["uint16 with MaxSampleValue 4095"] == "I;16"
    for name, (path, expected) in files.items():
        rgb = read_rgb(path)
        assert rgb.shape == (*grey.shape, 3) and rgb.dtype == np.uint8, name
        assert np.array_equal(rgb[..., 0], rgb[..., 2]), name
        assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1, name
        assert np.array_equal(rgb_image(path), rgb), name


def test_negative_integer_samples_lower_black(tmp_path):
    """A signed TIFF's negative values are the darkest, in order, not clipped together at 0."""
    import tifffile

    from recon.pipelines.common.io import read_rgb

    samples = np.tile(np.array([-32768, -16384, 0, 32767], dtype=np.int16), (8, 2))
    tifffile.imwrite(tmp_path / "signed.tif", samples)
    got = read_rgb(tmp_path / "signed.tif")[0, :4, 0]
    assert got.tolist() == [0, 64, 128, 255]


def test_signed_8_bit_samples_are_read_as_signed(tmp_path):
    """Pillow hands a signed 8-bit TIFF over as unsigned bytes: -1 read as 255 (white), -128 as
    128 (mid grey), so the picture came back scrambled; the file's SampleFormat says signed."""
    import tifffile
    from PIL import Image

    from recon.pipelines.common.io import grey_pixels, read_image, read_rgb

    grey = grey_ramp()
    path = tmp_path / "int8.tif"
    tifffile.imwrite(path, (grey.astype(np.int16) - 128).astype(np.int8))
    assert Image.open(path).mode == "L"  # what Pillow makes of it
    assert np.array_equal(read_rgb(path)[..., 0], grey)  # -128 black .. 127 white
    values = grey_pixels(read_image(path))
    assert np.array_equal(np.argsort(values, axis=None, kind="stable"),
                          np.argsort(grey, axis=None, kind="stable"))  # fmt: skip


def test_white_is_zero_tiffs_read_as_their_black_is_zero_twins(tmp_path):
    """A TIFF may store its samples white to black (Photometric Interpretation 0, as some X-ray
    exports do). Pillow turns 8-bit ones only: 16-bit and float ones came back negative, bone
    dark. Each, written by tifffile, reads as the BlackIsZero file of the turned values."""
    import tifffile

    from recon.pipelines.common.io import read_rgb

    grey = grey_ramp()
    bright = {
        "uint8": grey,
        "uint16": grey.astype(np.uint16) * 257,
        "float32": (grey / 255.0).astype(np.float32),
        "float64": grey / 255.0,  # one Pillow cannot open at all
    }
    for name, values in bright.items():
        dark = 1.0 - values if values.dtype.kind == "f" else np.iinfo(values.dtype).max - values
        white_is_zero, black_is_zero = tmp_path / f"w_{name}.tif", tmp_path / f"b_{name}.tif"
        tifffile.imwrite(white_is_zero, dark.astype(values.dtype), photometric="miniswhite")
        tifffile.imwrite(black_is_zero, values, photometric="minisblack")
        got = read_rgb(white_is_zero)
        assert np.abs(got.astype(int) - read_rgb(black_is_zero)).max() <= 1, name
        assert np.abs(got[..., 0].astype(int) - grey).max() <= 1, name


def test_a_white_is_zero_spine_film_measures_as_its_png(cobb_of, tmp_path):
    """The same spine film as a 16-bit PNG and as a 16-bit WhiteIsZero TIFF: the same Cobb
    angle (read the wrong way round, the spine is a dark column and the film has none)."""
    import tifffile

    from recon.pipelines.common.io import write_png
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    film = synth_spine_xray(18.0, rows=192, seed=5)
    png = write_png(tmp_path / "film.png", film.image)
    tiff = tmp_path / "film.tif"
    tifffile.imwrite(tiff, (65535 - film.image).astype(np.uint16), photometric="miniswhite")
    angles = [cobb_of(path, film.spacing_mm) for path in (png, tiff)]
    assert angles[0] == pytest.approx(angles[1], abs=1e-6)
    assert abs(angles[0] - film.cobb_deg) < 3.0


def test_a_signed_white_is_zero_tiff_is_one_line(recon, tmp_path):
    """Signed samples stored white to black: Pillow does not open them, and the line says what
    the file holds."""
    import tifffile

    path = tmp_path / "film.tif"
    tifffile.imwrite(path, np.zeros((64, 48), dtype=np.int16), photometric="miniswhite")
    rc, _, err = recon("embed-spine", path, "-o", tmp_path / "e.json")
    assert rc == 2 and err.count("\n") == 1, err
    assert "a TIFF of int16 samples, Photometric Interpretation 0" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.tif"]


def test_a_float_tiff_in_0_1_is_read_as_its_intensities(tmp_path):
    """A 32-bit float TIFF (Pillow mode "F") written by tifffile: [0, 1] is black to white."""
    import tifffile
    from PIL import Image

    from recon.pipelines.common.io import read_rgb

    pixels = np.linspace(0.0, 1.0, 64 * 48, dtype=np.float32).reshape(64, 48)
    tifffile.imwrite(tmp_path / "f.tif", pixels)
    assert Image.open(tmp_path / "f.tif").mode == "F"
    got = read_rgb(tmp_path / "f.tif")
    assert np.array_equal(got[..., 1], np.rint(pixels * 255).astype(np.uint8))
