"""The app's request handlers: Gradio values in, pipeline calls, Gradio values out.

Nothing here knows about faces or video beyond calling `SFDPipeline`: each handler checks its
inputs, converts types, gives each request its own output folder and turns the pipeline's
`SFDError`s into `gr.Error`s with the same message. Uploaded files arrive unopened (see
`ui.unopened`): an image is checked as the pipeline reads it (`prepare`), a video by
`probe_video` before any work, so a file that is neither says so by name.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from PIL import Image

from ..errors import SFDError
from ..face import DEFAULT_OFFSET_X, DEFAULT_OFFSET_Y, DEFAULT_SCALE
from ..media import probe_video
from ..pipeline import DRIVER_BOXES, SourceFace
from .gpu import keep, on_device
from .offsets import format_offsets, parse_offsets, read_json
from .settings import AppSettings
from .sliders import EXPRESSION_SLIDERS, SliderLayout, place_offsets, slider_layout
from .weights import LoadedWeights

log = logging.getLogger(__name__)

REQUEST_PREFIX = "sfd-"
SOURCE_CACHE_SIZE = 16
# Edited images are PNG (lossless) at zlib's fastest level: about 3x faster to write than the
# default level for 5-10 % more bytes, which counts on every slider move.
PNG_COMPRESS_LEVEL = 1


def gradio_cache_dir() -> Path:
    """Gradio's cache folder (GRADIO_TEMP_DIR): files there are served and aged out by `delete_cache`."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


def user_errors(fn):
    """Show the pipeline's input errors to the user as they are (they are written for users)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SFDError as error:
            log.info("%s refused its input: %s", fn.__name__, error)
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def _require(value, what: str):
    if value is None or value == "":
        raise gr.Error(f"Add {what} first.", print_exception=False)
    return value


def _file_digest(path: str) -> str | None:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None  # the pipeline says what is wrong with the file


class SourceCache:
    """Prepared faces by image content and crop settings: an image is encoded once, whoever sends it."""

    def __init__(self, size: int = SOURCE_CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[tuple, SourceFace] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> SourceFace | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def put(self, key: tuple, source: SourceFace) -> None:
        with self._lock:
            self._items[key] = source
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class EditSession:
    """One browser session's face in the Edit tab: encoded once, edited on every slider move."""

    source: SourceFace
    layout: SliderLayout
    folder: Path  # this session's output folder
    hidden_identity: dict[int, float] = field(default_factory=dict)  # offsets without a slider
    # The Expression sliders' solved motion offsets, added to the motion sliders' own; the solver
    # holds this face's measures and effect matrix, made on the first expression move.
    expression_offsets: dict[int, float] = field(default_factory=dict)
    expression_solver: object | None = None


def parse_expression_json(text: str | None) -> dict[str, float]:
    """{control: change} from JSON text such as {"mouth_open": 0.3}; SFDError when malformed."""
    from ..semantics.expression import check_targets

    data = read_json(text, "expression", 'an object such as {"mouth_open": 0.3}')
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SFDError(f'expression must be a JSON object such as {{"mouth_open": 0.3}}, not {type(data).__name__}')
    return check_targets(data)


