"""Face-mesh points of every frame of a preprocessed dataset, computed once and stored beside the frames.

The motion losses (`sfd.training.motion_losses`) compare the source's and the driver's 468 mesh
points; running the mesh network on both frames of every pair at every step would cost more than
the tiny model's own step, so `python -m sfd.data.mesh_points ROOT` writes `mesh.npz` into each
frame folder: `points` (F, 468, 3) with x, y in grid_sample's [-1, 1] units of the crop (z in the
same scale), `presence` (F,) the mesh's face probability, and `files`, the frame names in order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import SFDError, run_command
from ..media import load_image
from .layout import find_clips, frame_files

MESH_FILE = "mesh.npz"
NUM_POINTS = 468
MIN_PRESENCE = 0.5  # below this the mesh did not see a face: the frame has no points


def mesh_of_frames(frames: np.ndarray, mesh, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Points (F, 468, 3) in [-1, 1] crop units and presence (F,) of square RGB uint8 crops (F, S, S, 3)."""
    points, presence = [], []
    size = frames.shape[1]
    device = next(mesh.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[start:start + batch_size])).to(device)
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
            out = mesh.on_aligned(x)
            points.append((out.points / size * 2 - torch.tensor([1.0, 1.0, 0.0], device=device)).cpu().numpy())
            presence.append(out.presence.cpu().numpy())
    return np.concatenate(points).astype(np.float32), np.concatenate(presence).astype(np.float32)


def write_folder_mesh(folder: Path, mesh, batch_size: int = 32) -> Path:
    """Compute and save `folder/mesh.npz` for a frame folder."""
    files = frame_files(folder)
    if not files:
        raise SFDError(f"{folder} holds no frames")
    frames = np.stack([load_image(f) for f in files])
    points, presence = mesh_of_frames(frames, mesh, batch_size)
    out = folder / MESH_FILE
    tmp = folder / (MESH_FILE + ".tmp.npz")
    np.savez_compressed(tmp, points=points, presence=presence, files=np.array([f.name for f in files]))
    tmp.replace(out)
    return out


def read_folder_mesh(folder: Path, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(points, presence) of a frame folder, or None when it has no mesh file (or one for other frames)."""
    path = Path(folder) / MESH_FILE
    if not path.is_file():
        return None
    with np.load(path) as data:
        if names is not None and list(data["files"]) != list(names):
            return None
        return data["points"], data["presence"]


def cache_meshes(root: str | Path, splits: list[str], force: bool = False, log=print,
                 device: str | torch.device | None = None) -> int:
    """Write mesh.npz into every frame folder of `root/<split>`; returns how many were written.

    `device`: where the mesh runs (default: the GPU when there is one).
    """
    from ..pretrained.face_mesh import FaceMesh

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    mesh = FaceMesh.from_pretrained(device=device)
    written = 0
    for split in splits:
        folder = Path(root) / split
        if not folder.is_dir():
            raise SFDError(f"no split folder {folder}")
        clips = [c for c in find_clips(folder) if c.is_dir()]
        for index, clip in enumerate(clips):
            if not force and read_folder_mesh(clip, [f.name for f in frame_files(clip)]) is not None:
                continue
            write_folder_mesh(clip, mesh)
            written += 1
            if written % 20 == 0:
                log(f"{split}: {index + 1}/{len(clips)} folders")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.data.mesh_points", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a preprocessed data root (with train/, test/ frame folders)")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--force", action="store_true", help="compute again even where mesh.npz exists")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the GPU when there is one)")
    args = parser.parse_args(argv)
    splits = [s for s in args.splits if (Path(args.root) / s).is_dir()] or args.splits
    return run_command(lambda: f"wrote mesh points for "
                               f"{cache_meshes(args.root, splits, args.force, device=args.device)} frame folders")


if __name__ == "__main__":
    sys.exit(main())
