"""Bad input to make-drr, synth pairs, predict drr and augment: one line on stderr, exit 2,
nothing written or changed; inputs are never replaced, even with --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from test_bad_input import refused
from test_xray_io import small_ct

from recon.pipelines.common.io import write_png
from recon.pipelines.xray.pose import pose_from_degrees, save_poses

POSE = ["--rot", 0, 0, 0, "--xyz", 0, 300, 0]


@pytest.fixture
def work(tmp_path) -> Path:
    """work/ct.nii.gz (40x36x32), work/labels.nii.gz (labels 1, 2), work/poses.pt (2 poses)."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    labels = np.zeros((40, 36, 32), np.int16)
    labels[12:16, 14:18, :], labels[24:27, 10:13, 5:-5] = 1, 2
    nib.save(nib.Nifti1Image(labels, nib.load(ct).affine), tmp_path / "labels.nii.gz")
    poses = torch.cat([pose_from_degrees([a, 0, 0], [0, 300, 0]) for a in (0, 5)])
    save_poses(tmp_path / "poses.pt", poses)
    return tmp_path


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--rot", "nan", 0, 0, "--xyz", 0, 300, 0], "--rot must be in [-360, 360], not nan"),
        (["--rot", 400, 0, 0, "--xyz", 0, 300, 0], "--rot must be in [-360, 360], not 400"),
        (["--rot", 0, 0, 0, "--xyz", 0, "inf", 0], "--xyz must be in [-10000, 10000], not inf"),
        ([*POSE, "--sdd", "nan"], "--sdd must be in (0, 10000], not nan"),
        ([*POSE, "--sdd", 0], "--sdd must be in (0, 10000], not 0"),
        ([*POSE, "--sdd", "-inf"], "--sdd must be in (0, 10000]"),
        ([*POSE, "--size", 0], "--size must be in [8, 4096], not 0"),
        ([*POSE, "--width", 5000], "--width must be in [8, 4096], not 5000"),
        ([*POSE, "--delx", 0], "--delx must be in (0, 100], not 0"),
        ([*POSE, "--dely", "nan"], "--dely must be in (0, 100], not nan"),
        ([*POSE, "--x0", "1e9"], "make-drr: --x0 1e+09 mm is off the detector (must be in [-409.6"),
        ([*POSE, "--x0", "nan"], "--x0 must be a finite number, not nan"),
        ([*POSE, "--y0", 500], "make-drr: --y0 500 mm is off the detector"),
        ([*POSE, "--bone-attenuation", -1], "--bone-attenuation must be in [0, 10], not -1"),
        ([*POSE, "--bone-attenuation", "nan"], "--bone-attenuation must be in [0, 10], not nan"),
        ([*POSE, "--batch-size", 0], "--batch-size must be in [1, 1024], not 0"),
        ([*POSE, "--seed", -1], "--seed must be in [0, 4294967295], not -1"),
        ([*POSE, "--keep", "abc"], "--keep takes a label value N or a range A-B"),
        ([*POSE, "--keep", "5-2"], "runs backwards"),
        ([*POSE, "--keep", 1], "--keep needs --labels LABELMAP"),
        ([*POSE, "--renderer", "nonsense"], "--renderer"),
        ([*POSE, "--format", "jpg"], "--format"),
    ],
)
def test_make_drr_numbers_and_choices_refused(work, recon, flags, message):
    err = refused(recon, work, "make-drr", "-v", work / "ct.nii.gz", *flags, "-o", work / "d.png")
    assert message in err


