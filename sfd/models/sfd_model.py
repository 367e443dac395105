"""The SFD model: semantic facial descriptors over two learned orthonormal bases.

An encoder predicts, for a face, the coefficients of a complete orthonormal basis of the latent
space R^D, split into an identity subspace (D - N directions) and a motion subspace (N directions).
Source identity and driving motion coefficients are recombined into a latent z that the
flow-warping generator decodes over the source's features (see ../shared/DESIGN.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from ..errors import WeightsError
from .encoder import DescriptorEncoder, FeatureEncoder, channel_schedule
from .generator import FlowGenerator
from .layers import EqualLinear

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # diffusers' file names, float32 and the fp16 variant
FP16_WEIGHTS_NAME = "diffusion_pytorch_model.fp16.safetensors"

PRESETS: dict[str, dict] = {
    # Tests and CPU smoke training: 64 px, about 1.75 M parameters.
    "tiny": dict(size=64, latent_dim=128, motion_dim=20, descriptor_size=64, channel_base=1024,
                 max_channels=128, descriptor_channel_base=1024, descriptor_max_channels=128, head_layers=2),
    # The tiny preset's resolution and latent space, four times its channels from 32 px up (about
    # 7.5 M parameters, 15 MiB in float16): grown from trained tiny weights (`sfd.models.widen`,
    # `--widen`), it asks whether capacity, not resolution, is what the tiny generator lacks.
    "wide64": dict(size=64, latent_dim=128, motion_dim=20, descriptor_size=64, channel_base=4096,
                   max_channels=256, descriptor_channel_base=2048, descriptor_max_channels=192, head_layers=2),
    # A demo size for a short GPU run: 128 px, about 8.8 M parameters, so its float16 file stays
    # under 20 MiB and a slider edit stays interactive on a CPU (README, Limitations: 13 clips were
    # too few for it).
    "demo128": dict(size=128, latent_dim=256, motion_dim=20, descriptor_size=128, channel_base=4096,
                    max_channels=256, descriptor_channel_base=2048, descriptor_max_channels=192, head_layers=2),
    # The paper's size: 256 px with LIA-class capacity (about 45 M parameters); descriptors read a
    # 128 px copy of the frame, which makes a driving frame cheap.
    "vox256": dict(size=256, latent_dim=512, motion_dim=20, descriptor_size=128, channel_base=16384,
                   max_channels=512, descriptor_channel_base=16384, descriptor_max_channels=256, head_layers=2),
}


@dataclass
class Descriptors(BaseOutput):
    """What the encoder says about a batch of faces.

    identity: (B, D - N) coefficients of the identity basis.
    motion:   (B, N) coefficients of the motion basis.
    features: the source-side input of the generator, or None when only descriptors were asked
              for: `features[0]` is the image itself, `features[1:]` the feature maps from size/2 to 8.
    """

    identity: torch.Tensor
    motion: torch.Tensor
    features: tuple[torch.Tensor, ...] | None = None

    def select(self, index) -> "Descriptors":
        """The descriptors (and features) of the faces at `index` of the batch."""
        feats = None if self.features is None else tuple(f[index] for f in self.features)
        return Descriptors(identity=self.identity[index], motion=self.motion[index], features=feats)


@dataclass
class ReconstructionOutput(BaseOutput):
    """`image`: the driving frames as reconstructed from the source; plus both sides' descriptors and,
    when asked for, the generator's final backward flow (grid_sample units)."""

    image: torch.Tensor
    source: Descriptors
    driving: Descriptors
    flow: torch.Tensor | None = None


def _mlp(dim: int, out_dim: int, layers: int) -> nn.Sequential:
    return nn.Sequential(*[EqualLinear(dim, dim, activate=True) for _ in range(layers)], EqualLinear(dim, out_dim))


