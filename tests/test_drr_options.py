"""make-drr's detector from a parameters.pt (flags win), principal point, label masking and the
bone attenuation multiplier: each changes the DRR the way it should, measured."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from recon.pipelines.common.io import read_image
from recon.pipelines.xray.pose import pose_from_degrees, save_poses
from recon.pipelines.xray.xray import read_xray

SPACING = (2.0, 2.0, 2.5)
ROD = (slice(12, 16), slice(14, 18), slice(5, 20))  # label 1, 900 HU
BAR = (slice(24, 27), slice(10, 13), slice(8, 27))  # label 2, 700 HU
BODY = (slice(6, 34), slice(6, 30), slice(3, 29))  # label 3: soft tissue (40 HU) and lung
LUNG = (slice(6, 34), slice(6, 10), slice(3, 29))  # -600 HU, the softest tissue


def phantom(folder: Path) -> tuple[Path, Path]:
    """A CT in HU with a label map: a body (3) holding a rod (1) and a bar (2) of bone, a lung
    layer in front; features differ along every axis, so shifts are unambiguous."""
    hu = np.full((40, 36, 32), -1000.0, np.float32)
    labels = np.zeros(hu.shape, np.int16)
    hu[BODY], labels[BODY] = 40.0, 3
    hu[LUNG] = -600.0
    hu[ROD], labels[ROD] = 900.0, 1
    hu[BAR], labels[BAR] = 700.0, 2
    affine = np.diag([*SPACING, 1.0])
    nib.save(nib.Nifti1Image(hu, affine), folder / "ct.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "labels.nii.gz")
    return folder / "ct.nii.gz", folder / "labels.nii.gz"


VIEW = ["--rot", 0, 0, 0, "--xyz", 0, 300, 0, "--sdd", 600, "--device", "cpu"]
DETECTOR = ["--size", 24, "--width", 30, "--delx", 3.0, "--dely", 2.5]


def render(recon, tmp_path, name, *flags) -> np.ndarray:
    """make-drr of the phantom in tmp_path -> the DRR in mm (counts x mm_per_count)."""
    ct = tmp_path / "ct.nii.gz"
    if not ct.exists():
        phantom(tmp_path)
    code, out, err = recon("make-drr", "-v", ct, *flags, "-o", tmp_path / name, "--json", "-q")
    assert code == 0, err
    scale = json.loads(out)["files"][0]["mm_per_count"]
    return read_image(tmp_path / name).astype(np.float64) * scale


def test_principal_point_moves_the_image_by_whole_pixels(tmp_path, recon):
    """x0 = 2 columns (6 mm at 3 mm/px) and y0 = 2 rows (5 mm at 2.5 mm/px): the image is the
    same with its content moved 2 columns right (radiological columns; left for R\\F) and 2
    rows down."""
    base = render(recon, tmp_path, "a.png", *VIEW, *DETECTOR)
    moved = render(recon, tmp_path, "b.png", *VIEW, *DETECTOR, "--x0", 6, "--y0", 5)
    assert np.abs(moved[2:, 2:] - base[:-2, :-2]).max() < 1e-3 * base.max()
    assert np.abs(moved - base).max() > 0.1 * base.max()  # it did move
    mirrored = ["--no-reverse-x-axis"]
    base = render(recon, tmp_path, "c.png", *VIEW, *DETECTOR, *mirrored)
    moved = render(recon, tmp_path, "d.png", *VIEW, *DETECTOR, *mirrored, "--x0", 6, "--y0", 5)
    assert np.abs(moved[2:, :-2] - base[:-2, 2:]).max() < 1e-3 * base.max()


def projected_box(ct: Path, box: tuple[slice, ...], pose, intrinsics) -> tuple[float, ...]:
    """Pixel bounds (col_min, col_max, row_min, row_max) of a voxel box's 8 corners."""
    from recon.pipelines.xray.drr import make_renderer, project_points
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(ct)
    corners = np.array(
        [[a, b, c, 1.0] for a in (box[0].start - 0.5, box[0].stop - 0.5)
         for b in (box[1].start - 0.5, box[1].stop - 0.5)
         for c in (box[2].start - 0.5, box[2].stop - 0.5)]
    )  # fmt: skip
    world = (np.asarray(subject.volume.affine) @ corners.T).T[:, :3]
    drr = make_renderer(subject, intrinsics)
    pixels = project_points(drr, pose, torch.tensor(world[None], dtype=torch.float32))[0]
    cols, rows = pixels[:, 0].numpy(), pixels[:, 1].numpy()
    return cols.min(), cols.max(), rows.min(), rows.max()


