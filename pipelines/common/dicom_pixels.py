"""A DICOM file's stored pixel values, decoded safely: compressed pixel data (JPEG, JPEG 2000,
JPEG-LS, RLE) goes through pydicom's decoders, tried in an order that never reaches one known to
kill the process on a damaged stream (safe_decoders); a stream no decoder reads is one line
naming the transfer syntax, and what native decoders print goes into that line, not to stderr."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from recon.pipelines.common.dicom_tags import sop_class
from recon.pipelines.common.errors import BadInput, first_line

ALL_PLUGINS_FAILED = "Unable to decode as exceptions were raised by all available plugins:"

JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"  # JPEG Extended (Process 2 and 4): 12-bit JPEG


def safe_decoders() -> dict[str, tuple[str, ...]]:
    """Decoders to try, in order, per transfer syntax UID, where pydicom's own order reaches one
    that kills the process on some damaged streams instead of raising: GDCM aborts (an uncaught
    C++ exception) on corrupt JPEG 2000 data and on JPEG data with a broken marker, and
    pylibjpeg-rle panics (a Rust panic, which is not an Exception) on corrupt RLE data. JPEG and
    JPEG-LS streams reach GDCM only after their marker structure is checked (jpeg_damage), and
    Pillow (8-bit JPEG) and CharLS (JPEG-LS) come first. Other syntaxes: pydicom's order ("")."""
    from pydicom.uid import (
        JPEG2000TransferSyntaxes,
        JPEGBaseline8Bit,
        JPEGLSTransferSyntaxes,
        RLELossless,
    )

    return {
        **{uid: ("pylibjpeg", "pillow") for uid in JPEG2000TransferSyntaxes},
        **{uid: ("pyjpegls", "gdcm") for uid in JPEGLSTransferSyntaxes},
        JPEGBaseline8Bit: ("pillow", "gdcm"),
        RLELossless: ("pydicom",),
    }


def jpeg_damage(frame: bytes, jpeg_ls: bool = False) -> str | None:
    """Where a JPEG or JPEG-LS codestream breaks its marker structure (start of image, segments
    whose lengths fit, scans that end at a marker, end of image), or None when it holds."""
    size = len(frame)
    if size < 4 or frame[:2] != b"\xff\xd8":
        return "no start-of-image marker"
    at = 2
    while at < size:
        if frame[at] != 0xFF:
            return f"no marker at byte {at}"
        while at < size and frame[at] == 0xFF:  # fill bytes
            at += 1
        if at >= size:
            break
        marker, at = frame[at], at + 1
        if marker == 0xD9:  # end of image
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart markers and TEM: no length
            continue
        length = int.from_bytes(frame[at : at + 2], "big") if at + 2 <= size else 0
        if length < 2 or at + length > size:
            return f"the segment at byte {at - 2} runs past the end"
        at += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            while at < size - 1 and not _scan_ends(frame[at], frame[at + 1], jpeg_ls):
                at += 1
    return "no end-of-image marker"


def _scan_ends(byte: int, following: int, jpeg_ls: bool) -> bool:
    """A marker inside scan data: 0xFF then (JPEG) neither a stuffed 0x00 nor a restart marker,
    or (JPEG-LS, which stuffs a zero bit) a byte with its top bit set."""
    if byte != 0xFF:
        return False
    return following >= 0x80 if jpeg_ls else following != 0x00 and not 0xD0 <= following <= 0xD7


def _damaged_jpeg(ds, syntax, index: int | None = None) -> str | None:
    """The first frame damage of a JPEG-family or JPEG-LS dataset (see jpeg_damage), or None;
    with index (0-based), that frame's only."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

    if syntax not in JPEGTransferSyntaxes and syntax not in JPEGLSTransferSyntaxes:
        return None
    count = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
    except Exception as error:  # pydicom raises several types for broken encapsulation
        return f"the encapsulated frames are damaged ({first_line(error)})"
    for number, frame in enumerate(frames):
        if index is not None and number != index:
            continue
        damage = jpeg_damage(frame, syntax in JPEGLSTransferSyntaxes)
        if damage is not None:
            return f"damaged JPEG stream in frame {number + 1}: {damage}"
    return None


def decoded_pixels(ds, path: Path, what: str = "image", index: int | None = None) -> np.ndarray:
    """The stored pixel values of a read dataset, decompressed as its transfer syntax says
    (safe_decoders order): every frame, or only frame `index` (0-based) of a multi-frame file;
    BadInput naming the file and the transfer syntax when the pixel data is missing or no
    installed decoder can read it."""
    from pydicom.pixels import pixel_array

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        from pydicom.uid import UID

        kind = str(UID(sop_class(ds)).name or "").removesuffix(" Storage")
        if kind and "image" not in kind.lower():  # an object that never holds pixels
            raise BadInput(f"{path}: holds no image: a DICOM {kind} object")
        raise BadInput(f"{path}: has no pixel data (is the file cut short?)")
    name = getattr(syntax, "name", None) or "unknown transfer syntax"
    damage = _damaged_jpeg(ds, syntax, index)
    if damage is not None:
        raise BadInput(f"{path}: cannot read the {what}'s pixel data ({name}): {damage}")
    errors = []
    with _native_stderr() as native:  # C decoders (GDCM, OpenJPEG) print their own complaints
        for plugin in safe_decoders().get(syntax, ("",)):
            try:
                if index is not None:
                    return pixel_array(ds, index=index, decoding_plugin=plugin)
                ds.pixel_array_options(decoding_plugin=plugin)
                return ds.pixel_array
            except Exception as error:  # pydicom and its decoders raise many types
                errors.append(error)
    reason = f"{errors[0]} {' '.join(native)}".replace(ALL_PLUGINS_FAILED, "")
    reason = " ".join(reason.split())[:300] or type(errors[0]).__name__
    if syntax == JPEG_EXTENDED:  # 12-bit JPEG, which no installed decoder reads
        reason += "; a copy stored uncompressed is read (e.g. DCMTK's `dcmdjpeg IN OUT`)"
    raise BadInput(f"{path}: cannot read the {what}'s pixel data ({name}): {reason}") from errors[0]


@contextmanager
def _native_stderr():
    """Send what native code writes to file descriptor 2 to a temporary file for the duration;
    yields a list that holds that text once the block has ended. Process-wide: whatever another
    thread writes to stderr meanwhile goes there too (the commands that read DICOMs run one)."""
    import sys
    import tempfile

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (closed by the caller): nothing to keep apart
        yield []
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        text: list[str] = []
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace").strip())
