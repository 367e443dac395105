"""`SFDPipeline`: reenactment and descriptor editing of real images and videos.

The engine behind the CLI and the app: it finds and crops faces, runs the model (source encoded
once, driving frames streamed in batches), pastes the result back into the original frame and
writes an H.264 video with the driver's audio. Memory does not grow with the driving video.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NoFaceError, SFDError, VideoError, WeightsError
from ..face import DEFAULT_OFFSET_X, DEFAULT_OFFSET_Y, DEFAULT_SCALE, CropBox, FaceDetector, FaceTracker
from ..face import crop as crop_image
from ..face import load_face_detector, paste_back
from ..face.tracker import FirstFace, find_first_face
from ..media import VideoReader, VideoWriter, load_image, probe_video
from ..models import BUNDLED_WEIGHTS, SFDModel
from ..expression_strength import check_expression_strength
from ..semantics.face_measures import face_mesh
from .amplitude import CALIBRATION_FRAMES, MEASURE_SIDE, AmplitudeMatch, matched_strength
from .animation_result import AnimationResult
from .detail_transfer import DetailLayer, add_detail, add_fine_detail, detail_layer, detail_layers, source_coordinates
from .face_retargeting import DRIVER_SIDE, FaceRetargeting
from .motion_smoother import MotionSmoother
from .side_by_side import side_by_side
from .source_face import SourceFace

# Sources larger than this (longest side, px) are downscaled on load: the face crop is the
# model's size anyway, and the output video stays playable and fast to encode.
MAX_SOURCE_SIDE = 2048
# The small demo model that ships inside the package (fp16 only, to keep the package small;
# SFDModel.from_pretrained finds that file by itself).
# A tracked driver box (driver_box="track"): detect the face in every k-th frame, the smoothed box
# glides in between.
DETECT_EVERY = 5
DRIVER_BOXES = ("fixed", "track")  # the driver's crop box: the first face's for the whole clip, or followed

ProgressCallback = Callable[[int, int], None]


def _check_driver_box(driver_box: str) -> None:
    if driver_box not in DRIVER_BOXES:
        raise SFDError(f"driver_box must be one of {', '.join(DRIVER_BOXES)}, got {driver_box!r}")


def _in_crop_sides(flow: torch.Tensor) -> np.ndarray:
    """The generator's flow (grid_sample units: 2 across the crop) in crop sides, as `paste_back` takes it."""
    return flow.float().cpu().numpy() / 2


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SFDPipeline:
    """Face reenactment and editing with an `SFDModel` and a face detector.

    Build it with `SFDPipeline.from_pretrained(weights)`; or from a model and detector in hand.
    """

    def __init__(self, model: SFDModel, face_detector: FaceDetector | None = None,
                 device: torch.device | str | None = None, detail_transfer: bool = True):
        """`detail_transfer`: paste faces back with the source's own fine detail, moved by the
        model's flow, rather than the model-size face upsampled (see `detail_transfer`)."""
        self.device = torch.device(device) if device is not None else default_device()
        # Needs the generator's image-level warp: its flow and mask say where the source moved to.
        self.detail_transfer = detail_transfer and bool(model.config.image_warp)
        # channels_last: the convolution backends are markedly faster with it (benchmarks/).
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.face_detector = face_detector
        self.size = model.config.size
        self.descriptor_size = model.config.descriptor_size or self.size
        if self.device.type == "cuda":
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.autocast_dtype = None

    @classmethod
    def from_pretrained(cls, weights: str | os.PathLike | None = None, revision: str | None = None,
                        device: torch.device | str | None = None, detector: str = "auto",
                        variant: str | None = None, detail_transfer: bool = True) -> "SFDPipeline":
        """Load model weights from a local folder or a Hub repo id (with `revision`).

        No `weights`: the small demo model bundled with the package (`BUNDLED_WEIGHTS`). The face
        detector is RetinaFace when the weights hold `detector/retinaface_resnet50.safetensors`,
        otherwise the best detector whose weights ship in an installed package (`.face_detector.name`).
        """
        if weights is None:
            if not BUNDLED_WEIGHTS.is_dir():
                raise WeightsError(f"no SFD weights given and no bundled weights at {BUNDLED_WEIGHTS}: "
                                   "pass a local weights folder or a Hub repo id")
            weights = BUNDLED_WEIGHTS
        device = torch.device(device) if device is not None else default_device()
        model = SFDModel.from_pretrained(str(weights), revision=revision, variant=variant,
                                         torch_dtype=torch.float32)
        face_detector = load_face_detector(str(weights), prefer=detector, device=device, revision=revision)
        return cls(model, face_detector, device=device, detail_transfer=detail_transfer)

    # ------------------------------------------------------------------ helpers
    def _inference(self):
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype))
        return stack

    def _to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (n, h, w, 3) -> float (n, 3, h, w) in [-1, 1] on the device, channels_last."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def _to_uint8(images: torch.Tensor) -> np.ndarray:
        """float (n, 3, h, w) in [-1, 1] -> uint8 (n, h, w, 3)."""
        x = images.float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def _detector(self) -> FaceDetector:
        if self.face_detector is None:
            self.face_detector = load_face_detector(None, device=self.device)
        return self.face_detector

    # ------------------------------------------------------------------ source
    def prepare_source(self, image, crop: bool = True, scale: float = DEFAULT_SCALE,
                       offset_x: float = DEFAULT_OFFSET_X, offset_y: float = DEFAULT_OFFSET_Y) -> SourceFace:
        """Load, find the face, crop and encode a source portrait, once.

        `image`: a path, bytes, PIL image or RGB/grayscale/RGBA array. Raises ImageError for an
        unreadable image and NoFaceError when `crop` is on and no face is found.
        """
        if isinstance(image, SourceFace):
            return image
        pixels = load_image(image, max_side=MAX_SOURCE_SIDE)
        h, w = pixels.shape[:2]
        if crop:
            detector = self._detector()
            face = detector.detect_single(pixels)
            box, detector_name = CropBox.from_face(face, scale, offset_x, offset_y), detector.name
        else:
            box, detector_name = CropBox.full_frame(h, w), "none"
        box = box.on_pixels()  # the face's detail is then cropped and pasted back without resampling
        face_crop = crop_image(pixels, box, self.size)
        with self._inference():
            descriptors = self.model.encode(self._to_tensor(face_crop[None]))
        detail = detail_layer(pixels, box, face_crop, self.device) if self.detail_transfer else None
        rest_flow = None
        if crop:  # the flow of the face drawn as it is: what the crop's motion is measured from
            with self._inference():
                latent = self.model.compose(descriptors.identity, descriptors.motion)
                rest_flow = _in_crop_sides(self.model.generate(latent, descriptors.features, return_warp=True)[1])[0]
        return SourceFace(image=pixels, box=box, crop=face_crop, descriptors=descriptors, detector=detector_name,
                          detail=detail, rest_flow=rest_flow)

    def descriptors(self, image, crop: bool = True) -> dict[str, np.ndarray]:
        """The identity (D - N,) and motion (N,) descriptors of the face in `image`."""
        source = self.prepare_source(image, crop=crop)
        return {"identity": source.identity, "motion": source.motion}

    # ------------------------------------------------------------------ editing
    def edit(self, source, motion_offsets: Mapping[int, float] | None = None,
             identity_offsets: Mapping[int, float] | None = None, paste_back: bool = True,
             crop: bool = True, expression: Mapping[str, float] | None = None, atlas=None) -> np.ndarray:
        """The source face with chosen descriptor coefficients moved by the given offsets.

        `source`: an image (as for `prepare_source`) or a prepared `SourceFace`, which makes
        repeated edits of one face cheap (no re-encoding). `expression`: changes in physical
        units such as {"mouth_open": 0.3, "yaw": -10} (see `sfd.semantics.expression`), solved
        on this face for motion offsets that are added to `motion_offsets`; `atlas`: the
        weights' `Atlas`, whose measured effects give the solver its first guess. Returns RGB
        uint8: the full image with the edited face pasted back, or the model-size crop without paste-back.
        """
        source = self.prepare_source(source, crop=crop)
        desc = source.descriptors
        if expression:
            from ..semantics.expression import solve_expression

            solved = solve_expression(self, source, expression, atlas).offsets
            motion_offsets = {i: float((motion_offsets or {}).get(i, 0.0)) + solved.get(i, 0.0)
                              for i in {*(motion_offsets or {}), *solved}}
        identity = self._offset(desc.identity, identity_offsets, "identity")
        motion = self._offset(desc.motion, motion_offsets, "motion")
        with self._inference():
            latent = self.model.compose(identity, motion)
        faces, sharp, flows = self._generate(latent, source.descriptors.features, source.detail)
        return self._paste(source, faces, sharp, flows)[0] if paste_back else faces[0]

    @staticmethod
    def _offset(coefficients: torch.Tensor, offsets: Mapping[int, float] | None, kind: str) -> torch.Tensor:
        if not offsets:
            return coefficients
        count = coefficients.shape[1]
        moved = coefficients.clone()
        for index, value in offsets.items():
            if not 0 <= int(index) < count:
                raise SFDError(f"{kind} coefficient {index} does not exist: this model has {count} (0..{count - 1})")
            if not np.isfinite(value):
                raise SFDError(f"{kind} offset for coefficient {index} is not a finite number: {value}")
            moved[:, int(index)] += float(value)
        return moved

    def edit_video(self, video: str | os.PathLike, output_path: str | os.PathLike, *,
                   motion_offsets: Mapping[int, float] | None = None,
                   identity_offsets: Mapping[int, float] | None = None, crop: bool = True, keep_audio: bool = True,
                   scale: float = DEFAULT_SCALE, offset_x: float = DEFAULT_OFFSET_X,
                   offset_y: float = DEFAULT_OFFSET_Y, batch_size: int = 8, max_duration: float | None = None,
                   progress: ProgressCallback | None = None) -> Path:
        """Every frame of `video` with its face's descriptors moved by the offsets; returns the path.

        The face is tracked (smoothed crop boxes, as for a driver with `driver_box="track"`: each
        frame is its own source, so its crop must follow its face), each batch of crops is
        encoded at once, edited and pasted back into its frame; `crop=False` edits whole frames
        (already-cropped clips). Frame rate, frame count and (with `keep_audio`) the audio stay.
        """
        info = probe_video(video, max_duration=max_duration)
        tracker = FaceTracker(self._detector() if crop else None, mode="smooth" if crop else "full",
                              every=DETECT_EVERY, scale=scale, offset_x=offset_x, offset_y=offset_y)
        done = 0
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(VideoReader(video, batch_size=batch_size, info=info))
            writer = stack.enter_context(VideoWriter(output_path, info.fps, audio_source=video if keep_audio else None,
                                                     keep_audio=keep_audio))
            for frames in reader:
                try:
                    boxes = [tracker(f) for f in frames]
                except NoFaceError as error:
                    raise NoFaceError(f"video {Path(video).name}: {error}") from None
                crops = np.stack([crop_image(f, b, self.size) for f, b in zip(frames, boxes)])
                with self._inference():
                    desc = self.model.encode(self._to_tensor(crops))
                    identity = self._offset(desc.identity, identity_offsets, "identity")
                    motion = self._offset(desc.motion, motion_offsets, "motion")
                    latent = self.model.compose(identity, motion)
                    # Each frame is its own source: crop, descriptors, detail and, where there is a
                    # picture around its face, the flow of its face unedited (what the edit moves it from).
                    unedited = self.model.compose(desc.identity, desc.motion) if crop else None
                    rest = None if unedited is None else self.model.generate(unedited, desc.features, return_warp=True)[1]
                detail = detail_layers(frames, boxes, crops, self.device) if self.detail_transfer else None
                faces, sharp, flows = self._generate(latent, desc.features, detail)
                moved = [None] * len(frames) if rest is None else flows - _in_crop_sides(rest)
                writer.write(np.stack([paste_back(f, face, b, flow=m) for f, face, b, m
                                       in zip(frames, faces if sharp is None else sharp, boxes, moved)]))
                done += len(frames)
                if progress is not None:
                    progress(done, max(info.frame_count, done))
        return Path(output_path)

    def _strength_map(self, expression_strength: float, atlas, match_amplitude: bool = False) -> torch.Tensor | None:
        """The atlas's map that scales the driver's expression changes, on the model's device (None
        at strength 1: nothing to do). Checked at the call, before any frame is read."""
        check_expression_strength(expression_strength)
        if expression_strength == 1.0 and not match_amplitude:
            return None
        if atlas is None:
            raise SFDError("an expression strength other than 1, or matching the driver's amplitude, needs the "
                           "weights' direction atlas (atlas.json)")
        if len(atlas) != self.model.config.motion_dim:
            raise SFDError(f"the direction atlas has {len(atlas)} directions, this model "
                           f"{self.model.config.motion_dim} motion coefficients: it belongs to other weights")
        mapped = atlas.expression_strength_map(float(expression_strength))  # raises for an atlas without effects
        if expression_strength == 1.0:
            return None
        return torch.as_tensor(mapped, dtype=torch.float32, device=self.device)

    def _render(self, latent: torch.Tensor, features, detail: DetailLayer | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, np.ndarray]:
        """Model-size faces for these latents ([-1, 1]); with a detail layer the same faces at its
        working side with that detail moved into them (else None), and where the layer has fine
        detail beyond that side, where each of their pixels took its content from in the source
        crop (`source_coordinates`, else None); and the generator's final flows (B, 2, h, w) in
        crop sides, for the paste-back."""
        with self._inference():
            images, flow, _ = self.model.generate(latent, features, return_warp=True)
            sharp = coordinates = None
            if detail is not None:
                coordinates = source_coordinates(flow, detail.side)
                sharp = add_detail(images, flow, detail, coordinates)
                if detail.fine is None:  # nothing to move in at a larger side
                    coordinates = None
        return images, sharp, coordinates, _in_crop_sides(flow)

    def _sharp_uint8(self, sharp: torch.Tensor, coordinates: torch.Tensor | None, detail: DetailLayer,
                     gain: torch.Tensor | None = None) -> np.ndarray:
        """Faces at the detail's working side as uint8 at its full side, the fine detail moved in
        (`add_fine_detail`), a frame at a time: a large face's batch would hold gigabytes."""
        if coordinates is None:
            return self._to_uint8(sharp)
        fine = detail.fine
        return np.concatenate([self._to_uint8(add_fine_detail(
            sharp[i:i + 1], coordinates[i:i + 1], fine[i:i + 1] if len(fine) > 1 else fine,
            None if gain is None else gain[i:i + 1])) for i in range(len(sharp))])

    def _generate(self, latent: torch.Tensor, features, detail: DetailLayer | None
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """`_render`'s faces as uint8 images (those with the source's detail at its full side), and its flows."""
        images, sharp, coordinates, flows = self._render(latent, features, detail)
        return self._to_uint8(images), None if sharp is None else self._sharp_uint8(sharp, coordinates, detail), flows

    @staticmethod
    def _paste(source: SourceFace, faces: np.ndarray, sharp: np.ndarray | None, flows: np.ndarray) -> np.ndarray:
        """A batch of `_generate`'s faces pasted into the source image: the faces at paste
        resolution with the source's detail where there are some (`sharp`), else the model-size
        ones; each flow's change from the source's own moves the image around the face with it."""
        moved = [None] * len(flows) if source.rest_flow is None else flows - source.rest_flow
        return np.stack([paste_back(source.image, face, source.box, flow=m)
                         for face, m in zip(faces if sharp is None else sharp, moved)])

    # ------------------------------------------------------------------ animation
    def _driving_tracker(self, crop_driving: bool, scale: float, offset_x: float, offset_y: float,
                         first: FirstFace, driver_box: str) -> FaceTracker:
        """The driver's tracker, to be called from the first face's frame on (its box is known).

        `driver_box`: "fixed" keeps the first face's box for the whole clip, so that the head's
        shifts and the camera's zoom reach the motion descriptors (the whole-frame landmark error
        falls from 1.00x to 0.33x doing nothing's on the test clips); "track" follows the face
        with smoothed boxes, for a head that leaves its first box, at the price of that motion.
        """
        mode = ("fixed" if driver_box == "fixed" else "smooth") if crop_driving else "full"
        tracker = FaceTracker(self._detector() if crop_driving else None, mode=mode,
                              every=DETECT_EVERY, scale=scale, offset_x=offset_x, offset_y=offset_y)
        tracker.start_from(first.box)
        return tracker

    def _first_driving_face(self, frames: Iterable[np.ndarray], crop_driving: bool, scale: float, offset_x: float,
                            offset_y: float, name: str) -> FirstFace | None:
        """Where the driver's face first shows: frame 0 of a clip taken whole; None when there are no frames.

        Raises NoFaceError, naming `name`, when no frame shows a face.
        """
        if not crop_driving:
            frame = next(iter(frames), None)
            return None if frame is None else FirstFace(0, frame, CropBox.full_frame(*frame.shape[:2]))
        seen = 0

        def counted():
            nonlocal seen
            for frame in frames:
                seen += 1
                yield frame

        detector = self._detector()
        first = find_first_face(detector, counted(), scale, offset_x, offset_y)
        if first is None and seen:
            raise NoFaceError(f"{name}: No face was found in any of its {seen} frames (detector: {detector.name}); "
                              "if it is already a face crop, turn off cropping of the driving video.")
        return first

    def _animate_batches(self, source: SourceFace, driving_batches: Iterable[np.ndarray], first: FirstFace,
                         tracker: FaceTracker, relative: bool, smoothing: float,
                         strength_map: torch.Tensor | None, match: AmplitudeMatch | None = None,
                         retargeting: FaceRetargeting | None = None):
        """Yields (driving frames, their crop boxes, animated model-size faces, the same faces at
        paste resolution with the source's detail or None, their flows) per batch, from the clip's frame 0.

        `first` is the reference of relative motion; the frames before it (no face yet) take its
        box and its motion, so they show the source as the first face poses it. `strength_map`
        (from `Atlas.expression_strength_map`) maps each frame's motion change from the reference.
        `match`: choose the strength on the driver's first `CALIBRATION_FRAMES` faces instead
        (`amplitude.matched_strength`; the choice goes into `match.strength`); those frames'
        batches are held until it is chosen. `retargeting`: the driver's blinks, mouth opening
        and head pose moved into the faces after the model (`face_retargeting`).
        """
        smoother = MotionSmoother(smoothing)
        with self._inference():
            first_crop = crop_image(first.frame, first.box, self.descriptor_size)
            reference = self.model.encode(self._to_tensor(first_crop[None]), with_features=False).motion.float()
        if retargeting is not None and retargeting.needs_reference:  # no render the blinks alone do not use
            with self._inference():
                latent = self.model.transfer_motion(source.descriptors, reference, reference if relative else None)
            images, sharp, _, _ = self._render(latent, source.descriptors.features, source.detail)
            with torch.inference_mode():
                retargeting.start(self._to_tensor(crop_image(first.frame, first.box, DRIVER_SIDE)[None]),
                                  (images if sharp is None else sharp).float())
        held: list[tuple] = []  # (frames, boxes, motion) while the strength is being matched
        measured: list[np.ndarray] = []  # the driver's faces (MEASURE_SIDE crops) until the match
        measured_motion: list[torch.Tensor] = []  # and their motion
        start = 0  # index of the batch's first frame in the clip
        for frames in driving_batches:
            matching = match is not None and match.strength is None
            before_face = min(len(frames), max(0, first.index - start))
            start += len(frames)
            boxes = [first.box] * before_face + [tracker(f) for f in frames[before_face:]]
            with self._inference():
                motion = reference.expand(before_face, -1)
                if before_face < len(frames):
                    crops = np.stack([crop_image(f, b, self.descriptor_size)
                                      for f, b in zip(frames[before_face:], boxes[before_face:])])
                    tracked = self.model.encode(self._to_tensor(crops), with_features=False).motion.float()
                    tracked = smoother(tracked)
                    motion = torch.cat([motion, tracked])
                    if matching:
                        measured += [crop_image(f, b, MEASURE_SIDE) for f, b in zip(frames[before_face:],
                                                                                     boxes[before_face:])]
                        measured_motion.append(tracked)
            if not matching or before_face == len(frames):  # no face yet: the reference pose at any strength
                yield self._animated(source, frames, boxes, motion, reference, relative, strength_map, retargeting)
                continue
            held.append((frames, boxes, motion))
            if len(measured) >= CALIBRATION_FRAMES:
                strength_map = self._matched_map(source, reference, measured_motion, measured, match, relative)
                for batch in held:
                    yield self._animated(source, *batch, reference, relative, strength_map, retargeting)
                held = []
        if held:  # a clip shorter than the calibration: matched on what there is
            strength_map = self._matched_map(source, reference, measured_motion, measured, match, relative)
            for batch in held:
                yield self._animated(source, *batch, reference, relative, strength_map, retargeting)

    def _retargeting(self, blinks: bool, mouth: bool, head: bool, relative: bool,
                     expression_strength: float) -> FaceRetargeting | None:
        """A clip's retargeting after the model, or None when none is asked for or the face mesh's
        converted weights are not installed (then it animates without, and says so in the log).
        The head follows the driver's motion since its reference face: with relative motion only."""
        head = head and relative
        if not (blinks or mouth or head):
            return None
        try:
            mesh = face_mesh(self.device)
        except WeightsError as error:
            logging.getLogger(__name__).warning("animating without blink, mouth and head transfer: %s", error)
            return None
        return FaceRetargeting(mesh, blinks=blinks, mouth_strength=expression_strength if mouth else 0.0, head=head)

    def _animated(self, source: SourceFace, frames, boxes, motion: torch.Tensor, reference: torch.Tensor,
                  relative: bool, strength_map: torch.Tensor | None, retargeting: FaceRetargeting | None) -> tuple:
        with self._inference():
            if strength_map is not None:
                motion = reference + (motion - reference) @ strength_map.T
            latent = self.model.transfer_motion(source.descriptors, motion, reference if relative else None)
        images, sharp, coordinates, flows = self._render(latent, source.descriptors.features, source.detail)
        gain = None
        if retargeting is not None:
            with torch.inference_mode():  # the mesh in full precision: lids are a few pixels
                driver = self._to_tensor(np.stack([crop_image(f, b, DRIVER_SIDE) for f, b in zip(frames, boxes)]))
                if sharp is None:
                    (images,) = retargeting(driver, images.float())
                elif coordinates is None:
                    sharp, images = retargeting(driver, sharp.float(), images.float())
                else:  # where the fine detail comes from moves with the face; it darkens with the mouth's
                    # shading and fades where the shut lids are smoothed
                    shade = torch.zeros_like(sharp[:, :1], dtype=torch.float32)  # comes back as -darkening
                    sharp, images, shade, coordinates = retargeting(driver, sharp.float(), images.float(),
                                                                    gains=[shade], maps=[coordinates])
                    gain = shade + 1
        sharp = None if sharp is None else self._sharp_uint8(sharp, coordinates, source.detail, gain)
        return frames, boxes, self._to_uint8(images), sharp, flows

    def _matched_map(self, source: SourceFace, reference: torch.Tensor, motion: list[torch.Tensor],
                     faces: list[np.ndarray], match: AmplitudeMatch, relative: bool) -> torch.Tensor | None:
        """The strength map of `amplitude.matched_strength` on the driver's faces seen so far."""
        def render(moved: torch.Tensor) -> torch.Tensor:  # the faces as they will be shown, at MEASURE_SIDE
            latent = self.model.transfer_motion(source.descriptors, moved, reference if relative else None)
            images, sharp, _, _ = self._render(latent, source.descriptors.features, source.detail)
            shown = images if sharp is None else sharp
            return F.interpolate(shown.float(), size=(MEASURE_SIDE, MEASURE_SIDE), mode="bilinear",
                                 antialias=True, align_corners=False).clamp(-1, 1)

        with self._inference():
            match.strength = matched_strength(render, reference, torch.cat(motion), self._to_tensor(np.stack(faces)),
                                              match.atlas, match.user_strength)
        return self._strength_map(match.strength, match.atlas)

    def iter_animate(self, source: SourceFace, driving_batches: Iterable[np.ndarray], relative: bool = True,
                     crop_driving: bool = True, paste_back: bool = True, smoothing: float = 0.0,
                     scale: float = DEFAULT_SCALE, offset_x: float = DEFAULT_OFFSET_X,
                     offset_y: float = DEFAULT_OFFSET_Y, driver_box: str = "fixed",
                     expression_strength: float = 1.0, atlas=None, match_amplitude: bool = False,
                     blinks: bool = True, mouth: bool = True, head: bool = True) -> Iterator[np.ndarray]:
        """Animated frames (uint8 batches) for batches of driving frames, streaming.

        The first driving frame with a face is the reference of relative motion, and the frames
        before it hold its pose (they are kept in memory until it shows); `crop_driving=False`
        takes each driving frame whole (for clips that are already face crops). `driver_box`:
        "fixed" crops every frame with the first face's box, "track" follows the face.
        `expression_strength`, `match_amplitude` (with the weights' `atlas`), `blinks`, `mouth`, `head`: as
        for `animate`
        (the first `CALIBRATION_FRAMES` faces come out together, once the strength is chosen). A
        wrong `driver_box` or strength raises at the call, not at the first frame.
        """
        _check_driver_box(driver_box)
        strength_map = self._strength_map(expression_strength, atlas, match_amplitude)
        match = AmplitudeMatch(atlas, expression_strength) if match_amplitude else None
        return self._iter_animate(source, iter(driving_batches), relative, crop_driving, paste_back, smoothing,
                                  scale, offset_x, offset_y, driver_box, strength_map, match,
                                  self._retargeting(blinks, mouth, head, relative, expression_strength))

    def _iter_animate(self, source: SourceFace, batches: Iterator[np.ndarray], relative: bool, crop_driving: bool,
                      paste_back: bool, smoothing: float, scale: float, offset_x: float, offset_y: float,
                      driver_box: str, strength_map: torch.Tensor | None, match: AmplitudeMatch | None,
                      retargeting: FaceRetargeting | None) -> Iterator[np.ndarray]:
        held: list[np.ndarray] = []

        def frames():
            for batch in batches:
                held.append(batch)
                yield from batch

        first = self._first_driving_face(frames(), crop_driving, scale, offset_x, offset_y, "the driving video")
        if first is None:
            return
        tracker = self._driving_tracker(crop_driving, scale, offset_x, offset_y, first, driver_box)
        for _, _, faces, sharp, flows in self._animate_batches(source, itertools.chain(held, batches), first,
                                                               tracker, relative, smoothing, strength_map, match,
                                                               retargeting):
            yield self._paste(source, faces, sharp, flows) if paste_back else faces

    def animate(self, source_image, driving_video: str | os.PathLike, output_path: str | os.PathLike, *,
                relative: bool = True, crop: bool = True, crop_driving: bool = True, paste_back: bool = True,
                keep_audio: bool = True, smoothing: float = 0.0, scale: float = DEFAULT_SCALE,
                offset_x: float = DEFAULT_OFFSET_X, offset_y: float = DEFAULT_OFFSET_Y, batch_size: int = 8,
                max_duration: float | None = None, side_by_side_path: str | os.PathLike | None = None,
                progress: ProgressCallback | None = None, driver_box: str = "fixed",
                expression_strength: float = 1.0, atlas=None, match_amplitude: bool = False,
                blinks: bool = True, mouth: bool = True, head: bool = True) -> AnimationResult:
        """Animate the source face with the motion of a driving video; returns the `AnimationResult`
        (path-like: the output video), which also says how many driving frames showed no face.

        The output is an H.264 mp4 at the driver's frame rate with one frame per driving frame,
        the source's size with `paste_back` (else the model's crop size), and the driver's audio
        when it has one and `keep_audio` is on. It appears only when complete. The first driving
        frame with a face is the reference of relative motion; the frames before it (a title card,
        a fade-in) hold its pose. `driver_box="fixed"` (default) crops every later frame with that
        face's box, so the head's shifts in the frame move the portrait too; "track" follows the
        face, and frames that lose it keep the last box. Only a driver without any face is a
        NoFaceError. `expression_strength` scales the part of the driver's motion change (from its
        first face) that moves none of the head measures (yaw, pitch, roll, position, size, as
        the weights' `Atlas` measured them): 1 as the driver, 2 twice as much, 0 none of it; the
        head moves as before. Other than 1 it needs `atlas` (see `Atlas.expression_strength_map`).
        `match_amplitude` (needs `atlas`) multiplies that strength by the gain that makes this
        source's mouth move as widely, for its face's size, as the driver's over its first
        `CALIBRATION_FRAMES` faces (`sfd.pipeline.amplitude`); the result says what was used.
        `blinks` (default on) closes the portrait's eyelids where the driver's close, and widens them
        where the driver's open wider than usual, by an image warp after the model, whose motion has
        no blink (`sfd.pipeline.blink_transfer`); `mouth` (default on) opens the portrait's mouth, for
        its face's size, as far as the driver's opened since its first face, or since a shut mouth
        where that face was caught mid-word (times `expression_strength`), where the model drew it
        less open, and closes it where the model drew it more open (`sfd.pipeline.mouth_transfer`),
        the inside between its lips drawn from the driver's (`sfd.pipeline.mouth_inside`);
        `head` (default on, relative motion only) moves the portrait's head in the image by what the
        model left out of the driver's head motion since its first face: tilt and shift, the shift
        for the portrait's face's size (`sfd.pipeline.pose_transfer`). With `side_by_side_path`, a
        second video shows driver | source | result at the result's height (whole frames with
        `paste_back`, else face crops).
        """
        _check_driver_box(driver_box)
        strength_map = self._strength_map(expression_strength, atlas, match_amplitude)
        match = AmplitudeMatch(atlas, expression_strength) if match_amplitude else None
        source = self.prepare_source(source_image, crop=crop, scale=scale, offset_x=offset_x, offset_y=offset_y)
        info = probe_video(driving_video, max_duration=max_duration)
        name = Path(driving_video).name
        # A pass of its own (stopping at the face), so that a long face-less opening is never held in memory.
        with VideoReader(driving_video, batch_size=batch_size, info=info) as reader:
            first = self._first_driving_face((f for batch in reader for f in batch), crop_driving, scale, offset_x,
                                             offset_y, f"driving video {name}")
        if first is None:
            raise VideoError(f"{name} has no video frames to animate.")
        tracker = self._driving_tracker(crop_driving, scale, offset_x, offset_y, first, driver_box)
        total = info.frame_count
        done = 0
        audio = driving_video if keep_audio else None
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(VideoReader(driving_video, batch_size=batch_size, info=info))
            writer = stack.enter_context(VideoWriter(output_path, info.fps, audio_source=audio, keep_audio=keep_audio))
            panels = None
            if side_by_side_path is not None:
                panels = stack.enter_context(VideoWriter(side_by_side_path, info.fps, audio_source=audio,
                                                         keep_audio=keep_audio))
            for frames, boxes, faces, sharp, flows in self._animate_batches(
                    source, reader, first, tracker, relative, smoothing, strength_map, match,
                    self._retargeting(blinks, mouth, head, relative, expression_strength)):
                results = self._paste(source, faces, sharp, flows) if paste_back else faces
                writer.write(results)
                if panels is not None:
                    # Each panel framed as the result is: whole frames when pasted back, else face crops.
                    drivers = frames if paste_back else [crop_image(f, b, self.size) for f, b in zip(frames, boxes)]
                    shown_source = source.image if paste_back else source.crop
                    panels.write(np.stack([side_by_side(driver, shown_source, result)
                                           for driver, result in zip(drivers, results)]))
                done += len(frames)
                if progress is not None:
                    progress(done, max(total, done))
        return AnimationResult(path=Path(output_path), frame_count=done,
                               faceless_frames=first.index + tracker.faceless_frames,
                               first_face_frame=first.index,
                               tracked=crop_driving and driver_box == "track",
                               watched_frames=tracker.watched_frames, drifted_frames=tracker.drifted_frames,
                               missed_frames=tracker.missed_frames,
                               side_by_side=None if side_by_side_path is None else Path(side_by_side_path),
                               expression_strength=expression_strength if match is None else match.strength)
