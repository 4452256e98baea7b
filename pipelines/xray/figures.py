"""The quality-control figure of `recon register`, and the edge maps it draws.

One PNG per X-ray, three panels side by side, each scaled (bilinear) so that its long side is
PANEL_PX pixels whatever the detector size: the X-ray; the X-ray with the edges of the DRR at
the initial pose and at the final pose drawn over it in two colours; a checkerboard of X-ray
and final DRR tiles (edges that run on across tile borders mean a good match). Titles above
carry the similarity, the found pose and, when a truth was given, the errors.

Edges (`edge_map`, Canny-like): the image scaled to [0, 1] and blurred (EDGE_SIGMA px at the
X-ray's own size), Sobel gradient magnitude thinned to ridges one pixel wide, kept above the
EDGE_QUANTILE quantile of the magnitude and followed along ridges down to a lower quantile, so
every map holds a similar share of pixels whatever the contrast. `edge_agreement` scores how
many of a DRR's edges fall on the X-ray's: a check that the drawn edges mean something.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PANEL_PX = 480  # long side of each panel, px
GAP_PX = 12  # between and around panels, px
LINE_PX = 20  # height of one title line, px
DPI = 100
EDGE_SIGMA = 1.0  # Gaussian blur before the gradient, px of the native image
EDGE_QUANTILE = 0.85  # a ridge pixel is an edge when its magnitude is above this quantile
WEAK_DROP = 0.15  # ridges connected to an edge are kept down to the quantile less this
HYSTERESIS_STEPS = 64  # at most this many pixels of growth along a ridge
TILES = 8  # checkerboard tiles along the long side
QUANTILE_SAMPLES = 1 << 20  # quantiles of larger images come from an even subsample
INITIAL_COLOUR = (0, 200, 255)  # cyan: edges of the DRR at the initial pose
FINAL_COLOUR = (255, 60, 30)  # red-orange: edges of the DRR at the final pose


def _plane(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Any (H, W), (1, H, W) or (1, 1, H, W) image as a float32 (H, W) tensor on the CPU."""
    plane = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image)
    plane = plane.detach().float().cpu()
    while plane.ndim > 2:
        plane = plane[0]
    return plane


def _quantiles(values: torch.Tensor, levels: list[float]) -> list[float]:
    """Quantiles of a tensor's values; above QUANTILE_SAMPLES values, of an even subsample
    (torch.quantile takes at most 2^24)."""
    values = values.flatten()
    step = max(1, math.ceil(values.numel() / QUANTILE_SAMPLES))
    return torch.quantile(values[::step].float(), torch.tensor(levels)).tolist()


def _unit(plane: torch.Tensor, low: float = 0.005, high: float = 0.995) -> torch.Tensor:
    """(H, W) scaled so that its `low` and `high` quantiles map to 0 and 1, clipped."""
    finite = plane[torch.isfinite(plane)]
    if finite.numel() == 0:
        return torch.zeros_like(plane)
    lo, hi = _quantiles(finite, [low, high])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    scaled = (plane.nan_to_num(lo) - lo) / max(hi - lo, 1e-12)
    return scaled.clamp(0, 1)


def _blurred(plane: torch.Tensor, sigma: float) -> torch.Tensor:
    """(H, W) smoothed by a Gaussian of sigma px (replicate borders); unchanged for sigma 0."""
    if sigma <= 0:
        return plane
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    image = F.pad(plane[None, None], (radius, radius, radius, radius), mode="replicate")
    image = F.conv2d(image, kernel.view(1, 1, 1, -1))
    return F.conv2d(image, kernel.view(1, 1, -1, 1))[0, 0]


