"""A trained `skull` model applied to image files -> skull and face meshes, grids and renders.

Per image NAME: NAME_skull.ply and NAME_face.ply (marching cubes at 0.5; mm with the grid's
centre at the origin when the training data gave a voxel size, else voxels), NAME_vox.npz
(float16 probabilities `skull` and `face`, (R, R, R) indexed (x, y, z) RAS+), and with render
NAME_render.png: the skull opaque inside a translucent face, from the front and the side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from recon.pipelines.common.devices import choose_device
from recon.pipelines.skull.data import HEADS

FACE_ALPHA = 0.45  # opacity of the face over the skull in renders


def predict_probabilities(
    checkpoint: Path, images: list[Path], device: str = "cpu", track: Callable | None = None
) -> list[dict[str, np.ndarray]]:
    """{'skull', 'face'} probability grids (R, R, R) float32 for every image, all at once (a
    held-out set; predict_skull keeps one image's at a time)."""
    from recon.pipelines.skull.task import load_net

    net, config = load_net(Path(checkpoint))
    return list(probability_stream(net, config, images, device, track))


def probability_stream(
    net, config: dict, images: list[Path], device: str = "cpu", track: Callable | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """{'skull', 'face'} probability grids (R, R, R) float32 of each image in turn. Every image
    is read and checked before the first is predicted (BadInput names a bad one), but none is
    kept: memory does not grow with the number of images."""
    import torch

    from recon.pipelines.skull.data import image_tensor, read_picture

    target = torch.device(choose_device(device))
    for path in images:
        read_picture(path)
    net = net.to(target)
    for path in track(images, "predict skull") if track else images:
        with torch.no_grad():
            logits = net(image_tensor(path, config["size"])[None].to(target))
        yield {
            h: torch.sigmoid(g)[0].float().cpu().numpy() for h, g in zip(HEADS, logits, strict=True)
        }


def predict_skull(
    checkpoint: Path,
    images: list[Path],
    names: list[str],
    out: Path,
    render: bool = False,
    device: str = "auto",
    track: Callable = lambda items, _d: items,
) -> list[dict]:
    """Write the outputs of every image into the folder out, each image's before the next is
    predicted; one record per image. An image's NAME_vox.npz is written last, so an image whose
    grids are there is finished (prediction_done).
    """
    from recon.pipelines.common.io import save_mesh
    from recon.pipelines.common.outputs import atomic_file
    from recon.pipelines.skull.score import grid_mesh
    from recon.pipelines.skull.task import load_net

    net, config = load_net(Path(checkpoint))
    voxel_mm = config["voxel_mm"] or None
    grids = probability_stream(net, config, images, device, track)
    records = []
    for path, stem, probability in zip(images, names, grids, strict=True):
        # the grids as the file keeps them (float16): the counts and meshes agree with it
        probability = {h: probability[h].astype(np.float16).astype(np.float32) for h in HEADS}
        record = {"image": str(path), "units": "mm" if voxel_mm else "voxels"}
        meshes = {}
        for head in HEADS:
            record[f"{head}_voxels"] = int((probability[head] >= 0.5).sum())
            mesh = grid_mesh(probability[head], voxel_mm)
            meshes[head] = mesh
            record[head] = str(save_mesh(mesh, out / f"{stem}_{head}.ply")) if mesh else None
        record["render"] = None
        if render and meshes["face"] is not None:
            record["render"] = str(render_png(meshes, out / f"{stem}_render.png"))
        with atomic_file(out / f"{stem}_vox.npz") as tmp, tmp.open("wb") as handle:
            np.savez_compressed(handle, **{h: probability[h].astype(np.float16) for h in HEADS})
        record["grids"] = str(out / f"{stem}_vox.npz")
        records.append(record)
    return records


def output_files(out: Path, stem: str) -> list[Path]:
    """Every file the image named stem may have in out."""
    return [out / f"{stem}_{part}" for part in ("vox.npz", "skull.ply", "face.ply", "render.png")]


def prediction_done(out: Path, stem: str, render: bool) -> bool:
    """Whether stem's outputs in out are finished: its grids (written last) are a readable npz,
    and with render its picture is there whenever it has a face mesh."""
    import zipfile

    grids = out / f"{stem}_vox.npz"
    try:
        with np.load(grids) as data:
            if not all(h in data.files for h in HEADS):
                return False
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False
    picture = out / f"{stem}_render.png"
    return not render or not (out / f"{stem}_face.ply").is_file() or picture.is_file()


def render_png(meshes: dict, path: Path, size: int = 320) -> Path:
    """Front and side views side by side: the skull opaque, the face over it with opacity
    FACE_ALPHA (each mesh ray-cast on its own and blended), white background."""
    from recon.pipelines.common.io import write_png
    from recon.pipelines.shapes import Renderer
    from recon.pipelines.skull.synth import PhotoView

    face = meshes["face"]
    centre = face.bounds.mean(axis=0)
    radius = float(np.linalg.norm(face.extents)) / 2
    distance = radius / np.tan(np.radians(15)) * 1.05
    background = np.full(3, 255.0)
    panels = []
    # front (from +y, anterior), side (from +x, the right: where the lateral radiograph's source
    # and the lateral photo's camera stand, so the face points the same way as in the input)
    for azimuth in (90.0, 0.0):
        view = PhotoView(azimuth, 10.0, distance, 30.0, tuple(centre))
        face_rgb, face_mask = Renderer(face).render(
            view, size, size, np.array([230.0, 180.0, 150.0]), background
        )
        image = face_rgb.astype(np.float64)
        if meshes["skull"] is not None:
            skull_rgb, skull_mask = Renderer(meshes["skull"]).render(
                view, size, size, np.array([245.0, 240.0, 225.0]), background
            )
            both = face_mask & skull_mask
            image[both] = FACE_ALPHA * image[both] + (1 - FACE_ALPHA) * skull_rgb[both]
            only = skull_mask & ~face_mask
            image[only] = skull_rgb[only]
        panels.append(np.clip(image, 0, 255).astype(np.uint8))
    return write_png(path, np.concatenate(panels, axis=1))
