"""The Gradio page: a header, the Animate tab and the Edit tab (with its video section).

One builder per tab; each only lays out components and wires their events to `AppHandlers`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..face import DEFAULT_OFFSET_X, DEFAULT_OFFSET_Y, DEFAULT_SCALE
from ..expression_strength import MAX_EXPRESSION_STRENGTH
from .gpu import gpu_task
from .handlers import AppHandlers
from .sliders import EXPRESSION_SLIDERS, motion_groups, slider_label
from .settings import AppSettings
from .weights import LoadedWeights, load_weights

log = logging.getLogger(__name__)

TITLE = "SFD: face animation with semantic facial descriptors"
EXAMPLES_DIR = Path(os.environ.get("SFD_EXAMPLES_DIR") or Path(__file__).resolve().parents[2] / "examples")
EXAMPLE_PORTRAIT = "astronaut.jpg"
EXAMPLE_DRIVING = "astronaut_talk.mp4"
# Edit-tab presets: (label, motion offsets, identity offsets), as JSON.
EDIT_PRESETS = (
    ("motion 0 up, motion 3 down", '{"0": 1.2, "3": -1.0}', "{}"),
    ("identity 0 up", "{}", '{"0": 1.5}'),
)
# Longest a ZeroGPU call may hold the GPU, seconds.
GPU_SECONDS_VIDEO = 120
GPU_SECONDS_IMAGE = 20
SLIDERS_PER_ROW = 5


def unopened(image: gr.Image) -> gr.Image:
    """`image` (of type "filepath") handing an upload's path to its events without opening it.

    Gradio's own preprocessing opens the file with Pillow, and one that is not an image then fails
    as a bare "has raised an exception" with a traceback in the log; the handlers read the file
    themselves and say what is wrong with it, by name. Set on the instance: Gradio writes a .pyi
    stub next to the module of any subclass of its components.
    """
    if image.type != "filepath":
        raise ValueError(f'unopened() hands over file paths: the image must have type="filepath", not {image.type!r}')
    gradio_preprocess = image.preprocess

    def preprocess(payload):
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return gradio_preprocess(payload)  # nothing, or inline data that Gradio writes to a file
        return str(payload.path)

    image.preprocess = preprocess
    return image


def _example(name: str) -> str | None:
    path = EXAMPLES_DIR / name
    return str(path) if path.is_file() else None


@dataclass
class CropControls:
    auto_crop: gr.Checkbox
    scale: gr.Slider
    offset_x: gr.Slider
    offset_y: gr.Slider

    @property
    def all(self) -> list:
        return [self.auto_crop, self.scale, self.offset_x, self.offset_y]


def crop_controls(what: str) -> CropControls:
    """Auto-crop on/off and the crop's framing, for the face in `what`."""
    return CropControls(
        auto_crop=gr.Checkbox(True, label=f"Auto-crop the face in {what}",
                              info="Off: use the whole image (for pictures that are already face crops)"),
        scale=gr.Slider(1.2, 3.5, DEFAULT_SCALE, step=0.05, label="Crop scale", info="crop side / face size"),
        offset_x=gr.Slider(-0.3, 0.3, DEFAULT_OFFSET_X, step=0.01, label="Crop offset x",
                           info="shift right, in crop sides"),
        offset_y=gr.Slider(-0.3, 0.3, DEFAULT_OFFSET_Y, step=0.01, label="Crop offset y",
                           info="shift down, in crop sides"),
    )


@dataclass
class AnimateTab:
    source: gr.Image
    driving: gr.Video
    result: gr.Video
    side_by_side: gr.Video


@dataclass
class EditTab:
    image: gr.Image
    crop: CropControls
    session: gr.State
    motion_sliders: list[gr.Slider]
    identity_sliders: list[gr.Slider]
    edited: gr.Image
    motion_json: gr.Textbox
    identity_json: gr.Textbox
    info: gr.Markdown
    expression_sliders: list[gr.Slider]

    @property
    def sliders(self) -> list[gr.Slider]:
        return [*self.motion_sliders, *self.identity_sliders]


