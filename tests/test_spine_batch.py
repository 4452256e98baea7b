"""`recon embed-spine` on many X-rays: a folder in, one JSON and overlay per film and a Cobb table
out, against the films' true Cobb angles; shards, --skip-done, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from dicom_files import write_dx

from recon.pipelines.common.io import read_image, write_png
from recon.pipelines.common.metrics import cobb_error
from recon.pipelines.corset.spine_xray import synth_spine_xray

TRUE_COBB = (12.0, 28.0, -40.0)


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> tuple[Path, dict[str, float], float]:
    """A folder of three spine PNGs (name -> true Cobb angle), one of noise, and their spacing."""
    folder = tmp_path_factory.mktemp("films") / "films"
    folder.mkdir()
    truth = {}
    for i, cobb in enumerate(TRUE_COBB):
        xray = synth_spine_xray(cobb, rows=192, seed=20 + i)
        write_png(folder / f"patient{i}.png", xray.image)
        truth[f"patient{i}"] = xray.cobb_deg
    noise = np.random.default_rng(0).integers(0, 65535, (160, 128), dtype=np.uint16)
    write_png(folder / "noise.png", noise)
    return folder, truth, xray.spacing_mm


def read_table(path: Path) -> dict[str, dict]:
    with path.open(newline="") as handle:
        return {Path(row["xray"]).stem: row for row in csv.DictReader(handle)}


def test_a_folder_gives_each_film_its_json_overlay_and_a_row_of_the_cobb_table(
    recon, films, tmp_path
):
    folder, truth, spacing = films
    out = tmp_path / "cobb"
    code, stdout, err = recon("embed-spine", folder, "-o", out, "--pixel-spacing", spacing,
                              spacing, "--json")  # fmt: skip
    assert code == 1, err  # the noise film has no spine; the others are measured
    assert err.strip().splitlines()[-1].startswith("error: 1 of 4 X-rays not measured"), err
    assert "noise.png: no spine found" in err
    result = json.loads(stdout)
    assert [r["status"] for r in result["results"]] == ["no spine found", "ok", "ok", "ok"]
    table = read_table(out / "cobb.csv")
    assert set(table) == {"noise", *truth} and table["noise"]["cobb_deg"] == ""
    errors = []
    for name, cobb in truth.items():
        doc = json.loads((out / f"{name}.json").read_text())
        assert float(table[name]["cobb_deg"]) == pytest.approx(doc["cobb_deg"], abs=0.006)
        assert (table[name]["upper_end"], table[name]["lower_end"]) == tuple(
            doc["end_vertebrae"].values()
        )
        errors.append(cobb_error(doc["cobb_deg"], cobb))
        overlay = read_image(out / f"{name}.png")
        assert overlay.shape[:2] == read_image(folder / f"{name}.png").shape
    assert max(errors) <= 3.0, errors  # measured 0.25-1.5 deg
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["cobb.csv", "run.json"] + [f"{n}.{s}" for n in truth for s in ("json", "png")]
    )
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "embed-spine" and len(run["metrics"]["results"]) == 4


def test_a_film_in_a_folder_measures_as_it_does_alone(recon, films, tmp_path):
    folder, _, spacing = films
    code, _, err = recon("embed-spine", folder / "patient1.png", "-o", tmp_path / "one.json",
                         "--pixel-spacing", spacing, spacing, "-q")  # fmt: skip
    assert code == 0, err
    films_two = [folder / "patient1.png", folder / "patient2.png"]
    code, _, err = recon("embed-spine", *films_two, "-o", tmp_path / "two",
                         "--pixel-spacing", spacing, spacing, "--json")  # fmt: skip
    assert code == 0 and err == "", err  # no progress bar (nor its blank line) in a log file
    alone = json.loads((tmp_path / "one.json").read_text())
    batch = json.loads((tmp_path / "two" / "patient1.json").read_text())
    for doc in (alone, batch):
        del doc["seconds"]
    assert batch == alone


def test_shards_share_the_folder_and_skip_done_keeps_every_row(recon, films, tmp_path):
    folder, truth, _ = films
    out = tmp_path / "shared"
    codes = [recon("embed-spine", folder, "-o", out, "--shard", k, "-q")[0] for k in ("1/2", "2/2")]
    assert sorted(codes) == [0, 1]  # the noise film falls in one shard
    first, second = (
        read_table(out / "cobb.shard-1-of-2.csv"),
        read_table(out / "cobb.shard-2-of-2.csv"),
    )
    assert not set(first) & set(second) and set(first) | set(second) == {"noise", *truth}
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("patient*.json")}
    code, stdout, err = recon("embed-spine", folder, "-o", out, "--skip-done", "--json", "-q")
    assert code == 1, err  # only the noise film is tried again
    document = json.loads(stdout)
    assert document["skipped"] == 3
    rows = {Path(r["xray"]).stem: r for r in document["results"]}  # every film, as the table
    assert set(rows) == {"noise", *truth}
    assert all(rows[n]["skipped"] and rows[n]["status"] == "ok" for n in truth)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("patient*.json")} == before
    table = read_table(out / "cobb.csv")
    assert set(table) == {"noise", *truth} and all(table[n]["status"] == "ok" for n in truth)


def test_skip_done_measures_again_a_film_replaced_since(recon, films, tmp_path):
    """A film replaced in place after its JSON was made kept its old Cobb angle under
    --skip-done (inputs were matched by path alone); one newer than its outputs is measured
    again, and the untouched films are still kept."""
    import os
    import shutil

    folder = tmp_path / "films"
    folder.mkdir()
    for name in ("patient0.png", "patient1.png"):
        shutil.copy2(films[0] / name, folder / name)
    out = tmp_path / "out"
    assert recon("embed-spine", folder, "-o", out, "-q")[0] == 0
    kept = (out / "patient0.json").stat().st_mtime_ns
    for made in out.glob("patient1*"):  # made a minute before the film was replaced
        stamp = made.stat().st_mtime_ns - 60 * 10**9
        os.utime(made, ns=(stamp, stamp))
    replaced = synth_spine_xray(-22.0, rows=192, seed=41)
    write_png(folder / "patient1.png", replaced.image)
    code, stdout, err = recon("embed-spine", folder, "-o", out, "--skip-done", "--json", "-q")
    assert code == 0, err
    document = json.loads(stdout)
    assert (document["skipped"], document["changed"], document["done"]) == (1, 1, 1)
    measured = json.loads((out / "patient1.json").read_text())["cobb_deg"]
    assert cobb_error(measured, replaced.cobb_deg) < 3.0
    assert abs(measured - films[1]["patient1"]) > 5  # not the old film's angle
    assert (out / "patient0.json").stat().st_mtime_ns == kept


@pytest.mark.parametrize(
    "first,second,flag",
    [
        (["--span", "T1-L5"], ["--span", "T1-L1"], "--span"),
        ([], ["--pixel-spacing", 2, 2], "--pixel-spacing"),
    ],
)
def test_skip_done_refuses_a_folder_measured_with_other_settings(
    recon, films, tmp_path, first, second, flag
):
    """--skip-done kept the films of a run with --span T1-L5 and measured the rest with T1-L1
    (or another spacing), so one table mixed two namings: it is refused, before any work."""
    folder = films[0]
    out = tmp_path / "mixed"
    assert recon("embed-spine", folder, "-o", out, "--shard", "1/2", *first, "-q")[0] in (0, 1)
    before = snapshot(out)
    for batch in (["--skip-done"], ["--shard", "2/2"]):
        code, stdout, err = recon("embed-spine", folder, "-o", out, *batch, *second, "--json")
        assert code == 2 and err.count("\n") == 1, err
        assert f"made with other settings ({flag} " in err and json.loads(stdout)["exit_code"] == 2
        assert snapshot(out) == before
    code, _, err = recon("embed-spine", folder, "-o", out, "--skip-done", "--span", "t1-l5", "-q")
    assert code == 1 and "made with other settings" not in err, err  # same span, other spelling


def test_skip_done_refuses_a_result_of_another_film_of_the_same_name(recon, films, tmp_path):
    """Two folders each hold patient0.png: --skip-done on the second kept the first folder's
    Cobb angle and listed it under the second folder's film."""
    folder = films[0]
    other = tmp_path / "other"
    other.mkdir()
    write_png(other / "patient0.png", synth_spine_xray(-30.0, rows=192, seed=9).image)
    out = tmp_path / "out"
    assert recon("embed-spine", folder / "patient0.png", "-o", out, "-q")[0] == 0
    before = snapshot(out)
    code, _, err = recon("embed-spine", other / "patient0.png", "-o", out, "--skip-done")
    assert code == 2 and err.count("\n") == 1, err
    assert "another film than" in err and "patient0.json" in err
    assert snapshot(out) == before
    code, stdout, err = recon("embed-spine", folder / "patient0.png", "-o", out, "--skip-done",
                              "--json")  # fmt: skip
    assert code == 0 and json.loads(stdout)["results"][0]["skipped"], err


