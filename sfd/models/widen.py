"""Widen a trained SFD model into a wider one that computes exactly the same function.

Why: at 64 px the tiny preset has levelled off on the test people (README, Limitations): its
eyes do not follow. The next question is whether more channels let the generator draw a closing
lid. Training a wider model from scratch would spend a whole short GPU lease re-learning what the
bundle already knows (descriptors that carry motion, flows that move the face), so the wider model
starts as the bundle and only has to learn what the extra channels add.

How, layer by layer: every weight of the wide model keeps the narrow one in its leading block;
the weights from a new input channel to an old output channel are zero, so old channels never see
new ones; new output channels keep their random initialisation (they are read by nobody yet and
start learning as soon as the zero weights that read them move). Layers with an equalised
learning rate scale their weights by 1 / sqrt(fan-in) at run time, so the copied block is
multiplied by sqrt(wide fan-in / narrow fan-in) to keep the same effective weight. Demodulated
convolutions are unchanged by that factor (demodulation divides it out) and by the zero block
(it adds nothing to the norm). The latent space, the bases and the descriptor heads must be the
same size in both models: only channel widths may grow.
"""

from __future__ import annotations

import math

import torch

from .sfd_model import PRESETS, SFDModel

# Config keys that fix the latent space or the resolution: widening must not change them.
FIXED_KEYS = ("size", "latent_dim", "motion_dim", "descriptor_size", "head_layers", "image_warp")


def widen(model: SFDModel, preset: str | None = None, seed: int = 0, **overrides) -> SFDModel:
    """A model of `preset`'s widths (and/or `overrides`) whose outputs equal `model`'s.

    Raises ValueError when the target changes a fixed key (FIXED_KEYS) or narrows any tensor.
    The new channels' random initialisation comes from `seed`.
    """
    config = dict(model.config)
    target = {**config, **(PRESETS[preset] if preset else {}), **overrides}
    changed = [k for k in FIXED_KEYS if target.get(k) != config.get(k)]
    if changed:
        raise ValueError("widening keeps the resolution and the latent space; the target changes "
                         + ", ".join(f"{k} ({config.get(k)} -> {target.get(k)})" for k in changed))
    wide_config = {k: v for k, v in target.items() if not k.startswith("_")}  # without diffusers' own keys
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = SFDModel(**wide_config)
    narrow_state = model.state_dict()
    wide_state = wide.state_dict()
    for name, tensor in wide_state.items():
        small = narrow_state[name].to(tensor.dtype)
        if small.dim() != tensor.dim() or any(s > w for s, w in zip(small.shape, tensor.shape)):
            raise ValueError(f"{name}: the target {tuple(tensor.shape)} is narrower than {tuple(small.shape)}")
        block = tuple(slice(0, s) for s in small.shape)
        if name.endswith("weight") and small.dim() >= 2 and tensor.shape[1] > small.shape[1]:
            # Equalised layers scale by 1/sqrt(fan-in); kernels are the same size, so the ratio
            # of the input channels is the ratio of the fan-ins.
            tensor[block] = small * math.sqrt(tensor.shape[1] / small.shape[1])
            tensor[(slice(0, small.shape[0]), slice(small.shape[1], None))] = 0
        else:
            tensor[block] = small
    wide.load_state_dict(wide_state)
    return wide.to(next(model.parameters()).device)