def test_make_drr_bad_labels_and_pose_files_refused(work, recon):
    ct = ["make-drr", "-v", work / "ct.nii.gz"]
    err = refused(recon, work, *ct, *POSE, "--labels", work / "labels.nii.gz", "--keep", 7,
                  "-o", work / "d.png")  # fmt: skip
    assert "holds no voxel labelled 7 (its labels: 1-2)" in err
    # values that are not whole: --keep 30 found "30" in 30.7, then kept no voxel (a blank DRR,
    # exit 0, blamed on the pose)
    fractional = nib.load(work / "labels.nii.gz")
    values = np.asarray(fractional.dataobj, np.float32) * 30.7
    nib.save(nib.Nifti1Image(values, fractional.affine), work / "fractional.nii.gz")
    err = refused(recon, work, *ct, *POSE, "--labels", work / "fractional.nii.gz", "--keep", 30,
                  "-o", work / "d.png")  # fmt: skip
    assert "label map holds values that are not whole numbers" in err and "e.g. 30.7" in err
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), work / "small.nii.gz")
    err = refused(recon, work, *ct, *POSE, "--labels", work / "small.nii.gz", "--keep", 1,
                  "-o", work / "d.png")  # fmt: skip
    assert "label map shape" in err
    nan = np.tile(np.eye(4, dtype=np.float32), (1, 1, 1))
    nan[0, 0, 3] = np.nan
    np.save(work / "nan.npy", nan)
    err = refused(recon, work, *ct, "--pose", work / "nan.npy", "-o", work / "d.png")
    assert "non-finite" in err
    pose = pose_from_degrees([0, 0, 0], [0, 300, 0])
    detector = {"sdd": float("nan"), "height": 16, "width": 16, "delx": 2.0, "dely": 2.0}
    torch.save({"detector": detector, "final_pose": pose}, work / "nan_sdd.pt")
    err = refused(recon, work, *ct, "--pose", work / "nan_sdd.pt", "-o", work / "d.png")
    assert "detector['sdd'] is not finite" in err
    detector = {"sdd": 1000.0, "height": 0, "width": 16, "delx": 2.0, "dely": 2.0}
    torch.save({"detector": detector, "final_pose": pose}, work / "zero.pt")
    err = refused(recon, work, *ct, "--pose", work / "zero.pt", "-o", work / "d.png")
    assert "out of range" in err
    # torch's own paragraph advised "Re-running torch.load with weights_only set to False"
    (work / "text.pt").write_text("not a pickle")
    err = refused(recon, work, *ct, "--pose", work / "text.pt", "-o", work / "d.png")
    assert "text.pt: not a PyTorch pose file (give a parameters.pt" in err
    assert "weights_only" not in err
    torch.save({"final_pose": pose, "code": Path}, work / "code.pt")
    err = refused(recon, work, *ct, "--pose", work / "code.pt", "-o", work / "d.png")
    assert "refusing to load: the pose file carries pickled objects or code" in err


def test_make_drr_refuses_ct_without_contrast(work, recon):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), affine), work / "zero.nii.gz")
    err = refused(recon, work, "make-drr", "-v", work / "zero.nii.gz", *POSE, "-o", work / "d.png")
    assert "every CT voxel is 0" in err
    import SimpleITK as sitk

    hu = np.full((16, 16, 16), -1000.0, np.float32)
    hu[4:12, 4:12, 4:12], hu[8, 8, 8] = 40.0, np.nan
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(work / "nan.mha"))  # NaN survives in MHA
    err = refused(recon, work, "make-drr", "-v", work / "nan.mha", *POSE, "-o", work / "d.png")
    assert "non-finite voxel" in err
    # a CT whose header gives micrometres (0.064 mm across) rendered a blank DRR, exit 0
    scaled = nib.Nifti1Image(hu, affine)
    scaled.header.set_xyzt_units("micron")
    nib.save(scaled, work / "um.nii.gz")
    err = refused(recon, work, "make-drr", "-v", work / "um.nii.gz", *POSE, "-o", work / "d.png")
    assert "um.nii.gz: the CT spans 0.032 x 0.032 x 0.032 mm, which no CT does" in err
    # in a NIfTI, ITK's reader turned the NaN into 0 (water) and the DRR was drawn, exit 0
    nib.save(nib.Nifti1Image(hu, affine), work / "nan.nii.gz")
    err = refused(recon, work, "make-drr", "-v", work / "nan.nii.gz", *POSE, "-o", work / "d.png")
    assert "nan.nii.gz: CT holds non-finite voxel values (NaN or Inf)" in err


