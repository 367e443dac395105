"""The Gradio app, served for real on localhost: its API through gradio_client, its page in Chromium.

The app runs the real pipeline with the tiny preset. An untrained generator's flow heads start at
zero, so its generator weights are perturbed a little (fixed seed) to make slider moves visible.
"""

import json
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from sfd import SFDModel, SFDPipeline  # noqa: E402
from sfd.app import (  # noqa: E402
    BUNDLED_NAME,
    AppHandlers,
    AppSettings,
    LoadedWeights,
    build_demo,
    bundled_default,
    format_offsets,
    launch_options,
    load_weights,
    parse_offsets,
    slider_layout,
)
from sfd.app import ui as app_ui  # noqa: E402
from sfd.app import weights as app_weights  # noqa: E402
from sfd.app.weights import BUNDLED_TRAINED_NAME  # noqa: E402
from sfd.semantics.calibration import Calibration  # noqa: E402
from sfd.errors import SFDError  # noqa: E402
from sfd.face import load_face_detector  # noqa: E402
from sfd.media import ffmpeg_exe, probe_video  # noqa: E402

from conftest import perturbed_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "examples" / "astronaut.jpg"
CHROMIUM = os.environ.get("SFD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MAX_SECONDS = 3.0
MAX_FILE_SIZE = "5mb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clip(src, dst, seconds: float) -> Path:
    """The first `seconds` of a clip (audio kept), re-encoded so the cut is frame-exact."""
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(src), "-t", str(seconds), "-c:v", "libx264",
                    "-c:a", "aac", str(dst)], check=True, timeout=120)
    return Path(dst)


def landscape(path: Path) -> Path:
    """A face-free picture: sky over noisy green hills."""
    rng = np.random.default_rng(0)
    img = np.zeros((240, 400, 3), np.uint8)
    img[:120] = (110, 160, 230)
    img[120:] = (np.array([40, 120, 40]) + rng.integers(-20, 20, (120, 400, 3))).clip(0, 255)
    Image.fromarray(img).save(path)
    return path


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def gradio_cache(tmp_path_factory):
    """Gradio's cache (uploads, outputs) in a temporary folder, for this module only."""
    folder = tmp_path_factory.mktemp("gradio-cache")
    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = old


