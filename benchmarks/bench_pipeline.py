"""End-to-end pipeline: memory against driver length, and frames per second against the model alone.

    python benchmarks/bench_pipeline.py [--faces ../shared/data/faces] [--mesh-only]

1. Peak resident memory of `SFDPipeline.animate` (tiny preset; each run in a fresh process) on a
   10-second and a 60-second driver made by looping a shared clip: streaming means the long one
   stays within 10 % of the short one.
2. Throughput in frames per second end to end (decode + face crop + model + paste-back + encode)
   beside the model alone (driving encode + generate on ready crops), tiny and vox256 presets,
   and for tiny also without detail transfer (paste-back of the upsampled model-size face), with
   a driver box that follows the face (detection every 5th frame) instead of one box per clip, and
   without head-pose transfer, then without mouth transfer either, then without blink transfer
   either (the face mesh on every driving face, and on every output face for the mouth and the
   head, on those whose driver's eyes close for the blinks); and the bundled weights with and
   without the picture around the face moved with the crop (`sfd.face.paste.move_surroundings`,
   which random weights never call: their flow is zero).
3. Reading a clip's faces with the face mesh, as the retargeting does, two streams (the driver's
   256 px crops, and the same faces at 128 px standing in for the faces shown): tracked (each face
   framed on the previous face's points, one pass, a frame's two faces in one batch) beside each
   face framed afresh (a pass on the whole crop, then one on its points, batches of 8).
4. Large faces (`--large-faces`): the bundle animating one portrait enlarged so that its face's crop
   is about 800, 1,200 and 1,600 px, seconds a frame with the faces drawn and retargeted at the
   working side (`detail_transfer.WORKING_SIDE`, 512) and the rest of the detail added at the end,
   beside everything at the crop's own side (the working side unbounded), alternated.
Random weights elsewhere: the rest of the pipeline's speed and memory do not depend on what the weights are.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_FACES = HERE.parents[2] / "shared" / "data" / "faces"


def loop_clip(src: Path, dst: Path, seconds: float) -> Path:
    from sfd.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(src), "-t", str(seconds),
                    "-c:v", "libx264", "-c:a", "aac", str(dst)], check=True)
    return dst


def child(preset: str, source: str, driving: str, output: str, model_only: bool, detail: bool,
          driver_box: str, retargeting: str, surroundings: bool) -> None:
    """Runs in its own process; prints one JSON line. `preset` "bundle": the bundled weights."""
    import torch

    from sfd import SFDModel, SFDPipeline
    from sfd.face import paste
    from sfd.media import probe_video, read_video

    torch.manual_seed(0)
    if not surroundings:  # the paste-back as before the picture around the face moved with it
        paste.move_surroundings = lambda image, box, flow, **_: image.copy()
    if preset == "bundle":
        pipe = SFDPipeline.from_pretrained(device="cpu", detail_transfer=detail)
    else:
        with tempfile.TemporaryDirectory() as weights:
            SFDModel.from_preset(preset).save_pretrained(weights)
            pipe = SFDPipeline.from_pretrained(weights, device="cpu", detail_transfer=detail)
    result = {"preset": preset, "driving_seconds": probe_video(driving).duration}
    start = time.perf_counter()
    pipe.animate(source, driving, output, crop_driving=True, driver_box=driver_box,
                 blinks=retargeting in ("all", "no head", "blinks"), mouth=retargeting in ("all", "no head"),
                 head=retargeting == "all")
    seconds = time.perf_counter() - start
    frames = probe_video(output).frame_count
    result.update(end_to_end_fps=frames / seconds, frames=frames,
                  peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if model_only:
        src = pipe.prepare_source(source)
        crops = read_video(driving, max_frames=32, size=(pipe.descriptor_size, pipe.descriptor_size))[0]
        batches = [crops[i:i + 8] for i in range(0, len(crops), 8)]
        with torch.inference_mode():
            def run():
                for b in batches:
                    d = pipe.model.encode(pipe._to_tensor(b), with_features=False)
                    pipe.model.generate(pipe.model.transfer_motion(src.descriptors, d.motion, d.motion[:1]),
                                        src.descriptors.features)
            run()
            start = time.perf_counter()
            run()
            result["model_only_fps"] = len(crops) / (time.perf_counter() - start)
    print(json.dumps(result))


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(HERE), "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--child", nargs=9,
                        metavar=("PRESET", "SOURCE", "DRIVING", "OUTPUT", "MODEL_ONLY", "DETAIL", "DRIVER_BOX",
                                 "RETARGETING", "SURROUNDINGS"))
    parser.add_argument("--mesh-only", action="store_true", help="only section 3 (the face mesh's reading)")
    parser.add_argument("--large-faces", action="store_true", help="only section 4 (faces above the working side)")
    args = parser.parse_args()
    if args.child:
        preset, source, driving, output, model_only, detail, driver_box, retargeting, surroundings = args.child
        child(preset, source, driving, output, model_only == "1", detail == "1", driver_box, retargeting,
              surroundings == "1")
        return
    source = str(args.faces / "liveportrait" / "source" / "s0.jpg")
    clip = args.faces / "liveportrait" / "driving" / "d3.mp4"
    if args.mesh_only:
        return mesh_reading(clip)
    if args.large_faces:
        return large_faces(source, clip)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        short = loop_clip(clip, tmp / "short.mp4", 10)
        long = loop_clip(clip, tmp / "long.mp4", 60)
        clip4 = loop_clip(clip, tmp / "clip4.mp4", 4)
        print("memory (tiny preset, crop + paste-back + audio, 512x512 driver, 600x704 source):")
        rss = {}
        for name, path in (("10 s", short), ("60 s", long)):
            r = run_child("tiny", source, str(path), str(tmp / f"out_{name[:2]}.mp4"), "0", "1", "fixed", "all", "1")
            rss[name] = r["peak_rss_mib"]
            print(f"  {name} driver ({r['frames']} frames): peak RSS {r['peak_rss_mib']:.0f} MiB, "
                  f"{r['end_to_end_fps']:.1f} frames/s")
        print(f"  60 s / 10 s peak memory: {rss['60 s'] / rss['10 s']:.3f}")
        print("throughput (4 s driver, 120 frames):")
        fps = {}
        for preset, detail, box, retargeting, moved in (
                ("tiny", "1", "fixed", "all", "1"), ("tiny", "0", "fixed", "all", "1"),
                ("tiny", "1", "track", "all", "1"), ("tiny", "1", "fixed", "no head", "1"),
                ("tiny", "1", "fixed", "blinks", "1"), ("tiny", "1", "fixed", "none", "1"),
                ("vox256", "1", "fixed", "all", "1"), ("bundle", "1", "fixed", "all", "1"),
                ("bundle", "1", "fixed", "all", "0")):
            r = run_child(preset, source, str(clip4), str(tmp / f"out_{preset}.mp4"), "1", detail, box, retargeting,
                          moved)
            fps[preset, detail, box, retargeting, moved] = r["end_to_end_fps"]
            label = preset + ("" if detail == "1" else ", no detail transfer")
            label += "" if moved == "1" else ", picture around the face not moved"
            label += ", tracked box" if box == "track" else ""
            label += {"all": "", "no head": ", no head transfer", "blinks": ", no mouth or head transfer",
                      "none": ", no blink, mouth or head transfer"}[retargeting]
            print(f"  {label:<44} end to end {r['end_to_end_fps']:.2f} frames/s, model only "
                  f"{r['model_only_fps']:.2f} frames/s (end-to-end / model-only = "
                  f"{r['end_to_end_fps'] / r['model_only_fps']:.2f})")
        shipped = fps["tiny", "1", "fixed", "all", "1"]
        print(f"  tiny end to end, with / without detail transfer: {shipped / fps['tiny', '0', 'fixed', 'all', '1']:.2f}")
        print(f"  tiny end to end, one driver box / tracked box: {shipped / fps['tiny', '1', 'track', 'all', '1']:.2f}")
        print(f"  tiny end to end, with / without head transfer: "
              f"{shipped / fps['tiny', '1', 'fixed', 'no head', '1']:.2f}")
        print(f"  tiny end to end, with / without mouth and head transfer: "
              f"{shipped / fps['tiny', '1', 'fixed', 'blinks', '1']:.2f}")
        print(f"  tiny end to end, with / without blink, mouth and head transfer: "
              f"{shipped / fps['tiny', '1', 'fixed', 'none', '1']:.2f}")
        print(f"  the bundle end to end, with / without the picture around the face moved: "
              f"{fps['bundle', '1', 'fixed', 'all', '1'] / fps['bundle', '1', 'fixed', 'all', '0']:.2f}")
        mesh_reading(clip4)
    large_faces(source, clip)


def large_faces(source: str, clip: Path, frames: int = 24, repeats: int = 3) -> None:
    """Section 4 of the module doc."""
    from sfd import SFDPipeline
    from sfd.face import CropBox, crop
    from sfd.media import load_image, read_video
    from sfd.pipeline import detail_transfer

    pipe = SFDPipeline.from_pretrained(device="cpu")
    driving = read_video(clip, max_frames=frames)[0]
    batches = [driving[i:i + 8] for i in range(0, len(driving), 8)]
    portrait = load_image(source)
    shipped = detail_transfer.WORKING_SIDE
    print(f"large faces: the bundle, {frames} driving frames, seconds a frame "
          f"(working side {shipped} / the crop's own side):")
    box = pipe.prepare_source(portrait).box
    around = CropBox(box.cx, box.cy, 1.25 * box.side)  # the face and some picture around it (under 2,048 px)
    for target in (800, 1200, 1600):
        image = crop(portrait, around, round(1.25 * target))  # enlarged: its face's crop about `target`
        seconds = {shipped: 0.0, None: 0.0}
        for _ in range(repeats):  # alternated, so that a busy machine slows both alike
            for side in seconds:
                detail_transfer.WORKING_SIDE = shipped if side else 10 ** 6
                face = pipe.prepare_source(image)
                start = time.perf_counter()
                for _ in pipe.iter_animate(face, batches):
                    pass
                seconds[side] += (time.perf_counter() - start) / (repeats * frames)
        detail_transfer.WORKING_SIDE = shipped
        print(f"  crop {face.box.side:5.0f} px: {seconds[shipped]:.3f} s / {seconds[None]:.3f} s "
              f"(own side / working side: {seconds[None] / seconds[shipped]:.2f})")


def mesh_reading(clip: Path, repeats: int = 3) -> None:
    """Section 3 of the module doc: frames per second of both readings, alternated `repeats` times."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sfd.face import crop, load_face_detector
    from sfd.face.tracker import find_first_face
    from sfd.media import read_video
    from sfd.pipeline.face_retargeting import DRIVER_SIDE, MeshStreams, tracked_points
    from sfd.semantics.face_measures import face_mesh

    frames = read_video(clip, max_frames=120)[0]
    first = find_first_face(load_face_detector(), iter(frames))  # the pipeline's driver box
    faces = torch.from_numpy(np.stack([crop(f, first.box, DRIVER_SIDE) for f in frames]))
    faces = faces.permute(0, 3, 1, 2).float() / 127.5 - 1
    shown = F.interpolate(faces, size=(128, 128), mode="area")
    mesh = face_mesh("cpu")
    seconds = {"afresh": 0.0, "tracked": 0.0}

    def afresh(driver, faces):
        tracked_points(mesh, driver)
        tracked_points(mesh, faces)

    with torch.no_grad():
        for _ in range(repeats):  # alternated, so that a busy machine slows both alike
            streams = MeshStreams(mesh)
            for name, read in (("afresh", afresh), ("tracked", lambda driver, faces: streams(driver=driver, shown=faces))):
                start = time.perf_counter()
                for i in range(0, len(faces), 8):
                    read(faces[i:i + 8], shown[i:i + 8])
                seconds[name] += time.perf_counter() - start
    print(f"reading {len(faces)} frames' faces with the face mesh (a driver's and a shown face each):")
    print(f"  each face framed afresh (two passes)     {repeats * len(faces) / seconds['afresh']:.1f} frames/s")
    print(f"  tracked streams (one pass a face)        {repeats * len(faces) / seconds['tracked']:.1f} frames/s")
    print(f"  tracked / afresh frames per second: {seconds['afresh'] / seconds['tracked']:.2f}")


if __name__ == "__main__":
    main()
