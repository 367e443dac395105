"""Errors that reach the user: each says what went wrong with which input, in plain words."""


class SFDError(ValueError):
    """Base class of every error sfd raises on bad input; the UI shows its message as it is."""


class ImageError(SFDError):
    """An image that cannot be read, or that is too large or otherwise unusable."""


class VideoError(SFDError):
    """A video that cannot be read, or that is too long, empty or otherwise unusable."""


class NoFaceError(SFDError):
    """No face was found where one is needed."""


class WeightsError(SFDError):
    """Model or detector weights that are missing, incomplete or of the wrong shape."""