@pytest.fixture(scope="module")
def served(gradio_cache):
    """The app on a free localhost port: (url, demo)."""
    pipe = SFDPipeline(perturbed_tiny_model(), face_detector=load_face_detector(None, device="cpu"), device="cpu")
    loaded = LoadedWeights(pipeline=pipe, name="tiny preset, perturbed for tests", trained=False)
    settings = AppSettings(max_seconds=MAX_SECONDS, max_file_size=MAX_FILE_SIZE)
    demo = build_demo(loaded, settings)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_options(settings))
    yield f"http://127.0.0.1:{port}/", demo
    demo.close()


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    return gradio_client.Client(served[0], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def app_error(client, *args, api_name, **kwargs) -> str:
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        client.predict(*args, api_name=api_name, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------- API through gradio_client
def test_animate_returns_the_drivers_frames_and_audio_and_a_side_by_side(client, served, faces_dir, tmp_path):
    driving = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "driving2_2s.mp4", 2.0)
    driver = probe_video(driving)
    handle = gradio_client.handle_file
    result, panels = client.predict(handle(str(faces_dir / "lia-vox" / "taylor.png")), handle(str(driving)),
                                    api_name="/animate")
    info, side = probe_video(result), probe_video(panels)
    assert Path(result).suffix == ".mp4" and driver.has_audio
    assert info.frame_count == driver.frame_count and info.has_audio
    # driver | portrait | result, each at the result's size (the driver and the portrait are square).
    assert side.frame_count == driver.frame_count and (side.width, side.height) == (3 * info.width, info.height)
    assert info.height > served[1].sfd_handlers.pipe.size  # the pasted-back portrait, not the model's crop
    # Blink, mouth and head transfer are on unless asked otherwise, through the page's boxes or the API.
    for box in ("sfd-blinks", "sfd-mouth", "sfd-head"):
        assert expression_slider(served[1], box)["value"] is True
    plain, _ = client.predict(handle(str(faces_dir / "lia-vox" / "taylor.png")), handle(str(driving)), blinks=False,
                              mouth=False, head=False, api_name="/animate")
    assert probe_video(plain).frame_count == driver.frame_count


def test_each_request_gets_its_own_output_folder_in_gradios_cache(served, gradio_cache):
    handlers = served[1].sfd_handlers
    first, second = handlers.new_request_dir(), handlers.new_request_dir()
    assert first != second and first.parent == second.parent == Path(gradio_cache)


def test_edit_is_deterministic_and_a_moved_coefficient_changes_the_image(client):
    portrait = gradio_client.handle_file(str(PORTRAIT))
    plain = [pixels(client.predict(portrait, "{}", "{}", api_name="/edit")) for _ in range(2)]
    moved = pixels(client.predict(portrait, '{"0": 2.0}', "{}", api_name="/edit"))
    dense = pixels(client.predict(portrait, json.dumps([2.0] + [0.0] * 19), "{}", api_name="/edit"))
    identity = pixels(client.predict(portrait, "{}", '{"0": 2.0}', api_name="/edit"))
    original = pixels(PORTRAIT)
    assert np.array_equal(plain[0], plain[1])
    assert plain[0].shape == moved.shape == identity.shape == original.shape
    assert not np.array_equal(moved, plain[0]) and not np.array_equal(identity, plain[0])
    assert np.array_equal(moved, dense)  # the list form means the same as the object form


def test_edit_takes_expression_changes_as_json_and_names_bad_ones(client):
    """/edit's last input: {"control": change}; "{}" (and leaving it out) changes nothing."""
    portrait = gradio_client.handle_file(str(PORTRAIT))
    crop = (True, 2.0, 0.0, -0.05)
    plain = pixels(client.predict(portrait, "{}", "{}", api_name="/edit"))
    assert np.array_equal(pixels(client.predict(portrait, "{}", "{}", *crop, "{}", api_name="/edit")), plain)
    assert "unknown expression control 'grin'" in app_error(client, portrait, "{}", "{}", *crop, '{"grin": 0.3}',
                                                            api_name="/edit")
    assert "impossible" in app_error(client, portrait, "{}", "{}", *crop, '{"yaw": 500}', api_name="/edit")
    assert "not valid JSON" in app_error(client, portrait, "{}", "{}", *crop, "{yaw: 1}", api_name="/edit")


def test_descriptors_are_the_faces_coefficients(client, served):
    out = client.predict(gradio_client.handle_file(str(PORTRAIT)), api_name="/descriptors")
    expected = served[1].sfd_handlers.pipe.descriptors(str(PORTRAIT))
    assert len(out["motion"]) == 20 and len(out["identity"]) == expected["identity"].size
    np.testing.assert_allclose(out["motion"], expected["motion"], atol=1e-5)
    assert out["detector"] != "none" and len(out["box"]) == 4


def test_sliders_edit_the_face_encoded_once_per_session(client, served):
    """The Edit tab's own path: /load_face encodes, /edit_sliders only renders (state is server-side)."""
    handlers = served[1].sfd_handlers
    handlers.sources.clear()  # earlier tests' requests encoded this portrait already
    model = handlers.pipe.model
    calls = []
    original = model.encode
    model.encode = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        portrait = gradio_client.handle_file(str(PORTRAIT))
        loaded = client.predict(portrait, True, 2.0, 0.0, -0.05, "{}", "{}", api_name="/load_face")
        encoded = len(calls)
        zero = client.predict(*([0.0] * 30), api_name="/edit_sliders")
        moved = client.predict(*([0.6] + [0.0] * 29), api_name="/edit_sliders")
        identity = client.predict(*([0.0] * 20 + [0.5] + [0.0] * 9), api_name="/edit_sliders")
    finally:
        del model.encode  # the class's method again
    assert encoded == 1 and len(calls) == 1  # slider moves never re-encode
    sliders = loaded[:30]
    assert [s["label"] for s in sliders[:2]] == ["motion 0", "motion 1"] and sliders[20]["label"] == "identity 0"
    assert all(s["minimum"] < 0 < s["maximum"] for s in sliders)
    assert np.array_equal(pixels(zero[0]), pixels(loaded[30]))
    assert not np.array_equal(pixels(moved[0]), pixels(zero[0]))
    assert (moved[1], moved[2]) == ('{"0": 0.6}', "{}") and identity[2] == '{"0": 0.5}'


def test_edit_video_applies_offsets_to_every_frame(client, faces_dir, tmp_path):
    driving = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "one_second.mp4", 1.0)
    out = client.predict(gradio_client.handle_file(str(driving)), '{"0": 1.0}', "{}", api_name="/edit_video")
    info, source = probe_video(out), probe_video(driving)
    assert info.frame_count == source.frame_count and info.has_audio and info.size == source.size


