"""embed-spine: Cobb accuracy on synthetic X-rays, the CLI, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.io import write_png
from recon.pipelines.common.metrics import cobb_error
from recon.pipelines.corset.spine import (
    EMBEDDING_SIZE,
    FAINT_RATIO,
    load_spine_xray,
    measure_spine,
    mirror_embedding,
)
from recon.pipelines.corset.spine_xray import synth_spine_xray
from recon.pipelines.corset.vertebrae import (
    VERTEBRAE,
    ends_named_right,
    level_names,
    levels_named_right,
)


def test_cobb_mae_over_20_synth_corset_xrays_is_at_most_3_deg():
    rng = np.random.default_rng(7)
    errors = []
    for i in range(20):
        cobb = 50.0 * i / 19 * rng.choice([-1, 1])
        xray = synth_spine_xray(cobb, rng.uniform(420, 560), rng.uniform(250, 360), seed=i)
        measure = measure_spine(xray.image / 65535.0, (xray.spacing_mm,) * 2)
        errors.append(cobb_error(measure.cobb_deg, xray.cobb_deg))
    assert np.mean(errors) <= 3.0, f"Cobb MAE {np.mean(errors):.2f} deg"


def _bent_ct_measures(seeds, tissue: str = "all") -> list:
    """(measure, true Cobb angle) for bent-CT DRRs of the given seeds."""
    from spine_phantoms import bent_spine_drr

    out = []
    for seed in seeds:
        xray = bent_spine_drr(seed, tissue=tissue)
        out.append((measure_spine(xray.image, xray.spacing_mm), xray.cobb_deg))
    return out


def _bent_ct_errors(seeds, tissue: str = "all") -> np.ndarray:
    measures = _bent_ct_measures(seeds, tissue)
    return np.asarray([cobb_error(measure.cobb_deg, truth) for measure, truth in measures])


@pytest.fixture(scope="module")
def bent_ct_measures() -> list:
    """Measures on 6 DRRs of the second generator (tests/spine_phantoms.py: a CT whose spine is
    bent by a known deformation; no drawing code shared with the first), seeds 100-105, which
    were not used while the method's parameters were chosen."""
    return _bent_ct_measures(range(100, 106))


@pytest.fixture(scope="module")
def bent_ct_errors(bent_ct_measures) -> np.ndarray:
    """Cobb errors (deg) on the 6 DRRs of bent_ct_measures."""
    return np.asarray([cobb_error(measure.cobb_deg, truth) for measure, truth in bent_ct_measures])


@pytest.mark.slow
def test_cobb_mae_over_6_bent_ct_drrs_stays_at_its_measured_level(bent_ct_errors):
    """A guard at the level measured when the method was fixed (2.8 deg on these seeds; 3.8
    before the path tracked the body width)."""
    assert bent_ct_errors.mean() <= 4.5, f"Cobb MAE {bent_ct_errors.mean():.2f} deg"


@pytest.mark.slow
def test_a_severe_curve_is_traced_past_its_lower_end_vertebra():
    """Seed 21 bends the CT's spine by 48 deg, most of it low in the chest. The traced extent
    once stopped where the path wandered 3 mm off the line of its last rows (row 171 of 214),
    above the lower end vertebra (row 176), and the Cobb angle read 34 deg."""
    from spine_phantoms import bent_spine_drr

    xray = bent_spine_drr(21)
    lower_end_row = xray.vertebra_rows[np.argmin(xray.tilts_deg)]
    measure = measure_spine(xray.image, xray.spacing_mm, "T1-L1")
    assert xray.cobb_deg > 45
    reached = measure.centre_rows.max()
    assert reached > lower_end_row + 10, f"traced to row {reached}, end vertebra at {lower_end_row}"
    error = cobb_error(measure.cobb_deg, xray.cobb_deg)
    assert error <= 7.0, f"Cobb {measure.cobb_deg:.1f} against {xray.cobb_deg:.1f} deg"


@pytest.mark.slow
def test_cobb_mae_on_the_same_drrs_of_the_vertebrae_alone_is_at_most_2_deg():
    """The control: the same bends, detectors and noise with everything but the vertebrae made
    air. The method's own error (1.2 deg on held-out seeds 3000-3039) is well inside the target;
    what keeps the full films above it is the tissue beside the spine."""
    errors = _bent_ct_errors(range(100, 106), tissue="vertebrae")
    assert errors.mean() <= 2.0, f"Cobb MAE {errors.mean():.2f} deg"


