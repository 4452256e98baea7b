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


def test_spine_of_the_wrong_kind_exits_2(dataset, tiny_checkpoint, tmp_path, recon):
    """The film is read once the checkpoint says the model reads it."""
    code, _, err = recon("predict", "corset", "--photos", dataset / "p0000" / "photos", "--spine",
                         dataset / "p0000" / "torso.stl", "-c", tiny_checkpoint,
                         "-o", tmp_path / "c.stl")  # fmt: skip
    assert code == 2 and "not a spine X-ray" in err, err
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


def test_predicted_views_back_project_as_they_are(dataset, tiny_checkpoint, tmp_path, recon):
    """A network's views need not agree as projections of one mesh do: `--views-out` marks
    them predicted, and `recon backproject` takes them as they are."""
    patient = dataset / "p0000"
    code, _, err = recon(
        *["predict", "corset", "--photos", patient / "photos", "--spine", patient / "spine.png"],
        *["-c", tiny_checkpoint, "-o", tmp_path / "c.stl", "--views-out", tmp_path / "views"],
        "-q",
    )
    assert code == 0, err
    views = tmp_path / "views"
    doc = json.loads((views / "views.json").read_text())
    assert doc["predicted"] is True
    one, two = views / "depth_view_001.png", views / "depth_view_002.png"
    first = one.read_bytes()  # two views far apart: no projections of one mesh
    one.write_bytes(two.read_bytes())
    two.write_bytes(first)
    code, _, err = recon("backproject", views, "-o", tmp_path / "b.stl", "-q")
    assert code == 0, err
    del doc["predicted"]
    (views / "views.json").write_text(json.dumps(doc))
    code, _, err = recon("backproject", views, "-o", tmp_path / "d.stl", "-q")
    assert code == 2 and "the views are not of one object" in err, err


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


def test_a_torso_projected_lying_down_is_refused(dataset, tiny_checkpoint, tmp_path, recon):
    """A torso projected with the wrong --up (its long axis across the views) gave a corset
    550 mm long lying on its side, exit 0."""
    torso = load_mesh(dataset / "p0000" / "torso.stl")
    torso.export(tmp_path / "torso.stl")
    spine = dataset / "p0000" / "spine.png"
    for up, refused in (("x", True), ("z", False)):
        photos = tmp_path / f"photos_{up}"
        code, _, err = recon("project", tmp_path / "torso.stl", "-o", photos, "--up", up,
                             "--views", "8", "--caps", "--size", "64", "-q")  # fmt: skip
        assert code == 0, err
        out = tmp_path / f"c_{up}.stl"
        code, _, err = recon("predict", "corset", "--photos", photos, "--spine", spine,
                             "-c", tiny_checkpoint, "-o", out, "-q")  # fmt: skip
        if refused:
            assert code == 2 and "the torso lies across the views" in err, err
            assert len(err.strip().splitlines()) == 1 and not out.exists()
        else:
            assert code == 0 and out.is_file(), err


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


def _edit_views(folder, edit):
    doc = json.loads((folder / "views.json").read_text())
    edit(doc)
    (folder / "views.json").write_text(json.dumps(doc))


def _unnamed(doc):
    del doc["views"][0]["name"]


def _far_camera(doc):
    doc["camera"]["distance"] = 2.0


def _swapped_sides(doc):
    names = {v["name"]: v for v in doc["views"]}
    names["view_002"]["name"], names["view_006"]["name"] = "view_006", "view_002"


def _swapped_pictures(doc):
    """Each view keeps its name and camera, but names the other's pictures."""
    one, two = doc["views"][1], doc["views"][2]
    for key in ("depth", "silhouette"):
        one[key], two[key] = two[key], one[key]


@pytest.mark.parametrize(
    "edit,message",
    [
        (_unnamed, "missing view_000"),  # was KeyError: 'name' (exit 1)
        (_far_camera, "is not the one `recon project --views 8 --caps` writes"),
        (_swapped_sides, "view view_002 does not look the way"),
        (_swapped_pictures, "the views are not of one object"),  # was exit 0, a torn shell
    ],
)
def test_photos_not_in_the_project_layout_exit_2(dataset, tmp_path, recon, edit, message):
    """The network reads each view by its place and its depth with project's camera: a view
    without a name stopped with a KeyError, while another camera or views under each other's
    names were read as if right (exit 0, a wrong corset)."""
    photos = tmp_path / "photos"
    shutil.copytree(dataset / "p0000" / "photos", photos)
    _edit_views(photos, edit)
    code, _, err = predict_corset(recon, photos, dataset / "p0000" / "spine.png", tmp_path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "c.stl").exists()


