"""The run flags of `recon train` (device, processes, nodes, strategy, precision, time and batch
limits) checked, against a SLURM job's or torchrun's processes too, and turned into Lightning
Trainer arguments, before anything is written; and the command that continues a stopped run."""

from __future__ import annotations

import importlib.util
import math
import os
import shlex
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from recon.pipelines.common.errors import BadInput

if TYPE_CHECKING:
    from pathlib import Path

    from recon.pipelines.common.settings import RunOptions

LOGGERS = ("csv", "tensorboard")
# no half-precision weights (see recon_cli/train.py): the mixed precisions keep float32 weights
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "64-true")
MAX_DEVICES = 1024  # per node
MAX_NODES = 10_000
MAX_MINUTES = 10 * 365 * 24 * 60  # --max-time: ten years
MAX_BATCHES = 10**9  # --limit-batches as a count


# Every --strategy name Lightning's StrategyRegistry holds (as of Lightning 2.6), "auto" first:
# written out so a wrong name is refused without importing Lightning (3 s); a test compares it
# with the installed Lightning's registry.
STRATEGIES = (
    "auto",
    "ddp",
    "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true",
    "ddp_fork",
    "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_notebook",
    "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "ddp_spawn",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
    "fsdp",
    "fsdp_cpu_offload",
    "single_device",
    "single_tpu",
    "single_xla",
    "xla",
    "xla_debug",
)
# strategies whose library is not a dependency of recon: name prefix -> the package it needs
STRATEGY_PACKAGES = (
    ("deepspeed", "deepspeed"),
    ("xla", "torch_xla"),
    ("single_xla", "torch_xla"),
    ("single_tpu", "torch_xla"),
)
GPU_STRATEGIES = ("deepspeed", "fsdp")  # name prefixes of the strategies that need CUDA GPUs
# the strategies whose launcher (Lightning's DDP script launcher) checks --devices and
# --num-nodes against a SLURM job or torchrun, as it starts the fit; deepspeed's too
SCRIPT_LAUNCHED = ("ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")
# what tells the nodes of a run where to meet without SLURM: torchrun's, Kubeflow's, or the
# user's own variables (Lightning's LightningEnvironment reads MASTER_ADDR and NODE_RANK)
JOIN_VARIABLES = ("MASTER_ADDR", "NODE_RANK", "GROUP_RANK", "RANK", "LOCAL_RANK", "WORLD_SIZE")
LSF_VARIABLES = ("LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE")
MPI_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK")