def test_two_films_of_one_name_are_told_apart_in_the_table(recon, tmp_path, monkeypatch):
    """a/patient0.png and b/patient0.png: the table named both rows `patient0.png`; each row now
    gives the path as given where the names clash (the files are a_patient0.json and
    b_patient0.json), and the file name alone where they do not."""
    monkeypatch.chdir(tmp_path)
    for folder, angle in (("a", 20.0), ("b", -30.0)):
        (tmp_path / folder).mkdir()
        write_png(tmp_path / folder / "patient0.png", synth_spine_xray(angle, rows=192).image)
    code, stdout, err = recon("embed-spine", "a/patient0.png", "b/patient0.png", "-o", "out")
    assert code == 0, err
    rows = [line for line in stdout.splitlines() if "patient0.png" in line]
    assert [row.split()[1] for row in rows] == ["a/patient0.png", "b/patient0.png"]
    code, stdout, err = recon("embed-spine", "a/patient0.png", "-o", "one")
    assert code == 0 and "│ patient0.png" in stdout and "a/patient0.png" not in stdout, err
    # a name in brackets was read as Rich markup: the row said ".png"
    (tmp_path / "a" / "patient0.png").rename(tmp_path / "a" / "[bold].png")
    code, stdout, err = recon("embed-spine", "a/[bold].png", "-o", "marked")
    assert code == 0 and "│ [bold].png" in stdout, (stdout, err)


