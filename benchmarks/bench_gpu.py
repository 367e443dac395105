"""GPU check and throughput of the SFD model (run where CUDA is available).

Checks, on the GPU: the model runs in fp32 and under bf16 autocast, the two agree, the bases stay
orthonormal, gradients are finite; then measures reenacted frames per second with the source
cached (batch 1, 8, 32) and the throughput of a plain training step (reconstruction L1, backward,
Adam) at batch 32 in bf16, with peak memory.

    python benchmarks/bench_gpu.py [--preset vox256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sfd import SFDModel


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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
