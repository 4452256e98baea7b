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


def object_box(rgb: np.ndarray, tolerance: float = 24.0) -> tuple[list[int], bool]:
    """(auto_bbox's box, whether it found an object apart from a plain background: False when
    the box is the whole image, found so or fallen back to)."""
    height, width = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    background = np.median(border, axis=0)
    mask = np.abs(rgb.astype(np.float32) - background).max(axis=2) > tolerance
    if mask.sum() < 16 or mask.mean() > 0.95:
        return [0, 0, width - 1, height - 1], False
    rows, cols = np.nonzero(mask)
    box = [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]
    return box, box != [0, 0, width - 1, height - 1]


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
