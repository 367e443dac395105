"""`python -m sfd.training.lease`: one prepared command for a GPU lent for minutes.

    python -m sfd.training.lease prepare --corpus CORPUS [--faces FACES] [--from WEIGHTS] --out DIR
    python -m sfd.training.lease run --data DIR --minutes M --out OUT [--from WEIGHTS]
        [--preset wide64|demo128] [--device cpu] [--set KEY=VALUE ...]

`prepare` (here, once): the corpus cropped to 128 px at 6 fps (train with stills, test), packed
into one file (`sfd.data.packed_corpus`), the converted face-mesh weights, a diffusers wheel and,
with ``--from``, a float16 copy of the weights to start from: at most 60 MiB, so the repository
plus DIR travel to the GPU machine together.

`run` (there): from the starting weights (``--from``, else DIR/from, else the bundle; grown with
`sfd.models.widen` when ``--preset`` is wider), train M minutes with the follow-driver recipe on
device-resident data (bf16, fused Adam, batch 256 on a GPU), then write to OUT at most 8 files of
at most 16 MiB: the EMA weights in float32 shards (``weights/``, saved every few minutes as the
run goes, so a run cut short still returns weights), the motion watch of the start and of the
result on every test clip (``report.json``, printed as a table) and the log (``train.log``). It needs only torch,
accelerate, safetensors, huggingface_hub, opencv and numpy, plus the diffusers wheel from DIR.
``--device cpu --minutes 0.5`` is the dry run. ``--set`` changes one recipe setting (a
`TrainingConfig` field), e.g. ``--set cross_identity_weight=2`` for the cross-identity signal.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS_FILE = "corpus.npz"
FROM_FOLDER = "from"
MAX_PREPARED_BYTES = 60 * 2**20
SHARD_SIZE = "15MB"  # under the 16 MiB that a file brought back may have
RECIPE = Path(__file__).resolve().parent / "recipes" / "follow_driver.yaml"
GPU_BATCH, CPU_BATCH = 256, 16
MAX_LEARNING_RATE = 2e-3  # the config default; the largest this project has trained at
CROP_SIZE, CROP_FPS, JPEG_QUALITY = 128, 6, 90
WATCH_FRAMES = 18
HELD_OUT_GLOBS = ("*driving2*", "*d19*")  # the example set's held-out clips (sfd.data.identity_pairs)
log = logging.getLogger("sfd.lease")


# ---------------------------------------------------------------------------- prepare
def prepare(corpus: str | Path, out: str | Path, faces: str | Path | None = None, crops: str | Path | None = None,
            from_weights: str | None = None, wheel: str | Path | None = None, workers: int | None = None) -> dict:
    """Fill `out` with what `run` needs (the module doc); returns a summary. `crops` keeps the crops
    between calls (default: a folder beside `out`), so a second prepare only packs."""
    from sfd.data.packed_corpus import pack_corpus
    from sfd.data.preprocess import preprocess_videos
    from sfd.errors import SFDError
    from sfd.pretrained.files import aux_file

    corpus, out = Path(corpus), Path(out)
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        raise SFDError(f"{corpus} has no manifest.csv: the corpus must say who is who and which split")
    crops = Path(crops) if crops else out.parent / f"{out.name}-crops"
    common = dict(size=CROP_SIZE, fps=CROP_FPS, image_format="jpg", workers=workers or max(1, (os.cpu_count() or 2) - 1),
                  progress=False)
    preprocess_videos(corpus, crops / "train_root", manifest=manifest, only_split="train", stills=True, **common)
    if faces:
        preprocess_videos(faces, crops / "train_root", split_test=0.0, exclude=HELD_OUT_GLOBS, **common)
    preprocess_videos(corpus, crops / "test_root", manifest=manifest, only_split="test", **common)
    out.mkdir(parents=True, exist_ok=True)
    summary = pack_corpus({"train": crops / "train_root", "test": crops / "test_root"}, out / CORPUS_FILE,
                          manifest=manifest, quality=JPEG_QUALITY)
    (out / "aux").mkdir(exist_ok=True)
    shutil.copyfile(aux_file("face_mesh"), out / "aux" / "face_mesh.safetensors")
    if from_weights:
        _half_copy(from_weights, out / FROM_FOLDER)
    for old in out.glob("diffusers-*.whl"):
        old.unlink()
    if wheel:
        shutil.copy(wheel, out)
    else:
        _download_diffusers_wheel(out)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    if total > MAX_PREPARED_BYTES:
        raise SFDError(f"{out} holds {total / 2**20:.1f} MiB, over the {MAX_PREPARED_BYTES / 2**20:.0f} MiB a lease "
                       f"carries: leave out --from or --faces")
    summary["total_bytes"] = total
    (out / "prepared.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _half_copy(weights: str, folder: Path) -> None:
    """A float16 copy of `weights` (half the bytes; training goes on in float32 from it)."""
    import torch

    from sfd.models import SFDModel

    shutil.rmtree(folder, ignore_errors=True)
    SFDModel.from_pretrained(weights, torch_dtype=torch.float32).half().save_pretrained(folder)


def _download_diffusers_wheel(out: Path) -> None:
    from importlib.metadata import version

    from sfd.errors import SFDError

    wanted = f"diffusers=={version('diffusers')}"
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                           "-d", str(out), wanted], capture_output=True, text=True)
    if done.returncode != 0 or not list(out.glob("diffusers-*.whl")):
        raise SFDError(f"could not download the {wanted} wheel ({done.stderr.strip()[-300:]}); give one with --wheel")


# ---------------------------------------------------------------------------- run
def _ensure_diffusers(data: Path) -> None:
    """Make diffusers importable: as installed, else from the wheel `prepare` put in `data`."""
    if importlib.util.find_spec("diffusers") is not None:
        return
    from sfd.errors import SFDError

    wheels = sorted(data.glob("diffusers-*.whl"))
    if not wheels:
        raise SFDError(f"diffusers is not installed and {data} holds no diffusers wheel (prepare puts one there)")
    target = Path(tempfile.mkdtemp(prefix="sfd-lease-site-"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(target), str(wheels[-1])], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()


def lease_config(data: Path, minutes: float, run_dir: Path, start: str | None, preset: str | None, widen: bool,
                 device: str, batch_size: int | None, learning_rate: float | None = None):
    """The recipe's settings with what a lease changes: packed data, batch and learning rate, precision."""
    import torch

    from .config import TrainingConfig

    recipe = TrainingConfig.from_yaml(RECIPE)
    cuda = device.startswith("cuda")
    batch = batch_size or (GPU_BATCH if cuda else CPU_BATCH)
    # Adam's step size grows with the square root of the batch (the gradient noise falls as 1/sqrt).
    learning_rate = learning_rate or min(MAX_LEARNING_RATE, recipe.learning_rate * math.sqrt(batch / recipe.batch_size))
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return recipe.replace(
        packed_data=str(data / CORPUS_FILE), data_root=None, eval_root=None, manifest=None,
        pretrained=start, widen=widen, preset=preset or recipe.preset, batch_size=batch, learning_rate=learning_rate,
        mixed_precision="bf16" if bf16 else "no", cpu=not cuda, max_minutes=minutes,
        max_steps=10**9, log_with=None, output_dir=str(run_dir), checkpoint_interval=10**9,
        checkpoints_total_limit=1, image_interval=10**9, log_interval=100 if cuda else 10,
        eval_interval=2000 if cuda else 10**9, num_workers=0, progress=False)