def accelerator(device: str, devices: str) -> tuple[str, Any]:
    """--device and --devices -> Lightning's (accelerator, devices)."""
    count: Any = devices
    if isinstance(devices, str) and devices != "auto":
        parts = [p.strip() for p in devices.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise BadInput(f"--devices takes auto, a count or ids like 0,1, not {devices!r}")
        if len(parts) > 1 or devices.strip().endswith(","):
            count = [int(p) for p in parts]
            if max(count) >= MAX_DEVICES or len(set(count)) != len(count):
                raise BadInput(
                    f"--devices {devices}: ids must differ and lie in [0, {MAX_DEVICES - 1}]"
                )
        else:
            count = int(parts[0])
    if count == 0:
        raise BadInput(
            "--devices 0: at least one device is needed (a count, ids like 0,1, or auto)"
        )
    if isinstance(count, int) and count > MAX_DEVICES:
        raise BadInput(f"--devices must be in [1, {MAX_DEVICES}], not {count}")
    if device == "auto":
        return "auto", count
    if device == "cpu":
        return "cpu", 1 if count == "auto" else count
    if device == "cuda":
        return "gpu", count
    if device.startswith("cuda:") and device[5:].isdigit():
        return "gpu", [int(device[5:])]
    raise BadInput(f"--device takes auto, cpu, cuda or cuda:N, not {device!r}")


def check_scale(accelerator: str, devices: Any, run: RunOptions) -> None:
    """One-line errors for what Lightning would refuse with a traceback, or accept and regret:
    unknown names, a strategy recon cannot run (check_strategy) or one for GPUs on the CPU, no
    GPU for --device cuda, GPU ids or more processes than cores on the CPU, no node. Imports
    torch only when a GPU may be meant, and Lightning never."""
    if not 1 <= run.num_nodes <= MAX_NODES:
        raise BadInput(
            f"--num-nodes {run.num_nodes}: at least one node is needed, at most {MAX_NODES}"
        )
    if run.logger not in LOGGERS:
        raise BadInput(f"--logger takes {' or '.join(LOGGERS)}, not {run.logger!r}")
    if run.precision not in PRECISIONS:
        raise BadInput(
            f"--precision {run.precision}: not a precision (choices: {', '.join(PRECISIONS)})"
        )
    if run.strategy not in STRATEGIES:
        usable = [name for name in STRATEGIES if not name.startswith("ddp_spawn")]
        raise BadInput(f"--strategy {run.strategy}: not a strategy (choices: {', '.join(usable)})")
    check_strategy(run.strategy)
    if accelerator == "gpu" and not _cuda():
        raise BadInput(f"--device {run.device}: no CUDA GPU is visible (use --device cpu or auto)")

    def on_cpu() -> bool:  # asked only where it matters: _cuda() imports torch
        return accelerator == "cpu" or (accelerator == "auto" and not _cuda())

    if isinstance(devices, list) and on_cpu():
        raise BadInput(
            f"--devices {run.devices}: ids like 0,1 name GPUs, and this run is on the CPU; "
            f"give a number of CPU processes (e.g. --devices {len(devices)})"
        )
    if run.strategy.startswith(GPU_STRATEGIES) and on_cpu():
        raise BadInput(
            f"--strategy {run.strategy}: runs on CUDA GPUs only (on the CPU use --strategy ddp)"
        )
    check_cluster(accelerator, devices, run)
    several = isinstance(devices, int) and devices > 1
    if several and on_cpu() and not _launcher_started():
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        cores = cores or 1
        if devices > cores:
            raise BadInput(
                f"--devices {devices}: this machine gives the run {cores} CPU "
                f"core{'s' * (cores != 1)}; start at most {cores} CPU "
                f"process{'es' * (cores != 1)}"
            )


def check_cluster(accelerator: str, devices: Any, run: RunOptions) -> None:
    """One line for what Lightning's cluster environment refuses only once training starts,
    after the run folder is written: --devices or --num-nodes that differ from an srun-started
    SLURM job's tasks per node or nodes, or from torchrun's world size (checked, as Lightning
    does, where its DDP launcher starts the fit); and --num-nodes above 1 where nothing says
    how the other nodes join, which waits for them forever. Imports torch only to count GPUs."""
    if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun comes first for Lightning, even in SLURM
        per_node = process_count(accelerator, devices, 1)
        world = os.environ.get("WORLD_SIZE", "")
        if (
            _ddp_launched(run, per_node)
            and world.isdigit()
            and int(world) != per_node * run.num_nodes
        ):
            raise BadInput(
                f"--devices {run.devices} --num-nodes {run.num_nodes}: torchrun started {world} "
                f"processes in all (WORLD_SIZE={world}), not {per_node} x {run.num_nodes}; pass "
                "its --nproc-per-node as --devices and its --nnodes as --num-nodes"
            )
    elif "SLURM_NTASKS" in os.environ and not _slurm_interactive():
        _check_slurm(process_count(accelerator, devices, 1), run)
    elif run.num_nodes > 1 and not _nodes_can_join():
        name = os.environ.get("SLURM_JOB_NAME")
        aside = f" (Lightning leaves a SLURM job named {name} to them)" * _slurm_interactive()
        raise BadInput(
            f"--num-nodes {run.num_nodes}: nothing says how the other nodes join: no srun-started "
            f"SLURM job, no MASTER_ADDR or NODE_RANK{aside}; run it with srun in a SLURM job of "
            f"{run.num_nodes} nodes, or start it on each node with MASTER_ADDR, MASTER_PORT and "
            f"NODE_RANK (0 to {run.num_nodes - 1}) set"
        )


def _launcher_started() -> bool:
    """Whether torchrun or srun started this run's processes (each with the cores the job gave
    its task), so that Lightning starts none."""
    srun = "SLURM_NTASKS" in os.environ and not _slurm_interactive()
    return "TORCHELASTIC_RUN_ID" in os.environ or srun


def _slurm_interactive() -> bool:
    """A SLURM job named bash or interactive, which Lightning does not take for srun-started
    (SLURMEnvironment.detect): its processes are the user's to launch."""
    return os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")


def _check_slurm(per_node: int, run: RunOptions) -> None:
    """Lightning's SLURMEnvironment checks: several tasks given per node, and, under its DDP
    launcher, --devices equal to --ntasks-per-node and --num-nodes to --nodes, each a whole
    number; and two recon adds: several tasks for a run of one process (Lightning lets each
    train it, as rank 0), and tasks other than the run's processes in all (a batch script's one
    task, run without srun, trained in one process whatever --devices said)."""
    for name in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"):
        value = os.environ.get(name)
        if value is not None and not value.strip().isdigit():
            raise BadInput(
                f"{name}={value!r}: not a whole number of "
                f"{'nodes' if name.endswith('NODES') else 'tasks'}; Lightning reads it to "
                "start the run in a SLURM job (unset it, or run the job with srun)"
            )
    tasks = os.environ["SLURM_NTASKS"].strip()
    node_tasks = os.environ.get("SLURM_NTASKS_PER_NODE", "").strip()
    nodes = os.environ.get("SLURM_NNODES", "").strip()
    if int(tasks) > 1 and not node_tasks:
        raise BadInput(
            f"this SLURM job runs {tasks} tasks (--ntasks={tasks}) without --ntasks-per-node, "
            f"which Lightning needs; submit it with --ntasks-per-node={per_node} (--devices) "
            f"and --nodes={run.num_nodes} (--num-nodes)"
        )
    if not _ddp_launched(run, per_node):
        if int(tasks) > 1 and per_node * run.num_nodes == 1:
            raise BadInput(
                f"--devices {run.devices}: this SLURM job runs {tasks} tasks "
                f"(--ntasks={tasks}), but the run trains in one process, so each task would "
                f"train it alone into one folder; pass --devices {node_tasks or tasks} (one per "
                "task on a node), or submit the job with --ntasks=1"
            )
        return
    if node_tasks and int(node_tasks) != per_node:
        shown = f" ({per_node} per node)" if run.devices == "auto" else ""
        raise BadInput(
            f"--devices {run.devices}{shown}: this SLURM job runs {node_tasks} "
            f"task{'s' * (node_tasks != '1')} per node "
            f"(--ntasks-per-node={node_tasks}), one per process; pass --devices {node_tasks}, "
            f"or submit the job with --ntasks-per-node={per_node}"
        )
    if nodes and int(nodes) != run.num_nodes:
        raise BadInput(
            f"--num-nodes {run.num_nodes}: this SLURM job has {nodes} "
            f"node{'s' * (nodes != '1')} (--nodes={nodes}); pass --num-nodes {nodes}, or "
            f"submit the job with --nodes={run.num_nodes}"
        )
    if int(tasks) != per_node * run.num_nodes:
        raise BadInput(
            f"--devices {run.devices} --num-nodes {run.num_nodes}: this SLURM job runs "
            f"{tasks} task{'s' * (tasks != '1')} (--ntasks={tasks}), and in a SLURM job each "
            f"task is one of the run's processes, so the run would have {tasks} instead of "
            f"{per_node * run.num_nodes}; start it with srun in a job of "
            f"--ntasks-per-node={per_node} and --nodes={run.num_nodes}, or pass --devices "
            f"{tasks} --num-nodes 1"
        )


def _nodes_can_join() -> bool:
    """Whether the user's variables, or a launcher Lightning detects besides SLURM and
    torchrun (LSF's jsrun, MPI through mpi4py), tell the nodes where to meet."""
    if any(name in os.environ for name in JOIN_VARIABLES):
        return True
    if all(name in os.environ for name in LSF_VARIABLES):
        return True
    mpi = any(name in os.environ for name in MPI_VARIABLES)
    return mpi and importlib.util.find_spec("mpi4py") is not None


def _ddp_launched(run: RunOptions, per_node: int) -> bool:
    """Whether Lightning's DDP script launcher, which checks the cluster's settings, starts
    the fit: ddp (and deepspeed), or auto over several processes (auto becomes ddp)."""
    if run.strategy == "auto":
        return per_node > 1 or run.num_nodes > 1
    return run.strategy in SCRIPT_LAUNCHED or run.strategy.startswith("deepspeed")


def check_strategy(strategy: str) -> None:
    """One line for a strategy recon cannot run: a spawning DDP (each process is sent the model
    by pickling, which the tasks' models, defined inside functions, do not allow), or one whose
    library is not installed. Imports nothing."""
    if strategy.startswith("ddp_spawn"):
        raise BadInput(
            f"--strategy {strategy}: not supported (its processes are sent the model by "
            f"pickling, which recon's task models do not allow); use --strategy "
            f"{strategy.replace('ddp_spawn', 'ddp', 1)}, which trains the same"
        )
    for prefix, package in STRATEGY_PACKAGES:
        if strategy.startswith(prefix) and importlib.util.find_spec(package) is None:
            raise BadInput(
                f"--strategy {strategy}: needs the {package} package, which is not installed "
                f"(pip install {package.replace('_', '-')}), or use --strategy ddp"
            )


def task_strategy(task, strategy: str, processes: int = 1) -> str:
    """The Lightning strategy for a task: a DDP strategy, or "auto" over several processes
    (which Lightning makes DDP), finds unused parameters for tasks whose optimizers each step
    part of the model (TaskSpec.ddp_find_unused), without which DDP stops at their first step;
    any other name as given."""
    if not task.ddp_find_unused:
        return strategy
    if strategy == "auto" and processes > 1:
        return "ddp_find_unused_parameters_true"
    unused = f"{strategy}_find_unused_parameters_true"
    return unused if unused in STRATEGIES else strategy


def process_count(accelerator: str, devices: Any, num_nodes: int) -> int:
    """The processes Lightning will start for (accelerator, devices) from accelerator() on
    num_nodes nodes, known before a Trainer is built ("auto" devices: every visible GPU, or one
    CPU process)."""
    if isinstance(devices, list):
        per_node = len(devices)
    elif isinstance(devices, int):
        per_node = devices
    elif accelerator != "cpu" and _cuda():
        import torch

        per_node = torch.cuda.device_count()
    else:
        per_node = 1
    return max(per_node, 1) * num_nodes


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def check_batch_limit(value: float | None, split: str, batches: int, detail: str) -> None:
    """Lightning's refusal of a fractional --limit-batches that leaves a split no batch, as one
    line naming the split and its batches per epoch (detail says what makes them)."""
    if value is None or not 0 < value < 1 or batches == 0 or int(batches * value) >= 1:
        return
    least = math.ceil(1000 / batches) / 1000
    plural = "batch" if batches == 1 else "batches"
    # a one-batch split has no fraction to give but all of it (1.0; a bare 1 is a count)
    ask = "1.0 (all of it)" if least >= 1 else f"a fraction of at least {least:g}"
    raise BadInput(
        f"--limit-batches {value:g} leaves the {split} split no batch: it has {batches} "
        f"{plural} per epoch ({detail}); pass {ask} or a whole count of batches"
    )


_FLAG_WORDS = (
    ("strategy", "--strategy", "strategy"),
    ("precision", "--precision", "precision"),
    ("num_nodes", "--num-nodes", "num_nodes"),
    ("nodes", "--num-nodes", "num_nodes"),
    ("gpu", "--device", "device"),
    ("cuda", "--device", "device"),
    ("accelerator", "--device", "device"),
    ("devices", "--devices", "devices"),
)


def trainer_error(error: Exception, run: RunOptions) -> BadInput:
    """Lightning's refusal of a scale-out flag -> one line naming the flag and its value."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    lowered = first.lower()
    for word, flag, attribute in _FLAG_WORDS:
        if word in lowered:
            return BadInput(f"{flag} {getattr(run, attribute)}: {first}")
    return BadInput(f"--device/--devices/--strategy/--precision: {first}")


# the RunOptions fields (num_nodes: --num-nodes) that a resume repeats: the scale-out flags,
# which set the global batch, and the flags that set an epoch's length, each job's time and
# the logs
RESUMED_FLAGS = (
    "device", "devices", "strategy", "num_nodes", "precision", "limit_batches", "max_time", "logger"
)  # fmt: skip


def resume_command(task: str, out: Path, run: RunOptions) -> str:
    """`recon train TASK --resume OUT` with the RESUMED_FLAGS run was given (those not at their
    defaults): continued on another process count or epoch length, a run steps through other
    batches and ends with other weights."""
    from recon.pipelines.common.settings import RunOptions

    default = RunOptions(out=out)
    words = ["recon", "train", task, "--resume", str(out)]
    for field in RESUMED_FLAGS:
        if getattr(run, field) != getattr(default, field):
            words += [f"--{field.replace('_', '-')}", str(getattr(run, field))]
    if run.channels_last:
        words.append("--channels-last")
    return shlex.join(words)


def max_time(value: str | None) -> timedelta | None:
    """--max-time: minutes in (0, ten years], or DD:HH:MM:SS (not all zero)."""
    if value is None:
        return None
    text = str(value).strip()
    parts = text.split(":")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        d, h, m, s = (int(p) for p in parts)
        limit = timedelta(days=d, hours=h, minutes=m, seconds=s)
        if limit <= timedelta(0) or limit > timedelta(minutes=MAX_MINUTES):
            raise BadInput(f"--max-time {text}: must be above 0 and at most ten years")
        return limit
    try:
        minutes = float(text)
    except ValueError:
        raise BadInput(f"--max-time takes minutes or DD:HH:MM:SS, not {value!r}") from None
    if not 0 < minutes <= MAX_MINUTES:  # also refuses NaN
        raise BadInput(f"--max-time must be in (0, {MAX_MINUTES}] minutes, not {text}")
    return timedelta(minutes=minutes)


def batch_limit(value: str | float | int | None) -> float | int | None:
    """--limit-batches as Lightning's limit_*_batches: a whole number (an int, or text of
    digits) is a count of batches per epoch, 1 = one batch; a number with a decimal point (a
    float, or text like 0.25) is a fraction of each epoch in (0, 1], 1.0 = all of it."""
    if value is None:
        return None
    text = str(value).strip()
    if not isinstance(value, bool) and (isinstance(value, int) or text.isdigit()):
        if 1 <= int(text) <= MAX_BATCHES:
            return int(text)
    elif not isinstance(value, bool):
        try:
            fraction = float(text)
        except ValueError:
            fraction = math.nan
        if 0 < fraction <= 1:  # also refuses NaN
            return fraction
    raise BadInput(
        f"--limit-batches takes a fraction in (0, 1] or a whole count in [1, {MAX_BATCHES}] "
        f"(a whole number counts batches, 1 = one; a fraction has a decimal point, 1.0 = all), "
        f"not {text}"
    )