def test_keep_masks_the_ct_to_the_kept_structures(tmp_path, recon):
    """--keep 1: every pixel whose ray misses the rod (outside its projected box, 1.5 px margin)
    is exactly 0; inside, the DRR is positive and never above the unmasked one (same density
    scale: diffdrr masks after converting HU)."""
    from recon.pipelines.xray.drr import Intrinsics

    ct, labels = phantom(tmp_path)
    whole = render(recon, tmp_path, "whole.png", *VIEW, *DETECTOR)
    rod = render(recon, tmp_path, "rod.png", *VIEW, *DETECTOR, "--labels", labels, "--keep", 1)
    intrinsics = Intrinsics(600.0, 24, 30, 3.0, 2.5, reverse_x_axis=True)
    c0, c1, r0, r1 = projected_box(ct, ROD, pose_from_degrees([0, 0, 0], [0, 300, 0]), intrinsics)
    rows, cols = np.mgrid[: rod.shape[0], : rod.shape[1]]
    outside = (cols + 0.5 < c0 - 1.5) | (cols + 0.5 > c1 + 1.5)
    outside |= (rows + 0.5 < r0 - 1.5) | (rows + 0.5 > r1 + 1.5)
    inside = (cols + 0.5 > c0 + 1.5) & (cols + 0.5 < c1 - 1.5)
    inside &= (rows + 0.5 > r0 + 1.5) & (rows + 0.5 < r1 - 1.5)
    assert outside.sum() > 400 and inside.sum() >= 4
    assert rod[outside].max() == 0.0
    assert whole[outside].max() > 0  # the body is there without the mask
    assert rod[inside].min() > 0
    assert (rod <= whole + 1e-3 * whole.max()).all()
    # a range of labels, and a label map alone (every labelled voxel) = the whole body
    both = render(
        recon, tmp_path, "both.png", *VIEW, *DETECTOR, "--labels", labels, "--keep", "1-2"
    )
    assert both.sum() > rod.sum() and np.abs(both[outside]).max() > 0
    absent = ["--labels", labels, "--keep", 1, "--keep", "7-9", "-o", tmp_path / "absent.png"]
    code, out, err = recon("make-drr", "-v", ct, *VIEW, *DETECTOR, *absent, "--json")
    assert code == 0, err
    assert json.loads(out)["kept_labels"] == [1] and "not in the label map: 7-9" in err
    assert (tmp_path / "absent.png").read_bytes() == (tmp_path / "rod.png").read_bytes()
    body = render(recon, tmp_path, "body.png", *VIEW, *DETECTOR, "--labels", labels)
    assert np.abs(body - whole).max() < 1e-3 * whole.max()


@pytest.mark.parametrize("multiplier", [0.5, 2.0, 3.0])
def test_bone_attenuation_scales_bone_contrast_as_diffdrr_defines_it(tmp_path, recon, multiplier):
    """diffdrr's density: soft tissue and air from the softest tissue up, bone HU x multiplier;
    this phantom has no tissue below -700 HU, so air is -800 (volume.PHANTOM_FLOOR_HU): lung
    -600 -> 200, soft 40 -> 840, rod 900 m + 800. A ray through the rod gains
    L (900 m - 40) over its neighbour through soft tissue only, so the contrast
    (I_rod - I_soft) / I_soft scales by (900 m - 40) / 860 against m = 1."""
    from recon.pipelines.xray.drr import Intrinsics

    ct, _ = phantom(tmp_path)
    pose = pose_from_degrees([0, 0, 0], [0, 300, 0])
    intrinsics = Intrinsics(600.0, 24, 30, 3.0, 2.5, reverse_x_axis=True)
    c0, c1, r0, r1 = projected_box(ct, ROD, pose, intrinsics)
    row, col = int((r0 + r1) / 2), int((c0 + c1) / 2)
    soft = (slice(20, 22), ROD[1], ROD[2])  # between the rod and the bar: soft tissue only
    s0, s1, _, _ = projected_box(ct, soft, pose, intrinsics)
    soft_col = int((s0 + s1) / 2)

    def contrast(image: np.ndarray) -> float:
        return (image[row, col] - image[row, soft_col]) / image[row, soft_col]

    one = render(recon, tmp_path, "m1.png", *VIEW, *DETECTOR)
    other = render(recon, tmp_path, "m.png", *VIEW, *DETECTOR, "--bone-attenuation", multiplier)
    expected = (900 * multiplier - 40) / 860
    assert contrast(other) / contrast(one) == pytest.approx(expected, rel=0.01)