def test_the_torso_scale_is_read_from_the_frame_matrix(dataset, tiny_checkpoint, tmp_path, recon):
    """frame.scale repeats to_normalised's scale: without it predict stopped with KeyError
    'scale' (exit 1), and at 0 or below it built the prior without an offset (exit 0)."""
    faces = {}
    for name, scale in (("as_made", None), ("without", "delete"), ("zero", 0.0)):
        photos = tmp_path / name
        shutil.copytree(dataset / "p0000" / "photos", photos)
        if scale == "delete":
            _edit_views(photos, lambda doc: doc["frame"].pop("scale"))
        elif scale is not None:
            _edit_views(photos, lambda doc, s=scale: doc["frame"].update(scale=s))
        out = tmp_path / f"{name}.stl"
        code, _, err = recon("predict", "corset", "--photos", photos, "--spine",
                             dataset / "p0000" / "spine.png", "-c", tiny_checkpoint, "-o", out,
                             "-q")  # fmt: skip
        assert code == 0, err
        faces[name] = len(load_mesh(out).faces)
    assert faces["without"] == faces["as_made"] == faces["zero"], faces


# settings that keep a training run that should have been refused to seconds
TINY_RUN = ("--epochs", "1", "--batch-size", "2", "--device", "cpu", "-q", "--set", "size=64",
            "--set", "features=8", "--set", "critic_features=8")  # fmt: skip


def _listed_twice(doc):
    doc["patients"] = doc["patients"][:2] + doc["patients"][:1]


def _outside(doc):
    doc["patients"][0]["name"] = "../data/p0001"


def _nameless(doc):
    del doc["patients"][1]["name"]


def _not_a_list(doc):
    doc["patients"] = {"p0000": {}}


@pytest.mark.parametrize(
    "edit,message",
    [
        (_listed_twice, "patient p0000 is listed twice"),  # was exit 0, p0000 in both splits
        (_outside, "patients[0] needs a 'name', a folder beside dataset.json"),  # was exit 0
        (_nameless, "patients[1] needs a 'name'"),  # was KeyError: 'name'
        (_not_a_list, "'patients' must be a list"),  # was TypeError
    ],
)
def test_train_corset_refuses_a_patient_list_it_cannot_split(
    dataset, tmp_path, recon, edit, message
):
    """A patient listed twice went into the training and the validation split at once, and
    val/l1 then scored a patient the model trained on."""
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    doc = json.loads((data / "dataset.json").read_text())
    edit(doc)
    (data / "dataset.json").write_text(json.dumps(doc))
    code, out, err = recon("train", "corset", "--data", data, *TINY_RUN, "-o", tmp_path / "run",
                           "--json")  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert json.loads(out)["exit_code"] == 2 and not (tmp_path / "run").exists()


def _drop_last_corset_view(data):
    _edit_views(data / "p0001" / "corset_views", lambda doc: doc["views"].pop())


def _another_patient_s_corset_views(data):
    shutil.rmtree(data / "p0001" / "corset_views")
    shutil.copytree(data / "p0002" / "corset_views", data / "p0001" / "corset_views")