def _starting_point(data: Path, from_weights: str | None, preset: str | None) -> tuple[str | None, bool, str]:
    """(pretrained weights or None for a fresh model, whether to widen them, what the report says)."""
    from sfd.models import BUNDLED_WEIGHTS, PRESETS, SFDModel
    from sfd.models.widen import FIXED_KEYS

    weights = from_weights or (str(data / FROM_FOLDER) if (data / FROM_FOLDER).is_dir() else str(BUNDLED_WEIGHTS))
    if preset is None:
        return weights, False, weights
    config = dict(SFDModel.load_config(weights))
    if all(config.get(k) == PRESETS[preset].get(k) for k in FIXED_KEYS if k in PRESETS[preset]):
        return weights, True, f"{weights}, grown to {preset}"
    log.warning("%s cannot grow into %s (widening keeps the resolution and the latent space): %s starts "
                "from a fresh initialisation", weights, preset, preset)
    return None, False, f"a fresh {preset}"


def run(data: str | Path, minutes: float, out: str | Path, from_weights: str | None = None,
        preset: str | None = None, device: str | None = None, batch_size: int | None = None,
        learning_rate: float | None = None, save_every_minutes: float = 2.0, settings: dict | None = None) -> dict:
    """Train on a lease and write OUT (the module doc); returns the report. `settings`: recipe settings
    to change (`TrainingConfig` fields, e.g. ``{"cross_identity_weight": 2.0}``)."""
    began = time.perf_counter()
    data, out = Path(data), Path(out)
    _ensure_diffusers(data)
    with _carried_aux_weights(data):
        return _run(data, minutes, out, from_weights, preset, device, batch_size, learning_rate, save_every_minutes,
                    began, settings or {})


