"""embed-spine bad input: each case is one line on stderr, the right exit code, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.io import write_png


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def refused(recon, folder: Path, *args, code: int = 2) -> str:
    before = snapshot(folder)
    rc, out, err = recon(*args)
    assert rc == code, (args, rc, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert snapshot(folder) == before, "something was written or changed"
    return err


@pytest.fixture
def spine(tmp_path) -> Path:
    from recon.pipelines.corset.spine_xray import synth_spine_xray

    xray = synth_spine_xray(20.0, rows=192, seed=1)
    return write_png(tmp_path / "spine.png", xray.image)


def spine_dicom(path: Path, drop: tuple[str, ...] = (), **tags) -> Path:
    """A small spine DX DICOM written by pydicom; tags override or add header fields, drop
    removes them."""
    from dicom_files import write_dx

    from recon.pipelines.corset.spine_xray import synth_spine_xray

    pixels = synth_spine_xray(20.0, rows=160, seed=2).image
    return write_dx(path, pixels, drop=drop, **{"ImagerPixelSpacing": [2.5, 2.5], **tags})


@pytest.mark.parametrize("values", [["0", "1"], ["1", "-1"], ["nan", "1"], ["1", "1e9"]])
def test_pixel_spacing_out_of_range(recon, spine, values):
    err = refused(recon, spine.parent, "embed-spine", spine, "-o", spine.parent / "e.json",
                  "--pixel-spacing", *values)  # fmt: skip
    assert "--pixel-spacing must be in [0.01, 10]" in err


def test_pixel_spacing_needs_two_numbers(recon, spine):
    rc, _, err = recon("embed-spine", spine, "-o", spine.parent / "e.json", "--pixel-spacing", 1)
    assert rc == 2 and "--pixel-spacing" in err
    assert not (spine.parent / "e.json").exists()


@pytest.mark.parametrize(
    "tags,message",
    [
        ({"ImagerPixelSpacing": "2.5"}, "ImagerPixelSpacing (0018,1164) has 1 value"),
        ({"PixelSpacing": ["2.5", "2.5", "1"]}, "PixelSpacing (0028,0030) has 3 value"),
        ({"ImagerPixelSpacing": ["0", "2.5"]}, "must be two positive numbers"),
        ({"EstimatedRadiographicMagnificationFactor": "9.87"}, "is not a number"),
        ({"PhotometricInterpretation": "RGB"}, "not a grey-scale spine X-ray"),
    ],
)
def test_broken_dicom_tags_are_one_line(recon, tmp_path, tags, message):
    drop = ("ImagerPixelSpacing",) if "PixelSpacing" in tags else ()
    path = spine_dicom(tmp_path / "spine.dcm", drop, **tags)
    path.write_bytes(path.read_bytes().replace(b"9.87", b"abcd"))  # a DS that is no number
    err = refused(recon, tmp_path, "embed-spine", path, "-o", tmp_path / "e.json")
    assert message in err and "spine.dcm" in err


def test_pixel_spacing_overrides_a_broken_one_in_the_file(recon, tmp_path):
    """--pixel-spacing overrides the file's spacing: a broken one there was still refused."""
    path = spine_dicom(tmp_path / "spine.dcm", ImagerPixelSpacing=["0.2", "-0.3"])
    rc, out, err = recon("embed-spine", path, "-o", tmp_path / "e.json", "--json",
                         "--pixel-spacing", 2.5, 2.5)  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["spacing_mm"] == [2.5, 2.5]


def test_a_spacing_of_0_in_the_file_is_unknown(recon, tmp_path):
    """0\\0 is how some writers say unknown: the film is measured as a PNG without a spacing."""
    path = spine_dicom(tmp_path / "spine.dcm", ImagerPixelSpacing=["0", "0"])
    rc, out, err = recon("embed-spine", path, "-o", tmp_path / "e.json", "--json")
    assert rc == 0, err
    assert json.loads(out)["spacing_from"] == "none" and "millimetres are pixels" in err
    assert "(ImagerPixelSpacing (0018,1164) is 0\\0, unknown)" in err


