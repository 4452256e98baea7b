"""Several training processes on CPU (gloo): Lightning's DDP launcher and an srun-style start.

Lightning's launcher re-runs the command line for rank 1, and srun starts every rank at once, so
these run `recon train` as separate processes, as a user's shell or a SLURM job would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

RECON = str(Path(sys.executable).parent / "recon")
# voxel at 32 px with a small decoder; no jitter or dropout, so every difference between the
# runs comes from the process count (per-process BatchNorm statistics, summation order)
TRAIN = [
    "train",
    "voxel",
    "--epochs",
    "2",
    "--set",
    "size=32",
    "--set",
    "hidden=64",
    "--set",
    "jitter=0",
    "--set",
    "dropout=0",
    "--device",
    "cpu",
    "--json",
    "-q",
]
# measured: val/loss differs by 5e-5 relative and val/iou by 0.0007 between 1 and 2 processes
LOSS_REL_TOLERANCE = 0.01
IOU_TOLERANCE = 0.02


def clean_env() -> dict[str, str]:
    """This environment without any launcher's variables, one compute thread per process."""
    launcher = ("SLURM_", "LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_", "GROUP_RANK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def recon_process(args: list, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [RECON, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


@pytest.fixture(scope="module")
def single(pix3d_root, tmp_path_factory):
    """The reference: one process, batch 8."""
    out = tmp_path_factory.mktemp("single") / "run"
    args = [*TRAIN, "--data", pix3d_root, "--batch-size", "8", "-o", out]
    code, stdout, err = finish(recon_process(args, clean_env()))
    assert code == 0, err
    return json.loads(stdout)


def assert_one_run(result: dict, reference: dict) -> None:
    out = Path(result["out"])
    assert result["processes"] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert json.loads((out / "run.json").read_text())["metrics"]["processes"] == 2
    epochs = {line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]}
    assert epochs == {"0", "1"}
    ours, theirs = result["metrics"], reference["metrics"]
    assert ours["val/loss"] == pytest.approx(theirs["val/loss"], rel=LOSS_REL_TOLERANCE)
    assert abs(ours["val/iou"] - theirs["val/iou"]) < IOU_TOLERANCE
    assert ours["train/loss"] == pytest.approx(theirs["train/loss"], rel=LOSS_REL_TOLERANCE)


def test_two_process_ddp_run_matches_one_process(pix3d_root, single, tmp_path):
    """--devices 2 --strategy ddp, batch 4 each: the global batch of the 1-process run."""
    out = tmp_path / "run"
    args = [*TRAIN, "--data", pix3d_root, "--batch-size", "4", "-o", out]
    code, stdout, err = finish(
        recon_process([*args, "--devices", "2", "--strategy", "ddp"], clean_env())
    )
    assert code == 0, err
    assert len(stdout.strip().splitlines()) == 1  # rank 0's summary only
    assert_one_run(json.loads(stdout), single)
    # rank 0 alone draws the example grids, one per epoch
    grids = sorted(p.name for p in (out / "examples").iterdir())
    assert grids == ["epoch_000.png", "epoch_001.png"]


def test_a_stopped_two_process_run_says_to_continue_on_two_processes(pix3d, tmp_path):
    """The note of a run stopped by --max-time (or SIGTERM) said `recon train voxel --resume
    RUN`, which continued it on one process, with half its global batch: it names the run's
    scale-out flags."""
    out = tmp_path / "run"
    args = [*TRAIN, "--data", pix3d, "--batch-size", "4", "-o", out]
    args += ["--devices", "2", "--strategy", "ddp", "--max-time", "0.0001"]
    code, stdout, err = finish(recon_process(args, clean_env()))
    assert code == 0, err
    assert json.loads(stdout)["time_limit_reached"] is True
    resume = f"recon train voxel --resume {out} --device cpu --devices 2 --strategy ddp"
    resume += " --max-time 0.0001"  # each job of a chain gets the whole limit
    assert f"the run is kept: continue it with `{resume}`" in err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_srun_style_start_of_two_ranks(pix3d_root, single, tmp_path):
    """Both ranks start at once with SLURM's variables, as `srun --ntasks-per-node=2` does; with
    --channels-last, whose NHWC weights DDP's gradient buckets must follow (same numbers)."""
    out = tmp_path / "run"
    args = [*TRAIN, "--data", pix3d_root, "--batch-size", "4", "-o", out]
    args += ["--devices", "2", "--strategy", "ddp", "--channels-last"]
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "recon-test",
        "SLURM_NODELIST": "localhost",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    ranks = [
        recon_process(
            args, {**clean_env(), **slurm, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)}
        )
        for r in (1, 0)  # rank 1 first: it must wait for rank 0, not refuse the folder
    ]
    (code1, out1, err1), (code0, out0, err0) = (finish(p) for p in ranks)
    assert code0 == 0, err0
    assert code1 == 0, err1
    assert out1.strip() == ""  # the summary is rank 0's alone
    assert_one_run(json.loads(out0), single)
    assert "strides do not match" not in err0 + err1  # DDP's buckets follow the NHWC layout