def test_bad_inputs_get_errors_that_name_the_problem(client, faces_dir, tmp_path):
    handle = gradio_client.handle_file
    portrait = handle(str(PORTRAIT))
    assert "No face" in app_error(client, handle(str(landscape(tmp_path / "hills.png"))), "{}", "{}",
                                  api_name="/edit")
    assert "No face" in app_error(client, handle(str(tmp_path / "hills.png")), api_name="/descriptors")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    assert "notes.txt is not a video" in app_error(client, portrait, handle(str(notes)), api_name="/animate")
    long_clip = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "long.mp4", MAX_SECONDS + 1)
    message = app_error(client, portrait, handle(str(long_clip)), api_name="/animate")
    assert "long.mp4" in message and f"limit is {MAX_SECONDS:g} s" in message
    assert "not valid JSON" in app_error(client, portrait, "{3: 1}", "{}", api_name="/edit")
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(bytes(6 * 1024 * 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # refused before it is sent
        client.predict(portrait, handle(str(huge)), api_name="/animate")
    assert "coefficient 25 does not exist" in app_error(client, portrait, '{"25": 1}', "{}", api_name="/edit")


def test_uploads_that_are_not_images_or_videos_say_so_by_name_without_a_traceback(client, faces_dir, tmp_path,
                                                                                 capfd):
    handle = gradio_client.handle_file
    fake_image, fake_video = tmp_path / "source.jpg", tmp_path / "driving.mp4"
    fake_image.write_text("a text file, whatever its name says")
    fake_video.write_text("a text file, whatever its name says")
    driving = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "real.mp4", 1.0)
    portrait = handle(str(PORTRAIT))
    capfd.readouterr()  # the server runs in this process: from here on its output is this test's
    assert "source.jpg is not an image" in app_error(client, handle(str(fake_image)), handle(str(driving)),
                                                     api_name="/animate")
    assert "driving.mp4 is not a video" in app_error(client, portrait, handle(str(fake_video)), api_name="/animate")
    assert "source.jpg is not an image" in app_error(client, handle(str(fake_image)), "{}", "{}", api_name="/edit")
    assert "source.jpg is not an image" in app_error(client, handle(str(fake_image)), api_name="/descriptors")
    assert "real.mp4 is not an image" in app_error(client, handle(str(driving)), api_name="/descriptors")
    assert "driving.mp4 is not a video" in app_error(client, handle(str(fake_video)), "{}", "{}",
                                                     api_name="/edit_video")
    assert "source.jpg is not an image" in app_error(client, handle(str(fake_image)), True, 2.0, 0.0, -0.05, "{}",
                                                     "{}", api_name="/load_face")
    server = capfd.readouterr()
    assert "Traceback" not in server.err + server.out and "has raised an exception" not in server.err + server.out


def test_a_driver_that_opens_without_a_face_is_animated_from_its_first_face(served, faces_dir, tmp_path,
                                                                           monkeypatch):
    from sfd.media import VideoWriter, read_video

    frames, info = read_video(faces_dir / "lia-vox" / "driving2.mp4", max_frames=12)
    with VideoWriter(tmp_path / "fade_in.mp4", info.fps) as writer:
        writer.write(np.concatenate([np.zeros((5, *frames.shape[1:]), np.uint8), frames]))
    notices = []
    monkeypatch.setattr(gr, "Info", notices.append)  # the toast, outside a request
    handlers = served[1].sfd_handlers
    result, _ = handlers.animate(str(PORTRAIT), str(tmp_path / "fade_in.mp4"), progress=lambda *a, **k: None)
    assert probe_video(result).frame_count == 17
    assert notices == ["Done: no face in 5 of 17 driving frames (the first face is in frame 5; "
                       "the frames before it hold its pose; the later ones are cropped with its box)."]
    notices.clear()
    handlers.animate(str(PORTRAIT), str(tmp_path / "fade_in.mp4"), driver_box="track", progress=lambda *a, **k: None)
    assert notices == ["Done: no face in 5 of 17 driving frames (the first face is in frame 5; "
                       "the frames before it hold its pose)."]
    # A driver whose face walks out of its first box: a warning says which option to change.
    w = frames.shape[2]
    with VideoWriter(tmp_path / "walk_out.mp4", info.fps) as writer:
        writer.write(np.stack([np.pad(frames[i % len(frames)], ((0, 0), (round(0.6 * w * i / 50), 0), (0, 0)),
                                      mode="edge")[:, :w] for i in range(51)]))
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    handlers.animate(str(PORTRAIT), str(tmp_path / "walk_out.mp4"), progress=lambda *a, **k: None)
    assert len(warnings) == 1 and "'s face had left its crop box in " in warnings[0], warnings
    assert "Driving crop box to 'follow the face'" in warnings[0]
    with pytest.raises(gr.Error, match="crop box must be 'fixed' or 'track', not 'follow'"):
        handlers.animate(str(PORTRAIT), str(tmp_path / "fade_in.mp4"), driver_box="follow",
                         progress=lambda *a, **k: None)


# ---------------------------------------------------------------------- the page in Chromium
def test_page_shows_both_tabs_and_a_slider_move_updates_the_image(served, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    expect = playwright.expect
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SFD_CHROMIUM)")
    url = served[0]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url)
            # expect(...) waits for the page to get there (it renders after load).
            expect(page.locator("#sfd-animate-source")).to_be_visible()
            expect(page.locator("#sfd-animate-driving")).to_be_visible()
            expect(page.get_by_role("button", name="Animate", exact=True)).to_be_visible()
            expect(page.locator("#sfd-header")).to_contain_text("tiny preset, perturbed for tests")
            page.screenshot(path=str(tmp_path / "animate.png"), full_page=True)

            page.get_by_role("tab", name="Edit").click()  # a tab's contents render once it is opened
            ranges = page.locator(".sfd-motion-slider input[type=range]")
            expect(ranges).to_have_count(20)
            expect(page.locator(".sfd-identity-slider input[type=range]")).to_have_count(10)
            expect(page.get_by_role("button", name="Reset sliders")).to_be_visible()

            page.locator("#sfd-edit-portrait input[type=file]").set_input_files(str(PORTRAIT))
            edited = page.locator("#sfd-edited img")
            edited.wait_for(timeout=60_000)
            before = edited.get_attribute("src")
            expect(page.locator("#sfd-edit-info")).to_contain_text("Face: found by")  # the face is encoded
            ranges.first.focus()
            for _ in range(40):  # 40 steps of 0.01
                page.keyboard.press("ArrowRight")
            page.wait_for_function("src => { const img = document.querySelector('#sfd-edited img');"
                                   " return img && img.src !== src; }", arg=before, timeout=60_000)
            expect(page.locator(".sfd-motion-slider input[type=number]").first).to_have_value("0.4")
            page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)
            if os.environ.get("SFD_APP_SCREENSHOT"):  # regenerates docs/app.png on request
                shutil.copy(tmp_path / "edit.png", os.environ["SFD_APP_SCREENSHOT"])
        finally:
            browser.close()
    assert (tmp_path / "animate.png").stat().st_size > 10_000 and (tmp_path / "edit.png").stat().st_size > 10_000