@pytest.mark.slow
def test_an_unbent_film_of_the_vertebrae_alone_reads_the_patients_own_curve():
    """benchmarks/cobb.py --unbent: with no bend, the truth is the scanned spine's own curve
    (11-13 deg over T1-L1), and the vertebrae alone read it (MAE 1.4 deg on seeds 3000-3039)."""
    from spine_phantoms import bent_spine_drr

    films = [bent_spine_drr(seed, bumps=[], tissue="vertebrae") for seed in (100, 101, 102)]
    truths = np.asarray([film.cobb_deg for film in films])
    assert np.all((truths > 9) & (truths < 15)), truths
    measured = [measure_spine(f.image, f.spacing_mm, "T1-L1").cobb_deg for f in films]
    errors = np.abs(np.asarray(measured) - truths)
    assert errors.mean() <= 2.5, (measured, truths)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the 3 deg target is not reached on the bent-CT DRRs yet (3.7 deg on seeds "
    "2000-2029 and 4000-4039, 4.3 on 3000-3039, 3.9 on 5000-5039; the 6 seeds above happen to "
    "give 2.8)",
)
def test_cobb_mae_over_30_bent_ct_drrs_is_at_most_3_deg(bent_ct_measures_30):
    errors = np.asarray([cobb_error(m.cobb_deg, truth) for m, truth in bent_ct_measures_30])
    assert errors.mean() <= 3.0, f"Cobb MAE {errors.mean():.2f} deg"


@pytest.mark.slow
def test_films_of_a_second_patients_vertebrae_alone_are_read_to_their_bent_truth():
    """A second CT (tests/data/lumbar_ct: an abdominal CT, another patient and another part of
    the spine), bent and rendered as films of L1..L5. With the vertebrae alone, the truth of the
    generator and the method agree (2.6 deg MAE over seeds 0-39; these 4 give 4.0): the second
    CT's orientation, labels and projected truth are right."""
    from spine_phantoms import bent_spine_drr

    films = [bent_spine_drr(seed, ct="lumbar", tissue="vertebrae") for seed in range(100, 104)]
    assert all(len(film.tilts_deg) == 5 for film in films)  # L1..L5
    assert max(film.cobb_deg for film in films) > 30  # bent, not only the patient's own curve
    errors = [
        cobb_error(measure_spine(f.image, f.spacing_mm, "L1-L5").cobb_deg, f.cobb_deg)
        for f in films
    ]
    assert np.mean(errors) <= 5.0, errors


@pytest.mark.slow
def test_a_faint_column_is_named():
    """On the same second patient's full films the vertebrae hardly show under the bowel gas,
    whose edges the tracer follows (Cobb MAE 32 deg over seeds 0-39): where the traced column
    barely stands above the film (contrast below FAINT_RATIO; seed 103: 2.4, read 63 deg for
    44), the warning says so. A chest DRR's spine (4.1) gets no warning."""
    from spine_phantoms import bent_spine_drr

    faint = bent_spine_drr(103, ct="lumbar")
    measure = measure_spine(faint.image, faint.spacing_mm, "L1-L5")
    assert measure.column_contrast < FAINT_RATIO
    assert "barely stands out of the film" in measure.warning
    assert measure.as_dict()["column_contrast"] == measure.column_contrast
    chest = bent_spine_drr(100)
    measure = measure_spine(chest.image, chest.spacing_mm, "T1-L1")
    assert measure.column_contrast > FAINT_RATIO and measure.warning is None


@pytest.mark.slow
def test_a_finer_detector_shows_the_same_film_and_truth_at_more_pixels():
    """benchmarks/cobb.py --fine renders the bent-CT films with finer pixels: the same seed
    must give the same bend, field and exposure, its truth in the finer pixels."""
    from scipy.ndimage import zoom
    from spine_phantoms import bent_spine_drr

    coarse, fine = bent_spine_drr(100), bent_spine_drr(100, pixel_scale=2.0)
    assert fine.spacing_mm[0] == pytest.approx(coarse.spacing_mm[0] / 2)
    assert fine.cobb_deg == pytest.approx(coarse.cobb_deg, abs=1e-6)
    np.testing.assert_allclose(fine.tilts_deg, coarse.tilts_deg, atol=1e-6)
    # the same vertebrae at twice the rows (the crop rounds to a pixel of each)
    np.testing.assert_allclose(fine.vertebra_rows, 2 * coarse.vertebra_rows + 0.5, atol=2.5)
    shrunk = zoom(fine.image, np.divide(coarse.image.shape, fine.image.shape), order=1)
    assert np.corrcoef(shrunk.ravel(), coarse.image.ravel())[0, 1] > 0.95


