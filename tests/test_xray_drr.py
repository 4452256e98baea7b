"""make-drr against a direct diffdrr render, DICOM geometry read back, batched poses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_xray_io import small_ct

from recon.pipelines.common.io import read_image
from recon.pipelines.xray.pose import pose_from_degrees, save_poses
from recon.pipelines.xray.xray import read_xray


def direct_diffdrr(ct_path, rot_deg, xyz_mm, sdd, height, width, delx, dely, reverse_x_axis):
    """The same geometry rendered by diffdrr itself."""
    from diffdrr.data import read
    from diffdrr.drr import DRR

    subject = read(str(ct_path), orientation="AP")
    drr = DRR(
        subject,
        sdd=sdd,
        height=height,
        width=width,
        delx=delx,
        dely=dely,
        reverse_x_axis=reverse_x_axis,
    )
    with torch.no_grad():
        image = drr(
            torch.tensor([rot_deg], dtype=torch.float32),
            torch.tensor([xyz_mm], dtype=torch.float32),
            parameterization="euler_angles",
            convention="ZXY",
            degrees=True,
        )
    return image[0, 0]


def quantise(image: torch.Tensor) -> np.ndarray:
    scale = float(image.max()) / 65535.0
    return np.round(image.numpy() / scale).clip(0, 65535).astype(np.uint16)


@pytest.mark.parametrize("flag, reverse_x_axis", [(None, True), ("--no-reverse-x-axis", False)])
def test_make_drr_png_equals_diffdrr(tmp_path, recon, flag, reverse_x_axis):
    """Default: the radiological display (diffdrr's reverse_x_axis=True); the flag: xvr's.
    The CT has a scanned body's partial-volume skin, where recon's densities are diffdrr's."""
    ct = small_ct(tmp_path / "ct.nii.gz", skin=True)
    code, out, err = recon(
        *(["make-drr"] if flag is None else ["make-drr", flag]),
        "-v",
        ct,
        "--rot",
        5,
        -3,
        2,
        "--xyz",
        4,
        300,
        -6,
        "--sdd",
        600,
        "--size",
        24,
        "--width",
        30,
        "--delx",
        3.0,
        "--dely",
        2.5,
        "-o",
        tmp_path / "drr.png",
        "--json",
        "-q",
        "--device",
        "cpu",
    )
    assert code == 0, err
    result = json.loads(out)
    ours = read_image(tmp_path / "drr.png")
    assert ours.dtype == np.uint16 and ours.shape == (24, 30)
    direct = direct_diffdrr(ct, [5, -3, 2], [4, 300, -6], 600, 24, 30, 3.0, 2.5, reverse_x_axis)
    mismatched = int((ours != quantise(direct)).sum())
    assert mismatched == 0, f"{mismatched} pixels differ from diffdrr"
    assert abs(result["files"][0]["mm_per_count"] * 65535 - float(direct.max())) < 1e-3
    assert result["files"][0]["patient_orientation"] == ("L\\F" if reverse_x_axis else "R\\F")


def test_make_drr_dicom_geometry_reads_back(tmp_path, recon):
    ct = small_ct(tmp_path / "ct.nii.gz")
    code, _, err = recon(
        "make-drr",
        "-v",
        ct,
        "--rot",
        0,
        0,
        0,
        "--xyz",
        0,
        300,
        0,
        "--sdd",
        650,
        "--size",
        20,
        "--width",
        28,
        "--delx",
        2.0,
        "--dely",
        2.5,
        "--renderer",
        "trilinear",
        "-o",
        tmp_path / "drr.dcm",
        "-q",
    )
    assert code == 0, err
    xray = read_xray(tmp_path / "drr.dcm")
    geometry = xray.intrinsics
    assert (geometry.sdd, geometry.height, geometry.width) == (650.0, 20, 28)
    assert (geometry.delx, geometry.dely, geometry.x0, geometry.y0) == (2.0, 2.5, 0.0, 0.0)
    assert xray.photometric == "MONOCHROME2"
    assert xray.positioner == (0.0, 0.0, 300.0)


def test_make_drr_many_poses_into_folder(tmp_path, recon):
    ct = small_ct(tmp_path / "ct.nii.gz")
    poses = torch.cat([pose_from_degrees([a, 0, 0], [0, 300, 0]) for a in (0, 10, 20)])
    save_poses(tmp_path / "poses.pt", poses)
    code, out, err = recon(
        "make-drr",
        "-v",
        ct,
        "--pose",
        tmp_path / "poses.pt",
        "--sdd",
        600,
        "--size",
        16,
        "--delx",
        4.0,
        "--batch-size",
        2,
        "-o",
        tmp_path / "drrs",
        "--json",
    )
    assert code == 0, err
    files = sorted((tmp_path / "drrs").glob("drr_*.png"))
    assert len(files) == 3 and len(json.loads(out)["files"]) == 3
    first, second = read_image(files[0]), read_image(files[1])
    assert first.shape == (16, 16) and not np.array_equal(first, second)
    code, _, err = recon(
        "make-drr",
        "-v",
        ct,
        "--pose",
        tmp_path / "poses.pt",
        "-o",
        tmp_path / "drrs",
        "--size",
        16,
    )
    assert code == 2 and "already exists" in err


def test_fused_trilinear_equals_diffdrr_trilinear():
    """Same DRRs and pose gradients as diffdrr's renderer, pose by pose (float64: only rounding
    may differ)."""
    from diffdrr.renderers import Trilinear

    from recon.pipelines.xray.drr import Intrinsics, make_renderer
    from recon.pipelines.xray.registration import EulerPose
    from recon.pipelines.xray.trilinear import FusedTrilinear
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(spacing_mm=4.0)
    intrinsics = Intrinsics(sdd=1020, height=24, width=32, delx=12, dely=12)
    drr = make_renderer(subject, intrinsics, "trilinear").double()
    assert isinstance(drr.renderer, FusedTrilinear)
    for one in (
        pose_from_degrees([3, 2, 1], [5, 850, 4]),
        pose_from_degrees([-4, 5, 0], [-10, 870, 0]),
    ):
        results = []
        for renderer in (Trilinear(0.5), FusedTrilinear(0.5)):
            drr.renderer = renderer
            pose = EulerPose(one).double()
            image = drr(pose(), n_points=100)
            (image * torch.linspace(0, 1, image.numel()).view_as(image)).sum().backward()
            results.append((image.detach(), pose.rot.grad, pose.xyz.grad))
        for stock, fused in zip(*results, strict=True):
            assert stock.abs().max() > 0
            assert torch.allclose(fused, stock, rtol=0, atol=1e-10 * float(stock.abs().max()))


def test_trilinear_batch_renders_as_poses_one_by_one():
    """A DRR does not depend on the other poses of its batch (diffdrr's Trilinear shares one
    sampling range across the batch; ours does not), so shards and --batch-size agree."""
    from diffdrr.pose import RigidTransform
    from diffdrr.renderers import Trilinear

    from recon.pipelines.xray.drr import Intrinsics, make_renderer
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(spacing_mm=8.0)
    drr = make_renderer(
        subject, Intrinsics(sdd=1020, height=16, width=20, delx=20, dely=20), "trilinear"
    )
    poses = torch.cat(
        [pose_from_degrees([3, 2, 1], [5, 850, 4]), pose_from_degrees([40, 5, 0], [-60, 700, 30])]
    )
    with torch.no_grad():
        together = drr(RigidTransform(poses))
        alone = torch.cat([drr(RigidTransform(pose[None])) for pose in poses])
        assert torch.allclose(together, alone, rtol=0, atol=1e-5 * float(alone.max()))
        drr.renderer = Trilinear(0.5)  # the stock renderer: the batch changes the images
        stock_together = drr(RigidTransform(poses))
        stock_alone = torch.cat([drr(RigidTransform(pose[None])) for pose in poses])
    assert (stock_together - stock_alone).abs().max() > 1e-4 * float(stock_alone.max())


@pytest.mark.parametrize("renderer", ["siddon", "trilinear"])
def test_a_drr_rendered_in_ray_chunks_equals_the_whole(monkeypatch, renderer):
    """All rays went through the renderer at once: a 1024 px Siddon DRR of a 512 x 512 x 300 CT
    asked for about 40 GB and was killed. Rays now go in chunks of a memory budget, which
    change no value (Siddon exactly, the trilinear renderer to float rounding)."""
    from recon.pipelines.xray import drr as drr_module
    from recon.pipelines.xray.drr import Intrinsics, chunk_rays_, make_renderer, render_with
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(spacing_mm=8.0)
    drr = make_renderer(
        subject, Intrinsics(sdd=1020, height=24, width=20, delx=20, dely=20), renderer
    )
    poses = torch.cat([pose_from_degrees([3, 2, 1], [5, 850, 4])] * 2)
    whole = render_with(drr, poses)
    assert chunk_rays_(drr, 2) is None  # a small DRR fits at once
    monkeypatch.setattr(drr_module, "RENDER_CHUNK_BYTES", 2 * 7 * drr_module.ray_bytes(drr))
    # 7 rays fit: trilinear takes 7 at a time, Siddon patches of 2 x 2 (diffdrr's 120 chunks)
    assert chunk_rays_(drr, 2) == (7 if renderer == "trilinear" else 4)
    chunked = render_with(drr, poses)
    assert whole.abs().max() > 0
    if renderer == "siddon":
        assert torch.equal(chunked, whole)
    else:
        assert torch.allclose(chunked, whole, rtol=0, atol=1e-6 * float(whole.max()))
