"""synth corset data, the corset geometry, and `predict corset` bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recon.cli.app import main
from recon.pipelines.common.io import load_mesh
from recon.pipelines.common.metrics import surface_score
from recon.pipelines.corset.patients import (
    PatientParams,
    make_corset,
    make_torso,
    project_corset,
)
from recon.pipelines.corset.views import (
    SIDE_VIEWS,
    corset_from_views,
    decode_views,
    encode_views,
    measure_prior,
    prior_views,
    silhouette_iou,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("corset") / "data"
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "corset", "-o", str(root), "-n", "3", "--size", "64", "-q"])
    assert exit_info.value.code in (0, None)
    return root


def test_synth_corset_layout_and_truth(dataset):
    doc = json.loads((dataset / "dataset.json").read_text())
    assert doc["format"] == "recon.corset-data/2" and len(doc["patients"]) == 3
    patient = dataset / doc["patients"][0]["name"]
    for part in (
        "torso.stl",
        "corset.stl",
        "spine.png",
        "spine.json",
        "truth.json",
        "photos/views.json",
        "photos/depth_top.png",
        "corset_views/views.json",
        "corset_views/depth_view_007.png",
    ):
        assert (patient / part).is_file(), part
    corset, torso = load_mesh(patient / "corset.stl"), load_mesh(patient / "torso.stl")
    assert corset.is_watertight
    truth = json.loads((patient / "truth.json").read_text())
    assert np.ptp(corset.vertices[:, 2]) < 0.75 * np.ptp(torso.vertices[:, 2])  # trimmed
    assert 0 <= abs(truth["cobb_deg"]) <= 50


def test_the_spine_film_shows_the_torso_s_curve_as_a_radiograph_does(dataset):
    """A torso convex toward +x (the patient's right: z up, +y anterior) has its film's apex at
    the image's left, as a radiograph shows it, so embed-spine signs it as a real film of that
    patient (its apex toward -column, the patient's right): the films were mirrored, and a
    real film's embedding would have had the opposite sign of its training twins'."""
    checked = 0
    for truth_path in sorted(dataset.glob("p*/truth.json")):
        cobb = json.loads(truth_path.read_text())["cobb_deg"]
        embedding = json.loads((truth_path.parent / "spine.json").read_text())["embedding"]
        if abs(cobb) > 5:
            assert np.sign(embedding[0]) == -np.sign(cobb), truth_path.parent.name
            checked += 1
    assert checked >= 2


def test_pressure_pad_pushes_in_on_the_convex_side():
    params = PatientParams(500, 320, 210, 40.0, 6.0, 4.0)
    torso = make_torso(params)
    padded, plain = make_corset(params, torso), make_corset(params, torso, pads=False)
    near_apex = np.abs(padded.vertices[:, 2] - 250) < 20
    convex = near_apex & (padded.vertices[:, 0] > 0)
    assert padded.vertices[convex, 0].max() < plain.vertices[convex, 0].max() - 10


def test_prior_is_the_offset_torso_and_its_offset_is_measured_from_pairs():
    """Without pads a corset IS the torso offset by gap + thickness, trimmed: the prior views
    must match its views, and measure_prior must recover the offset and the trim band."""
    from recon.pipelines.shapes.projection import project_mesh

    rng = np.random.default_rng(4)
    photos, corsets, scales, offsets = [], [], [], []
    for _ in range(3):
        params = PatientParams(
            rng.uniform(420, 560), 320, 220, rng.uniform(-40, 40), rng.uniform(4, 8), 4.0
        )
        params.width, params.depth = 0.6 * params.height, 0.42 * params.height
        torso = make_torso(params)
        projection = project_mesh(torso, views=SIDE_VIEWS, caps=True, size=128)
        target = project_corset(make_corset(params, torso, pads=False), projection, 128)
        photos.append(encode_views(projection.depths))
        corsets.append(encode_views(target.depths))
        scales.append(float(np.linalg.norm(projection.to_normalised[:3, 0])))
        offsets.append(params.gap + params.thickness)
    measured = measure_prior(np.stack(photos), np.stack(corsets), np.array(scales))
    assert abs(measured["offset_mm"] - np.mean(offsets)) < 1.0, measured
    assert np.allclose(measured["trim"], [0.12, 0.80], atol=0.02), measured
    for x, y, scale, offset in zip(photos, corsets, scales, offsets, strict=True):
        prior = prior_views(x, scale, offset, (0.12, 0.80))
        both, either = (prior > -1) & (y > -1), (prior > -1) | (y > -1)
        assert both.sum() / either.sum() > 0.95
        depth_mm = np.median(np.abs(prior - y)[both]) / scale
        assert depth_mm < 1.5, f"prior depth off by {depth_mm:.2f} mm"
        plain = np.median(np.abs(x[:SIDE_VIEWS] - y)[both]) / scale
        assert plain > offset - 2  # the raw torso views are a whole offset away


def test_true_corset_views_back_project_to_the_corset(dataset):
    patient = dataset / "p0000"
    mesh = corset_from_views(patient / "corset_views")
    score = surface_score(mesh, load_mesh(patient / "corset.stl"), 0.02, 20_000)
    assert score.fscore >= 0.95


def test_a_y_up_scan_is_trimmed_along_its_own_up_axis(dataset, tmp_path):
    """Photos of a y-up torso (`project --up y`): the corset was cut along the mesh's z (front
    to back there), slicing off its front and back and keeping the end caps."""
    from recon.pipelines.corset.patients import project_corset
    from recon.pipelines.shapes import project_mesh, write_projection

    patient = dataset / "p0000"
    turn = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=float)
    torso, corset = (load_mesh(patient / name) for name in ("torso.stl", "corset.stl"))
    for mesh in (torso, corset):
        mesh.apply_transform(turn)  # z up -> y up
    photos = project_mesh(torso, views=8, caps=True, size=128, up="y")
    views = project_corset(corset, photos, 128)
    (tmp_path / "views").mkdir()
    write_projection(views, tmp_path / "views", views.views_json("corset.stl", 0, 0))
    score = surface_score(corset_from_views(tmp_path / "views"), corset, 0.02, 20_000)
    assert score.fscore >= 0.95


def test_view_encoding_round_trips():
    depths = np.zeros((2, 8, 8), dtype=np.uint16)
    depths[:, 2:6, 2:6] = np.arange(20000, 20016, dtype=np.uint16).reshape(4, 4)
    assert np.array_equal(decode_views(encode_views(depths)), depths)


def test_validation_silhouette_iou_is_a_mean_over_patients_not_over_pixels():
    # a large torso predicted right and a small one predicted wholly wrong: 0.5 per patient,
    # whatever the batch, where pooling the batch's pixels said 0.82
    truth = np.full((2, 8, 20, 20), -1.0, dtype=np.float32)
    truth[0, :, :18, :18] = 0.0  # 324 px per view
    truth[1, :, :6, :6] = 0.0  # 36 px per view
    pred = truth.copy()
    pred[1] = -1.0
    pred[1, :, 10:16, 10:16] = 0.0
    per_patient = silhouette_iou(pred, truth)
    assert per_patient.tolist() == [1.0, 0.0]
    assert silhouette_iou(pred[1:], truth[1:]).tolist() == [0.0]
    assert silhouette_iou(np.full((1, 8, 4, 4), -1.0), np.full((1, 8, 4, 4), -1.0)).tolist() == [1]


def _touch_checkpoint(path):
    path.write_bytes(b"\0" * 16)
    return path


def predict_corset(recon, photos, spine, tmp_path):
    """`recon predict corset` with a placeholder checkpoint, writing tmp_path/c.stl."""
    checkpoint = _touch_checkpoint(tmp_path / "m.ckpt")
    return recon(
        "predict",
        "corset",
        "--photos",
        photos,
        "--spine",
        spine,
        "-c",
        checkpoint,
        "-o",
        tmp_path / "c.stl",
    )


def test_missing_view_exits_2(dataset, tmp_path, recon):
    photos = tmp_path / "photos"
    shutil.copytree(dataset / "p0000" / "photos", photos)
    (photos / "depth_view_003.png").unlink()
    code, _, err = predict_corset(recon, photos, dataset / "p0000" / "spine.png", tmp_path)
    assert code == 2 and "depth_view_003" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.stl").exists()


def test_wrong_number_of_photos_exits_2(dataset, tmp_path, recon):
    photos = tmp_path / "photos"
    code, _, _ = recon(
        "project",
        str(dataset / "p0000" / "torso.stl"),
        "-o",
        str(photos),
        "--views",
        "6",
        "--size",
        "64",
        "-q",
    )
    assert code in (0, None)
    code, _, err = predict_corset(recon, photos, dataset / "p0000" / "spine.png", tmp_path)
    assert code == 2 and "needs exactly the 10 views" in err
    assert not (tmp_path / "c.stl").exists()


def test_spine_of_the_wrong_kind_exits_2(dataset, tmp_path, recon):
    code, _, err = predict_corset(
        recon, dataset / "p0000" / "photos", dataset / "p0000" / "torso.stl", tmp_path
    )
    assert code == 2 and "not a spine X-ray" in err
    assert not (tmp_path / "c.stl").exists()


def test_checkpoint_that_is_not_one_exits_2(dataset, tmp_path, recon):
    code, _, err = predict_corset(
        recon, dataset / "p0000" / "photos", dataset / "p0000" / "spine.png", tmp_path
    )
    assert code == 2 and "checkpoint" in err
    assert not (tmp_path / "c.stl").exists()


def test_train_corset_without_a_data_set_exits_2(tmp_path, recon):
    code, _, err = recon(
        "train",
        "corset",
        "--data",
        str(tmp_path / "nothing"),
        "--epochs",
        "1",
        "-o",
        str(tmp_path / "run"),
    )
    assert code == 2 and "dataset.json" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "text,message",
    [
        ("x", "not a readable embed-spine JSON"),
        ('{"embedding": [1, 2]}', "its embedding is not 39 finite numbers"),
        ('{"embedding": null}', "its embedding is not 39 finite numbers"),
        ("[]", "its embedding is not 39 finite numbers"),
    ],
)
def test_train_corset_with_a_damaged_spine_json_names_it(dataset, tmp_path, recon, text, message):
    """A damaged spine.json stopped training with `JSONDecodeError: ...` (exit 1), no file named."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    (data / "p0001" / "spine.json").write_text(text)
    code, _, err = recon("train", "corset", "--data", data, "--epochs", "1", "-o", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{data / 'p0001' / 'spine.json'}: {message}" in err
    assert not (tmp_path / "run").exists()


def test_train_corset_with_an_offset_but_no_band_exits_2(dataset, tmp_path, recon):
    code, _, err = recon(
        "train",
        "corset",
        "--data",
        dataset,
        "--set",
        "prior_offset_mm=10",
        "-o",
        tmp_path / "run",
    )
    assert code == 2 and "prior_trim_bottom < prior_trim_top" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_train_corset_with_a_band_but_no_offset_exits_2(dataset, tmp_path, recon):
    """The band alone was ignored without a word (the offset and band were measured)."""
    band = ["--set", "prior_trim_bottom=0.1", "--set", "prior_trim_top=0.9"]
    code, _, err = recon("train", "corset", "--data", dataset, *band, "-o", tmp_path / "run")
    assert code == 2 and "used only with prior_offset_mm" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_synth_corset_rejects_a_bad_size(tmp_path, recon):
    code, _, err = recon("synth", "corset", "-o", tmp_path / "d", "--size", "100")
    assert code == 2 and "--size" in err and not (tmp_path / "d").exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(dataset, tmp_path_factory):
    """A corset model trained for 2 epochs at 64 px (seconds on a CPU)."""
    from recon.pipelines.corset.predict import train_tiny

    return train_tiny(dataset, tmp_path_factory.mktemp("corset_run"), epochs=2)


@pytest.mark.parametrize("units,factor", [("cm", 0.1), ("m", 0.001)])
def test_a_torso_scan_not_in_mm_is_refused(
    dataset, tiny_checkpoint, tmp_path, recon, units, factor
):
    """A scan in cm gave a corset 1.6 times too wide with a 35 mm wall (exit 0), one in m ran
    out of memory: the torso's size says its units."""
    torso = load_mesh(dataset / "p0000" / "torso.stl")
    torso.apply_scale(factor)
    torso.export(tmp_path / f"torso_{units}.stl")
    code, _, err = recon("project", tmp_path / f"torso_{units}.stl", "-o", tmp_path / "photos",
                         "--views", "8", "--caps", "--size", "64", "-q")  # fmt: skip
    assert code == 0, err
    out = tmp_path / "c.stl"
    spine = dataset / "p0000" / "spine.png"
    code, _, err = recon("predict", "corset", "--photos", tmp_path / "photos", "--spine", spine,
                         "-c", tiny_checkpoint, "-o", out)  # fmt: skip
    assert code == 2 and "the torso reaches" in err and "scale the scan to mm" in err, err
    assert err.strip().splitlines()[-1].startswith("error:") and not out.exists()


def test_thickness_sets_the_wall_of_the_predicted_corset(dataset, tiny_checkpoint, tmp_path, recon):
    """--thickness is the shell's wall: volume / (half the area of both sides) recovers it."""
    patient = dataset / "p0000"
    walls = {}
    for thickness in (2.0, 8.0):
        out = tmp_path / f"c{thickness:g}.stl"
        code, _, err = recon(
            *["predict", "corset", "--photos", patient / "photos", "--spine"],
            *[patient / "spine.png", "-c", tiny_checkpoint, "-o", out],
            *["--thickness", f"{thickness:g}", "-q"],
        )
        assert code == 0, err
        mesh = load_mesh(out)
        assert mesh.is_watertight
        walls[thickness] = 2 * mesh.volume / mesh.area
    for thickness, wall in walls.items():
        assert abs(wall - thickness) < 0.15 * thickness, walls


def test_a_set_made_with_mirrored_films_is_refused(dataset, tmp_path, recon):
    """Sets made before the films were shown as radiographs carry the other embedding sign:
    mixing them with new patients, or training on them, would teach the wrong side."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(dataset, old)
    doc = json.loads((old / "dataset.json").read_text())
    (old / "dataset.json").write_text(json.dumps({**doc, "format": "recon.corset-data/1"}))
    code, _, err = recon("train", "corset", "--data", old, "-o", tmp_path / "run", "-q")
    assert code == 2 and "remake it with `recon synth corset --overwrite`" in err, err
