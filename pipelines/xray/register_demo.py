"""`recon demo`'s registration step."""

from __future__ import annotations

from pathlib import Path

from recon.pipelines.xray.register_inputs import dicom_pose
from recon.pipelines.xray.registration import RegistrationConfig, register, retain_freed_memory
from recon.pipelines.xray.registration_run import errors


def demo_step(workdir: Path, seed: int, track) -> list:
    """`recon demo`: one synthetic 128 px X-ray of the bundled CT in each detector convention
    (Patient Orientation L\\F and R\\F, read from the DICOM header), registered from the
    nominal C-arm pose (up to 10 deg and 20 mm off per axis); mTRE, rotation error, time."""
    import time

    from recon.pipelines.common.demo import DemoRow
    from recon.pipelines.xray.synth_xray import SynthXrayConfig, synthesize_xrays
    from recon.pipelines.xray.volume import coarsen
    from recon.pipelines.xray.xray import preprocess, read_xray

    rows = []
    subject = None
    retain_freed_memory()
    for offset, reverse_x_axis in enumerate((True, False)):
        clock = time.perf_counter()
        label = "L\\F" if reverse_x_axis else "R\\F"
        folder = Path(workdir) / f"xray_{label[0]}"
        folder.mkdir(parents=True, exist_ok=True)
        synth_config = SynthXrayConfig(count=1, reverse_x_axis=reverse_x_axis)
        synth = synthesize_xrays(folder, synth_config, seed=seed + offset, track=track)
        config = RegistrationConfig()
        if subject is None:
            subject = coarsen(synth["subject"], config.ct_spacing_mm)
        xray = read_xray(synth["files"][0])
        image, intrinsics = preprocess(xray, crop=8)
        result = register(subject, image, intrinsics, dicom_pose(xray, "AP"), config)
        truth = synth["poses"][:1]
        scores = errors(result.final_pose, result.init_pose, truth, synth["fiducials"])
        seconds = time.perf_counter() - clock
        step = f"register X-ray {xray.frame.patient_orientation}"
        final = scores["final_mtre_mm"]
        rotation = scores["final_rotation_error_deg"]
        rows += [
            DemoRow(step, "mTRE mm", final, "< 1", final < 1.0, seconds),
            DemoRow(step, "start mTRE mm", scores["init_mtre_mm"], "(before)", None),
            DemoRow(step, "rotation error deg", rotation, "< 0.5", rotation < 0.5),
            DemoRow(step, "registration s", result.runtime_s, "(wall)", None),
        ]
    return rows
