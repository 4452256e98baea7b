"""The shared training engine: run folder, seeded resume equivalence, checkpoint safety."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from recon.pipelines.common.engine import (
    RunOptions,
    TaskSpec,
    TrainConfig,
    config_dict,
    fit,
    load_checkpoint,
    resolve_config,
    seeded_loader,
)
from recon.pipelines.common.errors import BadInput


@dataclass
class ToyConfig(TrainConfig):
    epochs: int = 4
    batch_size: int = 8
    lr: float = 0.05
    hidden: int = 16
    dropout: float = 0.2


def build_toy(cfg: ToyConfig):
    """y = sin(3 x) regression with dropout, so RNG state matters for reproducibility."""
    import lightning as L
    from torch import nn
    from torch.utils.data import TensorDataset

    class Toy(L.LightningModule):
        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": "toy", "config": config})
            self.net = nn.Sequential(
                nn.Linear(1, config["hidden"]),
                nn.Tanh(),
                nn.Dropout(config["dropout"]),
                nn.Linear(config["hidden"], 1),
            )

        def training_step(self, batch, _):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train/loss", loss, on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val/mse", nn.functional.mse_loss(self.net(x), y), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.hparams.config["lr"])

    def data():
        g = torch.Generator().manual_seed(123)
        x = torch.rand(96, 1, generator=g) * 2 - 1
        return TensorDataset(x, torch.sin(3 * x))

    return Toy(config_dict(cfg)), split_data(data, 64, cfg, val_batch=32)


def split_data(make, train_count: int, cfg, val_batch: int, workers: int = 0):
    """A data module over the dataset make() returns: its first train_count items train (seeded
    shuffle), the rest validate in batches of val_batch."""
    import lightning as L

    from recon.pipelines.common.sampling import loader_epoch

    class SplitData(L.LightningDataModule):
        def setup(self, stage=None):
            data = make()
            self.train_set = torch.utils.data.Subset(data, range(train_count))
            self.val_set = torch.utils.data.Subset(data, range(train_count, len(data)))

        def train_dataloader(self):
            epoch = loader_epoch(self)
            return seeded_loader(self.train_set, cfg.batch_size, cfg.seed, True, workers, epoch)

        def val_dataloader(self):
            return seeded_loader(self.val_set, val_batch, cfg.seed, shuffle=False)

    return SplitData()


TOY = TaskSpec(name="toy", config=ToyConfig, build=build_toy, monitor="val/mse", mode="min")


def run(out: Path, epochs: int, resume: Path | None = None) -> dict:
    cfg = resolve_config(TOY, None, {"epochs": epochs})
    return fit(TOY, cfg, RunOptions(out=out, resume=resume, device="cpu", quiet=True))


def test_run_folder_and_learning(tmp_path):
    result = run(tmp_path / "run", epochs=4)
    out = Path(result["out"])
    for name in (
        "config.yaml",
        "metrics.csv",
        "curves.png",
        "run.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (out / name).is_file(), name
    # sin(3x) has variance ~0.5 on [-1, 1]; four epochs of Adam must get well below it
    assert result["metrics"]["val/mse"] < 0.25
    config, state = load_checkpoint(out / "checkpoints" / "best.ckpt", "toy")
    assert config["hidden"] == 16 and any(k.startswith("net.") for k in state)


def test_a_stop_while_the_curves_are_drawn_leaves_the_run_record(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM after the last epoch, while curves.png was drawn, left a finished run
    without run.json (it was written after the picture)."""
    import recon.pipelines.common.engine as engine

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "plot_curves", stopped)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", epochs=1)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["metrics"]["epochs_run"] == 1 and record["metrics"]["last_checkpoint"]


