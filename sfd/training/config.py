"""`TrainingConfig`: every setting of a training run, loadable from and saved as YAML."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE = "config.yaml"


@dataclass
class TrainingConfig:
    """Settings of one training run. Defaults follow DESIGN.md ("Training") and LIA where it is silent.

    Loss weights are the lambdas of
    ``L = l1 + perceptual * VGG + adversarial * GAN + identity * |a_id(s) - a_id(d)|^2
    + appearance * |a_m(x) - a_m(jitter(x))|^2``; a weight of 0 switches a term off (and skips its cost).
    """

    # ---- data
    data_root: str | None = None
    train_split: str = "train"
    eval_split: str | None = "test"  # held-out pairs for the eval/l1 curve; None: no evaluation
    output_dir: str = "runs/sfd"
    pairs_per_clip: int = 1  # samples per clip and epoch; raise it for datasets of few clips
    min_frame_gap: int = 0
    augment: bool = True
    flip_prob: float = 0.5
    color_jitter: float = 0.1  # brightness/contrast/saturation strength of the pair augmentation
    frame_cache_mb: int = 512  # decoded video-file clips kept in memory, per data-loader worker
    num_workers: int = 4
    # Pairs per person (IdentityPairDataset) when a manifest names who is who; else pairs per clip.
    manifest: list[str] | None = None  # manifest.csv file(s) of the raw corpus (identity, split per file)
    still_share: float | None = None  # share of items from people with stills only (None: persons uniformly)
    warp_prob: float = 0.0  # chance that a clip's driving frame gets a random similarity warp (stills: always)
    warp_rotation_deg: float = 15.0
    warp_scale: float = 0.1
    warp_shift: float = 0.1
    warp_elastic: float = 0.0  # amplitude of a smooth random displacement on top (0: off)
    eval_root: str | None = None  # held-out crops (eval_root/eval_split); None: data_root
    # A packed corpus file (sfd.data.packed_corpus) instead of data_root/eval_root: frames, mesh points and
    # augmentation on the training device, a batch an index draw (no DataLoader workers, no mesh.npz files).
    packed_data: str | None = None
    motion_watch_clips: int = 4  # held-out clips for the motion-following measures at each evaluation (0: off)

    # ---- model
    preset: str = "vox256"
    model_overrides: dict = field(default_factory=dict)  # SFDModel config keys over the preset's
    pretrained: str | None = None  # start from these SFDModel weights (folder or Hub repo) instead
    widen: bool = False  # with `pretrained`: grow those weights to `preset`'s widths, same function (sfd.models.widen)
    discriminator_channel_base: int | None = None  # None: the model's channel_base
    discriminator_max_channels: int | None = None  # None: the model's max_channels

    # ---- losses
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    adversarial_weight: float = 1.0
    identity_weight: float = 1.0
    appearance_weight: float = 1.0
    perceptual_scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    perceptual_layer_weights: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    perceptual_network: str = "vgg16"  # "vgg16" (converted by `python -m sfd weights fetch-aux`) or "vgg19"
    vgg16_weights: str | None = None  # vgg16_lpips.safetensors, a folder or Hub repo holding it; None: fetch-aux's
    vgg19_weights: str | None = None  # "vgg19" only: a .safetensors file, a folder holding one, or a Hub repo id
    vgg19_weights_filename: str = "vgg19.safetensors"  # the file inside that folder or repo
    appearance_jitter: float = 0.2  # colour jitter strength for the appearance-consistency loss
    # Motion losses (sfd.training.motion_losses), on face-mesh points precomputed beside the frames
    # (`python -m sfd.data.mesh_points`); 0 switches one off.
    keypoint_flow_weight: float = 0.0  # the flow must carry each driver mesh point to the source's
    warp_flow_weight: float = 0.0  # for warped drivers, the flow must equal the warp
    readout_weight: float = 0.0  # a linear read-out from a_m(d) - a_m(s) to the point offsets
    # A second read-out to the non-rigid part alone (the driver's points after a similarity fit to the
    # source's), lips and eyes weighted up: head motion dominates the plain offsets, so without it
    # the motion descriptors of unseen faces carried no mouth opening.
    expression_readout_weight: float = 0.0
    landmark_weight: float = 0.0  # mesh of the output vs the driver's points (runs the mesh network)
    # Another person's source driven by the pair's driver, the flow tied to the source's retargeted
    # points (sfd.training.cross_identity), on this share of each batch.
    cross_identity_weight: float = 0.0
    cross_identity_share: float = 0.5
    region_l1_boost: float = 0.0  # extra L1 weight inside the mouths and eyes (lids included) of driver and source
    mouth_eye_point_weight: float = 5.0  # weight of lip and eye points in the point losses (others: 1)
    eye_point_weight: float | None = None  # the eye points' own weight (None: mouth_eye_point_weight)
    r1_gamma: float = 10.0
    r1_interval: int = 16  # lazy R1: every k-th step, scaled by k

    # ---- optimisation
    learning_rate: float = 2e-3
    discriminator_learning_rate: float | None = None  # None: learning_rate
    adam_betas: tuple[float, float] = (0.0, 0.99)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = None
    batch_size: int = 8  # per process
    gradient_accumulation_steps: int = 1
    max_steps: int = 100_000  # optimizer steps
    max_minutes: float | None = None  # also stop after this much wall time (equal-time comparisons)
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (bf16 recommended on GPUs that have it)
    cpu: bool = False  # train on the CPU even when a GPU is present
    channels_last: bool = False  # NHWC activations (faster convolutions on tensor-core GPUs)
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)): early EMAs are usable
    seed: int = 0

    # ---- logging and checkpoints
    log_with: str | None = "tensorboard"  # an accelerate tracker name, or None
    progress: bool = True  # a progress bar on the terminal
    log_interval: int = 50
    image_interval: int = 500
    eval_interval: int = 1000
    eval_pairs_per_clip: int = 4
    checkpoint_interval: int = 5000
    checkpoints_total_limit: int | None = 3  # oldest checkpoints beyond this are deleted
    resume: str | None = None  # "latest" (newest checkpoint in output_dir) or a checkpoint folder

    def __post_init__(self):
        # YAML and the CLI give lists and ints where tuples and floats are meant.
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        self.perceptual_scales = tuple(float(s) for s in self.perceptual_scales)
        self.perceptual_layer_weights = tuple(float(w) for w in self.perceptual_layer_weights)
        self.model_overrides = dict(self.model_overrides or {})
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.widen and not self.pretrained:
            raise ValueError("widen grows pretrained weights: give pretrained too")
        if len(self.adam_betas) != 2:
            raise ValueError(f"adam_betas takes two numbers, got {self.adam_betas}")
        for name in ("batch_size", "gradient_accumulation_steps", "r1_interval", "log_interval", "image_interval",
                     "eval_interval", "checkpoint_interval", "pairs_per_clip"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("l1_weight", "perceptual_weight", "adversarial_weight", "identity_weight",
                     "appearance_weight", "r1_gamma", "keypoint_flow_weight", "warp_flow_weight", "readout_weight",
                     "expression_readout_weight", "landmark_weight", "region_l1_boost", "cross_identity_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")
        if isinstance(self.manifest, str):
            self.manifest = [self.manifest]
        if self.perceptual_network not in ("vgg16", "vgg19"):
            raise ValueError(f"perceptual_network must be vgg16 or vgg19, got {self.perceptual_network!r}")
        if not 0 < self.cross_identity_share <= 1:
            raise ValueError(f"cross_identity_share must lie in (0, 1], got {self.cross_identity_share}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")

    @property
    def needs_mesh(self) -> bool:
        """Whether a loss reads the frames' precomputed mesh points."""
        return any(w > 0 for w in (self.keypoint_flow_weight, self.readout_weight, self.expression_readout_weight,
                                   self.landmark_weight, self.region_l1_boost, self.cross_identity_weight))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """Plain types only (tuples as lists), as written to YAML."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        """A config from a mapping; an unknown key is an error that names it (typos do not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**values)

    def to_yaml(self, path: str | Path | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainingConfig":
        """Load from a YAML file; keys left out keep their defaults."""
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError("a training config must be a YAML mapping of settings")
        return cls.from_dict(values)

    def replace(self, **changes) -> "TrainingConfig":
        return dataclasses.replace(self, **changes)


def field_types() -> dict[str, type]:
    """Each config field's type with Optional removed (for building CLI flags)."""
    hints = typing.get_type_hints(TrainingConfig)
    out = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in args if a is not type(None))
        out[name] = hint
    return out
