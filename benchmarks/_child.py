"""Running one side of a measurement in a process of its own and reading its result: the
child prints one JSON object as its last line of stdout."""

from __future__ import annotations

import json
import subprocess


def child_result(command: list[str], may_fail: bool = False) -> dict | None:
    """The JSON object on the last stdout line of `command`. A failed child raises SystemExit
    with the end of its stderr, or gives None with may_fail (killed for memory, say)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if may_fail:
            return None
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