def test_page_says_which_upload_is_not_an_image(served, faces_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    expect = playwright.expect
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SFD_CHROMIUM)")
    fake = tmp_path / "source.jpg"
    fake.write_text("a text file, whatever its name says")
    driving = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "driving.mp4", 1.0)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(served[0])
            page.locator("#sfd-animate-source input[type=file]").set_input_files(str(fake))
            page.locator("#sfd-animate-driving input[type=file]").set_input_files(str(driving))
            expect(page.locator("#sfd-animate-driving video")).to_have_count(1, timeout=60_000)  # uploaded
            page.get_by_role("button", name="Animate", exact=True).click()
            expect(page.get_by_text("source.jpg is not an image")).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        finally:
            browser.close()


# ---------------------------------------------------------------------- weights, calibration, settings
def test_without_the_bundled_weights_a_seeded_untrained_model_runs_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(app_weights, "BUNDLED_WEIGHTS", tmp_path / "absent")  # a checkout without them
    first, second = bundled_default("cpu"), bundled_default("cpu")
    assert first.name.startswith(BUNDLED_NAME) and not first.trained and first.problem is None
    for a, b in zip(first.pipeline.model.parameters(), second.pipeline.model.parameters()):
        assert torch.equal(a, b)  # the same default model on every start
    assert "untrained tiny preset" in app_ui.header_markdown(first, AppSettings())


