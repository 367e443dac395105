"""GPU check and throughput of the SFD model and of the real training step.

Checks, on the GPU: the model runs in fp32 and under bf16 autocast, the two agree, the bases stay
orthonormal, gradients are finite; then measures reenacted frames per second with the source
cached (batch 1, 8, 32) and the throughput of a plain training step (reconstruction L1, backward,
Adam) at batch 32 in bf16, with peak memory.

    python benchmarks/bench_gpu.py [--preset vox256] [--json out.json]

`--train DATA` measures the training step a lease runs (`sfd.training.lease`): the follow-driver
recipe's losses (region-weighted L1, both read-outs, keypoint flow) with the EMA update, fed by
the device-resident sampler from the packed corpus DATA (``prepare``'s ``corpus.npz``), for tiny,
wide64 and demo128 (fresh weights) at the lease's batch and precision: pairs per second, FLOPs per
pair (forward + backward, `torch.utils.flop_counter`) and the fraction of the chip's dense bf16
peak; with `--channels-last`, wide64 in channels_last memory format too. `--compare-loader CROPS`
(on a CPU) puts the per-sample data path (files read by DataLoader workers, mesh.npz beside the
frames, as before the packed corpus) beside the packed one for the same preset and batch.

    python benchmarks/bench_gpu.py --train .lease/corpus.npz [--device cpu] [--seconds 10]
    python benchmarks/bench_gpu.py --train .lease/corpus.npz --device cpu --compare-loader CROPS --presets tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere


# Dense bf16 tensor throughput from the vendors' data sheets, for the fraction of peak.
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_time(fn, repeats: int) -> float:
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="vox256")
    parser.add_argument("--json", default=None)
    parser.add_argument("--device", default="cuda", help="'cpu' only to dry-run the script itself")
    parser.add_argument("--train", metavar="CORPUS", help="a packed corpus: measure the lease's training step")
    parser.add_argument("--presets", nargs="+", default=["tiny", "wide64", "demo128"])
    parser.add_argument("--batch-size", type=int, default=None, help="default: the lease's")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement")
    parser.add_argument("--compare-loader", metavar="CROPS", help="CPU: crops with mesh.npz, the per-sample path")
    parser.add_argument("--channels-last", action="store_true", help="GPU: also wide64 with channels_last")
    args = parser.parse_args()
    if args.train:
        return train_throughput(args)
    from sfd import SFDModel

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    report: dict = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__, "preset": args.preset}

    model = SFDModel.from_preset(args.preset).to(dev).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():  # wake the zero-initialised flow heads so the comparison means something
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    size = model.config.size
    src = (torch.rand(1, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=torch.channels_last)
    drv = (torch.rand(8, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=torch.channels_last)

    with torch.inference_mode():
        q_id, q_m = model.bases()
        q = torch.cat([q_id, q_m], 1)
        report["basis_orthonormality_error"] = (q.t() @ q - torch.eye(q.shape[1], device=dev)).abs().max().item()
        ref = model.generate(model.transfer_motion(model.encode(src), model.encode(drv, False).motion), model.encode(src).features)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            s = model.encode(src)
            out = model.generate(model.transfer_motion(s, model.encode(drv, False).motion), s.features)
        report["bf16_vs_fp32_mean_abs_diff"] = (out.float() - ref).abs().mean().item()
        report["bf16_finite"] = bool(torch.isfinite(out).all())

    for precision in ("fp32", "bf16"):
        for batch in (1, 8, 32):
            drv_b = (torch.rand(batch, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                cached = model.encode(src)

                def step():
                    d = model.encode(drv_b, with_features=False)
                    return model.generate(model.transfer_motion(cached, d.motion, d.motion), cached.features)

                seconds = cuda_time(step, 10)
            report[f"inference_{precision}_batch{batch}_frames_per_s"] = batch / seconds

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.0, 0.99))
    batch = 32
    s_img = (torch.rand(batch, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=torch.channels_last)
    d_img = (torch.rand(batch, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=torch.channels_last)

    def train_step():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = model(s_img, d_img)
            loss = (out.image.float() - d_img).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loss = train_step()
    report["train_loss_finite"] = bool(torch.isfinite(loss))
    grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    report["train_grads_finite"] = bool(grads_finite)
    seconds = cuda_time(train_step, 5)
    report["train_bf16_batch32_samples_per_s"] = batch / seconds
    if dev.type == "cuda":
        report["train_bf16_batch32_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    with torch.no_grad():
        q_id, q_m = model.bases()
        q = torch.cat([q_id, q_m], 1)
        report["basis_orthonormality_error_after_training_steps"] = (q.t() @ q - torch.eye(q.shape[1], device=dev)).abs().max().item()

    for key, value in report.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


def train_throughput(args) -> None:
    """The lease's training step per preset (module doc), one table."""
    from sfd.training.lease import _carried_aux_weights, _ensure_diffusers

    data = Path(args.train).parent
    _ensure_diffusers(data)
    with _carried_aux_weights(data):
        _train_throughput(args, data)


