"""What a registration's result means: its status (ok, not a number, mirrored, poor), the one
line a failed run ends with, JSON without NaN, and the summary over many X-rays."""

from __future__ import annotations

import math

import numpy as np

from recon.pipelines.xray.registration import Registration, RegistrationConfig

STATUSES = ("ok", "not a number", "mirrored", "poor")


def judge(result: Registration, config: RegistrationConfig, min_similarity: float, check) -> dict:
    """The status of one registration (STATUSES) and the mirror check's figures; check() runs
    the mirror check (recon.pipelines.xray.registration.mirror_check), only when needed."""
    similarity = result.similarity
    if not math.isfinite(similarity):
        return {"status": "not a number"}
    verdict = {"status": "ok"}
    if similarity < config.mirror_check_below:
        mirror = check()
        verdict["coarse_similarity"] = mirror.similarity
        verdict["mirrored_similarity"] = mirror.mirrored_similarity
        if mirror.mirrored_is_better(config.mirror_margin):
            verdict["status"] = "mirrored"
            return verdict
    if similarity < min_similarity:
        verdict["status"] = "poor"
    return verdict


def failure_message(results: list[dict], min_similarity: float) -> str:
    """One line naming the failed registrations and the likely cause; "" when all are ok."""
    by_status = {s: [row for row in results if row["status"] == s] for s in STATUSES}
    if by_status["not a number"]:
        names = ", ".join(row["name"] for row in by_status["not a number"][:5])
        return f"registration of {names} failed: the similarity became NaN"
    if by_status["mirrored"]:
        row = by_status["mirrored"][0]
        flag = "--no-reverse-x-axis" if row["reverse_x_axis"] else "--reverse-x-axis"
        more = len(by_status["mirrored"]) - 1
        return (
            f"{row['name']}{f' and {more} more' if more else ''}: the X-ray's mirror image "
            f"matches the CT better (coarse-stage similarity {row['mirrored_similarity']:.2f} "
            f"against {row['coarse_similarity']:.2f}), so the detector orientation is likely "
            f"wrong: columns taken as {row['columns']}; rerun with {flag}"
        )
    if by_status["poor"]:
        names = ", ".join(row["name"] for row in by_status["poor"][:5])
        return f"registration of {names} ended below similarity {min_similarity}"
    return ""


def finite_or_none(value):
    """A JSON-ready copy with every non-finite float (NaN, inf) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def summarise(results: list[dict]) -> dict:
    """Medians and maxima over the registered X-rays (numbers that are not finite left out),
    and the count of failed registrations."""
    summary = {"count": len(results)}
    for key in (
        "runtime_s",
        "similarity",
        "final_mtre_mm",
        "final_rotation_error_deg",
        "final_translation_error_mm",
        "init_mtre_mm",
    ):
        values = [row[key] for row in results if row.get(key) is not None]
        if values:
            summary[f"median_{key}"] = float(np.median(values))
            summary[f"max_{key}"] = float(np.max(values))
    mtres = [row["final_mtre_mm"] for row in results if row.get("final_mtre_mm") is not None]
    if mtres:
        summary["mtre_below_1mm"] = int(sum(v < 1.0 for v in mtres))
    summary["failed"] = sum(row.get("status", "ok") != "ok" for row in results)
    return summary
