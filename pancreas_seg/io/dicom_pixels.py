"""Decoding DICOM pixel data, compressed or not, with errors that name the transfer syntax.

pydicom decodes the compressed transfer syntaxes through plugins: RLE natively, JPEG baseline,
extended, lossless (process 14) and JPEG-LS with pylibjpeg-libjpeg, JPEG 2000 and HTJ2K with
pylibjpeg-openjpeg (all in ``setup.py``). A syntax without an installed decoder is named
in the error, with what would decode it, rather than reported as a corrupt file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from pancreas_seg.errors import InputError

# JPEG, JPEG-LS, JPEG 2000 and HTJ2K streams all end with the marker FF D9 (EOI / EOC); their decoders
# return an image even when the stream is cut, so the marker is checked first.
MARKER_ENDED_SYNTAXES = frozenset(JPEGTransferSyntaxes + JPEGLSTransferSyntaxes + JPEG2000TransferSyntaxes)
END_MARKER = b"\xff\xd9"
FRAME_PADDING = b"\x00\xff"  # bytes some writers put after the end marker to reach an even length


def _transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax (a dataset read without file meta has been given one)."""
    meta = getattr(ds, "file_meta", None) or Dataset()
    return UID(str(meta.get("TransferSyntaxUID", "") or ImplicitVRLittleEndian))


def _undecodable(syntax: UID) -> str | None:
    """Why pixel data in ``syntax`` cannot be decoded here, or None when a decoder is installed."""
    if not syntax.is_transfer_syntax:
        return "not a transfer syntax pydicom knows"
    if not syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return "pydicom has no decoder for this transfer syntax"
    if decoder.is_available:
        return None
    return f"no decoder installed ({'; '.join(decoder.missing_dependencies)})"


def _ends_with_marker(ds: Dataset) -> bool:
    """True when the (single) encapsulated frame ends with FF D9, padding aside."""
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception:  # noqa: BLE001 - broken encapsulation: let the decoder report it
        return True
    return bytes(frame).rstrip(FRAME_PADDING).endswith(END_MARKER)


def decode_pixels(path: Path, ds: Dataset) -> np.ndarray:
    """The stored pixel values ``[rows, columns]`` of a grayscale single-frame image.

    Raises:
        InputError: not grayscale; a transfer syntax without an installed decoder (named with its
            UID and what to install); a JPEG-family frame without its end marker (truncated);
            pixel data the decoder fails on (truncated or corrupt).
    """
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError(path, f"not a grayscale image (SamplesPerPixel {ds.SamplesPerPixel})")
    syntax = _transfer_syntax(ds)
    named = f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else f"transfer syntax {syntax}"
    reason = _undecodable(syntax)
    if reason is not None:
        raise InputError(path, f"pixel data in {named} cannot be decoded: {reason}")
    if syntax in MARKER_ENDED_SYNTAXES and not _ends_with_marker(ds):
        raise InputError(path, f"pixel data in {named} is truncated: the compressed frame has no end marker")
    try:
        return ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoder errors have many types
        raise InputError(path, f"cannot decode pixel data in {named}, truncated or corrupt file? ({exc})") from exc
