"""Binary masks ``[Z, Y, X]``: connected components, shared by prediction and the phantoms.

Imports nothing from the package (any layer may use it) and no Keras.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CONNECTIVITY_26 = np.ones((3, 3, 3), bool)  # face, edge and corner neighbours: 26-connected components


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` ``[Z, Y, X]`` (nonzero = inside), bool.

    Labels only the mask's bounding box, not the whole volume (a pancreas fills a small part of
    a scan). Of components of equal size the first in C (z, y, x) order is kept, as labelling
    the whole volume would; an empty mask stays empty.
    """
    inside = np.asarray(mask) != 0
    out = np.zeros(inside.shape, bool)
    if not inside.any():
        return out
    box = ndimage.find_objects(inside.astype(np.uint8))[0]
    labels, count = ndimage.label(inside[box], CONNECTIVITY_26)
    if count <= 1:
        out[box] = labels > 0
        return out
    out[box] = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return out
