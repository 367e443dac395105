"""Model speed on this machine: seconds per reenacted frame, FLOPs, and efficiency.

Prints, for a preset (vox256 by default) at its full size, measured side by side in one run:
  - this machine's own fp32 3x3-convolution throughput (the reference for "efficiency");
  - seconds per frame with the source cached (driving descriptors + compose + generate), batch 1 and 8;
  - seconds per frame when the source is re-encoded for every frame (what LIA's demo does);
  - the GFLOP of one frame (torch.utils.flop_counter) and the achieved GFLOP/s;
  - the same with the default contiguous memory layout, to show what channels_last buys.

    python benchmarks/bench_model.py [--preset vox256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sfd import SFDModel


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_throughput(repeats: int) -> float:
    """GFLOP/s of plain fp32 3x3 convolutions of the shapes the model runs (channels_last)."""
    rates = []
    for channels, side, batch in [(512, 32, 4), (256, 64, 2), (128, 128, 1), (64, 256, 1)]:
        x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)
        seconds = timed(lambda: F.conv2d(x, w, padding=1), repeats)
        rates.append(2 * channels * channels * 9 * side * side * batch / seconds / 1e9)
    return statistics.median(rates)


def frame_flops(model: SFDModel, source: torch.Tensor, driving: torch.Tensor, reencode: bool) -> float:
    # Counted with autograd on (FlopCounterMode's module tracker does not run under inference_mode).
    src = model.encode(source)
    with FlopCounterMode(display=False) as counter:
        if reencode:
            src = model.encode(source)
        drv = model.encode(driving, with_features=False)
        model.generate(model.transfer_motion(src, drv.motion, drv.motion), src.features)
    return counter.get_total_flops() / driving.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vox256")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    peak = conv_throughput(args.repeats)
    print(f"fp32 3x3 conv throughput (channels_last): {peak:.1f} GFLOP/s")

    model = SFDModel.from_preset(args.preset).eval()
    size = model.config.size
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"preset {args.preset}: {size}x{size}, descriptors from {model.config.descriptor_size}px, {params:.1f} M parameters")

    source = torch.rand(1, 3, size, size) * 2 - 1
    rows = []
    for layout in ("channels_last", "contiguous"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model = model.to(memory_format=fmt)
        for batch, reencode in ((1, False), (8, False), (1, True)):
            driving = (torch.rand(batch, 3, size, size) * 2 - 1).contiguous(memory_format=fmt)
            src_in = source.contiguous(memory_format=fmt)
            flops = frame_flops(model, src_in, driving, reencode)
            with torch.inference_mode():
                cached = model.encode(src_in)

                def step():
                    src = model.encode(src_in) if reencode else cached
                    drv = model.encode(driving, with_features=False)
                    return model.generate(model.transfer_motion(src, drv.motion, drv.motion), src.features)

                per_frame = timed(step, args.repeats) / batch
            rows.append((layout, batch, reencode, per_frame, flops))

    print()
    print(f"{'layout':<14} {'batch':>5} {'source':<10} {'s/frame':>8} {'GFLOP/frame':>12} {'GFLOP/s':>8} {'of conv peak':>12}")
    for layout, batch, reencode, per_frame, flops in rows:
        rate = flops / per_frame / 1e9
        print(f"{layout:<14} {batch:>5} {'re-encoded' if reencode else 'cached':<10} {per_frame:>8.3f} "
              f"{flops / 1e9:>12.1f} {rate:>8.1f} {rate / peak:>11.0%}")
    best = {(l, b, r): t for l, b, r, t, _ in rows}
    cached1 = best[("channels_last", 1, False)]
    print()
    print(f"caching the source: {best[('channels_last', 1, True)] / cached1:.2f}x faster per frame (batch 1)")
    print(f"channels_last vs contiguous: {best[('contiguous', 1, False)] / cached1:.2f}x (batch 1, cached)")
    print(f"LIA's published demo on this 2-core CPU: about 1.7 s/frame (DESIGN.md); here {cached1:.3f} s/frame "
          f"= {1.7 / cached1:.1f}x faster")


if __name__ == "__main__":
    main()
