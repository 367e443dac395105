"""Is the model learning motion? Cheap measures logged while training, on clips of held-out people.

A run that is not learning motion looks fine in its losses (it copies the source); it shows here:

- `driver_sensitivity`: mean |G(s, d) - G(s, d')| over held-out pairs with the drivers shuffled
  (d' another frame): near 0, the output ignores the driver (motion collapse);
- `point_error_ratio`: mesh-point error of the output against the driver over that of doing
  nothing (the source copied); below 1 the output moves toward the driver;
- `mouth_corr`, `eye_corr`, `pose_corr`: for a few held-out clips, the first frame animated by
  the rest (relative motion, as the app does), then the correlation over time of mouth opening,
  eye opening and head pose (face centre, roll) between output and driver, read with the face
  mesh: the motion-following measures of the evaluation, on crops and with the mesh instead of
  dlib, so they cost seconds;
- `mouth_amplitude`: how wide the output's mouth moves against the driver's (spread of the mouth
  opening over the driver's; 1 as much, 0 still): a mouth that follows at a third of the width
  scores a high `mouth_corr` all the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sfd.data.layout import find_clips, frame_files
from sfd.data.mesh_points import read_folder_mesh
from sfd.evaluation.face_motion import correlation, spread_ratio
from sfd.media import load_image
from sfd.pretrained import face_mesh_regions as regions


def to_model_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames (F, 3, S, S) -> float (F, 3, size, size) in [-1, 1], area-resized."""
    return F.interpolate(images.float() / 127.5 - 1, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


def mesh_measures(points: torch.Tensor) -> dict[str, np.ndarray]:
    """Mouth opening, eye opening, face centre x / y (in inter-ocular units) and roll of (N, 468, 3) points."""
    iod = regions.inter_ocular(points)
    left, right = regions.eye_opening(points)
    centre = regions.face_centre(points)[:, :2] / iod[:, None]
    values = {"mouth": regions.mouth_opening(points), "eyes": (left + right) / 2, "centre_x": centre[:, 0],
              "centre_y": centre[:, 1], "roll": regions.head_pose(points)[:, 2]}
    return {k: v.detach().float().cpu().numpy() for k, v in values.items()}


class MotionWatch:
    """The measures above for a model, on held-out clips.

    Args:
        clips: ``(images, points)`` per clip: frames (F, 3, size, size) in [-1, 1] and their mesh
            points (F, 468, 3) in [-1, 1] crop units (`from_folder` reads them from crops on disk).
        mesh: the `FaceMesh` that reads the outputs (default: the converted one); it is moved to the
            model's device at each call, so model, frames and mesh may start anywhere.
    """

    def __init__(self, clips: list[tuple[torch.Tensor, np.ndarray]], mesh=None):
        from sfd.pretrained.face_mesh import FaceMesh

        self.mesh = mesh if mesh is not None else FaceMesh.from_pretrained()
        self.clips: list[tuple[torch.Tensor, dict[str, np.ndarray]]] = []
        for images, points in clips:
            points = torch.as_tensor(points, dtype=torch.float32)
            self.clips.append((images, {**mesh_measures(points.cpu()), "points": points[..., :2].cpu().numpy()}))
        self.size = self.clips[0][0].shape[-1] if self.clips else 0

    @classmethod
    def from_folder(cls, root: str | Path, split: str, size: int, clips: int = 4, frames: int = 32,
                    mesh=None) -> "MotionWatch":
        """`clips` clips of `root/split` (frame folders with mesh.npz; the first ones by name), `frames`
        frames of each, evenly spaced, resized to the model's `size`."""
        chosen_clips = []
        folder = Path(root) / split
        for clip in find_clips(folder) if folder.is_dir() else []:
            files = frame_files(clip) if clip.is_dir() else []
            found = read_folder_mesh(clip, [f.name for f in files]) if len(files) >= frames else None
            if found is None:
                continue
            chosen = np.linspace(0, len(files) - 1, frames).round().astype(int)
            images = torch.stack([torch.from_numpy(np.array(load_image(files[i]))).permute(2, 0, 1) for i in chosen])
            chosen_clips.append((to_model_size(images, size), found[0][chosen]))
            if len(chosen_clips) == clips:
                break
        return cls(chosen_clips, mesh)

    def __bool__(self) -> bool:
        return bool(self.clips)

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        device = next(model.parameters()).device
        mesh = self.mesh.to(device)
        was_training = model.training
        model.eval()
        follow: dict[str, list[float]] = {"mouth_corr": [], "mouth_amplitude": [], "eye_corr": [], "pose_corr": [],
                                          "point_error_ratio": []}
        sensitivity = []
        for images, driver in self.clips:
            images = images.to(device)
            source = model.encode(images[:1])
            drivers = model.encode(images, with_features=False).motion
            latents = model.transfer_motion(source, drivers, reference_motion=drivers[:1])
            outputs = model.generate(latents, source.features).clamp(-1, 1)
            shuffled = model.generate(latents.roll(1, 0), source.features).clamp(-1, 1)
            sensitivity.append((outputs - shuffled).abs().mean().item() / 2)
            points = mesh.on_aligned(outputs.float()).points / self.size * 2
            ours = mesh_measures(points)
            truth = driver["points"][1:]
            error = np.abs(points[1:, :, :2].cpu().numpy() - 1 - truth).sum(-1).mean()  # grid units, as `truth`
            still = np.abs(driver["points"][:1] - truth).sum(-1).mean()  # the do-nothing output's error
            follow["point_error_ratio"].append(error / max(still, 1e-6))
            follow["mouth_corr"].append(correlation(ours["mouth"][1:], driver["mouth"][1:]))
            follow["mouth_amplitude"].append(spread_ratio(ours["mouth"][1:], driver["mouth"][1:]))
            follow["eye_corr"].append(correlation(ours["eyes"][1:], driver["eyes"][1:]))
            follow["pose_corr"].append(np.nanmean([correlation(ours[k][1:], driver[k][1:])
                                                   for k in ("centre_x", "centre_y", "roll")]))
        model.train(was_training)
        result = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in follow.items()}
        result["driver_sensitivity"] = float(np.mean(sensitivity))
        return result

    @torch.no_grad()
    def readout_following(self, model, readout) -> dict[str, float]:
        """Whether the motion descriptors carry each quantity at all, whatever the generator makes of
        them: a motion read-out (the training-time head, `MotionReadout`) turns the change of the
        model's descriptors into the driver's predicted mesh points, and their mouth, eyes and face
        centre are correlated over time with the driver's real ones (2-D points for both)."""
        device = next(model.parameters()).device
        follow: dict[str, list[float]] = {"mouth_corr": [], "eye_corr": [], "centre_x_corr": [], "centre_y_corr": []}
        for images, driver in self.clips:
            motion = model.encode(images.to(device), with_features=False).motion.float().cpu()
            points = torch.as_tensor(driver["points"], dtype=torch.float32)
            predicted = points[:1] + readout(motion - motion[:1])
            ours, truth = (mesh_measures(F.pad(p, (0, 1))) for p in (predicted, points))
            for name, key in (("mouth_corr", "mouth"), ("eye_corr", "eyes"), ("centre_x_corr", "centre_x"),
                              ("centre_y_corr", "centre_y")):
                follow[name].append(correlation(ours[key][1:], truth[key][1:]))
        return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in follow.items()}


