"""`Trainer`: trains an `SFDModel` on pairs of frames of one video, with accelerate.

Each optimizer step does, for a batch of (source s, driving d) pairs (DESIGN.md, "Training"):

1. generator side (D frozen): ``x = G(s, d)`` reconstructs d from s's identity and features and
   d's motion; ``L_G = l1 |x - d| + perceptual VGG16(x, d) + adversarial softplus(-D(x))
   + identity |a_id(s) - a_id(d)|^2 + appearance |a_m(d) - a_m(jitter(d))|^2``;
2. discriminator side: ``softplus(D(x)) + softplus(-D(d))``, plus every `r1_interval` steps the
   lazy R1 penalty ``gamma / 2 * interval * |grad D(d)|^2`` on the same real batch.

It runs as it is on one CPU or GPU, and on several GPUs or nodes under ``accelerate launch``
(DDP), with mixed precision and gradient accumulation from accelerate.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sfd.data import ColorJitter, DriverWarp, FaceVideoDataset, IdentityPairDataset, PairAugmentation
from sfd.data.mesh_points import NUM_POINTS
from sfd.errors import SFDError, WeightsError
from sfd.models import Discriminator, SFDModel, widen
from sfd.pretrained.face_mesh import FaceMesh
from sfd.pretrained.face_mesh_regions import regions_mask
from sfd.pretrained.vgg16 import VGG16PerceptualLoss
from sfd.pretrained.vgg19 import VGG19PerceptualLoss

from .adversarial_loss import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty
from .checkpointing import CheckpointManager
from .cross_identity import cross_identity_keypoint_loss
from .motion_losses import (EXPRESSION_READOUT_FILE, READOUT_FILE, MotionReadout, keypoint_flow_loss, landmark_loss,
                            non_rigid_offsets, point_weights, readout_loss, region_weighted_l1, warp_flow_loss)
from .motion_watch import MotionWatch
from .packed_data import load_packed_data
from .config import CONFIG_FILE, TrainingConfig
from .descriptor_losses import appearance_consistency_loss, identity_consistency_loss
from .ema import ModelEMA
from .evaluation import reconstruction_l1
from .image_grid import sample_grid

log = logging.getLogger("sfd.training")
EXPRESSION_SCALE = 0.01  # a typical non-rigid offset of a lip or lid point, [-1, 1] units


@dataclass
class TrainResult:
    """What a run did.

    step: optimizer steps done (counting those before a resume).
    checkpoint: the last checkpoint written (its ``ema/`` folder holds the weights to use).
    history: per logging interval, the mean of every loss term, with its ``step``.
    eval_history: ``{"step", "l1"}`` of each held-out evaluation (EMA weights), the first before training.
    resumed_from: the checkpoint the run continued from, if any.
    """

    step: int
    output_dir: Path
    checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: Path | None = None


def _tracker_available(name: str | None) -> bool:
    if name != "tensorboard":
        return name is not None
    from accelerate.utils import is_tensorboard_available

    return is_tensorboard_available()


class Trainer:
    """Builds everything a run needs from a `TrainingConfig`; `train()` runs it.

    Attributes of interest to callers and tests: `model`, `discriminator` (as prepared by
    accelerate), `ema`, `generator_optimizer`, `discriminator_optimizer`, `step`, `accelerator`.
    """

    def __init__(self, config: TrainingConfig, preloaded=None):
        """`preloaded`: a `PackedData` of an earlier trainer on the same packed corpus, whose decoded
        frames and mesh points this one uses again (benchmarks of several models)."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if config.data_root is None and config.packed_data is None:
            raise SFDError("no data_root given: the folder with train/ (and test/) clip folders (or packed_data, "
                           "a packed corpus file)")
        self.config = config
        self.output_dir = Path(config.output_dir)
        log_with = config.log_with
        if log_with and not _tracker_available(log_with):
            log.warning("logging to %s is not available (pip install tensorboard); no tracker", log_with)
            log_with = None
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision,
                                       gradient_accumulation_steps=config.gradient_accumulation_steps,
                                       log_with=log_with, project_dir=str(self.output_dir), cpu=config.cpu)
        self.log_with = log_with
        acc = self.accelerator
        set_seed(config.seed)  # the same initial weights on every process

        # ---- models and optimizers
        if config.pretrained:
            model = SFDModel.from_pretrained(config.pretrained)
            if config.widen:
                model = widen(model.float(), config.preset, seed=config.seed, **config.model_overrides)
        else:
            model = SFDModel.from_preset(config.preset, **config.model_overrides)
        mc = model.config
        discriminator = Discriminator(size=mc.size,
                                      channel_base=config.discriminator_channel_base or mc.channel_base,
                                      max_channels=config.discriminator_max_channels or mc.max_channels)
        model.to(acc.device), discriminator.to(acc.device)  # before the optimizers: fused Adam wants them there
        self.ema = ModelEMA(model, config.ema_decay, config.ema_warmup)
        self.ema.model.to(acc.device)
        betas = tuple(config.adam_betas)
        # Fused Adam on a GPU: one kernel for all parameters instead of several per tensor.
        adam = functools.partial(torch.optim.Adam, eps=config.adam_eps, fused=True if acc.device.type == "cuda" else None)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        generator_optimizer = adam(model.parameters(), lr=config.learning_rate, betas=betas)
        # The motion read-out is a training-time head (not exported): its own optimizer, so that the
        # generator's optimizer state keeps the layout of the model's parameters.
        self.readout = self.expression_readout = None
        if config.readout_weight > 0:
            self.readout = MotionReadout(mc.motion_dim, NUM_POINTS).to(acc.device)
            self.readout_optimizer = adam(self.readout.parameters(), lr=1e-3)
        if config.expression_readout_weight > 0:
            self.expression_readout = MotionReadout(mc.motion_dim, NUM_POINTS).to(acc.device)
            self.expression_readout_optimizer = adam(self.expression_readout.parameters(), lr=1e-3)
        discriminator_optimizer = adam(discriminator.parameters(),
                                       lr=config.discriminator_learning_rate or config.learning_rate, betas=betas)

        # ---- losses that hold networks
        self.perceptual = self._perceptual_loss(config)
        if self.perceptual is not None:
            self.perceptual.to(acc.device)
        self.face_mesh = FaceMesh.from_pretrained(device=acc.device) if config.landmark_weight > 0 else None
        self.point_weights = point_weights(config.mouth_eye_point_weight, config.eye_point_weight).to(acc.device)
        self.appearance_jitter = ColorJitter(brightness=config.appearance_jitter, contrast=config.appearance_jitter,
                                             saturation=config.appearance_jitter, hue=config.appearance_jitter / 4)

        # ---- data
        augmentation = None
        if config.augment:
            augmentation = PairAugmentation(flip_prob=config.flip_prob, brightness=config.color_jitter,
                                            contrast=config.color_jitter, saturation=config.color_jitter)
        warp = DriverWarp(rotation_deg=config.warp_rotation_deg, scale=config.warp_scale, shift=config.warp_shift,
                          elastic_amplitude=config.warp_elastic)
        self.packed = self.sampler = self.eval_pairs = self.motion_watch = None
        if config.packed_data:
            # Frames, points and augmentation on the device: a batch is an index draw (packed_data.py).
            self.packed = packed = load_packed_data(config, mc.size, acc.device, augmentation, warp, mesh=self.face_mesh,
                                                    preloaded=preloaded)
            self.sampler, self.eval_pairs, self.motion_watch = packed.train, packed.eval_pairs, packed.watch
            self.sample_generator = torch.Generator(device=acc.device).manual_seed(config.seed + acc.process_index)
            self.train_dataset = self.eval_dataset = loader = None
        else:
            loader = self._data_loader(config, mc.size, augmentation, warp)
            self.eval_dataset = self._eval_dataset(mc.size)
            if config.motion_watch_clips > 0 and config.eval_split:
                watch = MotionWatch.from_folder(config.eval_root or config.data_root, config.eval_split, mc.size,
                                                clips=config.motion_watch_clips)
                self.motion_watch = watch if watch else None

        prepared = acc.prepare(model, discriminator, generator_optimizer, discriminator_optimizer,
                               *([loader] if loader is not None else []))
        self.model, self.discriminator, self.generator_optimizer, self.discriminator_optimizer = prepared[:4]
        self.train_loader = prepared[4] if loader is not None else None
        # With mixed precision accelerate wraps forward() to cast outputs to fp32, which cannot
        # rebuild the model's output dataclasses; every forward here already runs under
        # accelerator.autocast(), so the wrapper is removed (in place, under any DDP wrapper).
        acc.unwrap_model(self.model, keep_fp32_wrapper=False)
        acc.unwrap_model(self.discriminator, keep_fp32_wrapper=False)
        set_seed(config.seed, device_specific=True)  # from here on each process draws its own noise
        self.checkpoints = CheckpointManager(self.output_dir, config.checkpoints_total_limit)
        self.step = 0
        self.epoch = 0
        self.resumed_from: Path | None = None
        self._resume_checked = False
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ set-up helpers
    @staticmethod
    def _perceptual_loss(config: TrainingConfig) -> torch.nn.Module | None:
        """The frozen VGG loss, or None when its weight is 0; WeightsError when its weights are missing."""
        if config.perceptual_weight == 0:
            return None
        kwargs = {"scales": config.perceptual_scales, "layer_weights": config.perceptual_layer_weights}
        if config.perceptual_network == "vgg16":
            try:
                return VGG16PerceptualLoss.from_pretrained(config.vgg16_weights, **kwargs)
            except WeightsError as error:
                raise WeightsError(f"the perceptual loss (perceptual_weight {config.perceptual_weight:g}) needs "
                                   f"VGG16: {error}; or set perceptual_weight 0") from error
        if not config.vgg19_weights:
            raise WeightsError("perceptual_network vgg19 needs vgg19_weights: a .safetensors file, a folder or a Hub "
                               "repo (make one with python -m sfd.pretrained.convert vgg19); the default "
                               "perceptual_network vgg16 needs only `python -m sfd weights fetch-aux`")
        return VGG19PerceptualLoss.from_pretrained(config.vgg19_weights, config.vgg19_weights_filename, **kwargs)

    def _data_loader(self, config: TrainingConfig, size: int, augmentation, warp) -> DataLoader:
        """The per-sample data path: frames read from files in DataLoader workers."""
        if config.manifest or config.warp_prob > 0 or config.needs_mesh:
            self.train_dataset = IdentityPairDataset(
                config.data_root, config.train_split, size=size, manifest=config.manifest,
                augmentation=augmentation, driver_warp=warp, warp_prob=config.warp_prob,
                still_share=config.still_share, pairs_per_identity=config.pairs_per_clip,
                min_frame_gap=config.min_frame_gap, cache_bytes=config.frame_cache_mb * 2**20,
                mesh=config.needs_mesh)
        else:
            self.train_dataset = FaceVideoDataset(config.data_root, config.train_split, size=size,
                                                  augmentation=augmentation, pairs_per_clip=config.pairs_per_clip,
                                                  min_frame_gap=config.min_frame_gap,
                                                  cache_bytes=config.frame_cache_mb * 2**20)
        per_step = config.batch_size * self.accelerator.num_processes
        if len(self.train_dataset) < per_step:
            raise SFDError(f"{len(self.train_dataset)} training pairs cannot fill a batch of {per_step}: "
                           f"raise pairs_per_clip (pairs per clip or per person, now {config.pairs_per_clip}) "
                           f"or lower batch_size")
        return DataLoader(self.train_dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                          num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
                          pin_memory=self.accelerator.device.type == "cuda")

    def _eval_dataset(self, size: int) -> FaceVideoDataset | None:
        split = self.config.eval_split
        if not split:
            return None
        root = self.config.eval_root or self.config.data_root
        if not (Path(root) / split).is_dir():
            log.info("no %s/ split under %s: no held-out evaluation", split, root)
            return None
        return FaceVideoDataset(root, split, size=size, augmentation=None,
                                pairs_per_clip=self.config.eval_pairs_per_clip, seed=self.config.seed,
                                min_frame_gap=self.config.min_frame_gap, cache_bytes=self.config.frame_cache_mb * 2**20)

    @property
    def optimizers(self) -> dict:
        optimizers = {"generator": self.generator_optimizer, "discriminator": self.discriminator_optimizer}
        if self.readout is not None:
            optimizers["readout"] = self.readout_optimizer
        if self.expression_readout is not None:
            optimizers["expression_readout"] = self.expression_readout_optimizer
        return optimizers

    def maybe_resume(self) -> Path | None:
        """Restore the checkpoint `config.resume` names ("latest" or a folder); once per trainer."""
        if self._resume_checked or not self.config.resume:
            return self.resumed_from
        self._resume_checked = True
        if self.config.resume == "latest":
            path = self.checkpoints.latest()
            if path is None:
                log.info("resume: no checkpoint in %s yet, starting from scratch", self.checkpoints.directory)
                return None
        else:
            path = Path(self.config.resume)
        state = self.checkpoints.load(path, self.accelerator, self.model, self.discriminator, self.ema,
                                      self.optimizers)
        from safetensors.torch import load_file

        for head, file in self._readouts():
            head.load_state_dict(load_file(str(path / file), device=str(self.accelerator.device)))
        self.step = int(state["step"])
        self.epoch = int(state.get("epoch", 0))
        self.history = list(state.get("history", []))
        self.eval_history = list(state.get("eval_history", []))
        self.resumed_from = path
        log.info("resumed from %s at step %d", path, self.step)
        return path

    def _batches(self):
        """Batches forever, epoch after epoch (a new shuffle each); drawn on the device from packed data."""
        if self.sampler is not None:
            while True:
                yield self.sampler.sample(self.config.batch_size, self.sample_generator)
        for self.epoch in itertools.count(self.epoch):
            if hasattr(self.train_loader, "set_epoch"):
                self.train_loader.set_epoch(self.epoch)
            yield from self.train_loader

    # ------------------------------------------------------------------ one step
    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Generator then discriminator update on one (micro-)batch; returns the detached loss terms."""
        cfg, acc = self.config, self.accelerator
        source, driving = batch["source"], batch["driving"]
        if cfg.channels_last:
            source, driving = (x.contiguous(memory_format=torch.channels_last) for x in (source, driving))
        generator = acc.unwrap_model(self.model)
        # D is called unwrapped on the generator side: it is frozen there, and bypassing DDP
        # keeps its gradient-sync bookkeeping to the discriminator step alone.
        critic = acc.unwrap_model(self.discriminator)
        terms: dict[str, torch.Tensor] = {}

        # ---- generator side
        self.discriminator.requires_grad_(False)
        with acc.autocast():
            out = self.model(source, driving, return_flow=cfg.keypoint_flow_weight > 0 or cfg.warp_flow_weight > 0)
            image = out.image.float()
            loss = image.new_zeros(())
            if cfg.l1_weight > 0:
                if cfg.region_l1_boost > 0:
                    mask = self._mouth_eye_mask(batch, image.shape[-1])
                    terms["l1"] = region_weighted_l1(image, driving, mask, cfg.region_l1_boost)
                else:
                    terms["l1"] = F.l1_loss(image, driving)
                loss = loss + cfg.l1_weight * terms["l1"]
            loss = loss + self._motion_terms(batch, out, image, terms)
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(image, driving)
                loss = loss + cfg.perceptual_weight * terms["perceptual"]
            if cfg.adversarial_weight > 0:
                terms["adversarial_g"] = generator_adversarial_loss(critic(out.image))
                loss = loss + cfg.adversarial_weight * terms["adversarial_g"]
            if cfg.identity_weight > 0:
                terms["identity"] = identity_consistency_loss(out.source.identity, out.driving.identity)
                loss = loss + cfg.identity_weight * terms["identity"]
            if cfg.appearance_weight > 0 and self.appearance_jitter.enabled:
                # encode() of the unwrapped model joins the same backward as the DDP forward above,
                # so its gradients are summed before DDP syncs them.
                jittered = generator.encode(self.appearance_jitter(driving), with_features=False)
                terms["appearance"] = appearance_consistency_loss(out.driving.motion, jittered.motion)
                loss = loss + cfg.appearance_weight * terms["appearance"]
        terms["generator_total"] = loss
        acc.backward(loss)
        if cfg.max_grad_norm and acc.sync_gradients:
            acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.generator_optimizer.step()
        self.generator_optimizer.zero_grad(set_to_none=True)
        for name in ("readout", "expression_readout"):  # the training-time heads, when on
            optimizer = self.optimizers.get(name)
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        self.discriminator.requires_grad_(True)

        # ---- discriminator side
        if cfg.adversarial_weight > 0:
            apply_r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0
            real = driving.detach().requires_grad_(apply_r1)
            with acc.autocast():
                fake_logits = self.discriminator(out.image.detach())
                real_logits = self.discriminator(real)
                d_loss = discriminator_adversarial_loss(real_logits, fake_logits)
                terms["adversarial_d"] = d_loss.detach()
                terms["d_real"] = real_logits.detach().float().mean()
                terms["d_fake"] = fake_logits.detach().float().mean()
                if apply_r1:
                    # Lazy R1 on the same real batch: one forward serves both terms.
                    terms["r1"] = r1_penalty(real_logits, real)
                    d_loss = d_loss + (cfg.r1_gamma / 2) * cfg.r1_interval * terms["r1"]
            acc.backward(d_loss)
            if cfg.max_grad_norm and acc.sync_gradients:
                acc.clip_grad_norm_(self.discriminator.parameters(), cfg.max_grad_norm)
            self.discriminator_optimizer.step()
            self.discriminator_optimizer.zero_grad(set_to_none=True)

        self._last_sample = (source.detach(), driving.detach(), out.image.detach())
        return {k: v.detach().float() for k, v in terms.items()}

    def _motion_terms(self, batch: dict, out, image: torch.Tensor, terms: dict) -> torch.Tensor:
        """The weighted sum of the motion losses that are switched on; each goes into `terms`."""
        cfg = self.config
        total = image.new_zeros(())
        if cfg.warp_flow_weight > 0:
            # Only drivers that are a pure warp of their source (stills) have a known flow everywhere.
            # (a batch without stills weighs 0 here; no `.any()`, which would wait for the device)
            warped_stills = batch["is_still"].to(image.device)
            terms["warp_flow"] = warp_flow_loss(out.flow, batch["warp"], valid=warped_stills)
            total = total + cfg.warp_flow_weight * terms["warp_flow"]
        if not cfg.needs_mesh:
            return total
        source_points, driver_points = batch["source_points"], batch["driver_points"]
        valid = batch["points_valid"].to(image.device)
        if cfg.keypoint_flow_weight > 0:
            terms["keypoint_flow"] = keypoint_flow_loss(out.flow, source_points, driver_points, self.point_weights, valid)
            total = total + cfg.keypoint_flow_weight * terms["keypoint_flow"]
        if self.readout is not None:
            predicted = self.readout(out.driving.motion - out.source.motion)
            terms["readout"] = readout_loss(predicted, source_points, driver_points, valid=valid)
            total = total + cfg.readout_weight * terms["readout"]
        if self.expression_readout is not None:
            predicted = self.expression_readout(out.driving.motion - out.source.motion)
            terms["expression_readout"] = readout_loss(
                predicted, source_points, driver_points, scale=EXPRESSION_SCALE, valid=valid,
                weights=self.point_weights, target=non_rigid_offsets(source_points, driver_points))
            total = total + cfg.expression_readout_weight * terms["expression_readout"]
        if self.face_mesh is not None:
            terms["landmark"] = landmark_loss(self.face_mesh, image, driver_points, self.point_weights, valid)
            total = total + cfg.landmark_weight * terms["landmark"]
        if cfg.cross_identity_weight > 0:
            count = max(1, round(cfg.cross_identity_share * len(valid)))
            terms["cross_identity"] = cross_identity_keypoint_loss(
                self.accelerator.unwrap_model(self.model), out, batch, count, self.point_weights,
                self.sample_generator if self.sampler is not None else None)
            total = total + cfg.cross_identity_weight * terms["cross_identity"]
        return total

    def _mouth_eye_mask(self, batch: dict, size: int) -> torch.Tensor:
        """(B, 1, size, size): the mouths and eyes (lids included) of the driving and source frames,
        from their mesh points. Both frames, because an output that keeps the source's open mouth or
        eye errs where the source's is; lids, because a closing eye's own contour shrinks to nothing."""
        points = torch.cat([batch["driver_points"], batch["source_points"]])
        pixels = (points + 1) / 2 * size
        both = regions_mask(pixels, ["outer_lips", "left_eye_area", "right_eye_area"], size)  # one batched draw
        mask = torch.maximum(*both.chunk(2))
        return mask * batch["points_valid"].to(mask.dtype)[:, None, None, None]

    # ------------------------------------------------------------------ the loop
    def train(self, on_step=None) -> TrainResult:
        """Run to `max_steps` or `max_minutes`; `on_step(trainer)`, if given, is called after every step
        (e.g. to save weights as the run goes)."""
        cfg, acc = self.config, self.accelerator
        self.maybe_resume()
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(self.output_dir / CONFIG_FILE)
        if self.log_with:
            acc.init_trackers("logs", config=_flat_for_tracker(cfg.to_dict()))
        if self.step == 0:
            self.evaluate()
        self.model.train()
        self.discriminator.train()

        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        started, samples = time.perf_counter(), 0
        last_checkpoint = self.checkpoints.latest() if self.resumed_from else None
        bar = None
        if acc.is_local_main_process and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, unit="step", desc="train", dynamic_ncols=True)
        batches = self._batches()
        deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else float("inf")
        while self.step < cfg.max_steps and time.monotonic() < deadline:
            batch = next(batches)
            with acc.accumulate(self.model, self.discriminator):
                terms = self.training_step(batch)
            for key, value in terms.items():  # summed on the device, read at logging time only
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
            samples += batch["source"].shape[0] * acc.num_processes
            if not acc.sync_gradients:
                continue
            self.step += 1
            self.ema.update(acc.unwrap_model(self.model))
            if bar is not None:
                bar.update(1)
            if self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
                record = self._log_losses(sums, counts, samples / (time.perf_counter() - started))
                sums, counts, started, samples = {}, {}, time.perf_counter(), 0
                if bar is not None:
                    bar.set_postfix({k: f"{record[k]:.3g}" for k in ("l1", "adversarial_g", "adversarial_d")
                                     if k in record}, refresh=False)
            if self.step % cfg.image_interval == 0:
                self._log_samples()
            if self.step % cfg.eval_interval == 0:
                self.evaluate()
            if self.step % cfg.checkpoint_interval == 0:
                last_checkpoint = self.save_checkpoint()
            if on_step is not None:
                on_step(self)
        if bar is not None:
            bar.close()
        if self.eval_history and self.eval_history[-1]["step"] != self.step:
            self.evaluate()
        if last_checkpoint is None or not last_checkpoint.name.endswith(f"{self.step:07d}"):
            last_checkpoint = self.save_checkpoint()
        acc.end_training()
        return TrainResult(step=self.step, output_dir=self.output_dir, checkpoint=last_checkpoint,
                           history=list(self.history), eval_history=list(self.eval_history),
                           resumed_from=self.resumed_from)

    # ------------------------------------------------------------------ logging, evaluation, saving
    def _log_losses(self, sums: dict, counts: dict, samples_per_second: float) -> dict[str, float]:
        acc = self.accelerator
        keys = sorted(sums)
        means = torch.stack([torch.as_tensor(sums[k], device=acc.device).float() / counts[k] for k in keys])
        means = acc.reduce(means, reduction="mean") if acc.num_processes > 1 else means
        record = {k: float(v) for k, v in zip(keys, means.tolist())}
        record["samples_per_second"] = samples_per_second
        acc.log({f"train/{k}": v for k, v in record.items()}, step=self.step)
        self.history.append({"step": self.step, **record})
        bad = [k for k, v in record.items() if not math.isfinite(v)]
        if bad:
            log.warning("step %d: non-finite loss terms %s", self.step, ", ".join(bad))
        return record

    def _log_samples(self) -> None:
        acc = self.accelerator
        if not acc.is_main_process or getattr(self, "_last_sample", None) is None:
            return
        grid = sample_grid(*self._last_sample)
        from sfd.media import save_image

        save_image(grid, self.output_dir / "samples" / f"step-{self.step:07d}.png")
        if self.log_with == "tensorboard":
            writer = acc.get_tracker("tensorboard", unwrap=True)
            writer.add_image("samples/source|driving|output", grid, self.step, dataformats="HWC")

    def evaluate(self) -> float | None:
        """Held-out reconstruction L1 of the EMA weights (main process; None without a test split)."""
        acc = self.accelerator
        pairs = self.eval_pairs if self.eval_pairs is not None else self.eval_dataset
        if pairs is None:
            return None
        value = None
        if acc.is_main_process:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.mixed_precision)
            value = reconstruction_l1(self.ema.model, pairs, batch_size=self.config.batch_size,
                                      device=acc.device, autocast_dtype=dtype)
            record = {"l1": value}
            if self.motion_watch is not None:
                record.update(self.motion_watch(self.ema.model))
            self.eval_history.append({"step": self.step, **record})
            acc.log({f"eval/{k}": v for k, v in record.items()}, step=self.step)
            log.info("step %d: held-out %s", self.step, ", ".join(f"{k} {v:.4f}" for k, v in record.items()))
        acc.wait_for_everyone()
        return value

    def _readouts(self) -> list[tuple[MotionReadout, str]]:
        """The training-time read-out heads that are on, with the checkpoint file each lives in."""
        heads = ((self.readout, READOUT_FILE), (self.expression_readout, EXPRESSION_READOUT_FILE))
        return [(head, file) for head, file in heads if head is not None]

    def save_checkpoint(self) -> Path:
        path = self.checkpoints.save(self.step, self.accelerator, self.model, self.discriminator, self.ema,
                                     self.optimizers, extra={"epoch": self.epoch, "history": self.history,
                                                             "eval_history": self.eval_history})
        if self.accelerator.is_main_process:
            from safetensors.torch import save_file

            for head, file in self._readouts():
                save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(path / file))
            log.info("saved %s", path)
        return path


def _flat_for_tracker(values: dict) -> dict:
    """TensorBoard's hparams take numbers, strings and bools only."""
    out = {}
    for key, value in values.items():
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def train(config: TrainingConfig) -> TrainResult:
    """Train with `config` (resuming when `config.resume` says so) and return what was done."""
    return Trainer(config).train()