@pytest.mark.parametrize("strategy", [["--strategy", "ddp"], []], ids=["ddp", "auto"])
def test_gan_tasks_train_in_two_processes(tmp_path, strategy):
    """train drr in two processes, with --strategy ddp or the default (auto, which Lightning
    makes DDP): each optimizer steps half the model, so DDP must look for unused parameters
    (it stopped at the first step: 'parameters that were not used in producing the loss');
    one JSON object on stdout, from rank 0."""
    env = clean_env()
    pairs = tmp_path / "pairs"
    code, _, err = finish(recon_process(["synth", "pairs", "-o", pairs, "-n", 8, "--size", 32,
                                         "-q"], env))  # fmt: skip
    assert code == 0, err
    args = ["train", "drr", "--data", pairs, "--device", "cpu", "--devices", 2, *strategy,
            "--epochs", 1, "--batch-size", 1, "--set", "size=32", "--set",
            "base_filters=4", "--set", "examples=0", "-o", tmp_path / "run", "--json",
            "-q"]  # fmt: skip
    code, stdout, err = finish(recon_process(args, env))
    assert code == 0, err
    assert json.loads(stdout)["processes"] == 2


def test_a_ddp_run_of_the_translation_task_is_quiet(tmp_path):
    """`train drr --strategy ddp -q` printed Lightning's advice to log train/lr with sync_dist
    on stderr (one process is enough to show it), through -q."""
    env = clean_env()
    pairs = tmp_path / "pairs"
    code, _, err = finish(recon_process(["synth", "pairs", "-o", pairs, "-n", 8, "--size", 32,
                                         "-q"], env))  # fmt: skip
    assert code == 0, err
    args = ["train", "drr", "--data", pairs, "--device", "cpu", "--devices", 1, "--strategy",
            "ddp", "--epochs", 1, "--batch-size", 1, "--set", "size=32", "--set",
            "base_filters=4", "--set", "examples=0", "-o", tmp_path / "run", "-q"]  # fmt: skip
    code, _, err = finish(recon_process(args, env))
    assert code == 0, err
    assert "sync_dist" not in err and "warn" not in err.lower(), err


def test_only_rank_zero_prints_the_json_error(tmp_path):
    """A training run failing under a launcher: another rank prints its line on stderr but no
    JSON, so stdout holds one object whatever the process count (other commands' processes
    are runs of their own, each with its object: test_cli)."""
    args = ["train", "voxel", "--data", tmp_path / "missing", "-o", tmp_path / "v", "--json"]
    for rank, expected in (("0", 1), ("1", 0)):
        env = {**clean_env(), "LOCAL_RANK": rank}
        code, stdout, err = finish(recon_process(args, env))
        assert code == 2 and err.count("\n") == 1, err
        assert len(stdout.splitlines()) == expected
        assert expected == 0 or json.loads(stdout)["exit_code"] == 2


class ItemMean(L.LightningModule):
    """Logs each validation item's index as val/item (Lightning averages it over the batches
    and the ranks, weighted by batch size) and counts the items scored."""

    def __init__(self, items: int) -> None:
        super().__init__()
        self.items = items
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def val_dataloader(self):
        from recon.pipelines.common.sampling import seeded_loader

        return seeded_loader(list(range(self.items)), 2, seed=0, shuffle=False)

    def validation_step(self, batch, index):
        batch = batch.float()
        self.log("val/item", batch.mean(), batch_size=len(batch), sync_dist=True)
        self.log("val/count", float(len(batch)), reduce_fx="sum", sync_dist=True)

    def teardown(self, stage: str) -> None:
        """Each spawned rank leaves the process group before it exits: left to the interpreter's
        exit, gloo's threads now and then aborted a rank (SIGABRT, "terminate called without
        an active exception")."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def test_two_process_validation_means_are_exact_over_what_the_ranks_scored():
    """5 validation items on 2 ranks: the shards are padded to 3 each (item 0 twice), and the
    mean Lightning reduces over the ranks is exactly that of those 6 scores. Unequal shards (3
    and 2) would give 2.5 for a mean of 2: Lightning truncates the averaged integer count of
    samples on gloo (see EpochShuffle)."""
    from recon.pipelines.common.sampling import EpochShuffle

    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    (metrics,) = trainer.validate(ItemMean(5), verbose=False)
    scored = [i for rank in (0, 1) for i in EpochShuffle(5, 0, False, rank=rank, world=2)]
    assert sorted(scored) == [0, 0, 1, 2, 3, 4]
    assert metrics["val/count"] == len(scored)
    assert metrics["val/item"] == pytest.approx(sum(scored) / len(scored))