def test_resumed_run_equals_uninterrupted(tmp_path):
    straight = run(tmp_path / "a", epochs=4)
    run(tmp_path / "b", epochs=2)
    resumed = run(tmp_path / "b", epochs=4, resume=tmp_path / "b/checkpoints/last.ckpt")
    assert resumed["epochs_run"] == straight["epochs_run"]
    assert resumed["metrics"]["val/mse"] == pytest.approx(straight["metrics"]["val/mse"], rel=1e-6)
    _, a = load_checkpoint(tmp_path / "a/checkpoints/last.ckpt", "toy")
    _, b = load_checkpoint(tmp_path / "b/checkpoints/last.ckpt", "toy")
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    # metrics.csv keeps the first two epochs and holds the same rows as the straight run's
    rows_a, rows_b = metrics_rows(tmp_path / "a"), metrics_rows(tmp_path / "b")
    assert sorted({int(r["epoch"]) for r in rows_b}) == [0, 1, 2, 3]
    assert len(rows_b) == len(rows_a)
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            if row_a[key] != row_b[key]:
                assert float(row_b[key]) == pytest.approx(float(row_a[key]), rel=1e-6), key


def metrics_rows(folder: Path) -> list[dict]:
    import csv

    with (folder / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_best_checkpoint_is_weights_only_and_last_is_written_every_epoch(tmp_path):
    import lightning as L

    seen = []

    class LastAtEpochStart(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            last = tmp_path / "run" / "checkpoints" / "last.ckpt"
            if last.is_file():
                seen.append(torch.load(last, map_location="cpu", weights_only=True)["epoch"])

    cfg = resolve_config(TOY, None, {"epochs": 3})
    options = RunOptions(tmp_path / "run", device="cpu", quiet=True)
    options.extra_callbacks.append(LastAtEpochStart())
    result = fit(TOY, cfg, options)
    assert seen == [0, 1]  # a run stopped at any point can resume from the epoch before
    best = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=True)
    last = torch.load(result["last_checkpoint"], map_location="cpu", weights_only=True)
    assert "optimizer_states" not in best and "callbacks" not in best
    assert "optimizer_states" in last and "callbacks" in last
    assert best["hyper_parameters"]["task"] == "toy"
    assert (
        Path(result["best_checkpoint"]).stat().st_size
        < Path(result["last_checkpoint"]).stat().st_size
    )


def test_failed_resume_leaves_the_run_folder_unchanged(tmp_path):
    out = tmp_path / "run"
    run(out, epochs=2)
    before = snapshot(out)
    last = out / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    cropped = {
        **state,
        "state_dict": {k: v for k, v in state["state_dict"].items() if "0." not in k},
    }
    torch.save(cropped, tmp_path / "cropped.ckpt")
    other = {**state, "hyper_parameters": {**state["hyper_parameters"], "task": "voxel"}}
    torch.save(other, tmp_path / "other.ckpt")
    cases = [
        (out / "checkpoints" / "best.ckpt", {}, "weights only"),
        (tmp_path / "cropped.ckpt", {}, "weights do not fit"),
        (tmp_path / "other.ckpt", {}, "task 'voxel', not 'toy'"),
        (last, {"hidden": 32}, "settings hidden differ"),
        (tmp_path / "missing.ckpt", {}, "no such checkpoint"),
    ]
    for checkpoint, changes, message in cases:
        cfg = resolve_config(TOY, None, {"epochs": 4, **changes})
        with pytest.raises(BadInput, match=message):
            fit(TOY, cfg, RunOptions(out=out, resume=checkpoint, device="cpu", quiet=True))
        assert snapshot(out) == before, message


def test_a_checkpoint_that_records_no_task_is_named_so(tmp_path):
    """A checkpoint without hyper-parameters was refused as `a checkpoint of task None`."""
    from recon.pipelines.common.checkpoints import load_checkpoint, load_resume_checkpoint

    path = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}, "optimizer_states": [], "loops": {}}, path)
    message = f"{path}: not a recon checkpoint of task 'toy' (it records no task)"
    for load in (load_checkpoint, load_resume_checkpoint):
        with pytest.raises(BadInput) as refused:
            load(path, "toy")
        assert str(refused.value) == message