@pytest.mark.parametrize(
    "damage,message",
    [
        (_drop_last_corset_view, "needs exactly the 8 views"),  # was ValueError (exit 1)
        (_another_patient_s_corset_views, "is not the one of the patient's photos"),  # exit 0
    ],
)
def test_train_corset_names_corset_views_it_cannot_pair(dataset, tmp_path, recon, damage, message):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    damage(data)
    code, _, err = recon("train", "corset", "--data", data, *TINY_RUN, "-o", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{data / 'p0001' / 'corset_views'}: " in err and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "layout,message",
    [
        ("same path", "c.stl: names a .stl file, but --views-out is a folder"),
        ("record", "c.stl.run.json: names a .json file, but --views-out is a folder"),
        ("inside", "--views-out would be or hold c.stl"),
    ],
)
def test_views_out_that_is_or_holds_the_mesh_is_refused_before_any_work(
    dataset, tmp_path, recon, layout, message
):
    """`-o c.stl --views-out c.stl` wrote the views folder, then failed on renaming the mesh
    onto it with IsADirectoryError (exit 1), leaving the folder without its record."""
    views = tmp_path / {"same path": "c.stl", "record": "c.stl.run.json"}.get(layout, "views")
    out = views / "c.stl" if layout == "inside" else tmp_path / "c.stl"
    if layout == "inside":
        views.mkdir()
    checkpoint = _touch_checkpoint(tmp_path / "m.ckpt")
    patient = dataset / "p0000"
    code, _, err = recon("predict", "corset", "--photos", patient / "photos", "--spine",
                         patient / "spine.png", "-c", checkpoint, "-o", out, "--views-out", views,
                         "--overwrite")  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and (layout == "inside" or not views.exists())


def test_json_names_the_views_folder(dataset, tiny_checkpoint, tmp_path, recon):
    """--json lists every output: the views folder was missing from it."""
    patient = dataset / "p0000"
    views = tmp_path / "views"
    code, out, err = recon("predict", "corset", "--photos", patient / "photos", "--spine",
                           patient / "spine.png", "-c", tiny_checkpoint, "-o", tmp_path / "c.stl",
                           "--views-out", views, "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["views_out"] == str(views) and (views / "run.json").is_file()
    assert json.loads((views / "views.json").read_text())["camera"]["size"] == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.stl", "c.stl.run.json", "views"]


def test_held_out_scoring_reads_the_film_at_its_true_spacing(dataset, tmp_path, monkeypatch):
    """The training embeddings (spine.json) were measured at the film's true spacing; the
    held-out scoring measured the film in pixels, another embedding than the model learned."""
    from recon.pipelines.corset import predict as corset_predict

    calls = []

    def perfect(photos, spine, checkpoint, views_out, device="cpu", spacing=None, thickness=4.0):
        calls.append(spacing)
        mesh = load_mesh(photos.parent / "corset.stl")
        return corset_predict.CorsetPrediction(mesh, 0.0, {})

    monkeypatch.setattr(corset_predict, "predict_corset", perfect)
    rows = corset_predict.evaluate_patients(dataset, ["p0000"], tmp_path / "m.ckpt", dataset)
    truth = json.loads((dataset / "p0000" / "truth.json").read_text())
    assert calls == [truth["xray_spacing_mm"]]
    assert rows[0]["fscore"] == 1.0, rows  # the true corset scored against itself
    assert rows[0]["chamfer_pct"] < rows[0]["baseline_chamfer_pct"], rows


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda config: config.pop("features"), "its config lacks features"),  # was KeyError
        (lambda config: config.update(prior_offset_mm=float("nan")), "no measured prior"),
        (lambda config: config.update(prior_trim_top=0.0), "its prior band (0.1"),  # was exit 0
    ],
)
def test_a_checkpoint_with_a_damaged_config_exits_2(
    dataset, tiny_checkpoint, tmp_path, recon, edit, message
):
    import torch

    state = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["config"]["prior_trim_bottom"] = 0.1
    edit(state["hyper_parameters"]["config"])
    torch.save(state, tmp_path / "damaged.ckpt")
    patient = dataset / "p0000"
    code, _, err = recon("predict", "corset", "--photos", patient / "photos", "--spine",
                         patient / "spine.png", "-c", tmp_path / "damaged.ckpt", "-o",
                         tmp_path / "c.stl")  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "c.stl").exists()


@pytest.mark.parametrize("spacing", [(), ("--pixel-spacing", "0.2", "0.2")])
def test_a_film_without_a_spine_is_named(dataset, tiny_checkpoint, tmp_path, recon, spacing):
    """embed-spine named the film that shows no spine; predict corset said only "error: no
    spine found in the X-ray (...)", with or without the pixel-spacing hint."""
    from recon.pipelines.common.io import write_png

    film = tmp_path / "film.png"
    write_png(film, np.random.default_rng(0).integers(0, 65535, (200, 160), dtype=np.uint16))
    out = tmp_path / "c.stl"
    code, _, err = recon("predict", "corset", "--photos", dataset / "p0000" / "photos", "--spine",
                         film, "-c", tiny_checkpoint, "-o", out, *spacing)  # fmt: skip
    assert code == 1 and err.startswith(f"error: {film}: no spine found"), err
    assert ("check the pixel spacing" in err) == bool(spacing), err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("name", ["w.png", "w.JPG", "w.stl", "w.ply"])
