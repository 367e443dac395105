"""The SFD model: orthonormal bases, recombination, gradients, weights format, learning."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from sfd import Discriminator, SFDModel
from sfd.errors import WeightsError

WEIGHTS = "diffusion_pytorch_model.safetensors"


def tiny(**overrides) -> SFDModel:
    return SFDModel.from_preset("tiny", **overrides)


def images(batch: int, size: int = 64) -> torch.Tensor:
    return torch.rand(batch, 3, size, size) * 2 - 1


def orthonormality_errors(model: SFDModel) -> tuple[float, float, float]:
    q_id, q_m = model.bases()
    eye = lambda n: torch.eye(n)  # noqa: E731
    return ((q_id.t() @ q_id - eye(q_id.shape[1])).abs().max().item(),
            (q_m.t() @ q_m - eye(q_m.shape[1])).abs().max().item(),
            (q_id.t() @ q_m).abs().max().item())


@pytest.mark.parametrize("latent_dim", [128, 512])
def test_bases_stay_orthonormal_and_complementary_under_training(latent_dim):
    model = tiny(latent_dim=latent_dim)
    q_id, q_m = model.bases()
    assert q_id.shape == (latent_dim, latent_dim - 20) and q_m.shape == (latent_dim, 20)
    assert max(orthonormality_errors(model)) < 1e-5
    before = model.basis.detach().clone()
    opt = torch.optim.Adam([model.basis], lr=0.05)
    target = torch.randn(latent_dim, 20)
    for _ in range(5):  # steps that pull the motion basis somewhere arbitrary
        q_id, q_m = model.bases()
        loss = (q_m - target).square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model.basis - before).abs().max() > 0.05  # the underlying matrix really moved
    assert max(orthonormality_errors(model)) < 1e-5


def test_bases_are_the_sign_fixed_qr_factor():
    model = tiny()
    q_id, q_m = model.bases()
    q = torch.cat([q_id, q_m], dim=1)
    r = q.t() @ model.basis.detach()
    assert torch.allclose(q @ r, model.basis.detach(), atol=1e-5)
    assert (torch.diagonal(r) > 0).all()
    assert torch.allclose(torch.triu(r), r, atol=1e-5)


def test_descriptors_are_recovered_by_projection():
    model = tiny()
    a_id, a_m = torch.randn(4, model.identity_dim), torch.randn(4, 20)
    z = model.compose(a_id, a_m)
    q_id, q_m = model.bases()
    assert torch.allclose(z @ q_id, a_id, atol=1e-5)
    assert torch.allclose(z @ q_m, a_m, atol=1e-5)


def test_relative_motion_with_reference_frame_gives_the_source_latent_exactly():
    model = tiny().eval()
    with torch.inference_mode():
        source = model.encode(images(1))
        first = model.encode(images(1), with_features=False)
        z = model.transfer_motion(source, first.motion, reference_motion=first.motion)
        own = model.compose(source.identity, source.motion)
        assert torch.equal(z, own)
        other = model.encode(images(1), with_features=False)
        moved = model.transfer_motion(source, other.motion, reference_motion=first.motion)
        assert not torch.equal(moved, own)
        # Motion edits never touch the identity coordinates of the latent.
        q_id, _ = model.bases()
        assert torch.allclose(moved @ q_id, own @ q_id, atol=1e-5)


def test_untrained_generator_reproduces_the_source():
    model = tiny().eval()
    src, drv = images(2), images(2)
    with torch.inference_mode():
        out = model(src, drv).image
    assert (out - src).abs().mean() < 0.02  # the do-nothing baseline, by construction
    assert (out - drv).abs().mean() > 0.3


@pytest.mark.parametrize("image_warp", [True, False])
def test_gradients_reach_every_part(image_warp):
    model = tiny(image_warp=image_warp)
    out = model(images(2), images(2)).image
    out.square().mean().backward()
    for name in ["basis", "descriptor_encoder", "feature_encoder", "identity_head", "motion_head", "generator"]:
        part = getattr(model, name)
        params = [part] if isinstance(part, torch.nn.Parameter) else list(part.parameters())
        total = sum(p.grad.abs().sum().item() for p in params if p.grad is not None)
        assert total > 0, f"no gradient reaches {name}"


def test_shapes_and_descriptor_only_path():
    model = tiny(descriptor_size=32)
    desc = model.encode(images(3), with_features=False)
    assert desc.identity.shape == (3, model.identity_dim) and desc.motion.shape == (3, 20)
    assert desc.features is None
    # A driving frame may be given at descriptor_size directly: same descriptors as the full frame.
    full = images(1)
    small = F.interpolate(full, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    with torch.inference_mode():
        assert torch.allclose(model.encode(full, False).motion, model.encode(small, False).motion, atol=1e-6)
        src = model.encode(images(1))
        out = model.generate(model.compose(src.identity, src.motion), src.features)
    assert [f.shape[-1] for f in src.features] == [64, 32, 16, 8]
    assert out.shape == (1, 3, 64, 64)


def test_presets_have_the_promised_sizes():
    tiny_params = sum(p.numel() for p in tiny().parameters())
    assert tiny_params < 2_000_000 and tiny().config.size <= 64
    vox = SFDModel.from_preset("vox256")
    vox_params = sum(p.numel() for p in vox.parameters())
    assert vox.config.size == 256 and 40e6 <= vox_params <= 50e6
    wide = SFDModel.from_preset("wide64")
    wide_params = sum(p.numel() for p in wide.parameters())
    assert wide.config.size == 64 and 7e6 <= wide_params <= 8e6 and 2 * wide_params < 20 * 2**20  # fp16 < 20 MiB
    with pytest.raises(ValueError, match="unknown preset"):
        SFDModel.from_preset("huge")


def test_discriminator_scores_and_learns():
    disc = Discriminator(size=64, channel_base=1024, max_channels=64)
    x = images(4).requires_grad_()
    scores = disc(x)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    scores.sum().backward()
    assert x.grad.abs().sum() > 0  # needed for the R1 penalty


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path):
    model = tiny().eval()
    with torch.no_grad():  # give the zero-initialised flow heads something to do
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / WEIGHTS).exists()
    loaded = SFDModel.from_pretrained(tmp_path).eval()
    src, drv = images(2), images(2)
    with torch.inference_mode():
        assert torch.equal(model(src, drv).image, loaded(src, drv).image)


def test_fp16_variant_saves_and_loads(tmp_path):
    model = tiny().eval()
    copy.deepcopy(model).to(torch.float16).save_pretrained(tmp_path, variant="fp16")
    stored = load_file(tmp_path / "diffusion_pytorch_model.fp16.safetensors")
    assert all(t.dtype == torch.float16 for t in stored.values())
    loaded = SFDModel.from_pretrained(tmp_path, variant="fp16", torch_dtype=torch.float32).eval()
    assert loaded.dtype == torch.float32
    src = images(1)
    with torch.inference_mode():
        diff = (model(src, src).image - loaded(src, src).image).abs().max()
    assert diff < 0.05  # fp16 rounding of the weights, nothing more
    half = SFDModel.from_pretrained(tmp_path, variant="fp16", torch_dtype=torch.float16)
    assert half.dtype == torch.float16 and half.bases()[1].dtype == torch.float16


def test_loading_names_a_missing_tensor(tmp_path):
    tiny().save_pretrained(tmp_path)
    state = load_file(tmp_path / WEIGHTS)
    del state["generator.convs.0.conv.weight"]
    save_file(state, tmp_path / WEIGHTS)
    with pytest.raises(WeightsError, match=r"missing tensors: generator\.convs\.0\.conv\.weight"):
        SFDModel.from_pretrained(tmp_path)


def test_loading_names_a_misshaped_tensor(tmp_path):
    tiny().save_pretrained(tmp_path)
    state = load_file(tmp_path / WEIGHTS)
    state["basis"] = torch.zeros(3, 3)
    save_file(state, tmp_path / WEIGHTS)
    with pytest.raises(WeightsError, match="basis"):
        SFDModel.from_pretrained(tmp_path)


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        tiny(size=48)
    with pytest.raises(ValueError, match="motion_dim"):
        tiny(motion_dim=128)


def _clip_frames(path, indices):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    w, h = meta["size"]
    wanted, frames = set(indices), {}
    try:
        for i, raw in enumerate(reader):
            if i in wanted:
                frames[i] = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
            if len(frames) == len(wanted):
                break
    finally:
        reader.close()
    return [frames[i] for i in indices]


def test_tiny_model_learns_to_reenact_two_real_frames(faces_dir):
    frames = _clip_frames(faces_dir / "lia-vox" / "driving2.mp4", [0, 110])
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    source, driving = x, x.flip(0)  # each frame drives the other
    model = tiny()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.0, 0.99))
    with torch.no_grad():
        start = (model(source, driving).image - driving).abs().mean().item()
    for _ in range(300):
        loss = (model(source, driving).image - driving).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = (model(source, driving).image - driving).abs().mean().item()
    assert end < 0.5 * start, f"L1 went from {start:.4f} to {end:.4f}"


def test_loading_from_a_missing_folder_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="cannot load SFD weights from"):
        SFDModel.from_pretrained(tmp_path / "absent")


# A small model, every weight random (flow heads included), so that the flows, the masks and the
# rendered path all shape the output that widening must keep.
NARROW = dict(size=32, latent_dim=32, motion_dim=8, descriptor_size=32, channel_base=128, max_channels=32,
              descriptor_channel_base=128, descriptor_max_channels=32)
WIDER = dict(channel_base=512, max_channels=64, descriptor_channel_base=256, descriptor_max_channels=48)


def test_widening_keeps_the_function_and_the_new_channels_learn():
    from sfd.models import widen

    torch.manual_seed(0)
    narrow = SFDModel(**NARROW)
    with torch.no_grad():
        for name, p in narrow.named_parameters():
            p.normal_(0.0, 0.3 if name.endswith("bias") else 1.0)
    wide = widen(narrow, **WIDER)
    assert wide.config.channel_base == 512 and wide.config.latent_dim == 32
    assert wide.generator.convs[-1].conv.weight.shape[:2] == (16, 16)  # 512 / 32 px, was 4
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in narrow.parameters())

    source, driving = images(2, 32), images(2, 32)
    with torch.no_grad():
        for model in (narrow, wide):
            model.generator.image_warp = False  # the rendered image alone, not hidden by the blend
        plain = [m.generator.decode(m.compose(*_latent_parts(m, source, driving)), m.encode(source).features)
                 for m in (narrow, wide)]
        for model in (narrow, wide):
            model.generator.image_warp = True
        a, b = narrow(source, driving, return_flow=True), wide(source, driving, return_flow=True)
    assert plain[0][0].abs().mean() > 0.1 and plain[0][1].abs().mean() > 0.01  # a real image, a real flow
    torch.testing.assert_close(plain[1][0], plain[0][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.image, a.image, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.flow, a.flow, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.driving.motion, a.driving.motion, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.source.identity, a.source.identity, atol=1e-5, rtol=1e-4)

    # The zero weights from new channels to old ones get gradients: the added width can learn.
    wide(source, driving).image.square().mean().backward()
    grad = wide.generator.convs[-1].conv.weight.grad
    assert grad[:4, 4:].abs().sum() > 0 and wide.generator.convs[-1].conv.weight[:4, 4:].abs().sum() == 0


def _latent_parts(model: SFDModel, source, driving):
    return model.encode(source, with_features=False).identity, model.encode(driving, with_features=False).motion


def test_widening_refuses_to_narrow_or_to_change_the_latent_space():
    from sfd.models import widen

    narrow = SFDModel(**NARROW)
    with pytest.raises(ValueError, match="latent_dim"):
        widen(narrow, **WIDER, latent_dim=64)
    with pytest.raises(ValueError, match="size"):
        widen(narrow, size=64)
    with pytest.raises(ValueError, match="narrower"):
        widen(narrow, channel_base=64)
    wide64 = widen(tiny(), "wide64")
    assert wide64.config.channel_base == SFDModel.from_preset("wide64").config.channel_base
