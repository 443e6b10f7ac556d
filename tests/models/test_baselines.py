"""HNN and UNet baselines (Table II): parameter counts and user weight files."""
import numpy as np
import pytest

from pancreas_seg.config import ModelConfig
from pancreas_seg.errors import InputError
from pancreas_seg.models.build import build_model, count_parameters


def conv(c_in, c_out, k):
    """Parameters of a k x k conv with bias."""
    return k * k * c_in * c_out + c_out


def conv_bn(c_in, c_out, k):
    """A k x k conv without bias, then batch norm (gamma, beta, moving mean and variance)."""
    return k * k * c_in * c_out + 4 * c_out


VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512),
               (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def test_hnn_parameter_count_as_the_original_without_batch_norm():
    model = build_model(ModelConfig(name="hnn", baseline_batch_norm=False))  # base 64, 3 input slices
    vgg16 = (conv(3, 64, 3) + conv(64, 64, 3) + conv(64, 128, 3) + conv(128, 128, 3)
             + conv(128, 256, 3) + 2 * conv(256, 256, 3) + conv(256, 512, 3) + 5 * conv(512, 512, 3))
    assert vgg16 == 14_714_688  # keras.applications.VGG16(include_top=False) with 3 channels
    sides = sum(conv(c, 1, 1) for c in (64, 128, 256, 512, 512))  # 1,477
    assert count_parameters(model) == vgg16 + sides + conv(5, 1, 1) == 14_716_171


def test_hnn_parameter_count_with_batch_norm():
    model = build_model(ModelConfig(name="hnn"))
    trunk = sum(conv_bn(c_in, c_out, 3) for c_in, c_out in VGG16_CONVS)
    sides = sum(conv(c, 1, 1) for c in (64, 128, 256, 512, 512))
    assert count_parameters(model) == trunk + sides + conv(5, 1, 1)


def test_unet_parameter_count_with_batch_norm():
    model = build_model(ModelConfig(name="unet"))
    widths = [64, 128, 256, 512, 1024]
    encoder = sum(conv_bn(c_in, c, 3) + conv_bn(c, c, 3) for c_in, c in zip([3] + widths[:-1], widths))
    decoder = sum(conv(2 * c, c, 2) + conv_bn(2 * c, c, 3) + conv_bn(c, c, 3) for c in widths[:-1])
    assert count_parameters(model) == encoder + decoder + conv(64, 1, 1)


def test_unet_parameter_count_as_the_original_without_batch_norm():
    model = build_model(ModelConfig(name="unet", baseline_batch_norm=False))
    widths = [64, 128, 256, 512, 1024]
    encoder = sum(conv(c_in, c, 3) + conv(c, c, 3) for c_in, c in zip([3] + widths[:-1], widths))
    decoder = sum(conv(2 * c, c, 2) + conv(2 * c, c, 3) + conv(c, c, 3) for c in widths[:-1])
    assert count_parameters(model) == encoder + decoder + conv(64, 1, 1) == 31_031_745


@pytest.mark.parametrize("name", ["hnn", "unet"])
def test_weights_file(tmp_path, name):
    config = ModelConfig(name=name, base_filters=2)
    model = build_model(config, 16)
    path = tmp_path / f"{name}.weights.h5"
    model.save_weights(path)
    loaded = build_model(config, 16, weights_path=path)
    x = np.random.default_rng(0).uniform(size=(1, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0)["fused"], model.predict(x, verbose=0)["fused"])
    with pytest.raises(InputError, match="not found"):
        build_model(config, 16, weights_path=tmp_path / "missing.weights.h5")
    with pytest.raises(InputError, match="do not fit"):
        build_model(ModelConfig(name=name, base_filters=4), 16, weights_path=path)
