"""The demo weights that ship inside the package (sfd/weights/sfd-demo64): their files, loading
them offline with no argument, their quality on a clip held out of their training, their
calibration and atlas, and the app starting on them with no environment variables."""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sfd.app import bundled_default, load_weights
from sfd.app.sliders import SIGMAS, STEP, slider_layout
from sfd.app.weights import BUNDLED_TRAINED_NAME
from sfd.evaluation.full_frame import full_frame_reconstruction
from sfd.models import SFDModel
from sfd.pipeline import SFDPipeline, sfd_pipeline
from sfd.semantics.calibration import Calibration
from sfd.semantics.direction_atlas import Atlas

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sfd_pipeline.BUNDLED_WEIGHTS
# Clips the demo model never saw in training (see its model card).
HELD_OUT = ("lia-vox/driving2.mp4", "liveportrait/driving/d19.mp4")
# Margins the trained model must beat the untrained one of the same preset by, on a held-out
# clip, with crop and paste-back, over whole frames (measured on driving2: 8.4 % and 0.82 dB; see the card).
L1_MARGIN = 0.05  # relative: at least 5 % lower L1
PSNR_MARGIN = 0.3  # dB


@pytest.fixture(scope="module")
def bundled_pipeline() -> SFDPipeline:
    return SFDPipeline.from_pretrained(device="cpu")


def test_the_bundle_is_a_small_fp16_hub_folder_with_its_card():
    names = {p.name for p in BUNDLED.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.fp16.safetensors", "calibration.json", "atlas.json",
            "README.md"} <= names
    assert "diffusion_pytorch_model.safetensors" not in names  # only the float16 variant ships
    weights = BUNDLED / "diffusion_pytorch_model.fp16.safetensors"
    assert weights.stat().st_size < 20 * 2**20
    card = (BUNDLED / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "cc-by-nc-4.0" and front["library_name"]
    for must in ("small demo model", "not the paper", "CC BY-NC 4.0", "MIT", "Held out of training", "2-core CPU"):
        assert must in card, must
    for clip in ("driving2.mp4", "d19.mp4"):  # the held-out whole-frame table
        assert re.search(rf"\| {re.escape(clip)} \| 0\.\d{{4}} \| 0\.\d{{4}} \| 0\.\d{{4}} \|", card), clip


def test_from_pretrained_with_no_argument_loads_the_bundle_offline(bundled_pipeline):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    model = bundled_pipeline.model
    assert model.config.size == 64 and model.dtype == torch.float32  # fp16 file, computed in float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = SFDModel.from_preset("tiny")
    changed = [name for (name, a), (_, b) in zip(model.named_parameters(), untrained.named_parameters())
               if not torch.allclose(a, b)]
    assert len(changed) > 0.9 * len(list(model.parameters()))
    q_id, q_m = model.bases()
    q = torch.cat((q_id, q_m), dim=1)
    assert torch.allclose(q.t() @ q, torch.eye(q.shape[1]), atol=1e-5)


@pytest.mark.parametrize("clip", HELD_OUT[:1])
def test_on_a_held_out_clip_the_bundle_beats_the_untrained_model(bundled_pipeline, faces_dir, clip):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = SFDPipeline(SFDModel.from_preset("tiny"), face_detector=bundled_pipeline.face_detector,
                                device="cpu")
    video = faces_dir / clip
    trained = full_frame_reconstruction(bundled_pipeline, video, max_frames=96)
    baseline = full_frame_reconstruction(untrained, video, max_frames=96)
    assert trained["frames"] == baseline["frames"] == 95
    assert trained["l1"] < (1 - L1_MARGIN) * baseline["l1"], (trained, baseline)
    assert trained["psnr"] > baseline["psnr"] + PSNR_MARGIN, (trained, baseline)
    # And it moves the face: the do-nothing baseline (every frame = the source) is beaten too.
    assert trained["l1"] < trained["baseline_l1"]


def test_the_bundled_calibration_is_finite_and_sets_the_app_slider_ranges(bundled_pipeline, faces_dir):
    calibration = Calibration.load(BUNDLED)
    model = bundled_pipeline.model
    assert calibration.fits(model) and calibration.num_faces >= 100
    for kind, size in (("motion", model.config.motion_dim), ("identity", model.identity_dim)):
        mean, std = calibration.statistics(kind)
        assert mean.shape == std.shape == (size,)
        assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    # Motion sliders must be usable at the app's step: a range of several steps each.
    assert (2 * SIGMAS * calibration.motion_std > 4 * STEP).all()

    loaded = bundled_default("cpu")
    assert loaded.trained and loaded.calibration is not None and loaded.atlas is not None
    assert np.array_equal(loaded.calibration.motion_std, calibration.motion_std)
    face = bundled_pipeline.prepare_source(faces_dir / "liveportrait" / "source" / "s0.jpg")
    layout = slider_layout(face.motion, face.identity, loaded.calibration, 10, loaded.atlas)
    for slider in layout.motion:
        k = slider.index
        low = calibration.motion_mean[k] - SIGMAS * calibration.motion_std[k] - face.motion[k]
        high = calibration.motion_mean[k] + SIGMAS * calibration.motion_std[k] - face.motion[k]
        assert slider.minimum == pytest.approx(min(low, 0), abs=STEP * 1.1)
        assert slider.maximum == pytest.approx(max(high, 0), abs=STEP * 1.1)
    assert [s.index for s in layout.identity] == list(calibration.identity_order[:10])
    order_std = calibration.identity_std[calibration.identity_order]
    assert (np.diff(order_std) <= 0).all()  # largest variance first


def test_the_bundled_atlas_names_every_motion_direction_from_measurements(bundled_pipeline):
    atlas = Atlas.load(BUNDLED)
    assert len(atlas) == bundled_pipeline.model.config.motion_dim
    data = json.loads((BUNDLED / "atlas.json").read_text())
    for direction in data["directions"]:
        assert direction["group"] in ("Head", "Mouth", "Eyes", "Other")
        assert all(math.isfinite(v) for v in direction["measurements"].values())
        assert (BUNDLED / direction["preview"]).is_file()


def test_the_app_without_weights_settings_loads_the_bundle():
    loaded = load_weights(None, device="cpu")
    assert loaded.trained and loaded.problem is None and loaded.name.startswith(BUNDLED_TRAINED_NAME)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_py_starts_on_the_bundle_with_no_sfd_environment_variables(tmp_path, faces_dir):
    import gradio_client

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFD_")}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # a start-up guard, not a timing assertion
        while "Running on" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False,
                                      download_files=str(tmp_path / "downloads"))
        config = json.dumps(client.config)
        assert "bundled demo model sfd-demo64" in config and "calibrated slider ranges" in config
        portrait = faces_dir / "liveportrait" / "source" / "s0.jpg"
        result = client.predict(gradio_client.handle_file(str(portrait)), api_name="/descriptors")
        expected = SFDPipeline.from_pretrained(device="cpu").descriptors(portrait)
        np.testing.assert_allclose(result["motion"], expected["motion"], atol=1e-4)  # the bundle answered
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
