"""Metric functions of the paper protocol (FOMM/LIA): L1, PSNR, SSIM, AKD, AED, ID similarity.

Images are channels-last, as frames come out of `sfd.media`: ``(H, W, C)`` for one image or
``(N, H, W, C)`` for a batch, numpy arrays or torch tensors, either uint8 (0..255) or float in
[0, 1]. Each function returns one value per image: a float for a single image, a float64 numpy
array of shape ``(N,)`` for a batch. Average over frames with ``.mean()``.

Keypoints are ``(K, 2)`` or ``(N, K, 2)`` arrays of (x, y) in pixels; embeddings ``(D,)`` or
``(N, D)``. The network-based metrics (LPIPS, and the networks that give keypoints and
embeddings) live in `lpips.py`, `landmarks.py` and `identity.py`.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# SSIM as Wang et al. (2004) define it: an 11-tap Gaussian window of sigma 1.5, K1 = 0.01,
# K2 = 0.03, population (not sample) covariances. scikit-image gives the same numbers with
# `structural_similarity(a, b, data_range=1, channel_axis=-1, gaussian_weights=True,
# sigma=1.5, use_sample_covariance=False)`, which the tests check.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scipy's truncation of the Gaussian at 3.5 sigma
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _unit_images(images, name: str) -> tuple[torch.Tensor, bool]:
    """`images` as float64 (N, C, H, W) in [0, 1], and whether a single image was given."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    x = x.detach().cpu()
    if x.ndim == 2:  # one grey image
        x = x[..., None]
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{name}: expected (H, W, C) or (N, H, W, C) images, got shape {tuple(x.shape)}")
    x = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
    return x.permute(0, 3, 1, 2), single


def image_pair(a, b) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Two image batches as float64 (N, C, H, W) in [0, 1] of one shape, and whether single images came."""
    x, single = _unit_images(a, "first images")
    y, _ = _unit_images(b, "second images")
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return x, y, single


def per_image(values: torch.Tensor, single: bool):
    """Per-image values as a float (one image) or a float64 array (a batch)."""
    out = values.double().numpy()
    return float(out[0]) if single else out


def l1(a, b):
    """Mean absolute difference of pixel values in [0, 1] (FOMM's reconstruction L1)."""
    x, y, single = image_pair(a, b)
    return per_image((x - y).abs().mean(dim=(1, 2, 3)), single)


def psnr(a, b):
    """Peak signal-to-noise ratio in dB with a data range of 1; infinite for identical images."""
    x, y, single = image_pair(a, b)
    mse = (x - y).square().mean(dim=(1, 2, 3))
    return per_image(10.0 * torch.log10(1.0 / mse), single)


def _gaussian_window() -> torch.Tensor:
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    window = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return window / window.sum()


def ssim(a, b):
    """Structural similarity (Wang et al. 2004), averaged over pixels and channels.

    Only windows that lie wholly inside the image count (the border of SSIM_RADIUS pixels is
    left out, as scikit-image does), so the padding mode plays no part. Images need at least
    11 pixels on a side.
    """
    x, y, single = image_pair(a, b)
    n, c, h, w = x.shape
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} px on a side, got {h}x{w}")
    g = _gaussian_window()
    # A separable Gaussian filter per channel, "valid" only.
    rows = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    cols = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return per_image(s.mean(dim=(1, 2, 3)), single)


def _points(values, name: str, last: int | None = None) -> np.ndarray:
    arr = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float64)
    if last is not None and (arr.ndim < 2 or arr.shape[-1] != last):
        raise ValueError(f"{name}: expected (..., K, {last}) keypoints, got shape {arr.shape}")
    return arr


def _result(values: np.ndarray):
    return float(values) if np.ndim(values) == 0 else values


def akd(keypoints_a, keypoints_b):
    """Average keypoint distance: the mean over K keypoints of the Euclidean distance, per frame.

    `keypoints_*`: (K, 2) or (N, K, 2), in pixels (the unit of the result).
    """
    a, b = _points(keypoints_a, "keypoints_a", 2), _points(keypoints_b, "keypoints_b", 2)
    if a.shape != b.shape:
        raise ValueError(f"keypoint sets differ in shape: {a.shape} vs {b.shape}")
    return _result(np.linalg.norm(a - b, axis=-1).mean(axis=-1))


def aed(embeddings_a, embeddings_b):
    """Average Euclidean distance of identity embeddings: ||e_a - e_b|| per frame."""
    a, b = _points(embeddings_a, "embeddings_a"), _points(embeddings_b, "embeddings_b")
    if a.shape != b.shape:
        raise ValueError(f"embeddings differ in shape: {a.shape} vs {b.shape}")
    return _result(np.linalg.norm(a - b, axis=-1))


def identity_similarity(embeddings, reference):
    """Cosine similarity of identity embeddings to a reference (e.g. the source face's).

    `reference` may be one embedding (D,) that every row of `embeddings` is compared with.
    """
    a, b = _points(embeddings, "embeddings"), _points(reference, "reference")
    a, b = np.broadcast_arrays(a, b)
    dot = (a * b).sum(axis=-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return _result(dot / np.maximum(norms, 1e-12))


def motion_error(generated, source, driving, driving_reference):
    """Cross-identity motion error: how far the animated face's keypoints are from where the
    driver's motion should have put them.

    The expected keypoints are the source's moved by the driver's displacement since its
    reference frame, ``source + (driving - driving_reference)``, which is what relative motion
    asks for; identity-specific face shape cancels out of the displacement. The result is the
    AKD between the generated keypoints and these expected ones, per frame.
    `generated`, `driving`: (N, K, 2); `source`, `driving_reference`: (K, 2).
    """
    g = _points(generated, "generated", 2)
    expected = _points(source, "source", 2) + (_points(driving, "driving", 2) - _points(driving_reference,
                                                                                          "driving_reference", 2))
    return akd(g, np.broadcast_to(expected, g.shape))


def face_detail(images, keypoints):
    """How much fine detail a face shows: the mean absolute Laplacian (3 x 3) of the luma, 0..255
    units, inside the bounding box of its landmarks; NaN where a frame has no face (NaN points).

    A face rendered at a model's 64 px and enlarged loses it while its landmarks stay right, so the
    ratio of an output's to the source's is what the correlations and LPIPS-free cross-identity
    scores cannot see. `images`: (H, W, 3) or (N, H, W, 3) uint8; `keypoints`: (K, 2) or (N, K, 2).
    """
    frames = np.asarray(images)
    single = frames.ndim == 3
    frames = frames[None] if single else frames
    points = _points(keypoints, "keypoints", 2)
    points = points[None] if points.ndim == 2 else points
    if len(points) != len(frames):
        raise ValueError(f"{len(frames)} images but {len(points)} landmark sets")
    values = np.full(len(frames), np.nan)
    for i, (frame, face) in enumerate(zip(frames, points)):
        if not np.isfinite(face).all():
            continue
        h, w = frame.shape[:2]
        (x0, y0), (x1, y1) = np.floor(face.min(0)).astype(int), np.ceil(face.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        luma = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
        values[i] = float(np.abs(cv2.Laplacian(luma, cv2.CV_32F, ksize=1))[1:-1, 1:-1].mean())
    return _result(values[0] if single else values)
