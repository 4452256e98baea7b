"""End to end at tiny scale: a short CPU training must beat a naive corset, and predict runs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from recon.cli.app import main
from recon.pipelines.common.io import load_mesh, write_png
from recon.pipelines.common.metrics import surface_score
from recon.pipelines.common.outputs import write_json
from recon.pipelines.corset.patients import synth_corset_dataset
from recon.pipelines.corset.predict import train_tiny
from recon.pipelines.corset.task import load_generator, load_patients, with_prior
from recon.pipelines.corset.views import corset_from_views, corset_views_doc, decode_views


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("corset_learning")
    train, test = root / "train", root / "test"
    train.mkdir()
    test.mkdir()
    synth_corset_dataset(train, 24, 64, seed=0)
    synth_corset_dataset(test, 3, 64, seed=9)
    checkpoint = train_tiny(train, root / "run", epochs=40)
    return train, test, checkpoint


def _mean_views_corset(train: Path, patient: Path):
    """Naive prediction: the per-pixel mean of the training corset views, in the patient frame."""
    _, _, targets, _, _ = load_patients(train, 64)
    photos_doc = json.loads((patient / "photos" / "views.json").read_text())
    doc = corset_views_doc(photos_doc)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for view, depth in zip(doc["views"], decode_views(targets.mean(axis=0)), strict=True):
            write_png(folder / view["depth"], depth)
        write_json(folder / "views.json", doc)
        return corset_from_views(folder)


def test_trained_model_beats_the_mean_corset(trained, tmp_path, capsys):
    train, test, checkpoint = trained
    model, naive = [], []
    for name in ("p0000", "p0001", "p0002"):
        patient = test / name
        out = tmp_path / f"{name}.stl"
        with pytest.raises(SystemExit) as exit_info:
            main(
                [
                    "predict",
                    "corset",
                    "--photos",
                    str(patient / "photos"),
                    "--spine",
                    str(patient / "spine.png"),
                    "-c",
                    str(checkpoint),
                    "-o",
                    str(out),
                    "--render",
                    "--json",
                ]
            )
        assert exit_info.value.code in (0, None)
        result = json.loads(capsys.readouterr().out)
        assert result["watertight"]  # its time: benchmarks/corset.py
        assert out.with_suffix(".png").is_file()  # --render: the picture beside OUT
        reference = load_mesh(patient / "corset.stl")
        model.append(surface_score(load_mesh(out), reference, 0.02, 20_000).fscore)
        naive.append(
            surface_score(_mean_views_corset(train, patient), reference, 0.02, 20_000).fscore
        )
    assert np.mean(model) >= 0.7, f"F-score@2% {np.mean(model):.3f}"
    assert np.mean(model) >= np.mean(naive) + 0.1, f"{np.mean(model):.3f} vs {np.mean(naive):.3f}"


def test_training_improves_on_the_prior_views_of_held_out_patients(trained):
    """The generator starts as its prior (the offset torso); training must bring its views of
    patients it never saw closer to the true corset views."""
    import torch

    _, test, checkpoint = trained
    generator, config = load_generator(checkpoint)
    _, photos, targets, embeddings, scales = load_patients(test, 64)
    x = with_prior(photos, scales, config)
    with torch.no_grad():
        views = generator(torch.from_numpy(x), torch.from_numpy(embeddings)).numpy()
    model, prior = np.abs(views - targets).mean(), np.abs(x[:, -8:] - targets).mean()
    assert model < 0.99 * prior, f"view L1 {model:.5f} vs the prior's {prior:.5f}"


def test_checkpoint_of_another_task_is_refused(trained, tmp_path, capsys):
    import torch

    train, test, checkpoint = trained
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["task"] = "voxel"
    torch.save(state, tmp_path / "other.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "predict",
                "corset",
                "--photos",
                str(test / "p0000" / "photos"),
                "--spine",
                str(test / "p0000" / "spine.png"),
                "-c",
                str(tmp_path / "other.ckpt"),
                "-o",
                str(tmp_path / "c.stl"),
            ]
        )
    assert exit_info.value.code == 2 and "voxel" in capsys.readouterr().err
    assert not (tmp_path / "c.stl").exists()


def test_demo_corset_step_beats_the_torso_offset_on_another_seed(tmp_path):
    """The demo's corset step (20 patients at 128 px, 40 epochs) on another seed than the demo's
    own: on 6 held-out patients its mean Chamfer-L1 is the demo's margin below the baseline's
    (the true torso offset by the mean clearance and wall; seeds 0 and 1 measured 0.497 against
    0.555 and 0.514 against 0.590), and its embed-spine row is within target."""
    import torch

    from recon.pipelines.corset.predict import demo_step

    torch.set_num_threads(1)
    rows = demo_step(tmp_path, seed=1, track=lambda items, _description: items)
    assert [row.ok for row in rows] == [True, True, None]
    assert rows[1].value < rows[2].value
