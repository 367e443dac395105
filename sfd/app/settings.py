"""`AppSettings`: everything an operator can set for the demo app, read from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: Environment variables the app reads, with what they mean (shown by `AppSettings.help()`).
ENVIRONMENT = {
    "SFD_WEIGHTS": "Hub repo id or local folder of SFD weights (default: the bundled default)",
    "SFD_REVISION": "Hub revision (branch, tag or commit) of SFD_WEIGHTS",
    "SFD_DEVICE": "torch device, e.g. cpu or cuda (default: cuda when available)",
    "SFD_MAX_SECONDS": "longest video accepted, in seconds (default 60)",
    "SFD_MAX_FILE_SIZE": "largest upload, as Gradio reads it, e.g. 50mb (default 50mb)",
    "SFD_CONCURRENCY": "how many requests run at once (default 2; videos run one at a time)",
    "SFD_QUEUE_SIZE": "how many requests may wait in the queue (default 32)",
    "SFD_IDENTITY_SLIDERS": "how many identity coefficients get a slider (default 10)",
    "SFD_CACHE_SECONDS": "age after which request outputs are deleted (default 3600)",
    "SFD_MCP": "1 to also serve the app as an MCP server (needs gradio[mcp])",
    "SFD_EXAMPLES_DIR": "folder of the example media (default: examples/ of the repository)",
}


def _number(env: Mapping[str, str], name: str, default: float, kind=float, minimum: float = 0):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppSettings:
    """The app's knobs; `from_env()` reads them from the SFD_* environment variables."""

    weights: str | None = None
    revision: str | None = None
    device: str | None = None
    max_seconds: float = 60.0
    max_file_size: str = "50mb"
    concurrency: int = 2
    queue_size: int = 32
    identity_sliders: int = 10
    cache_seconds: int = 3600
    mcp: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AppSettings":
        """Settings from `env` (default: os.environ); a malformed value is a ValueError naming it."""
        env = os.environ if env is None else env
        return cls(
            weights=env.get("SFD_WEIGHTS", "").strip() or None,
            revision=env.get("SFD_REVISION", "").strip() or None,
            device=env.get("SFD_DEVICE", "").strip() or None,
            max_seconds=_number(env, "SFD_MAX_SECONDS", cls.max_seconds, float, minimum=0.1),
            max_file_size=env.get("SFD_MAX_FILE_SIZE", "").strip() or cls.max_file_size,
            concurrency=_number(env, "SFD_CONCURRENCY", cls.concurrency, int, minimum=1),
            queue_size=_number(env, "SFD_QUEUE_SIZE", cls.queue_size, int, minimum=1),
            identity_sliders=_number(env, "SFD_IDENTITY_SLIDERS", cls.identity_sliders, int, minimum=0),
            cache_seconds=_number(env, "SFD_CACHE_SECONDS", cls.cache_seconds, int, minimum=60),
            mcp=_flag(env, "SFD_MCP"),
        )

    @staticmethod
    def help() -> str:
        return "\n".join(f"{name}: {meaning}" for name, meaning in ENVIRONMENT.items())