class AppHandlers:
    """The functions the UI's events call, around one loaded pipeline."""

    def __init__(self, loaded: LoadedWeights, settings: AppSettings, cache_dir: str | Path | None = None):
        self.loaded = loaded
        self.pipe = loaded.pipeline
        self.settings = settings
        self.motion_dim = int(self.pipe.model.config.motion_dim)
        self.identity_dim = int(self.pipe.model.identity_dim)
        self.identity_count = min(settings.identity_sliders, self.identity_dim)
        self.cache_root = Path(cache_dir) if cache_dir is not None else gradio_cache_dir()
        self.sources = SourceCache()

    # ------------------------------------------------------------------ plumbing
    def new_request_dir(self) -> Path:
        """A fresh folder for one request's outputs, inside Gradio's cache so `delete_cache` ages them out."""
        self.cache_root.mkdir(parents=True, exist_ok=True)
        self._sweep_request_dirs()
        return Path(tempfile.mkdtemp(prefix=REQUEST_PREFIX, dir=self.cache_root))

    def _sweep_request_dirs(self) -> None:
        # delete_cache removes the files it served but not their folders: drop old empty ones.
        cutoff = time.time() - self.settings.cache_seconds
        for folder in self.cache_root.glob(f"{REQUEST_PREFIX}*"):
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:
                pass  # another request got there first

    def prepare(self, image: str, auto_crop: bool = True, scale: float | None = None,
                offset_x: float | None = None, offset_y: float | None = None) -> SourceFace:
        """The encoded face of `image` (a file path), from the cache when this image was seen.

        The pipeline's reading of the file is its check: one that is not an image (or is
        truncated, empty, too large) is an ImageError naming the file and the problem.
        """
        _require(image, "a portrait (upload, webcam or paste)")
        crop = {k: float(v) for k, v in (("scale", scale), ("offset_x", offset_x), ("offset_y", offset_y))
                if v is not None}
        digest = _file_digest(str(image))
        key = (digest, bool(auto_crop), *sorted(crop.items()))
        source = self.sources.get(key) if digest else None
        if source is None:
            source = keep(self.pipe.prepare_source(image, crop=bool(auto_crop), **crop))
            if digest:
                self.sources.put(key, source)
        return source

    def _edit(self, source: SourceFace, motion: dict[int, float], identity: dict[int, float], folder: Path,
              expression: dict[str, float] | None = None) -> str:
        """The edited image, written as a PNG into `folder`; its path."""
        image = self.pipe.edit(on_device(source, self.pipe.device), motion_offsets=motion, identity_offsets=identity,
                               expression=expression, atlas=self.loaded.atlas)
        folder.mkdir(parents=True, exist_ok=True)  # a long-idle session's folder may have been swept
        fd, path = tempfile.mkstemp(prefix="edited-", suffix=".png", dir=folder)
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(image).save(f, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return path

    def _video(self, video: str | None, what: str) -> str:
        """The path of an uploaded video, checked before any work: a VideoError names the file
        and what is wrong with it (not a video, no frames, longer than the app's limit)."""
        _require(video, what)
        probe_video(video, max_duration=self.settings.max_seconds)
        return video

    def _offsets(self, motion_json: str | None, identity_json: str | None) -> tuple[dict, dict]:
        return (parse_offsets(motion_json, self.motion_dim, "motion"),
                parse_offsets(identity_json, self.identity_dim, "identity"))

    @property
    def slider_count(self) -> int:
        return self.motion_dim + self.identity_count

    def _slider_updates(self, layout: SliderLayout, motion_values, identity_values) -> list:
        specs = [*layout.motion, *layout.identity]
        return [gr.Slider(minimum=s.minimum, maximum=s.maximum, value=v, label=s.label,
                          **({"info": s.info} if s.info else {}))
                for s, v in zip(specs, [*motion_values, *identity_values])]

    def _session_offsets(self, session: EditSession, values) -> tuple[dict, dict]:
        """The motion offsets (the sliders' plus the Expression group's) and identity offsets."""
        values = [float(v or 0.0) for v in values]
        motion = {s.index: v for s, v in zip(session.layout.motion, values[:self.motion_dim]) if v}
        for index, value in session.expression_offsets.items():
            motion[index] = motion.get(index, 0.0) + value
        identity = dict(session.hidden_identity)
        identity.update({s.index: v for s, v in zip(session.layout.identity, values[self.motion_dim:]) if v})
        return motion, identity

    def face_info(self, source: SourceFace, layout: SliderLayout) -> str:
        where = ("the whole image (auto-crop is off)" if source.detector == "none" else
                 f"found by {source.detector}, crop box x {source.box.x0:.0f}..{source.box.x1:.0f}, "
                 f"y {source.box.y0:.0f}..{source.box.y1:.0f}")
        return f"Face: {where}. {layout.describe()}"

    # ------------------------------------------------------------------ Animate tab
    @property
    def can_match_amplitude(self) -> bool:
        """Whether the weights' atlas measured its directions' effects: matching scales expression through it."""
        return self.loaded.atlas is not None and self.loaded.atlas.has_effects

    @user_errors
    def animate(self, source_image: str, driving_video: str, motion: str = "relative", auto_crop: bool = True,
                scale: float = DEFAULT_SCALE, offset_x: float = DEFAULT_OFFSET_X,
                offset_y: float = DEFAULT_OFFSET_Y, crop_driving: bool = True,
                paste_back: bool = True, keep_audio: bool = True, smoothing: float = 0.0,
                driver_box: str = "fixed", expression_strength: float = 1.0, match_amplitude: bool = False,
                blinks: bool = True, mouth: bool = True, head: bool = True,
                progress=gr.Progress()) -> tuple[str, str]:
        """Animate a portrait with the motion of a driving video.

        A driving video that opens without a face (a title card, a fade-in) is animated from its first
        face; a notice says how many of its frames had none.

        Args:
            source_image: the portrait to animate (an image file).
            driving_video: the video whose head and face motion is transferred (mp4, webm, mov, ...).
            motion: "relative" (motion relative to the first driving frame, keeps the portrait's pose) or "absolute".
            auto_crop: find the face in the portrait and crop around it; off uses the whole image.
            scale: crop side over face size.
            offset_x: crop shift to the right, in crop sides.
            offset_y: crop shift down, in crop sides.
            crop_driving: find and track the face in the driving video; off for clips that are already face crops.
            paste_back: paste the animated face back into the full portrait; off returns the face crop.
            keep_audio: copy the driving video's audio track.
            smoothing: motion smoothing strength in [0, 1).
            driver_box: "fixed" crops the driver with its first face's box, so the head's shifts move the
                portrait too; "track" follows the face (for a head that leaves that box).
            expression_strength: scales the driver's expression changes, its head pose and position
                kept: 1 as the driver, 2 twice as much (0 to 3; needs the weights' direction atlas).
            match_amplitude: multiply that strength by the gain that makes this portrait's mouth move as
                widely, for its face's size, as the driver's does (measured on the driver's first two
                seconds); weights without a direction atlas animate without it.
            blinks: close the portrait's eyelids where the driver's close, and widen them where the
                driver's open wider than usual (an image warp after the model, whose motion has no blink).
            mouth: open or close the portrait's mouth, for its face's size, as far as the driver's
                opened, where the model draws it less or more open (an image warp after the model).
            head: move the portrait's head in the image by what the model left out of the driver's
                turns, shifts and zoom since its first frame (an image warp after the model; relative
                motion only).

        Returns:
            The animated video and a side-by-side video (driver | portrait | result), both mp4.
        """
        _require(source_image, "a source portrait (upload, webcam or paste)")
        self._video(driving_video, "a driving video (upload or record)")
        if motion not in ("relative", "absolute"):
            raise gr.Error(f'motion must be "relative" or "absolute", not {motion!r}', print_exception=False)
        if driver_box not in DRIVER_BOXES:
            raise gr.Error(f"the driver's crop box must be {' or '.join(map(repr, DRIVER_BOXES))}, not {driver_box!r}",
                           print_exception=False)
        source = self.prepare(source_image, auto_crop, scale, offset_x, offset_y)
        folder = self.new_request_dir()

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Animating", unit="frames")

        try:
            result = self.pipe.animate(
                on_device(source, self.pipe.device), driving_video, folder / "animated.mp4",
                relative=motion == "relative", crop_driving=bool(crop_driving), paste_back=bool(paste_back),
                keep_audio=bool(keep_audio), smoothing=float(smoothing), scale=float(scale),
                offset_x=float(offset_x), offset_y=float(offset_y), max_duration=self.settings.max_seconds,
                side_by_side_path=folder / "side_by_side.mp4", progress=report, driver_box=driver_box,
                expression_strength=float(expression_strength), atlas=self.loaded.atlas,
                match_amplitude=bool(match_amplitude) and self.can_match_amplitude, blinks=bool(blinks),
                mouth=bool(mouth), head=bool(head))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if result.faceless_frames or result.missed_frames or result.drifted_frames:
            log.info("animate: %s", result.face_summary())
        log.info("animate: expression strength %.2f", result.expression_strength)
        if result.drifted_frames:  # the head left the one box: say what to change
            gr.Warning(f"Done, but the driver's face had left its crop box in {result.drifted_frames} of "
                       f"{result.watched_frames} frames checked: for this video, set Options → Driving crop box "
                       "to 'follow the face'.")
        elif result.faceless_frames or result.missed_frames:
            gr.Info(f"Done: {result.face_summary()}.")
        return str(result.path), str(result.side_by_side)

    # ------------------------------------------------------------------ Edit tab (UI events)
    @user_errors
    def load_face(self, image: str | None, auto_crop: bool, scale: float, offset_x: float, offset_y: float,
                  motion_json: str, identity_json: str) -> list:
        """Encode a new portrait for the sliders: session, slider updates, edited image, JSON boxes, info."""
        if image is None:
            return [None, *[gr.skip()] * self.slider_count, None, gr.skip(), gr.skip(), ""]
        motion, identity = self._offsets(motion_json, identity_json)
        source = self.prepare(image, auto_crop, scale, offset_x, offset_y)
        layout = slider_layout(source.motion, source.identity, self.loaded.calibration, self.identity_count,
                               self.loaded.atlas)
        layout, motion_values, identity_values, hidden = place_offsets(layout, motion, identity)
        session = EditSession(source=source, layout=layout, folder=self.new_request_dir(), hidden_identity=hidden)
        edited = self._edit(source, motion, identity, session.folder)
        return [session, *self._slider_updates(layout, motion_values, identity_values), edited,
                format_offsets(motion), format_offsets(identity), self.face_info(source, layout)]

    @staticmethod
    def forget_face() -> tuple:
        """Drop the session's face (before a new one loads, so a failed load leaves none behind);
        the Expression sliders go back to 0 (they are changes of the face that was there)."""
        return None, None, "", *[0.0] * len(EXPRESSION_SLIDERS)

    @user_errors
    def render(self, session: EditSession | None, *slider_values: float) -> tuple:
        """The session's face with the sliders' offsets: edited image and both JSON boxes."""
        if session is None:
            return gr.skip(), gr.skip(), gr.skip()
        motion, identity = self._session_offsets(session, slider_values)
        edited = self._edit(session.source, motion, identity, session.folder)
        return edited, format_offsets(motion), format_offsets(identity)

    @user_errors
    def render_expression(self, session: EditSession | None, *values: float) -> tuple:
        """The Expression sliders moved: solve this face's motion offsets for them and re-render.

        `values`: the Expression sliders (EXPRESSION_SLIDERS order), then every descriptor slider.
        Returns the session, edited image, both JSON boxes and the info line (what was reached).
        """
        if session is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        from ..semantics.expression import ExpressionSolver

        count = len(EXPRESSION_SLIDERS)
        targets = {s.key: float(v or 0.0) for s, v in zip(EXPRESSION_SLIDERS, values[:count])}
        if session.expression_solver is None:
            # once per face: its measures now, its own effect matrix on the first refinement
            session.expression_solver = ExpressionSolver(
                self.pipe.model, on_device(session.source, self.pipe.device).descriptors, self.loaded.atlas,
                motion_std=None if self.loaded.calibration is None else self.loaded.calibration.motion_std)
        # Not strict: a slider shows what this model can do on this face, and says what it reached.
        result = session.expression_solver.solve(targets, strict=False)
        session.expression_offsets = result.offsets
        motion, identity = self._session_offsets(session, values[count:])
        edited = self._edit(session.source, motion, identity, session.folder)
        info = f"{self.face_info(session.source, session.layout)} Expression: {result.summary()}."
        return session, edited, format_offsets(motion), format_offsets(identity), info

    @user_errors
    def reset(self, session: EditSession | None) -> list:
        """Every slider back to 0 (the Expression sliders too): the face as encoded."""
        zeros = [0.0] * self.slider_count
        expression_zeros = [0.0] * len(EXPRESSION_SLIDERS)
        if session is None:
            return [None, *zeros, gr.skip(), "{}", "{}", *expression_zeros]
        session = EditSession(source=session.source, layout=session.layout, folder=session.folder,
                              expression_solver=session.expression_solver)
        return [session, *zeros, self._edit(session.source, {}, {}, session.folder), "{}", "{}", *expression_zeros]

    @user_errors
    def sliders_from_json(self, session: EditSession | None, motion_json: str, identity_json: str) -> list:
        """Set the sliders to the offsets typed as JSON (after /edit applied them)."""
        expression_zeros = [0.0] * len(EXPRESSION_SLIDERS)
        if session is None:
            return [None, *[gr.skip()] * self.slider_count, *expression_zeros]
        motion, identity = self._offsets(motion_json, identity_json)
        base = slider_layout(session.source.motion, session.source.identity, self.loaded.calibration,
                             self.identity_count, self.loaded.atlas)
        layout, motion_values, identity_values, hidden = place_offsets(base, motion, identity)
        # The JSON holds every motion offset, the solved ones too: they now sit on the motion sliders.
        session = EditSession(source=session.source, layout=layout, folder=session.folder, hidden_identity=hidden,
                              expression_solver=session.expression_solver)
        return [session, *self._slider_updates(layout, motion_values, identity_values), *expression_zeros]

    # ------------------------------------------------------------------ public API
    @user_errors
    def edit(self, image: str, motion_offsets: str = "{}", identity_offsets: str = "{}", auto_crop: bool = True,
             scale: float = DEFAULT_SCALE, offset_x: float = DEFAULT_OFFSET_X,
             offset_y: float = DEFAULT_OFFSET_Y, expression: str = "{}") -> str:
        """Edit a portrait by moving chosen descriptor coefficients, and/or by expression changes in physical units.

        Args:
            image: the portrait (an image file).
            motion_offsets: JSON motion offsets: an object such as {"3": 1.5}, or one number per coefficient.
            identity_offsets: JSON offsets of identity coefficients, in the same form.
            auto_crop: find the face and crop around it; off uses the whole image.
            scale: crop side over face size.
            offset_x: crop shift to the right, in crop sides.
            offset_y: crop shift down, in crop sides.
            expression: JSON changes solved on this face for motion offsets (added to motion_offsets), e.g.
                {"mouth_open": 0.3, "yaw": -10}: mouth_open, smile, eye_left, eye_right, brows (ratios as
                the face mesh measures them), yaw, pitch, roll (degrees). An unreachable change is an error.

        Returns:
            The edited portrait (PNG), the size of the input.
        """
        motion, identity = self._offsets(motion_offsets, identity_offsets)
        targets = parse_expression_json(expression)
        source = self.prepare(image, auto_crop, scale, offset_x, offset_y)
        return self._edit(source, motion, identity, self.new_request_dir(), targets)

    @user_errors
    def descriptors(self, image: str, auto_crop: bool = True, scale: float = DEFAULT_SCALE,
                    offset_x: float = DEFAULT_OFFSET_X, offset_y: float = DEFAULT_OFFSET_Y) -> dict:
        """The semantic facial descriptors of the face in a portrait.

        Args:
            image: the portrait (an image file).
            auto_crop: find the face and crop around it; off uses the whole image.
            scale: crop side over face size.
            offset_x: crop shift to the right, in crop sides.
            offset_y: crop shift down, in crop sides.

        Returns:
            JSON: "motion" (N numbers), "identity" (D - N numbers), face "detector", crop "box" [x0, y0, x1, y1].
        """
        source = self.prepare(image, auto_crop, scale, offset_x, offset_y)
        return {"motion": [round(float(v), 6) for v in source.motion],
                "identity": [round(float(v), 6) for v in source.identity],
                "detector": source.detector, "box": [round(float(v), 2) for v in source.box.box]}

    @user_errors
    def edit_video(self, video: str, motion_offsets: str = "{}", identity_offsets: str = "{}",
                   auto_crop: bool = True, keep_audio: bool = True, progress=gr.Progress()) -> str:
        """Apply descriptor offsets to the face in every frame of a video.

        Args:
            video: the video to edit (e.g. a driving video or an animated result).
            motion_offsets: JSON offsets of motion coefficients, an object such as {"3": 1.5} or a list.
            identity_offsets: JSON offsets of identity coefficients, in the same form.
            auto_crop: find and track the face; off edits each whole frame (for face-crop clips).
            keep_audio: copy the video's audio track.

        Returns:
            The edited video (mp4).
        """
        self._video(video, "a video to edit (upload one, or take the animated result or the driving video)")
        motion, identity = self._offsets(motion_offsets, identity_offsets)
        folder = self.new_request_dir()

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Editing frames", unit="frames")

        try:
            out = self.pipe.edit_video(video, folder / "edited.mp4", motion_offsets=motion,
                                       identity_offsets=identity, crop=bool(auto_crop), keep_audio=bool(keep_audio),
                                       max_duration=self.settings.max_seconds, progress=report)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return str(out)

    # ------------------------------------------------------------------ page load
    def announce_weights(self) -> None:
        """A toast when the requested weights could not be used (the page also says it)."""
        if self.loaded.problem:
            gr.Warning(self.loaded.problem, duration=None)