def _train_throughput(args, data: Path) -> None:
    import tempfile

    from bench_train import _reset_accelerate
    from sfd.training.lease import lease_config
    from sfd.training.trainer import Trainer

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in BF16_PEAK_FLOPS.items() if k in name), None)
    else:
        name, peak = "cpu", None
    plan = [(p, False) for p in args.presets] + ([("wide64", True)] if args.channels_last else [])
    print(f"device: {name}; torch {torch.__version__}")
    print("| path | preset | batch | precision | channels_last | pairs/s | GFLOP/pair | TFLOP/s | of bf16 peak | peak GiB |")
    print("| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    preloaded = None
    with tempfile.TemporaryDirectory() as scratch:
        for preset, channels_last in plan:
            _reset_accelerate()
            config = lease_config(data, 1.0, Path(scratch) / preset, None, preset, False, args.device, args.batch_size)
            config = config.replace(packed_data=args.train, channels_last=channels_last, motion_watch_clips=0,
                                    eval_split=None)
            try:
                trainer = Trainer(config, preloaded=preloaded)
                preloaded = preloaded or trainer.packed
                row = _measure(trainer, args.seconds, cuda)
            except Exception as error:  # one preset failing (memory, say) must not hide the others
                print(f"| packed | {preset} | {config.batch_size} | failed: {type(error).__name__}: {error} |")
                continue
            print(_row("packed", preset, config, row, peak), flush=True)
            del trainer
            if cuda:
                torch.cuda.empty_cache()
        if args.compare_loader:
            for preset in args.presets:
                _reset_accelerate()
                config = lease_config(data, 1.0, Path(scratch) / "loader", None, preset, False, args.device,
                                      args.batch_size).replace(packed_data=None, data_root=args.compare_loader,
                                                               manifest=[str(Path(args.compare_loader) / "manifest.csv")]
                                                               if (Path(args.compare_loader) / "manifest.csv").is_file()
                                                               else None, motion_watch_clips=0, eval_split=None,
                                                               num_workers=1, channels_last=False)
                print(_row("files + workers", preset, config, _measure(Trainer(config), args.seconds, cuda), peak),
                      flush=True)


def _measure(trainer, seconds: float, cuda: bool) -> dict:
    """Pairs per second of batches + training step + EMA update over `seconds`, and FLOPs per pair."""
    from torch.utils.flop_counter import FlopCounterMode

    batches = trainer._batches()
    batch_size = trainer.config.batch_size

    def step() -> None:
        trainer.training_step(next(batches))
        trainer.ema.update(trainer.model)

    for _ in range(3):  # warm-up: kernels chosen, workers started
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
        if steps % 10 == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - start
    return {"pairs_per_second": steps * batch_size / elapsed, "flops_per_pair": counter.get_total_flops() / batch_size,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")}


def _row(path: str, preset: str, config, row: dict, peak: float | None) -> str:
    achieved = row["pairs_per_second"] * row["flops_per_pair"]
    share = f"{100 * achieved / peak:.1f} %" if peak else "-"
    return (f"| {path} | {preset} | {config.batch_size} | {config.mixed_precision} | {config.channels_last} | "
            f"{row['pairs_per_second']:.0f} | {row['flops_per_pair'] / 1e9:.2f} | {achieved / 1e12:.2f} | {share} | "
            f"{row['peak_gib']:.2f} |")


if __name__ == "__main__":
    main()