def test_dicom_films_named_by_uid_take_their_spacing_from_the_header(recon, tmp_path):
    xray = synth_spine_xray(30.0, rows=192, seed=5)
    folder = tmp_path / "dicom"
    write_dx(folder / "1.2.840.10008.1", xray.image, ImagerPixelSpacing=[xray.spacing_mm] * 2)
    write_dx(folder / "1.2.840.10008.2.dcm", xray.image, ImagerPixelSpacing=[xray.spacing_mm] * 2)
    code, stdout, err = recon("embed-spine", folder, "-o", tmp_path / "out", "--json", "-q")
    assert code == 0, err
    results = json.loads(stdout)["results"]
    assert [r["name"] for r in results] == ["1.2.840.10008.1", "1.2.840.10008.2"]
    for r in results:
        assert r["spacing_from"] != "none" and r["spacing_mm"][0] == pytest.approx(xray.spacing_mm)
        assert cobb_error(r["cobb_deg"], xray.cobb_deg) <= 3.0


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


BAD = {  # case -> (the arguments from the places below, the message)
    "two films, one JSON": (
        lambda p: [p.film0, p.film1, "-o", p.json],
        "several X-rays need an output folder",
    ),
    "a folder, one JSON": (
        lambda p: [p.folder, "-o", p.json],
        "several X-rays need an output folder",
    ),
    "a debug image": (
        lambda p: [p.folder, "-o", p.out, "--debug-image", p.png],
        "--debug-image names one overlay",
    ),
    "a shard of one": (
        lambda p: [p.film0, "-o", p.json, "--shard", "1/2"],
        "--shard and --skip-done need an output",
    ),
    "out in the input": (
        lambda p: [p.folder, "-o", p.folder / "sub"],
        "is, or is inside, the input folder",
    ),
    "a bad shard": (lambda p: [p.folder, "-o", p.out, "--shard", "3/2"], "--shard"),
    "an empty folder": (
        lambda p: [p.empty, "-o", p.out],
        "folder holds no DICOM, PNG, JPEG, TIFF, BMP or WebP X-rays",
    ),
    "a reserved name": (
        lambda p: [p.run, p.film0, "-o", p.out],
        "its output name 'run' is reserved",
    ),
    "one film, a picture out": (  # made a folder named d.png before
        lambda p: [p.film0, "-o", p.png],
        "names a .png file, but -o is EMB.json for one X-ray",
    ),
    "a folder, a table out": (
        lambda p: [p.folder, "-o", p.tmp / "cobb.csv"],
        "names a .csv file",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_batch_input_is_one_line_and_writes_nothing(recon, films, tmp_path, case):
    from types import SimpleNamespace

    folder = films[0]
    (tmp_path / "empty").mkdir()
    run = write_png(tmp_path / "run.png", np.zeros((64, 64), np.uint16))
    places = SimpleNamespace(
        film0=folder / "patient0.png",
        film1=folder / "patient1.png",
        folder=folder,
        empty=tmp_path / "empty",
        run=run,
        json=tmp_path / "x.json",
        out=tmp_path / "o",
        png=tmp_path / "d.png",
        tmp=tmp_path,
    )
    build, message = BAD[case]
    before, films_before = snapshot(tmp_path), snapshot(folder)
    code, _, err = recon("embed-spine", *build(places))
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert snapshot(tmp_path) == before and snapshot(folder) == films_before


def test_two_array_tasks_at_once_measure_every_film_once(films, tmp_path):
    """Two processes started together as the tasks of a SLURM array (--array=0-1) share one
    output folder that neither has made yet; together they write what one run writes."""
    import os
    import subprocess
    import sys

    folder, truth, spacing = films
    out = tmp_path / "array"
    command = [sys.executable, "-m", "recon.cli.app", "embed-spine", folder, "-o", out,
               "--pixel-spacing", spacing, spacing, "-q"]  # fmt: skip
    array = {f"SLURM_ARRAY_TASK_{k}": v for k, v in (("COUNT", "2"), ("MIN", "0"), ("MAX", "1"))}
    tasks = [
        subprocess.Popen(
            [str(a) for a in command],
            env={**os.environ, **array, "SLURM_ARRAY_TASK_ID": str(i)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    codes = sorted(task.wait(timeout=300) for task in tasks)
    assert codes == [0, 1], [task.stderr.read() for task in tasks]  # the noise film fails once
    measured = sorted(p.stem for p in out.glob("*.json") if not p.name.startswith("run"))
    assert measured == sorted(truth)
    rows = [read_table(out / f"cobb.shard-{k}-of-2.csv") for k in (1, 2)]
    assert sorted([*rows[0], *rows[1]]) == sorted(["noise", *truth])
    assert (out / "run.shard-1-of-2.json").is_file() and (out / "run.shard-2-of-2.json").is_file()


def test_a_trace_along_the_heart_border_is_flagged(recon, tmp_path):
    """A rotated chest DRR (`recon synth xray`, seed 0, X-ray 0) is traced along the heart
    border: the two traced borders differ far more than on any film the method was tuned on, and
    the command says so; a spine film's trace is not flagged."""
    assert recon("synth", "xray", "-o", tmp_path / "xr", "-n", 1, "--size", 256, "-q")[0] == 0
    code, stdout, err = recon("embed-spine", tmp_path / "xr" / "xray_000.dcm", "-o",
                              tmp_path / "chest.json", "--span", "T1-L1", "--json")  # fmt: skip
    assert code == 0, err
    assert "warning: " in err and "may follow tissue beside the spine" in err
    result = json.loads(stdout)
    assert result["border_asymmetry"] > 0.75 and result["warning"]
    assert json.loads((tmp_path / "chest.json").read_text())["warning"] == result["warning"]
    spine = synth_spine_xray(20.0, rows=192, seed=3)
    write_png(tmp_path / "spine.png", spine.image)
    pixel = [spine.spacing_mm] * 2
    code, stdout, err = recon("embed-spine", tmp_path / "spine.png", "-o", tmp_path / "s.json",
                              "--pixel-spacing", *pixel, "--json")  # fmt: skip
    assert code == 0 and "warning" not in err and json.loads(stdout)["warning"] is None


def test_no_spine_at_an_implausible_scale_asks_about_the_pixel_spacing(recon, films, tmp_path):
    folder, _, spacing = films
    film = folder / "patient1.png"
    code, _, err = recon("embed-spine", film, "-o", tmp_path / "e.json", "--pixel-spacing",
                         0.2, 0.2)  # fmt: skip
    assert code == 1 and err.count("\n") == 1, err
    assert "patient1.png: no spine found" in err and "mm per pixel the film is" in err
    assert "check the pixel spacing" in err and not (tmp_path / "e.json").exists()
    code, _, err = recon("embed-spine", folder / "noise.png", "-o", tmp_path / "n.json",
                         "--pixel-spacing", spacing, spacing)  # fmt: skip
    assert code == 1 and "no spine found" in err and "pixel spacing" not in err


@pytest.mark.parametrize("turn", [1, 3])
def test_a_film_turned_a_quarter_is_named(recon, tmp_path, turn):
    """A PNG stored on its side gave a Cobb angle of 36 deg (truth 21) with no warning. The
    column across such a film is several times as strong as the one down it: the JSON's
    `warning` says so (and the line on stderr); the upright film gets none."""
    spine = synth_spine_xray(21.0, rows=192, seed=3)
    write_png(tmp_path / "side.png", np.rot90(spine.image, turn).copy())
    write_png(tmp_path / "up.png", spine.image)
    for pixel in ([spine.spacing_mm] * 2, []):
        args = ["--pixel-spacing", *pixel] if pixel else []
        code, out, err = recon("embed-spine", tmp_path / "side.png", "-o", tmp_path / "s.json",
                               *args, "--json", "--overwrite")  # fmt: skip
        warning = json.loads(out)["warning"] if code == 0 else err
        assert "may be turned a quarter" in warning, (code, err)
        assert code == 0 or "no spine found down the X-ray, but one across it" in err
        code, out, err = recon("embed-spine", tmp_path / "up.png", "-o", tmp_path / "u.json",
                               *args, "--json", "--overwrite")  # fmt: skip
        assert code == 0 and json.loads(out)["warning"] is None, err
        assert json.loads(out)["across_ratio"] < 1.0


def test_one_film_records_its_run_beside_the_json(recon, films, tmp_path):
    folder, _, spacing = films
    out = tmp_path / "p.json"
    args = ["embed-spine", folder / "patient0.png", "-o", out, "--pixel-spacing", spacing, spacing]
    code, _, err = recon(*args, "-q")
    assert code == 0, err
    record = json.loads((tmp_path / "p.json.run.json").read_text())
    assert record["command"] == "embed-spine" and record["config"]["span"] == "T1-L5"
    assert record["metrics"]["cobb_deg"] == json.loads(out.read_text())["cobb_deg"]
    code, _, err = recon(*args)  # the result is there: refused
    assert code == 2 and f"{out}: already exists" in err
    out.unlink()  # a record left without its result does not block the rerun
    code, _, err = recon(*args, "-q")
    assert code == 0 and out.is_file(), err


def test_a_film_narrower_than_the_body_widths_is_no_spine_not_a_crash(recon, tmp_path):
    """48 columns at 0.2 mm: every body width searched (18-54 mm) is wider than the film. Before,
    the border steps shifted columns past the edge and the command died with a ValueError."""

    write_png(tmp_path / "tiny.png", synth_spine_xray(20.0, rows=160, seed=3).image[:, 40:88])
    code, _, err = recon("embed-spine", tmp_path / "tiny.png", "-o", tmp_path / "e.json",
                         "--pixel-spacing", 0.2, 0.2)  # fmt: skip
    assert code == 1 and err.count("\n") == 1, err
    assert "tiny.png: no spine found" in err and "the film is 10 x 32 mm" in err
    assert not (tmp_path / "e.json").exists()
