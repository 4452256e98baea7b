"""Example grids written during training (RUN/examples/epoch_NNN.png): a band of column labels
on top of one row per validation item (input | prediction | target, or a task's own columns).
A task declares its columns and how to draw a row (ExampleSpec); the engine adds the callback
that writes the grid after every validation epoch (example_grids_callback)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


CELL_RANGE = (64, 256)  # px: cells take the largest input side, within this range


@dataclass(frozen=True)
class ExampleSpec:
    """What a task shows in RUN/examples/epoch_NNN.png: one row per validation item, one cell per
    column. rows(module, batch, count) -> up to `count` rows, each a list of len(columns) arrays
    or tensors in [0, 1]: (H, W) grey or (H, W, 3) colour, any size (each is fitted into a
    square cell whose side is the largest side among them, within CELL_RANGE)."""

    columns: tuple[str, ...]
    rows: Callable[[Any, Any, int], list[list[np.ndarray]]]


def _numpy(values) -> np.ndarray:
    """A torch tensor (any device, any float type) or an array -> a float32 numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def display_image(tensor) -> np.ndarray:
    """A network input (C, H, W), however normalised -> (H, W) or (H, W, 3) in [0, 1], each
    channel min-max scaled (a QC picture: the tones, not the values; a grey picture that was
    normalised per channel, as for ImageNet, comes out grey again)."""
    array = _numpy(tensor)
    array = array[:1] if array.shape[0] == 1 else array[:3]
    low = array.min(axis=(1, 2), keepdims=True)
    span = array.max(axis=(1, 2), keepdims=True) - low
    array = np.where(span > 0, (array - low) / np.where(span > 0, span, 1), 0)
    return array[0] if len(array) == 1 else np.moveaxis(array, 0, -1)


def grid_views(grid) -> np.ndarray:
    """An occupancy grid (R, R, R) in [0, 1] -> (2R, 2R): its maximum along each axis (axis 0 top
    left, 1 top right, 2 bottom left; bottom right blank). Prediction and target drawn alike, so
    a shape off in any direction shows in one of the three."""
    grid = _numpy(grid)
    side = grid.shape[0]
    out = np.zeros((2 * side, 2 * side), dtype=np.float32)
    out[:side, :side] = grid.max(axis=0)
    out[:side, side:] = grid.max(axis=1)
    out[side:, :side] = grid.max(axis=2)
    return out


def crop_together(views, margin: int = 2) -> np.ndarray:
    """Views (K, H, W) in [0, 1] that share one frame -> the same views cut to the box holding
    every nonzero pixel of any of them, plus `margin` px (unchanged when all are zero)."""
    views = _numpy(views)
    rows, cols = np.nonzero(views.max(axis=0) > 0)
    if not len(rows):
        return views
    top, left = max(0, rows.min() - margin), max(0, cols.min() - margin)
    return views[:, top : rows.max() + margin + 1, left : cols.max() + margin + 1]


def tile_views(views, columns: int = 4) -> np.ndarray:
    """Several views (K, H, W) in [0, 1] -> one (rows x H, columns x W) mosaic, row by row, the
    empty places black."""
    views = _numpy(views)
    count, height, width = views.shape
    rows = -(-count // columns)
    out = np.zeros((rows * height, columns * width), dtype=np.float32)
    for k, view in enumerate(views):
        r, c = divmod(k, columns)
        out[r * height : (r + 1) * height, c * width : (c + 1) * width] = view
    return out


def _cell(array: np.ndarray, side: int, colour: bool) -> np.ndarray:
    """(H, W) or (H, W, 3) in [0, 1] -> a (side, side[, 3]) uint8 cell: the picture fitted inside
    the square (nearest when enlarged, so voxels stay square), centred on black."""
    from PIL import Image

    array = np.clip(np.nan_to_num(np.asarray(array, dtype=np.float32)), 0, 1)
    if colour and array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    image = Image.fromarray((array * 255 + 0.5).astype(np.uint8))
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    out = np.zeros((side, side, 3) if colour else (side, side), dtype=np.uint8)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    out[top : top + size[1], left : left + size[0]] = np.asarray(image)
    return out


def example_grid(rows: list[list[np.ndarray]], columns: Sequence[str]) -> np.ndarray:
    """Rows of cells (arrays or tensors, any device) -> one 8-bit picture (grey unless a cell
    has colour) under a band naming the columns (label_columns)."""
    if not rows or any(len(row) != len(columns) for row in rows):
        raise ValueError("every example row needs one cell per column")
    cells = [[_numpy(cell) for cell in row] for row in rows]
    side = int(np.clip(max(max(c.shape[:2]) for row in cells for c in row), *CELL_RANGE))
    colour = any(c.ndim == 3 for row in cells for c in row)
    picture = np.concatenate(
        [np.concatenate([_cell(c, side, colour) for c in row], axis=1) for row in cells], axis=0
    )
    return label_columns(picture, columns)


def example_grids_callback(spec: ExampleSpec, count: int):
    """A Lightning callback writing RUN/examples/epoch_NNN.png after each validation epoch (not
    the sanity check), on the first process only. Its rows come from the first validation
    batches, as few from each as fill `count` (validation sets are ordered, so consecutive items
    are often views of one model: spreading the rows shows several)."""
    import torch
    from lightning.pytorch.callbacks import Callback

    from recon.pipelines.common.io import write_png

    class ExampleGrids(Callback):
        def __init__(self) -> None:
            self.rows: list = []

        def on_validation_epoch_start(self, trainer, module) -> None:
            self.rows = []

        def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, *_):
            if trainer.sanity_checking or not trainer.is_global_zero or len(self.rows) >= count:
                return
            batches = trainer.num_val_batches
            total = sum(batches) if isinstance(batches, list | tuple) else batches
            total = int(total) if math.isfinite(total) else count
            each = math.ceil(count / max(1, min(total, count)))
            with torch.no_grad():
                self.rows += spec.rows(module, batch, min(each, count - len(self.rows)))

        def on_validation_epoch_end(self, trainer, module) -> None:
            if trainer.sanity_checking or not self.rows:
                return
            folder = Path(trainer.default_root_dir) / "examples"
            folder.mkdir(parents=True, exist_ok=True)
            picture = example_grid(self.rows[:count], spec.columns)
            write_png(folder / f"epoch_{trainer.current_epoch:03d}.png", picture)
            self.rows = []

    return ExampleGrids()
