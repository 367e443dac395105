"""Batched inference of an evaluation network over uint8 RGB frames."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def map_frames(frames, batch_size: int, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`run` over batches of uint8 RGB frames (N, H, W, 3) or one frame (H, W, 3), under inference_mode.

    Returns the concatenated per-frame results; for a single frame, its result alone.
    """
    frames = np.asarray(frames)
    single = frames.ndim == 3
    if single:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB frames (N, H, W, 3), got {frames.dtype} {frames.shape}")
    with torch.inference_mode():
        out = np.concatenate([run(frames[start:start + batch_size]) for start in range(0, len(frames), batch_size)])
    return out[0] if single else out
