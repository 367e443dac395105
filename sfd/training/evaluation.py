"""Reconstruction error on held-out pairs: the number that says whether training helps."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def reconstruction_l1(model, dataset: Dataset | list[dict], batch_size: int = 8, device: torch.device | str | None = None,
                      autocast_dtype: torch.dtype | None = None) -> float:
    """Mean L1 (on [0, 1] intensities, as in the FOMM/LIA protocol) between driving frames and
    their reconstructions from the source frames, over every pair of `dataset`.

    Use a dataset with a fixed `seed` so that every call sees the same pairs; a list holds ready
    batches (``source``, ``driving``), e.g. `DevicePairSampler.fixed_pairs`.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    batches = dataset if isinstance(dataset, list) else DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                                   num_workers=0)
    for batch in batches:
        source, driving = batch["source"].to(device), batch["driving"].to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            image = model(source, driving).image
        total += (image.float() - driving).abs().mean(dim=(1, 2, 3)).sum().item() / 2
        count += source.shape[0]
    model.train(was_training)
    return total / max(count, 1)