def main(argv: list[str] | None = None) -> int:
    """`python -m sfd.training.motion_watch ROOT WEIGHTS [WEIGHTS ...]`: the measures for each weights
    folder (or training checkpoint) on the held-out crops ROOT/test, as a markdown table (an ablation)."""
    import argparse
    import sys

    from sfd.errors import run_command
    from sfd.evaluation.evaluator import as_pipeline

    parser = argparse.ArgumentParser(prog="python -m sfd.training.motion_watch", description=main.__doc__)
    parser.add_argument("root", help="held-out crops with mesh.npz per frame folder (python -m sfd.data.mesh_points)")
    parser.add_argument("weights", nargs="+", help="weights folders, training checkpoints or Hub repo ids")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--readout", action="store_true",
                        help="also read each training checkpoint's motion read-outs (readout.safetensors, "
                             "expression_readout.safetensors) from its model/ weights: which quantities the "
                             "motion descriptors carry")
    args = parser.parse_args(argv)

    def run() -> str:
        keys = ("point_error_ratio", "mouth_corr", "mouth_amplitude", "eye_corr", "pose_corr", "driver_sensitivity")
        lines = ["| weights | " + " | ".join(keys) + " |", "| --- |" + " ---: |" * len(keys)]
        watch = None
        for weights in args.weights:
            pipe, _ = as_pipeline(weights, device="cpu")
            if watch is None:
                watch = MotionWatch.from_folder(args.root, args.split, pipe.size, clips=args.clips, frames=args.frames)
            scores = watch(pipe.model)
            lines.append(f"| {weights} | " + " | ".join(f"{scores[k]:.3f}" for k in keys) + " |")
        text = f"{len(watch.clips)} held-out clips, {args.frames} frames each\n" + "\n".join(lines)
        if args.readout:
            text += "\n\n" + readout_table(watch, args.weights)
        return text

    return run_command(run)


def readout_table(watch: MotionWatch, checkpoints: list[str]) -> str:
    """Markdown: `MotionWatch.readout_following` of each read-out head found in each checkpoint."""
    from safetensors.torch import load_file

    from sfd.data.mesh_points import NUM_POINTS
    from sfd.errors import SFDError
    from sfd.models import SFDModel

    from .motion_losses import EXPRESSION_READOUT_FILE, READOUT_FILE, MotionReadout

    keys = ("mouth_corr", "eye_corr", "centre_x_corr", "centre_y_corr")
    lines = ["Read-outs from the motion descriptors (the checkpoint's model/ weights, which they were trained with):",
             "| checkpoint | head | " + " | ".join(keys) + " |", "| --- | --- |" + " ---: |" * len(keys)]
    for checkpoint in checkpoints:
        heads = [f for f in (READOUT_FILE, EXPRESSION_READOUT_FILE) if (Path(checkpoint) / f).is_file()]
        if not heads:
            raise SFDError(f"{checkpoint} holds no {READOUT_FILE}: --readout reads training checkpoints")
        model = SFDModel.from_pretrained(str(Path(checkpoint) / "model")).eval()
        for file in heads:
            readout = MotionReadout(model.config.motion_dim, NUM_POINTS)
            readout.load_state_dict(load_file(str(Path(checkpoint) / file)))
            scores = watch.readout_following(model, readout)
            cells = " | ".join(f"{scores[k]:.3f}" for k in keys)
            lines.append(f"| {checkpoint} | {file.split('.')[0]} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