def header_markdown(loaded: LoadedWeights, settings: AppSettings) -> str:
    """What runs: weights, device, face detector, calibration and limits, in plain words."""
    pipe = loaded.pipeline
    detector = pipe.face_detector.name if pipe.face_detector is not None else "loaded on first use"
    calibration = ("calibrated slider ranges" if loaded.calibration is not None
                   else "no calibration: slider ranges come from each face")
    lines = [
        f"# {TITLE}",
        "Animate a portrait with a driving video, or edit it by moving its motion and identity "
        "descriptors one at a time.",
        "",
        f"**Weights:** {loaded.name}. **Device:** {pipe.device}. **Face detector:** {detector}. "
        f"**Sliders:** {calibration}. **Videos:** up to {settings.max_seconds:g} s.",
    ]
    for note in (loaded.problem, loaded.calibration_problem):
        if note:
            lines += ["", f"> **Note:** {note}."]
    return "\n".join(lines)


# ---------------------------------------------------------------------- Animate tab
def build_animate_tab(handlers: AppHandlers) -> AnimateTab:
    with gr.Row():
        with gr.Column():
            source = unopened(gr.Image(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                       label="Source portrait", height=320, elem_id="sfd-animate-source"))
            driving = gr.Video(sources=["upload", "webcam"], include_audio=True, label="Driving video", height=320,
                               elem_id="sfd-animate-driving")
        with gr.Column():
            result = gr.Video(label="Animated", interactive=False, height=320, elem_id="sfd-animate-result")
            side_by_side = gr.Video(label="Side by side (driver, source, result)", interactive=False, height=240)
    run = gr.Button("Animate", variant="primary")
    with gr.Accordion("Options", open=False):
        with gr.Row():
            motion = gr.Radio(["relative", "absolute"], value="relative", label="Motion",
                              info="relative: the portrait keeps its pose and moves as the driver moves "
                                   "from its first frame; absolute: it takes the driver's pose")
            smoothing = gr.Slider(0.0, 0.95, 0.0, step=0.05, label="Motion smoothing",
                                  info="0 = none; more smooths jitter and damps fast motion")
            # Needs the atlas's measured effects to tell expression from head pose.
            expression_strength = gr.Slider(
                0.0, MAX_EXPRESSION_STRENGTH, 1.0, step=0.05, label="Expression strength",
                info="scales the driver's expression changes (mouth, eyes, brows); its head turns, tilts and "
                     "shifts stay as they are. 1 = as the driver",
                visible=handlers.can_match_amplitude, elem_id="sfd-expression-strength")
            match_amplitude = gr.Checkbox(
                False, label="Keep the driver's mouth amplitude",
                info="raises the strength until this portrait's mouth moves as widely, for its size, as the "
                     "driver's (measured on its first two seconds): another face often opens less; a wide "
                     "mouth this model cannot draw comes out smeared",
                visible=handlers.can_match_amplitude, elem_id="sfd-match-amplitude")
        with gr.Row():
            crop_driving = gr.Checkbox(True, label="Crop the driving video",
                                       info="Off for clips that are already face crops")
            driver_box = gr.Radio([("one box", "fixed"), ("follow the face", "track")], value="fixed",
                                  label="Driving crop box",
                                  info="one box (the first face's): the head's shifts move the portrait too; "
                                       "follow: for a head that leaves that box")
            paste_back = gr.Checkbox(True, label="Paste back", info="Off: output only the face crop")
            blinks = gr.Checkbox(True, label="Blink with the driver", elem_id="sfd-blinks",
                                 info="closes the portrait's eyelids where the driver's close, and opens them "
                                      "wider where the driver's open wider than usual (drawn over the model's "
                                      "face: its motion has no blink)")
            mouth = gr.Checkbox(True, label="Move the mouth with the driver", elem_id="sfd-mouth",
                                info="opens and closes the portrait's mouth as far, for its face's size, as the "
                                     "driver's where the model draws it otherwise, and shows the driver's teeth "
                                     "between its lips (drawn over the model's face)")
            head = gr.Checkbox(True, label="Move the head with the driver", elem_id="sfd-head",
                               info="tilts and shifts the portrait's face in the image as far as the "
                                    "driver's head moved where the model falls short (relative motion)")
            keep_audio = gr.Checkbox(True, label="Keep the driving video's audio")
        with gr.Row():
            crop = crop_controls("the portrait")
    run.click(
        gpu_task(handlers.animate, GPU_SECONDS_VIDEO),
        inputs=[source, driving, motion, *crop.all, crop_driving, paste_back, keep_audio, smoothing, driver_box,
                expression_strength, match_amplitude, blinks, mouth, head],
        outputs=[result, side_by_side], api_name="animate", concurrency_limit=1, concurrency_id="video",
    )
    portrait, clip = _example(EXAMPLE_PORTRAIT), _example(EXAMPLE_DRIVING)
    if portrait and clip:
        gr.Examples([[portrait, clip]], inputs=[source, driving], cache_examples=False,
                    label="Example (public-domain portrait, synthetic driving clip)")
    return AnimateTab(source=source, driving=driving, result=result, side_by_side=side_by_side)


