"""The --device option, checked and resolved in one place."""

from __future__ import annotations

import re

from recon.pipelines.common.errors import BadInput

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: str) -> None:
    """BadInput unless device is auto | cpu | cuda | cuda:N and, for CUDA, that device exists.
    torch is imported only for a CUDA request."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise BadInput(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise BadInput(f"--device {device}: no CUDA device is available (use --device cpu)")
    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise BadInput(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")


def choose_device(device: str) -> str:
    """auto | cpu | cuda | cuda:N -> a torch device string; BadInput when it is not available."""
    check_device(device)
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
