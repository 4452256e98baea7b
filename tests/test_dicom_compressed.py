"""Compressed DICOM X-rays (JPEG 2000, JPEG Lossless, JPEG-LS, RLE), as PACS exports them,
written here by pydicom and GDCM (not by `recon synth`): read exactly as the uncompressed file,
and a damaged stream is one line naming the file and its transfer syntax, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_files import compress, write_dx

from recon.pipelines.common.dicom import read_dicom_image
from recon.pipelines.corset.spine_xray import synth_spine_xray
from recon.pipelines.xray.pairs import read_gray
from recon.pipelines.xray.xray import read_xray

RECON = str(Path(sys.executable).parent / "recon")
# (transfer syntax UID, its name in the error line)
SYNTAXES = {
    "jpeg2000": ("1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)"),
    "jpeg-lossless": ("1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order"),
    "jpeg-ls": ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression"),
    "rle": ("1.2.840.10008.1.2.5", "RLE Lossless"),
}


SPINE = synth_spine_xray(20.0, rows=160, seed=3)  # 16-bit pixels and the true Cobb angle


def film(path: Path, syntax: str | None = None) -> Path:
    """The spine film as a 12-bit DX DICOM at 2.5 mm, compressed to syntax when given."""
    geometry = {"DistanceSourceToDetector": "1000", "ImagerPixelSpacing": ["2.5", "2.5"]}
    return write_dx(path, SPINE.image >> 4, bits_stored=12, syntax=syntax, **geometry)


@pytest.mark.parametrize("kind", sorted(SYNTAXES))
def test_compressed_film_reads_as_the_uncompressed_one(tmp_path, kind):
    import pydicom

    plain = film(tmp_path / "plain.dcm")
    packed = film(tmp_path / f"{kind}.dcm", SYNTAXES[kind][0])
    assert pydicom.dcmread(packed).file_meta.TransferSyntaxUID == SYNTAXES[kind][0]
    assert packed.stat().st_size < plain.stat().st_size  # really compressed
    for reader in (lambda p: read_dicom_image(p, voi=True).pixels, lambda p: read_gray(p)[0]):
        assert np.array_equal(reader(packed), reader(plain))
    one, two = read_xray(plain), read_xray(packed)
    assert np.array_equal(one.image.numpy(), two.image.numpy())
    assert one.spacing_source == two.spacing_source == "ImagerPixelSpacing"


def test_embed_spine_measures_a_compressed_film_as_the_plain_one(recon, tmp_path):
    films = {"plain": film(tmp_path / "plain.dcm")}
    for kind in ("jpeg2000", "jpeg-lossless"):
        films[kind] = film(tmp_path / f"{kind}.dcm", SYNTAXES[kind][0])
    measured = {}
    for name, path in films.items():
        rc, out, err = recon("embed-spine", path, "-o", tmp_path / f"{name}.json", "--json")
        assert rc == 0, err
        measured[name] = json.loads(out)
    assert abs(measured["plain"]["cobb_deg"] - SPINE.cobb_deg) < 3.0  # the film's true curve
    for name in ("jpeg2000", "jpeg-lossless"):
        assert measured[name]["cobb_deg"] == measured["plain"]["cobb_deg"]
        assert measured[name]["spacing_mm"] == [2.5, 2.5]


def damage(path: Path, how: str) -> Path:
    """Overwrite half the pixel stream with a byte pattern, or cut the file in the stream."""
    import pydicom

    raw = bytearray(path.read_bytes())
    size = len(pydicom.dcmread(path).PixelData)
    start = len(raw) - size + 40  # past the item tags and the codestream's first marker
    if how == "overwritten":
        raw[start : start + size // 2] = bytes(
            (7 * b + 3) & 255 for b in raw[start : start + size // 2]
        )
    else:
        raw = raw[: len(raw) - size // 2]
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("how", ["overwritten", "cut"])
@pytest.mark.parametrize("kind", sorted(SYNTAXES))
def test_damaged_compressed_film_is_one_line_without_a_crash(tmp_path, kind, how):
    """In a separate process: before, GDCM aborted the process on the overwritten JPEG 2000
    stream (pydicom tried it after pylibjpeg)."""
    path = damage(film(tmp_path / "x.dcm", SYNTAXES[kind][0]), how)
    out = tmp_path / "e.json"
    result = subprocess.run(
        [RECON, "embed-spine", str(path), "-o", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-400:])
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "x.dcm" in result.stderr
    if how == "cut":
        assert "has no pixel data (is the file cut short?)" in result.stderr
    else:
        assert f"cannot read the spine X-ray's pixel data ({SYNTAXES[kind][1]}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dcm"]


@pytest.mark.parametrize("kind", ["rle", "jpeg2000"])
def test_bytes_flipped_in_the_stream_never_crash_the_reader(tmp_path, kind):
    """20 films with 1-40 random bytes of the compressed frame overwritten, read in one separate
    process: each gives an image or BadInput. Before, pydicom's own order reached pylibjpeg-rle,
    which panics (a Rust panic is no Exception) on 7 of the first 20 RLE films."""
    import random

    import pydicom
    from pydicom.encaps import encapsulate, generate_fragmented_frames

    ds = pydicom.dcmread(film(tmp_path / "x.dcm", SYNTAXES[kind][0]))
    clean = b"".join(next(generate_fragmented_frames(ds.PixelData)))
    paths = []
    for seed in range(20):
        rng, frame = random.Random(seed), bytearray(clean)
        for _ in range(rng.randint(1, 40)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        ds.PixelData = encapsulate([bytes(frame)])
        paths.append(tmp_path / f"flipped{seed}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    probe = (
        "import sys\n"
        "from recon.pipelines.common.dicom import read_dicom_image\n"
        "from recon.pipelines.common.errors import BadInput\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n        read_dicom_image(path)\n        print('image')\n"
        "    except BadInput as error:\n        print('BadInput', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *map(str, paths)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-400:]
    lines = result.stdout.splitlines()
    assert len(lines) == 20 and all(line.startswith(("image", "BadInput")) for line in lines)
    assert any(line.startswith("BadInput") for line in lines)  # the damage was really seen
    assert result.stderr == ""  # the decoders' own complaints stay off the terminal


def test_compress_helper_really_changes_the_syntax(tmp_path):
    import pydicom

    path = film(tmp_path / "x.dcm")
    compress(path, SYNTAXES["jpeg-lossless"][0])
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == SYNTAXES["jpeg-lossless"][0]


@pytest.mark.parametrize("kind", ["jpeg-lossless", "jpeg-ls"])
def test_a_broken_jpeg_marker_is_one_line_not_an_abort(tmp_path, kind):
    """One byte of the first Huffman (JPEG) or preset-parameter (JPEG-LS) marker overwritten.
    GDCM, the only JPEG Lossless decoder installed, aborted the process on it, printing nothing;
    the marker structure is now checked before any decoder sees the stream."""
    path = film(tmp_path / "x.dcm", SYNTAXES[kind][0])
    raw = bytearray(path.read_bytes())
    marker = raw.index(b"\xff\xc4" if kind == "jpeg-lossless" else b"\xff\xf7")
    raw[marker] = 0x06
    path.write_bytes(bytes(raw))
    result = subprocess.run(
        [RECON, "embed-spine", str(path), "-o", str(tmp_path / "e.json")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-300:])
    assert (
        result.stderr.count("\n") == 1 and "x.dcm: cannot read the spine X-ray's" in result.stderr
    )
    assert "damaged JPEG stream in frame 1" in result.stderr


def test_a_dicom_reads_with_stderr_closed(tmp_path):
    """The capture of the decoders' own messages duplicates file descriptor 2; a caller that
    closed it (`2>&-`) got no result at all."""
    import os

    path = film(tmp_path / "x.dcm", SYNTAXES["jpeg2000"][0])
    result = subprocess.run(
        [RECON, "embed-spine", str(path), "-o", str(tmp_path / "e.json"), "--json"],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.close(2),
        text=True,
    )
    assert result.returncode == 0
    assert abs(json.loads(result.stdout)["cobb_deg"] - SPINE.cobb_deg) < 3.0


def test_an_8_bit_jpeg_baseline_film_reads_as_its_picture(recon, tmp_path):
    """JPEG baseline (lossy, 8-bit), as some exports write films: the pixels as the stream
    decodes, and the same Cobb angle as the uncompressed film to 1 deg. The stream is encoded
    by Pillow and wrapped by pydicom here."""
    import io

    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate

    grey = (SPINE.image >> 8).astype(np.uint8)
    plain = write_dx(tmp_path / "plain.dcm", grey, bits_stored=8, ImagerPixelSpacing=["2.5", "2.5"])
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=95)
    ds = pydicom.dcmread(plain)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.BitsAllocated = 8
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    pixels = read_dicom_image(tmp_path / "jpeg.dcm").pixels
    assert np.array_equal(pixels, np.asarray(Image.open(buffer)))  # the stream, decoded
    assert np.abs(pixels - grey).mean() < 3.0  # JPEG's error on this noisy film: 1.5
    cobb = {}
    for name in ("plain", "jpeg"):
        rc, out, err = recon(
            "embed-spine", tmp_path / f"{name}.dcm", "-o", tmp_path / f"{name}.json", "--json"
        )
        assert rc == 0, err
        cobb[name] = json.loads(out)["cobb_deg"]
    assert abs(cobb["jpeg"] - cobb["plain"]) < 1.0 and abs(cobb["plain"] - SPINE.cobb_deg) < 3.0