@pytest.fixture(scope="module")
def bent_ct_xrays_30() -> list:
    """30 bent-CT DRRs, seeds 2000-2029 (not used while choosing the method's parameters or
    calibrating its uncertainty)."""
    from spine_phantoms import bent_spine_drr

    return [bent_spine_drr(seed) for seed in range(2000, 2030)]


@pytest.fixture(scope="module")
def bent_ct_measures_30(bent_ct_xrays_30) -> list:
    """Measures on the 30 DRRs of bent_ct_xrays_30, their pixel spacing given."""
    return [(measure_spine(x.image, x.spacing_mm), x.cobb_deg) for x in bent_ct_xrays_30]


@pytest.mark.slow
def test_cobb_on_bent_ct_drrs_without_pixel_spacing_stays_near_the_mm_figure(bent_ct_xrays_30):
    """A PNG without --pixel-spacing: the body widths searched are fractions of the image width.
    They reach 0.18 of it, so that a chest film's 300 mm field spans the same 18-54 mm as the
    widths in mm: 3.7 deg MAE on these films (5.3 when the fractions stopped at 0.14, which
    left the widths a chest film's spine is traced at out of reach), with |error| <= 2 SD in 90%."""
    measures = [(measure_spine(x.image, None), x.cobb_deg) for x in bent_ct_xrays_30]
    errors = np.asarray([cobb_error(m.cobb_deg, truth) for m, truth in measures])
    assert errors.mean() <= 4.5, f"Cobb MAE {errors.mean():.2f} deg without pixel spacing"
    covered = np.mean([abs(m.cobb_deg - truth) <= 2 * m.cobb_sd_deg for m, truth in measures])
    assert covered >= 0.8, f"|error| <= 2 SD in {covered:.0%} without pixel spacing"


@pytest.mark.slow
def test_cobb_uncertainty_widens_where_one_vertebral_border_hides(bent_ct_measures_30):
    """On the bent-CT DRRs the tissue beside the spine hides one border of the vertebral bodies
    and the path drifts in a way its own scatter cannot show. The border-asymmetry part of
    cobb_sd_deg must cover that error: |error| <= 2 SD in at least 80% of the 30 films (90%
    measured; the bootstrap part alone: 43%), while the clean synthetic films keep a narrow
    uncertainty."""
    measures = bent_ct_measures_30
    covered = np.mean([abs(m.cobb_deg - truth) <= 2 * m.cobb_sd_deg for m, truth in measures])
    by_bootstrap = np.mean(
        [abs(m.cobb_deg - truth) <= 2 * m.cobb_sd_bootstrap_deg for m, truth in measures]
    )
    assert covered >= 0.8, f"|error| <= 2 SD in {covered:.0%}"
    assert covered >= by_bootstrap + 0.2, f"{covered:.0%} against {by_bootstrap:.0%}"
    inside = np.mean([m.cobb_interval_deg[0] <= t <= m.cobb_interval_deg[1] for m, t in measures])
    assert inside >= 0.8, f"truth inside cobb_interval_deg in {inside:.0%}"
    rng = np.random.default_rng(7)
    synth = []
    for i in range(6):
        cobb = 50.0 * i / 19 * rng.choice([-1, 1])
        xray = synth_spine_xray(cobb, rng.uniform(420, 560), rng.uniform(250, 360), seed=i)
        synth.append(measure_spine(xray.image / 65535.0, (xray.spacing_mm,) * 2))
    drr_asymmetry = np.median([m.border_asymmetry for m, _ in measures])
    assert np.median([m.border_asymmetry for m in synth]) < drr_asymmetry / 3
    assert max(m.cobb_sd_deg for m in synth) < 1.5


