"""The vertebrae a spine film shows and the names of its levels.

A traced spine is split into LEVELS equal levels; each is named after the vertebra that lies there
when the vertebrae of the film's span have typical adult heights (SEGMENT_MM), which grow down the
spine. Also the scoring rules that benchmarks and tests use for those names.
"""

from __future__ import annotations

import numpy as np

from recon.pipelines.common.errors import BadInput

LEVELS = 17
# The vertebrae a film can show, top to bottom.
VERTEBRAE = tuple(
    [f"C{k}" for k in range(1, 8)]
    + [f"T{k}" for k in range(1, 13)]
    + [f"L{k}" for k in range(1, 6)]
    + ["S1"]
)
DEFAULT_SPAN = "T1-L5"
# Typical adult height of each vertebra with the disc below it, mm (rounded, from published
# morphometry: thoracic bodies grow from about 15 mm at T1 to 23 at T12 and lumbar ones are 25-28,
# thoracic discs 3-7 mm and lumbar ones 9-12). Only their proportions matter: they say where in a
# span each vertebra lies, e.g. T1-T4 take 25% of a T1-L1 film, not the 31% that equal
# heights would give.
SEGMENT_MM = dict(
    zip(
        VERTEBRAE,
        [12, 25, 18, 18, 18, 18, 19]
        + [18, 19.5, 19.5, 20, 20.5, 21, 22, 23, 24, 25.5, 27, 30]
        + [34, 36, 38, 38, 36]
        + [30],
        strict=True,
    )
)
LEVEL_COUNTING = (
    "the traced column split into 17 equal levels, each named after the vertebra that lies there "
    "when the film's span has typical adult vertebra heights (vertebrae are not found one by one)"
)


def span_vertebrae(span: str = DEFAULT_SPAN) -> tuple[str, ...]:
    """The vertebrae a film showing `span` ("FIRST-LAST", top to bottom, e.g. T1-L5 or T1-L1)
    holds, top to bottom. BadInput for a span that is not two vertebrae of VERTEBRAE, top one
    first."""
    first, sep, last = span.strip().upper().partition("-")
    if not sep or first not in VERTEBRAE or last not in VERTEBRAE:
        raise BadInput(f"--span {span!r}: expected FIRST-LAST vertebrae such as T1-L5 or T1-L1")
    top, bottom = VERTEBRAE.index(first), VERTEBRAE.index(last)
    if bottom - top < 1:
        raise BadInput(f"--span {span!r}: the first vertebra must lie above the last")
    return VERTEBRAE[top : bottom + 1]


def level_names(span: str = DEFAULT_SPAN) -> tuple[str, ...]:
    """Names of the LEVELS equal levels of a film showing the vertebrae `span` (see
    span_vertebrae): level k is the vertebra at fraction (k + 0.5) / LEVELS of the span's
    height, the vertebrae stacked at their SEGMENT_MM heights. So the small upper thoracic
    vertebrae get one level or less each and the lumbar ones more: T1-L5 names the levels T1,
    T3, T4, ... L4, L4, L5, and a chest film's T1-L1 gives T1 to T5 one level each."""
    shown = span_vertebrae(span)
    tops = np.cumsum([0.0] + [SEGMENT_MM[name] for name in shown])
    at = (np.arange(LEVELS) + 0.5) / LEVELS * tops[-1]
    index = np.minimum(np.searchsorted(tops, at, side="right") - 1, len(shown) - 1)
    return tuple(shown[i] for i in index)


def ends_named_right(
    ends: tuple[str, str], tilts_deg, first: str, cobb_deg: float, tolerance_deg: float = 3.0
) -> bool:
    """Whether end vertebrae named `ends` (upper, lower) are right on a film whose true tilts
    are known: tilts_deg holds one per vertebra shown, top to bottom from `first`. Right when
    both are on the film and their true tilts span the true Cobb angle to within tolerance_deg
    (where neighbouring vertebrae tilt alike, either will do). For benchmarks and tests."""
    upper, lower = (VERTEBRAE.index(name) - VERTEBRAE.index(first) for name in ends)
    if not (0 <= upper < len(tilts_deg) and 0 <= lower < len(tilts_deg)):
        return False
    return bool(abs(tilts_deg[upper] - tilts_deg[lower]) >= cobb_deg - tolerance_deg)


def levels_named_right(level_rows, names: tuple[str, ...], vertebra_rows, first: str) -> np.ndarray:
    """For each level (its row, its name): whether the vertebra nearest that row on a film whose
    vertebra centre rows are known (vertebra_rows, top to bottom from `first`) is the one named.
    For benchmarks and tests."""
    vertebra_rows = np.asarray(vertebra_rows, dtype=np.float64)
    nearest = np.abs(np.asarray(level_rows, dtype=np.float64)[:, None] - vertebra_rows).argmin(1)
    named = np.array([VERTEBRAE.index(name) - VERTEBRAE.index(first) for name in names])
    return nearest == named
