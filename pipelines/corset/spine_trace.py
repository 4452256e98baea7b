"""Tracing the vertebral column in a spine X-ray: a response to the two lateral borders of the
vertebral bodies per body width, the best smooth path through it, and the rows where that path
lies on the spine. Images are (H, W) in [0, 1], bone bright, row 0 at the top.
"""

from __future__ import annotations

import numpy as np

# Vertebral-body widths searched (with the pedicles, at the detector): in mm when the pixel spacing
# is known, from a thoracic body to a lumbar one with some magnification; else as fractions of the
# image width, for a chest- or spine-sized AP field (a chest film's 300 mm field gives 18-54 mm,
# the range in mm). Neighbouring widths are one width step of the traced path apart (see
# trace_centre_line).
BODY_WIDTHS_MM = tuple(float(w) for w in np.arange(18.0, 54.5, 3.0))
BODY_WIDTHS = tuple(round(0.06 + 0.01 * k, 2) for k in range(13))  # 0.06 .. 0.18
# Row smoothing of the image before the border steps, as a fraction of the image height (about
# two thirds of a vertebra on a T1..L1 film).
ROW_SIGMA = 0.016


def body_widths_px(image: np.ndarray, spacing: tuple[float, float] | None) -> list[float]:
    """The body widths searched, in pixels (see BODY_WIDTHS_MM and BODY_WIDTHS)."""
    if spacing is None:
        return [fraction * image.shape[1] for fraction in BODY_WIDTHS]
    return [width / spacing[1] for width in BODY_WIDTHS_MM]


def border_responses(smooth: np.ndarray, widths_px: list[float]) -> np.ndarray:
    """Vertebral-column response per body width (K, H, W): evidence for BOTH lateral borders.

    For each body width w (widths_px) and centre column c: the geometric mean of the rising step
    at c - w/2 and the falling step at c + w/2 (step: mean of the w/4 columns just beyond minus
    just before), on the image smoothed down the rows (smooth, from row_smoothed). Bright tissue
    with one sharp border only (heart, vessels beside the spine, a lung edge) scores ~0 and a
    smooth background (abdomen) cancels out, where a band-minus-flanks brightness response is
    pulled toward them. A narrow two-bordered bone over the spine (the sternum when the patient
    is turned) still competes.
    """
    out = np.empty((len(widths_px), *smooth.shape), dtype=np.float32)  # float32: big films
    for k, width in enumerate(widths_px):
        rising, falling = _border_steps(smooth, width)
        out[k] = np.sqrt(np.maximum(rising, 0) * np.maximum(falling, 0))
    return out


