"""The pixels a DICOM marks as not image (Pixel Padding Value, display shutters) are left out of
registration, on DX files written by pydicom here (not by `recon synth`): a DRR of the bundled
CT seen through a fluoroscope's round field and through collimator blades."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dicom_files import ap_line_integrals, film_tags, write_dx, write_truth

from recon.pipelines.common.dicom import image_region, read_dicom_image
from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.similarity import GradientMultiscaleNCC
from recon.pipelines.xray.xray import cropped_region, preprocess, read_xray

HEIGHT, WIDTH, SPACING = 96, 84, 4.0
RADIUS = 35  # px, the round field
BLADES = (18, 14, 16, 12)  # px collimated out: top, bottom, left, right
LOG = {"PixelIntensityRelationship": "LOG", "PixelIntensityRelationshipSign": -1}


def _round_field():
    rows, cols = np.mgrid[1 : HEIGHT + 1, 1 : WIDTH + 1]
    return (rows - HEIGHT // 2) ** 2 + (cols - WIDTH // 2) ** 2 <= RADIUS**2


def _blades():
    top, bottom, left, right = BLADES
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[top : HEIGHT - bottom, left : WIDTH - right] = True
    return inside


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """Bone-white films (LOG, MONOCHROME2) of one DRR: plain; a round field black outside
    (as a display shutter, and as padding); blades white outside (as a rectangular shutter,
    and as padding)."""
    folder = tmp_path_factory.mktemp("shutters")
    values = np.round(100 + 3900 * ap_line_integrals(HEIGHT, WIDTH, SPACING)).astype(np.uint16)
    tags = {**film_tags(SPACING), **LOG}
    round_field = np.where(_round_field(), values, 0).astype(np.uint16)
    bladed = np.where(_blades(), values, 4095).astype(np.uint16)
    top, bottom, left, right = BLADES
    files = {
        "plain": write_dx(folder / "plain.dcm", values, **tags),
        "circle": write_dx(
            folder / "circle.dcm",
            round_field,
            ShutterShape="CIRCULAR",
            CenterOfCircularShutter=[HEIGHT // 2, WIDTH // 2],
            RadiusOfCircularShutter=RADIUS,
            **tags,
        ),
        "circle_padding": write_dx(
            folder / "circle_padding.dcm", round_field, PixelPaddingValue=0, **tags
        ),
        "blades": write_dx(
            folder / "blades.dcm",
            bladed,
            ShutterShape="RECTANGULAR",
            ShutterLeftVerticalEdge=left + 1,
            ShutterRightVerticalEdge=WIDTH - right,
            ShutterUpperHorizontalEdge=top + 1,
            ShutterLowerHorizontalEdge=HEIGHT - bottom,
            **tags,
        ),
        "blades_padding": write_dx(
            folder / "blades_padding.dcm", bladed, PixelPaddingValue=4095, **tags
        ),
    }
    return files, write_truth(folder / "truth.json")


def test_regions_from_padding_and_shutters(films):
    files, _ = films
    expected = {
        "circle": _round_field(),
        "blades": _blades(),
        "blades_padding": _blades(),
    }
    for name, region in expected.items():
        dicom = read_dicom_image(files[name], invert=False)
        assert np.array_equal(dicom.region, region), name
    # padding 0 also takes the air inside the field that the 100 offset keeps above 0: none
    padded = read_dicom_image(files["circle_padding"], invert=False)
    assert np.array_equal(padded.region, _round_field())
    assert padded.region_source == "Pixel Padding Value 0"
    assert read_dicom_image(files["plain"]).region is None
    assert read_dicom_image(files["circle"], shutters=False).region is None


def test_the_image_inside_the_region_is_the_plain_films(films):
    """Scaled within the region, the shuttered films equal the plain film there (a padding
    value outside the data range no longer stretches the scale), and are 0 outside."""
    files, _ = films
    plain, _ = preprocess(read_xray(files["plain"]))
    for name in ("circle", "circle_padding", "blades", "blades_padding"):
        xray = read_xray(files[name])
        image, _ = preprocess(xray)
        region = cropped_region(xray)
        inside = plain[region]
        scaled = (inside - inside.min()) / (inside.max() - inside.min())
        assert torch.allclose(image[region], scaled, atol=1e-5), name
        assert float(image[~region].abs().max()) == 0.0


def test_more_shapes_intersect_and_bad_shutters_are_refused():
    from pydicom.dataset import Dataset

    stored = np.zeros((40, 50), np.uint16)
    ds = Dataset()
    ds.ShutterShape = ["RECTANGULAR", "POLYGONAL"]
    ds.ShutterLeftVerticalEdge, ds.ShutterRightVerticalEdge = 1, 25
    ds.ShutterUpperHorizontalEdge, ds.ShutterLowerHorizontalEdge = 1, 40
    ds.VerticesOfThePolygonalShutter = [1, 1, 40, 1, 40, 50]  # the lower-left triangle
    region, source = image_region(ds, stored, "x.dcm")
    rows, cols = np.mgrid[0:40, 0:50]
    triangle = cols * 39 <= rows * 49 + 1e-9
    assert np.array_equal(region[:, 25:], np.zeros((40, 25), bool))
    assert (region[:, :25] == triangle[:, :25]).mean() > 0.97  # polygon edge rasterised
    assert source == "rectangular shutter and polygonal shutter"
    bitmap = Dataset()
    bitmap.ShutterShape = "BITMAP"
    assert image_region(bitmap, stored, "x.dcm") == (None, "bitmap shutter (not read)")
    broken = [
        ({"ShutterShape": "CIRCULAR", "CenterOfCircularShutter": [20, 25]}, "Radius"),
        ({"ShutterShape": "CIRCULAR", "CenterOfCircularShutter": [20],
          "RadiusOfCircularShutter": 5}, "a row and a column"),
        ({"ShutterShape": "POLYGONAL", "VerticesOfThePolygonalShutter": [1, 1, 9, 9]}, r"3 \(row"),
        ({"ShutterShape": "OVAL"}, "not a shutter shape"),
        ({"ShutterShape": "CIRCULAR", "CenterOfCircularShutter": [20, 25],
          "RadiusOfCircularShutter": 3}, "leave 29 of 2000 pixels"),
    ]  # fmt: skip
    for tags, message in broken:
        bad = Dataset()
        for keyword, value in tags.items():
            setattr(bad, keyword, value)
        with pytest.raises(BadInput, match=message):
            image_region(bad, stored, "x.dcm")


def test_masked_similarity_sees_only_the_region():
    """With every pixel in the mask the value is xvr's; with a mask nothing outside it moves
    the value or its gradient."""
    generator = torch.Generator().manual_seed(0)
    fixed = torch.rand(2, 1, 40, 50, generator=generator, dtype=torch.float64)
    moving = 0.5 * fixed + torch.rand(2, 1, 40, 50, generator=generator, dtype=torch.float64)
    full = torch.ones(1, 1, 40, 50, dtype=torch.bool)
    assert torch.allclose(
        GradientMultiscaleNCC(fixed, mask=full)(moving), GradientMultiscaleNCC(fixed)(moving)
    )
    mask = torch.zeros(1, 1, 40, 50, dtype=torch.bool)
    mask[..., 5:35, 8:45] = True
    outside = ~mask.expand_as(fixed)
    other_fixed, other_moving = fixed.clone(), moving.clone()
    other_fixed[outside] = 7.0
    other_moving[outside] = torch.rand(int(outside.sum()), generator=generator).double()
    values, gradients = [], []
    for f, m in ((fixed, moving), (other_fixed, other_moving)):
        m = m.clone().requires_grad_()
        value = GradientMultiscaleNCC(f, mask=mask)(m)
        value.sum().backward()
        values.append(value.detach())
        gradients.append(m.grad[~outside])
    assert torch.allclose(values[0], values[1]) and torch.allclose(gradients[0], gradients[1])
    assert not torch.allclose(values[0], GradientMultiscaleNCC(fixed)(moving))
    tiny = torch.zeros(1, 1, 40, 50, dtype=torch.bool)
    tiny[..., :10, :10] = True
    with pytest.raises(ValueError, match="no whole 11 px window"):
        GradientMultiscaleNCC(fixed, mask=tiny)


COARSE = ["--ct-spacing", 4, "--heights", "32,64", "--iterations", "150,60", "--threads", 1]


def _register(recon, path, truth, out, *extra):
    code, stdout, err = recon(
        "register", path, "-o", out, "--init", "dicom", "--truth", truth, *COARSE,
        "--device", "cpu", "--json", *extra,
    )  # fmt: skip
    return code, json.loads(stdout)["results"][0] if stdout.strip() else None, err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["circle", "blades_padding"])
def test_shuttered_films_register_to_the_truth(films, tmp_path, recon, name):
    """From the DICOM angles (17.7 mm mTRE): measured 0.86 mm (round field) and 0.87 mm
    (blades); with every pixel counted, 21 mm (exit 1, read as mirrored) and 3.7 mm. The plain
    film registers to 0.41 mm at these settings."""
    files, truth = films
    code, row, err = _register(recon, files[name], truth, tmp_path / "reg")
    assert code == 0, err
    assert row["init_mtre_mm"] > 10 and row["final_mtre_mm"] < 1.5, row
    share = {"circle": 0.48, "blades_padding": 0.44}[name]
    assert row["image_region_share"] == pytest.approx(share, abs=0.02)
    assert "shutter" in row["image_region"] or "Padding" in row["image_region"]


@pytest.mark.slow
def test_no_shutters_counts_every_pixel(films, tmp_path, recon):
    files, truth = films
    code, row, _ = _register(recon, files["circle"], truth, tmp_path / "reg", "--no-shutters")
    assert code == 1 and row["final_mtre_mm"] > 5 and row["image_region"] == "every pixel"


def test_bad_shutter_or_a_region_too_small_for_a_stage_is_one_line(films, tmp_path, recon):
    import pydicom

    files, truth = films
    ds = pydicom.dcmread(files["circle"])
    del ds.RadiusOfCircularShutter
    ds.save_as(tmp_path / "no_radius.dcm")
    ds = pydicom.dcmread(files["circle"])
    ds.RadiusOfCircularShutter = 9
    ds.save_as(tmp_path / "small.dcm")
    cases = [
        ("no_radius.dcm", [], "RadiusOfCircularShutter is missing"),
        ("small.dcm", ["--heights", "16,64"], "no whole 11 px window at the 16 px stage"),
    ]
    for name, extra, message in cases:
        out = tmp_path / "reg"
        code, _, err = recon("register", tmp_path / name, "-o", out, *extra, "--device", "cpu")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], err
        assert not out.exists()


@pytest.mark.slow
def test_a_png_frame_registers_with_its_mask(films, tmp_path, recon):
    """A PNG carries no shutter: --mask gives its round field (measured 0.86 mm, as the DICOM
    shutter; without it 21 mm). A mask of another size is one line."""
    from recon.pipelines.common.io import write_png

    files, truth = films
    pixels = read_dicom_image(files["circle"], invert=False).pixels
    write_png(tmp_path / "frame.png", pixels.astype(np.uint16))
    write_png(tmp_path / "field.png", (_round_field() * 255).astype(np.uint8))
    geometry = ["--sdd", 1020, "--pixel-spacing", SPACING, SPACING]
    code, row, err = _register(
        recon, tmp_path / "frame.png", truth, tmp_path / "reg", *geometry, "--init", "fixed",
        "--rot", 0, 0, 0, "--xyz", 0, 850, 0, "--mask", tmp_path / "field.png",
    )  # fmt: skip
    assert code == 0, err
    assert row["init_mtre_mm"] > 10 and row["final_mtre_mm"] < 1.5, row
    assert row["image_region"] == "--mask field.png"
    write_png(tmp_path / "small.png", np.ones((40, 40), np.uint8))
    out = tmp_path / "other"
    code, _, err = recon(
        "register", tmp_path / "frame.png", *geometry, "--mask", tmp_path / "small.png",
        "-o", out,
    )  # fmt: skip
    assert code == 2 and "the mask is 40 x 40 px, the X-ray frame.png 96 x 84" in err, err
    assert not out.exists()


def test_mask_pixels_are_bright_and_opaque(films, tmp_path):
    """A mask drawn in an editor: transparent pixels and faint ones (JPEG ringing around black)
    are not image."""
    from PIL import Image

    from recon.pipelines.xray.xray import with_mask

    files, _ = films
    field = _round_field()
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere ...
    rgba[..., 3] = np.where(field, 255, 0)  # ... but opaque only inside the field
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    faint = np.where(field, 255, 12).astype(np.uint8)  # ringing: 12 of 255 outside
    Image.fromarray(faint, "L").save(tmp_path / "faint.png")
    for name in ("alpha.png", "faint.png"):
        masked = with_mask(read_xray(files["plain"]), tmp_path / name)
        assert torch.equal(masked.region[0, 0], torch.from_numpy(field)), name
