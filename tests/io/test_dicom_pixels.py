"""Compressed pixel data: JPEG Lossless (process 14) series written on the fly decode exactly; a transfer
syntax that cannot be decoded is named in the error, not reported as a corrupt file."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEGLossless, JPEGLosslessSV1, MPEG2MPML

from pancreas_seg.errors import InputError
from pancreas_seg.io import dicom_pixels
from pancreas_seg.io.dicom import read_dicom_series
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.scan import Scan

PRECISION = 16  # bits per sample of the test streams
MODULUS = 1 << PRECISION
HALF = 1 << (PRECISION - 1)  # the prediction of the first sample, 2^(P - Pt - 1)
CATEGORIES = PRECISION + 1  # difference categories SSSS = 0..16
CODE_LENGTH = 5  # every category gets a 5-bit Huffman code 0..16 (never the reserved all-ones code)
MARKER = 0xFF


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([MARKER, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _difference_bits(diff: int) -> str:
    """Huffman code of the category of ``diff`` (modulo 2^16) followed by its extra bits (T.81 H.1.2.2)."""
    diff %= MODULUS
    if diff == HALF:
        return format(PRECISION, f"0{CODE_LENGTH}b")  # category 16: no extra bits
    if diff > HALF:
        diff -= MODULUS
    category = abs(diff).bit_length()
    extra = diff if diff >= 0 else diff + (1 << category) - 1
    return format(category, f"0{CODE_LENGTH}b") + (format(extra, f"0{category}b") if category else "")


def jpeg_lossless_sv1(pixels: np.ndarray) -> bytes:
    """A JPEG Lossless, Non-Hierarchical, First-Order Prediction (process 14, selection value 1) stream of
    a ``[rows, columns]`` uint16 image; pydicom has no encoder for it."""
    rows, cols = pixels.shape
    x = pixels.astype(np.int64)
    bits = []
    for r in range(rows):
        for c in range(cols):
            if r == 0 and c == 0:
                predicted = HALF
            elif r == 0:
                predicted = x[r, c - 1]
            elif c == 0:
                predicted = x[r - 1, c]
            else:
                predicted = x[r, c - 1]  # selection value 1: the sample to the left
            bits.append(_difference_bits(int(x[r, c] - predicted)))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    scan = bytearray()
    for i in range(0, len(stream), 8):
        scan.append(int(stream[i:i + 8], 2))
        if scan[-1] == MARKER:
            scan.append(0)  # byte stuffing
    counts = [0] * 16
    counts[CODE_LENGTH - 1] = CATEGORIES
    frame = bytes([PRECISION]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    huffman = bytes([0x00]) + bytes(counts) + bytes(range(CATEGORIES))
    start = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, Ss = predictor 1, Se 0, Ah/Al 0
    return (bytes([MARKER, 0xD8]) + _segment(0xC3, frame) + _segment(0xC4, huffman) + _segment(0xDA, start)
            + bytes(scan) + bytes([MARKER, 0xD9]))


def _recompress(path: Path, syntax: UID, frame: bytes | None = None) -> None:
    """Replace a slice's pixel data by ``frame`` (default: its JPEG Lossless encoding) under ``syntax``."""
    ds = pydicom.dcmread(path)
    frame = jpeg_lossless_sv1(ds.pixel_array) if frame is None else frame
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)


def _series(tmp_path: Path, helpers) -> tuple[Scan, list[Path]]:
    ct = helpers.ct_scan(shape=(4, 12, 14))
    scan = Scan(array=(ct.array + 1024).astype(np.int16), affine=ct.affine, modality="CT", source={})
    return scan, write_dicom_series(scan, tmp_path / "series", patient_id="P")


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLossless], ids=["4.70", "4.57"])
def test_jpeg_lossless_series_decodes_exactly(tmp_path, helpers, syntax):
    scan, paths = _series(tmp_path, helpers)
    for path in paths:
        _recompress(path, syntax)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == syntax
    read = read_dicom_series(tmp_path / "series")
    np.testing.assert_array_equal(read.array, scan.array)


def test_encoder_covers_every_difference_category():
    """The test encoder itself: extreme jumps (category 16 included) decode back exactly."""
    pixels = np.array([[0, 65535, 0, 1], [32768, 32767, 2, 65534]], np.uint16)
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 2, 4, 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = encapsulate([jpeg_lossless_sv1(pixels)])
    np.testing.assert_array_equal(ds.pixel_array, pixels)


def test_unsupported_transfer_syntax_names_itself(tmp_path, helpers):
    _, paths = _series(tmp_path, helpers)
    _recompress(paths[2], MPEG2MPML, frame=b"\x00\x00\x01\xb3" + bytes(60))
    with pytest.raises(InputError, match=r"pixel data in MPEG2 Main Profile / Main Level \(1\.2\.840\.10008\.1\.2\.4\.100\) "
                                         r"cannot be decoded: pydicom has no decoder") as info:
        read_dicom_series(tmp_path / "series")
    assert info.value.path == str(paths[2])


def test_missing_decoder_says_what_to_install(tmp_path, helpers, monkeypatch):
    _, paths = _series(tmp_path, helpers)
    _recompress(paths[0], JPEGLosslessSV1)
    missing = SimpleNamespace(is_available=False, missing_dependencies=["pylibjpeg - requires pylibjpeg-libjpeg>=2.1"])
    monkeypatch.setattr(dicom_pixels, "get_decoder", lambda syntax: missing)
    with pytest.raises(InputError, match=r"JPEG Lossless, Non-Hierarchical, First-Order Prediction .*\(1\.2\.840\.10008"
                                         r"\.1\.2\.4\.70\) cannot be decoded: no decoder installed \(pylibjpeg - "
                                         r"requires pylibjpeg-libjpeg"):
        read_dicom_series(tmp_path / "series")


@pytest.mark.parametrize("keep", [1 / 3, 1 / 2, 0.98])
def test_truncated_jpeg_stream_is_refused(tmp_path, helpers, keep):
    """libjpeg decodes a cut stream into wrong pixels without an error: the missing end marker tells."""
    _, paths = _series(tmp_path, helpers)
    good = jpeg_lossless_sv1(pydicom.dcmread(paths[1]).pixel_array)
    cut = good[: int(len(good) * keep)]
    _recompress(paths[1], JPEGLosslessSV1, frame=cut + b"\x00" * (len(cut) % 2))
    with pytest.raises(InputError, match=r"pixel data in JPEG Lossless.*is truncated: the compressed frame has no end"):
        read_dicom_series(tmp_path / "series")


def test_corrupt_jpeg_stream_is_reported_with_its_syntax(tmp_path, helpers):
    _, paths = _series(tmp_path, helpers)
    _recompress(paths[1], JPEGLosslessSV1, frame=b"\xff\xd8\xff\xc3" + bytes(40) + b"\xff\xd9")
    with pytest.raises(InputError, match=r"cannot decode pixel data in JPEG Lossless.*truncated or corrupt"):
        read_dicom_series(tmp_path / "series")
