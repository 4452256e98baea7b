"""Reading and writing meshes and images, with one clear error per bad file.

Conventions: meshes are trimesh.Trimesh in the file's own units; depth images are 16-bit
PNG, masks and photos 8-bit PNG; every write goes through a temporary file.
"""

from __future__ import annotations

import dataclasses
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput, first_line
from recon.pipelines.common.outputs import atomic_file

MESH_SUFFIXES = (".stl", ".ply", ".obj", ".glb", ".gltf", ".off")
# Picture files every image reader takes (photos, X-ray films, model inputs); DICOM is read apart.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MIN_SIDE = 8  # the smallest image side, pixels, that a model takes as its input


def require_file(path: Path, what: str = "file") -> Path:
    """Return path as a Path, or raise BadInput naming it when it is missing or not a file."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such {what}")
    if path.is_dir():
        raise BadInput(f"{path}: is a folder, not {_a_file(what)}")
    if not path.is_file():
        raise BadInput(f"{path}: is not a file")
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: {what} is empty")
    return path


def _a_file(what: str) -> str:
    """'a file', 'a mesh file' for what='mesh', and 'a fiducials file' for what='fiducials file'."""
    return f"a {what}" if what == "file" or what.endswith(" file") else f"a {what} file"


def read_json(path: Path):
    """The JSON document in path (a leading BOM allowed, as Windows tools write one). A key
    named twice in one object is a ValueError, as bad JSON is: json.loads would keep the later
    value unsaid. OSError and UnicodeDecodeError pass through for the caller to name."""
    import json

    def unique(pairs: list) -> dict:
        found = dict(pairs)
        if len(found) < len(pairs):
            seen: set = set()
            twice = next(key for key, _ in pairs if key in seen or seen.add(key))
            raise ValueError(f"the key {twice!r} is given twice in one object")
        return found

    return json.loads(Path(path).read_text(encoding="utf-8-sig"), object_pairs_hook=unique)


def require_dir(path: Path, what: str = "folder") -> Path:
    """Return path as a Path, or raise BadInput when it is missing or not a folder."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such {what}")
    if not path.is_dir():
        raise BadInput(f"{path}: is not a folder")
    return path


# glTF is y up by its specification; the meshes here are z up. (x, y, z) -> (x, z, -y) going
# out to a .glb/.gltf, and back coming in, as Blender's glTF exporter and importer do.
GLTF_SUFFIXES = (".glb", ".gltf")
Z_UP_TO_Y_UP = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


# trimesh merges vertices by rounding to 1e-8 and counting in int64: past about 9e10 that
# overflows and every vertex merges into one ("degenerate")
MAX_COORDINATE = 1e10


def load_mesh(path: Path, file_axes: bool = False):
    """Read a triangle mesh (STL/PLY/OBJ/GLB/GLTF/OFF); scenes are merged into one mesh; a
    glTF's y-up frame is turned to z up (Z_UP_TO_Y_UP) unless file_axes (the coordinates as
    the file stores them)."""
    import trimesh

    path = require_file(path, "mesh")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise BadInput(f"{path}: not a mesh file (expected {', '.join(MESH_SUFFIXES)})")
    source = _counted_binary_stl(path) if suffix == ".stl" else None
    # processed after the checks: processing drops NaN vertices and their faces unsaid; a
    # reader's normals of huge coordinates overflow (refused below, without numpy's warnings)
    try:
        with np.errstate(all="ignore"):
            if source is None:
                mesh = trimesh.load(path, force="mesh", process=False)
            else:
                mesh = trimesh.load(source, file_type="stl", force="mesh", process=False)
    except Exception as error:  # trimesh raises many types for corrupt files
        raise BadInput(f"{path}: cannot read mesh ({first_line(error)})") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise BadInput(f"{path}: mesh has no faces")
    if not np.isfinite(mesh.vertices).all():
        raise BadInput(f"{path}: mesh has non-finite vertex coordinates")
    reach = float(np.abs(mesh.vertices).max())
    if reach > MAX_COORDINATE:
        raise BadInput(
            f"{path}: coordinates reach {reach:.3g}, beyond the {MAX_COORDINATE:g} a mesh may "
            "span (its vertices are merged on a 1e-8 grid): scale it to larger units"
        )
    mesh.process()
    if np.ptp(mesh.vertices, axis=0).max() <= 0:
        raise BadInput(f"{path}: mesh is degenerate (all vertices coincide)")
    if not mesh.area > 0:
        raise BadInput(
            f"{path}: mesh is degenerate (no face has any area: the corners of each lie on a line)"
        )
    if suffix in GLTF_SUFFIXES and not file_axes:
        mesh.apply_transform(np.linalg.inv(Z_UP_TO_Y_UP))
    return mesh


