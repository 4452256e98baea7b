"""Batch jobs of the DRR side: make-drr and synth pairs in shards equal the whole run, and
--skip-done redoes only what is missing; predict drr takes folders and names outputs safely."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from test_xray_io import small_ct

from recon.pipelines.common.io import read_image, write_png
from recon.pipelines.xray.pose import load_poses, pose_from_degrees, save_poses


def files(folder: Path) -> dict[str, bytes]:
    """Every file under folder but the results files, by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("run")
    }


def test_make_drr_three_shards_equal_the_whole_run(tmp_path, recon):
    ct = small_ct(tmp_path / "ct.nii.gz")
    poses = torch.cat([pose_from_degrees([4 * a, a, 0], [a, 300, 0]) for a in range(9)])
    save_poses(tmp_path / "poses.pt", poses)
    args = ["make-drr", "-v", ct, "--pose", tmp_path / "poses.pt", "--sdd", 600, "--size", 16]
    args += ["--delx", 4.0, "--device", "cpu", "-q"]
    assert recon(*args, "-o", tmp_path / "whole")[0] == 0
    shared = tmp_path / "shards"
    for k in (1, 2, 3):
        code, _, err = recon(*args, "-o", shared, "--shard", f"{k}/3")
        assert code == 0, err
        assert (shared / f"run.shard-{k}-of-3.json").is_file()
    assert (tmp_path / "whole" / "run.json").is_file()
    whole = files(tmp_path / "whole")
    assert len(whole) == 9 and files(shared) == whole
    (shared / "drr_0004.png").unlink()  # shard 2 holds poses 3, 4, 5
    kept = (shared / "drr_0003.png").stat().st_mtime_ns
    code, out, err = recon(*args, "-o", shared, "--shard", "2/3", "--skip-done", "--json")
    assert code == 0, err
    result = json.loads(out)
    # every DRR of the shard is listed, the kept ones from the earlier record (scale included)
    assert [f["index"] for f in result["files"]] == [3, 4, 5] and result["skipped"] == 2
    assert [f.get("skipped", False) for f in result["files"]] == [True, False, True]
    recorded = json.loads((shared / "run.shard-2-of-3.json").read_text())["metrics"]["files"]
    assert recorded == result["files"] and all("mm_per_count" in f for f in recorded)
    assert (shared / "drr_0003.png").stat().st_mtime_ns == kept
    assert files(shared) == whole
    # a shard run again without --skip-done or --overwrite is refused before any work
    code, _, err = recon(*args, "-o", shared, "--shard", "2/3")
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    # batches of 4 (faster on a GPU): the same DRRs up to float rounding, 1 count of 65535
    assert recon(*args, "--batch-size", 4, "-o", tmp_path / "batched")[0] == 0
    for name in whole:
        batched = read_image(tmp_path / "batched" / name).astype(int)
        assert np.abs(batched - read_image(shared / name).astype(int)).max() <= 1


