"""Receiving an upload safely: the size is checked from Content-Length and again while the body
streams in (nothing is read whole), a body that stops arriving is given up, the file goes to a
generated name, and its content, decoded
by PIL under a pixel limit and then read as the served tasks read pictures, decides whether it
is an image a job can use."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # the image file itself
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, part headers and the small fields
MAX_FIELD_BYTES = 1024
MAX_PIXELS = 40_000_000  # decoded image size limit (e.g. 8000 x 5000)
# seconds without a byte of the body before an upload is given up (408), as nginx's
# client_body_timeout: uvicorn has no such limit, and a client that stops sending held its
# half-written upload and a file descriptor for ever
UPLOAD_IDLE_S = 60.0
IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp"}
# what Pillow's openers of those formats may call a file: a phone's multi-picture JPEG is "MPO"
FORMAT_SUFFIXES = {**IMAGE_FORMATS, "MPO": "jpg"}
FILE_FIELD = "image"


class UploadError(Exception):
    """A rejected request: an HTTP status and one line for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # the received bytes, at a generated path
    filename: str | None = None  # as sent; for display only
    size: int = 0
    other_files: list[str] = field(default_factory=list)  # fields that carried a file, unread


def too_large(max_bytes: int) -> UploadError:
    return UploadError(413, f"the file is larger than {max_bytes // (1024 * 1024)} MB")


class _FormReceiver:
    """python-multipart callbacks: one file part to `target`, small text fields to memory."""

    def __init__(self, target: Path, max_bytes: int) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.upload = Upload()
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header = [b"", b""]
        self._part: tuple[str, str | None] | None = None
        self._handle = None
        self._value = bytearray()
        self._discard = False  # the current part is a file outside FILE_FIELD

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
            "on_end": lambda: setattr(self, "ended", True),
        }

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _part_begin(self) -> None:
        self._headers, self._header, self._value = {}, [b"", b""], bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]
        if len(self._header[0]) > MAX_FIELD_BYTES:
            raise UploadError(400, "malformed multipart body: a part header is too long")

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]
        if len(self._header[1]) > MAX_FIELD_BYTES:
            raise UploadError(400, "malformed multipart body: a part header is too long")

    def _header_end(self) -> None:
        self._headers[self._header[0].strip().lower()] = self._header[1].strip()
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        kind, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if kind != b"form-data" or b"name" not in options:
            raise UploadError(400, "malformed multipart body: a part has no form-data name")
        name = options[b"name"].decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._part = (name, None if filename is None else filename.decode("utf-8", "replace"))
        self._discard = False
        if name == FILE_FIELD and filename is not None:  # without a file name: text
            if self.upload.file is not None:
                raise UploadError(400, f"send one file in the {FILE_FIELD!r} field, not several")
            self.upload.file = self.target
            self.upload.filename = self._part[1]
            self._handle = self.target.open("xb")
        elif filename is not None:  # a file under another name: its bytes are not kept
            self.upload.other_files.append(name)
            self._discard = True
        elif name in self.upload.fields:  # not the last of them taken silently
            raise UploadError(400, f"send one {name!r} field, not several")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._handle is not None:
            self.upload.size += end - start
            if self.upload.size > self.max_bytes:
                raise too_large(self.max_bytes)
            self._handle.write(data[start:end])
        elif not self._discard:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise UploadError(400, f"form field {self._part[0]!r} is too long")

    def _part_end(self) -> None:
        name, _ = self._part
        if self._handle is not None:
            self.close()
        elif not self._discard:
            self.upload.fields[name] = self._value.decode("utf-8", "replace")