def mesh_file_axes(path: Path) -> np.ndarray | None:
    """The 3x3 rotation taking load_mesh's coordinates of `path` back to the axes its file
    stores them in (Z_UP_TO_Y_UP's for a glTF); None where load_mesh keeps the file's axes."""
    return Z_UP_TO_Y_UP[:3, :3].copy() if Path(path).suffix.lower() in GLTF_SUFFIXES else None


def _counted_binary_stl(path: Path):
    """None for an ASCII STL or a binary one whose length holds the triangles its header counts
    (a shorter file was truncated: BadInput). A binary STL whose count is 0 although whole
    50-byte triangles follow (a streaming exporter that never went back to fill it in) comes
    back as its bytes with the count the length gives, for trimesh, which reads by the count."""
    import io

    with path.open("rb") as handle:
        head = handle.read(84)
    if head[:5].lower() == b"solid" and b"\0" not in head[5:80]:
        return None  # ASCII STL
    if len(head) < 84:
        raise BadInput(f"{path}: truncated STL (header is {len(head)} of 84 bytes)")
    (count,) = struct.unpack("<I", head[80:84])
    expected = 84 + 50 * count
    size = path.stat().st_size
    if size < expected:
        raise BadInput(f"{path}: truncated STL ({size} bytes, {count} triangles need {expected})")
    if count or size == 84:
        return None
    if (size - 84) % 50:
        raise BadInput(
            f"{path}: a binary STL whose header counts 0 triangles, followed by {size - 84} "
            "bytes: not a whole number of 50-byte triangles"
        )
    data = bytearray(path.read_bytes())
    data[80:84] = struct.pack("<I", (size - 84) // 50)
    return io.BytesIO(bytes(data))


def save_mesh(mesh, path: Path) -> Path:
    """Write a trimesh mesh atomically; the format follows the suffix (a glTF y up, as its
    specification says: Z_UP_TO_Y_UP)."""
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise BadInput(f"{path}: unsupported mesh format (use {', '.join(MESH_SUFFIXES)})")
    if path.suffix.lower() in GLTF_SUFFIXES:
        mesh = mesh.copy()
        mesh.apply_transform(Z_UP_TO_Y_UP)
    with atomic_file(path) as tmp:
        mesh.export(tmp)
    return path


MAX_PIXELS = 1 << 27  # 134 M pixels (about 11600 x 11600); larger images are refused unread


def open_image(path: Path):
    """Open an image lazily with PIL (pixels not decoded yet); BadInput when the file is not an
    image or claims more than MAX_PIXELS pixels. Use as a context manager."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = require_file(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise BadInput(f"{path}: image is too large ({first_line(error)})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if is_tiff(path):
            raise UndecodedTiff(f"{path}: not a readable image ({first_line(error)})") from error
        raise BadInput(f"{path}: not a readable image ({first_line(error)})") from error
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise BadInput(
            f"{path}: image claims {width} x {height} pixels, more than the {MAX_PIXELS} allowed"
        )
    return image


class UndecodedTiff(BadInput):
    """A TIFF Pillow does not open. read_image then reads it with tifffile if it holds
    floating-point samples (16- or 64-bit, RGB floats: _read_tiff), else says why not."""


TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders


def is_tiff(path: Path) -> bool:
    """Whether the file starts as a TIFF (classic or BigTIFF)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in TIFF_MAGIC
    except OSError:
        return False


def _tiff_page(tif, path: Path, one_frame: bool, integers: bool):
    """The first page of an open tifffile.TiffFile, if it holds samples that read_image can use:
    floating point, or with `integers` also 8-, 16- or 32-bit integers (BadInput otherwise, for
    the reason); grey (WhiteIsZero or BlackIsZero) or RGB(A), stored uncompressed or in a
    compression tifffile decodes by itself (Deflate, PackBits)."""
    from tifffile import TIFF

    pages = len(tif.pages)
    if not pages:
        raise BadInput(f"{path}: not a readable image (a TIFF that holds no image)")
    if one_frame and pages > 1:
        raise BadInput(
            f"{path}: holds {pages} images (a stack or an animation); give one X-ray per file"
        )
    page = tif.pages[0]
    whole = page.sampleformat in (1, 2) and page.bitspersample in (8, 16, 32)
    if page.sampleformat != 3 and not (integers and whole):  # 3: IEEE floating point
        raise BadInput(
            f"{path}: not a readable image (a TIFF of {page.dtype} samples, Photometric "
            f"Interpretation {int(page.photometric)}, that Pillow cannot decode)"
        )
    if page.compression not in TIFF.DECOMPRESSORS:  # LZW, JPEG: imagecodecs's, not installed
        what = (
            "stored a quarter turn" if integers else "of float samples, which Pillow cannot open,"
        )
        raise BadInput(
            f"{path}: a TIFF {what} compressed with {page.compression.name}; save it "
            f"{'upright (Orientation 1), or ' if integers else ''}uncompressed or with Deflate"
        )
    samples = page.samplesperpixel
    grey = page.photometric in (0, 1) and samples == 1  # WhiteIsZero or BlackIsZero
    if not grey and not (page.photometric == 2 and samples in (3, 4)):  # RGB(A)
        raise BadInput(
            f"{path}: a TIFF of {samples} samples per pixel with photometric "
            f"{int(page.photometric)}{' stored a quarter turn' if integers else ''}; save it as "
            f"grey or RGB{' upright (Orientation 1)' if integers else ''}"
        )
    if page.imagewidth * page.imagelength > MAX_PIXELS:
        raise BadInput(
            f"{path}: image claims {page.imagewidth} x {page.imagelength} pixels, more than the "
            f"{MAX_PIXELS} allowed"
        )
    return page


@contextmanager
def _tiff(path: Path, one_frame: bool, integers: bool = False):
    """The first page (tifffile's) of a TIFF read without Pillow, checked by _tiff_page;
    tifffile's errors while it is open become one BadInput, and its logger's warnings on a
    damaged file (`contains no pages`) stay off stderr."""
    import logging

    import tifffile

    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            yield _tiff_page(tif, path, one_frame, integers)
    except BadInput:
        raise
    except Exception as error:  # noqa: BLE001 - tifffile raises many types for damaged files
        raise BadInput(f"{path}: not a readable image ({first_line(error)})") from error
    finally:
        logger.setLevel(level)


def _read_tiff(path: Path, one_frame: bool, integers: bool = False) -> tuple[np.ndarray, bool]:
    """The first image of a TIFF read by tifffile (a floating-point one Pillow does not open: 64-
    or 16-bit samples, RGB floats; with `integers`, one Pillow would turn wrongly), stored
    pixel-interleaved or planar, (H, W) or (H, W, C), turned upright as its Orientation says;
    floats as float32, integers as stored. And whether the samples run white to black
    (WhiteIsZero: _black_is_zero inverts them)."""
    with _tiff(path, one_frame, integers) as page:
        array = page.asarray()
        if page.samplesperpixel > 1 and page.planarconfig == 2:  # planes: (C, H, W)
            array = np.moveaxis(array, 0, -1)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        array = UPRIGHT_ARRAY[_tiff_page_orientation(page)](array)
        inverted = page.photometric == WHITE_IS_ZERO
    return np.ascontiguousarray(array), inverted


def _tifffile_pixels(path: Path, one_frame: bool, stated: SampleFormat, integers: bool = False):
    """_read_pixels's answer for a TIFF read by tifffile (_read_tiff): its pixels, WhiteIsZero
    ones inverted by _black_is_zero as Pillow's are, and the sample format (stated, with
    white_is_zero as the file says)."""
    array, inverted = _read_tiff(path, one_frame, integers)
    stated = dataclasses.replace(stated, white_is_zero=inverted)
    return _black_is_zero(array, stated, path), stated


def _tiff_page_orientation(page) -> int:
    """The Orientation tag of a tifffile page; 1 (upright) when absent or none of EXIF's 1-8,
    as exif_orientation takes it for the images Pillow opens."""
    value = getattr(page.tags.get(EXIF_ORIENTATION), "value", 1)
    return value if isinstance(value, int) and value in UPRIGHT_ARRAY else 1


# The upright picture (rows top to bottom, columns left to right) from pixels stored as each
# EXIF Orientation value says ("the 0th row is the visual top/right/bottom/left ..."): tifffile
# hands over the stored pixels, so each is an exact turn or mirror of the array.
UPRIGHT_ARRAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a[:, ::-1], -1),
    8: lambda a: np.rot90(a, 1),
}