def test_views_out_named_as_a_file_is_refused(dataset, tmp_path, recon, name):
    """`--views-out w.png` made a folder named w.png, on which a later `--render` failed."""
    checkpoint = _touch_checkpoint(tmp_path / "m.ckpt")
    patient = dataset / "p0000"
    code, _, err = recon("predict", "corset", "--photos", patient / "photos", "--spine",
                         patient / "spine.png", "-c", checkpoint, "-o", tmp_path / "c.stl",
                         "--views-out", tmp_path / name)  # fmt: skip
    assert code == 2 and f"{name}: names a " in err and "--views-out is a folder" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / name).exists()


@pytest.mark.parametrize("command,mesh", [("backproject", "m.stl"), ("predict corset", "c.stl")])
def test_help_names_the_record_and_the_picture_as_they_are_written(
    recon, monkeypatch, command, mesh
):
    """The help said OUT.run.json and OUT.png side by side, but the record is appended
    (c.stl.run.json) while the picture replaces the suffix (c.png)."""
    monkeypatch.setenv("COLUMNS", "2000")
    code, out, _ = recon(*command.split(), "--help")
    stem = mesh.removesuffix(".stl")
    assert code == 0 and "OUT.png" not in out and "OUT.run.json" not in out, out
    assert f"{mesh} -> {mesh}.run.json" in out and f"{mesh} -> {stem}.png" in out, out


def test_synth_corset_says_its_cobb_range_is_of_sizes(tmp_path, recon, monkeypatch):
    """The table's "Cobb range (deg) 6.3 - 37.7" was the range of |Cobb| while the signed
    angles ran from -28.9: the row says |Cobb|, and --json gives both ranges."""
    monkeypatch.setenv("COLUMNS", "200")
    args = ("synth", "corset", "-n", "4", "--size", "64", "--seed", "3")
    code, out, err = recon(*args, "-o", tmp_path / "a", "--json")
    assert code == 0, err
    result = json.loads(out)
    signed = [
        p["cobb_deg"] for p in json.loads((tmp_path / "a" / "dataset.json").read_text())["patients"]
    ]
    assert min(signed) < 0 < max(signed), signed  # both sides, so the two ranges differ
    sizes = [abs(c) for c in signed]
    assert result["cobb_deg_range"] == pytest.approx([min(sizes), max(sizes)])
    assert result["signed_cobb_deg_range"] == pytest.approx([min(signed), max(signed)])
    code, out, err = recon(*args, "-o", tmp_path / "b")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "range (deg)" in line)
    assert "|Cobb| range (deg)" in row and f"{min(sizes):.1f} - {max(sizes):.1f}" in row, row


@pytest.fixture(scope="module")
def spineless_checkpoint(tiny_checkpoint, tmp_path_factory):
    """tiny_checkpoint's settings with spine_conditioning=false and an untrained generator of
    that kind (predict reads only the generator's weights)."""
    import torch

    from recon.pipelines.corset.task import build_generator

    state = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    config = state["hyper_parameters"]["config"]
    config["spine_conditioning"] = False
    torch.manual_seed(0)
    weights = build_generator(config).state_dict()
    kept = {k: v for k, v in state["state_dict"].items() if not k.startswith("generator.")}
    state["state_dict"] = {**kept, **{f"generator.{k}": v for k, v in weights.items()}}
    path = tmp_path_factory.mktemp("spineless") / "spineless.ckpt"
    torch.save(state, path)
    return path


