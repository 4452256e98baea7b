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
    kinds = {(p["kind"], p["path"]) for p in json.loads(out)["problems"]}
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
