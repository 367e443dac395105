"""Training: the losses, checkpoints, config, and a real smoke run of the tiny preset with resume.

The smoke run trains on frame folders made here from three shared clips (../shared/data/faces, by
path) and is judged on held-out frames of the same clips. It goes through the real accelerate
path on the CPU, without mixed precision. The perceptual loss is off in the long run: on this
2-core CPU VGG costs several times the rest of a 64 px step; `test_cli_run_with_perceptual_loss`
runs the default one (ImageNet VGG16, converted by `python -m sfd weights fetch-aux`, which CI
runs first) for a few steps through the command line instead.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from sfd.data import VideoFileClip
from sfd.media import save_image
from sfd.models import SFDModel
from sfd.pretrained.files import aux_file
from sfd.training import (CheckpointManager, ModelEMA, Trainer, TrainingConfig, VGG16PerceptualLoss,
                          VGG19PerceptualLoss, appearance_consistency_loss, discriminator_adversarial_loss,
                          generator_adversarial_loss, identity_consistency_loss, main, r1_penalty, reconstruction_l1,
                          vgg19_features)
from sfd.training.checkpointing import flatten_optimizer_state, unflatten_optimizer_state
from sfd.training.cli import build_parser, config_from_args
from sfd.pretrained.vgg19 import convert_vgg19

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"  # as conftest's faces_dir
SIZE = 64  # the tiny preset's
CLIPS = ("driving1.mp4", "driving2.mp4", "driving3.mov")
FIRST_RUN_STEPS = 200
RESUMED_STEPS = 30


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps process-wide state; each trainer here starts from a clean one."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """train/ and test/ frame folders of three shared clips: every 2nd frame (at most 150), the
    first 80% for training, the last 20% held out."""
    if not FACES.is_dir():
        pytest.skip(f"shared face data not found at {FACES}")
    root = tmp_path_factory.mktemp("smoke_data")
    for name in CLIPS:
        frames = VideoFileClip(FACES / "lia-vox" / name, SIZE).decode_all()[::2][:150]
        cut = int(len(frames) * 0.8)
        for split, part in (("train", frames[:cut]), ("test", frames[cut:])):
            for k, frame in enumerate(part):
                save_image(frame, root / split / name / f"{k:05d}.png")
    return root


def _has_tensorboard() -> bool:
    from accelerate.utils import is_tensorboard_available

    return is_tensorboard_available()


def smoke_config(data_root, output_dir, **changes) -> TrainingConfig:
    values = dict(data_root=str(data_root), output_dir=str(output_dir), preset="tiny", batch_size=8,
                  max_steps=FIRST_RUN_STEPS, pairs_per_clip=50, num_workers=0,
                  # Pairs at least 15 frames (1-3 s) apart carry enough motion to learn from in a
                  # few hundred steps; the held-out pairs (16 per clip) use the same gap.
                  min_frame_gap=15, eval_pairs_per_clip=16,
                  perceptual_weight=0.0,  # see the module doc
                  adversarial_weight=1.0, r1_gamma=10.0, r1_interval=4,
                  log_interval=20, image_interval=100, eval_interval=100, checkpoint_interval=100,
                  log_with="tensorboard" if _has_tensorboard() else None, seed=0)
    values.update(changes)
    return TrainingConfig(**values)


@pytest.fixture(scope="module")
def first_run(smoke_data, tmp_path_factory):
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    torch.manual_seed(0)
    config = smoke_config(smoke_data, tmp_path_factory.mktemp("run"))
    trainer = Trainer(config)
    result = trainer.train()
    return trainer, result


# --------------------------------------------------------------------------- the smoke run
def test_smoke_run_trains_every_loss_finite_and_heldout_error_falls(first_run):
    trainer, result = first_run
    assert result.step == FIRST_RUN_STEPS
    assert [h["step"] for h in result.history] == list(range(20, FIRST_RUN_STEPS + 1, 20))
    expected = {"l1", "adversarial_g", "identity", "appearance", "generator_total", "adversarial_d", "r1",
                "d_real", "d_fake", "samples_per_second"}
    for record in result.history:
        assert expected <= set(record), record
        assert all(math.isfinite(v) for v in record.values()), record
    assert any(record["r1"] > 0 for record in result.history)

    evals = result.eval_history
    assert [e["step"] for e in evals] == [0, 100, 200]
    # The untrained model reproduces the source (DESIGN.md 5.): the do-nothing baseline. Training
    # must beat it on frames it never saw.
    assert evals[-1]["l1"] < evals[0]["l1"], evals

    # What the run leaves behind.
    ckpt = result.checkpoint
    assert ckpt.name == f"checkpoint-{FIRST_RUN_STEPS:07d}"
    for part in ("model", "ema", "discriminator"):
        assert (ckpt / part / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(ckpt.rglob("*.bin")) and not list(ckpt.rglob("*.pkl"))  # nothing pickled
    out = result.output_dir
    assert TrainingConfig.from_yaml(out / "config.yaml") == trainer.config
    assert (out / "samples" / "step-0000100.png").is_file()
    if trainer.config.log_with:
        assert list((out / "logs").rglob("events.out.tfevents.*"))

    # The EMA weights load as an ordinary model and reconstruct as well as the trainer measured.
    ema = SFDModel.from_pretrained(ckpt / "ema")
    assert reconstruction_l1(ema, trainer.eval_dataset) == pytest.approx(evals[-1]["l1"], abs=1e-5)


def test_resume_restores_step_weights_and_optimizer_state_and_continues(first_run, smoke_data):
    first, result = first_run
    config = first.config.replace(max_steps=FIRST_RUN_STEPS + RESUMED_STEPS, resume="latest")
    trainer = Trainer(config)
    assert trainer.maybe_resume() == result.checkpoint
    assert trainer.step == FIRST_RUN_STEPS
    assert trainer.ema.updates == first.ema.updates == FIRST_RUN_STEPS

    # Optimizer state: every Adam moment of both optimizers, exactly as the first run left it.
    for name in ("generator_optimizer", "discriminator_optimizer"):
        before = getattr(first, name).state_dict()["state"]
        after = getattr(trainer, name).state_dict()["state"]
        assert before.keys() == after.keys() and len(after) > 0
        for index in before:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(before[index][key], after[index][key]), (name, index, key)
    for a, b in zip(first.model.parameters(), trainer.model.parameters()):
        assert torch.equal(a, b)
    # The EMA carries on from where it was: held-out error as at the end of run 1, not as at step 0.
    resumed_l1 = reconstruction_l1(trainer.ema.model, trainer.eval_dataset)
    assert resumed_l1 == pytest.approx(result.eval_history[-1]["l1"], abs=1e-6)
    assert resumed_l1 != pytest.approx(result.eval_history[0]["l1"], abs=1e-6)

    resumed = trainer.train()
    assert resumed.step == FIRST_RUN_STEPS + RESUMED_STEPS
    assert resumed.resumed_from == result.checkpoint
    assert resumed.history[: len(result.history)] == result.history  # the log continues
    new = resumed.history[len(result.history):]
    assert [h["step"] for h in new] == [220, 230]
    assert all(math.isfinite(v) for h in new for v in h.values())
    assert resumed.eval_history[0]["step"] == 0 and resumed.eval_history[-1]["step"] == 230
    assert resumed.checkpoint.name == "checkpoint-0000230"
    # Oldest checkpoints beyond the limit are pruned.
    assert len(CheckpointManager(config.output_dir).checkpoints()) <= config.checkpoints_total_limit


def test_cli_run_with_perceptual_loss_accumulation_and_no_image_warp(smoke_data, tmp_path):
    aux_file("vgg16")  # the default perceptual network, converted by `python -m sfd weights fetch-aux`
    out = tmp_path / "run"
    code = main(["--data-root", str(smoke_data), "--output-dir", str(out), "--preset", "tiny", "--max-steps", "3",
                 "--batch-size", "4", "--pairs-per-clip", "8", "--num-workers", "0",
                 "--perceptual-weight", "1", "--gradient-accumulation-steps", "2", "--r1-interval", "2",
                 "--log-interval", "1", "--eval-split", "none", "--log-with", "none", "--model", "image_warp=false"])
    assert code == 0
    state = json.loads((out / "checkpoints" / "checkpoint-0000003" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["history"]] == [1, 2, 3]
    for record in state["history"]:
        assert record["perceptual"] > 0 and all(math.isfinite(v) for v in record.values())
    config = json.loads((out / "checkpoints" / "checkpoint-0000003" / "model" / "config.json").read_text())
    assert config["image_warp"] is False


def test_both_read_outs_train_and_resume_from_their_checkpoint_files(smoke_data, tmp_path, capsys):
    """The motion read-out and its non-rigid twin learn from the frames' mesh points, are saved
    beside the checkpoint and come back exactly on resume."""
    from sfd.data.mesh_points import cache_meshes
    from sfd.training.trainer import EXPRESSION_READOUT_FILE, READOUT_FILE

    data = tmp_path / "data"
    shutil.copytree(smoke_data / "train", data / "train")
    cache_meshes(data, ["train"], log=lambda *a: None)
    config = smoke_config(data, tmp_path / "run", max_steps=6, batch_size=4, adversarial_weight=0.0,
                          readout_weight=0.05, expression_readout_weight=0.05, eval_split=None,
                          log_interval=1, checkpoint_interval=6, log_with=None, min_frame_gap=0)
    first = Trainer(config)
    result = first.train()
    assert all(h["readout"] > 0 and h["expression_readout"] > 0 and math.isfinite(h["expression_readout"])
               for h in result.history)
    for file in (READOUT_FILE, EXPRESSION_READOUT_FILE):
        assert (result.checkpoint / file).is_file()
    assert first.expression_readout.linear.weight.abs().sum() > 0  # it learned something
    resumed = Trainer(config.replace(max_steps=8, resume="latest"))
    assert resumed.maybe_resume() == result.checkpoint
    for name in ("readout", "expression_readout"):
        for a, b in zip(getattr(first, name).parameters(), getattr(resumed, name).parameters()):
            assert torch.equal(a, b)
    assert resumed.train().step == 8

    # `motion_watch --readout` reads both heads of the checkpoint back and scores them.
    from sfd.training import motion_watch

    assert motion_watch.main([str(data), str(result.checkpoint), "--split", "train", "--clips", "2",
                              "--frames", "8", "--readout"]) == 0
    printed = capsys.readouterr().out
    readouts = printed.split("Read-outs from the motion descriptors")[1]
    rows = [line for line in readouts.splitlines() if line.startswith(f"| {result.checkpoint} | ")]
    assert [row.split(" | ")[1] for row in rows] == ["readout", "expression_readout"]
    for row in rows:
        values = [float(v) for v in row.strip(" |").split(" | ")[2:]]
        assert len(values) == 4 and all(math.isnan(v) or -1 <= v <= 1 for v in values)


def test_region_l1_weighs_the_mouths_and_eyes_of_both_frames(smoke_data, tmp_path):
    """`region_l1_boost`: the weighted region is the union of the driver's and the source's mouths and
    eye areas, so an output that keeps the source's open mouth is charged where that mouth is."""
    from sfd.pretrained.face_mesh_regions import eyes_mask, mouth_mask

    config = smoke_config(smoke_data, tmp_path / "run", region_l1_boost=4.0, eval_split=None, log_with=None)
    trainer = Trainer(config)
    size = 32
    base = torch.rand(1, 468, 3) * 0.6 - 0.3
    moved = base.clone()
    moved[..., 1] += 0.5  # the source's face lies lower in the crop than the driver's
    batch = {"driver_points": base, "source_points": moved, "points_valid": torch.tensor([True])}
    mask = trainer._mouth_eye_mask(batch, size)
    for points in (base, moved):
        pixels = (points + 1) / 2 * size
        region = torch.maximum(mouth_mask(pixels, size), eyes_mask(pixels, size, with_lids=True))
        assert region.sum() > 0 and torch.equal(mask * region, region)  # each frame's regions are inside
    assert mask.sum() > trainer._mouth_eye_mask({**batch, "source_points": base}, size).sum()
    assert trainer._mouth_eye_mask({**batch, "points_valid": torch.tensor([False])}, size).sum() == 0


