"""The one largest-component helper: the bounding-box version equals labelling the whole volume."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from pancreas_seg.masks import CONNECTIVITY_26, largest_component

PACKAGE = Path(__file__).resolve().parents[1] / "pancreas_seg"


def brute_force(mask: np.ndarray) -> np.ndarray:
    """Label the whole volume; keep the biggest component, the lowest label among equal sizes."""
    labels, count = ndimage.label(mask != 0, CONNECTIVITY_26)
    if count == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = -1
    return labels == int(np.argmax(sizes))


def test_keeps_the_biggest_26_connected_blob():
    mask = np.zeros((5, 10, 10), np.uint8)
    mask[0:2, 0:2, 0:2] = 1  # 8 voxels
    mask[2, 2, 2] = 1  # touches the first blob only diagonally: same 26-component (9 voxels)
    mask[3:5, 5:8, 5:8] = 1  # 18 voxels
    kept = largest_component(mask)
    assert kept.dtype == bool and kept.sum() == 18 and kept[3:5, 5:8, 5:8].all()


@pytest.mark.parametrize("shape", [(2, 2, 2), (0, 4, 4), (3, 1, 5)])
def test_empty_mask_stays_empty(shape):
    assert not largest_component(np.zeros(shape, np.uint8)).any()
    assert largest_component(np.zeros(shape, np.uint8)).shape == shape


def test_equal_sizes_keep_the_first_in_raster_order():
    mask = np.zeros((6, 8, 8), np.uint8)
    mask[4, 1:3, 1:3] = 1  # 4 voxels, later in z
    mask[1, 5:7, 5:7] = 1  # 4 voxels, first in z but not in y or x
    kept = largest_component(mask)
    np.testing.assert_array_equal(kept, brute_force(mask))
    assert kept[1].sum() == 4 and kept[4].sum() == 0


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("fill", [0.02, 0.15, 0.35])
def test_equals_labelling_the_whole_volume_on_random_masks(seed, fill):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 14, 3))
    mask = (rng.random(shape) < fill).astype(rng.choice([np.uint8, np.int16, bool]))
    np.testing.assert_array_equal(largest_component(mask), brute_force(mask))


def test_imports_nothing_from_the_package():
    tree = ast.parse((PACKAGE / "masks.py").read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name and name.startswith("pancreas_seg")]