def picture_size(path: Path) -> tuple[int, int]:
    """(width, height) of a picture as read_image returns it, without decoding its pixels."""
    try:
        with open_image(path) as image:
            if not _turned_tiff(image):
                return upright_size(image)
        integers = True
    except UndecodedTiff:
        integers = False
    with _tiff(path, False, integers) as page:
        width, length = int(page.imagewidth), int(page.imagelength)
        return (length, width) if _tiff_page_orientation(page) in TURNED else (width, length)


def picture_orientation(path: Path) -> int:
    """The EXIF Orientation (1-8) read_image applied to a picture; 1 when it is stored upright
    or states none."""
    try:
        with open_image(path) as image:
            value = exif_orientation(image)
            return value if value in UPRIGHT_ARRAY else 1
    except UndecodedTiff:
        with _tiff(path, False) as page:
            return _tiff_page_orientation(page)


EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how a viewer turns the stored pixels
TURNED = (5, 6, 7, 8)  # its values that swap width and height (a quarter turn)


@dataclass(frozen=True)
class SampleFormat:
    """What a file states of its integer samples; None where it says nothing."""

    bits: int | None = None  # bits per sample (TIFF BitsPerSample)
    signed: bool = False  # two's complement (TIFF SampleFormat 2)
    maximum: float | None = None  # the value of white (TIFF MaxSampleValue, SMaxSampleValue)
    # samples that run white to black (TIFF Photometric 0, WhiteIsZero, as some X-ray exports
    # write them) which Pillow hands over as stored: it inverts 1- and 8-bit grey only
    white_is_zero: bool = False