def test_synth_pairs_three_shards_equal_the_whole_run(tmp_path, recon):
    """Pair i is drawn from (seed, i) alone: shards write the whole run's files and poses.pt; the
    union is a pair set that augment (and train drr, through the same reader) take as it is."""
    from recon.pipelines.xray.pairs import find_pairs

    ct = small_ct(tmp_path / "ct.nii.gz")
    args = ["synth", "pairs", "-v", ct, "--ct-spacing", 4, "-n", 9, "--size", 16, "--seed", 3]
    args += ["--device", "cpu", "-q"]
    assert recon(*args, "-o", tmp_path / "whole")[0] == 0
    shared = tmp_path / "shards"
    for k in (1, 2, 3):
        code, _, err = recon(*args, "-o", shared, "--shard", f"{k}/3")
        assert code == 0, err
    whole = files(tmp_path / "whole")
    pngs = {k: v for k, v in whole.items() if k.endswith(".png")}
    assert len(pngs) == 18 and {k: files(shared)[k] for k in pngs} == pngs
    # byte for byte too (torch named the archive inside after the temporary file it wrote)
    assert files(shared)["poses.pt"] == whole["poses.pt"]
    assert len(load_poses(shared / "poses.pt")) == 9
    (shared / "xray" / "pair_0007.png").unlink()  # shard 3 holds pairs 6, 7, 8
    kept = (shared / "drr" / "pair_0006.png").stat().st_mtime_ns
    code, out, err = recon(*args, "-o", shared, "--shard", "3/3", "--skip-done", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["rendered"] == 1 and result["skipped"] == 2
    assert (shared / "drr" / "pair_0006.png").stat().st_mtime_ns == kept
    assert {k: files(shared)[k] for k in pngs} == pngs
    # another seed into the same shared folder would mix two sets: refused
    other = [a if a != 3 else 4 for a in args]  # --seed 4
    code, _, err = recon(*other, "-o", shared, "--shard", "1/3", "--skip-done")
    assert code == 2 and "another pair set" in err
    assert len(find_pairs(shared)) == 9
    # the set grows by --skip-done with a larger count (its first pairs are the same), but a
    # smaller count would leave pairs outside poses.pt: refused
    code, _, err = recon(*[a if a != 9 else 7 for a in args], "-o", shared, "--skip-done")
    assert code == 2 and "holds 9 pairs, more than --count 7" in err
    code, out, err = recon(*[a if a != 9 else 10 for a in args], "-o", shared, "--skip-done")
    assert code == 0, err
    assert len(find_pairs(shared)) == 10 and len(load_poses(shared / "poses.pt")) == 10
    assert {k: files(shared)[k] for k in pngs} == pngs  # the first nine kept as they were
    assert shared.joinpath("drr", "pair_0006.png").stat().st_mtime_ns == kept
    code, out, err = recon("augment", shared, "-o", tmp_path / "aug", "--copies", 1, "--json")
    assert code == 0, err
    assert json.loads(out)["input_pairs"] == 10


def test_a_shard_overwritten_with_other_settings_is_refused(tmp_path, recon):
    """`--shard 1/2 --overwrite --size 24` over a set of 16 px pairs remade its own pairs at 24 px
    beside the other shard's 16 px ones (run.json still said 16): one set of two sizes. The
    other shard's record is compared; the shard's own is what --overwrite replaces."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    args = ["synth", "pairs", "-v", ct, "--ct-spacing", 4, "-n", 4, "--seed", 3, "--device", "cpu"]
    shared = tmp_path / "shards"
    for k in (1, 2):
        assert recon(*args, "--size", 16, "-o", shared, "--shard", f"{k}/2", "-q")[0] == 0
    before = files(shared)
    code, _, err = recon(*args, "--size", 24, "-o", shared, "--shard", "1/2", "--overwrite")
    assert code == 2 and err.count("\n") == 1, err
    assert "(--size 24 here, 16 in run.shard-2-of-2.json); a shard's --overwrite replaces" in err
    assert files(shared) == before
    code, table, err = recon(*args, "--size", 16, "-o", shared, "--shard", "1/2", "--overwrite")
    assert code == 0, err  # the same settings: remade alike
    assert "pairs made" in table and "2 " in table.split("pairs made")[1][:40]  # not the set's 4
    pngs = [name for name in before if name.endswith(".png")]
    assert len(pngs) == 8 and all(files(shared)[name] == before[name] for name in pngs)


def test_synth_pairs_old_spacing_flag_still_works(tmp_path, recon):
    ct = small_ct(tmp_path / "ct.nii.gz")
    args = ["synth", "pairs", "-v", ct, "-n", 1, "--size", 16, "--device", "cpu", "-q"]
    code, _, err = recon(*args, "--spacing", 4, "-o", tmp_path / "old")
    assert code == 0 and "--spacing is deprecated" in err and "--ct-spacing" in err
    assert recon(*args, "--ct-spacing", 4, "-o", tmp_path / "new")[0] == 0
    code, _, err = recon(*args, "--spacing", 0, "-o", tmp_path / "bad")
    assert code == 2 and "--spacing must be in [" in err.strip().splitlines()[-1], err
    assert not (tmp_path / "bad").exists()
    old, new = files(tmp_path / "old"), files(tmp_path / "new")
    assert old.keys() == new.keys() and all(old[k] == new[k] for k in old if k.endswith(".png"))


def test_synth_pairs_old_range_flags_still_work(tmp_path, recon):
    """--rot and --shift were synth pairs' ranges while make-drr and register read --rot as
    pose angles; the ranges are --rot-range and --xyz-range as in synth xray, and the old
    spellings make the same pairs for one release, with a notice."""
    ct = small_ct(tmp_path / "ct.nii.gz")
    args = ["synth", "pairs", "-v", ct, "--ct-spacing", 4, "-n", 2, "--size", 16, "-q"]
    args += ["--device", "cpu"]
    code, _, err = recon(*args, "--rot", 3, "--shift", 7, "-o", tmp_path / "old")
    assert code == 0, err
    assert err.count("is deprecated") == 2 and "use --rot-range" in err and "use --xyz-range" in err
    code, _, err = recon(*args, "--rot-range", 3, "--xyz-range", 7, "-o", tmp_path / "new")
    assert code == 0 and err == "", err
    old, new = files(tmp_path / "old"), files(tmp_path / "new")
    assert old.keys() == new.keys() and all(old[k] == new[k] for k in old if k.endswith(".png"))
    default = tmp_path / "default"
    assert recon(*args, "-o", default)[0] == 0
    assert files(default)["xray/pair_0000.png"] != new["xray/pair_0000.png"]


def tiny_drr_model(tmp_path: Path, pairs: int = 4) -> Path:
    """A one-epoch 32 px pix2pix checkpoint trained on `pairs` pairs in tmp_path/set."""
    from recon.pipelines.common.engine import RunOptions, fit
    from recon.pipelines.xray.drr_task import TASK, DrrConfig

    rng = np.random.default_rng(1)
    for sub in ("xray", "drr"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for index in range(pairs):
        drr = rng.random((32, 32))
        write_png(tmp_path / "set" / "drr" / f"x{index}.png", np.rint(drr * 255).astype(np.uint8))
        xray = np.rint((1 - drr) ** 2 * 255).astype(np.uint8)
        write_png(tmp_path / "set" / "xray" / f"x{index}.png", xray)
    cfg = DrrConfig(data=str(tmp_path / "set"), size=32, base_filters=4, batch_size=4, epochs=1)
    fit(TASK, cfg, RunOptions(out=tmp_path / "run", quiet=True, device="cpu"))
    return tmp_path / "run" / "checkpoints" / "last.ckpt"


def test_predict_drr_takes_folders_and_names_each_output(tmp_path, recon):
    """A folder = its images sorted; a shared stem names every output FOLDER_STEM_TYPE; one
    output per input, each the same as predicting that input alone."""
    from test_drr import write_dicom

    checkpoint = tiny_drr_model(tmp_path)
    scans = tmp_path / "scans"
    scans.mkdir()
    rng = np.random.default_rng(2)
    for name in ("c", "a", "b"):
        write_png(scans / f"{name}.png", rng.integers(0, 255, (24, 40), dtype=np.uint8))
    write_dicom(scans / "a.dcm", rng.integers(0, 65535, (30, 20)).astype(np.uint16))
    (scans / "notes.txt").write_text("not an image")
    code, out, err = recon("predict", "drr", scans, "-c", checkpoint, "-o", tmp_path / "out",
                           "--device", "cpu", "--json", "-q")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert [Path(p).name for p in result["xrays"]] == ["a.dcm", "a.png", "b.png", "c.png"]
    names = [Path(p).name for p in result["outputs"]]
    assert names == ["scans_a_dcm.png", "scans_a_png.png", "scans_b_png.png", "scans_c_png.png"]
    assert read_image(tmp_path / "out" / "scans_a_dcm.png").shape == (30, 20)
    assert read_image(tmp_path / "out" / "scans_c_png.png").shape == (24, 40)
    code, _, err = recon("predict", "drr", scans / "b.png", "-c", checkpoint, "-o",
                         tmp_path / "alone", "--device", "cpu", "-q")  # fmt: skip
    assert code == 0, err
    alone = (tmp_path / "alone" / "b.png").read_bytes()
    assert alone == (tmp_path / "out" / "scans_b_png.png").read_bytes()
    # a scanner's DICOMs named without a suffix: "folder holds no picture or DICOM images"
    uids = tmp_path / "uids"
    uids.mkdir()
    for name in ("IM0001", "1.2.840.5"):
        write_dicom(uids / name, rng.integers(0, 65535, (30, 20)).astype(np.uint16))
    code, out, err = recon("predict", "drr", uids, "-c", checkpoint, "-o", tmp_path / "u",
                           "--device", "cpu", "--json", "-q")  # fmt: skip
    assert code == 0, err
    names = [Path(p).name for p in json.loads(out)["outputs"]]
    assert names == ["1.2.840.5.png", "IM0001.png"]  # the UID whole, not 1.2.840


def test_predict_drr_skip_done_keeps_only_outputs_of_the_same_depth(tmp_path, recon):
    """--skip-done --bits 16 used to keep the 8-bit PNGs of an earlier --bits 8 run."""
    checkpoint = tiny_drr_model(tmp_path)
    args = ["predict", "drr", tmp_path / "set" / "xray", "-c", checkpoint, "-o",
            tmp_path / "out", "--device", "cpu", "-q"]  # fmt: skip
    assert recon(*args, "--bits", 8)[0] == 0
    (tmp_path / "out" / "x1.png").unlink()
    kept = files(tmp_path / "out")
    code, stdout, err = recon(*args, "--bits", 16, "--skip-done")
    assert code == 2 and "made with other settings (--bits 16 here, 8 in run.json);" in err, err
    assert files(tmp_path / "out") == kept
    assert recon(*args, "--bits", 8, "--skip-done")[0] == 0
    assert read_image(tmp_path / "out" / "x1.png").dtype == np.uint8


def test_make_drr_from_a_truth_json_names_each_drr_s_xray(tmp_path, recon):
    """`make-drr --pose xrays/truth.json -o drrs` wrote drr_0000, drr_0001, ... and recorded
    only the index: which X-ray each DRR shows was left to the reader. Each row now names it."""
    xrays = tmp_path / "xrays"
    code, _, err = recon("synth", "xray", "-o", xrays, "-n", 2, "--size", 32, "-q")
    assert code == 0, err
    truth = json.loads((xrays / "truth.json").read_text())
    code, out, err = recon("make-drr", "--pose", xrays / "truth.json", "-o", tmp_path / "drrs",
                           "--size", 16, "--delx", 8, "--device", "cpu", "--json")  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["files"]
    assert [row["xray"] for row in rows] == list(truth["xrays"]) == ["xray_000.dcm", "xray_001.dcm"]
    recorded = json.loads((tmp_path / "drrs" / "run.json").read_text())["metrics"]["files"]
    assert [row["xray"] for row in recorded] == list(truth["xrays"])
    poses = load_poses(xrays / "truth.json")
    for row in rows:
        expected = torch.tensor(truth["xrays"][row["xray"]]["pose"], dtype=poses.dtype)
        assert torch.allclose(poses[row["index"]], expected)


def test_predict_drr_skip_done_records_every_input_and_counts_the_skipped(tmp_path, recon):
    """A --skip-done rerun with nothing left to do printed `images 0` and recorded no X-ray
    (`xrays: []`); the contents of the checkpoint changed under the same name were called
    "another file than c.ckpt"."""
    import re
    import shutil

    checkpoint = shutil.copy(tiny_drr_model(tmp_path), tmp_path / "c.ckpt")
    xrays = sorted((tmp_path / "set" / "xray").glob("*.png"))
    out = tmp_path / "out"
    args = ["predict", "drr", *xrays, "-c", checkpoint, "-o", out, "--device", "cpu", "--skip-done"]
    assert recon(*args, "-q")[0] == 0
    (out / "x1.png").unlink()
    code, stdout, err = recon(*args, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    recorded = json.loads((out / "run.json").read_text())["metrics"]
    for doc in (result, recorded):
        assert doc["xrays"] == [str(p) for p in xrays]
        assert doc["outputs"] == [str(out / p.name) for p in xrays]
        assert (doc["done"], doc["skipped"]) == (1, 3)
    code, table, err = recon(*args)
    assert code == 0, err
    assert re.search(r"images made\W+0\b", table) and re.search(r"skipped \(done\)\W+4\b", table)
    assert json.loads((out / "run.json").read_text())["metrics"]["outputs"] == result["outputs"]

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    first = next(iter(state["state_dict"]))
    state["state_dict"][first] = state["state_dict"][first] + 0.01
    torch.save(state, checkpoint)
    code, _, err = recon(*args, "-q")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{checkpoint} has changed since its outputs were made (run.json)" in err
    assert "another file" not in err


def test_make_drr_skip_done_renders_again_for_a_poses_file_changed_since(tmp_path, recon):
    """--skip-done kept every DRR of a poses file rewritten in place since they were made;
    they now follow the file as it is."""
    import os

    ct = small_ct(tmp_path / "ct.nii.gz")
    poses = tmp_path / "poses.pt"
    save_poses(poses, torch.cat([pose_from_degrees([4 * a, a, 0], [a, 300, 0]) for a in range(3)]))
    args = ["make-drr", "-v", ct, "--pose", poses, "--sdd", 600, "--size", 16]
    args += ["--delx", 4.0, "--device", "cpu", "-q", "--skip-done", "--json"]
    assert recon(*args, "-o", tmp_path / "drrs")[0] == 0
    for drr in (tmp_path / "drrs").glob("drr_*.png"):  # made a minute before the rewrite
        made = drr.stat().st_mtime_ns - 60 * 10**9
        os.utime(drr, ns=(made, made))
    save_poses(poses, torch.cat([pose_from_degrees([-9 * a, 0, 0], [0, 300, a]) for a in range(3)]))
    code, out, err = recon(*args, "-o", tmp_path / "drrs")
    assert code == 0, err
    assert (json.loads(out)["changed"], json.loads(out)["skipped"]) == (3, 0)
    assert recon(*args, "-o", tmp_path / "fresh")[0] == 0
    assert files(tmp_path / "drrs") == files(tmp_path / "fresh")
    code, out, err = recon(*args, "-o", tmp_path / "drrs")  # nothing changed since: all kept
    assert code == 0 and json.loads(out)["skipped"] == 3, err


def test_synth_xray_skip_done_with_nothing_to_do_does_not_load_the_ct(tmp_path, recon, monkeypatch):
    """A --skip-done rerun of a finished X-ray set loaded the CT (seconds) to write
    fiducials.json and truth.json again; a truth.json that already says what the records say
    shows the set merged, so the rerun reports the same set without the CT."""
    import nibabel as nib

    from recon.pipelines.xray import volume

    def no_ct(*args, **kwargs):
        raise AssertionError("the CT was loaded")

    ct = nib.load(small_ct(tmp_path / "ct.nii.gz"))
    labels = np.zeros(ct.shape, np.int16)
    labels[12:16, 14:18, 4:12], labels[12:16, 14:18, 18:26] = 25, 26  # two vertebrae
    nib.save(nib.Nifti1Image(labels, ct.affine), tmp_path / "labels.nii.gz")
    args = ["synth", "xray", "-v", tmp_path / "ct.nii.gz", "--labels", tmp_path / "labels.nii.gz"]
    args += ["-o", tmp_path / "xrays", "-n", 2, "--size", 16, "--device", "cpu", "--skip-done"]
    code, out, err = recon(*args, "--json")
    assert code == 0, err
    first = json.loads(out)
    made = files(tmp_path / "xrays")
    monkeypatch.setattr(volume, "load_ct", no_ct)
    code, out, err = recon(*args, "--json")
    assert code == 0, err
    again = json.loads(out)
    recorded = json.loads((tmp_path / "xrays" / "run.json").read_text())["metrics"]
    for doc in (again, recorded):
        assert (doc["done"], doc["skipped"], doc["missing_items"]) == (0, 2, 0)
        assert doc["index"] == first["index"] == str(tmp_path / "xrays" / "truth.json")
    assert again["fiducials"] == first["fiducials"] == str(tmp_path / "xrays" / "fiducials.json")
    assert files(tmp_path / "xrays") == made


def test_synth_pairs_drrs_show_what_make_drr_renders_at_their_poses(tmp_path, recon):
    """synth pairs rendered with the patient's right along increasing columns (R\\F), the mirror
    of make-drr's and of every film recon takes as L\\F: a translation model learned mirrored
    anatomy, and `register` of a pair's DRR from its true pose ended 30 mm off ("the mirror
    image matches the CT better")."""
    from recon.pipelines.xray.synth_pairs import DETECTOR_MM, SDD_MM

    ct = small_ct(tmp_path / "ct.nii.gz", spacing=(3.0, 3.0, 3.0))  # synth pairs' CT spacing
    pairs = tmp_path / "pairs"
    args = ["synth", "pairs", "-v", ct, "-n", 2, "--size", 32, "--seed", 5, "--device", "cpu"]
    assert recon(*args, "-o", pairs, "-q")[0] == 0
    code, _, err = recon(
        "make-drr", "-v", ct, "--pose", pairs / "poses.pt", "--size", 32,
        "--delx", DETECTOR_MM / 32, "--sdd", SDD_MM, "--device", "cpu", "-o", tmp_path / "d", "-q",
    )  # fmt: skip
    assert code == 0, err
    for index in range(2):
        pair = read_image(pairs / "drr" / f"pair_{index:04d}.png").astype(float)
        drr = read_image(tmp_path / "d" / f"drr_{index:04d}.png").astype(float)
        same = np.corrcoef(pair.ravel(), drr.ravel())[0, 1]
        # the CT's body is near symmetric; its bone rods are not
        off, mirrored_off = np.abs(pair - drr).mean(), np.abs(pair - drr[:, ::-1]).mean()
        assert same > 0.95 and mirrored_off > 5 * off, (index, same, off, mirrored_off)


def test_make_drr_from_a_pair_set_s_poses_renders_its_drrs(tmp_path, recon):
    """The README: each pair's DRR is what make-drr renders at the pair's pose from poses.pt.
    poses.pt held the poses alone, so make-drr rendered them on its own default detector (256
    px of 1.6 mm: a 410 mm field seen as 102 mm at --size 64) instead of the pairs' 410 mm one.
    The bundled CT: the pairs render it resampled to 3 mm (trilinear), make-drr at its own
    voxels (Siddon), so they agree to a correlation of 0.999, not bit for bit."""
    args = ["synth", "pairs", "-n", 2, "--size", 64, "--seed", 3, "--device", "cpu"]
    code, out, err = recon(*args, "-o", tmp_path / "pairs", "--json")
    assert code == 0, err
    assert json.loads(out)["intrinsics"]["delx"] == 409.6 / 64
    drrs = tmp_path / "drrs"
    code, _, err = recon("make-drr", "--pose", tmp_path / "pairs" / "poses.pt", "-o", drrs, "-q")
    assert code == 0, err
    for index in range(2):
        pair = read_image(tmp_path / "pairs" / "drr" / f"pair_{index:04d}.png").astype(float)
        made = read_image(drrs / f"drr_{index:04d}.png").astype(float)
        assert made.shape == pair.shape == (64, 64)
        assert np.corrcoef(pair.ravel(), made.ravel())[0, 1] > 0.998  # measured 0.9992


def test_make_drr_from_a_synth_xray_record_renders_on_its_detector(tmp_path, recon):
    """`make-drr --pose xray_000.json` took the pose and rendered it on make-drr's default
    detector (256 px of 1.6 mm), not the X-ray's (here 32 px over 400 mm)."""
    args = ["synth", "xray", "-o", tmp_path / "xr", "-n", 1, "--size", 32, "--device", "cpu"]
    assert recon(*args, "-q")[0] == 0
    code, out, err = recon("make-drr", "--pose", tmp_path / "xr" / "xray_000.json", "-o",
                           tmp_path / "d.png", "--json")  # fmt: skip
    assert code == 0, err
    detector = json.loads(out)["intrinsics"]
    assert (detector["height"], detector["width"], detector["delx"]) == (32, 32, 12.5)
    assert read_image(tmp_path / "d.png").shape == (32, 32)
