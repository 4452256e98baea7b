"""Skull -> face: synthetic heads, check-data, prediction outputs, metrics and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """6 procedural heads at 16^3 (lateral radiographs), written by the CLI."""
    from recon.cli.app import main

    out = tmp_path_factory.mktemp("skull") / "set"
    with pytest.raises(SystemExit) as exit_:
        main(["synth", "skull", "-o", str(out), "--count", "6", "--resolution", "16", "-q"])
    assert exit_.value.code in (0, None)
    return out


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory):
    """A skull checkpoint (untrained net at 16^3) in the engine's format."""
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "skull.ckpt", "skull")


def _checkpoint(path, task: str, voxel_mm: float = 15.0):
    import torch

    from recon.pipelines.common.engine import config_dict
    from recon.pipelines.skull.task import SkullConfig, build_net

    config = config_dict(SkullConfig(resolution=16, size=32, channels=8, voxel_mm=voxel_mm))
    net = build_net(config)
    radius = np.linalg.norm(np.indices((16, 16, 16)) - 7.5, axis=0)
    ball = torch.as_tensor(np.where(radius < 6, 4.0, -4.0), dtype=torch.float32)
    shell = torch.as_tensor(np.where(np.abs(radius - 4.5) < 1, 4.0, -4.0), dtype=torch.float32)
    net.set_output_prior(shell, ball)  # untrained: the output is this prior
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"task": task, "config": config}}, path)
    return path


def test_synth_layout_and_truth(heads):
    names = sorted(p.name for p in heads.iterdir())
    assert "dataset.json" in names and "truth.json" in names
    assert [n for n in names if n.endswith(".png")] == [f"skull_{i:03d}.png" for i in range(6)]
    dataset = json.loads((heads / "dataset.json").read_text())
    assert dataset["voxel_mm"] == pytest.approx(15.0) and dataset["axes"] == ["x", "y", "z"]
    with np.load(heads / "skull_000_vox.npz") as data:
        skull, face = data["skull"], data["face"]
    assert skull.shape == face.shape == (16, 16, 16) and skull.dtype == bool
    assert skull.any() and face.sum() > skull.sum()
    truth = json.loads((heads / "truth.json").read_text())["subjects"]["skull_000"]
    glabella = truth["landmarks"]["glabella"]
    assert 3.0 < glabella["depth_mm"] < 9.0
    assert truth["render"]["rot_deg"][0] == pytest.approx(90.0, abs=2.5)  # lateral


def test_face_lies_at_the_table_depth_over_the_skull():
    """Along each landmark's normal, the skin (face field = 0) sits at the landmark's depth."""
    from recon.pipelines.skull.anatomy import random_params
    from recon.pipelines.skull.head import Head

    head = Head(random_params(np.random.default_rng(4)))
    errors = []
    for landmark in head.landmarks:
        steps = np.arange(0.0, 45.0, 0.05)
        ray = landmark.point[None] + steps[:, None] * landmark.normal[None]
        outside = np.flatnonzero(head.face(ray) > 0)
        errors.append(abs(steps[outside[0]] - landmark.depth_mm))
    assert np.median(errors) < 1.0, errors  # the nose and neighbours bend a few


def test_mean_depth_head_uses_table_means():
    from recon.pipelines.skull.anatomy import HeadParams
    from recon.pipelines.skull.head import TISSUE_DEPTH_MM, mean_depth_head

    head = mean_depth_head(HeadParams(body_mass=1.4, nose_mm=5.0))
    depths = {lm.name: lm.depth_mm for lm in head.landmarks}
    assert depths["pogonion"] == pytest.approx(TISSUE_DEPTH_MM["pogonion"][0])
    assert depths["mid_masseter_r"] == pytest.approx(TISSUE_DEPTH_MM["mid_masseter"][0])


