"""Inputs given as files and folders, and the output names made from them: one rule for every
command that takes many inputs (`predict voxel|parts|drr|skull`, `register`, `embed-spine`).

- A folder stands for the files directly inside it that the command reads, sorted by name;
  subfolders are not searched and hidden files are skipped. A folder with none of them, a path
  that does not exist, or a file given twice (also through its folder) is one line, exit 2.
- Each input's output name is its stem. When two names would clash (compared ignoring case, as
  on macOS and Windows file systems), every input is named FOLDER_STEM instead, then
  FOLDER_STEM_SUFFIX (FOLDER_STEM for a file without a suffix), and as a last resort NNN_STEM
  (NNN its position). The names are decided
  from the whole list, so the shards of a batch job agree on them.
- An output folder that is, or lies inside, an input folder, or that is or holds an input
  file, is refused even with --overwrite: its outputs would become inputs, or replace them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.io import PICTURE_SUFFIXES

# X-ray files (`register`, `embed-spine`): images by suffix; DICOM by suffix, or none (files named
# by UID), or by the 'DICM' preamble.
XRAY_IMAGE_SUFFIXES = PICTURE_SUFFIXES
XRAY_DICOM_SUFFIXES = (".dcm", ".dicom", "")
XRAY_KINDS = "DICOM, PNG, JPEG, TIFF, BMP or WebP X-rays"


def is_xray_file(path: Path) -> bool:
    """A file a folder contributes: DICOM or a picture by suffix, or a DICOM by its 'DICM' preamble
    (files named by UID without a suffix); hidden files and DICOMDIR indexes are not X-rays."""
    if path.name.startswith(".") or path.name.upper() == "DICOMDIR" or not path.is_file():
        return False
    if path.suffix.lower() in XRAY_IMAGE_SUFFIXES or path.suffix.lower() in XRAY_DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as stream:
            return stream.read(132)[128:] == b"DICM"
    except OSError:
        return False


def xray_name(path: Path) -> str:
    """The output name of an X-ray: its file name less a known suffix (.dcm, .dicom, .png, .tif,
    .tiff, .jpg, .jpeg, any case), other dots kept (`1.2.840.1.dcm` -> `1.2.840.1`)."""
    name = Path(path).name
    suffix = Path(name).suffix
    if suffix and suffix.lower() in (*XRAY_DICOM_SUFFIXES, *XRAY_IMAGE_SUFFIXES):
        stem = name[: -len(suffix)]
        if stem.strip(".") and not stem.startswith("."):
            return stem
    return name


def gather_inputs(
    paths: Iterable[Path], accept: Callable[[Path], bool], what: str
) -> tuple[list[Path], list[Path]]:
    """(files, folders) from files and folders as given (see module doc). accept(path) says
    whether a file inside a folder is an input; `what` names the inputs in messages
    ("images", "DICOM, PNG, ... X-rays")."""
    files: list[Path] = []
    folders: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if not p.name.startswith(".") and p.is_file() and accept(p)
            )
            if not found:
                raise BadInput(f"{path}: folder holds no {what}")
            folders.append(path)
            files.extend(found)
        elif not path.exists():
            raise BadInput(f"{path}: no such file or folder")
        elif not path.is_file():
            raise BadInput(f"{path}: is not a file")
        else:
            files.append(path)
    seen: dict[Path, Path] = {}
    for file in files:
        key = file.resolve()
        if key in seen:
            raise BadInput(f"{file}: given twice (also as {seen[key]}); list each input once")
        seen[key] = file
    return files, folders


def output_names(
    files: Sequence[Path],
    stem: Callable[[Path], str] = lambda p: p.stem,
    reserved: Callable[[str], bool] = lambda name: False,
) -> list[str]:
    """One output name per input (see module doc); stem(path) is a name's first form.
    BadInput when a name is one the command keeps for its own files (reserved(name))."""
    paths = [Path(p) for p in files]
    tiers = (
        stem,
        lambda p: f"{p.absolute().parent.name}_{stem(p)}",
        lambda p: "_".join(
            part for part in (p.absolute().parent.name, stem(p), _suffix(p, stem)) if part
        ),
    )
    chosen = None
    for tier in tiers:
        names = [tier(p) for p in paths]
        if len({n.casefold() for n in names}) == len(names):
            chosen = names
            break
    if chosen is None:
        width = max(3, len(str(len(paths) - 1)))
        chosen = [f"{i:0{width}d}_{stem(p)}" for i, p in enumerate(paths)]
    for path, name in zip(paths, chosen, strict=True):
        if reserved(name) or name.startswith("."):
            raise BadInput(f"{path}: its output name {name!r} is reserved; rename the file")
    return chosen


def _suffix(path: Path, stem: Callable[[Path], str]) -> str:
    """What stem(path) leaves off the file name, without its dot: "dcm" for x.dcm, "" for a
    DICOM named by UID (1.2.840.1, whose stem is its whole name)."""
    name, first = path.name, stem(path)
    rest = name[len(first) :] if name.startswith(first) else path.suffix
    return rest.lstrip(".")


def check_apart(out: Path, files: Sequence[Path], folders: Sequence[Path] = ()) -> None:
    """BadInput, even with --overwrite, when `out` is an input folder or inside one, or is an
    input file or a folder holding one (files may include a checkpoint or a CT). Each input is
    compared both as given (a link where the user put it) and resolved (where it points)."""
    targets = both_places(out)
    for folder in folders:
        for place in both_places(folder):
            if any(t == place or place in t.parents for t in targets):
                raise BadInput(
                    f"{out}: the output folder is, or is inside, the input folder {place}; "
                    "choose another path"
                )
    for source in files:
        for place in both_places(source):
            if any(t == place or t in place.parents for t in targets):
                inside = "" if place in targets else " (the output folder holds it)"
                raise BadInput(
                    f"{out}: output would replace the input {place}{inside}; choose another path"
                )


def both_places(path: Path) -> set[Path]:
    """A path as given (absolute, `..` folded, links kept) and resolved (links followed)."""
    path = Path(path).expanduser()
    return {Path(os.path.abspath(path)), path.resolve()}
