"""Intensity sanity: does a scan's scanned field look like its modality?

Every path that reads a scan from the user (``predict``, ``convert-dicom``, the data converters)
runs :func:`check_intensities`, so that a series stored without its rescale intercept or with
signed pixels declared unsigned is refused instead of segmented or trained on.
"""
from __future__ import annotations

import os

import numpy as np

from pancreas_seg.errors import InputError
from pancreas_seg.io.scan import Scan

CT_AIR_MAX_HU = -500.0  # a HU-calibrated CT has air (about -1000 HU) around the body or in the bowel
INTENSITY_PROBE_PERCENTILE = 0.5  # %, the low end of the intensities compared with air
INTENSITY_PROBE_STEP = 4  # every 4th voxel along each axis is enough to find the low end
PADDING_MIN_SHARE = 0.01  # a constant minimum over more than 1 % of the voxels is outside-field padding
CT_POSSIBLE_HU = (-1200.0, 4000.0)  # HU that tissue, air, bone and contrast take (metal: a few voxels beyond)
IMPOSSIBLE_SHARE = 0.01  # more than 1 % of the scanned field outside CT_POSSIBLE_HU: corrupt, not metal


def _scanned_field(probe: np.ndarray) -> np.ndarray:
    """``probe``'s values inside the scanned field: a constant fill at the minimum (outside-field
    padding, -2000 or -3024 in many CT exports) over more than :data:`PADDING_MIN_SHARE` is left out."""
    flat = probe.ravel()
    lowest = flat.min()
    padding = flat == lowest
    return flat[~padding] if padding.mean() > PADDING_MIN_SHARE and not padding.all() else flat


def check_intensities(scan: Scan, where: str | os.PathLike, calibration: bool = True, override: str = "") -> None:
    """Refuse a scan whose intensities inside the scanned field (padding left out) do not look
    like its modality. CT: more than :data:`IMPOSSIBLE_SHARE` of the field outside the HU range
    that exists (signed values read as unsigned, a wrong rescale) is corrupt, always; with
    ``calibration``, CT must also have air near -1000 HU (a series without its rescale intercept
    has it near +24) and MRI must not. ``calibration`` is off when the user declared the modality;
    ``override`` says how to (``"give --modality {modality}"``), ending the calibration messages.

    Raises:
        InputError: naming the modality and the intensities seen.
    """
    probe = scan.array[::INTENSITY_PROBE_STEP, ::INTENSITY_PROBE_STEP, ::INTENSITY_PROBE_STEP]
    field = _scanned_field(probe).astype(np.float64)
    if scan.modality == "CT":
        low_hu, high_hu = CT_POSSIBLE_HU
        outside = float(np.mean((field < low_hu) | (field > high_hu)))
        if outside > IMPOSSIBLE_SHARE:
            raise InputError(where, f"corrupt CT intensities: {outside:.1%} of the scanned field lies outside "
                                    f"{low_hu:.0f}..{high_hu:.0f} HU (max {field.max():.0f}); signed pixel values "
                                    "read as unsigned, or a wrong rescale slope/intercept?")
    if not calibration:
        return
    low = float(np.percentile(field, INTENSITY_PROBE_PERCENTILE))
    has_air = low <= CT_AIR_MAX_HU
    tail = f"; {override.format(modality=scan.modality)} if it is right" if override else ""
    if scan.modality == "CT" and not has_air:
        raise InputError(where, f"does not look like HU-calibrated CT: inside the scanned field its lowest "
                                f"intensities ({INTENSITY_PROBE_PERCENTILE} % percentile) are {low:.0f}, CT has "
                                f"air near -1000 HU (a series without RescaleIntercept has it near +24){tail}")
    if scan.modality == "MRI" and has_air:
        raise InputError(where, f"does not look like MRI: intensities go down to {low:.0f} (HU of air?){tail}")