def test_make_drr_never_replaces_its_inputs(work, recon):
    ct = ["make-drr", "-v", work / "ct.nii.gz"]
    np.save(work / "p.npy", pose_from_degrees([0, 0, 0], [0, 300, 0]).numpy())
    for out in (work / "p.npy", work / "d.jpg", work / "d.JPEG", work / "d.tif"):
        err = refused(recon, work, *ct, "--pose", work / "p.npy", "-o", out, "--overwrite")
        assert "16-bit PNG or DICOM" in err
    for out in (work / "poses.pt", work, work.parent):
        err = refused(recon, work, *ct, "--pose", work / "poses.pt", "-o", out, "--overwrite")
        assert "would replace the input" in err
    err = refused(recon, work, *ct, *POSE, "-o", work / "ct.nii.gz", "--overwrite")
    assert "would replace the input" in err
    err = refused(recon, work, *ct, *POSE, "-o", work, "--shard", "1/2")
    assert "would replace the input" in err
    err = refused(recon, work, *ct, *POSE, "-o", work / "d.png", "--shard", "1/2")
    assert "--shard and --skip-done need an output folder" in err
    err = refused(recon, work, *ct, "--pose", work / "poses.pt", "-o", work / "d.png")
    assert "2 poses need an output folder" in err


def test_make_drr_old_height_spelling_still_works(work, recon):
    code, _, err = recon("make-drr", "-v", work / "ct.nii.gz", *POSE, "--height", 12,
                         "--device", "cpu", "-o", work / "d.png", "-q")  # fmt: skip
    assert code == 0 and "--height is deprecated" in err and "use --size" in err
    from recon.pipelines.common.io import read_image

    assert read_image(work / "d.png").shape == (12, 12)
    code, _, err = recon("make-drr", "-v", work / "ct.nii.gz", *POSE, "--height", 0,
                         "--device", "cpu", "-o", work / "e.png")  # fmt: skip
    assert code == 2 and "--height must be in [" in err.strip().splitlines()[-1], err
    assert not (work / "e.png").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--count", 0], "--count must be in [1, 100000], not 0"),
        (["--count", 200000], "--count must be in [1, 100000], not 200000"),
        (["--size", 8], "--size must be in [16, 2048], not 8"),
        (["--ct-spacing", 0], "--ct-spacing must be in [0.1, 50], not 0"),
        (["--ct-spacing", "nan"], "--ct-spacing must be in [0.1, 50], not nan"),
        (["--rot-range", -1], "--rot-range must be in [0, 90], not -1"),
        (["--rot-range", "nan"], "--rot-range must be in [0, 90], not nan"),
        (["--xyz-range", "inf"], "--xyz-range must be in [0, 500], not inf"),
        # sources drawn past the detector (1020 mm): their DRRs showed the CT's near half
        (["--xyz-range", 150], "--xyz-range 150 draws sources up to 1022 mm from the CT's"),
        (["--xyz-range", 149], "cut through the CT; give --xyz-range at most 148.2"),
        (["--rot", 3, "--rot-range", 4], "--rot-range 4 and --rot 3 (its old name) disagree"),
        (["--seed", -1], "--seed must be in [0, 4294967295], not -1"),
        (["--shard", "4/3"], "--shard takes K/N"),
    ],
)
def test_synth_pairs_numbers_refused(work, recon, flags, message):
    err = refused(recon, work, "synth", "pairs", "-v", work / "ct.nii.gz", *flags,
                  "-o", work / "pairs")  # fmt: skip
    assert message in err


def test_synth_pairs_never_replaces_its_ct(work, recon):
    for out in (work, work / "ct.nii.gz"):
        err = refused(recon, work, "synth", "pairs", "-v", work / "ct.nii.gz", "-o", out,
                      "--overwrite")  # fmt: skip
        assert "would replace the input" in err


@pytest.fixture
def scans(tmp_path) -> Path:
    """scans/x/a.png, scans/x/b.png (the sibling), scans/y/a.png, scans/empty/, model.ckpt."""
    for folder in ("x", "y", "empty"):
        (tmp_path / folder).mkdir()
    for path in (tmp_path / "x" / "a.png", tmp_path / "x" / "b.png", tmp_path / "y" / "a.png"):
        write_png(path, np.full((16, 16), 90, np.uint8))
    (tmp_path / "model.ckpt").write_bytes(b"never read: the inputs are refused first")
    return tmp_path