class SFDModel(ModelMixin, ConfigMixin):
    """Encoder, descriptor heads, orthonormal bases and flow-warping generator.

    Images are RGB in [-1, 1], (B, 3, size, size).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        size: int = 256,
        latent_dim: int = 512,
        motion_dim: int = 20,
        descriptor_size: int | None = 128,
        channel_base: int = 16384,
        max_channels: int = 512,
        descriptor_channel_base: int = 16384,
        descriptor_max_channels: int = 512,
        head_layers: int = 2,
        image_warp: bool = True,
    ):
        super().__init__()
        descriptor_size = descriptor_size or size
        for name, value in (("size", size), ("descriptor_size", descriptor_size)):
            if value < 8 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two of at least 8, got {value}")
        if descriptor_size > size:
            raise ValueError(f"descriptor_size ({descriptor_size}) cannot exceed size ({size})")
        if not 0 < motion_dim < latent_dim:
            raise ValueError(f"motion_dim must lie in 1..{latent_dim - 1}, got {motion_dim}")
        identity_dim = latent_dim - motion_dim

        levels = [2 ** i for i in range(2, int(math.log2(size)) + 1)]
        channels = channel_schedule(channel_base, max_channels, levels)
        desc_channels = channel_schedule(descriptor_channel_base, descriptor_max_channels, levels)

        self.feature_encoder = FeatureEncoder(size, channels)
        self.descriptor_encoder = DescriptorEncoder(descriptor_size, desc_channels, latent_dim)
        self.identity_head = _mlp(latent_dim, identity_dim, head_layers)
        self.motion_head = _mlp(latent_dim, motion_dim, head_layers)
        # One D x D matrix; its QR factor Q is the complete orthonormal basis (see `bases`).
        # (Initialised in float32: QR has no half-precision CPU kernel, and loading with
        # torch_dtype=float16 builds the model under a float16 default dtype.)
        self.basis = nn.Parameter(nn.init.orthogonal_(torch.empty(latent_dim, latent_dim, dtype=torch.float32)))
        self.generator = FlowGenerator(size, channels, latent_dim, image_warp=image_warp)
        self._basis_cache: tuple | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SFDModel":
        """A freshly initialised model of a named size: "tiny" (tests, the bundled demo), "demo128" or "vox256"
        (the paper's)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "SFDModel":
        """Load weights from a local folder or a Hub repo id (diffusers/accelerate code path).

        Takes diffusers' arguments (`revision`, `variant="fp16"`, `torch_dtype`, `device_map`, ...).
        Unlike diffusers' default, a file with a missing, unexpected or mis-shaped tensor is an
        error that names the tensors, never a silently re-initialised layer.
        """
        want_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = cls._load_with_info(pretrained_model_name_or_path, kwargs)
        except (ValueError, OSError) as error:  # mis-shaped tensors; a missing folder or unreachable Hub repo
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WeightsError(f"cannot load SFD weights from {pretrained_model_name_or_path}: {first_line}") from error
        problems = []
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            if info.get(kind):
                problems.append(f"{kind.replace('_keys', '')} tensors: {', '.join(map(str, info[kind]))}")
        if problems:
            raise WeightsError(f"SFD weights at {pretrained_model_name_or_path} do not fit the model config: "
                               + "; ".join(problems))
        return (model, info) if want_info else model

    @classmethod
    def _load_with_info(cls, pretrained_model_name_or_path, kwargs: dict):
        kwargs = {"use_safetensors": True, **kwargs}  # never fall back to a pickled .bin file
        folder = Path(os.fspath(pretrained_model_name_or_path)).expanduser() / (kwargs.get("subfolder") or "")
        if (kwargs.get("variant") is None and folder.is_dir() and not (folder / WEIGHTS_NAME).is_file()
                and (folder / FP16_WEIGHTS_NAME).is_file()):
            kwargs["variant"] = "fp16"  # a local folder with only the float16 file: say so up front
        try:
            return super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        except OSError as error:
            if kwargs.get("variant") is not None:
                raise
            # A folder that holds only the float16 variant (`export --fp16-only`, the bundled demo
            # weights) is still these weights: load that file rather than fail.
            try:
                return super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True,
                                               **{**kwargs, "variant": "fp16"})
            except (ValueError, OSError):
                raise error from None

    @property
    def identity_dim(self) -> int:
        return self.config.latent_dim - self.config.motion_dim

    # ------------------------------------------------------------------ bases
    def bases(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(Q_id, Q_m)`: orthonormal bases of the identity (D x (D-N)) and motion (D x N) subspaces.

        `Q, R = qr(W)` with the signs fixed so that diag(R) > 0, which makes Q a unique, smooth
        function of W (a differentiable Gram-Schmidt). Computed in float32 whatever the model's
        dtype; cached while W does not change and no gradient is being recorded.
        """
        w = self.basis
        key = (w._version, w.device, w.dtype)
        if not torch.is_grad_enabled() and self._basis_cache is not None and self._basis_cache[0] == key:
            q = self._basis_cache[1]
        else:
            q, r = torch.linalg.qr(w.float())
            signs = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)
            q = (q * signs).to(w.dtype)
            if not torch.is_grad_enabled():
                self._basis_cache = (key, q)
        m = self.identity_dim
        return q[:, :m], q[:, m:]

    # ------------------------------------------------------------------ encoding
    def encode(self, images: torch.Tensor, with_features: bool = True) -> Descriptors:
        """Descriptors of a batch of faces; with `with_features`, also the source-side pyramid.

        A driving frame needs no features: `with_features=False` skips the full-size trunk, and
        the frames may then be given at `descriptor_size` directly.
        """
        h = self.descriptor_encoder(images)
        features = None
        if with_features:
            features = (images, *self.feature_encoder(images))
        return Descriptors(identity=self.identity_head(h), motion=self.motion_head(h), features=features)

    # ------------------------------------------------------------------ recombination
    def compose(self, identity: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """The latent `z = Q_id identity + Q_m motion`, (B, D)."""
        q_id, q_m = self.bases()
        return identity @ q_id.t() + motion @ q_m.t()

    def transfer_motion(self, source: Descriptors, driving_motion: torch.Tensor,
                        reference_motion: torch.Tensor | None = None) -> torch.Tensor:
        """Latents that give the source face the driving motion.

        Absolute (no reference): `z = Q_id a_id(s) + Q_m a_m(d)`.
        Relative: `z = Q_id a_id(s) + Q_m (a_m(s) + a_m(d) - a_m(d_0))`, where `reference_motion` is
        a_m(d_0); a driving frame equal to the reference gives the source's own latent exactly.
        """
        batch = driving_motion.shape[0]
        identity = source.identity.expand(batch, -1)
        if reference_motion is None:
            return self.compose(identity, driving_motion)
        motion = source.motion.expand(batch, -1) + (driving_motion - reference_motion)
        return self.compose(identity, motion)

    # ------------------------------------------------------------------ decoding
    def generate(self, latent: torch.Tensor, features: tuple[torch.Tensor, ...], return_warp: bool = False):
        """Images (B, 3, size, size) from latents (B, D) and a source's features (batch B or 1).

        With `return_warp`: `(images, flow, image_mask)`, the final flow (grid_sample units) and the
        weight of the warped source image in the output (None without the image-level warp).
        """
        if return_warp:
            return self.generator.decode(latent, features)
        return self.generator(latent, features)

    def forward(self, source: torch.Tensor, driving: torch.Tensor, return_dict: bool = True,
                return_flow: bool = False):
        """Reconstruct the driving frames from the source frames (the training forward).

        `z = Q_id a_id(source) + Q_m a_m(driving)`, decoded over the source's features. With
        `return_flow`, the output also carries the final flow (for the motion losses).
        """
        src = self.encode(source, with_features=True)
        drv = self.encode(driving, with_features=False)
        image, flow, _ = self.generator.decode(self.compose(src.identity, drv.motion), src.features)
        flow = flow if return_flow else None
        if not return_dict:
            return (image, src, drv) if flow is None else (image, src, drv, flow)
        return ReconstructionOutput(image=image, source=src, driving=drv, flow=flow)
