"""The QC figure of `recon register`: its size, and edges that tell a right pose from a
wrong one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from recon.pipelines.xray.figures import (
    FINAL_COLOUR,
    INITIAL_COLOUR,
    FigureText,
    edge_agreement,
    edge_map,
    edge_overlay,
    figure_lines,
    figure_size,
    panel_shape,
    write_registration_figure,
)


def _blobs(height: int, width: int, shift: float = 0.0) -> torch.Tensor:
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    image = torch.exp(-((rows - height / 2) ** 2 + (cols - width / 3 - shift) ** 2) / 40)
    image += (cols > 2 * width / 3 + shift).float() * 0.5
    return image[None, None]


@pytest.mark.parametrize("height, width", [(56, 56), (40, 100), (300, 120)])
def test_figure_has_the_stated_readable_size(tmp_path, height, width):
    xray = _blobs(height, width)
    lines = ["a: similarity 0.9 (ok)", "found pose", "initial pose", "errors"]
    size = write_registration_figure(
        tmp_path / "f.png", xray, _blobs(height, width, 6), xray, FigureText(lines)
    )
    with Image.open(tmp_path / "f.png") as png:
        assert png.size == size == figure_size(height, width, len(lines))
        assert max(png.size) >= 512
    rows, columns = panel_shape(height, width)
    assert max(rows, columns) == 480  # each panel's long side, whatever the detector size
    assert abs(rows / columns - height / width) < 0.05  # aspect kept


def test_edge_overlay_draws_both_poses_and_titles_carry_the_pose():
    xray = _blobs(48, 48)
    overlay = edge_overlay(xray, _blobs(48, 48, 8), xray, (96, 96))
    for colour in (INITIAL_COLOUR, FINAL_COLOUR):
        assert (overlay == np.array(colour, dtype=np.uint8)).all(-1).sum() > 50
    # a step edge is found where it is, one pixel thin
    step = torch.zeros(1, 1, 32, 32)
    step[..., 16:] = 1.0
    edges = edge_map(step, sigma=1.0)
    assert edges.any(dim=1).all() and edges.sum(dim=1).max() <= 2
    assert set(torch.nonzero(edges)[:, 1].tolist()) <= {15, 16}
    row = {
        "name": "x", "status": "ok", "iterations": 12, "similarity": 0.91,
        "rot_deg": [1.0, -2.5, 0.25], "xyz_mm": [3.0, 850.0, -4.0],
        "init_rot_deg": [0.0, 0.0, 0.0], "init_xyz_mm": [0.0, 850.0, 0.0],
        "final_mtre_mm": 0.4, "init_mtre_mm": 12.0, "final_rotation_error_deg": 0.2,
        "init_rotation_error_deg": 8.0, "final_translation_error_mm": 0.5,
        "init_translation_error_mm": 20.0, "edge_agreement": 0.834, "init_edge_agreement": 0.26,
    }  # fmt: skip
    lines = figure_lines(row)
    assert "similarity 0.910 (ok)" in lines[0] and "edges 83% (initial pose 26%)" in lines[0]
    assert "rot 1.00 -2.50 0.25 deg" in lines[1] and "xyz 3.0 850.0 -4.0 mm" in lines[1]
    assert "mTRE 0.40 mm (start 12.0)" in lines[3]


@pytest.mark.slow
def test_final_edges_fall_on_xray_edges_at_the_true_pose_not_10_degrees_off():
    """A degraded synthetic X-ray of the bundled CT: the share of DRR edge pixels within 1 px
    of an X-ray edge is clearly higher at the true pose than at any pose 10 deg off."""
    from recon.pipelines.xray.drr import make_renderer, render_with
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.synth_xray import SynthXrayConfig, degrade
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(None, None, "AP", spacing_mm=4.0)
    config = SynthXrayConfig(count=1, height=128)
    drr = make_renderer(subject, config.intrinsics(), "trilinear")
    rot, xyz = [3.0, -2.0, 2.0], [6.0, 835.0, -5.0]
    counts = degrade(
        render_with(drr, pose_from_degrees(rot, xyz)), config, torch.Generator().manual_seed(0)
    )
    xray = -torch.log((torch.from_numpy(counts.astype(np.float32)) / 4095).clamp_min(1e-3))
    offsets = [np.eye(3)[axis] * sign * 10 for axis in range(3) for sign in (1, -1)]
    poses = torch.cat(
        [pose_from_degrees(np.add(rot, offset), xyz) for offset in [np.zeros(3), *offsets]]
    )
    scores = [edge_agreement(xray, image) for image in render_with(drr, poses)]
    right, wrong = scores[0], max(scores[1:])
    assert right > 0.7 and right > wrong + 0.1, scores


def test_images_larger_than_torch_quantile_takes_are_drawn():
    """torch.quantile refuses more than 2^24 values; a 4200 x 4200 radiograph still draws."""
    from recon.pipelines.xray.figures import checkerboard

    big = torch.rand(1, 1, 4200, 4200, generator=torch.Generator().manual_seed(0))
    tiles = checkerboard(big, big.flip(-1), (60, 60))
    assert tiles.shape == (60, 60, 3) and 100 < tiles.mean() < 155