TIFF_BITS, TIFF_FORMAT, TIFF_MAX, TIFF_SIGNED_MAX = 258, 339, 281, 341  # TIFF 6.0 tag numbers
TIFF_PHOTOMETRIC, WHITE_IS_ZERO = 262, 0


def stated_sample_format(image) -> SampleFormat:
    """The SampleFormat an open PIL image's TIFF tags state (empty for other formats or
    damaged tags)."""
    tags = getattr(image, "tag_v2", None)
    if image.format != "TIFF" or tags is None:
        return SampleFormat()
    try:
        bits = _largest(tags.get(TIFF_BITS))
        signed = _largest(tags.get(TIFF_FORMAT)) == 2
        maximum = _largest(tags.get(TIFF_SIGNED_MAX if signed else TIFF_MAX))
        inverted = tags.get(TIFF_PHOTOMETRIC) == WHITE_IS_ZERO and image.mode not in ("1", "L")
    except (TypeError, ValueError):
        return SampleFormat()
    return SampleFormat(
        None if bits is None else int(bits),
        signed,
        None if maximum is None or not maximum > 0 else float(maximum),
        inverted,
    )


def _largest(value) -> float | None:
    """A tag's value, or the largest of its per-sample values; None when absent."""
    if value is None:
        return None
    values = value if isinstance(value, tuple | list) else (value,)
    return max(float(v) for v in values) if values else None


def read_image(path: Path, one_frame: bool = False) -> np.ndarray:
    """Read an image file into an array, keeping its bit depth ((H, W) or (H, W, C)), upright:
    turned as its EXIF Orientation says (a phone photo stored sideways), as viewers show it.
    Colours are values, never codes: a palette image comes back RGB (RGBA when it has a
    transparent entry), CMYK, YCbCr, LAB and HSV come back RGB; a floating-point TIFF Pillow
    does not open (16- or 64-bit samples, RGB floats) is read by tifffile, as float32. A
    multi-frame file (a TIFF stack, an animation) gives its first frame, or with one_frame=True
    (an X-ray, where a stack is a sequence of exposures) BadInput."""
    return _read_pixels(path, one_frame)[0]