def test_frontal_and_photo_images(tmp_path):
    from PIL import Image

    from recon.pipelines.skull.synth import synth_skull_dataset

    (tmp_path / "f").mkdir()
    (tmp_path / "p").mkdir()
    synth_skull_dataset(tmp_path / "f", 1, 2, 16, "frontal")
    synth_skull_dataset(tmp_path / "p", 1, 2, 16, "lateral", photo=True)
    xray = np.asarray(Image.open(tmp_path / "f" / "skull_000.png"))
    photo = np.asarray(Image.open(tmp_path / "p" / "skull_000.png"))
    assert xray.ndim == 2 and xray.std() > 20
    assert photo.shape == (128, 128, 3) and photo.std() > 10


def _silhouette(picture: np.ndarray) -> np.ndarray:
    """Pixels that differ from the picture's border colour (its background)."""
    grey = picture.astype(np.float64)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    background = np.median(np.r_[grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return np.abs(grey - background) > 25


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_lateral_photo_radiograph_and_render_face_the_same_way(tmp_path):
    """The lateral radiograph, the lateral photo of the same head and the side panel of the
    prediction's render all show the head from the subject's right, the face toward +column:
    each silhouette overlaps the radiograph's better as it is than mirrored."""
    from PIL import Image

    from recon.pipelines.skull.predict import HEADS, render_png
    from recon.pipelines.skull.score import grid_mesh
    from recon.pipelines.skull.synth import FIELD_MM, synth_skull_dataset

    for folder, photo in (("x", False), ("p", True)):
        (tmp_path / folder).mkdir()
        synth_skull_dataset(tmp_path / folder, 1, 3, 32, "lateral", photo=photo)
    xray = _silhouette(np.asarray(Image.open(tmp_path / "x" / "skull_000.png")))
    photo = _silhouette(np.asarray(Image.open(tmp_path / "p" / "skull_000.png")))
    assert _overlap(xray, photo) > _overlap(xray, photo[:, ::-1]) + 0.1
    with np.load(tmp_path / "x" / "skull_000_vox.npz") as grids:
        meshes = {h: grid_mesh(grids[h].astype(np.float32), FIELD_MM / 32) for h in HEADS}
    picture = np.asarray(Image.open(render_png(meshes, tmp_path / "render.png", size=128)))
    side = _silhouette(picture[:, 128:])
    small = np.asarray(Image.fromarray(xray).resize((128, 128)))
    assert _overlap(small, side) > _overlap(small, side[:, ::-1]) + 0.05


def test_check_data_names_every_problem(heads, tmp_path, recon):
    bad = tmp_path / "bad"
    shutil.copytree(heads, bad)
    (bad / "skull_000_vox.npz").unlink()  # image without its npz
    np.savez(bad / "skull_001_vox.npz", skull=np.ones((4, 4, 4), bool))  # no face
    np.savez(bad / "skull_002_vox.npz", skull=np.ones((4, 4, 4), bool), face=np.ones((5, 5, 5)))
    np.savez(bad / "skull_003_vox.npz", skull=np.zeros((16,) * 3, bool), face=np.ones((16,) * 3))
    (bad / "skull_004.png").write_bytes(b"not an image")
    (bad / "skull_005_vox.npz").write_bytes(b"garbage")
    code, out, err = recon("check-data", "skull", bad, "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    kinds = {(p["kind"], p["path"]) for p in problems}
    # numpy's own message advised loading the damaged file with allow_pickle
    (detail,) = [p["detail"] for p in problems if p["path"] == "skull_005_vox.npz"]
    assert detail == "not an .npz file (no zip header): damaged or another format"
    assert kinds == {
        ("missing-voxels", "skull_000.png"),
        ("missing-array", "skull_001_vox.npz"),
        ("shape-mismatch", "skull_002_vox.npz"),
        ("empty-grid", "skull_003_vox.npz"),
        ("unreadable-image", "skull_004.png"),
        ("unreadable-voxels", "skull_005_vox.npz"),
    }
    code, _, _ = recon("check-data", "skull", heads)
    assert code == 0


def test_predict_writes_meshes_grids_and_render(heads, untrained_checkpoint, tmp_path, recon):
    out = tmp_path / "pred"
    code, stdout, err = recon(
        "predict", "skull", heads, "-c", untrained_checkpoint, "-o", out, "--render", "--json"
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert len(result["results"]) == 6
    for stem in ("skull_000", "skull_005"):
        assert (out / f"{stem}_skull.ply").is_file() and (out / f"{stem}_face.ply").is_file()
        assert (out / f"{stem}_render.png").is_file()
        with np.load(out / f"{stem}_vox.npz") as data:
            assert data["skull"].dtype == np.float16 and data["face"].shape == (16, 16, 16)
    # an untrained net returns its prior; in mm the face spans about a head (< 240 mm)
    import trimesh

    face = trimesh.load(out / "skull_000_face.ply")
    assert face.extents.max() <= 240.0 + 1e-6


@pytest.mark.parametrize("case", ["other-task", "not-an-image", "one-pixel"])
def test_bad_input_one_line_exit_2_nothing_written(
    case, heads, untrained_checkpoint, tmp_path, recon
):
    """A 1 x 1 picture was predicted (exit 0); predict voxel and parts refuse it, and so does
    skull now."""
    from PIL import Image

    checkpoint, image = untrained_checkpoint, heads / "skull_000.png"
    if case == "other-task":
        checkpoint = _checkpoint(tmp_path / "voxel.ckpt", "voxel")
    elif case == "not-an-image":
        image = tmp_path / "fake.png"
        image.write_text("this is text")
    else:
        image = tmp_path / "one.png"
        Image.new("L", (1, 1)).save(image)
    out = tmp_path / "out"
    code, stdout, err = recon("predict", "skull", image, "-c", checkpoint, "-o", out)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")
    expected = {"other-task": "voxel", "not-an-image": "not a readable image"}
    assert expected.get(case, "image is 1 x 1 pixels, need at least 8 x 8") in err
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_surface_distance_and_depth_definitions():
    import trimesh

    from recon.pipelines.common.metrics import landmark_tissue_depths, symmetric_surface_distance

    inner = trimesh.creation.icosphere(5, radius=50.0)
    outer = trimesh.creation.icosphere(5, radius=52.0)
    score = symmetric_surface_distance(outer, inner, tolerance=2.5)
    assert score.mean == pytest.approx(2.0, abs=0.15) and score.within == 1.0
    assert symmetric_surface_distance(outer, inner, tolerance=1.5).within == 0.0
    # slabs along +z: bone for z < 10 mm, face for z < 22 mm; landmark on the bone at z = 10
    z = (np.arange(40) + 0.5) * 1.0
    skull = np.broadcast_to(z < 10, (40, 40, 40)).astype(np.float32)
    face = np.broadcast_to(z < 22, (40, 40, 40)).astype(np.float32)
    depth = landmark_tissue_depths(skull, face, [[20, 20, 10]], [[0, 0, 1]], voxel=1.0)
    assert depth[0] == pytest.approx(12.0, abs=0.6)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--resolution", "48"], "invalid value for '--resolution': '48' is not one of '8', "),
        (["--view", "top"], "invalid value for '--view': 'top' is not one of 'lateral'"),
        (["--count", "0"], "--count must be in [1, 100000], not 0"),
        (["-n", "1000000"], "--count must be in [1, 100000], not 1000000"),
        (["--seed", "-1"], "--seed must be in [0, 4294967295], not -1"),
    ],
)
def test_synth_refuses_bad_settings(args, message, tmp_path, recon):
    code, _, err = recon("synth", "skull", "-o", tmp_path / "s", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "s").exists()


def test_synth_old_subjects_spelling_still_counts_with_a_warning(tmp_path, recon):
    """--subjects is the old spelling of -n/--count: it still sets the count, with one warning."""
    code, out, err = recon(
        "synth",
        "skull",
        "-o",
        tmp_path / "s",
        "--subjects",
        "2",
        "--resolution",
        "8",
        "-q",
        "--json",
    )
    assert code == 0, err
    assert (
        err == "warning: --subjects is deprecated and goes away in the next release; use --count\n"
    )
    assert len(list((tmp_path / "s").glob("skull_*_vox.npz"))) == 2


def test_skip_done_may_grow_a_set_but_not_shrink_it(tmp_path, recon):
    """-n 2 --skip-done on a set of 4 rewrote truth.json for 2 heads and left the other two,
    which training (it lists the folder) took while scoring read 2."""
    out = tmp_path / "set"
    code, _, err = recon("synth", "skull", "-o", out, "-n", "3", "--resolution", "16", "-q")
    assert code == 0, err
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    code, _, err = recon("synth", "skull", "-o", out, "-n", "2", "--resolution", "16",
                         "--skip-done", "-q")  # fmt: skip
    assert code == 2 and "holds a set made with the count 3 (run.json)" in err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    code, _, err = recon("synth", "skull", "-o", out, "-n", "4", "--resolution", "16",
                         "--skip-done", "-q")  # fmt: skip
    assert code == 0, err
    assert len(json.loads((out / "truth.json").read_text())["subjects"]) == 4


def test_skip_done_counts_as_the_command_line_does(tmp_path, recon):
    """synth pix3d counts models per class but makes 5 classes: -n 1 after -n 2 compared 10
    items with 1 model and passed, leaving models outside pix3d.json."""
    out = tmp_path / "p3"
    args = ["synth", "pix3d", "-o", out, "--views", "1", "-q"]
    assert recon(*args, "-n", "2")[0] == 0
    code, _, err = recon(*args, "-n", "1", "--skip-done")
    assert code == 2 and "holds a set made with the count 2 (run.json)" in err, err


def test_predict_writes_each_image_before_predicting_the_next(
    heads, untrained_checkpoint, tmp_path
):
    """Every image's grids were kept in memory until the last was predicted: memory grew with
    the number of images (2 MB each at 64^3), and a shard stopped near its end had written
    nothing, even with --skip-done."""
    from recon.pipelines.skull.predict import predict_skull

    images = [heads / f"skull_00{i}.png" for i in range(3)]
    names = [image.stem for image in images]
    seen = []

    def track(items, _description):
        for item in items:
            seen.append(sorted(p.name for p in tmp_path.glob("*_vox.npz")))
            yield item

    records = predict_skull(untrained_checkpoint, images, names, tmp_path, track=track)
    assert len(records) == 3
    assert seen == [[], ["skull_000_vox.npz"], ["skull_000_vox.npz", "skull_001_vox.npz"]]


@pytest.mark.parametrize(
    "case,message",
    [
        ("no-size", "the checkpoint's config has no setting size"),
        ("negative-voxel", "the checkpoint's setting voxel_mm must be in [0, 1000], not -15"),
        ("text-voxel", "the checkpoint's setting voxel_mm takes a number, not 'abc'"),
        ("other-resolution", "weights do not fit the skull model (Missing key(s) in state_dict:"),
    ],
)
def test_checkpoint_with_unusable_settings_is_one_line(
    case, message, heads, untrained_checkpoint, tmp_path, recon
):
    """A config without `size` was a raw KeyError (exit 1), a negative voxel_mm mirrored every
    mesh without a word, and weights of another grid size were reported only as torch's
    heading "Error(s) in loading state_dict for SkullNet:"."""
    import torch

    checkpoint = torch.load(untrained_checkpoint, weights_only=True)
    config = checkpoint["hyper_parameters"]["config"]
    if case == "no-size":
        del config["size"]
    elif case == "negative-voxel":
        config["voxel_mm"] = -15.0
    elif case == "text-voxel":
        config["voxel_mm"] = "abc"
    else:
        config["resolution"] = 32
    path = tmp_path / "odd.ckpt"
    torch.save(checkpoint, path)
    out = tmp_path / "out"
    code, stdout, err = recon(
        "predict", "skull", heads / "skull_000.png", "-c", path, "-o", out, "--json"
    )
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert json.loads(stdout)["exit_code"] == 2
    assert not out.exists()


def test_a_resume_on_a_set_of_another_resolution_says_what_a_resume_can_do(heads, tmp_path, recon):
    """A resume was told to `leave it 0` (resolution), a setting it cannot change: the
    checkpoint's resolution holds. A new run keeps that advice."""
    import torch

    from recon.pipelines.common.engine import config_dict
    from recon.pipelines.skull.task import SkullConfig

    config = config_dict(SkullConfig(data=str(heads), resolution=32, size=32, channels=8))
    checkpoint = tmp_path / "last.ckpt"
    saved = {"task": "skull", "config": config}
    torch.save(
        {"state_dict": {}, "hyper_parameters": saved, "optimizer_states": [], "loops": {}},
        checkpoint,
    )
    out = tmp_path / "run"
    code, _, err = recon("train", "skull", "--resume", checkpoint, "--epochs", "5", "-o", out,
                         "--device", "cpu")  # fmt: skip
    assert code == 2, err
    assert err.strip() == (
        f"error: {heads}: its grids are 16^3, and {checkpoint} was trained on 32^3 grids: "
        "resume with that set (moved is fine), or start a new run"
    )
    assert not out.exists()
    code, _, err = recon("train", "skull", "--data", heads, "--set", "resolution=32", "-o", out,
                         "--device", "cpu")  # fmt: skip
    assert code == 2, err
    assert err.strip() == (
        "error: setting resolution 32: the data's grids are 16^3 (leave it 0 to use them)"
    )
    assert not out.exists()


def test_check_data_flags_what_training_refuses(heads, tmp_path, recon):
    """check-data passed a 4 x 4 image, a float image outside [0, 1] and voxel_mm Infinity
    (JSON reads it), which training then refused or wrote into the checkpoint."""
    from PIL import Image

    bad = tmp_path / "bad"
    shutil.copytree(heads, bad)
    Image.new("L", (4, 4)).save(bad / "skull_001.png")
    (bad / "skull_002.png").unlink()
    Image.fromarray(np.full((64, 64), 900.0, np.float32)).save(bad / "skull_002.tif")
    dataset = json.loads((bad / "dataset.json").read_text())
    (bad / "dataset.json").write_text(json.dumps({**dataset, "voxel_mm": float("inf")}))
    code, out, err = recon("check-data", "skull", bad, "--json")
    assert code == 1, err
    kinds = {(p["kind"], p["path"]) for p in json.loads(out)["problems"]}
    assert kinds == {
        ("image-too-small", "skull_001.png"),
        ("unreadable-image", "skull_002.tif"),
        ("unreadable-dataset-json", "dataset.json"),
    }


def test_scores_count_subjects_without_a_face_surface():
    """An empty predicted face had NaN distances, which the summary's mean skipped: a model
    that lost the face on some heads showed the mean distance of the others alone."""
    from recon.pipelines.skull.score import score_subject, summarise

    radius = np.linalg.norm(np.indices((16, 16, 16)) - 7.5, axis=0)
    truth = {"skull": radius < 4, "face": radius < 6}
    found = {h: g.astype(np.float32) for h, g in truth.items()}
    lost = {"skull": found["skull"], "face": np.zeros((16, 16, 16), np.float32)}
    rows = [score_subject(found, truth, 15.0, samples=2000), score_subject(lost, truth, 15.0)]
    assert [row["face_missing"] for row in rows] == [0.0, 1.0]
    summary = summarise(rows)
    assert summary["face_missing"] == 0.5 and summary["face_mean"] == pytest.approx(0.0, abs=1)
    assert summary["face_within"] == 0.5


@pytest.mark.parametrize(
    "shape,message",
    [
        ((12, 12, 12), "grid (12, 12, 12): resolution must be 8, 16, 32, 64, 128, ... not 12"),
        ((16, 16, 20), "grid (16, 16, 20) is not cubic; the skull model predicts R x R x R"),
    ],
)
def test_check_data_flags_grids_the_model_cannot_predict(shape, message, tmp_path, recon):
    """A set of 12^3 or 16 x 16 x 20 grids passed check-data, and `train skull` refused it."""
    from PIL import Image

    for index in range(2):
        Image.fromarray(np.full((32, 32), 60 * index, np.uint8)).save(tmp_path / f"h{index}.png")
        grid = np.zeros(shape, bool)
        grid[2:8, 2:8, 2 + index : 8] = True  # two subjects: identical npz files would be one
        np.savez(tmp_path / f"h{index}_vox.npz", skull=grid, face=grid)
    code, out, err = recon("check-data", "skull", tmp_path, "--json")
    assert code == 1, err
    [problem] = json.loads(out)["problems"]
    assert problem["kind"] == "shape-mismatch" and problem["path"] == "h0_vox.npz"
    assert message in problem["detail"], problem


def test_check_data_flags_a_dataset_json_of_another_grid_shape(tmp_path, recon):
    """A dataset.json copied from a 64^3 set beside 16^3 grids passed check-data, and every
    score in mm came out scaled by its voxel_mm (4x here)."""
    from PIL import Image

    for index in range(2):
        Image.fromarray(np.full((32, 32), 60 * index, np.uint8)).save(tmp_path / f"h{index}.png")
        grid = np.zeros((16, 16, 16), bool)
        grid[2:8, 2:8, 2 + index : 8] = True  # two subjects: identical npz files would be one
        np.savez(tmp_path / f"h{index}_vox.npz", skull=grid, face=grid)
    dataset = {"voxel_mm": 3.75, "shape": [64, 64, 64]}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    code, out, err = recon("check-data", "skull", tmp_path, "--json")
    assert code == 1, err
    [problem] = json.loads(out)["problems"]
    assert problem["kind"] == "shape-mismatch" and problem["path"] == "dataset.json"
    assert "states grids of (64, 64, 64), the grids are (16, 16, 16)" in problem["detail"]
    (tmp_path / "dataset.json").write_text(json.dumps({**dataset, "shape": [16, 16, 16]}))
    code, out, err = recon("check-data", "skull", tmp_path, "--json")
    assert code == 0 and json.loads(out)["problems"] == [], out


def test_scoring_a_set_of_another_resolution_is_one_line(untrained_checkpoint, tmp_path):
    """A 16^3 checkpoint scored on 8^3 heads failed inside torch with a shape error."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.skull.score import score_folder
    from recon.pipelines.skull.synth import synth_skull_dataset

    synth_skull_dataset(tmp_path, 1, 0, 8)
    with pytest.raises(
        BadInput, match=r"grids \(8, 8, 8\), the checkpoint predicts \(16, 16, 16\)"
    ):
        score_folder(untrained_checkpoint, tmp_path)


def test_check_data_names_its_root_as_an_absolute_path(heads, recon, monkeypatch):
    """`check-data --json` echoed the root as typed ("skulls"); other commands give paths whole."""
    monkeypatch.chdir(heads.parent)
    code, out, err = recon("check-data", "skull", heads.name, "--json")
    assert code == 0, err
    assert json.loads(out)["root"] == str(heads)


def test_dataset_json_keys_are_optional_and_a_bad_file_is_named(tmp_path):
    """README: dataset.json is optional, as is each key. One without voxel_mm was refused with
    a raw KeyError ("unreadable (needs a number voxel_mm): 'voxel_mm'")."""
    import pytest

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.skull.data import read_voxel_mm

    index = tmp_path / "dataset.json"
    index.write_text('{"shape": [16, 16, 16]}')
    assert read_voxel_mm(tmp_path) is None
    index.write_text('{"voxel_mm": 2.5}')
    assert read_voxel_mm(tmp_path) == 2.5
    for text, message in (
        ('{"voxel_mm": "big"}', "voxel_mm must be a positive number, not 'big'"),
        ('{"voxel_mm": -1}', "voxel_mm must be a positive number, not -1"),
        ("{voxel_mm: 2}", "not readable JSON"),
        ("[2.5]", "not a JSON object"),
    ):
        index.write_text(text)
        with pytest.raises(BadInput, match=message):
            read_voxel_mm(tmp_path)
