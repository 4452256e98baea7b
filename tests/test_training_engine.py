"""The shared training engine: run folder, seeded resume equivalence, checkpoint safety."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

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

    class ToyData(L.LightningDataModule):
        def setup(self, stage=None):
            g = torch.Generator().manual_seed(123)
            x = torch.rand(96, 1, generator=g) * 2 - 1
            data = TensorDataset(x, torch.sin(3 * x))
            self.train_set = torch.utils.data.Subset(data, range(64))
            self.val_set = torch.utils.data.Subset(data, range(64, 96))

        def train_dataloader(self):
            return seeded_loader(self.train_set, cfg.batch_size, cfg.seed, shuffle=True)

        def val_dataloader(self):
            return seeded_loader(self.val_set, 32, cfg.seed, shuffle=False)

    return Toy(config_dict(cfg)), ToyData()


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


def test_checkpoint_of_another_task_or_with_code_is_refused(tmp_path):
    result = run(tmp_path / "run", epochs=1)
    with pytest.raises(BadInput, match="task 'toy', not 'voxel'"):
        load_checkpoint(Path(result["last_checkpoint"]), "voxel")
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hook": BadInput("x")}, evil)
    with pytest.raises(BadInput, match="pickled"):
        load_checkpoint(evil, "toy")


def test_non_empty_run_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(BadInput, match="not empty"):
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
