"""Opt-in pretrained image encoders: a local torchvision weights file, never a download."""

from __future__ import annotations

from pathlib import Path

from recon.pipelines.common.checkpoints import read_torch_file
from recon.pipelines.common.errors import BadInput


def load_pretrained_encoder(encoder, path: str) -> None:
    """Load a local torchvision ResNet state_dict into encoder (its fc.* keys are ignored)."""
    import torch

    file = Path(path)
    if not file.is_file():
        raise BadInput(f"{file}: no such weights file (pretrained_weights)")
    state = read_torch_file(file, "weights file", "give a state_dict saved with torch.save")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BadInput(f"{file}: expected a state_dict of tensors")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = encoder.state_dict()
    wrong = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if wrong or missing or unexpected:
        first = (
            f"{wrong[0]} is {list(state[wrong[0]].shape)} there, {list(own[wrong[0]].shape)} here"
            if wrong
            else f"e.g. {(missing or unexpected)[0]}"
        )
        raise BadInput(
            f"{file}: does not match the {type(encoder).__name__} encoder ({len(wrong)} of "
            f"another shape, {len(missing)} missing, {len(unexpected)} unexpected; {first}): "
            "weights of another network?"
        )
    encoder.load_state_dict(state, strict=False)
