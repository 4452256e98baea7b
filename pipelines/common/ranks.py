"""Which process of a multi-process launch this is, read from the launcher's environment before
Lightning (or anything heavy) is imported: `recon`'s entry point reads it to decide which
process prints a failure's JSON, and the training engine to let global rank 0 alone check the
run folder."""

from __future__ import annotations

import os

# where launchers put a process's rank (Lightning's DDP launcher and torchrun, SLURM, LSF, MPI)
RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "SLURM_PROCID",
    "JSM_NAMESPACE_RANK",
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "PMIX_RANK",
)


def launched_as_rank_zero() -> bool:
    """True unless a launcher's variable gives this process a rank other than 0: read before
    Lightning is imported, so rank 0 can check the run folder at once. A process that only looks
    like another rank is checked again once the Trainer knows (engine.fit)."""
    return all(os.environ.get(name, "0").strip() in ("0", "") for name in RANK_VARIABLES)