# ---------------------------------------------------------------------- Edit tab
def _slider_grid(kind: str, indices: list[int], names: dict[int, str] | None = None,
                 infos: dict[int, str] | None = None) -> list[gr.Slider]:
    """Sliders for these coefficients, in rows; `load_face` gives them their ranges per face.
    `infos`: tooltips (the atlas's measured effects behind each name)."""
    sliders = []
    for start in range(0, len(indices), SLIDERS_PER_ROW):
        with gr.Row():
            for i in indices[start:start + SLIDERS_PER_ROW]:
                sliders.append(gr.Slider(-3.0, 3.0, 0.0, step=0.01, label=slider_label(kind, i, (names or {}).get(i)),
                                         info=(infos or {}).get(i) or None,
                                         elem_classes=[f"sfd-{kind}-slider"], min_width=140))
    return sliders


def _expression_sliders() -> list[gr.Slider]:
    """The Expression group: changes in physical units, solved on the face for motion offsets."""
    sliders = []
    with gr.Accordion("Expression (physical units, solved on this face)", open=True):
        gr.Markdown("Each slider asks for a change of what the face mesh measures; the motion offsets that "
                    "make it are solved on this face (the first move measures the face, about a second).")
        for start in range(0, len(EXPRESSION_SLIDERS), 4):
            with gr.Row():
                for spec in EXPRESSION_SLIDERS[start:start + 4]:
                    sliders.append(gr.Slider(-spec.limit, spec.limit, 0.0, step=spec.step, label=spec.label,
                                             info=spec.info, elem_classes=["sfd-expression-slider"],
                                             min_width=140))
    return sliders


def _motion_sliders(handlers: AppHandlers) -> list[gr.Slider]:
    """One section per group of motion directions (Head, Mouth, Eyes, Other when the weights' atlas
    names them), returned in coefficient order as the handlers expect."""
    atlas = handlers.loaded.atlas
    names = {i: atlas.label(i) for i in range(handlers.motion_dim)} if atlas is not None else None
    infos = {i: atlas.info(i) for i in range(handlers.motion_dim)} if atlas is not None else None
    by_index: dict[int, gr.Slider] = {}
    for group, indices in motion_groups(handlers.motion_dim, atlas):
        title = group if atlas is not None else f"{group} ({handlers.motion_dim})"
        with gr.Accordion(title, open=True):
            by_index.update(zip(indices, _slider_grid("motion", indices, names, infos)))
    return [by_index[i] for i in range(handlers.motion_dim)]


