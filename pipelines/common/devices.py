"""The --device option, resolved in one place."""

from __future__ import annotations

from recon.pipelines.common.errors import BadInput


def choose_device(device: str) -> str:
    """auto | cpu | cuda | cuda:N -> a torch device string; BadInput when it is not available."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise BadInput(f"--device {device}: no CUDA device is available")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise BadInput(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise BadInput(f"--device takes auto, cpu, cuda or cuda:N, not {device!r}")
