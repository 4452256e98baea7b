"""Example grids written during training (RUN/examples/*.png): a band of column labels on top."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MIN_COLUMN = 96  # px: narrower columns are enlarged (nearest) so that their labels fit


def label_columns(image: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """An 8-bit image (H, W) or (H, W, 3) of len(labels) equal-width columns -> the same image
    (enlarged by a whole factor, nearest, when a column is under MIN_COLUMN px) below a black
    band with each label centred, in white, over its column."""
    from PIL import Image, ImageDraw, ImageFont

    image = np.asarray(image, dtype=np.uint8)
    factor = max(1, math.ceil(MIN_COLUMN * len(labels) / image.shape[1]))
    if factor > 1:
        image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    width = image.shape[1]
    column = width / len(labels)
    size = int(np.clip(column / 6, 10, 24))
    font = ImageFont.load_default(size=size)
    while size > 6 and max(font.getlength(t) for t in labels) > 0.95 * column:
        size -= 1
        font = ImageFont.load_default(size=size)
    band_height = int(size * 1.6)
    band = Image.new("L", (width, band_height), 0)
    draw = ImageDraw.Draw(band)
    for k, label in enumerate(labels):
        draw.text(((k + 0.5) * column, band_height / 2), label, fill=255, font=font, anchor="mm")
    top = np.asarray(band)
    if image.ndim == 3:
        top = np.repeat(top[..., None], image.shape[2], axis=2)
    return np.concatenate([top, image], axis=0)