def test_truncated_dicom_is_one_line(recon, tmp_path):
    path = spine_dicom(tmp_path / "spine.dcm")
    path.write_bytes(path.read_bytes()[:2000])
    err = refused(recon, tmp_path, "embed-spine", path, "-o", tmp_path / "e.json")
    assert "spine.dcm" in err


def test_png_without_pixel_spacing_says_its_millimetres_are_pixels(recon, spine):
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "e.json", "--json")
    assert rc == 0, err
    notes = [line for line in err.splitlines() if "millimetres are pixels" in line]
    assert len(notes) == 1 and "--pixel-spacing" in notes[0]
    assert json.loads(out)["spacing_from"] == "none"
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "f.json", "--json",
                         "--pixel-spacing", 2.5, 2.5)  # fmt: skip
    assert rc == 0 and "millimetres are pixels" not in err
    assert json.loads(out)["spacing_mm"] == [2.5, 2.5]


def test_old_spacing_flag_still_works_with_a_notice(recon, spine):
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "e.json", "--json",
                         "--spacing", 2.0)  # fmt: skip
    assert rc == 0
    assert "--spacing is deprecated" in err and "--pixel-spacing" in err
    assert json.loads(out)["spacing_mm"] == [2.0, 2.0]


def test_nothing_is_left_when_the_json_cannot_be_written(recon, spine, monkeypatch):
    import recon.pipelines.common.outputs as outputs

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "write_json", full_disk)
    args = ("embed-spine", spine, "-o", spine.parent / "e.json")
    err = refused(recon, spine.parent, *args, "--debug-image", spine.parent / "d.png", code=1)
    # written through a file object, the error names no file: the output's folder is named
    assert f"error: no space left on the disk of {spine.parent}: free some space" in err


def test_unwritable_debug_folder_is_refused_before_any_work(recon, spine):
    args = ("embed-spine", spine, "-o", spine.parent / "e.json")
    err = refused(recon, spine.parent, *args, "--debug-image", spine.parent / "no" / "d.png")
    assert "does not exist" in err


def test_blank_dicom_exits_1_and_writes_nothing(recon, tmp_path):
    path = spine_dicom(tmp_path / "spine.dcm")
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint16).tobytes()
    ds.save_as(path)
    err = refused(recon, tmp_path, "embed-spine", path, "-o", tmp_path / "e.json", code=1)
    assert "blank" in err


def test_the_overlay_names_the_cobb_angle_and_the_end_vertebrae(spine):
    """The overlay had lines and dots only: which levels are the ends, and what they are
    called, could only be read from the JSON."""
    from recon.pipelines.corset.embed import embed_xray

    embedded = embed_xray(spine, None, "T1-L5", overlay=True)
    picture, measure = embedded.overlay, embedded.measure
    assert picture.shape[2] == 3 and picture.dtype == np.uint8
    assert (picture[:14, :80].min(axis=-1) > 200).sum() > 20  # the Cobb angle, top left
    rows, cols = picture.shape[:2]
    red = (picture[..., 0] > 200) & (picture[..., 1:].max(axis=-1) < 60)
    line = max(6, cols // 12)  # the endplate line's half length (debug_overlay)
    for level in (measure.upper_end, measure.lower_end):
        row, col = int(measure.level_rows[level]), int(measure.level_cols[level])
        band = red[max(0, row - 12) : row + 12]
        beside = np.abs(np.arange(cols) - col) > line + 2
        assert band[:, beside].any(), level  # the name, away from the line


def test_the_table_gives_the_secondary_cobb_angle_to_a_tenth(recon, spine):
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "e.json")
    assert rc == 0, err
    row = next(line for line in out.splitlines() if "secondary Cobb" in line)
    value = row.split("│")[2].strip()
    assert value.replace(".", "", 1).isdigit() and len(value.split(".")[1]) == 1, row