def test_widen_grows_the_pretrained_weights_to_the_presets_widths(smoke_data, tmp_path):
    """`--pretrained W --preset P --widen`: training starts from W's function with P's channels."""
    torch.manual_seed(0)
    narrow = SFDModel.from_preset("tiny")
    with torch.no_grad():  # flows and masks of a trained model, not the untrained identity warp
        for p in narrow.generator.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    narrow.save_pretrained(tmp_path / "narrow")
    config = smoke_config(smoke_data, tmp_path / "run", pretrained=str(tmp_path / "narrow"), widen=True,
                          model_overrides={"channel_base": 2048, "descriptor_channel_base": 2048},
                          eval_split=None, log_with=None, adversarial_weight=0.0)
    trainer = Trainer(config)
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert model.config.channel_base == 2048 and model.config.latent_dim == narrow.config.latent_dim
    source, driving = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(source, driving).image, narrow(source, driving).image, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="pretrained"):
        smoke_config(smoke_data, tmp_path / "run2", widen=True)


def test_the_follow_driver_recipe_is_a_valid_config_with_the_motion_losses_on():
    recipe = Path(__file__).resolve().parents[1] / "sfd" / "training" / "recipes" / "follow_driver.yaml"
    config = TrainingConfig.from_yaml(recipe)
    assert config.preset == "tiny" and config.readout_weight > 0 and config.expression_readout_weight > 0
    assert config.keypoint_flow_weight > 0 and config.region_l1_boost > 0 and config.perceptual_weight == 0


