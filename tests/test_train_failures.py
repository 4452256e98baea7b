"""`recon train` failures: too few batches for --limit-batches or for a task's batch
normalisation, and every flag and run-folder refusal, are one line and exit 2 before any work
(the refusals before Lightning is even imported); a fit that fails before its first training
step leaves no run folder behind, and a folder that was there before stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.engine import RunOptions, fit
from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.sampling import seeded_loader

TINY_VOXEL = ["--set", "size=32", "--set", "hidden=8", "--device", "cpu", "--epochs", "1"]


@pytest.fixture(scope="module")
def two_skulls(tmp_path_factory):
    """The smallest skull set check-data accepts: 2 image + NAME_vox.npz pairs at 8^3, which
    split into 1 training and 1 validation subject."""
    from PIL import Image

    root = tmp_path_factory.mktemp("skulls")
    grid = np.zeros((8, 8, 8), dtype=bool)
    grid[2:6, 2:6, 2:6] = True
    for index in range(2):
        pixels = np.full((32, 32), 40 + 100 * index, dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"skull_{index:03d}.png")
        np.savez(root / f"skull_{index:03d}_vox.npz", skull=grid, face=np.roll(grid, index, 0))
    return root


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- too few batches


def test_fractional_limit_batches_leaving_validation_no_batch_is_refused(recon, pix3d, tmp_path):
    """The walkthrough's case: Lightning refused 0.5 x 1 validation batch only after the run
    folder was written (exit 1, config.yaml and hparams.yaml left behind)."""
    out = tmp_path / "runs" / "lb"
    args = ["train", "voxel", "--data", pix3d, *TINY_VOXEL, "--batch-size", "4", "-o", out]
    code, _, err = recon(*args, "--limit-batches", "0.5")  # training: 2 batches, 1 is kept
    assert code == 2, err
    assert one_line(err), err
    assert (
        "error: --limit-batches 0.5 leaves the validation split no batch: it has 1 batch per "
        "epoch (2 items at batch size 4); pass 1.0 (all of it) or a whole count of batches"
    ) in err
    assert not out.exists()


def test_fractional_limit_batches_leaving_training_no_batch_names_the_split(recon, pix3d, tmp_path):
    out = tmp_path / "run"
    args = ["train", "voxel", "--data", pix3d, *TINY_VOXEL, "--batch-size", "4", "-o", out]
    code, _, err = recon(*args, "--limit-batches", "0.4")
    assert code == 2 and one_line(err), err
    assert "--limit-batches 0.4 leaves the training split no batch: it has 2 batches" in err
    assert "(8 items at batch size 4)" in err and "at least 0.5" in err
    assert not out.exists()


def test_one_training_skull_is_refused_with_the_item_counts(recon, two_skulls, tmp_path):
    """The walkthrough's case: BatchNorm on a single training sample failed after the run folder
    was written (exit 1, `ValueError: Expected more than 1 value per channel`)."""
    out = tmp_path / "runs" / "s"
    args = ["train", "skull", "--data", two_skulls, "--set", "size=32", "--set", "channels=4"]
    code, _, err = recon(*args, "--epochs", "1", "--device", "cpu", "-o", out)
    assert code == 2, err
    assert one_line(err), err
    assert "the training split has 1 item, and task skull needs at least 2" in err
    assert "batch normalisation" in err and "val_fraction (0.2)" in err
    assert not out.exists()


def test_batch_size_one_is_refused_where_batch_norm_needs_two(recon, pix3d, tmp_path):
    """voxel at size 32: the ResNet's last stage is 1 x 1, so one sample gives BatchNorm one
    value per channel."""
    out = tmp_path / "run"
    args = ["train", "voxel", "--data", pix3d, *TINY_VOXEL, "--batch-size", "1", "-o", out]
    code, _, err = recon(*args)
    assert code == 2 and one_line(err), err
    assert "--batch-size 1: task voxel needs at least 2 samples in a training batch" in err
    assert not out.exists()


def test_tasks_state_when_batch_norm_needs_two_samples():
    from recon.pipelines.common.tasks import load_task
    from recon.pipelines.occupancy.parts_task import TASK as PARTS
    from recon.pipelines.occupancy.parts_task import PartsConfig
    from recon.pipelines.occupancy.voxel_task import TASK as VOXEL
    from recon.pipelines.occupancy.voxel_task import VoxelConfig
    from recon.pipelines.skull.task import TASK as SKULL
    from recon.pipelines.skull.task import SkullConfig

    assert VOXEL.min_batch(VoxelConfig(size=32)) == 2 and VOXEL.min_batch(VoxelConfig()) == 1
    assert PARTS.min_batch(PartsConfig(size=32)) == 2 and PARTS.min_batch(PartsConfig()) == 1
    assert SKULL.min_batch(SkullConfig(size=256)) == 2
    # measured: these train on one sample at their smallest size (BatchNorm maps of 2 x 2 and
    # more, or instance norm), and pix2pix's reference batch is 1
    assert all(load_task(name).min_batch is None for name in ("corset", "drr", "pose"))


class ListData:
    """A data module over range(train) and range(val) with seeded loaders."""

    def __init__(self, train: int, val: int, batch: int) -> None:
        self.sizes, self.batch = (train, val), batch

    def setup(self, stage=None) -> None:
        self.train_set, self.val_set = (list(range(n)) for n in self.sizes)

    def train_dataloader(self):
        return seeded_loader(self.train_set, self.batch, 0, shuffle=True)

    def val_dataloader(self):
        return seeded_loader(self.val_set, self.batch, 0, shuffle=False)


def test_split_check_counts_the_items_each_process_needs():
    from recon.pipelines.common.engine import check_splits
    from recon.pipelines.skull.task import TASK as SKULL
    from recon.pipelines.skull.task import SkullConfig

    cfg = SkullConfig(data="heads", batch_size=8)
    check_splits(SKULL, cfg, ListData(2, 1, 8), None, processes=1)
    with pytest.raises(BadInput, match="has 2 items, and task skull needs at least 3 on 2 pro"):
        check_splits(SKULL, cfg, ListData(2, 1, 8), None, processes=2)
    # a resume cannot add data or change val_fraction: it can run on fewer processes
    with pytest.raises(BadInput, match=r"resume on fewer processes \(the data and settings"):
        check_splits(SKULL, cfg, ListData(2, 1, 8), None, processes=2, resumed=True)
    check_splits(SKULL, cfg, ListData(3, 1, 8), None, processes=2)
    # 9 = 8 + a lone last sample, which the training loader drops: no batch of one
    check_splits(SKULL, cfg, ListData(9, 1, 8), None, processes=1)
    check_splits(SKULL, cfg, ListData(16, 16, 8), 0.5, processes=1)  # 1 of 2 batches each
    with pytest.raises(BadInput, match="validation split no batch: it has 1 batch per epoch"):
        check_splits(SKULL, cfg, ListData(16, 1, 8), 0.5, processes=1)


@pytest.mark.parametrize("shuffle", [True, False])
def test_batch_arithmetic_matches_the_loaders(shuffle):
    from torch.utils.data import DataLoader

    from recon.pipelines.common.sampling import EpochShuffle, drops_lone_last, shard_batches

    for items in range(1, 14):
        for batch in range(1, 6):
            loader = seeded_loader(list(range(items)), batch, 0, shuffle)
            sizes = [len(b) for b in loader]
            assert shard_batches(items, batch, shuffle) == (len(sizes), min(sizes))
            sampler = EpochShuffle(items, 0, shuffle, rank=1, world=2)
            drop = drops_lone_last(len(sampler), batch, shuffle)
            sizes = [
                len(b) for b in DataLoader(range(items), batch, sampler=sampler, drop_last=drop)
            ]
            assert shard_batches(items, batch, shuffle, world=2) == (len(sizes), min(sizes))


# ---------------------------------------------------------------- refused before Lightning

REFUSALS = [
    (["--max-time", "0"], "--max-time must be in (0,"),
    # --overwrite did nothing beside --resume
    (["--resume", "runs/v", "--overwrite"], "--resume continues the run in its folder and"),
    (["--strategy", "nonsense"], "--strategy nonsense: not a strategy (choices: auto, ddp,"),
    (["--limit-batches", "2.5"], "--limit-batches takes a fraction in (0, 1]"),
    (["--num-nodes", "0"], "--num-nodes 0"),
    (["--devices", "4096"], "--devices must be in [1, 1024]"),
    (["--set", "epochs=many"], "--set epochs takes a whole number"),
    (["--set", "lr="], "--set lr= has no value"),
    (["--devices", "0,1"], "--devices 0,1: ids like 0,1 name GPUs, and this run is on the CPU"),
    (["--strategy", "ddp_spawn"], "--strategy ddp_spawn: not supported (its processes are sent"),
    (["--strategy", "fsdp"], "--strategy fsdp: runs on CUDA GPUs only"),
    pytest.param(
        ["--strategy", "deepspeed_stage_2"],
        "--strategy deepspeed_stage_2: needs the deepspeed package, which is not installed",
        marks=pytest.mark.skipif(find_spec("deepspeed") is not None, reason="installed"),
    ),
    pytest.param(
        ["--strategy", "xla"],
        "--strategy xla: needs the torch_xla package, which is not installed",
        marks=pytest.mark.skipif(find_spec("torch_xla") is not None, reason="installed"),
    ),
]


def recon_process(args: list, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    """`recon ARGS` in a fresh interpreter (in env, default this one's): (exit code, stderr,
    which of lightning and torch were imported when it exited). One still running after 2
    minutes (waiting for other processes) is killed with what it started."""
    import os
    import signal

    script = (
        "import atexit, sys\n"
        "heavy = ('lightning', 'torch')\n"
        "atexit.register(lambda: sys.__stdout__.write("
        "'\\nheavy:' + ','.join(m for m in heavy if m in sys.modules)))\n"
        "from recon.cli.app import main\n"
        "main(sys.argv[1:])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    heavy = stdout.rsplit("heavy:", 1)[-1].strip()
    return process.returncode, stderr, set(filter(None, heavy.split(",")))


@pytest.mark.parametrize(
    ("flags", "message"), REFUSALS, ids=[" ".join(getattr(r, "values", r)[0]) for r in REFUSALS]
)
def test_flag_refusals_come_before_lightning_is_imported(pix3d, tmp_path, flags, message):
    out = tmp_path / "run"
    code, err, imported = recon_process(
        ["train", "voxel", "--data", pix3d, "--device", "cpu", "-o", out, *flags]
    )
    assert code == 2, err
    assert one_line(err) and message in err, err
    assert "lightning" not in imported
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["voxel", "--data", "MISSING"], "missing: no such data set root"),
        (["drr", "--data", "MISSING"], "no such folder (a pair set has xray/ and drr/)"),
        (["skull", "--data", "MISSING"], "no such data set folder"),
        (["pose", "--max-time", "0"], "--max-time must be in (0,"),
        (["pose", "--data", "."], "task pose takes no --data: it renders its own training"),
    ],
    ids=["voxel data", "drr data", "skull data", "pose max-time", "pose data"],
)
def test_refusals_at_the_default_device_load_neither_torch_nor_lightning(tmp_path, args, message):
    """They took 2.3 s: the check of --devices against the CPU cores asked torch for a GPU
    first, and the drr and pose task modules imported torch; now about 0.4 s."""
    args = [str(tmp_path / "missing") if a == "MISSING" else a for a in args]
    out = tmp_path / "run"
    code, err, imported = recon_process(["train", *args, "-o", out])
    assert code == 2 and one_line(err) and message in err, err
    assert imported == set()
    assert not out.exists()


def test_non_empty_run_folder_is_one_line_before_lightning(pix3d, tmp_path):
    """It used to come after the Trainer was built: 6 s, and Lightning's `GPU available`/`TPU
    available` lines on stderr before the refusal."""
    out = tmp_path / "runs" / "drr"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    code, err, imported = recon_process(
        ["train", "voxel", "--data", pix3d, "--device", "cpu", "-o", out]
    )
    assert code == 2, err
    assert err.strip() == (  # not "pass --overwrite", which then refused it too
        f"error: {out.absolute()}: holds files no recon command wrote (keep.txt); --overwrite "
        "replaces only an empty folder or an earlier output of `recon train voxel`: choose "
        "another path"
    )
    assert "lightning" not in imported
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("task", "where", "flags"),
    [
        ("drr", "run", []),
        ("drr", ".", ["--overwrite"]),
        ("voxel", "runs/voxel", ["--overwrite"]),
        ("parts", "run", []),
        ("corset", "run", []),
        ("skull", "run", []),
        ("pose", "run", []),
    ],
)
def test_a_run_folder_in_the_data_is_refused_before_lightning(tmp_path, task, where, flags):
    """`--out D/run` used to be accepted: the run's checkpoints, images and run.json went into
    the training set. The data (pose: its CT, a DICOM series folder) stays as it was."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("mine")
    out = data / where
    given = ["-v", data] if task == "pose" else ["--data", data]
    code, err, imported = recon_process(
        ["train", task, *given, "--device", "cpu", "-o", out, *flags]
    )
    assert code == 2, err
    assert err.strip() == (
        f"error: {out.absolute()}: the output folder is, or is inside, the input folder {data}; "
        "choose another path"
    )
    assert "lightning" not in imported
    assert [p.name for p in data.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------- flags the launcher contradicts

# what srun sets for one of 2 tasks on 1 node (the variables Lightning reads)
SLURM = {
    "SLURM_JOB_ID": "4245",
    "SLURM_JOB_NAME": "recon",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "1",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}
TORCHRUN = {  # torchrun --nproc-per-node 2 --nnodes 2, rank 0
    "TORCHELASTIC_RUN_ID": "none",
    "WORLD_SIZE": "4",
    "RANK": "0",
    "LOCAL_RANK": "0",
    "GROUP_RANK": "0",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}
LAUNCHER_PREFIXES = ("SLURM_", "TORCHELASTIC_", "OMPI_", "PMI", "LSB_", "JSM_", "MASTER_")
LAUNCHER_NAMES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "WORLD_SIZE")


def without_launchers() -> dict[str, str]:
    """This environment without any launcher's or cluster's variables."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(LAUNCHER_PREFIXES) and k not in LAUNCHER_NAMES
    }


CONTRADICTED = [
    (
        SLURM,
        ["--devices", "1", "--strategy", "ddp"],
        "--devices 1: this SLURM job runs 2 tasks per node (--ntasks-per-node=2), one per "
        "process; pass --devices 2, or submit the job with --ntasks-per-node=1",
    ),
    (
        SLURM,
        ["--devices", "2", "--num-nodes", "2", "--strategy", "ddp"],
        "--num-nodes 2: this SLURM job has 1 node (--nodes=1); pass --num-nodes 1, or submit "
        "the job with --nodes=2",
    ),
    (
        {**SLURM, "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1"},
        ["--devices", "2"],
        "--devices 2: this SLURM job runs 1 task per node (--ntasks-per-node=1), one per "
        "process; pass --devices 1, or submit the job with --ntasks-per-node=2",
    ),
    (
        {k: v for k, v in SLURM.items() if k != "SLURM_NTASKS_PER_NODE"},
        ["--devices", "2"],
        "this SLURM job runs 2 tasks (--ntasks=2) without --ntasks-per-node, which Lightning "
        "needs; submit it with --ntasks-per-node=2 (--devices) and --nodes=1 (--num-nodes)",
    ),
    (
        SLURM,
        ["--devices", "1"],
        "--devices 1: this SLURM job runs 2 tasks (--ntasks=2), but the run trains in one "
        "process, so each task would train it alone into one folder; pass --devices 2 (one per "
        "task on a node), or submit the job with --ntasks=1",
    ),
    (
        {k: v for k, v in SLURM.items() if k != "SLURM_NTASKS_PER_NODE"} | {"SLURM_NTASKS": "1"},
        ["--devices", "2"],
        "--devices 2 --num-nodes 1: this SLURM job runs 1 task (--ntasks=1), and in a SLURM "
        "job each task is one of the run's processes, so the run would have 1 instead of 2; "
        "start it with srun in a job of --ntasks-per-node=2 and --nodes=1, or pass --devices 1 "
        "--num-nodes 1",
    ),
    (
        {**SLURM, "SLURM_NTASKS_PER_NODE": ""},
        ["--devices", "2"],
        "SLURM_NTASKS_PER_NODE='': not a whole number of tasks; Lightning reads it to start the "
        "run in a SLURM job (unset it, or run the job with srun)",
    ),
    (
        {},
        ["--devices", "2", "--num-nodes", "2"],
        "--num-nodes 2: nothing says how the other nodes join: no srun-started SLURM job, no "
        "MASTER_ADDR or NODE_RANK; run it with srun in a SLURM job of 2 nodes, or start it on "
        "each node with MASTER_ADDR, MASTER_PORT and NODE_RANK (0 to 1) set",
    ),
    (
        {**SLURM, "SLURM_JOB_NAME": "interactive"},
        ["--devices", "2", "--num-nodes", "2"],
        "--num-nodes 2: nothing says how the other nodes join: no srun-started SLURM job, no "
        "MASTER_ADDR or NODE_RANK (Lightning leaves a SLURM job named interactive to them); ",
    ),
    (
        TORCHRUN,
        ["--devices", "2"],
        "--devices 2 --num-nodes 1: torchrun started 4 processes in all (WORLD_SIZE=4), not "
        "2 x 1; pass its --nproc-per-node as --devices and its --nnodes as --num-nodes",
    ),
]


@pytest.mark.parametrize(
    ("variables", "flags", "message"),
    CONTRADICTED,
    ids=[
        "tasks per node",
        "nodes",
        "one-task job",
        "no tasks per node",
        "one process, two tasks",
        "batch script without srun",
        "empty tasks per node",
        "no launcher",
        "interactive job",
        "torchrun",
    ],  # fmt: skip
)
def test_scale_flags_the_launcher_contradicts_are_refused_before_lightning(
    pix3d, tmp_path, variables, flags, message
):
    """Lightning refused them only as the fit began, after `training voxel -> RUN` and
    config.yaml, with its raw ValueError and exit 1; --num-nodes 2 with no launcher waited for
    the other node forever, deaf to Ctrl-C and SIGTERM."""
    out = tmp_path / "run"
    code, err, imported = recon_process(
        ["train", "voxel", "--data", pix3d, "--device", "cpu", "-o", out, "--json", *flags],
        {**without_launchers(), **variables},
    )
    assert code == 2, err
    assert one_line(err) and err.startswith(f"error: {message}"), err
    assert "lightning" not in imported
    assert not out.exists()


@pytest.mark.parametrize(
    ("variables", "devices", "options"),
    [
        (SLURM, 2, {"strategy": "ddp"}),
        (SLURM, 2, {}),  # auto: ddp over 2 processes
        ({**SLURM, "SLURM_NTASKS": "4", "SLURM_NNODES": "2"}, 2, {"num_nodes": 2}),
        ({**SLURM, "SLURM_JOB_NAME": "interactive"}, 1, {"strategy": "ddp"}),
        ({**SLURM, "SLURM_JOB_NAME": "bash"}, 1, {"strategy": "ddp"}),
        ({**SLURM, **TORCHRUN}, 2, {"num_nodes": 2}),  # torchrun inside a SLURM job
        ({"MASTER_ADDR": "node0", "MASTER_PORT": "29500", "NODE_RANK": "1"}, 2, {"num_nodes": 2}),
        ({"NODE_RANK": "0"}, 1, {"num_nodes": 3}),
        (
            {
                "LSB_JOBID": "7",
                "LSB_DJOB_RANKFILE": "ranks",
                "JSM_NAMESPACE_LOCAL_RANK": "0",
                "JSM_NAMESPACE_SIZE": "4",
            },
            2,
            {"num_nodes": 2},
        ),  # fmt: skip
    ],
    ids=[
        "srun ddp",
        "srun auto",
        "srun 2 nodes",
        "interactive job",
        "bash job",
        "torchrun in slurm",
        "node variables",
        "node rank",
        "lsf",
    ],  # fmt: skip
)
def test_what_lightning_accepts_of_a_launcher_is_not_refused(
    monkeypatch, variables, devices, options
):
    """A SLURM job named bash or interactive is not Lightning's to check, torchrun comes first
    even inside SLURM, and NODE_RANK or MASTER_ADDR (or LSF's jsrun) tell the nodes where to
    meet."""
    from recon.pipelines.common.trainer_flags import check_cluster

    for name in set(os.environ) - set(without_launchers()):
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    run = RunOptions(out=Path("run"), device="cpu", devices=str(devices), **options)
    check_cluster("cpu", devices, run)


@pytest.mark.parametrize(
    ("variables", "refused"), [({}, True), (SLURM, False), ({**TORCHRUN, "WORLD_SIZE": "2"}, False)]
)
def test_cpu_processes_are_counted_against_the_cores_only_where_lightning_starts_them(
    monkeypatch, variables, refused
):
    """srun --cpus-per-task=1 gives each task one core: --devices 2 was refused there, although
    srun, not Lightning, starts the two processes, each on its own core."""
    from recon.pipelines.common.trainer_flags import check_scale

    for name in set(os.environ) - set(without_launchers()):
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    run = RunOptions(out=Path("run"), device="cpu", devices="2")
    if refused:
        with pytest.raises(BadInput, match="gives the run 1 CPU core; start at most 1 CPU process"):
            check_scale("cpu", 2, run)
    else:
        check_scale("cpu", 2, run)


def test_strategy_names_are_lightnings():
    from lightning.pytorch.strategies import StrategyRegistry

    from recon.pipelines.common.trainer_flags import STRATEGIES

    assert ("auto", *sorted(StrategyRegistry.available_strategies())) == STRATEGIES


def test_launcher_rank_variables_decide_who_checks_the_folder_first(monkeypatch):
    from recon.pipelines.common.ranks import RANK_VARIABLES, launched_as_rank_zero

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert launched_as_rank_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("RANK", "0")
    assert launched_as_rank_zero()
    for name in ("LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", "RANK"):
        monkeypatch.setenv(name, "1")
        assert not launched_as_rank_zero(), name
        monkeypatch.setenv(name, "0")


def test_a_process_that_only_looks_like_another_rank_still_checks_the_folder(monkeypatch, tmp_path):
    """An MPI variable says rank 1, but Lightning (no mpi4py) makes this process rank 0: the
    folder is checked once the Trainer says so."""
    from recon.pipelines.common.ranks import RANK_VARIABLES

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BadInput, match="holds files no recon command wrote"):
        fit(TOY, ToyConfig(), RunOptions(out=out, device="cpu", quiet=True))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------- failures inside the fit


# the toy regression of the engine's own tests: 64 training items, 8 batches an epoch
from test_training_engine import TOY, ToyConfig  # noqa: E402


def failing_callback(hook: str, batch: int = 0, epoch: int = 0):
    """A callback raising RuntimeError("boom") in hook (at training batch `batch` of `epoch`)."""
    import lightning as L

    class Boom(L.Callback):
        pass

    def fail(self, trainer, module, *args, **kwargs):
        if hook != "on_train_batch_start" or (args[1], trainer.current_epoch) == (batch, epoch):
            raise RuntimeError("boom")

    setattr(Boom, hook, fail)
    return Boom()


def failing_fit(
    out: Path, hook: str, batch: int = 0, epochs: int = 2, epoch: int = 0, **options
) -> None:
    """A toy fit of `epochs` into out that fails in hook (at training batch `batch` of
    `epoch`)."""
    callbacks = [failing_callback(hook, batch, epoch)]
    run = RunOptions(out=out, device="cpu", quiet=True, extra_callbacks=callbacks, **options)
    with pytest.raises(RuntimeError, match="boom"):
        fit(TOY, ToyConfig(epochs=epochs), run)


@pytest.mark.parametrize("hook", ["setup", "on_sanity_check_start", "on_train_batch_start"])
def test_a_fit_failing_before_its_first_step_leaves_no_run_folder(tmp_path, hook):
    out = tmp_path / "runs" / "new"
    failing_fit(out, hook)
    assert not out.exists()
    assert not (tmp_path / "runs").exists()  # made for the run folder, empty: it goes too
    (tmp_path / "runs").mkdir()
    failing_fit(out, hook)
    assert (tmp_path / "runs").is_dir()  # one that was there stays


def test_a_fit_failing_before_its_first_checkpoint_leaves_no_run_folder(tmp_path):
    """A damaged image met at the second batch left config.yaml and hparams.yaml, and the
    corrected command was refused ("run folder is not empty"): nothing there could be
    resumed. After the first epoch's checkpoint the run stays (it can be resumed)."""
    out = tmp_path / "run"
    failing_fit(out, "on_train_batch_start", batch=1)
    assert not out.exists()
    failing_fit(out, "on_train_batch_start", batch=1, epoch=1)
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "last.ckpt").is_file()


def test_a_folder_that_was_there_stays_and_loses_only_what_the_run_added(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    failing_fit(empty, "on_sanity_check_start")
    assert empty.is_dir() and list(empty.iterdir()) == []

    old = tmp_path / "old"
    fit(TOY, ToyConfig(), RunOptions(out=old, device="cpu", quiet=True))
    (old / "notes.txt").write_text("mine")
    failing_fit(old, "setup", overwrite=True)
    assert (old / "notes.txt").read_text() == "mine"
    assert (old / "config.yaml").is_file()


def test_a_resume_failing_before_its_first_step_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    fit(TOY, ToyConfig(), RunOptions(out=out, device="cpu", quiet=True))
    last = out / "checkpoints" / "last.ckpt"
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    epochs = ToyConfig().epochs
    failing_fit(out, "on_train_batch_start", epochs=epochs + 2, epoch=epochs, resume=last)
    assert last.read_bytes() == before[Path("checkpoints/last.ckpt")]
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == sorted(before)


def test_a_stop_between_best_and_last_checkpoint_leaves_no_run_folder(tmp_path, monkeypatch):
    """Ctrl-C after best.ckpt was written and before last.ckpt (one after the other at the
    first epoch's end) kept the folder, "interrupted" with no note: --resume then refused it
    (no last.ckpt) and a rerun was told to --overwrite. It goes as a stop before the first
    checkpoint does."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    written = []

    def stop_before_last(self, trainer, monitor_candidates) -> None:
        written.extend(p.name for p in (Path(self.dirpath)).glob("*.ckpt"))
        raise KeyboardInterrupt

    monkeypatch.setattr(ModelCheckpoint, "_save_last_checkpoint", stop_before_last)
    out = tmp_path / "run"
    run = RunOptions(out=out, device="cpu", devices="1", quiet=True)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        fit(TOY, ToyConfig(epochs=3), run)
    assert written == ["best.ckpt"]  # the stop came between the two
    assert not out.exists(), sorted(str(f.relative_to(out)) for f in out.rglob("*"))


def test_a_fit_stopped_before_its_first_checkpoint_leaves_no_run_folder(tmp_path):
    """Ctrl-C (or SIGTERM) during the first epoch left config.yaml and a run.json naming a
    last.ckpt that was never written: --resume then refused the folder and a rerun was told to
    --resume. Nothing there could be resumed or used, so it goes as a failure before the first
    step does; a stop after a checkpoint keeps the run and names its last.ckpt."""
    import json

    import lightning as L

    class Stop(L.Callback):
        def __init__(self, epoch: int) -> None:
            self.epoch = epoch

        def on_train_batch_start(self, trainer, module, batch, index) -> None:
            if trainer.current_epoch == self.epoch and index == 1:
                raise KeyboardInterrupt

    from recon.pipelines.common.stops import STOP_NOTES

    for epoch, kept in ((0, False), (1, True)):
        out = tmp_path / f"stopped_in_epoch_{epoch}"
        run = RunOptions(
            out=out, device="cpu", devices="1", quiet=True, extra_callbacks=[Stop(epoch)]
        )
        STOP_NOTES.clear()
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            fit(TOY, ToyConfig(epochs=3), run)
        assert out.exists() is kept
        # the stop's line says what was kept and how to go on, with the run's scale-out flags
        # (see recon.cli.app)
        resume = (
            "the run is kept after 1 epoch: continue it with "
            f"`recon train toy --resume {out} --device cpu --devices 1`"
        )
        assert list(STOP_NOTES) == ([resume] if kept else [])
    record = json.loads((out / "run.json").read_text())["metrics"]
    assert record["interrupted"] is True
    # the parents the run made for its folder go too, while empty: `--out runs/toy` left runs/
    made, beside = tmp_path / "runs" / "nested", tmp_path / "runs_kept"
    run = RunOptions(
        out=made / "toy", device="cpu", devices="1", quiet=True, extra_callbacks=[Stop(0)]
    )
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        fit(TOY, ToyConfig(epochs=3), run)
    assert not (tmp_path / "runs").exists()
    beside.mkdir()  # a parent that held something before stays
    (beside / "other").mkdir()
    run = RunOptions(
        out=beside / "toy", device="cpu", devices="1", quiet=True, extra_callbacks=[Stop(0)]
    )
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        fit(TOY, ToyConfig(epochs=3), run)
    assert sorted(p.name for p in beside.iterdir()) == ["other"]
    assert record["last_checkpoint"] == str(out / "checkpoints" / "last.ckpt")


def test_a_stop_just_after_the_epoch_s_checkpoint_counts_that_epoch(tmp_path):
    """last.ckpt is written at the end of an epoch before Lightning counts the epoch done: a
    stop in between said "kept after 0 epochs" (and run.json epochs_run 0) of a checkpoint
    that holds one, which a resume continues from epoch 1. Seen as a flaky SIGTERM test."""
    import csv
    import json

    from lightning.pytorch.callbacks import Checkpoint

    from recon.pipelines.common.stops import STOP_NOTES

    class StopAfterTheSave(Checkpoint):  # a checkpoint callback: Lightning calls it after ours
        def on_train_epoch_end(self, trainer, module) -> None:
            if trainer.current_epoch == 0:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    run = RunOptions(
        out=out, device="cpu", devices="1", quiet=True, extra_callbacks=[StopAfterTheSave()]
    )
    STOP_NOTES.clear()
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        fit(TOY, ToyConfig(epochs=3), run)
    assert json.loads((out / "run.json").read_text())["metrics"]["epochs_run"] == 1
    assert list(STOP_NOTES)[0].startswith("the run is kept after 1 epoch: ")
    resumed = RunOptions(
        out=out, device="cpu", devices="1", quiet=True, resume=out / "checkpoints" / "last.ckpt"
    )
    fit(TOY, ToyConfig(epochs=3), resumed)
    with (out / "metrics.csv").open() as table:
        rows = list(csv.DictReader(table))
    monitored = [row["epoch"] for row in rows if row.get(TOY.monitor)]
    assert monitored == ["0", "1", "2"], rows  # epoch 0 was not trained again
    assert json.loads((out / "run.json").read_text())["metrics"]["epochs_run"] == 3


def test_a_stop_swallowed_during_training_is_raised_at_the_next_batch(tmp_path):
    """A Ctrl-C that landed in a finaliser (printed as "ignored") let `recon train` run all its
    200 epochs and exit 0; the stop the handler recorded is raised again after the next batch."""
    import lightning as L

    from recon.pipelines.common.stops import UNSEEN_STOPS

    class Swallowed(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, index) -> None:
            if trainer.current_epoch == 1 and index == 2:
                UNSEEN_STOPS.append(2)  # the handler ran; its KeyboardInterrupt went nowhere

    run = RunOptions(tmp_path / "run", device="cpu", quiet=True, extra_callbacks=[Swallowed()])
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        fit(TOY, ToyConfig(epochs=3), run)
    assert UNSEEN_STOPS == []
    record = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]
    assert record["interrupted"] is True and record["epochs_run"] == 1


def test_a_run_folder_without_last_ckpt_says_it_cannot_be_resumed(recon, tmp_path):
    """A run that wrote no last.ckpt (killed in its first epoch): the rerun was told to
    --resume, and --resume said only 'a folder without checkpoints/last.ckpt'."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("epochs: 3\n")
    (out / "run.json").write_text('{"command": "train voxel", "version": "0.1.0", "config": {}}')
    data = tmp_path / "data"
    data.mkdir()
    code, _, err = recon("train", "voxel", "--data", data, "--device", "cpu", "-o", out)
    assert code == 2
    assert err.strip() == (
        f"error: {out}: holds a run without checkpoints/last.ckpt, which cannot be resumed "
        "(pass --overwrite to start it again)"
    )
    code, _, err = recon("train", "voxel", "--resume", out, "--epochs", "4")
    assert code == 2
    assert err.strip() == (
        f"error: {out}: this run wrote no checkpoints/last.ckpt (it stopped before its first "
        "epoch ended), so it cannot be resumed; start it again with --overwrite"
    )


def test_a_run_folder_under_a_file_is_one_line_before_lightning_loads(pix3d, tmp_path):
    """`-o afile/sub` got as far as the Trainer (seconds of set-up) and ended with a raw
    NotADirectoryError, exit 1; the run makes the folders it lacks, but not under a file."""
    (tmp_path / "afile").write_text("mine")
    out = tmp_path / "afile" / "sub" / "run"
    code, err, imported = recon_process(
        ["train", "voxel", "--data", pix3d, "--device", "cpu", "-o", out], without_launchers()
    )
    assert code == 2 and one_line(err), err
    assert err.startswith(f"error: {tmp_path / 'afile'}: is a file, not a folder"), err
    assert "lightning" not in imported and "torch" not in imported
    assert (tmp_path / "afile").read_text() == "mine"


def _training_until(
    pix3d_root: Path, out: Path, marker: str, extra: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`recon train voxel` for 200 epochs in a subprocess (--json; in a session of its own, as
    a scheduler's job is), once out/marker exists."""
    import os
    import time

    args = [str(Path(sys.executable).parent / "recon"), "train", "voxel", "--data",
            str(pix3d_root), *TINY_VOXEL[:-1], "200", "-o", str(out), "--json", "-q"]  # fmt: skip
    args += extra
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not (out / marker).exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return process


def test_ctrl_c_during_training_exits_130_with_one_json_error(pix3d_root, tmp_path):
    """Lightning catches Ctrl-C and exits 1 after its clean-up: recon still exits 130, says
    'interrupted' and, with --json, prints the error object."""
    import json
    import signal

    out = tmp_path / "run"
    process = _training_until(pix3d_root, out, "metrics.csv")  # first epoch logged: in the fit
    process.send_signal(signal.SIGINT)
    stdout, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.decode().splitlines()[-1].startswith("interrupted")
    failure = json.loads(stdout)  # with a "note" when the stop came after a checkpoint
    assert (failure["error"], failure["exit_code"]) == ("interrupted", 130)


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_after_an_epoch_writes_the_run_record_and_exits_143(pix3d_root, tmp_path, workers):
    """A scheduler's stop (SIGTERM) left no run.json and no curves.png for the epochs done.
    scancel and a SLURM time limit signal the whole process group: with --workers 1 the data
    worker died of it first and the fit ended with the worker's RuntimeError, which was not
    taken for a stop (exit 143 still, but no run.json, no curves.png, no resume note)."""
    import json
    import os
    import signal

    out = tmp_path / "run"
    extra = ("--workers", str(workers))
    process = _training_until(pix3d_root, out, "checkpoints/last.ckpt", extra)  # an epoch done
    os.killpg(process.pid, signal.SIGTERM)
    stdout, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    epochs = json.loads((out / "run.json").read_text())["metrics"]["epochs_run"]
    note = (
        f"the run is kept after {epochs} epoch{'s' * (epochs != 1)}: continue it "
        f"with `recon train voxel --resume {out} --device cpu`"
    )
    assert err.decode().splitlines()[-1] == f"terminated ({note})"
    # --json gives the note too: it said only that the run was terminated
    assert json.loads(stdout) == {"error": "terminated (SIGTERM)", "exit_code": 143, "note": note}
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "train voxel" and record["metrics"]["interrupted"] is True
    assert record["metrics"]["epochs_run"] >= 1 and record["metrics"]["best_checkpoint"]
    assert (out / "curves.png").stat().st_size > 0


def test_the_resume_note_repeats_the_flags_that_shape_the_run():
    """It dropped --limit-batches (resumed without it, an epoch ran every batch: other weights
    than the run never stopped), --max-time (the next job of a chain ran unlimited) and
    --logger (TensorBoard's logs ended at the stop)."""
    from recon.pipelines.common.trainer_flags import resume_command

    run = RunOptions(out=Path("r"), device="cpu", limit_batches=2, max_time="00:04:00:00")
    run.logger, run.channels_last = "tensorboard", True
    assert resume_command("voxel", Path("r"), run) == (
        "recon train voxel --resume r --device cpu --limit-batches 2 --max-time 00:04:00:00 "
        "--logger tensorboard --channels-last"
    )
    assert resume_command("voxel", Path("r"), RunOptions(out=Path("r"))) == (
        "recon train voxel --resume r"
    )


def test_limit_batches_1_trains_one_batch_per_epoch(recon, pix3d, tmp_path):
    """`--limit-batches 1` was read as the float 1.0, which Lightning takes for every batch."""
    import torch

    out = tmp_path / "run"
    args = ["train", "voxel", "--data", pix3d, *TINY_VOXEL, "--batch-size", "4", "-o", out]
    code, _, err = recon(*args, "--epochs", "2", "--limit-batches", "1", "-q")
    assert code == 0, err
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 2  # one of the 2 batches of 4 training items, each epoch


def test_a_max_time_over_before_the_first_checkpoint_keeps_nothing(recon, pix3d, tmp_path):
    """--max-time 1e-9 (zero to Lightning's timer) trained no epoch, exited 0 and said "the run
    is kept: continue it with ...", leaving config.yaml and a run.json with no checkpoint, which
    the suggested --resume refused. Nothing is kept now, and the line says why."""
    out = tmp_path / "runs" / "run"
    args = ["train", "voxel", "--data", pix3d, *TINY_VOXEL, "--batch-size", "4", "-o", out]
    code, stdout, err = recon(*args, "--epochs", "3", "--max-time", "1e-9", "-q", "--json")
    assert code == 2, err
    assert err.strip() == (
        "error: --max-time 1e-9: the time ran out before the first epoch ended (nothing to "
        "keep); give it more time"
    ), err
    assert not (tmp_path / "runs").exists()  # the parents it made go too


def test_a_run_stopped_by_max_time_says_so_and_how_to_go_on(recon, pix3d, tmp_path):
    """A run stopped by --max-time exited 0 with a summary like a finished run's and
    `"interrupted": false`; only Lightning's own line, which -q hides, told."""
    import json

    out = tmp_path / "run"
    args = ["train", "voxel", "--data", pix3d, *TINY_VOXEL, "--batch-size", "4", "-o", out]
    code, stdout, err = recon(*args, "--epochs", "3", "--max-time", "0.0001", "-q", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["time_limit_reached"] is True and result["epochs_run"] == 1
    assert (
        f"note: --max-time reached after 1 of 3 epochs; the run is kept: continue it with "
        f"`recon train voxel --resume {out} --device cpu --max-time 0.0001`"
    ) in err
