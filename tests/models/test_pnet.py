"""PNet-MSA / PNet-64 (Sec. III-A, Fig. 3, Eq. 1-3): parameter counts and stage-wise growth."""
import numpy as np
import pytest

from pancreas_seg.config import ModelConfig
from pancreas_seg.models.build import build_model, count_parameters, output_names, transfer_weights
from pancreas_seg.models.pnet import WeightedFusion

TINY = dict(channels=4, convs_per_unit=2)
SIZE = 16


def test_pnet_msa_paper_parameter_count():
    model = build_model(ModelConfig(name="pnet_msa"))  # K=5, 64 channels, 4 convs, 3 slices
    # Forward branches (3x3 convs without bias, BN = 4 x 64 scalars of which 2 x 64 trainable):
    #   unit 1: 3*3*3*64 + 3 * 3*3*64*64 + 4 * 256 = 1,728 + 110,592 + 1,024 = 113,344
    #   units 2..5: 4 * (4 * 3*3*64*64 + 256) = 4 * 148,480 = 593,920
    # Backward branches: unit k has k-1 up-steps, 0+1+2+3+4 = 10 in all, each
    #   deconv 4*4*64*64 + 64 = 65,600; conv 3*3*128*64 = 73,728; BN 256 -> 139,584; x 10 = 1,395,840
    # Side 1x1 convs 5 * (64 + 1) = 325; Eq. 3 fusion logits 5.
    # Total 113,344 + 593,920 + 1,395,840 + 325 + 5 = 2,103,434 (< 3 M, Sec. IV-A).
    assert count_parameters(model) == 2_103_434
    # Non-trainable: BN moving mean + variance, (20 + 10) BN layers x 128 = 3,840.
    assert count_parameters(model, trainable_only=True) == 2_103_434 - 3_840
    assert count_parameters(model) < 3_000_000


def test_pnet64_parameter_count():
    model = build_model(ModelConfig(name="pnet64"))
    # Forward branches 113,344 + 593,920 = 707,264; side 1x1 convs 5 * 65 = 325; fusion 5.
    assert count_parameters(model) == 707_594


@pytest.mark.parametrize("name", ["pnet_msa", "pnet64"])
def test_outputs_and_fusion_is_convex(name):
    model = build_model(ModelConfig(name=name, units=3, **TINY), SIZE)
    assert output_names(model) == ["fused", "side_1", "side_2", "side_3"]
    fusion = model.get_layer("fused")
    assert isinstance(fusion, WeightedFusion)
    np.testing.assert_allclose(fusion.fusion_weights(), [1 / 3] * 3, rtol=1e-6)
    x = np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
    out = model.predict(x, verbose=0)
    expected = sum(out[f"side_{k}"] for k in (1, 2, 3)) / 3  # Eq. 3 with w_k = 1/K
    np.testing.assert_allclose(out["fused"], expected, atol=1e-6)


def test_size_must_divide():
    with pytest.raises(ValueError, match="divisible"):
        build_model(ModelConfig(units=3, **TINY), 18)


def test_stagewise_transfer_keeps_earlier_units():
    rng = np.random.default_rng(1)
    small = build_model(ModelConfig(units=2, **TINY), SIZE)
    big = build_model(ModelConfig(units=3, **TINY), SIZE)
    small.get_layer("fused").set_weights([np.array([0.3, -0.2], "float32")])
    # Layers with weights in the 2-unit model: 2 units x (2 convs + 2 BN) = 8, B_2's deconv, conv,
    # BN = 3, two side convs = 2, the Eq. 3 fusion (partially) = 1 -> 14.
    assert transfer_weights(small, big) == 14
    np.testing.assert_allclose(big.get_layer("fused").get_weights()[0], [0.3, -0.2, 0.0])
    x = rng.uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
    before, after = small.predict(x, verbose=0), big.predict(x, verbose=0)
    for name in ("side_1", "side_2"):
        np.testing.assert_allclose(after[name], before[name], atol=1e-6)
