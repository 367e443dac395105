"""Training throughput: samples per second of one full training step, per preset, side by side.

A step is what `sfd.training.Trainer.training_step` does: generator forward and backward with
every loss (L1, VGG19 perceptual with random weights, non-saturating GAN, identity and appearance
consistency), then the discriminator step; lazy R1 runs every 16th step, so its cost is amortised
as (15 plain steps + 1 R1 step) / 16. Batches are random images already on the device, so the
numbers are the model's, not the data loader's.

    python benchmarks/bench_train.py                       # tiny (batch 8) and vox256 (batch 2) on the CPU
    python benchmarks/bench_train.py --steps 5 --skip-cpu  # on a GPU machine: only the CUDA measurement
    python benchmarks/bench_train.py --losses              # the price of each loss of the motion recipe
    python benchmarks/bench_train.py --recipe              # the recipe's step, tiny beside wide64

With CUDA it also measures vox256 in bf16 at batch 32, with the peak GPU memory.

`--losses` measures the tiny preset at batch 16 on the CPU with L1 alone, then with each motion
loss added alone (keypoint flow, warp flow, read-out, region-weighted L1, landmark through the face
mesh, VGG16 perceptual), then the recipe's set, side by side: seconds per step and the extra cost
per sample against L1 alone. It needs `python -m sfd weights fetch-aux` (face mesh, VGG16).

`--recipe` measures the generator step of `sfd/training/recipes/follow_driver.yaml` (its loss
weights as the file gives them) for the tiny preset and the wide64 one grown from it, side by
side at batch 16 on the CPU, and with CUDA at batch 32 on the GPU too: what a larger run costs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _reset_accelerate() -> None:
    """accelerate keeps one global state per process; each measurement wants its own."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _scratch_data(root: Path, size: int) -> None:
    """The trainer wants a data root; two noise clips are enough (batches are made in memory)."""
    from sfd.media import save_image

    rng = np.random.default_rng(0)
    for clip in ("a", "b"):
        for k in range(2):
            save_image(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), root / "train" / clip / f"{k}.png")


def _random_vgg(path: Path) -> None:
    from safetensors.torch import save_file

    from sfd.training import vgg19_features

    save_file({f"features.{k}": v.contiguous() for k, v in vgg19_features(None).state_dict().items()}, str(path))