def row_smoothed(image: np.ndarray) -> np.ndarray:
    """The image smoothed down the rows (sigma ROW_SIGMA of the height) and a pixel across."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(ROW_SIGMA * image.shape[0], 1.0))


def _border_steps(smooth: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed steps (H, W) at the two borders of a body `width` px wide centred on each column:
    the rise at c - w/2 and the fall at c + w/2 (step: mean of the w/4 columns just beyond minus
    just before)."""
    from scipy.ndimage import uniform_filter1d

    width = max(4, int(round(width)))
    run = max(2, int(round(width / 4)))
    mean = uniform_filter1d(smooth, run, axis=1, mode="nearest")
    gap = run // 2 + 1
    step = _shift_cols(mean, gap) - _shift_cols(mean, -gap)  # > 0 where it gets brighter
    return _shift_cols(step, -(width // 2)), -_shift_cols(step, width // 2)


def border_asymmetry(
    smooth: np.ndarray,
    widths_px: list[float],
    columns: np.ndarray,
    widths: np.ndarray,
    rows: tuple[int, int],
) -> float:
    """Median over rows [top, bottom) of |ln(rise / fall)| of the two border steps on the traced
    path (column columns[r], body width widths_px[widths[r]]): about 0.1 when both borders of
    the vertebral bodies show (a spine film), 0.4-0.7 when tissue beside the spine makes one
    border stronger than the other (a chest film), so that the centre between them is less sure
    than the path's scatter says. smooth: the X-ray as row_smoothed gives it."""
    index = np.arange(*rows)
    columns, widths = columns[index], widths[index]
    rise, fall = np.zeros(len(index)), np.zeros(len(index))
    for k in np.unique(widths):
        rising, falling = _border_steps(smooth, widths_px[k])
        chosen = widths == k
        rise[chosen] = rising[index[chosen], columns[chosen]]
        fall[chosen] = falling[index[chosen], columns[chosen]]
    floor = 1e-3 * max(float(np.abs(np.r_[rise, fall]).max()), 1e-12)
    return float(np.median(np.abs(np.log(np.maximum(rise, floor) / np.maximum(fall, floor)))))


def _shift_cols(a: np.ndarray, k: int) -> np.ndarray:
    """out[:, c] = a[:, c + k], the edge columns repeated (all of them for |k| >= the width)."""
    out = np.empty_like(a)
    cols = a.shape[1]
    k = int(np.clip(k, 1 - cols, cols - 1))
    if k >= 0:
        out[:, : cols - k] = a[:, k:]
        out[:, cols - k :] = a[:, -1:]
    else:
        out[:, -k:] = a[:, : cols + k]
        out[:, :-k] = a[:, :1]
    return out


def trace_centre_line(
    responses: np.ndarray, jump_cost: float = 0.15, width_cost: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Best smooth top-to-bottom path through per-width responses (K, H, W), by DP over (width,
    column): its columns (H,) and width indices (H,).

    From row to row the path moves at most one column (45 deg) and one width step, and pays
    jump_cost per column and width_cost per width step (the responses are in units of the
    99th percentile of the best width's), so it follows one column of one width instead of
    hopping between neighbouring ridges or pairing a border with whichever bright edge beside it
    happens to fit another width. Only the central 70% of the columns are searched (an AP spine
    X-ray is roughly centred).
    """
    count, rows, cols = responses.shape
    lo, hi = int(0.15 * cols), int(0.85 * cols)
    score = responses[:, :, lo:hi].transpose(1, 0, 2).copy()  # (H, K, C)
    back_k = np.zeros(score.shape, dtype=np.int8)
    back_c = np.zeros(score.shape, dtype=np.int8)
    for r in range(1, rows):
        prev = score[r - 1]
        best = np.full(prev.shape, -np.inf)
        for dk in (-1, 0, 1):
            for dc in (-1, 0, 1):
                shifted = np.full(prev.shape, -np.inf)
                source = (_window(count, dk), _window(prev.shape[1], dc))
                target = (_window(count, -dk), _window(prev.shape[1], -dc))
                shifted[target] = prev[source] - jump_cost * abs(dc) - width_cost * abs(dk)
                better = shifted > best
                best[better] = shifted[better]
                back_k[r][better] = dk
                back_c[r][better] = dc
        score[r] += best
    k, c = np.unravel_index(int(np.argmax(score[-1])), score[-1].shape)
    widths, columns = np.zeros(rows, dtype=np.int64), np.zeros(rows, dtype=np.int64)
    widths[-1], columns[-1] = k, c
    for r in range(rows - 1, 0, -1):
        widths[r - 1] = widths[r] + back_k[r, widths[r], columns[r]]
        columns[r - 1] = columns[r] + back_c[r, widths[r], columns[r]]
    return columns + lo, widths


def _window(size: int, shift: int) -> slice:
    """The indices i of range(size) for which i - shift is also in range (for a shift of +-1)."""
    return slice(max(0, shift), size + min(0, shift))


def subpixel_path(response: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Path columns refined to the vertex of a parabola through the response at c-1, c, c+1."""
    cols = response.shape[1]
    c = np.clip(path, 1, cols - 2)
    r = np.arange(len(path))
    left, mid, right = response[r, c - 1], response[r, c], response[r, c + 1]
    curve = left - 2 * mid + right
    peaked = curve < -1e-12
    offset = np.where(peaked, 0.5 * (left - right) / np.where(peaked, curve, -1.0), 0.0)
    return c + np.clip(offset, -0.5, 0.5)


def spine_extent(strength: np.ndarray) -> tuple[int, int]:
    """Rows [top, bottom) where the traced path lies on the spine.

    Hysteresis on the smoothed path response s (relative to its 90th percentile p): the core is
    the longest run with s > 0.4 p; it grows row by row while s > 0.15 p (the lumbar spine behind
    the abdomen responds weakly but is still the only column there). The path's shape does not
    stop it: a strongly bent curve (Cobb 48 deg) wanders 3 mm off the line of its last rows where
    the tracer's own scatter is about as large, and a cut there leaves its lower end vertebra
    unmeasured.
    """
    from scipy.ndimage import uniform_filter1d

    count = len(strength)
    smooth = uniform_filter1d(strength, max(3, count // 40))
    level = np.percentile(smooth, 90)
    above = smooth > 0.4 * level
    best, start, best_run = (0, 0), None, 0
    for r, flag in enumerate(np.r_[above, False]):
        if flag and start is None:
            start = r
        elif not flag and start is not None:
            if r - start > best_run:
                best, best_run = (start, r), r - start
            start = None
    top, bottom = best
    if bottom <= top:
        return best
    weak = smooth <= 0.15 * level
    while top > 0 and not weak[top - 1]:
        top -= 1
    while bottom < count and not weak[bottom]:
        bottom += 1
    return top, bottom