def test_cobb_path_uncertainty_grows_with_noise_and_end_vertebrae_are_named():
    xray = synth_spine_xray(40.0, seed=4)
    clean = xray.image / 65535.0
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.3, clean.shape), 0, 1)
    spacing = (xray.spacing_mm,) * 2
    first, second = measure_spine(clean, spacing), measure_spine(noisy, spacing)
    # the path's part follows the noise (0.82 -> 1.22 deg); the borders' part follows how
    # unequal the two borders look, which noise need not raise
    assert 0 < first.cobb_sd_bootstrap_deg < second.cobb_sd_bootstrap_deg
    assert 0 < first.cobb_sd_deg < 10 and 0 < second.cobb_sd_deg < 10
    low, high = first.cobb_interval_deg
    assert low - 1.0 <= first.cobb_deg <= high + 1.0 and high - low < 6.0  # 5.4 measured
    # one sine curve over the whole column: its tilt is steepest at the two ends (T1 and L5) and
    # within 5% of that over the outer three levels
    names = level_names()
    assert first.end_vertebrae[0] in names[:3] and first.end_vertebrae[1] in names[-3:]
    doc = first.as_dict()
    parts = doc["cobb_sd_parts_deg"]  # named as the table and README name them
    assert parts == {"path": first.cobb_sd_bootstrap_deg, "borders": first.cobb_sd_border_deg}
    assert np.hypot(parts["path"], parts["borders"]) == pytest.approx(doc["cobb_sd_deg"])
    assert doc["end_vertebrae"] == {
        "upper": first.end_vertebrae[0],
        "lower": first.end_vertebrae[1],
    }
    assert doc["level_names"][0] == "T1" and doc["level_names"][-1] == "L5"


def test_span_names_the_levels_after_the_vertebrae_the_film_shows():
    full = level_names()
    assert full == level_names("t1-l5") and full[0] == "T1" and full[-1] == "L5"
    # typical heights grow down the spine: the small upper thoracic vertebrae share the 17 levels
    # with fewer names skipped than lumbar ones get twice
    assert full.count("L4") == 2 and "T2" not in full and len(set(full)) == 15
    chest = level_names("T1-L1")
    assert chest[0] == "T1" and chest[-1] == "L1" and set(chest) == {*VERTEBRAE[7:20]}
    assert chest[:5] == ("T1", "T2", "T3", "T4", "T5")  # a level each; L1 takes two
    for names in (full, chest, level_names("C7-S1")):
        order = [VERTEBRAE.index(name) for name in names]
        assert order == sorted(order)
    assert level_names("C7-S1")[0] == "C7" and level_names("C7-S1")[-1] == "S1"
    for bad in ("L1-T1", "T1-T1", "T13-L1", "T1", "T1-L5-S1", ""):
        with pytest.raises(BadInput, match="--span"):
            level_names(bad)
    xray = synth_spine_xray(30.0, rows=192, seed=2)
    spacing = (xray.spacing_mm,) * 2
    default = measure_spine(xray.image / 65535.0, spacing)
    chest_film = measure_spine(xray.image / 65535.0, spacing, "T1-L1")
    assert chest_film.cobb_deg == default.cobb_deg  # names only
    assert chest_film.as_dict()["span"] == "T1-L1"
    assert chest_film.as_dict()["level_names"] == list(chest)
    assert chest_film.end_vertebrae == (chest[default.upper_end], chest[default.lower_end])


@pytest.mark.slow
def test_end_vertebrae_of_chest_films_are_named_right_more_often_with_their_span(
    bent_ct_xrays_30, bent_ct_measures_30
):
    """The bent-CT DRRs show T1-L1. An end vertebra pair is named right when the true tilts of
    the two named vertebrae span the true Cobb angle to within 3 deg (benchmarks/cobb.py): 53%
    with --span T1-L1 (30% when every vertebra had the same height) against 0% with the default
    T1-L5 names, which call the lower half of the film lumbar though it ends at L1 (the choice
    of the end levels themselves follows the tilts, whose error on these films is the open Cobb
    target above)."""

    def named_right(span: str) -> float:
        names, right = level_names(span), []
        for xray, (measure, truth) in zip(bent_ct_xrays_30, bent_ct_measures_30, strict=True):
            ends = names[measure.upper_end], names[measure.lower_end]
            right.append(ends_named_right(ends, xray.tilts_deg, "T1", truth, 3.0))
        return float(np.mean(right))

    chest, default = named_right("T1-L1"), named_right("T1-L5")
    assert chest >= 0.4 and chest >= default + 0.2, f"{chest:.0%} against {default:.0%}"