@pytest.mark.parametrize("weights", ["/nonexistent/sfd-weights", "nobody/no-such-sfd-weights"])
def test_weights_that_fail_to_load_fall_back_and_the_page_says_why(weights):
    loaded = load_weights(weights, device="cpu")  # the Hub is offline here (HF_HUB_OFFLINE=1)
    assert loaded.name.startswith(BUNDLED_TRAINED_NAME) and loaded.trained
    assert loaded.problem.startswith(f"SFD_WEIGHTS={weights} could not be loaded (")
    header = app_ui.header_markdown(loaded, AppSettings())
    assert "**Note:**" in header and loaded.problem in header


def write_calibration(folder: Path, motion_dim=20, identity_dim=108) -> Calibration:
    rng = np.random.default_rng(1)
    calibration = Calibration(
        num_faces=7, motion_mean=rng.normal(0, 0.2, motion_dim), motion_std=rng.uniform(0.1, 0.5, motion_dim),
        identity_mean=rng.normal(0, 0.2, identity_dim), identity_std=rng.uniform(0.1, 0.5, identity_dim))
    calibration.save(folder)
    return calibration


def test_calibration_with_the_weights_sets_slider_ranges_and_identity_order(tmp_path):
    perturbed_tiny_model().save_pretrained(tmp_path)
    written = write_calibration(tmp_path)
    loaded = load_weights(tmp_path, device="cpu")
    assert loaded.trained and loaded.problem is None and loaded.calibration is not None
    handlers = AppHandlers(loaded, AppSettings(), cache_dir=tmp_path / "cache")
    out = handlers.load_face(str(PORTRAIT), True, 2.0, 0.0, -0.05, "{}", "{}")
    session, sliders = out[0], out[1:31]
    motion, identity = session.source.motion, session.source.identity
    order = list(np.argsort(-written.identity_std)[:10])
    assert [s.label for s in sliders[20:]] == [f"identity {i}" for i in order]
    for k, slider in enumerate(sliders[:20]):  # offsets that reach mean +- 3 std
        low = written.motion_mean[k] - 3 * written.motion_std[k] - motion[k]
        high = written.motion_mean[k] + 3 * written.motion_std[k] - motion[k]
        assert slider.minimum == pytest.approx(min(low, 0), abs=0.011)
        assert slider.maximum == pytest.approx(max(high, 0), abs=0.011)
    first = sliders[20]
    i = order[0]
    assert first.maximum == pytest.approx(max(written.identity_mean[i] + 3 * written.identity_std[i] - identity[i], 0),
                                          abs=0.011)
    assert "calibration" in out[-1]