def test_predict_drr_never_replaces_an_input(scans, recon):
    """`predict drr x/a.png -o x --overwrite` used to delete the sibling x/b.png."""
    predict = ["predict", "drr", "-c", scans / "model.ckpt"]
    for out in (scans / "x", scans, scans / "x" / "a.png"):
        err = refused(recon, scans, *predict, scans / "x" / "a.png", "-o", out, "--overwrite")
        assert "would replace the input" in err
    err = refused(recon, scans, *predict, scans / "x", "-o", scans / "x", "--skip-done")
    assert "is, or is inside, the input folder" in err
    err = refused(recon, scans, *predict, scans / "x" / "a.png", "-o", scans / "model.ckpt",
                  "--overwrite")  # fmt: skip
    assert "would replace the input" in err
    assert (scans / "x" / "b.png").is_file()


def test_predict_drr_bad_inputs(scans, recon):
    predict = ["predict", "drr", "-c", scans / "model.ckpt", "-o", scans / "out"]
    err = refused(recon, scans, *predict, scans / "empty")
    assert "folder holds no picture or DICOM images" in err
    err = refused(recon, scans, *predict, scans / "x" / "a.png", scans / "x")
    assert "given twice" in err
    err = refused(recon, scans, *predict, scans / "x" / "missing.png")
    assert "missing.png" in err
    err = refused(recon, scans, *predict, scans / "x", "--bits", 12)
    assert "--bits" in err


@pytest.fixture
def pair_set(tmp_path) -> Path:
    root = tmp_path / "parent" / "src"
    for sub in ("xray", "drr"):
        (root / sub).mkdir(parents=True)
        write_png(root / sub / "p0.png", np.full((32, 32), 60, np.uint8))
    return root


def test_augment_never_replaces_its_input(pair_set, recon):
    root = pair_set.parent.parent
    for out in (pair_set, pair_set.parent):
        err = refused(recon, root, "augment", pair_set, "-o", out, "--overwrite")
        assert "would replace the input" in err
    err = refused(recon, root, "augment", pair_set, "-o", pair_set / "xray" / "aug", "--overwrite")
    assert "must not be the input folder or inside it" in err


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--scale", "nan"], "--scale must be in [0, 0.9], not nan"),
        (["--translate", 0.6], "--translate must be in [0, 0.5], not 0.6"),
        (["--crop-area", 0], "--crop-area must be in [0.1, 1], not 0"),
        (["--crop", 0.5, "--crop-area", 0.6], "--crop-area 0.6 and --crop 0.5 (its old name)"),
        (["--brightness", "-inf"], "--brightness must be in [0, 1], not -inf"),
        (["--contrast", 2], "--contrast must be in [0, 1], not 2"),
    ],
)
def test_augment_numbers_refused(pair_set, recon, flags, message):
    root = pair_set.parent.parent
    err = refused(recon, root, "augment", pair_set, "-o", root / "aug", *flags)
    assert message in err


def test_truncated_ct_refused_not_rendered_blank(work, recon):
    """Readers fill a cut NIfTI with zeros; the header's promised size catches it."""
    import gzip

    raw = gzip.decompress((work / "ct.nii.gz").read_bytes())
    (work / "half.nii").write_bytes(raw[: len(raw) // 2])
    (work / "half.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    (work / "cut.nii.gz").write_bytes(gzip.compress(raw)[:-40])
    for name in ("half.nii", "half.nii.gz"):
        err = refused(recon, work, "make-drr", "-v", work / name, *POSE, "-o", work / "d.png")
        assert "file is truncated" in err
    err = refused(recon, work, "make-drr", "-v", work / "cut.nii.gz", *POSE, "-o", work / "d.png")
    assert "not a readable CT volume" in err


def test_nifti_without_orientation_refused(work, recon):
    """qform_code = sform_code = 0: torchio and nibabel guess different front/back axes."""
    image = nib.load(work / "ct.nii.gz")
    bare = nib.Nifti1Image(np.asarray(image.dataobj), image.affine)
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, work / "bare.nii.gz")
    err = refused(recon, work, "make-drr", "-v", work / "bare.nii.gz", *POSE, "-o", work / "d.png")
    assert "gives no orientation (qform_code and sform_code are 0)" in err


def test_make_drr_refuses_a_ct_without_soft_tissue(work, recon):
    """Air and bone only (or values that are not HU): diffdrr's density transform raised a raw
    torch error ('min(): Expected reduction dim ...')."""
    hu = np.full((16, 16, 16), -1000.0, np.float32)
    hu[4:12, 4:12, 4:12] = 400.0
    nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 2.0, 1.0])), work / "bone.nii.gz")
    err = refused(recon, work, "make-drr", "-v", work / "bone.nii.gz", *POSE, "-o", work / "d.png")
    assert "no CT voxel lies between -800 and 350 HU" in err and "-1000 to 400" in err