def measure(preset: str, batch: int, steps: int, device: str, mixed_precision: str, workdir: Path) -> dict:
    """Seconds per plain step and per R1 step, amortised samples/s, and peak memory on CUDA."""
    from sfd.models import PRESETS
    from sfd.training import Trainer, TrainingConfig

    _reset_accelerate()
    size = PRESETS[preset]["size"]
    data = workdir / f"data{size}"
    if not data.exists():
        _scratch_data(data, size)
    vgg = workdir / "vgg19.safetensors"
    if not vgg.exists():
        _random_vgg(vgg)
    config = TrainingConfig(data_root=str(data), eval_split=None, output_dir=str(workdir / "run"), preset=preset,
                            batch_size=batch, pairs_per_clip=batch, num_workers=0, vgg19_weights=str(vgg),
                            perceptual_network="vgg19", log_with=None, mixed_precision=mixed_precision,
                            cpu=device == "cpu", r1_interval=16)
    trainer = Trainer(config)
    dev = trainer.accelerator.device
    gen = torch.Generator().manual_seed(0)
    batch_data = {k: (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(dev)
                  for k in ("source", "driving")}

    def step(r1: bool) -> float:
        trainer.step = 0 if r1 else 1  # the R1 schedule reads the step counter
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with trainer.accelerator.accumulate(trainer.model, trainer.discriminator):
            terms = trainer.training_step(batch_data)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        assert all(torch.isfinite(v) for v in terms.values()), terms
        return time.perf_counter() - start

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step(False)  # warm-up (allocations, kernel selection)
    step(True)
    plain = statistics.median(step(False) for _ in range(steps))
    with_r1 = statistics.median(step(True) for _ in range(max(1, steps // 2)))
    amortised = (15 * plain + with_r1) / 16
    result = {"preset": preset, "device": str(dev), "precision": mixed_precision, "batch": batch,
              "s_per_step": plain, "s_per_r1_step": with_r1, "samples_per_s": batch / amortised}
    if dev.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


LOSS_ROWS = (
    ("L1 alone", {}),
    ("+ keypoint flow", {"keypoint_flow_weight": 2.0}),
    ("+ warp flow", {"warp_flow_weight": 2.0}),
    ("+ read-out", {"readout_weight": 0.05}),
    ("+ region L1", {"region_l1_boost": 4.0}),
    ("+ landmark (mesh)", {"landmark_weight": 1.0}),
    ("+ perceptual VGG16", {"perceptual_weight": 1.0}),
    ("+ read-out and non-rigid read-out", {"readout_weight": 0.05, "expression_readout_weight": 0.05}),
    ("+ both read-outs and keypoint flow",
     {"readout_weight": 0.05, "expression_readout_weight": 0.05, "keypoint_flow_weight": 2.0}),
)


RECIPE = Path(__file__).resolve().parents[1] / "sfd" / "training" / "recipes" / "follow_driver.yaml"
RECIPE_WEIGHTS = ("l1_weight", "perceptual_weight", "adversarial_weight", "identity_weight", "appearance_weight",
                  "readout_weight", "expression_readout_weight", "keypoint_flow_weight", "region_l1_boost")


def recipe_weights() -> dict:
    """The loss weights of the follow-driver recipe file."""
    from sfd.training import TrainingConfig

    recipe = TrainingConfig.from_yaml(RECIPE)
    return {name: getattr(recipe, name) for name in RECIPE_WEIGHTS}


def measure_losses(steps: int, workdir: Path, batch: int = 16, rows=LOSS_ROWS, preset: str = "tiny",
                   device: str = "cpu") -> list[dict]:
    """Seconds per generator step of `preset` for each (label, loss weights) of `rows`."""
    from sfd.training import Trainer, TrainingConfig

    size = 64
    data = workdir / "data64"
    if not data.exists():
        _scratch_data(data, size)
    gen = torch.Generator().manual_seed(0)
    driver_points = torch.rand(batch, 468, 2, generator=gen) * 1.2 - 0.6
    batch_data = {"source": torch.rand(batch, 3, size, size, generator=gen) * 2 - 1,
                  "driving": torch.rand(batch, 3, size, size, generator=gen) * 2 - 1,
                  "source_points": driver_points + 0.02, "driver_points": driver_points,
                  "points_valid": torch.ones(batch, dtype=torch.bool), "is_still": torch.ones(batch, dtype=torch.bool),
                  "warp": torch.eye(2, 3).repeat(batch, 1, 1)}
    results = []
    for label, weights in rows:
        _reset_accelerate()
        config = TrainingConfig(data_root=str(data), eval_split=None, output_dir=str(workdir / "run"), preset=preset,
                                batch_size=batch, pairs_per_clip=batch, num_workers=0, log_with=None,
                                cpu=device == "cpu",
                                **{"perceptual_weight": 0.0, "adversarial_weight": 0.0, "identity_weight": 0.0,
                                   "appearance_weight": 0.0, **weights})
        trainer = Trainer(config)
        dev = trainer.accelerator.device
        on_device = {k: v.to(dev) for k, v in batch_data.items()}

        def timed() -> float:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            terms = trainer.training_step(on_device)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            assert all(torch.isfinite(v) for v in terms.values()), terms
            return time.perf_counter() - start

        timed()  # warm-up
        results.append({"label": label, "preset": preset, "device": str(dev), "batch": batch,
                        "s_per_step": statistics.median(timed() for _ in range(steps))})
    base = results[0]["s_per_step"]
    for row in results:
        row["extra_ms_per_sample"] = 1000 * (row["s_per_step"] - base) / batch
        row["ratio"] = row["s_per_step"] / base
    return results


def measure_recipe(steps: int, workdir: Path) -> list[dict]:
    """The recipe's generator step for tiny and wide64: CPU at batch 16, and CUDA at batch 32 when there."""
    rows = [("follow-driver recipe", recipe_weights())]
    devices = [("cpu", 16)] + ([("cuda", 32)] if torch.cuda.is_available() else [])
    results = []
    for device, batch in devices:
        for preset in ("tiny", "wide64"):
            results += measure_losses(steps, workdir, batch, rows, preset, device)
        tiny = results[-2]["s_per_step"]
        results[-1]["x_tiny"], results[-2]["x_tiny"] = results[-1]["s_per_step"] / tiny, 1.0
    return results


def print_header(what: str) -> None:
    print(f"torch {torch.__version__}; CPU: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after warm-up)")
    parser.add_argument("--tiny-batch", type=int, default=8)
    parser.add_argument("--vox-batch", type=int, default=2)
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA measurement")
    parser.add_argument("--losses", action="store_true", help="the cost of each loss (tiny, batch 16, CPU)")
    parser.add_argument("--recipe", action="store_true", help="the recipe's step, tiny beside wide64")
    args = parser.parse_args()
    if args.recipe:
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure_recipe(args.steps, Path(tmp))
        print_header("the follow-driver recipe, generator step only")
        print(f"{'preset':<8} {'device':<7} {'batch':>5} {'s/step':>8} {'samples/s':>10} {'x tiny':>7}")
        for r in rows:
            print(f"{r['preset']:<8} {r['device']:<7} {r['batch']:>5} {r['s_per_step']:>8.3f} "
                  f"{r['batch'] / r['s_per_step']:>10.1f} {r['x_tiny']:>7.2f}")
        return
    if args.losses:
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure_losses(args.steps, Path(tmp))
        print_header("tiny preset, batch 16, generator step only")
        print(f"{'loss':<42} {'s/step':>8} {'x L1 alone':>10} {'extra ms/sample':>16}")
        for r in rows:
            print(f"{r['label']:<42} {r['s_per_step']:>8.3f} {r['ratio']:>10.2f} {r['extra_ms_per_sample']:>16.1f}")
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_cpu:
            rows.append(measure("tiny", args.tiny_batch, args.steps, "cpu", "no", workdir))
            rows.append(measure("vox256", args.vox_batch, args.steps, "cpu", "no", workdir))
        if torch.cuda.is_available():
            rows.append(measure("vox256", 32, args.steps, "cuda", "bf16", workdir))

    cpu = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}; CPU: {cpu}; GPU: {gpu}")
    print(f"{'preset':<8} {'device':<7} {'precision':<9} {'batch':>5} {'s/step':>8} {'s/R1 step':>10} "
          f"{'samples/s':>10} {'peak GiB':>9}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if "peak_gib" in r else "-"
        print(f"{r['preset']:<8} {r['device']:<7} {r['precision']:<9} {r['batch']:>5} {r['s_per_step']:>8.3f} "
              f"{r['s_per_r1_step']:>10.3f} {r['samples_per_s']:>10.2f} {peak:>9}")


if __name__ == "__main__":
    main()
