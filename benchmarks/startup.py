"""CLI start-up: whole-process wall time of `recon --help` and friends against bare Python.

Run: uv run python benchmarks/startup.py [--repeat 9]   (prints figures; no assertions)
Target: `recon --help` and a subcommand's `--help` under 300 ms. Each figure is the median of
--repeat runs, measured in this run beside `python -c pass` of the same interpreter, so the ratio
compares like with like.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _args import positive_int


def median_wall(command: list[str], repeat: int) -> float:
    """Median wall-clock seconds of running command to completion."""
    times = []
    for _ in range(repeat):
        clock = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - clock)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=positive_int, default=9)
    args = parser.parse_args()
    recon = str(Path(sys.executable).with_name("recon"))
    base = median_wall([sys.executable, "-c", "pass"], args.repeat)
    print(f"median of {args.repeat} runs")
    print(f"{'python -c pass':26s} {1000 * base:6.0f} ms")
    commands = (
        ["--version"],
        ["--help"],
        ["project", "--help"],
        ["synth", "meshes", "--help"],
        ["train", "--help"],
        ["make-drr", "--help"],
    )
    for words in commands:
        seconds = median_wall([recon, *words], args.repeat)
        label = "recon " + " ".join(words)
        print(f"{label:26s} {1000 * seconds:6.0f} ms  (x{seconds / base:.1f} of bare Python)")


if __name__ == "__main__":
    main()
