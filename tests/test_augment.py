"""`recon augment`: pairs stay in register, the X-ray alone changes in intensity, runs repeat."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from recon.pipelines.common.io import write_png
from recon.pipelines.xray.pairs import find_pairs, read_gray


def shapes_image(index: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A float (H, W) image in [0, 1]: a disc and a bar on a dim background, moved by index."""
    yy, xx = np.mgrid[:height, :width]
    disc = (xx - 40 - 8 * index) ** 2 + (yy - 50) ** 2 < 18**2
    bar = (np.abs(xx - 92) < 9) & (np.abs(yy - 32 - 4 * index) < 20)
    return (0.2 + 0.6 * (disc | bar)).astype(np.float32)


def write_pair_set(root: Path, relation, count: int = 3) -> Path:
    """xray/ (16-bit) and drr/ (8-bit) where drr = relation(xray) pixel by pixel."""
    (root / "xray").mkdir(parents=True)
    (root / "drr").mkdir()
    for index in range(count):
        xray = shapes_image(index)
        write_png(root / "xray" / f"case{index}.png", np.rint(xray * 65535).astype(np.uint16))
        write_png(root / "drr" / f"case{index}.png", np.rint(relation(xray) * 255).astype(np.uint8))
    return root


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def test_geometry_is_shared_exactly(tmp_path, recon):
    """drr = 0.5 x: linear interpolation keeps it, so masks at 0.5 / 0.25 must coincide."""
    source = write_pair_set(tmp_path / "in", lambda x: 0.5 * x)
    before = digest(source)
    code, _, err = recon(
        "augment",
        source,
        "-o",
        tmp_path / "out",
        "--copies",
        "4",
        "--no-photometric",
        "--rotate",
        "20",
        "-q",
    )
    assert code == 0, err
    assert digest(source) == before  # the input is never touched
    pairs = find_pairs(tmp_path / "out")
    assert len(pairs) == 3 * 5
    scores = []
    for pair in pairs:
        xray, bits_x = read_gray(pair.xray)
        drr, bits_d = read_gray(pair.drr)
        assert (bits_x, bits_d) == (16, 8)  # bit depths kept
        scores.append(iou(xray > 0.5, drr > 0.25))
    assert min(scores) >= 0.99, scores


def test_relation_survives_full_augmentation(tmp_path, recon):
    """drr = x^2 with photometric changes on the X-ray: Otsu masks of both sides IoU >= 0.95."""
    from skimage.filters import threshold_otsu

    source = write_pair_set(tmp_path / "in", lambda x: x**2)
    code, out, err = recon(
        "augment",
        source,
        "-o",
        tmp_path / "out",
        "--copies",
        "6",
        "--no-originals",
        "--seed",
        "3",
        "--json",
    )
    assert code == 0, err
    assert '"written_pairs": 18' in out
    names = sorted(p.name for p in (tmp_path / "out" / "xray").glob("*.png"))
    assert names[:2] == ["case0_aug1.png", "case0_aug2.png"]
    scores = []
    changed = []
    for pair in find_pairs(tmp_path / "out"):
        xray, _ = read_gray(pair.xray)
        drr, _ = read_gray(pair.drr)
        scores.append(iou(xray > threshold_otsu(xray), drr > threshold_otsu(drr)))
        changed.append(np.abs(xray**2 - drr).mean())
    assert min(scores) >= 0.95, scores
    assert max(changed) > 0.01  # the X-ray side did get photometric changes


def test_seed_reproduces_and_changes(tmp_path, recon):
    source = write_pair_set(tmp_path / "in", lambda x: x, count=2)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        code, _, err = recon(
            "augment", source, "-o", tmp_path / name, "--copies", "2", "--seed", str(seed), "-q"
        )
        assert code == 0, err
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


@pytest.mark.parametrize("problem", ["unpaired", "sizes", "empty", "inside"])
def test_bad_input_one_line_exit_2(tmp_path, recon, problem):
    source = write_pair_set(tmp_path / "in", lambda x: x, count=2)
    out = tmp_path / "out"
    if problem == "unpaired":
        (source / "drr" / "case1.png").rename(source / "drr" / "other.png")
    elif problem == "sizes":
        write_png(source / "drr" / "case1.png", np.zeros((50, 60), np.uint8))
    elif problem == "empty":
        for path in source.rglob("*.png"):
            path.unlink()
    elif problem == "inside":
        out = source / "aug"
    code, stdout, err = recon("augment", source, "-o", out)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists()


def test_an_augmented_set_augmented_again_loses_no_pair(tmp_path, recon):
    """Augmenting a set that holds case0 and case0_aug1 wrote both case0's copy 1 and the
    original case0_aug1 to case0_aug1.png: one replaced the other, the count said otherwise."""
    source = write_pair_set(tmp_path / "in", lambda x: x, count=1)
    assert recon("augment", source, "-o", tmp_path / "once", "--copies", 1, "-q")[0] == 0
    code, stdout, err = recon("augment", tmp_path / "once", "-o", tmp_path / "twice", "--copies", 1)
    assert code == 2 and err.count("\n") == 1, err
    assert "case0_aug1.png would be written twice" in err and "--no-originals" in err
    assert not (tmp_path / "twice").exists()
    code, stdout, err = recon("augment", tmp_path / "once", "-o", tmp_path / "twice",
                              "--copies", 1, "--no-originals", "--json")  # fmt: skip
    assert code == 0, err
    written = json.loads(stdout)["written_pairs"]
    assert written == 2 == len(find_pairs(tmp_path / "twice"))


def test_old_crop_spelling_still_works(tmp_path, recon):
    """augment's --crop (an area share) is --crop-area, since register's --crop is pixels; the
    old spelling gives the same pairs for one release, with a notice."""
    source = write_pair_set(tmp_path / "in", lambda x: x**2, count=1)
    args = ["augment", source, "--copies", 2, "--no-originals", "--seed", 4, "-q"]
    code, _, err = recon(*args, "--crop", 0.5, "-o", tmp_path / "old")
    assert code == 0 and "--crop is deprecated" in err and "use --crop-area" in err, err
    code, _, err = recon(*args, "--crop-area", 0.5, "-o", tmp_path / "new")
    assert code == 0 and err == "", err
    code, _, err = recon(*args, "-o", tmp_path / "default")
    assert code == 0, err

    def pixels(root: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(root.rglob("*.png"))}

    assert pixels(tmp_path / "old") == pixels(tmp_path / "new")
    assert pixels(tmp_path / "new") != pixels(tmp_path / "default")
    record = json.loads((tmp_path / "new" / "run.json").read_text())
    assert record["config"]["crop"] == 0.5