def test_a_calibration_that_does_not_fit_is_ignored_with_a_reason(tmp_path):
    SFDModel.from_preset("tiny").save_pretrained(tmp_path)
    write_calibration(tmp_path, motion_dim=12)
    loaded = load_weights(tmp_path, device="cpu")
    assert loaded.calibration is None and "12 motion" in loaded.calibration_problem
    (tmp_path / "calibration.json").write_text('{"version": 1, "motion": {"mean": [1]}}')
    assert "not a valid calibration" in load_weights(tmp_path, device="cpu").calibration_problem


def test_without_calibration_ranges_follow_the_faces_spread():
    motion = np.linspace(-1, 1, 20)
    layout = slider_layout(motion, np.zeros(108), None, 10)
    half = 3 * np.std(motion)
    assert all(s.minimum == pytest.approx(-half, abs=0.011) and s.maximum == pytest.approx(half, abs=0.011)
               for s in layout.motion)
    assert [s.index for s in layout.identity] == list(range(10))
    assert all(s.maximum == pytest.approx(0.3) for s in layout.identity)  # a flat face gets the floor


def test_offsets_json_forms_and_errors():
    assert parse_offsets('{"3": 1.5, "0": 0}', 20, "motion") == {3: 1.5}
    assert parse_offsets("[0, -1]", 20, "motion") == {1: -1.0}
    assert parse_offsets("", 20, "motion") == {} and parse_offsets(None, 20, "motion") == {}
    assert format_offsets({3: 1.5, 1: 0.0}) == '{"3": 1.5}'
    for text, message in [("[1, ", "not valid JSON"), ('"x"', "must be a JSON object"),
                          ('{"a": 1}', "not a coefficient index"), ('{"20": 1}', "does not exist"),
                          ('{"1": true}', "finite number"), ("[NaN]", "finite number")]:
        with pytest.raises(SFDError, match=message):
            parse_offsets(text, 20, "motion")


def test_settings_from_environment():
    settings = AppSettings.from_env({"SFD_WEIGHTS": " org/repo ", "SFD_MAX_SECONDS": "12.5", "SFD_MCP": "1",
                                     "SFD_MAX_FILE_SIZE": "20mb"})
    assert (settings.weights, settings.max_seconds, settings.mcp, settings.max_file_size) == \
        ("org/repo", 12.5, True, "20mb")
    assert AppSettings.from_env({}) == AppSettings()
    with pytest.raises(ValueError, match="SFD_MAX_SECONDS"):
        AppSettings.from_env({"SFD_MAX_SECONDS": "a minute"})


