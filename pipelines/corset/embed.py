"""`recon embed-spine` on one X-ray or many: measure each film (recon.pipelines.corset.spine),
write its JSON and overlay, and gather the Cobb angles of a batch in one table.

A batch goes on past a film that cannot be read or shows no spine: that film gets a row with
its status and the error, and no files; the others are measured as usual.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.pipelines.common.errors import BadInput, JobFailed
from recon.pipelines.corset.spine import SpineImage, SpineMeasure, measure_spine
from recon.pipelines.corset.vertebrae import DEFAULT_SPAN

# The columns of cobb.csv, one row per film.
CSV_FIELDS = (
    "xray",
    "status",
    "cobb_deg",
    "cobb_sd_deg",
    "cobb_low_deg",
    "cobb_high_deg",
    "upper_end",
    "lower_end",
    "apex",
    "secondary_cobb_deg",
    "border_asymmetry",
    "spacing_from",
    "warning",
    "error",
)
# zlib level of the overlay PNG, a picture for people: at 3000 x 2400 it writes in 0.4 s
# instead of 2.8 s at the default 6, and is 8.1 MB instead of 7.5 MB; its pixels are the same.
OVERLAY_PNG_LEVEL = 1


@dataclass
class EmbeddedXray:
    """One film measured: the measure, where its pixel spacing came from, the JSON document
    written for it, and its overlay (RGB uint8, (H, W, 3)) when asked for."""

    measure: SpineMeasure
    spacing_source: str
    doc: dict
    overlay: np.ndarray | None
    spacing_unknown: str = ""  # SpineImage.spacing_unknown


def embed_xray(
    path: Path,
    pixel_spacing: tuple[float, float] | None,
    span: str,
    overlay: bool = False,
) -> EmbeddedXray:
    """Measure the spine X-ray at path (a picture or DICOM); BadInput for a file that is not
    a readable X-ray, JobFailed when no spine is found."""
    from recon.pipelines.corset.spine import debug_overlay, load_spine_xray

    clock = time.perf_counter()
    loaded = load_spine_xray(path, pixel_spacing)
    measure = measure_film(path, loaded, span)
    doc = {
        **measure.as_dict(),
        "spacing_from": loaded.spacing_source,
        "orientation": loaded.orientation,
        "source": str(Path(path).resolve()),
        "seconds": time.perf_counter() - clock,
    }
    picture = label_overlay(debug_overlay(loaded.image, measure), measure) if overlay else None
    return EmbeddedXray(measure, loaded.spacing_source, doc, picture, loaded.spacing_unknown)


def measure_film(path: Path, loaded: SpineImage, span: str = DEFAULT_SPAN) -> SpineMeasure:
    """measure_spine on the film loaded from path; JobFailed naming the film when it shows no
    spine, as every other failure line names its file."""
    try:
        return measure_spine(loaded.image, loaded.known_spacing, span)
    except JobFailed as error:
        raise JobFailed(f"{path}: {error}") from error


def label_overlay(rgb: np.ndarray, measure: SpineMeasure) -> np.ndarray:
    """The overlay (H, W, 3) uint8 with its words: the Cobb angle at the top left, and the
    names of the end vertebrae (red) and the apex (yellow) beside their levels, on the side of
    the film with more room."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(rgb)
    rows, cols = rgb.shape[:2]
    size = max(10, min(rows, cols) // 30)
    try:
        font = ImageFont.load_default(size=size)
    except (AttributeError, ImportError, OSError):  # a Pillow without FreeType: its bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(picture)
    outline = {"stroke_width": max(1, size // 10), "stroke_fill": (0, 0, 0)}
    cobb = f"Cobb {measure.cobb_deg:.1f} +- {measure.cobb_sd_deg:.1f} deg"
    draw.text((2, 2), cobb, fill=(255, 255, 255), font=font, **outline)
    names = measure.level_names
    labels = {measure.upper_end: (255, 0, 0), measure.lower_end: (255, 0, 0)}
    labels.setdefault(measure.apex, (255, 255, 0))
    for level, colour in labels.items():
        row, col = measure.level_rows[level], measure.level_cols[level]
        text = names[level] + (" (apex)" if level == measure.apex else "")
        width = draw.textlength(text, font=font)
        gap = max(8, cols // 10)
        right = col < cols / 2  # write where the film has more room
        x = col + gap if right else col - gap - width
        x = float(np.clip(x, 0, max(0, cols - width)))
        y = float(np.clip(row - size / 2, 0, max(0, rows - size)))
        draw.text((x, y), text, fill=colour, font=font, **outline)
    return np.asarray(picture)


def write_embedding(embedded: EmbeddedXray, json_path: Path, overlay_path: Path | None) -> None:
    """The film's JSON, and its overlay PNG when given: both renamed into place, or neither."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.common.outputs import atomic_file, write_json

    with atomic_file(json_path) as json_tmp:
        write_json(json_tmp, embedded.doc)
        if overlay_path is not None and embedded.overlay is not None:
            with atomic_file(overlay_path) as png_tmp:
                write_png(png_tmp, embedded.overlay, compress_level=OVERLAY_PNG_LEVEL)


def film_record(path: Path, doc: dict) -> dict:
    """The summary of one measured film (the command's result, a row of a batch) from the JSON
    document written for it, under the same keys."""
    return {
        "xray": str(path),
        "status": "ok",
        "cobb_deg": doc["cobb_deg"],
        "cobb_sd_deg": doc["cobb_sd_deg"],
        "cobb_interval_deg": list(doc["cobb_interval_deg"]),
        "border_asymmetry": doc["border_asymmetry"],
        "warning": doc.get("warning"),
        "across_ratio": doc.get("across_ratio"),
        "column_contrast": doc.get("column_contrast"),
        "end_vertebrae": dict(doc["end_vertebrae"]),
        "apex_vertebra": doc["apex_vertebra"],
        "span": doc["span"],
        "secondary_cobb_deg": doc["secondary_cobb_deg"],
        "spacing_mm": list(doc["spacing_mm"]),
        "spacing_from": doc["spacing_from"],
        "seconds": doc["seconds"],
    }


def earlier_record(path: Path, json_path: Path) -> dict:
    """The record of a film measured by an earlier run (--skip-done), from its JSON; BadInput
    when that file is not an embed-spine JSON, or measures another existing file than path."""
    from recon.pipelines.common.batch import refuse_another_input
    from recon.pipelines.common.io import read_json

    try:
        doc = read_json(json_path)
        record = {**film_record(path, doc), "skipped": True}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BadInput(
            f"{json_path}: not an embed-spine result ({type(error).__name__}: {error}); remove it "
            "or pass --overwrite"
        ) from error
    refuse_another_input(json_path, doc.get("source"), Path(path), "measures", "film")
    return record


def embed_xrays(
    files: Sequence[Path],
    names: Sequence[str],
    folder: Path,
    pixel_spacing: tuple[float, float] | None,
    span: str,
    track: Callable = lambda items, _description: items,
) -> list[dict]:
    """Measure each film and write folder/NAME.json and folder/NAME.png (the overlay); one
    record per film (film_record, or status 'unreadable' / 'no spine found' with the error)."""
    records = []
    for path, name in track(list(zip(files, names, strict=True)), "embed-spine"):
        try:
            embedded = embed_xray(path, pixel_spacing, span, overlay=True)
        except (BadInput, JobFailed) as error:
            status = "unreadable" if isinstance(error, BadInput) else "no spine found"
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            records.append({"xray": str(path), "name": name, "status": status, "error": message})
            continue
        json_path, overlay_path = folder / f"{name}.json", folder / f"{name}.png"
        write_embedding(embedded, json_path, overlay_path)
        records.append({**film_record(path, embedded.doc), "name": name})
    return records


def embed_batch(
    files: Sequence[Path],
    names: Sequence[str],
    plan,
    out: Path,
    pixel_spacing: tuple[float, float] | None,
    span: str,
    track: Callable = lambda items, _description: items,
) -> tuple[list[dict], list[dict], float]:
    """This shard's films (plan: recon.pipelines.common.batch.plan_inputs') measured into the
    output folder out: NAME.json and NAME.png each, cobb.csv listing every film of the shard
    (those --skip-done kept, read from their JSON) and run.json, under the shard's names.
    Returns the records of the films measured now, the records of every film of the shard in
    input order (those kept marked "skipped": True), and the seconds the measuring took."""
    from recon.pipelines.common.batch import output_folder
    from recon.pipelines.common.outputs import run_record, write_json

    earlier = {i: earlier_record(files[i], out / f"{names[i]}.json") for i in plan.done}
    clock = time.perf_counter()
    with output_folder(out, plan) as folder:
        todo = [files[i] for i in plan.todo]
        todo_names = [names[i] for i in plan.todo]
        records = embed_xrays(todo, todo_names, folder, pixel_spacing, span, track)
        seconds = time.perf_counter() - clock
        for record in records:
            if record["status"] == "ok":
                record["json"] = str(out / f"{record['name']}.json")
                record["overlay"] = str(out / f"{record['name']}.png")
        rows = iter(records)
        every = [earlier[i] if i in earlier else next(rows) for i in sorted([*plan.todo, *earlier])]
        write_cobb_csv(folder / plan.shard.results_name("cobb.csv"), every)
        metrics = {"results": records, "skipped_inputs": [str(files[i]) for i in plan.done]}
        write_json(
            folder / plan.shard.results_name(),
            run_record(
                "embed-spine",
                None,
                {"span": span, "pixel_spacing": pixel_spacing},
                {"embed": seconds},
                {**metrics, **plan.summary()},
            ),
        )
    return records, every, seconds


def unscaled_note(path: Path, unknown: str = "") -> str:
    """The stderr line for a film measured without a pixel spacing (unknown: why a DICOM's
    tags give none, SpineImage.spacing_unknown)."""
    why = f" ({unknown})" if unknown else ""
    return (
        f"note: {path} carries no pixel spacing{why}, so its millimetres are pixels "
        "(pass --pixel-spacing ROW COL)\n"
    )


def write_cobb_csv(path: Path, records: Sequence[dict]) -> None:
    """One row per film (CSV_FIELDS), written atomically; numbers to 0.01 deg."""
    from recon.pipelines.common.outputs import atomic_file

    def number(value) -> str:
        return "" if value is None else f"{value:.2f}"

    with atomic_file(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in records:
            low, high = r.get("cobb_interval_deg") or (None, None)
            ends = r.get("end_vertebrae") or {"upper": "", "lower": ""}
            writer.writerow(
                {
                    "xray": r["xray"],
                    "status": r["status"],
                    "cobb_deg": number(r.get("cobb_deg")),
                    "cobb_sd_deg": number(r.get("cobb_sd_deg")),
                    "cobb_low_deg": number(low),
                    "cobb_high_deg": number(high),
                    "upper_end": ends["upper"],
                    "lower_end": ends["lower"],
                    "apex": r.get("apex_vertebra", ""),
                    "secondary_cobb_deg": number(r.get("secondary_cobb_deg")),
                    "border_asymmetry": number(r.get("border_asymmetry")),
                    "spacing_from": r.get("spacing_from", ""),
                    "warning": r.get("warning") or "",
                    "error": r.get("error", ""),
                }
            )
