"""The BiRNN at prediction runs on windows of its training run length, averaged where they overlap."""
import numpy as np
import pytest

from pancreas_seg.config import ModelConfig
from pancreas_seg.models.birnn import build_birnn
from pancreas_seg.networks import birnn_probabilities, birnn_windows

SIZE = 6


@pytest.mark.parametrize("slices,length,expected", [(3, 5, [0]), (5, 5, [0]), (6, 5, [0, 1]),
                                                    (12, 5, [0, 3, 6, 7]), (13, 4, [0, 2, 4, 6, 8, 9])])
def test_windows_cover_every_slice_and_end_at_the_last(slices, length, expected):
    starts = birnn_windows(slices, length)
    assert starts == expected
    covered = np.zeros(slices, int)
    for s in starts:
        covered[s:s + length] += 1
    assert covered.min() >= 1 and covered.max() <= 3


def _birnn():
    model = build_birnn(ModelConfig(), SIZE)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_each_slice_is_the_mean_of_its_windows_outputs():
    model = _birnn()
    probability = np.random.default_rng(0).uniform(size=(23, SIZE, SIZE)).astype("float32")
    got = birnn_probabilities(model, probability, 5)
    sums, counts = np.zeros_like(probability), np.zeros(23)
    for s in birnn_windows(23, 5):
        sums[s:s + 5] += model.predict(probability[None, s:s + 5, ..., None], verbose=0)[0, ..., 0]
        counts[s:s + 5] += 1
    np.testing.assert_allclose(got, sums / counts[:, None, None], atol=1e-5)
    whole = model.predict(probability[None, ..., None], verbose=0)[0, ..., 0]
    assert np.abs(got - whole).max() > 1e-3  # not the whole-sequence pass


def test_a_run_no_longer_than_the_window_is_one_pass():
    model = _birnn()
    probability = np.random.default_rng(2).uniform(size=(4, SIZE, SIZE)).astype("float32")
    np.testing.assert_allclose(birnn_probabilities(model, probability, 5),
                               model.predict(probability[None, ..., None], verbose=0)[0, ..., 0], atol=1e-5)
