"""The one exception type for bad user input: the CLI prints it as a single line; and
warnings said as lines too (``warnings_as_lines``)."""

import contextlib
import warnings
from typing import Callable


class PerceptregError(ValueError):
    """Bad input (a file, a parameter, a model) with a message that says what to do.

    Subclasses ``ValueError`` so library users can catch it as the usual type.
    """


# Kinds of bad input that a caller may answer differently (the explorer: HTTP 413, 415, 409)
class TooLargeError(PerceptregError):
    """Input over a size limit: an upload's bytes, an image's pixels."""


class FormatError(PerceptregError):
    """A file of a format that is not read (a GIF where PNG or JPEG is taken)."""


class NotAvailableError(PerceptregError):
    """A request that this model or run cannot serve (a latent walk of a run of `attach`)."""


@contextlib.contextmanager
def warnings_as_lines(say: Callable[[str], None]):
    """The library's warnings (a collapsed decoder, a torn metrics line, ...) said as one
    "Warning: ..." line each, when they happen (a split of the data is said before the
    20 minutes of work it shapes, not after), not in Python's file:line format."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = lambda message, *where, **more: say(f"Warning: {message}")
        yield