@pytest.mark.slow
def test_levels_are_named_after_the_vertebra_that_lies_there(bent_ct_xrays_30, bent_ct_measures_30):
    """Level k of a T1-L1 chest DRR is named after the vertebra nearest its row (the projected
    label centroids): 82% of levels on these 30 films with typical vertebra heights, 38% when
    every vertebra was given the same height; the synthetic films stack T1..L5 at the same
    typical proportions."""

    def named_right(names: tuple[str, ...]) -> float:
        pairs = zip(bent_ct_xrays_30, bent_ct_measures_30, strict=True)
        return float(
            np.mean(
                [
                    levels_named_right(measure.level_rows, names, xray.vertebra_rows, "T1")
                    for xray, (measure, _) in pairs
                ]
            )
        )

    equal = tuple(VERTEBRAE[7 + int((k + 0.5) * 13 / 17)] for k in range(17))
    drr, equal_drr = named_right(level_names("T1-L1")), named_right(equal)
    assert drr >= 0.7 and drr >= equal_drr + 0.25, f"{drr:.0%} against {equal_drr:.0%}"
    synth = []
    for seed, cobb in enumerate((0.0, 20.0, -35.0, 50.0)):
        xray = synth_spine_xray(cobb, seed=seed)
        measure = measure_spine(xray.image / 65535.0, (xray.spacing_mm,) * 2)
        synth.append(levels_named_right(measure.level_rows, level_names(), xray.level_rows, "T1"))
    assert np.mean(synth) >= 0.7, f"synthetic films: {np.mean(synth):.0%}"


def test_centre_line_follows_the_vertebrae_within_3_mm():
    xray = synth_spine_xray(35.0, seed=3)
    measure = measure_spine(xray.image / 65535.0, (xray.spacing_mm,) * 2)
    traced = np.interp(xray.level_rows, measure.centre_rows, measure.centre_cols)
    error_mm = np.abs(traced - xray.level_cols).mean() * xray.spacing_mm
    assert error_mm <= 3.0


def test_mirrored_xray_gives_the_mirrored_embedding():
    xray = synth_spine_xray(30.0, seed=5)
    image = xray.image / 65535.0
    spacing = (xray.spacing_mm,) * 2
    direct = measure_spine(image, spacing).embedding
    mirrored = measure_spine(image[:, ::-1], spacing).embedding
    assert direct.shape == (EMBEDDING_SIZE,)
    assert np.sign(direct[0]) == -np.sign(mirrored[0])
    assert np.abs(mirror_embedding(direct)[5:22] - mirrored[5:22]).mean() < 0.08


def test_embed_spine_cli_writes_json_and_overlay(tmp_path, recon):
    xray = synth_spine_xray(-25.0, seed=11)
    write_png(tmp_path / "spine.png", xray.image)
    code, out, _ = recon(
        "embed-spine",
        str(tmp_path / "spine.png"),
        "-o",
        str(tmp_path / "emb.json"),
        "--debug-image",
        str(tmp_path / "debug.png"),
        "--json",
    )
    assert code in (0, None)
    result = json.loads(out)
    doc = json.loads((tmp_path / "emb.json").read_text())
    assert len(doc["embedding"]) == EMBEDDING_SIZE and len(doc["tilts_deg"]) == 17
    assert abs(result["cobb_deg"] - xray.cobb_deg) <= 5.0
    assert (tmp_path / "debug.png").stat().st_size > 0


def test_dicom_xray_is_read_with_its_spacing(tmp_path):
    from dicom_files import write_dx

    xray = synth_spine_xray(20.0, seed=2)
    spacing = [xray.spacing_mm, xray.spacing_mm]
    write_dx(tmp_path / "spine.dcm", xray.image, ImagerPixelSpacing=spacing)
    loaded = load_spine_xray(tmp_path / "spine.dcm")
    assert loaded.known_spacing == pytest.approx((xray.spacing_mm, xray.spacing_mm))
    measure = measure_spine(loaded.image, loaded.known_spacing)
    assert cobb_error(measure.cobb_deg, xray.cobb_deg) <= 5.0


