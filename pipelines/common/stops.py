"""What the CLI's stop handlers (Ctrl-C, SIGTERM) record for the rest of a run: kept apart from
the outputs module, so the entry point can hold them without importing anything else."""

from __future__ import annotations

# what a stopped command left out, for its "interrupted" line (see batch.output_folder)
STOP_NOTES: list[str] = []
# Ctrl-C / SIGTERM that the CLI's handlers raised as KeyboardInterrupt in this run. One that a
# library swallowed (trimesh turns a KeyboardInterrupt raised while it imports an optional
# module into a placeholder for that module; one raised inside a finaliser during training is
# printed as "ignored") would let the command run on to its end: the next item of a progress
# loop, or the next training batch, raises it again (once).
UNSEEN_STOPS: list[int] = []
# every Ctrl-C / SIGTERM the CLI's handlers received in this run (never cleared by a re-raise):
# a stop that reached a DataLoader worker first ends the fit with the worker's error instead
STOPS_RECEIVED: list[int] = []


def raise_unseen_stop() -> None:
    """Raise KeyboardInterrupt again for a stop in UNSEEN_STOPS (clearing it)."""
    if UNSEEN_STOPS:
        UNSEEN_STOPS.clear()
        raise KeyboardInterrupt