def build_edit_tab(handlers: AppHandlers) -> EditTab:
    session = gr.State(None, time_to_live=handlers.settings.cache_seconds)
    with gr.Row():
        with gr.Column():
            image = unopened(gr.Image(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                      label="Portrait", height=320, elem_id="sfd-edit-portrait"))
            with gr.Accordion("Face crop", open=False):
                crop = crop_controls("the portrait")
        with gr.Column():
            edited = gr.Image(type="filepath", format="png", label="Edited", interactive=False, height=320,
                              elem_id="sfd-edited")
            info = gr.Markdown("Add a portrait: it is encoded once, then every slider move re-renders it.",
                               elem_id="sfd-edit-info")
            reset = gr.Button("Reset sliders")
    expression_sliders = _expression_sliders()
    motion_sliders = _motion_sliders(handlers)
    with gr.Accordion(f"Identity descriptors (leading {handlers.identity_count} of {handlers.identity_dim})",
                      open=True):
        identity_sliders = _slider_grid("identity", list(range(handlers.identity_count)))
    with gr.Accordion("Offsets as JSON (what the /edit API and `python -m sfd edit` take)", open=False):
        with gr.Row():
            motion_json = gr.Textbox("{}", label="Motion offsets", info='e.g. {"3": 1.5}', max_lines=3)
            identity_json = gr.Textbox("{}", label="Identity offsets", info="coefficient index: offset",
                                       max_lines=3)
        apply = gr.Button("Apply JSON offsets")
    tab = EditTab(image=image, crop=crop, session=session, motion_sliders=motion_sliders,
                  identity_sliders=identity_sliders, edited=edited, motion_json=motion_json,
                  identity_json=identity_json, info=info, expression_sliders=expression_sliders)

    load_inputs = [image, *crop.all, motion_json, identity_json]
    load_outputs = [session, *tab.sliders, edited, motion_json, identity_json, info]
    load_face = gpu_task(handlers.load_face, GPU_SECONDS_IMAGE)
    # Forget the old face first, so that a portrait without a face leaves no stale one behind.
    gr.on([image.change, crop.auto_crop.change, crop.scale.release, crop.offset_x.release, crop.offset_y.release],
          handlers.forget_face, outputs=[session, edited, info, *expression_sliders], queue=False,
          api_visibility="private",
          ).then(load_face, inputs=load_inputs, outputs=load_outputs, api_name="load_face",
                 api_visibility="undocumented")
    # Live: every move re-renders; "always_last" drops the moves made while one renders.
    gr.on([s.input for s in tab.sliders], gpu_task(handlers.render, GPU_SECONDS_IMAGE),
          inputs=[session, *tab.sliders], outputs=[edited, motion_json, identity_json], api_name="edit_sliders",
          api_visibility="undocumented", trigger_mode="always_last", show_progress="hidden", concurrency_id="edit")
    gr.on([s.input for s in expression_sliders], gpu_task(handlers.render_expression, GPU_SECONDS_IMAGE),
          inputs=[session, *expression_sliders, *tab.sliders], outputs=[session, edited, motion_json, identity_json, info],
          api_name="edit_expression", api_visibility="undocumented", trigger_mode="always_last",
          show_progress="hidden", concurrency_id="edit")
    reset.click(gpu_task(handlers.reset, GPU_SECONDS_IMAGE), inputs=[session],
                outputs=[session, *tab.sliders, edited, motion_json, identity_json, *expression_sliders],
                api_visibility="private")
    # The /edit API's last input: expression changes as JSON; the button applies the offsets alone
    # (the JSON boxes already hold the solved offsets).
    no_expression = gr.Textbox("{}", visible=False, label="Expression changes (JSON)")
    apply.click(gpu_task(handlers.edit, GPU_SECONDS_IMAGE),
                inputs=[image, motion_json, identity_json, *crop.all, no_expression],
                outputs=[edited], api_name="edit", concurrency_id="edit",
                ).success(handlers.sliders_from_json, inputs=[session, motion_json, identity_json],
                          outputs=[session, *tab.sliders, *expression_sliders], api_visibility="private")

    with gr.Accordion("Descriptors of this face (JSON)", open=False):
        show = gr.Button("Show descriptors")
        descriptors = gr.JSON(label="Descriptors")
    show.click(gpu_task(handlers.descriptors, GPU_SECONDS_IMAGE), inputs=[image, *crop.all],
               outputs=[descriptors], api_name="descriptors", concurrency_id="edit")

    portrait = _example(EXAMPLE_PORTRAIT)
    if portrait:
        # Each example sets the portrait, the default crop and the preset offsets, then loads them.
        crop_defaults = [True, DEFAULT_SCALE, DEFAULT_OFFSET_X, DEFAULT_OFFSET_Y]
        gr.Examples([[portrait, *crop_defaults, m, i] for _, m, i in EDIT_PRESETS], inputs=load_inputs,
                    outputs=load_outputs, fn=load_face, run_on_click=True, cache_examples=False,
                    example_labels=[label for label, _, _ in EDIT_PRESETS], label="Examples (preset offsets)")
    return tab