def test_cli_reports_bad_settings(tmp_path, capsys, monkeypatch):
    assert main(["--output-dir", str(tmp_path)]) == 2
    assert "data_root" in capsys.readouterr().err
    # without the converted VGG16 the error names the command that makes it
    monkeypatch.setenv("SFD_AUX_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SFD_AUX_WEIGHTS", raising=False)
    assert main(["--data-root", str(tmp_path), "--preset", "tiny", "--perceptual-weight", "1"]) == 2
    assert "python -m sfd weights fetch-aux" in capsys.readouterr().err
    assert main(["--data-root", str(tmp_path), "--preset", "tiny", "--perceptual-network", "vgg19"]) == 2
    assert "vgg19_weights" in capsys.readouterr().err
    assert main(["--data-root", str(tmp_path), "--preset", "tiny", "--perceptual-network", "vgg11"]) == 2
    assert "perceptual_network" in capsys.readouterr().err


# --------------------------------------------------------------------------- config
def test_config_yaml_round_trip_and_cli_overrides(tmp_path):
    config = TrainingConfig(data_root="data/vox", preset="tiny", model_overrides={"image_warp": False},
                            adam_betas=(0, 0.99), l1_weight=2.0, perceptual_weight=0.5, r1_interval=8,
                            mixed_precision="bf16", resume="latest", checkpoints_total_limit=None)
    path = tmp_path / "cfg.yaml"
    config.to_yaml(path)
    loaded = TrainingConfig.from_yaml(path)
    assert loaded == config
    assert loaded.adam_betas == (0.0, 0.99) and isinstance(loaded.adam_betas[0], float)

    path.write_text("preset: tiny\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        TrainingConfig.from_yaml(path)
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainingConfig(mixed_precision="fp8")

    config.to_yaml(path)
    args = build_parser().parse_args(["--config", str(path), "--batch-size", "4", "--no-augment", "--resume",
                                      "--model", "motion_dim=10", "--adam-betas", "0.5", "0.9", "--eval-split", "none"])
    merged = config_from_args(args)
    assert merged.batch_size == 4 and merged.augment is False and merged.resume == "latest"
    assert merged.model_overrides == {"image_warp": False, "motion_dim": 10}
    assert merged.adam_betas == (0.5, 0.9) and merged.eval_split is None
    assert merged.l1_weight == 2.0  # from the file


# --------------------------------------------------------------------------- losses and parts
def test_adversarial_losses_and_r1():
    zeros = torch.zeros(4)
    assert generator_adversarial_loss(zeros).item() == pytest.approx(math.log(2))
    assert discriminator_adversarial_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    # D(x) = <w, x>: its input gradient is w for every sample, so R1 = |w|^2.
    w = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    penalty = r1_penalty((x * w).sum(dim=(1, 2, 3)), x)
    assert penalty.item() == pytest.approx(w.square().sum().item(), rel=1e-5)


def test_descriptor_losses():
    a = torch.randn(4, 10, requires_grad=True)
    assert identity_consistency_loss(a, a.detach()).item() == 0
    loss = appearance_consistency_loss(a, a.detach() + 1)
    spread = torch.cat((a, a + 1)).var(dim=0, correction=0).mean()
    assert loss.item() == pytest.approx(1.0 / spread.item(), rel=1e-5)
    loss.backward()
    assert a.grad.abs().sum() > 0
    # Unrelated descriptors of the same spread score 2.
    unrelated = identity_consistency_loss(torch.randn(8192, 10), torch.randn(8192, 10))
    assert unrelated.item() == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("loss_fn", [identity_consistency_loss, appearance_consistency_loss])
def test_descriptor_losses_cannot_be_lowered_by_shrinking_the_descriptors(loss_fn):
    # Plain squared distances collapsed the motion descriptors of real runs towards zero.
    a = torch.randn(16, 20)
    b = a + 0.3 * torch.randn(16, 20)
    base = loss_fn(a, b).item()
    for scale in (0.01, 3.0):
        assert loss_fn(scale * a, scale * b).item() == pytest.approx(base, rel=1e-3)  # up to SPREAD_EPS
    scale = torch.tensor(1.0, requires_grad=True)
    loss_fn(scale * a, scale * b).backward()
    assert abs(scale.grad.item()) < 1e-5 * base
    moved = torch.randn(16, 20, requires_grad=True)
    loss_fn(moved, moved.detach() + 0.1).backward()  # agreement still has a gradient
    assert moved.grad.abs().sum() > 0


def test_perceptual_loss_pyramid_and_weights_file(tmp_path):
    from safetensors.torch import save_file

    features = vgg19_features(None)
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()},
              str(tmp_path / "vgg19.safetensors"))
    loss = VGG19PerceptualLoss.from_pretrained(tmp_path, scales=(1.0, 0.5))  # a folder holding the file
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0
    y = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    value = loss(y, x)
    value.backward()
    assert value.item() > 0 and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())  # VGG stays frozen

    from sfd.errors import WeightsError

    save_file({"features.0.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match="lack"):
        VGG19PerceptualLoss.from_pretrained(tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError):  # not a file, not a folder, and the Hub is offline
        VGG19PerceptualLoss.from_pretrained(str(tmp_path / "missing" / "vgg19.safetensors"))

    # the trainer's choice of network: VGG19 stays an option, with torchvision's .pth converted as users would
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg19.pth")
    vgg19 = convert_vgg19(tmp_path / "vgg19.pth", tmp_path / "converted" / "vgg19.safetensors")
    chosen = Trainer._perceptual_loss(TrainingConfig(perceptual_network="vgg19", vgg19_weights=str(vgg19)))
    assert isinstance(chosen, VGG19PerceptualLoss)
    assert Trainer._perceptual_loss(TrainingConfig(perceptual_weight=0.0)) is None
    assert isinstance(Trainer._perceptual_loss(TrainingConfig()), VGG16PerceptualLoss)  # the default, fetch-aux's


def test_model_ema_averages_with_warmup():
    model = torch.nn.Linear(3, 3)
    ema = ModelEMA(model, decay=0.99, warmup=True)
    start = ema.model.weight.clone()
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, start + 0.9)
    assert not ema.model.weight.requires_grad and ema.updates == 1


def test_optimizer_state_round_trips_through_tensors_and_json():
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.Adam(params, lr=2e-3, betas=(0.0, 0.99))
    sum(p.square().sum() for p in params).backward()
    opt.step()
    tensors, meta = flatten_optimizer_state("g", opt.state_dict())
    json.dumps(meta)  # the rest is plain JSON
    restored = unflatten_optimizer_state("g", tensors, json.loads(json.dumps(meta)))
    fresh = torch.optim.Adam(params, lr=1.0)
    fresh.load_state_dict(restored)
    assert fresh.param_groups[0]["betas"] == (0.0, 0.99) and fresh.param_groups[0]["lr"] == 2e-3
    for index, values in opt.state_dict()["state"].items():
        for key, value in values.items():
            assert torch.equal(fresh.state_dict()["state"][index][key], value)


def test_latest_checkpoint_ignores_unfinished_ones(tmp_path):
    manager = CheckpointManager(tmp_path)
    assert manager.latest() is None
    for step, complete in ((5, True), (10, True), (20, False)):
        folder = manager.directory / f"checkpoint-{step:07d}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (manager.directory / ".checkpoint-0000030.partial").mkdir()
    assert manager.latest().name == "checkpoint-0000010"
