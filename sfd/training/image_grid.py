"""Sample grids for TensorBoard and the samples/ folder: one row per pair, source | driving | output."""

from __future__ import annotations

import numpy as np
import torch


def sample_grid(source: torch.Tensor, driving: torch.Tensor, output: torch.Tensor, max_rows: int = 4,
                padding: int = 2) -> np.ndarray:
    """An RGB uint8 (H, W, 3) grid from batches (B, 3, S, S) in [-1, 1]."""
    rows = min(max_rows, source.shape[0])
    columns = [t[:rows].detach().float().cpu() for t in (source, driving, output)]
    size = source.shape[-1]
    cell = size + padding
    grid = torch.ones(3, rows * cell + padding, 3 * cell + padding)  # white lines between cells
    for r in range(rows):
        for c, images in enumerate(columns):
            y, x = padding + r * cell, padding + c * cell
            grid[:, y:y + size, x:x + size] = (images[r].clamp(-1, 1) + 1) / 2
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