def test_detector_comes_from_an_xvr_parameters_file_and_flags_win(tmp_path, recon):
    """An xvr parameters.pt (detector values as tensors) sets the DRR's size, spacing, sdd and
    column direction; --size resamples that detector (same area), other flags replace fields."""
    ct, _ = phantom(tmp_path)
    detector = {"sdd": torch.tensor(640.0), "height": 20, "width": 26, "delx": torch.tensor(2.5)}
    detector |= {"dely": 3.0, "reverse_x_axis": False}
    pose = pose_from_degrees([2, 0, 0], [0, 300, 0])
    torch.save({"detector": detector, "final_pose": pose, "gt": torch.zeros(1, 1, 20, 26)},
               tmp_path / "parameters.pt")  # fmt: skip
    common = ["-v", ct, "--pose", tmp_path / "parameters.pt", "--device", "cpu", "-q"]
    assert recon("make-drr", *common, "-o", tmp_path / "a.dcm")[0] == 0
    geometry = read_xray(tmp_path / "a.dcm").intrinsics
    assert (geometry.sdd, geometry.height, geometry.width) == (640.0, 20, 26)
    assert (geometry.delx, geometry.dely, geometry.reverse_x_axis) == (2.5, 3.0, False)
    code, _, err = recon("make-drr", *common, "--size", 10, "--sdd", 700, "-o", tmp_path / "b.dcm")
    assert code == 0, err
    geometry = read_xray(tmp_path / "b.dcm").intrinsics
    assert (geometry.sdd, geometry.height, geometry.width) == (700.0, 10, 13)
    assert (geometry.delx, geometry.dely) == (5.0, 6.0)
    code, _, err = recon(
        "make-drr", *common, "--delx", 2.0, "--reverse-x-axis", "-o", tmp_path / "c.dcm"
    )
    assert code == 0, err
    geometry = read_xray(tmp_path / "c.dcm").intrinsics
    assert (geometry.delx, geometry.dely, geometry.reverse_x_axis) == (2.0, 3.0, True)
    # a plain poses file has no detector: the defaults
    save_poses(tmp_path / "poses.pt", pose)
    code, out, err = recon(
        "make-drr", "-v", ct, "--pose", tmp_path / "poses.pt", "-o", tmp_path / "d.png",
        "--device", "cpu", "--json", "-q",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["intrinsics"]["height"] == 256


def test_help_says_a_pose_files_detector_gives_the_width_and_row_spacing(recon, monkeypatch):
    """--dely's help said "(default: --delx)" and --width's "(default: --size)"; a pose file's
    detector gives both (the test above: --delx 2 leaves the file's dely 3)."""
    monkeypatch.setenv("COLUMNS", "250")
    code, text, _ = recon("make-drr", "--help")
    assert code == 0
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ --")}
    assert "(default: a pose file's detector's, scaled with --size; else --delx)" in lines["--dely"]
    assert (
        "(default: a pose file's detector's, scaled with --size; else --size)" in lines["--width"]
    )


@pytest.mark.slow
def test_drr_from_a_registration_has_the_xray_geometry(tmp_path, recon):
    """make-drr --pose parameters.pt of `recon register` renders at the X-ray's size and pixel
    spacing (not make-drr's defaults), and an explicit flag still wins."""
    xrays = tmp_path / "xrays"
    code, _, err = recon(
        "synth", "xray", "-o", xrays, "--count", 1, "--size", 48, "--seed", 4,
        "--device", "cpu", "-q",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = recon(
        "register", xrays, "-o", tmp_path / "reg", "--crop", 0, "--heights", 32,
        "--iterations", 3, "--patience", 2, "--ct-spacing", 6, "--min-similarity", 0,
        "--mirror-check-below", 0, "--threads", 1, "--device", "cpu", "-q",
    )  # fmt: skip
    assert code == 0, err
    parameters = tmp_path / "reg" / "xray_000" / "parameters.pt"
    xray = read_xray(xrays / "xray_000.dcm").intrinsics
    code, _, err = recon(
        "make-drr", "--pose", parameters, "-o", tmp_path / "drr.dcm", "--device", "cpu", "-q"
    )
    assert code == 0, err
    drr = read_xray(tmp_path / "drr.dcm").intrinsics
    assert (drr.height, drr.width) == (xray.height, xray.width) == (48, 48)
    assert drr.sdd == pytest.approx(xray.sdd)
    assert (drr.delx, drr.dely) == pytest.approx((xray.delx, xray.dely))
    assert drr.reverse_x_axis == xray.reverse_x_axis
    code, _, err = recon(
        "make-drr", "--pose", parameters, "--size", 24, "--delx", 1.5, "-o", tmp_path / "s.png",
        "--device", "cpu", "-q",
    )  # fmt: skip
    assert code == 0, err
    assert read_image(tmp_path / "s.png").shape == (24, 24)


def test_seed_is_deprecated_where_nothing_is_random(tmp_path, recon):
    """make-drr, register and predict corset draw no random numbers: --seed changes nothing,
    is hidden from their help and, when given, gets a one-line deprecation notice."""
    ct, _ = phantom(tmp_path)
    common = ["-v", ct, *VIEW, "--size", 16, "--delx", 4.0, "-q"]
    code, _, err = recon("make-drr", *common, "-o", tmp_path / "plain.png")
    assert code == 0 and err == "", err
    code, _, err = recon("make-drr", *common, "--seed", 9, "-o", tmp_path / "seeded.png")
    assert code == 0 and err.count("\n") == 1 and "--seed is deprecated for make-drr" in err
    plain, seeded = (read_image(tmp_path / f"{n}.png") for n in ("plain", "seeded"))
    assert np.array_equal(plain, seeded)
    for command in (["make-drr"], ["register"], ["predict", "corset"], ["synth", "meshes"]):
        code, out, _ = recon(*command, "--help")
        assert code == 0 and "--seed" not in out, command
    # synth meshes' help said each shape depends on the seed; none does
    code, _, err = recon("synth", "meshes", "-o", tmp_path / "m5", "--shapes", "torus", "--seed",
                         5, "-q")  # fmt: skip
    assert code == 0 and "--seed is deprecated for synth meshes" in err
    code, _, _ = recon("synth", "meshes", "-o", tmp_path / "m0", "--shapes", "torus", "-q")
    assert (tmp_path / "m5/torus.stl").read_bytes() == (tmp_path / "m0/torus.stl").read_bytes()


def test_coarsen_keeps_the_kept_labels_and_bone_attenuation(tmp_path):
    """coarsen (the demo's cheaper copy of a CT) made its densities from every voxel at bone
    attenuation 1, whatever load_ct was asked for."""
    from recon.pipelines.xray.volume import coarsen, load_ct

    ct, labels = phantom(tmp_path)
    settings = {"keep": (1,), "bone_attenuation_multiplier": 3.0}
    direct = load_ct(ct, labels, spacing_mm=4.0, **settings)
    coarse = coarsen(load_ct(ct, labels, **settings), 4.0)
    # the same densities but where masking before and after resampling differ (0.08 of 1)
    assert float((coarse.density.data - direct.density.data).abs().max()) < 0.1
    every = coarsen(load_ct(ct, labels), 4.0).density.data  # what it made: 0.87 off
    assert float((every - direct.density.data).abs().max()) > 0.5


def test_a_pose_file_whose_intrinsics_lack_a_key_is_refused(tmp_path):
    """A truth.json with `intrinsics.sdd` cut out was read as a file with no detector: the DRRs
    were rendered at make-drr's defaults, the X-rays' geometry lost without a word."""
    import json

    import pytest

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.make_drr import detector_in_file

    detector = {"sdd": 1020.0, "height": 64, "width": 64, "delx": 6.25, "dely": 6.25}
    whole = tmp_path / "truth.json"
    whole.write_text(json.dumps({"intrinsics": detector, "xrays": {}}))
    assert detector_in_file(whole).sdd == 1020.0
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({"intrinsics": {k: v for k, v in detector.items() if k != "sdd"}}))
    with pytest.raises(BadInput, match=r"its intrinsics lack sdd, so the detector"):
        detector_in_file(cut)