def _read_pixels(path: Path, one_frame: bool = False) -> tuple[np.ndarray, SampleFormat]:
    """read_image's array, and the sample format the file states (a TIFF's tags)."""
    import warnings

    from PIL import Image

    path = Path(path)
    try:
        opened = open_image(path)
    except UndecodedTiff:
        return _tifffile_pixels(path, one_frame, SampleFormat())
    with opened as image:
        if _turned_tiff(image):
            return _tifffile_pixels(path, one_frame, stated_sample_format(image), integers=True)
        frames = int(getattr(image, "n_frames", 1) or 1)
        if one_frame and frames > 1 and image.format != "MPO":  # MPO: a JPEG + its previews
            raise BadInput(
                f"{path}: holds {frames} images (a stack or an animation); give one X-ray per file"
            )
        stated = stated_sample_format(image)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
                array = _signed_bytes(np.asarray(_as_values(upright(image))), stated)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise BadInput(f"{path}: not a readable image ({first_line(error)})") from error
    return _black_is_zero(array, stated, path), stated


def _black_is_zero(array: np.ndarray, stated: SampleFormat, path: Path) -> np.ndarray:
    """The samples of a WhiteIsZero TIFF that Pillow or tifffile left as stored
    (stated.white_is_zero) inverted to run black to white, as every reader takes them: unsigned
    integers from the white their type or tags give (integer_range), floats in [0, 1] as
    1 - value. Others are refused."""
    if not stated.white_is_zero:
        return array
    if array.ndim != 2:
        raise BadInput(f"{path}: a WhiteIsZero TIFF that is not one grey channel {array.shape}")
    if array.dtype.kind == "f":
        return 1.0 - array
    if array.dtype.kind == "u":
        white = integer_range(array, stated)[1]
        if float(array.max()) > white:
            raise BadInput(f"{path}: WhiteIsZero samples above the file's white ({white:g})")
        return (white - array.astype(np.float64)).astype(array.dtype)
    raise BadInput(
        f"{path}: a WhiteIsZero TIFF of {array.dtype} samples; save it as BlackIsZero "
        "(Photometric Interpretation 1)"
    )


def _signed_bytes(array: np.ndarray, stated: SampleFormat) -> np.ndarray:
    """The array as int8 where the file states signed 8-bit samples (a TIFF's SampleFormat 2),
    which Pillow hands over as unsigned bytes: -1 would read as 255, white."""
    if stated.signed and stated.bits == 8 and array.dtype == np.uint8:
        return array.view(np.int8)
    return array


def grey_pixels(array: np.ndarray) -> np.ndarray:
    """The (H, W) grey of an image array from read_image: grey as it is, the grey channel of
    grey + alpha, the mean of the colour channels (float32) of RGB(A)."""
    if array.ndim == 3 and array.shape[2] == 2:
        return array[..., 0]
    if array.ndim == 3:
        return array[..., :3].astype(np.float32).mean(axis=2)
    return array


def read_rgb(path: Path) -> np.ndarray:
    """Any readable image as an (H, W, 3) uint8 photo: grey replicated, alpha composited on white,
    integers wider than 8 bits scaled from their range (integer_range: 16-bit by 1/257), a float
    image in [0, 1] scaled by 255 (BadInput for floats outside it, whose scale recon cannot
    know), upright as read_image reads it."""
    array, stated = rgb_samples(path)
    if array.dtype == np.int32 and stated.bits == 32 and not stated.signed:
        array = array.view(np.uint32)  # Pillow holds unsigned 32-bit samples as int32
    if array.dtype.kind == "f":
        values = array.astype(np.float32) * 255.0  # in [0, 1]: rgb_samples checked it
    elif array.dtype == bool:
        values = array * 255.0
    elif array.dtype.itemsize > 1 or array.dtype == np.int8:
        black, white = integer_range(array, stated)
        values = (array - black) * (255.0 / (white - black))
    else:
        values = array.astype(np.float32)
    alpha = None
    if array.shape[2] in (2, 4):
        alpha, values = values[..., -1:] / 255.0, values[..., :-1]
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    if alpha is not None:
        values = values * alpha + 255.0 * (1 - alpha)
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def rgb_samples(path: Path) -> tuple[np.ndarray, SampleFormat]:
    """The pixels read_rgb converts, (H, W, C) at their own bit depth with C in 1..4, and the
    sample format the file states; BadInput for what read_rgb refuses: another layout, a float
    image with values outside [0, 1] or not finite. No copy of the whole picture in floats (a
    check at upload calls it on pictures of up to 40 M pixels)."""
    array, stated = _read_pixels(path)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise BadInput(f"{path}: unsupported image layout {array.shape}")
    if array.dtype.kind == "f":  # judged as read_rgb reads it, in float32
        float_intensities(array.astype(np.float32, copy=False), path)
    return array, stated