def test_make_drr_refuses_a_reflection_for_a_pose(work, recon):
    """A pose whose rotation has determinant -1 passed as rigid and rendered a mirror image."""
    pose = np.eye(4, dtype=np.float32)
    pose[0, 0], pose[1, 3] = -1.0, 300.0
    np.save(work / "mirror.npy", pose[None])
    err = refused(recon, work, "make-drr", "-v", work / "ct.nii.gz", "--pose",
                  work / "mirror.npy", "--size", 16, "--delx", 4, "-o", work / "d.png")  # fmt: skip
    assert "pose 0 is a reflection" in err


def test_make_drr_skip_done_keeps_only_drrs_of_the_same_detector(work, recon):
    """--skip-done used to keep 16 px DRRs and report 24 px ones when --size changed."""
    args = ["make-drr", "-v", work / "ct.nii.gz", "--pose", work / "poses.pt", "--delx", 4,
            "-o", work / "drrs", "--device", "cpu", "-q"]  # fmt: skip
    assert recon(*args, "--size", 16)[0] == 0
    (work / "drrs" / "drr_0001.png").unlink()
    err = refused(recon, work, *args, "--size", 24, "--skip-done")
    assert "made with other settings (--size 24 here, 16 in run.json); " in err, err
    err = refused(recon, work, *args, "--size", 16, "--width", 20, "--skip-done")
    assert "made with other settings (--width 20 here, 16 in run.json); " in err, err
    code, out, err = recon(*args, "--size", 16, "--skip-done", "--json")
    assert code == 0 and json.loads(out)["skipped"] == 1, err


def test_synth_pairs_skip_done_keeps_only_pairs_of_the_same_size_and_ct(work, recon):
    """--skip-done with another --size or --ct-spacing used to keep the earlier pairs beside
    new ones of another size, in one set."""
    args = ["synth", "pairs", "-v", work / "ct.nii.gz", "-n", 2, "-o", work / "pairs",
            "--device", "cpu", "-q"]  # fmt: skip
    assert recon(*args, "--size", 16, "--ct-spacing", 4)[0] == 0
    (work / "pairs" / "drr" / "pair_0001.png").unlink()
    err = refused(recon, work, *args, "--size", 32, "--ct-spacing", 4, "--skip-done")
    assert "made with other settings (--size 32 here, 16 in run.json);" in err
    err = refused(recon, work, *args, "--size", 16, "--ct-spacing", 5, "--skip-done")
    assert "made with other settings (--ct-spacing 5.0 here, 4.0 in run.json);" in err
    assert recon(*args, "--size", 16, "--ct-spacing", 4, "--skip-done")[0] == 0
    assert (work / "pairs" / "drr" / "pair_0001.png").is_file()


def test_make_drr_renders_the_poses_and_detector_of_a_synth_xray_truth_file(work, recon):
    """truth.json of `synth xray`: each X-ray's pose, in the file's order, at its detector."""
    from recon.pipelines.common.io import read_image

    ct = work / "ct.nii.gz"
    code, _, err = recon("synth", "xray", "-v", ct, "-o", work / "sx", "-n", 2, "--size", 12,
                         "--field", 300, "--device", "cpu", "-q")  # fmt: skip
    assert code == 0, err
    truth = json.loads((work / "sx" / "truth.json").read_text())
    poses = np.stack([item["pose"] for item in truth["xrays"].values()]).astype(np.float32)
    assert len(poses) == 2 and not np.allclose(poses[0], poses[1])
    np.save(work / "same.npy", poses)
    args = ["make-drr", "-v", ct, "--device", "cpu", "-q"]
    assert recon(*args, "--pose", work / "sx" / "truth.json", "-o", work / "a")[0] == 0
    detector = ["--size", 12, "--delx", 25, "--sdd", truth["intrinsics"]["sdd"]]
    assert recon(*args, "--pose", work / "same.npy", *detector, "-o", work / "b")[0] == 0
    names = sorted(p.name for p in (work / "a").glob("*.png"))
    assert len(names) == 2 and names == sorted(p.name for p in (work / "b").glob("*.png"))
    for name in names:
        a, b = read_image(work / "a" / name), read_image(work / "b" / name)
        assert a.shape == (12, 12) and np.array_equal(a, b)
    # the item JSON beside each X-ray holds its own pose
    item = work / "sx" / next(iter(truth["xrays"])).replace(".dcm", ".json")
    assert recon(*args, "--pose", item, "--size", 12, "--delx", 25, "-o", work / "c.png")[0] == 0
    assert np.array_equal(read_image(work / "c.png"), read_image(work / "a" / names[0]))
    (work / "odd.json").write_text('{"camera": [1, 2]}')
    err = refused(recon, work, *args, "--pose", work / "odd.json", "-o", work / "d.png")
    assert "'poses', 'final_pose', 'pose' or 'xrays'" in err and "keys camera" in err


