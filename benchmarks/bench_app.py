"""Slider latency of the running app: from a slider change to the new image, through gradio_client.

    python benchmarks/bench_app.py [--presets tiny vox256] [--repeats 20] [--image examples/astronaut.jpg]

For each preset the real app is served on localhost (random weights: speed does not depend on
them) and three numbers are taken, each the median of `--repeats` calls:
* sliders: the Edit tab's own path, the undocumented /edit_sliders endpoint with the face already
  encoded in the session (what a browser does on every slider move), round trip including the
  PNG encode and the download of the image;
* /edit: the public API with the same portrait uploaded on every call (encoded once, then from
  the app's cache of prepared faces);
* pipeline: `SFDPipeline.edit` on the prepared face alone, in process (the model and paste-back
  share of the above).
Target: sliders under 0.6 s for vox256 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_seconds(call, repeats: int) -> float:
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        call(k)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_preset(preset: str, image: Path, repeats: int) -> dict:
    import torch
    from gradio_client import Client, handle_file

    from sfd import SFDModel, SFDPipeline
    from sfd.app import AppSettings, LoadedWeights, build_demo
    from sfd.face import load_face_detector

    torch.manual_seed(0)
    pipe = SFDPipeline(SFDModel.from_preset(preset), face_detector=load_face_detector(None, device="cpu"),
                       device="cpu")
    demo = build_demo(LoadedWeights(pipeline=pipe, name=f"{preset} preset (random weights)", trained=False),
                      AppSettings())
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        with tempfile.TemporaryDirectory() as downloads:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=downloads)
            sliders = demo.sfd_handlers.slider_count
            client.predict(handle_file(str(image)), True, 2.0, 0.0, -0.05, "{}", "{}", api_name="/load_face")

            def move_slider(k):  # a different value every call: each is a real re-render
                client.predict(*([0.01 * (k % 50 + 1)] + [0.0] * (sliders - 1)), api_name="/edit_sliders")

            def api_edit(k):
                client.predict(handle_file(str(image)), f'{{"0": {0.01 * (k % 50 + 1):.2f}}}', "{}",
                               api_name="/edit")

            move_slider(0), api_edit(0)  # warm-up: first-call allocations, the face cache
            result = {"sliders": median_seconds(move_slider, repeats), "edit_api": median_seconds(api_edit, repeats)}
        source = pipe.prepare_source(str(image))
        result["pipeline"] = median_seconds(lambda k: pipe.edit(source, motion_offsets={0: 0.01 * (k + 1)}),
                                            repeats)
    finally:
        demo.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "vox256"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "astronaut.jpg")
    args = parser.parse_args()

    import torch
    from PIL import Image

    width, height = Image.open(args.image).size
    print(f"slider -> image latency, median of {args.repeats}; portrait {args.image.name} {width}x{height}; "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'preset':8s} {'sliders (s)':>12s} {'/edit API (s)':>14s} {'pipeline (s)':>13s}")
    for preset in args.presets:
        r = bench_preset(preset, args.image, args.repeats)
        print(f"{preset:8s} {r['sliders']:12.3f} {r['edit_api']:14.3f} {r['pipeline']:13.3f}")
    print(f"load average {os.getloadavg()[0]:.1f} at end (other work on the machine inflates the times)")


if __name__ == "__main__":
    main()