def float_intensities(values: np.ndarray, path: Path) -> np.ndarray:
    """A float image's values as [0, 1] intensities: they must already lie there (a float TIFF
    of another scale, raw detector counts or HU, has no scale recon could know), all finite."""
    unread = int(values.size - np.isfinite(values).sum())
    if unread:
        problem = f"has NaN or infinite values ({unread} of {values.size})"
    else:
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:
            return values
        problem = f"values span [{low:.4g}, {high:.4g}]"
    raise BadInput(
        f"{path}: float image {problem}; float images are read as intensities in [0, 1] "
        "(save it as 8- or 16-bit, or scale it to [0, 1])"
    )


def integer_range(array: np.ndarray, stated: SampleFormat) -> tuple[float, float]:
    """(black, white): the values an integer image's darkest and brightest intensity stand for.
    White is the maximum the file states (a TIFF's MaxSampleValue: 4095 for 12-bit samples in
    16-bit words), else the top of its type up to 16 bits (65535; 32767 signed), else, for
    wider samples (a 32-bit TIFF says nothing of its scale), the 8- or 16-bit top that holds
    its values (what a conversion from those leaves), else its own maximum. Black is 0, or the
    lowest value when some are negative."""
    black = min(0.0, float(array.min()))
    bits = stated.bits or 8 * array.dtype.itemsize
    if stated.maximum is not None:
        white = stated.maximum
    elif bits <= 16:
        white = float(2 ** (bits - 1) - 1 if stated.signed else 2**bits - 1)
    else:
        top = float(array.max())
        white = next((float(s) for s in (2**8 - 1, 2**16 - 1) if top <= s), top)
    return black, max(white, black + 1.0)


def _as_values(image):
    """A PIL image whose pixels are palette indices or another colour space, as RGB(A)."""
    if image.mode in ("P", "PA"):
        transparent = image.mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if transparent else "RGB")
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    return image


def upright(image):
    """A PIL image turned and mirrored as its EXIF Orientation tag says (values 2-8), else the
    image itself (read_image reads a TIFF stored a quarter turn with tifffile instead: Pillow
    turns some of those while reading and scrambles others, uncompressed grey)."""
    from PIL import ImageOps

    if exif_orientation(image) in range(2, 9):
        return ImageOps.exif_transpose(image)
    return image


def _turned_tiff(image) -> bool:
    """Whether an open PIL image is a TIFF stored a quarter turn (Orientation 5-8): Pillow turns
    some of those itself while reading (and swaps their size) and scrambles others
    (uncompressed grey), so read_image and picture_size read them with tifffile instead."""
    return image.format == "TIFF" and exif_orientation(image) in TURNED


def exif_orientation(image) -> int:
    """The EXIF Orientation of an open PIL image (1, upright, when absent or unreadable)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, TypeError):  # a damaged EXIF block
        return 1
    return int(value) if isinstance(value, int) else 1


def upright_size(image) -> tuple[int, int]:
    """(width, height) of an open PIL image as read_image returns it (after EXIF Orientation)."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in TURNED else (width, height)


def write_png(path: Path, array: np.ndarray, compress_level: int = 6) -> Path:
    """Write a uint8 or uint16 array, (H, W) or (H, W, 3|4), as PNG, atomically.

    compress_level: zlib's 0-9; 6 (Pillow's default) for data, 1 for a large picture only people
    look at (an RGB film overlay: about 7 times faster to write, about 8% larger)."""
    from PIL import Image

    array = np.ascontiguousarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png takes uint8 or uint16, not {array.dtype}")
    if array.dtype == np.uint16 and array.ndim != 2:
        raise ValueError("16-bit PNG must be single-channel")
    image = Image.fromarray(array)
    with atomic_file(Path(path)) as tmp:
        image.save(tmp, format="PNG", compress_level=compress_level)
    return Path(path)