def test_spine_is_needed_only_by_a_spine_conditioned_checkpoint(
    dataset, tiny_checkpoint, spineless_checkpoint, tmp_path, recon
):
    """--spine was required even for a model trained with spine_conditioning=false, which
    never reads the film: now it is needed (one line naming --spine and the checkpoint) only
    by a model that reads it, and given to one that does not, a warning says it is unused."""
    photos = dataset / "p0000" / "photos"
    out = tmp_path / "c.stl"
    code, _, err = recon("predict", "corset", "--photos", photos, "-c", tiny_checkpoint,
                         "-o", out)  # fmt: skip
    assert code == 2 and str(tiny_checkpoint) in err and "--spine" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    code, stdout, err = recon("predict", "corset", "--photos", photos, "-c", spineless_checkpoint,
                              "-o", out, "--json")  # fmt: skip
    assert code == 0 and out.is_file() and err == "", err
    assert json.loads(stdout)["cobb_deg"] is None
    code, _, err = recon("predict", "corset", "--photos", photos, "--spine",
                         dataset / "p0000" / "spine.png", "-c", spineless_checkpoint,
                         "-o", tmp_path / "d.stl", "-q")  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 1 and lines[0].startswith("warning: --spine "), err
    assert "is not used" in lines[0] and "spine_conditioning=false" in lines[0], err


def test_pixel_spacing_without_a_spine_is_refused(dataset, tmp_path, recon):
    checkpoint = _touch_checkpoint(tmp_path / "m.ckpt")
    code, _, err = recon("predict", "corset", "--photos", dataset / "p0000" / "photos", "-c",
                         checkpoint, "-o", tmp_path / "c.stl", "--pixel-spacing", 1, 1)  # fmt: skip
    assert code == 2 and "--pixel-spacing" in err and "--spine" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c.stl").exists()


def _self_crossings(mesh) -> tuple[int, bool]:
    """(pairs of faces that cross each other, open3d's watertight: closed, manifold and
    crossing nowhere) of a trimesh mesh, its vertices merged as in an STL read back."""
    import open3d as o3d

    merged = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces)),
    )
    merged.remove_duplicated_vertices()
    return len(np.asarray(merged.get_self_intersecting_triangles())), merged.is_watertight()


def test_a_shell_around_bumps_narrower_than_its_wall_does_not_cross_itself():
    """The inner wall moved in along the normals folds over where the surface curves tighter
    than the wall is thick: a predicted corset's small bumps gave a shell that trimesh calls
    watertight but whose wall crosses itself (79 face pairs in a 64 px prediction), which
    3D-printing slicers refuse or print wrongly."""
    import trimesh

    from recon.pipelines.corset.views import thicken

    around, rings = 240, 12
    theta = np.linspace(0, 2 * np.pi, around, endpoint=False)
    angle = (theta + np.pi) % (2 * np.pi) - np.pi
    radius = 100 + 6 * np.exp(-((angle * 100 / 3) ** 2))  # a ridge about 3 mm wide, 6 mm high
    height = np.linspace(0, 120, rings)
    vertices = np.array(
        [
            [r * np.cos(t), r * np.sin(t), z]
            for z in height
            for t, r in zip(theta, radius, strict=True)
        ]
    )
    faces = []
    for ring in range(rings - 1):
        for k in range(around):
            a, b = ring * around + k, ring * around + (k + 1) % around
            faces += [[a, b, b + around], [a, b + around, a + around]]  # outward
    surface = trimesh.Trimesh(vertices, np.array(faces), process=False)
    radial = surface.triangles_center[:, :2] / np.hypot(*surface.triangles_center[:, :2].T)[:, None]
    assert (np.einsum("ij,ij->i", surface.face_normals[:, :2], radial) > 0).all()  # outward
    shell = thicken(surface, 4.0)
    assert shell.is_watertight and shell.volume > 0
    assert _self_crossings(shell) == (0, True)
    inner = np.asarray(shell.vertices)[len(vertices) :]
    wall = np.hypot(*vertices[:, :2].T) - np.hypot(*inner[:, :2].T)
    assert np.median(wall) == pytest.approx(4.0, abs=0.01)  # 4 mm away from the ridge
    # the plain offset crossed itself there
    plain = trimesh.Trimesh(
        np.concatenate([vertices, vertices - surface.vertex_normals * 4.0]),
        np.concatenate([surface.faces, surface.faces[:, ::-1] + len(vertices)]),
        process=False,
    )
    assert _self_crossings(plain)[0] > 0
