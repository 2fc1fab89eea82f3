"""Latent vectors as .npy files: written for download, read from uploads without unpickling."""

from __future__ import annotations

import io
import math
import operator

import numpy as np
import numpy.typing as npt

from malgan.errors import LatentError

# The magic bytes that open every .npy file, and those that open an .npz (zip) archive.
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
# .npy header versions whose header numpy can read through its public functions.
NPY_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def latent_to_npy(z: npt.ArrayLike) -> bytes:
    """Serialises latent vectors as a float32 .npy file (no pickle).

    Args:
        z: Latent vectors [z_dim] or [N, z_dim].

    Returns:
        The bytes of the .npy file.

    Raises:
        LatentError: If z is not 1-D or 2-D numbers or holds non-finite values.
    """
    array = np.asarray(z)
    if array.dtype.kind not in "fiu":
        raise LatentError(f"Latent vectors must be numbers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise LatentError(
            f"Latent vectors must have shape [z_dim] or [N, z_dim], got {array.shape}"
        )
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise LatentError("Latent vectors hold NaN or infinite values")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _read_header(data: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    """Parses an .npy header; returns (shape, dtype, offset of the array data)."""
    if not data:
        raise LatentError("The latent file is empty.")
    if data.startswith(ZIP_MAGIC):
        raise LatentError(
            "The latent file is an .npz archive; upload a single .npy array "
            "(saved with numpy.save) instead."
        )
    if not data.startswith(NPY_MAGIC):
        raise LatentError("The latent file is not a .npy file (it lacks the .npy signature).")
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        reader = NPY_READERS.get(version)
        if reader is None:
            raise LatentError(
                f"The latent file uses .npy format version {version[0]}.{version[1]}, "
                "which is not supported; save it again with numpy.save."
            )
        shape, _, dtype = reader(stream)
    except LatentError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise LatentError(f"The latent file has a damaged .npy header ({error}).") from None
    return tuple(shape), dtype, stream.tell()


def latent_from_npy(data: bytes, *, z_dim: int) -> np.ndarray:
    """Reads latent vectors from the bytes of a .npy file, never unpickling anything.

    Args:
        data: Bytes of a .npy file holding a numeric array [z_dim] or [N, z_dim].
        z_dim: Length of each latent vector the model needs.

    Returns:
        float32 array [N, z_dim] (a single vector becomes one row).

    Raises:
        LatentError: For empty or non-.npy bytes, a damaged or truncated file, Python objects
            or non-numeric values, a wrong shape, no vectors, or NaN/infinite values.
        TypeError: If data is not bytes-like or z_dim not an integer.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    z_dim = operator.index(z_dim)
    if z_dim < 1:
        raise ValueError(f"z_dim must be >= 1, got {z_dim}")
    data = bytes(data)

    shape, dtype, offset = _read_header(data)
    if dtype.hasobject:
        raise LatentError(
            "The latent file holds Python objects (pickled data), which are never loaded; "
            "save a plain float array."
        )
    if dtype.kind not in "fiu":
        raise LatentError(
            f"The latent file holds values of type {dtype}, but latent vectors must be numbers."
        )
    if len(shape) not in (1, 2):
        raise LatentError(
            f"The latent file holds shape {shape}, but it must be [{z_dim}] for one cell "
            f"or [N, {z_dim}] for N cells."
        )
    if shape[-1] != z_dim:
        raise LatentError(
            f"The latent file holds shape {shape} but this model needs {z_dim} values per cell."
        )
    if math.prod(shape) == 0:
        raise LatentError("The latent file holds no latent vectors.")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected:
        raise LatentError(
            f"The latent file is truncated or damaged: its header promises {expected} bytes of "
            f"values but it holds {len(data) - offset}."
        )
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise LatentError(f"The latent file could not be read ({error}).") from None

    with np.errstate(over="ignore"):
        z = np.asarray(array, dtype=np.float32).reshape(-1, z_dim)
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        raise LatentError(
            f"The latent file holds NaN or infinite values (or values too large for float32), "
            f"first in row {int(np.argmax(bad))}."
        )
    return z
