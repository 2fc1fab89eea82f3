"""malgan's error types, below every module that raises or catches them."""

from __future__ import annotations


class ModelError(RuntimeError):
    """An exported model or its metadata is missing, corrupt or of the wrong kind."""


class DataError(ValueError):
    """A dataset or image that cannot be used; the message names the path."""


class ImageDecodeError(DataError):
    """An image file that cannot be decoded.

    Attributes:
        name: The file name (or the name given for bytes and file objects).
        reason: Why it cannot be used, e.g. ``"is truncated"``.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageDecodeError], tuple[str, str]]:
        # Keeps the error picklable across worker processes despite the two-argument constructor.
        return type(self), (self.name, self.reason)


class LatentError(ValueError):
    """A latent file that cannot be used; the message says why in words a user can act on."""


class SynthError(ValueError):
    """A synthetic-dataset export cannot start or finish; the message says why and what to do."""