@contextlib.contextmanager
def _carried_aux_weights(data: Path):
    """The face-mesh weights `prepare` carried, as the aux folder for the run (unless one is set);
    the setting is undone afterwards, so a caller's later networks are looked up as before."""
    carried = (data / "aux" / "face_mesh.safetensors").is_file() and "SFD_AUX_WEIGHTS" not in os.environ
    if carried:
        os.environ["SFD_AUX_WEIGHTS"] = str(data / "aux")
    try:
        yield
    finally:
        if carried:
            del os.environ["SFD_AUX_WEIGHTS"]


def _run(data: Path, minutes: float, out: Path, from_weights: str | None, preset: str | None, device: str | None,
         batch_size: int | None, learning_rate: float | None, save_every_minutes: float, began: float,
         settings: dict) -> dict:
    import torch

    from .motion_watch import MotionWatch
    from .packed_data import watch_clips
    from .trainer import Trainer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # every batch has the same shapes
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("sfd").addHandler(handler)
    try:
        start, grow, start_text = _starting_point(data, from_weights, preset)
        run_dir = Path(tempfile.mkdtemp(prefix="sfd-lease-run-"))
        config = lease_config(data, minutes, run_dir, start, preset, grow, device, batch_size, learning_rate)
        config = config.replace(**settings)
        trainer = Trainer(config)
        packed = trainer.packed
        # every held-out clip, 18 frames each (the shortest test clips have 18 at 6 fps)
        watch = MotionWatch(watch_clips(packed.corpus, config.eval_split, packed.points, trainer.ema.model.config.size,
                                        clips=len(packed.corpus.clip_name), frames=WATCH_FRAMES),
                            packed.watch.mesh if packed.watch else None)
        setup_seconds = time.perf_counter() - began
        log.info("setup %.1f s; starting from %s; batch %d, learning rate %.2g, %s on %s", setup_seconds, start_text,
                 config.batch_size, config.learning_rate, config.mixed_precision, device)
        before = watch(trainer.ema.model)
        last_save = [time.monotonic()]

        def save_as_we_go(t: Trainer) -> None:
            if time.monotonic() - last_save[0] >= 60 * save_every_minutes:
                _save_weights(t.ema.model, out / "weights")
                last_save[0] = time.monotonic()

        trained = time.perf_counter()
        result = trainer.train(on_step=save_as_we_go)
        train_seconds = time.perf_counter() - trained
        _save_weights(trainer.ema.model, out / "weights")
        after = watch(trainer.ema.model)
        speeds = [h["samples_per_second"] for h in result.history if "samples_per_second" in h]
        report = {"start": start_text, "preset": preset, "device": device, "steps": result.step,
                  "pairs": result.step * config.batch_size, "batch_size": config.batch_size,
                  "learning_rate": config.learning_rate, "mixed_precision": config.mixed_precision,
                  "settings": settings,
                  "setup_seconds": round(setup_seconds, 1), "train_seconds": round(train_seconds, 1),
                  "pairs_per_second": round(result.step * config.batch_size / max(train_seconds, 1e-9), 1),
                  "pairs_per_second_logged_median": float(sorted(speeds)[len(speeds) // 2]) if speeds else None,
                  "watch_clips": len(watch.clips), "watch_before": before, "watch_after": after,
                  "eval_history": result.eval_history, "total_seconds": round(time.perf_counter() - began, 1)}
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        shutil.rmtree(run_dir, ignore_errors=True)
        return report
    finally:
        logging.getLogger("sfd").removeHandler(handler)
        handler.close()


def _save_weights(model, folder: Path) -> None:
    """The EMA weights as float32 shards `from_pretrained` reads, replacing the previous save whole."""
    staging = folder.with_name(folder.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, max_shard_size=SHARD_SIZE)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _report_markdown(report: dict) -> str:
    keys = ("point_error_ratio", "mouth_corr", "mouth_amplitude", "eye_corr", "pose_corr", "driver_sensitivity")
    rows = [f"| {name} | " + " | ".join(f"{report[key].get(k, float('nan')):.3f}" for k in keys) + " |"
            for name, key in (("start", "watch_before"), ("result", "watch_after"))]
    return (f"# Lease run\n\nFrom {report['start']} on {report['device']}: {report['steps']} steps at batch "
            f"{report['batch_size']} ({report['pairs']} pairs, {report['pairs_per_second']:.0f} pairs/s, "
            f"{report['mixed_precision']}), set up in {report['setup_seconds']} s, trained "
            f"{report['train_seconds']} s.\n\nMotion watch, {report['watch_clips']} held-out clips:\n\n"
            f"| weights | " + " | ".join(keys) + " |\n| --- |" + " ---: |" * len(keys) + "\n" + "\n".join(rows) + "\n")


# ---------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    from sfd.errors import SFDError, run_command

    parser = argparse.ArgumentParser(prog="python -m sfd.training.lease", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="crop, pack and gather what a lease carries")
    p.add_argument("--corpus", required=True, help="the talking-heads corpus (with manifest.csv)")
    p.add_argument("--faces", help="the older example set, added to the training split")
    p.add_argument("--out", required=True, help="the folder to fill (carry it to the GPU machine)")
    p.add_argument("--crops", help="where the crops are made and kept (default: OUT-crops)")
    p.add_argument("--from", dest="from_weights", help="weights to start the run from (a float16 copy goes in)")
    p.add_argument("--wheel", help="a diffusers wheel to carry (default: downloaded from PyPI)")
    r = commands.add_parser("run", help="train for M minutes and write OUT")
    r.add_argument("--data", required=True, help="the folder prepare filled")
    r.add_argument("--minutes", type=float, required=True, help="training minutes (setup and export come on top)")
    r.add_argument("--out", required=True, help="where the weights, report and log go")
    r.add_argument("--from", dest="from_weights", help="weights to start from (default: DATA/from, else the bundle)")
    r.add_argument("--preset", choices=("tiny", "wide64", "demo128"), help="grow the start into this model")
    r.add_argument("--device", help="cuda or cpu (default: the GPU when there is one)")
    r.add_argument("--batch-size", type=int, help=f"default {GPU_BATCH} on a GPU, {CPU_BATCH} on a CPU")
    r.add_argument("--learning-rate", type=float, help="default: the recipe's, times sqrt(batch / the recipe's "
                                                       f"batch), at most {MAX_LEARNING_RATE:g}")
    r.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="change one recipe setting (a TrainingConfig field), e.g. cross_identity_weight=2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "prepare":
        return run_command(lambda: json.dumps(prepare(args.corpus, args.out, args.faces, args.crops,
                                                      args.from_weights, args.wheel), indent=2),
                           errors=(SFDError, ValueError))
    return run_command(lambda: _report_markdown(run(args.data, args.minutes, args.out, args.from_weights,
                                                    args.preset, args.device, args.batch_size,
                                                    args.learning_rate, settings=_settings(args.settings))),
                       errors=(SFDError, ValueError))


def _settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings as a dict, each value read as its setting's type (a number, a boolean, a
    list as YAML); SFDError names a key that is no recipe setting or a value that does not fit it."""
    import yaml

    from sfd.errors import SFDError

    from .config import TrainingConfig, field_types

    types = field_types()
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise SFDError(f"--set takes KEY=VALUE with KEY a training setting, got {pair!r}")
        kind = types[key]
        try:
            settings[key] = kind(value) if kind in (int, float, str) else yaml.safe_load(value)
        except ValueError as error:
            raise SFDError(f"--set {key}: {value!r} is not a {kind.__name__} ({error})") from None
    try:
        TrainingConfig(data_root=".").replace(**settings)  # the checks of the settings themselves, now
    except (TypeError, ValueError) as error:
        raise SFDError(f"--set: {error}") from None
    return settings


if __name__ == "__main__":
    sys.exit(main())