@pytest.mark.parametrize(
    ("flags", "start"),
    [
        ({"devices": "0"}, "--devices 0"),
        ({"devices": "99"}, "--devices 99"),
        ({"strategy": "nonsense"}, "--strategy nonsense"),
        ({"precision": "nonsense"}, "--precision nonsense"),
        ({"num_nodes": 0}, "--num-nodes 0"),
        ({"device": "cuda"}, "--device cuda"),
        ({"logger": "wandb"}, "--logger"),
    ],
)
def test_bad_scale_flags_are_one_line_naming_the_flag(tmp_path, flags, start):
    if flags.get("device") == "cuda" and torch.cuda.is_available():
        flags = {"device": "cuda", "strategy": "nonsense"}
        start = "--strategy nonsense"
    options = {"device": "cpu", **flags}
    cfg = resolve_config(TOY, None, {"epochs": 1})
    with pytest.raises(BadInput) as caught:
        fit(TOY, cfg, RunOptions(out=tmp_path / "run", quiet=True, **options))
    assert str(caught.value).startswith(start) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_16_mixed_on_cpu_is_one_note_and_no_library_warning(tmp_path, capsys):
    import warnings

    cfg = resolve_config(TOY, None, {"epochs": 1})
    options = RunOptions(out=tmp_path / "run", device="cpu", precision="16-mixed")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(TOY, cfg, options)
    assert [str(w.message) for w in caught] == []
    notes = [line for line in capsys.readouterr().err.splitlines() if "16-mixed" in line]
    assert notes == [
        "note: --precision 16-mixed runs as bf16-mixed on CPU (float16 autocast needs a GPU)"
    ]


def test_shards_of_a_sampler_make_the_single_process_batches():
    from recon.pipelines.common.engine import EpochShuffle

    def order(size, rank, world, epoch):
        sampler = EpochShuffle(size, seed=5, shuffle=True, rank=rank, world=world)
        sampler.set_epoch(epoch)
        return list(sampler)

    single = order(24, 0, 1, epoch=3)
    shards = [order(24, r, 2, epoch=3) for r in range(2)]
    for k in range(3):  # batch 4 on each of 2 ranks == batch 8 on one process
        together = shards[0][4 * k : 4 * k + 4] + shards[1][4 * k : 4 * k + 4]
        assert sorted(together) == sorted(single[8 * k : 8 * k + 8])
    assert single == order(24, 0, 1, epoch=3) and single != order(24, 0, 1, epoch=4)
    odd = [order(21, r, 2, epoch=0) for r in range(2)]  # padded by wrapping: equal lengths
    assert len(odd[0]) == len(odd[1]) == 11 and set(odd[0]) | set(odd[1]) == set(range(21))


def test_checkpoint_of_another_task_or_with_code_is_refused(tmp_path):
    result = run(tmp_path / "run", epochs=1)
    with pytest.raises(BadInput, match="task 'toy', not 'voxel'"):
        load_checkpoint(Path(result["last_checkpoint"]), "voxel")
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hook": BadInput("x")}, evil)
    with pytest.raises(BadInput, match="pickled"):
        load_checkpoint(evil, "toy")
    # a picture given as the checkpoint was said to carry pickled code
    picture = tmp_path / "x.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(BadInput, match="x.png: not a PyTorch checkpoint"):
        load_checkpoint(picture, "toy")


def test_non_empty_run_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(BadInput, match="holds files no recon command wrote"):
        run(tmp_path / "run", epochs=1)
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"