def test_a_float_film_with_a_nan_pixel_is_refused(recon, spine):
    """One NaN pixel made every percentile NaN, and the film was called blank (exit 1)."""
    from PIL import Image

    from recon.pipelines.common.io import read_image

    pixels = read_image(spine).astype(np.float32) / 65535.0
    pixels[0, 0] = np.nan
    tiff = spine.with_name("nan.tif")
    Image.fromarray(pixels, mode="F").save(tiff)
    err = refused(recon, spine.parent, "embed-spine", tiff, "-o", spine.parent / "e.json")
    assert "holds NaN or infinite pixel values" in err


@pytest.mark.parametrize(
    "spacing,message",
    [
        ((2.5, 5.0), "differs 2.0 times between rows and columns"),
        ((10.0, 10.0), "check the pixel spacing"),  # a film 1.9 m tall
    ],
)
def test_a_doubtful_pixel_spacing_is_the_warning(recon, spine, spacing, message):
    """A 0.2 x 5 mm spacing read a 161 deg Cobb angle, and a 10 mm one a film 1.9 m tall,
    without a word."""
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "e.json", "--json",
                         "--pixel-spacing", *spacing)  # fmt: skip
    assert rc == 0, err
    assert message in json.loads(out)["warning"] and message in err


def test_a_tall_film_names_the_pixel_spacing_it_was_given(recon, spine):
    """A film over 1024 rows is traced on block means (3 x 3 here), and its doubtful-spacing
    warning and its no-spine error named their spacing (1.8 mm for the 0.6 given), which is
    nowhere in the input: each names the spacing the user gave, and the film's true size."""
    from PIL import Image

    from recon.pipelines.common.io import read_image

    tall = np.kron(read_image(spine), np.ones((12, 12), np.uint16))  # 2304 rows
    Image.fromarray(tall).save(spine.with_name("tall.png"))
    rc, out, err = recon("embed-spine", spine.with_name("tall.png"), "-o", spine.parent / "e.json",
                         "--json", "--pixel-spacing", 0.6, 0.6)  # fmt: skip
    assert rc == 0, err
    rows, cols = tall.shape
    size = f"at 0.6 x 0.6 mm per pixel the film is {cols * 0.6:.0f} x {rows * 0.6:.0f} mm"
    assert size in json.loads(out)["warning"] and size in err
    noise = np.random.default_rng(0).integers(0, 255, (2100, 1700)).astype(np.uint8)
    Image.fromarray(noise).save(spine.with_name("noise.png"))
    rc, _, err = recon("embed-spine", spine.with_name("noise.png"), "-o",
                       spine.parent / "n.json", "--pixel-spacing", 0.6, 0.6)  # fmt: skip
    assert rc == 1 and "at 0.6 x 0.6 mm per pixel the film is 1020 x 1260 mm" in err, err


def test_every_reason_for_doubt_is_in_the_warning(recon, spine):
    """A stretched pixel spacing that also made the traced column's borders differ strongly
    (0.84 here) warned of the spacing alone; the table showed the asymmetry unexplained."""
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "e.json", "--json",
                         "--pixel-spacing", 2.0, 6.0)  # fmt: skip
    assert rc == 0, err
    result = json.loads(out)
    assert result["border_asymmetry"] > 0.75
    warning = result["warning"]
    assert warning.index("differs 3.0 times") < warning.index("the two borders of the traced")
    assert warning.endswith("; check the overlay")
    assert err.count("warning:") == 1 and warning in err


def test_a_film_without_spacing_shows_none_in_the_table(recon, spine):
    """The table gave a PNG without --pixel-spacing a spacing of "1 x 1" mm, which it is not."""
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "e.json")
    assert rc == 0, err
    assert "none (lengths in pixels)" in out + err and "1 x 1" not in out + err
    rc, out, err = recon("embed-spine", spine, "-o", spine.parent / "f.json",
                         "--pixel-spacing", 0.8, 0.8)  # fmt: skip
    assert rc == 0 and "0.8 x 0.8" in out + err