async def receive_upload(
    request, target: Path, max_bytes: int = MAX_UPLOAD_BYTES, idle_s: float = UPLOAD_IDLE_S
) -> Upload:
    """Stream a multipart/form-data body; the file part is written to target. UploadError for
    a body that is too large (413), not multipart (415) or malformed (400), or that stops
    arriving for idle_s seconds (408); target is removed on any error."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    body_limit = max_bytes + FORM_OVERHEAD_BYTES
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise UploadError(400, "Content-Length is not a number")
        if int(length) > body_limit:
            raise too_large(max_bytes)
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(
            415, f"send multipart/form-data with an {FILE_FIELD!r} file and a 'task' field"
        )
    receiver = _FormReceiver(target, max_bytes)
    parser = MultipartParser(options[b"boundary"], receiver.callbacks())
    received = 0
    chunks = request.stream()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(chunks), idle_s)
            except StopAsyncIteration:
                break
            except TimeoutError as error:
                raise UploadError(
                    408, f"the upload stalled: nothing arrived for {idle_s:g} s; send it again"
                ) from error
            received += len(chunk)
            if received > body_limit:
                raise too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
        if not receiver.ended:
            raise UploadError(400, "malformed multipart body: it ends before its closing boundary")
    except MultipartParseError as error:
        receiver.close()
        target.unlink(missing_ok=True)
        raise UploadError(
            400, f"malformed multipart body ({str(error).splitlines()[0]})"
        ) from error
    except BaseException:
        receiver.close()
        target.unlink(missing_ok=True)
        raise
    return receiver.upload


def check_image(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """(file suffix for its format, width, height) of an image file, decoded in full to prove it
    (once, as the tasks read it: _require_task_reads); UploadError 415 when it is not one or
    the tasks cannot use it, 413 when it has more than max_pixels pixels."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:  # a cloud placeholder, a failed export: say so, not "not an image"
        raise UploadError(415, "the file is empty (0 bytes)")
    formats = list(IMAGE_FORMATS)
    not_image = UploadError(
        415, "the file is not an image this server reads (PNG, JPEG, BMP, TIFF or WebP)"
    )
    kind = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=formats) as image:
                width, height = image.size
                kind = image.format
                if width * height > max_pixels:
                    raise UploadError(
                        413,
                        f"the image is {width} x {height} pixels; at most {max_pixels} are allowed",
                    )
                image.verify()  # the file's structure (a PNG's checksums); pixels below
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UploadError(413, f"the image has too many pixels (at most {max_pixels})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        if kind is None:
            return _tiff_pillow_cannot_open(path, max_pixels, not_image, error)
        raise _damaged(kind) from error
    if width < 1 or height < 1 or kind not in FORMAT_SUFFIXES:
        raise not_image
    _require_min_side(width, height)
    _require_task_reads(path, kind)
    return FORMAT_SUFFIXES[kind], width, height


def _damaged(kind: str) -> UploadError:
    """The refusal of a file whose header reads and whose pixels do not: cut short or damaged."""
    return UploadError(415, f"the {kind} file is damaged or cut short: its pixels cannot be read")


def _require_task_reads(path: Path, kind: str, pillow_opens: bool = True) -> None:
    """UploadError 415 for a picture the served tasks' reader (read_rgb) refuses: one whose
    pixels do not decode, a float TIFF whose values leave [0, 1], a TIFF stored a quarter turn
    with a compression recon does not decode. Such a job was queued and failed later.

    The pixels are decoded once, as read_rgb reads them, and held to its own refusals
    (rgb_samples: the layout, a float's range) without its conversion of the whole picture to
    floats: a 131 kB PNG of 40 M pixels cost 1.6 GB that way. A refused
    picture that Pillow opens is decoded again by Pillow alone, to tell a damaged file from one
    the tasks cannot use."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import rgb_samples

    try:
        rgb_samples(path)
    except BadInput as refused:
        if pillow_opens and not _pillow_decodes(path):
            raise _damaged(kind) from refused
        reason = str(refused).removeprefix(f"{path}: ")
        raise UploadError(415, f"the {kind} file cannot be used: {reason}") from refused


def _pillow_decodes(path: Path) -> bool:
    """Whether Pillow decodes the whole picture (its first frame)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=list(IMAGE_FORMATS)) as image:
                image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return False
    return True


def _require_min_side(width: int, height: int) -> None:
    """UploadError 422 for a picture smaller than every task reads (MIN_SIDE a side): the job
    was queued and failed later, where `recon predict` refuses it at once."""
    from recon.pipelines.common.io import MIN_SIDE

    if min(width, height) < MIN_SIDE:
        raise UploadError(
            422,
            f"the image is {width} x {height} pixels; at least {MIN_SIDE} x {MIN_SIDE} are needed",
        )


def _tiff_pillow_cannot_open(path: Path, max_pixels: int, not_image: UploadError, error: Exception):
    """check_image's answer for a file Pillow does not open: a floating-point TIFF the picture
    readers take through tifffile (recon.pipelines.common.io), decoded in full; else not_image."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import is_tiff, picture_size

    if not is_tiff(path):
        raise not_image from error
    try:
        width, height = picture_size(path)
    except BadInput as refused:
        reason = str(refused).removeprefix(f"{path}: ")
        raise UploadError(415, f"the TIFF file cannot be used: {reason}") from refused
    if width * height > max_pixels:
        raise UploadError(
            413, f"the image is {width} x {height} pixels; at most {max_pixels} are allowed"
        )
    _require_min_side(width, height)
    _require_task_reads(path, "TIFF", pillow_opens=False)  # decoded in full
    return "tif", width, height