def build_video_edit_section(handlers: AppHandlers, edit: EditTab, animate: AnimateTab) -> None:
    """The Edit tab's offsets applied to every frame of a video (the driving video or a result)."""
    with gr.Accordion("Apply these offsets to a video", open=False):
        gr.Markdown("Every frame's face is found, encoded, moved by the offsets above and pasted back.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(sources=["upload"], label="Video to edit", height=280)
                with gr.Row():
                    take_result = gr.Button("Use the animated result", size="sm")
                    take_driving = gr.Button("Use the driving video", size="sm")
                keep_audio = gr.Checkbox(True, label="Keep audio")
                run = gr.Button("Edit video", variant="primary")
            edited_video = gr.Video(label="Edited video", interactive=False, height=280, elem_id="sfd-edited-video")
    take_result.click(lambda v: v, inputs=animate.result, outputs=video, queue=False, api_visibility="private")
    take_driving.click(lambda v: v, inputs=animate.driving, outputs=video, queue=False, api_visibility="private")
    run.click(gpu_task(handlers.edit_video, GPU_SECONDS_VIDEO),
              inputs=[video, edit.motion_json, edit.identity_json, edit.crop.auto_crop, keep_audio],
              outputs=[edited_video], api_name="edit_video", concurrency_limit=1, concurrency_id="video")


# ---------------------------------------------------------------------- the page
def build_demo(loaded: LoadedWeights, settings: AppSettings | None = None) -> gr.Blocks:
    """The whole app around an already loaded pipeline (tests build it with any model)."""
    settings = settings or AppSettings()
    handlers = AppHandlers(loaded, settings)
    # Outputs older than cache_seconds are deleted, checked every quarter of that.
    cache = (max(60, settings.cache_seconds // 4), settings.cache_seconds)
    with gr.Blocks(title=TITLE, delete_cache=cache, analytics_enabled=False) as demo:
        gr.Markdown(header_markdown(loaded, settings), elem_id="sfd-header")
        with gr.Tabs():
            with gr.Tab("Animate", id="animate"):
                animate = build_animate_tab(handlers)
            with gr.Tab("Edit", id="edit"):
                edit = build_edit_tab(handlers)
                build_video_edit_section(handlers, edit, animate)
        demo.load(handlers.announce_weights, api_visibility="private")
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    demo.sfd_handlers = handlers  # for tests and benchmarks
    return demo


def create_demo(settings: AppSettings | None = None) -> gr.Blocks:
    """The app as configured by the environment: weights from SFD_WEIGHTS or the bundled default."""
    settings = settings or AppSettings.from_env()
    loaded = load_weights(settings.weights, settings.revision, settings.device)
    if loaded.problem:
        log.warning("%s", loaded.problem)
    detector = loaded.pipeline.face_detector
    log.info("SFD app: %s on %s; face detector %s %s", loaded.name, loaded.pipeline.device,
             getattr(detector, "name", None), getattr(detector, "fallback_reasons", None) or "")
    return build_demo(loaded, settings)


def mcp_available() -> bool:
    """Whether Gradio's MCP server can run here (gradio[mcp] installed)."""
    if importlib.util.find_spec("mcp") is None:
        return False
    try:
        import gradio.mcp  # noqa: F401
    except ImportError:
        return False
    return True


def launch_options(settings: AppSettings | None = None) -> dict:
    """`demo.launch(**launch_options())`: upload limit and the MCP switch."""
    settings = settings or AppSettings.from_env()
    mcp = settings.mcp
    if mcp and not mcp_available():
        log.warning('SFD_MCP is set but the MCP server is off: install it with pip install "gradio[mcp]"')
        mcp = False
    return {"max_file_size": settings.max_file_size, "mcp_server": mcp}