def test_mcp_switch_degrades_with_a_log_line_when_the_extra_is_missing(monkeypatch, caplog):
    monkeypatch.setattr(app_ui, "mcp_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="sfd.app.ui"):
        options = launch_options(AppSettings(mcp=True))
    assert options["mcp_server"] is False and 'gradio[mcp]' in caplog.text
    monkeypatch.setattr(app_ui, "mcp_available", lambda: True)
    assert launch_options(AppSettings(mcp=True))["mcp_server"] is True
    assert launch_options(AppSettings())["mcp_server"] is False


def test_atlas_with_the_weights_names_and_groups_the_motion_sliders(tmp_path):
    from sfd.semantics.direction_atlas import Atlas, AtlasDirection

    perturbed_tiny_model().save_pretrained(tmp_path)
    named = {0: ("yaw", "Head"), 1: ("mouth open", "Mouth"), 2: ("blink", "Eyes"), 3: ("yaw", "Head")}
    directions = [AtlasDirection(i, *named.get(i, ("subtle", "Other")), measurements={}) for i in range(20)]
    Atlas(directions).save(tmp_path)
    loaded = load_weights(tmp_path, device="cpu")
    assert loaded.atlas is not None
    handlers = AppHandlers(loaded, AppSettings(), cache_dir=tmp_path / "cache")
    sliders = handlers.load_face(str(PORTRAIT), True, 2.0, 0.0, -0.05, "{}", "{}")[1:21]
    assert [s.label for s in sliders[:4]] == ["yaw (motion 0)", "mouth open (motion 1)", "blink (motion 2)",
                                              "yaw 2 (motion 3)"]
    demo = build_demo(loaded, AppSettings())
    config = json.dumps(demo.get_config_file(), default=str)
    positions = [config.index(f'"label": "{group}"') for group in ("Head", "Mouth", "Eyes", "Other")]
    assert positions == sorted(positions)  # one section per group, in this order
    assert '"label": "blink (motion 2)"' in config


def expression_slider(demo, elem_id: str = "sfd-expression-strength") -> dict:
    config = demo.get_config_file()
    found = [c for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert len(found) == 1
    return found[0]["props"]


def test_expression_strength_is_offered_with_a_measured_atlas_and_refused_without_one(client, served, faces_dir,
                                                                                     tmp_path):
    from sfd.semantics.direction_atlas import Atlas, AtlasDirection
    from sfd.semantics.face_measures import FACE_MEASURES

    driving = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "driving2_1s.mp4", 1.0)
    handle = gradio_client.handle_file
    # The served weights have no atlas: the slider is hidden, and the API refuses a strength other than 1.
    assert expression_slider(served[1])["visible"] is False
    assert expression_slider(served[1], "sfd-match-amplitude")["visible"] is False
    message = app_error(client, handle(str(PORTRAIT)), handle(str(driving)), expression_strength=2.0,
                        api_name="/animate")
    assert "needs the weights' direction atlas" in message
    # Weights with an atlas of measured effects: the slider shows, and a strength of 2 animates.
    perturbed_tiny_model().save_pretrained(tmp_path / "weights")
    rng = np.random.default_rng(0)
    Atlas([AtlasDirection(i, "mixed", "Other", {}, std=1.0, effects={m.key: rng.normal() for m in FACE_MEASURES})
           for i in range(20)]).save(tmp_path / "weights")
    loaded = load_weights(tmp_path / "weights", device="cpu")
    demo = build_demo(loaded, AppSettings())
    assert expression_slider(demo)["visible"] is not False
    assert expression_slider(demo, "sfd-match-amplitude")["visible"] is not False
    assert expression_slider(demo, "sfd-match-amplitude")["value"] is False  # off by default: it can smear
    handlers = AppHandlers(loaded, AppSettings(), cache_dir=tmp_path / "cache")
    result, _ = handlers.animate(str(PORTRAIT), str(driving), expression_strength=2.0, progress=lambda *a, **k: None)
    assert probe_video(result).frame_count == probe_video(driving).frame_count
    # Matching the driver's amplitude animates every frame too.
    matched, _ = handlers.animate(str(PORTRAIT), str(driving), match_amplitude=True, progress=lambda *a, **k: None)
    assert probe_video(matched).frame_count == probe_video(driving).frame_count
    with pytest.raises(gr.Error, match=r"expression strength must lie in \[0, 3\], got 3.5"):
        handlers.animate(str(PORTRAIT), str(driving), expression_strength=3.5, progress=lambda *a, **k: None)
