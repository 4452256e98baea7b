"""Opt-in pretrained image encoders: a local torchvision weights file, never a download."""

from __future__ import annotations

from pathlib import Path

from recon.pipelines.common.errors import BadInput


def load_pretrained_encoder(encoder, path: str) -> None:
    """Load a local torchvision ResNet state_dict into encoder (its fc.* keys are ignored)."""
    import torch

    file = Path(path)
    if not file.is_file():
        raise BadInput(f"{file}: no such weights file (pretrained_weights)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BadInput(f"{file}: not a readable torch weights file ({error})") from error
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise BadInput(f"{file}: expected a state_dict of tensors")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadInput(
            f"{file}: does not match the encoder ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys)"
        )