def test_make_drr_skip_done_takes_the_same_files_named_another_way(work, recon, monkeypatch):
    """A CT and pose file named relative to the working folder in one run and by their full
    path in the next are the same inputs: the rerun was refused as "another -v, --pose"."""
    monkeypatch.chdir(work)
    args = ["make-drr", "--size", 16, "--delx", 4, "--device", "cpu", "-q", "-o", "drrs"]
    assert recon(*args, "-v", "ct.nii.gz", "--pose", "poses.pt")[0] == 0
    (work / "drrs" / "drr_0001.png").unlink()
    code, out, err = recon(*args, "-v", work / "ct.nii.gz", "--pose", work / "poses.pt",
                           "--skip-done", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["skipped"] == 1, err
    # from the folder above, relative to it: the record holds the full path
    monkeypatch.chdir(work.parent)
    rel = Path(work.name)
    (work / "drrs" / "drr_0001.png").unlink()
    code, out, err = recon(*args[:-1], rel / "drrs", "-v", rel / "ct.nii.gz", "--pose",
                           rel / "poses.pt", "--skip-done", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["skipped"] == 1, err
    monkeypatch.chdir(work)
    (work / "other.nii.gz").write_bytes((work / "ct.nii.gz").read_bytes())
    err = refused(recon, work, *args, "-v", "other.nii.gz", "--pose", "poses.pt", "--skip-done")
    assert f"made with other settings (-v {work / 'other.nii.gz'} here, " in err, err


def test_make_drr_skip_done_keeps_only_a_drr_of_the_same_rot_and_xyz(work, recon):
    """--skip-done with another --rot kept the DRR of the earlier pose and reported it done."""
    args = ["make-drr", "-v", work / "ct.nii.gz", "--size", 16, "--delx", 4, "--device", "cpu",
            "-q", "-o", work / "one", "--xyz", 0, 300, 0]  # fmt: skip
    assert recon(*args, "--rot", 0, 0, 0)[0] == 0
    err = refused(recon, work, *args, "--rot", -5, 0, 0, "--skip-done")
    assert "(--rot [-5.0, 0.0, 0.0] here, [0.0, 0.0, 0.0] in run.json)" in err
    code, out, err = recon(*args, "--rot", 0, 0, 0, "--skip-done", "--json")
    assert code == 0 and json.loads(out)["skipped"] == 1, err


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda work: work / "nope.nii.gz", "nope.nii.gz: no such file (--labels takes a NIfTI"),
        (lambda work: work, "a folder, where a label map is one file"),
        (
            lambda work: (work / "bad.nii.gz").write_bytes(b"not a nifti") and work / "bad.nii.gz",
            "bad.nii.gz: not a readable label map",
        ),
    ],
)
def test_a_label_map_that_cannot_be_read_is_named_as_one(work, recon, make, message):
    """A missing --labels file was "no such CT file or DICOM folder", and a damaged one "not a
    readable CT volume": the user looked at the CT."""
    labels = make(work)
    err = refused(recon, work, "make-drr", "-v", work / "ct.nii.gz", "--labels", labels,
                  *POSE, "-o", work / "d.png")  # fmt: skip
    assert message in err
