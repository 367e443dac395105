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


def run_command(action, errors: tuple[type[Exception], ...] = (SFDError,)) -> int:
    """The exit status of a command-line action, with the one error convention of every sfd command.

    `action()` does the work and returns what to print (or None); bad input (`errors`, SFDError by
    default) is printed as `error: ...` on stderr with exit status 2 instead of a traceback.
    """
    import sys

    try:
        message = action()
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if message:
        print(message)
    return 0
