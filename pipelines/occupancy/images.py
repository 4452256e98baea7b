"""Photos of one object -> network inputs: any image to RGB, the object's box, square crops.

Shared by the image -> voxel tasks. Crops are square around a box ([x0, y0, x1, y1] pixels,
inclusive) with a 5% margin; outside the image they are filled with the median border colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.io import MIN_SIDE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rgb_image(path: Path) -> np.ndarray:
    """Any readable image -> (H, W, 3) uint8 (recon.pipelines.common.io.read_rgb); BadInput when
    it is smaller than MIN_SIDE pixels."""
    from recon.pipelines.common.io import read_rgb

    rgb = read_rgb(path)
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise BadInput(
            f"{path}: image is {rgb.shape[1]} x {rgb.shape[0]} pixels, "
            f"need at least {MIN_SIDE} x {MIN_SIDE}"
        )
    return rgb


def auto_bbox(rgb: np.ndarray, tolerance: float = 24.0) -> list[int]:
    """[x0, y0, x1, y1] of the pixels that differ from the median border colour; the whole
    image when that finds nothing or almost everything."""
    return object_box(rgb, tolerance)[0]


def object_box(rgb: np.ndarray, tolerance: float = 24.0) -> tuple[list[int], str]:
    """(auto_bbox's box, where it came from: "border colour", or "whole picture" when no
    object stands apart from a plain background and the box is the whole image)."""
    height, width = rgb.shape[:2]
    mask = foreground_mask(rgb, tolerance)
    whole = [0, 0, width - 1, height - 1]
    if mask.sum() < 16 or mask.mean() > 0.95:
        return whole, "whole picture"
    rows, cols = np.nonzero(mask)
    box = [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]
    return box, "whole picture" if box == whole else "border colour"


def foreground_mask(rgb: np.ndarray, tolerance: float = 24.0) -> np.ndarray:
    """(H, W) bool: the pixels that differ from the median border colour by more than tolerance
    in some channel (0-255 levels)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    background = np.median(border, axis=0)
    return np.abs(rgb.astype(np.float32) - background).max(axis=2) > tolerance


def whole_picture_warning(image: str, rgb: np.ndarray) -> str:
    """Why object_box took the whole picture as the box, and what to do, for a `warning:` line:
    a blank picture (no pixel differs from its border colour) has no object at all; any other
    has no plain background around its object."""
    if not foreground_mask(rgb).any():
        return (
            f"{image}: the picture is blank (one colour): no object to crop, so its shape is "
            "the model's guess for an empty picture (check the file)"
        )
    return (
        f"{image}: no plain background around the object, so the whole picture was taken as "
        "its box (training crops to each object's box: crop the picture to the object)"
    )


def square_crop(
    rgb: np.ndarray, bbox, size: int, rng: np.random.Generator | None = None, jitter: float = 0.0
) -> np.ndarray:
    """The square around bbox (+5% margin, jittered with rng), resized to (size, size, 3) uint8;
    parts outside the image are filled with the median border colour."""
    from PIL import Image

    x0, y0, x1, y1 = (float(v) for v in bbox)
    side = max(x1 - x0, y1 - y0) + 1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side *= 1.05
    if rng is not None and jitter > 0:
        cx, cy = cx + rng.uniform(-jitter, jitter) * side, cy + rng.uniform(-jitter, jitter) * side
        side *= 1 + rng.uniform(-jitter, jitter)
    height, width = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(Image.fromarray(rgb))
    left, top = int(np.floor(box[0])), int(np.floor(box[1]))
    right, bottom = int(np.ceil(box[2])), int(np.ceil(box[3]))
    padded = Image.new("RGB", (right - left, bottom - top), fill)
    padded.paste(canvas, (-left, -top))
    return np.asarray(padded.resize((size, size), Image.Resampling.BILINEAR))


def imagenet_tensor(rgb: np.ndarray):
    """(H, W, 3) uint8 -> (3, H, W) float tensor, ImageNet-normalised."""
    import torch

    tensor = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float() / 255
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (tensor - mean) / std


def read_boxes(path: Path) -> dict[str, list]:
    """`predict voxel --boxes FILE`: a JSON object {IMAGE: [x0, y0, x1, y1]}; BadInput naming
    the file when it is not one (each box is judged against its image later)."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import read_json, require_file

    path = require_file(Path(path), "boxes file")
    try:
        doc = read_json(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: not valid JSON ({error})") from error
    if not isinstance(doc, dict) or not doc:
        raise BadInput(f"{path}: expected an object {{IMAGE: [x0, y0, x1, y1], ...}}")
    for name, box in doc.items():
        if not is_box(box):
            raise BadInput(f"{path}: the box of {name!r} is not [x0, y0, x1, y1]: {box!r}")
    return doc


def boxes_of(boxes: dict[str, list], images: list[Path]) -> list[list | None]:
    """Each input's box from read_boxes' mapping, found by the path as given, then by the file
    name; a name that fits no input, or two, and two names for one input are refused (a typo
    would go unnoticed, and one of two boxes be dropped)."""
    from recon.pipelines.common.errors import BadInput

    found: list[list | None] = [None] * len(images)
    keys: list[str | None] = [None] * len(images)
    for key, box in boxes.items():
        exact = [i for i, image in enumerate(images) if str(image) == key]
        named = exact or [i for i, image in enumerate(images) if Path(image).name == key]
        if not named:
            raise BadInput(f"--boxes names {key!r}, which is none of the images given")
        if len(named) > 1:
            raise BadInput(f"--boxes names {key!r}, which fits {len(named)} images: give its path")
        if keys[named[0]] is not None:
            raise BadInput(
                f"--boxes names {images[named[0]]} twice (as {keys[named[0]]!r} and {key!r}); "
                "give each image one box"
            )
        found[named[0]], keys[named[0]] = box, key
    return found


def is_box(value) -> bool:
    """Whether value is four numbers [x0, y0, x1, y1] (a bbox's form, before its image)."""
    number = lambda v: isinstance(v, int | float) and not isinstance(v, bool)  # noqa: E731
    return isinstance(value, list | tuple) and len(value) == 4 and all(map(number, value))