def edge_map(
    image: torch.Tensor | np.ndarray, sigma: float = EDGE_SIGMA, quantile: float = EDGE_QUANTILE
) -> torch.Tensor:
    """Thin edges of an image ((H, W) or (1, 1, H, W)) as bool (H, W), Canny-like: Gaussian
    blur of sigma px, Sobel gradient, ridges across the edge (magnitude interpolated one pixel
    either side along the gradient), kept above the `quantile` of the magnitude, and extended
    along ridges down to the quantile - WEAK_DROP (hysteresis)."""
    plane = _blurred(_unit(_plane(image), 0.0, 1.0), sigma)[None, None]
    height, width = plane.shape[-2:]
    gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    kernels = torch.stack([-gx, -gx.T])[:, None]  # d/dx (columns), d/dy (rows)
    gradient = F.conv2d(F.pad(plane, (1, 1, 1, 1), mode="replicate"), kernels)[0]
    magnitude = gradient.square().sum(0).sqrt()
    unit = gradient / magnitude.clamp_min(1e-12)
    rows, columns = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    ridge = magnitude > 1e-6
    for sign in (1.0, -1.0):
        x = (columns + sign * unit[0]) / max(width - 1, 1) * 2 - 1
        y = (rows + sign * unit[1]) / max(height - 1, 1) * 2 - 1
        grid = torch.stack([x, y], dim=-1)[None]
        beside = F.grid_sample(
            magnitude[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True
        )[0, 0]
        ridge &= magnitude >= beside
    strong_level, weak_level = _quantiles(magnitude, [quantile, quantile - WEAK_DROP])
    strong = ridge & (magnitude > strong_level)
    weak = ridge & (magnitude > weak_level)
    for _ in range(HYSTERESIS_STEPS):
        grown = F.max_pool2d(strong.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
        grown &= weak
        if torch.equal(grown | strong, strong):
            break
        strong = strong | grown
    return strong


def edge_agreement(
    xray: torch.Tensor | np.ndarray,
    drr: torch.Tensor | np.ndarray,
    tolerance_px: int = 1,
    region: torch.Tensor | None = None,
) -> float:
    """Share of the DRR's edge pixels that lie within tolerance_px (chessboard distance) of an
    edge of the X-ray, both (H, W) or (1, 1, H, W); NaN when the DRR has no edges. region
    (same size, bool): only DRR edges more than tolerance_px + 1 px inside it count (the X-ray
    shows nothing outside, and its border is an edge of its own)."""
    fixed, moving = edge_map(xray), edge_map(drr)
    if region is not None:
        size = 2 * int(tolerance_px) + 3
        outside = (~region.reshape(moving.shape)).float()[None, None]
        moving = moving & ~(F.max_pool2d(outside, size, stride=1, padding=size // 2)[0, 0] > 0)
    if not moving.any():
        return math.nan
    size = 2 * int(tolerance_px) + 1
    near = F.max_pool2d(fixed.float()[None, None], size, stride=1, padding=int(tolerance_px))
    return float(near[0, 0][moving].mean())


@dataclass
class FigureText:
    """What the figure says: a headline per line, and the panel titles."""

    lines: list[str]  # above the panels, e.g. name and similarity, the pose, the errors
    xray_title: str = "X-ray"
    edges_title: str = "DRR edges on the X-ray"
    checker_title: str = f"checkerboard: X-ray | final DRR ({TILES} tiles)"


def panel_shape(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of one panel for an X-ray of height x width px: long side PANEL_PX."""
    scale = PANEL_PX / max(height, width)
    return max(8, round(height * scale)), max(8, round(width * scale))


def figure_size(height: int, width: int, lines: int) -> tuple[int, int]:
    """(width, height) in px of the figure for an X-ray of height x width px and `lines`
    headline lines."""
    rows, columns = panel_shape(height, width)
    return 3 * columns + 4 * GAP_PX, rows + (lines + 1) * LINE_PX + 3 * GAP_PX


def _resized(plane: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(
        plane[None, None], size=shape, mode="bilinear", align_corners=False, antialias=True
    )[0, 0]


def _grey_rgb(plane: torch.Tensor) -> np.ndarray:
    return (plane[..., None].expand(-1, -1, 3) * 255).round().to(torch.uint8).numpy().copy()


def edge_overlay(
    xray: torch.Tensor, initial: torch.Tensor, final: torch.Tensor, shape: tuple[int, int]
) -> np.ndarray:
    """The X-ray at `shape` in grey with the initial DRR's edges (INITIAL_COLOUR) and the final
    DRR's edges (FINAL_COLOUR, drawn on top), found at that size with the blur scaled with the
    image: (rows, cols, 3) uint8."""
    plane = _plane(xray)
    rgb = _grey_rgb(_resized(_unit(plane), shape))
    sigma = EDGE_SIGMA * shape[0] / plane.shape[0]
    for drr, colour in ((initial, INITIAL_COLOUR), (final, FINAL_COLOUR)):
        edges = edge_map(_resized(_unit(_plane(drr), 0.0, 1.0), shape), sigma)
        wide = F.max_pool2d(F.pad(edges.float()[None, None], (0, 1, 0, 1)), 2, stride=1)
        rgb[wide[0, 0].numpy() > 0] = colour  # lines 2 px wide
    return rgb


def matched_to(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """moving (H, W) with its grey levels mapped onto fixed's (H', W') histogram (quantile
    matching), so the two read alike side by side."""
    levels = torch.linspace(0, 1, 257).tolist()
    source = np.asarray(_quantiles(moving, levels))
    target = np.asarray(_quantiles(fixed, levels))
    source = source + np.arange(len(source)) * 1e-9  # strictly increasing for np.interp
    return torch.from_numpy(np.interp(moving.numpy(), source, target).astype(np.float32))


def checkerboard(xray: torch.Tensor, drr: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Tiles of the X-ray and the DRR (its histogram matched to the X-ray's) at `shape`, TILES
    along the long side, the X-ray in the top-left tile: (rows, cols, 3) uint8."""
    fixed = _resized(_unit(_plane(xray)), shape)
    moving = matched_to(_resized(_plane(drr), shape), fixed)
    tile = max(shape) / TILES
    rows = (torch.arange(shape[0]) / tile).long()[:, None]
    columns = (torch.arange(shape[1]) / tile).long()[None, :]
    return _grey_rgb(torch.where((rows + columns) % 2 == 0, fixed, moving))


def write_registration_figure(
    path: Path,
    xray: torch.Tensor,
    initial_drr: torch.Tensor,
    final_drr: torch.Tensor,
    text: FigureText,
) -> tuple[int, int]:
    """Write the QC figure (module doc) as a PNG; images (1, 1, H, W) or (H, W), bright = dense.
    Returns the figure's (width, height) in px, which figure_size states."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # headless, no pyplot state
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    height, width = _plane(xray).shape
    shape = panel_shape(height, width)
    fig_w, fig_h = figure_size(height, width, len(text.lines))
    figure = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    panels = [
        (_grey_rgb(_resized(_unit(_plane(xray)), shape)), text.xray_title),
        (edge_overlay(xray, initial_drr, final_drr, shape), text.edges_title),
        (checkerboard(xray, final_drr, shape), text.checker_title),
    ]
    for index, (rgb, title) in enumerate(panels):
        left = GAP_PX + index * (shape[1] + GAP_PX)
        axes = figure.add_axes(
            (left / fig_w, GAP_PX / fig_h, shape[1] / fig_w, shape[0] / fig_h), frameon=False
        )
        axes.imshow(rgb, interpolation="nearest", aspect="auto")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(title, fontsize=9, pad=4)
        if index == 1:
            handles = [
                Line2D([], [], color=np.array(c) / 255, lw=2, label=label)
                for c, label in ((INITIAL_COLOUR, "initial pose"), (FINAL_COLOUR, "final pose"))
            ]
            axes.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
        if index == 2:  # the tile borders, faint: a good match hides them
            tile = max(shape) / TILES
            for k in range(1, TILES):
                if k * tile < shape[1]:
                    axes.axvline(k * tile - 0.5, color="yellow", alpha=0.25, lw=0.8)
                if k * tile < shape[0]:
                    axes.axhline(k * tile - 0.5, color="yellow", alpha=0.25, lw=0.8)
    for number, line in enumerate(text.lines):
        top = fig_h - GAP_PX / 2 - number * LINE_PX
        figure.text(
            GAP_PX / fig_w,
            top / fig_h,
            line,
            fontsize=10,
            va="top",
            weight="bold" if number == 0 else "normal",
        )
    figure.savefig(path, dpi=DPI, format="png", facecolor="white")
    return fig_w, fig_h


def figure_lines(row: dict) -> list[str]:
    """The headline of a registration's figure from its results row (recon register): name,
    similarity, status; the found and the initial pose; with a truth, the errors."""

    def numbers(values, digits: int) -> str:
        shown = ("nan" if v is None else f"{round(v, digits) + 0.0:.{digits}f}" for v in values)
        return " ".join(shown)  # + 0.0: no "-0.00"

    similarity = row.get("similarity")
    shown = "NaN" if similarity is None or not math.isfinite(similarity) else f"{similarity:.3f}"
    headline = f"{row['name']}: similarity {shown} ({row['status']}), {row['iterations']} steps"
    if row.get("edge_agreement") is not None and row.get("init_edge_agreement") is not None:
        headline += (
            f"; DRR edges on X-ray edges {row['edge_agreement']:.0%} "
            f"(initial pose {row['init_edge_agreement']:.0%})"
        )
    lines = [
        headline,
        f"found pose: rot {numbers(row['rot_deg'], 2)} deg (ZXY), "
        f"xyz {numbers(row['xyz_mm'], 1)} mm",
        f"initial pose: rot {numbers(row['init_rot_deg'], 2)} deg, "
        f"xyz {numbers(row['init_xyz_mm'], 1)} mm",
    ]
    errors = []
    if row.get("final_mtre_mm") is not None:
        errors.append(f"mTRE {row['final_mtre_mm']:.2f} mm (start {row['init_mtre_mm']:.1f})")
    if row.get("final_rotation_error_deg") is not None:
        errors.append(
            f"rotation error {row['final_rotation_error_deg']:.2f} deg "
            f"(start {row['init_rotation_error_deg']:.1f})"
        )
    if row.get("final_translation_error_mm") is not None:
        errors.append(
            f"translation error {row['final_translation_error_mm']:.2f} mm "
            f"(start {row['init_translation_error_mm']:.1f})"
        )
    if errors:
        lines.append("against the truth: " + ", ".join(errors))
    return lines


def registration_figure(
    path: Path,
    row: dict,
    image: torch.Tensor,
    initial_drr: torch.Tensor,
    final_drr: torch.Tensor,
    xray_size: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The figure of one registration, titled from its results row (figure_lines); xray_size
    (rows, columns) is the registered X-ray's when `image` is a smaller copy of it. Returns
    the figure's (width, height) in px."""
    height, width = xray_size or tuple(_plane(image).shape)
    text = FigureText(
        figure_lines(row),
        xray_title=f"X-ray, {height} x {width} px, {row.get('patient_orientation', '')}",
    )
    return write_registration_figure(path, image, initial_drr, final_drr, text)
