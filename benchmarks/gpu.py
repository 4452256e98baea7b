"""Training throughput on one device: fp32 against bf16-mixed, and bf16-mixed + channels-last.

    python benchmarks/gpu.py --device cuda [--batch-size 32] [--steps 20]

For each network at its training input size: images/s of forward + backward + Adam step, median
of --steps timed steps after warm-up, all three settings measured in the same run. The ratio
column is against fp32 of the same network. DRRs/s and registration times are in drr.py and
registration.py (both take --device cuda).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _args import device, positive_int


def networks(batch: int, device: str):
    """(name, network, inputs, targets, loss) for each trainable network of recon."""
    from recon.models.parts_net import PartsNet
    from recon.models.pix2pix import UNetGenerator
    from recon.models.voxel_net import VoxelNet

    bce = torch.nn.functional.binary_cross_entropy_with_logits
    occupancy = (torch.rand(batch, 32, 32, 32, device=device) > 0.7).float()
    yield "voxel (ResNet18, 224 px)", VoxelNet(), torch.randn(batch, 3, 224, 224), occupancy, bce
    yield "parts (ResNet50, 128 px)", PartsNet(), torch.randn(batch, 3, 128, 128), occupancy, bce
    yield (
        "drr (pix2pix U-Net, 256 px)",
        UNetGenerator(size=256),
        torch.randn(batch, 1, 256, 256),
        torch.randn(batch, 1, 256, 256, device=device).clamp(-1, 1),
        torch.nn.functional.l1_loss,
    )


def images_per_s(net, images, target, loss_fn, device, setting: str, steps: int) -> float:
    channels_last = setting.endswith("channels-last")
    dtype = torch.bfloat16 if setting.startswith("bf16") else None
    net = net.to(device)
    images = images.to(device)
    if channels_last:  # 2D convolutions only: the 3D decoders' weights have rank 5
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                module.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(net.parameters(), 1e-4)
    device_type = device.split(":")[0]

    def step() -> None:
        with torch.autocast(device_type=device_type, dtype=dtype, enabled=dtype is not None):
            output = net(images)
        loss = loss_fn(output.float(), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    times = []
    for index in range(steps + 3):
        if device_type == "cuda":
            torch.cuda.synchronize()
        clock = time.perf_counter()
        step()
        if device_type == "cuda":
            torch.cuda.synchronize()
        if index >= 3:  # warm-up: cuDNN autotuning, allocator
            times.append(time.perf_counter() - clock)
    return images.shape[0] / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", type=device, default="cuda", help="cuda | cuda:N | cpu (no GPU: --device cpu)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--steps", type=positive_int, default=20)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), batch {args.batch_size}, torch {torch.__version__}")
    settings = ("fp32", "bf16-mixed", "bf16-mixed + channels-last")
    print(f"{'network':<30} {'setting':<28} {'images/s':>9} {'x fp32':>7}")
    for label, net, images, target, loss_fn in networks(args.batch_size, args.device):
        base = None
        for setting in settings:
            torch.manual_seed(0)
            rate = images_per_s(net, images, target, loss_fn, args.device, setting, args.steps)
            base = base or rate
            print(f"{label:<30} {setting:<28} {rate:9.1f} {rate / base:7.2f}")


if __name__ == "__main__":
    main()