def test_no_spine_exits_1(tmp_path, recon):
    noise = np.random.default_rng(0).integers(0, 65535, (200, 160), dtype=np.uint16)
    write_png(tmp_path / "noise.png", noise)
    code, _, err = recon(
        *["embed-spine", str(tmp_path / "noise.png"), "-o", str(tmp_path / "e.json")]
    )
    assert code == 1 and "no spine" in err
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize(
    "name,content",
    [
        ("mesh.stl", b"solid x\nendsolid x\n"),
        ("notes.txt", b"hello"),
        ("fake.png", b"not a png at all"),
    ],
)
def test_wrong_kind_of_file_exits_2(tmp_path, recon, name, content):
    (tmp_path / name).write_bytes(content)
    code, out, err = recon(*["embed-spine", str(tmp_path / name), "-o", str(tmp_path / "e.json")])
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.json").exists()


def test_centre_line_on_a_drr_of_the_chest_ct_is_within_4_mm(tmp_path, recon):
    """AP DRR of the bundled chest CT through embed-spine (16-bit PNG, --pixel-spacing); the
    truth is the projected centroid of each vertebra label, the error is measured at the
    isocentre."""
    import torch

    from recon.pipelines.xray.drr import (
        Intrinsics,
        drr_to_uint16,
        make_renderer,
        project_points,
        render_with,
    )
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.volume import load_ct, vertebra_centroids

    subject = load_ct(spacing_mm=3.0)
    intrinsics = Intrinsics(sdd=1020.0, height=128, width=128, delx=3.2, dely=3.2)
    drr = make_renderer(subject, intrinsics)
    pose = pose_from_degrees([0.0, 0.0, 0.0], [0.0, 850.0, 0.0])
    with torch.no_grad():
        counts, _ = drr_to_uint16(render_with(drr, pose)[0, 0])
        points = torch.tensor([list(vertebra_centroids(subject).values())], dtype=torch.float32)
        pixels = project_points(drr, pose, points)[0].numpy()  # (column, row)
    pixels = pixels[(pixels[:, 1] >= 0) & (pixels[:, 1] < 128)]
    write_png(tmp_path / "drr.png", counts.numpy().astype(np.uint16))
    code, _, err = recon(
        *[
            "embed-spine",
            tmp_path / "drr.png",
            "--pixel-spacing",
            3.2,
            3.2,
            "-o",
            tmp_path / "e.json",
        ],
        "-q",
    )
    assert code == 0, err
    line = np.asarray(json.loads((tmp_path / "e.json").read_text())["centre_line_px"])
    covered = (pixels[:, 1] >= line[:, 0].min()) & (pixels[:, 1] <= line[:, 0].max())
    found = np.interp(pixels[covered, 1], line[:, 0], line[:, 1])
    error_mm = np.abs(found - pixels[covered, 0]) * 3.2 / (1020.0 / 850.0)
    assert covered.sum() >= 0.7 * len(pixels), f"{covered.sum()}/{len(pixels)} vertebrae covered"
    assert error_mm.mean() <= 4.0 and error_mm.max() <= 8.0, f"{error_mm.round(1)} mm"


def test_a_tall_film_is_traced_on_block_means_and_answers_in_its_own_pixels(monkeypatch):
    import recon.pipelines.corset.spine as spine

    xray = synth_spine_xray(35.0, rows=2100, seed=4)  # 0.28 mm pixels: traced at 700 rows
    image, spacing = xray.image / 65535.0, (xray.spacing_mm, xray.spacing_mm)
    coarse = measure_spine(image, spacing)
    assert cobb_error(coarse.cobb_deg, xray.cobb_deg) <= 1.5
    assert coarse.spacing_mm == spacing
    # the centre line lies on the true vertebra centres, in the film's own pixels
    on_line = np.interp(xray.level_rows, coarse.centre_rows, coarse.centre_cols)
    inside = (xray.level_rows > coarse.centre_rows[0]) & (xray.level_rows < coarse.centre_rows[-1])
    assert np.abs(on_line - xray.level_cols)[inside].mean() * xray.spacing_mm <= 2.0
    monkeypatch.setattr(spine, "TRACE_ROWS", 10_000)
    full = measure_spine(image, spacing)  # the same film traced pixel by pixel
    assert abs(full.cobb_deg - coarse.cobb_deg) <= 0.5
    assert np.abs(full.level_rows - coarse.level_rows).max() <= 6  # of 2100 rows