def test_config_resolution_order_and_errors(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("hidden: 32\nlr: 0.01\n")
    cfg = resolve_config(TOY, yaml_file, {"lr": 0.5, "epochs": None})
    assert (cfg.hidden, cfg.lr, cfg.epochs) == (32, 0.5, 4)
    with pytest.raises(BadInput, match="no setting widht"):
        resolve_config(TOY, None, {"widht": 3})
    with pytest.raises(BadInput, match="whole number"):
        resolve_config(TOY, None, {"hidden": "many"})
    # a run's own config.yaml names its task: read back as settings of that task only
    out = tmp_path / "run"
    run(out, epochs=1)
    again = resolve_config(TOY, out / "config.yaml", {})
    assert again.epochs == 1 and again.seed == resolve_config(TOY, None, {}).seed
    other = tmp_path / "other.yaml"
    other.write_text("task: voxel\nepochs: 1\n")
    with pytest.raises(BadInput, match="settings of task 'voxel', not 'toy'"):
        resolve_config(TOY, other, {})


def test_cli_resume_as_the_readme_writes_it(recon, tmp_path, monkeypatch):
    """`recon train TASK --resume RUN/checkpoints/last.ckpt --out RUN --epochs N`: the task's
    data and settings come from the checkpoint, from any working folder (the data root given as
    a relative path is kept absolute); metrics.csv keeps every epoch; a moved set is given
    again with --data."""
    from recon.pipelines.occupancy.pix3d import synth_pix3d

    synth_pix3d(tmp_path / "p3", models_per_class=1, views_per_model=2, seed=1)
    run_dir = tmp_path / "run"
    tiny = ["--set", "size=32", "--set", "hidden=32", "--batch-size", "4", "--device", "cpu"]
    first = ["train", "voxel", "--data", "p3", *tiny, "--epochs", "1", "-o", run_dir]
    monkeypatch.chdir(tmp_path)
    code, _, err = recon(*first, "-q", "--logger", "tensorboard")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a cluster job resumes from its own folder
    assert code == 0, err
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    last = run_dir / "checkpoints" / "last.ckpt"

    # --print-config with --resume printed the defaults (size 224), not what the resume uses
    before = sorted((p, p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
    code, out, err = recon("train", "voxel", "--resume", run_dir, "--print-config", "--epochs", 5)
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert (printed["size"], printed["hidden"], printed["epochs"]) == (32, 32, 5)
    assert printed["data"] == str(tmp_path / "p3")
    code, out, err = recon("train", "voxel", "--resume", last, "--print-config", "--set", "size=64")
    assert code == 2 and "differ from them: size" in err and out == "", err
    assert sorted((p, p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before

    code, _, err = recon("train", "voxel", "--resume", last, "--epochs", "2", "--lr", "0.5", "-q")
    assert code == 2 and "lr" in err and len(err.strip().splitlines()) == 1
    code, _, err = recon("train", "voxel", "--resume", last, "--epochs", "2", "--strategy", "x")
    assert code == 2 and err.startswith("error: --strategy x:")
    assert len(err.strip().splitlines()) == 1

    code, out, err = recon("train", "voxel", "--resume", last, "--out", run_dir, "--epochs", "2")
    assert code == 0, err
    assert "processes" in out
    epochs = [int(r["epoch"]) for r in metrics_rows(run_dir) if r.get("val/iou")]
    assert epochs == [0, 1]
    config = (run_dir / "config.yaml").read_text()
    assert "epochs: 2" in config and str(tmp_path / "p3") in config

    (tmp_path / "p3").rename(tmp_path / "scratch_p3")  # the set copied to node-local scratch
    code, _, err = recon("train", "voxel", "--resume", last, "--epochs", "3", "-q")
    assert code == 2 and f"its data root {tmp_path / 'p3'} is not there; pass --data" in err
    moved = ["--data", tmp_path / "scratch_p3", "--epochs", "3", "-q"]
    code, _, err = recon("train", "voxel", "--resume", tmp_path / "elsewhere", *moved)
    assert code == 2 and "a folder without checkpoints/last.ckpt" in err
    code, _, err = recon("train", "voxel", "--resume", run_dir, *moved)  # the run folder itself
    assert code == 0, err
    assert [int(r["epoch"]) for r in metrics_rows(run_dir) if r.get("val/iou")] == [0, 1, 2]
    assert str(tmp_path / "scratch_p3") in (run_dir / "config.yaml").read_text()
    code, _, err = recon("train", "voxel", "--resume", last, *moved)  # nothing left to train
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{last}: the run already finished 3 epochs (--epochs 3); raise --epochs" in err
    (tmp_path / "linked").symlink_to(tmp_path / "scratch_p3")  # the same set through a link
    code, _, err = recon("train", "voxel", "--resume", last, "--data", tmp_path / "linked",
                         "--epochs", "4", "-q")  # fmt: skip
    assert code == 0, err

    # another set (same file names, other pictures), or the set grown: its splits would differ
    synth_pix3d(tmp_path / "other", models_per_class=1, views_per_model=2, seed=2)
    synth_pix3d(tmp_path / "grown", models_per_class=2, views_per_model=2, seed=1)
    before = snapshot(run_dir)
    for name, now in (("other", "other items in the splits"), ("grown", "now 16 training")):
        changed = ["--data", tmp_path / name, "--epochs", "5", "-q"]
        code, _, err = recon("train", "voxel", "--resume", last, *changed)
        assert code == 2 and f"not the set {last} was trained on (8 training" in err, err
        assert now in err and len(err.strip().splitlines()) == 1
        assert snapshot(run_dir) == before


def test_training_loader_drops_only_a_lone_last_sample():
    """Batch normalisation cannot train on a batch of one: a shuffled loader drops such a last
    batch, keeps any larger remainder, and validation keeps every sample."""
    from recon.pipelines.common.sampling import seeded_loader

    def sizes(count, batch, shuffle):
        loader = seeded_loader(list(range(count)), batch, seed=0, shuffle=shuffle)
        return [len(b) for b in loader]

    assert sizes(5, 2, shuffle=True) == [2, 2]
    assert sizes(7, 3, shuffle=True) == [3, 3]
    assert sizes(8, 3, shuffle=True) == [3, 3, 2]
    assert sizes(5, 2, shuffle=False) == [2, 2, 1]
    assert sizes(1, 4, shuffle=True) == [1]


@dataclass
class ConvToyConfig(TrainConfig):
    epochs: int = 2
    batch_size: int = 8
    lr: float = 0.01


def build_conv_toy(cfg: ConvToyConfig):
    """Images -> 2D conv, transposed conv and a 3D conv -> the image's mean; every weight's
    layout is recorded at each training step."""
    import lightning as L
    from torch import nn
    from torch.utils.data import TensorDataset

    class ConvToy(L.LightningModule):
        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": "convtoy", "config": config})
            self.down = nn.Conv2d(2, 4, 3, stride=2, padding=1)
            self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
            self.depth = nn.Conv3d(1, 1, 3, padding=1)
            self.layouts: list[tuple[bool, bool, bool]] = []

        def forward(self, x):
            y = self.up(torch.relu(self.down(x)))
            return self.depth(y[:, None]).mean(dim=(1, 2, 3, 4))

        def training_step(self, batch, _):
            last = torch.channels_last
            self.layouts.append(
                (
                    self.down.weight.is_contiguous(memory_format=last),
                    self.up.weight.is_contiguous(memory_format=last),
                    self.depth.weight.is_contiguous(),
                )
            )
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val/mse", nn.functional.mse_loss(self(x), y), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.hparams.config["lr"])

    def data():
        g = torch.Generator().manual_seed(5)
        x = torch.rand(48, 2, 16, 16, generator=g)
        return TensorDataset(x, x.mean(dim=(1, 2, 3)) * 3)

    return ConvToy(config_dict(cfg)), split_data(data, 32, cfg, val_batch=16)


def test_channels_last_stores_2d_convolutions_nhwc_and_learns_the_same(tmp_path):
    """--channels-last: the 2D and transposed 2D convolutions train with NHWC weights, the 3D
    one keeps its layout, the run learns what the default layout learns, and its checkpoint
    loads into a model built the usual way."""
    modules = {}

    def build(cfg):
        module, data = build_conv_toy(cfg)
        modules[len(modules)] = module
        return module, data

    task = TaskSpec(
        name="convtoy", config=ConvToyConfig, build=build, monitor="val/mse", mode="min"
    )
    results = [
        fit(
            task,
            ConvToyConfig(),
            RunOptions(out=tmp_path / name, device="cpu", quiet=True, **flags),
        )
        for name, flags in (("plain", {}), ("nhwc", {"channels_last": True}))
    ]
    plain, nhwc = (modules[k].layouts for k in (0, 1))
    assert plain and all(layout == (False, False, True) for layout in plain)
    assert nhwc and all(layout == (True, True, True) for layout in nhwc)
    first, second = (r["metrics"]["val/mse"] for r in results)
    assert second == pytest.approx(first, rel=1e-4, abs=1e-7)
    model, _ = build_conv_toy(ConvToyConfig())
    state = load_checkpoint(Path(results[1]["best_checkpoint"]), "convtoy")[1]
    model.load_state_dict(state)
    assert not model.down.weight.is_contiguous(memory_format=torch.channels_last)


def test_max_time_stops_at_an_epoch_end_and_the_resume_equals_uninterrupted(tmp_path):
    """--max-time stops at the end of the epoch that passes it: a checkpoint taken inside an
    epoch resumed at the next one, losing the rest of it (8 of 9 batches, weights off by 8); a
    resumed job gets the whole limit again."""
    import time

    import lightning as L

    class SlowFirstStep(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 1:
                time.sleep(1.2)  # past the one-second limit inside the first epoch

    straight = run(tmp_path / "a", epochs=3)
    cfg = resolve_config(TOY, None, {"epochs": 3})
    options = RunOptions(tmp_path / "b", device="cpu", quiet=True, max_time="00:00:00:01")
    options.extra_callbacks.append(SlowFirstStep())
    stopped = fit(TOY, cfg, options)
    assert stopped["epochs_run"] == 1
    # it looked like a finished run: exit 0, "interrupted": false and nothing else
    assert stopped["time_limit_reached"] is True and stopped["interrupted"] is False
    record = json.loads((tmp_path / "b" / "run.json").read_text())["metrics"]
    assert record["time_limit_reached"] is True
    assert straight["time_limit_reached"] is False
    last = torch.load(stopped["last_checkpoint"], map_location="cpu", weights_only=True)
    assert last["global_step"] == 8  # the whole first epoch: 64 samples in batches of 8
    # the limit counts this job's time only (the first job's 1.2 s would stop it at once)
    options = RunOptions(tmp_path / "b", resume=tmp_path / "b/checkpoints/last.ckpt",
                         device="cpu", quiet=True, max_time="00:00:00:01")  # fmt: skip
    resumed = fit(TOY, cfg, options)
    _, a = load_checkpoint(tmp_path / "a/checkpoints/last.ckpt", "toy")
    _, b = load_checkpoint(tmp_path / "b/checkpoints/last.ckpt", "toy")
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert resumed["epochs_run"] == straight["epochs_run"]


def test_a_diverging_run_stops_with_one_line(tmp_path):
    """A loss that is no longer a number stops the run (it trained on, exit 0, NaN weights)."""
    from recon.pipelines.common.errors import JobFailed

    cfg = resolve_config(TOY, None, {"epochs": 3, "lr": 10.0})
    import lightning as L

    class Poison(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 2:
                with torch.no_grad():
                    module.net[0].weight.fill_(float("nan"))

    options = RunOptions(tmp_path / "run", device="cpu", quiet=True)
    options.extra_callbacks.append(Poison())
    with pytest.raises(JobFailed, match=r"training diverged: the training loss is nan at epoch 0"):
        fit(TOY, cfg, options)


class NoisyPoints(torch.utils.data.Dataset):
    """The toy's points with noise drawn in __getitem__ (in a worker process when there is one),
    as the tasks' random augmentation is."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.rand(96, 1, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        x = self.x[index] + 0.1 * torch.randn(1)
        return x, torch.sin(3 * x)


def build_noisy(cfg: ToyConfig):
    module, _ = build_toy(cfg)
    return module, split_data(NoisyPoints, 64, cfg, val_batch=32, workers=1)


def test_resume_with_a_worker_process_equals_uninterrupted(tmp_path):
    """Augmentation drawn in --workers processes depends only on (seed, epoch): persistent
    workers, seeded once, drew other noise after a resume (weights off by 0.4)."""
    import lightning as L

    noisy = TaskSpec(name="toy", config=ToyConfig, build=build_noisy, monitor="val/mse")
    cfg = resolve_config(noisy, None, {"epochs": 3})
    fit(noisy, cfg, RunOptions(tmp_path / "a", device="cpu", quiet=True))

    class StopAfterFirstEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            trainer.should_stop = True

    options = RunOptions(tmp_path / "b", device="cpu", quiet=True)
    options.extra_callbacks.append(StopAfterFirstEpoch())
    fit(noisy, cfg, options)
    resume = tmp_path / "b/checkpoints/last.ckpt"
    fit(noisy, cfg, RunOptions(tmp_path / "b", resume=resume, device="cpu", quiet=True))
    _, a = load_checkpoint(tmp_path / "a/checkpoints/last.ckpt", "toy")
    _, b = load_checkpoint(tmp_path / "b/checkpoints/last.ckpt", "toy")
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_a_resume_of_a_finished_run_is_refused(tmp_path):
    """Resuming a run that already trained its --epochs did nothing and exited 0."""
    out = tmp_path / "run"
    run(out, epochs=2)
    before = snapshot(out)
    for epochs in (2, 1):
        with pytest.raises(BadInput) as caught:
            run(out, epochs=epochs, resume=out / "checkpoints" / "last.ckpt")
        assert str(caught.value) == (
            f"{out / 'checkpoints' / 'last.ckpt'}: the run already finished 2 epochs "
            f"(--epochs {epochs}); raise --epochs above 2 to train on"
        )
        assert snapshot(out) == before


def test_a_resume_continues_only_into_its_own_or_an_empty_folder(tmp_path):
    """Resuming run a into run b mixed the two runs' metrics.csv and checkpoints."""
    a, b = tmp_path / "a", tmp_path / "b"
    run(a, epochs=1)
    run(b, epochs=1)
    last = a / "checkpoints" / "last.ckpt"
    before = snapshot(b)
    with pytest.raises(BadInput) as caught:
        run(b, epochs=2, resume=last)
    assert str(caught.value) == (
        f"{b}: holds another run; --resume {last} continues only into its own run folder "
        f"({a}) or into an empty or new folder"
    )
    assert snapshot(b) == before
    (tmp_path / "empty").mkdir()
    for fresh in (tmp_path / "empty", tmp_path / "new"):
        assert run(fresh, epochs=2, resume=last)["epochs_run"] == 2
        assert (fresh / "checkpoints" / "best.ckpt").is_file()
    aside = tmp_path / "kept" / "last.ckpt"  # a copy elsewhere still continues its own run
    aside.parent.mkdir()
    aside.write_bytes(last.read_bytes())
    assert run(a, epochs=2, resume=aside)["epochs_run"] == 2


def resume_to_worse_epochs(out: Path, last: Path) -> dict:
    """Resume the run of last.ckpt into out up to 3 epochs, every prediction 3 off at each
    validation: epochs much worse than the run's best."""
    import lightning as L

    class WorseValidation(L.Callback):
        def on_validation_epoch_start(self, trainer, module):
            with torch.no_grad():
                module.net[-1].bias.add_(3.0)

    cfg = resolve_config(TOY, None, {"epochs": 3})
    options = RunOptions(
        out, resume=last, device="cpu", quiet=True, extra_callbacks=[WorseValidation()]
    )
    return fit(TOY, cfg, options)


def test_a_moved_run_keeps_its_best_score(tmp_path):
    """After `mv RUN RUN2`, a resume from RUN2 forgot the best score so far (Lightning keeps
    it only in the folder it was written to): a worse epoch then replaced best.ckpt."""
    first = run(tmp_path / "run", epochs=2)
    (tmp_path / "run").rename(tmp_path / "moved")
    best = tmp_path / "moved" / "checkpoints" / "best.ckpt"
    kept = best.read_bytes()
    resumed = resume_to_worse_epochs(tmp_path / "moved", tmp_path / "moved/checkpoints/last.ckpt")
    assert resumed["metrics"]["val/mse"] > 2 * first["best_score"]
    assert resumed["best_score"] == pytest.approx(first["best_score"])
    assert resumed["best_checkpoint"] == str(best)
    assert best.read_bytes() == kept


def test_a_run_continued_into_a_new_folder_takes_its_best_and_history(tmp_path):
    """A resume into a new folder searched the best afresh: the first epoch there became
    best.ckpt however much worse it was, and metrics.csv began at that epoch."""
    import csv

    first = run(tmp_path / "run", epochs=2)
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    kept = best.read_bytes()
    resumed = resume_to_worse_epochs(tmp_path / "next", tmp_path / "run/checkpoints/last.ckpt")
    carried = tmp_path / "next" / "checkpoints" / "best.ckpt"
    assert resumed["metrics"]["val/mse"] > 2 * first["best_score"]
    assert resumed["best_score"] == pytest.approx(first["best_score"])
    assert resumed["best_checkpoint"] == str(carried)
    assert carried.read_bytes() == kept and best.read_bytes() == kept
    with (tmp_path / "next" / "metrics.csv").open(newline="") as handle:
        epochs = {row["epoch"] for row in csv.DictReader(handle) if row.get("val/mse")}
    assert epochs == {"0", "1", "2"}


def test_a_resume_reads_its_checkpoint_once(tmp_path, monkeypatch):
    """The checks (the CLI's settings, the engine's) and Lightning's restore each read the
    whole last.ckpt from disk."""
    from recon.pipelines.common.settings import resume_config

    out = tmp_path / "run"
    run(out, epochs=1)
    last = out / "checkpoints" / "last.ckpt"
    reads = []
    load = torch.load

    def counted(source, *args, **kwargs):
        reads.append(kwargs.get("weights_only"))
        return load(source, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    cfg = resume_config(TOY, last, None, {"epochs": 2})
    result = fit(TOY, cfg, RunOptions(out=out, resume=last, device="cpu", quiet=True))
    assert result["epochs_run"] == 2
    assert reads == [True]


def test_limit_batches_1_is_one_batch_and_1_0_the_whole_epoch(tmp_path):
    """`--limit-batches 1` was read as the float 1.0: Lightning's "all batches"."""
    from recon.pipelines.common.trainer_flags import batch_limit

    assert (batch_limit("1"), batch_limit("3"), batch_limit("1.0"), batch_limit("0.5")) == (
        1, 3, 1.0, 0.5,
    )  # fmt: skip
    steps = {}
    for limit in ("1", "1.0"):
        cfg = resolve_config(TOY, None, {"epochs": 2})
        options = RunOptions(tmp_path / limit, device="cpu", quiet=True, limit_batches=limit)
        last = fit(TOY, cfg, options)["last_checkpoint"]
        steps[limit] = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert steps == {"1": 2, "1.0": 16}  # one batch an epoch; all 8


def test_the_epoch_bar_counts_epochs_from_one():
    """Lightning's bar said `Epoch 0/2` in the first of 3 epochs, where recon's lines count
    from 1 (`the run is kept after 1 epoch`)."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import RichProgressBar

    from recon.pipelines.common.engine import _epoch_bar_class

    bar = _epoch_bar_class()()
    bar._trainer = SimpleNamespace(max_epochs=3)
    assert [bar._get_train_description(k).strip() for k in range(3)] == [
        "Epoch 1/3",
        "Epoch 2/3",
        "Epoch 3/3",
    ]
    # the method overridden is the one Lightning's bar names each epoch with
    assert "_get_train_description" in vars(RichProgressBar)
