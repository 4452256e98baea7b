"""How embed-spine writes its files: the overlay PNG at the fast zlib level (OVERLAY_PNG_LEVEL)
with its pixels unchanged, data PNGs as Pillow's default writes them, and the same numbers
whichever way a film is measured."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon.pipelines.common.io import read_image, write_png
from recon.pipelines.corset.embed import OVERLAY_PNG_LEVEL, embed_xray, write_embedding
from recon.pipelines.corset.spine_xray import synth_spine_xray, write_spine_png


def pillow_png(array: np.ndarray, **options) -> bytes:
    """The bytes Pillow writes for array as PNG with these save options."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def without_timing(doc: dict) -> dict:
    return {key: value for key, value in doc.items() if key not in ("seconds", "source")}


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """A 16-bit synthetic spine film, 192 rows."""
    path = tmp_path_factory.mktemp("film") / "spine.png"
    return write_spine_png(path, synth_spine_xray(25.0, rows=192, seed=4))


def test_data_pngs_keep_pillows_default_bytes(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 65535, (48, 40), dtype=np.uint16)
    mask = rng.integers(0, 2, (48, 40), dtype=np.uint8) * 255
    for name, array in (("depth.png", depth), ("mask.png", mask)):
        written = write_png(tmp_path / name, array)
        assert written.read_bytes() == pillow_png(array)


def test_write_png_writes_at_the_level_asked_with_the_same_pixels(tmp_path):
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    rgb = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 90)], axis=-1)
    fast = write_png(tmp_path / "fast.png", rgb, compress_level=1)
    assert fast.read_bytes() == pillow_png(rgb, compress_level=1)
    assert fast.read_bytes() != pillow_png(rgb)
    np.testing.assert_array_equal(read_image(fast), rgb)


def test_the_overlay_is_written_fast_and_pixel_for_pixel(film, tmp_path):
    assert OVERLAY_PNG_LEVEL == 1
    embedded = embed_xray(film, None, "T1-L5", overlay=True)
    json_path, overlay_path = tmp_path / "e.json", tmp_path / "e.png"
    write_embedding(embedded, json_path, overlay_path)
    assert overlay_path.read_bytes() == pillow_png(embedded.overlay, compress_level=1)
    np.testing.assert_array_equal(read_image(overlay_path), embedded.overlay)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(embedded.doc))


def test_the_overlay_changes_no_number(film):
    drawn = embed_xray(film, None, "T1-L5", overlay=True)
    plain = embed_xray(film, None, "T1-L5", overlay=False)
    assert plain.overlay is None
    assert without_timing(drawn.doc) == without_timing(plain.doc)


def test_one_film_and_a_folder_give_the_same_json_and_overlay(recon, film, tmp_path):
    folder = tmp_path / "films"
    folder.mkdir()
    (folder / film.name).write_bytes(film.read_bytes())
    one, picture = tmp_path / "one.json", tmp_path / "one.png"
    code, _, err = recon("embed-spine", film, "-o", one, "--debug-image", picture)
    assert code == 0, err
    code, _, err = recon("embed-spine", folder, "-o", tmp_path / "out")
    assert code == 0, err
    many = tmp_path / "out" / f"{film.stem}.json"
    assert without_timing(json.loads(one.read_text())) == without_timing(
        json.loads(many.read_text())
    )
    np.testing.assert_array_equal(read_image(picture), read_image(many.with_suffix(".png")))
    assert picture.read_bytes() == (tmp_path / "out" / f"{film.stem}.png").read_bytes()
