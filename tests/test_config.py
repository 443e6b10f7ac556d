"""Config (config.py): overrides, type conversion, checks where a config is made, JSON round trip, hash;
the vocabulary (vocabulary.py) against the registries and the command line."""
import dataclasses
import json
import logging

import pytest

from pancreas_seg import vocabulary
from pancreas_seg.cli import build_parser
from pancreas_seg.config import (PRESETS, DataConfig, ExperimentConfig, ModelConfig, TrainConfig, _convert,
                                 apply_overrides, config_hash, from_dict, preset, to_dict)

# sha256 of the sorted JSON of the paper preset. It changes whenever a field or a default changes,
# and with it every cached experiment folder and the check that a resumed run has the same config.
PAPER_HASH = "d59a518598b4"


# ---------------------------------------------------------------------------
# overrides
# ---------------------------------------------------------------------------

def test_override_section_key_and_bare_unique_key():
    config = apply_overrides(preset("paper"), ["train.loss=ce", "units=3", "data.crop=body"])
    assert (config.train.loss, config.model.units, config.data.crop) == ("ce", 3, "body")
    assert config.train.optimizer == preset("paper").train.optimizer  # the rest untouched


def test_override_later_value_of_the_same_key_wins():
    assert apply_overrides(preset("paper"), ["train.loss=ce", "loss=cbce"]).train.loss == "cbce"


def test_overrides_are_checked_together_not_one_by_one():
    # 36 px is not divisible by 2**(5-1) but is by 2**(3-1): valid only with both overrides applied
    for items in (["data.input_size=36", "model.units=3"], ["model.units=3", "data.input_size=36"]):
        config = apply_overrides(preset("paper"), items)
        assert (config.data.input_size, config.model.units) == (36, 3)


@pytest.mark.parametrize("item, message", [
    ("seed=1", "ambiguous config key 'seed'"),  # data.seed and train.seed
    ("foo=1", "unknown config key 'foo'"),
    ("data.foo=1", "unknown config key data.foo"),
    ("optim.loss=ce", "unknown config section 'optim'"),
    ("train.loss", "not of the form key=value"),
])
def test_override_key_errors(item, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(preset("paper"), [item])


# ---------------------------------------------------------------------------
# type conversion of command-line strings
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, hint, expected", [
    ("7", int, 7),
    ("1e-3", float, 1e-3),
    ("2", float, 2.0),
    ("ce", str, "ce"),
    ("yes", bool, True), ("On", bool, True), ("1", bool, True), ("true", bool, True),
    ("no", bool, False), ("OFF", bool, False), ("0", bool, False), ("False", bool, False),
    ("-100,300", tuple[float, float], (-100.0, 300.0)),
    ("(-100, 300)", tuple[float, float], (-100.0, 300.0)),
    ("fov", vocabulary.CropMode, "fov"),
])
def test_convert_accepts(text, hint, expected):
    value = _convert(text, hint)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, hint, message", [
    ("3.5", int, "invalid literal"),
    ("maybe", bool, "expected a boolean"),
    ("1,2,3", tuple[float, float], "expected 2 comma-separated values"),
    ("FOV", vocabulary.CropMode, "expected one of"),  # choices are case-sensitive
])
def test_convert_refuses(text, hint, message):
    with pytest.raises(ValueError, match=message):
        _convert(text, hint)


def test_override_values_are_converted_by_field_type():
    config = apply_overrides(preset("paper"), ["data.hu_window=-100,300", "train.stagewise=off",
                                               "train.learning_rate=3e-4", "data.folds=5"])
    assert config.data.hu_window == (-100.0, 300.0) and config.train.stagewise is False
    assert config.train.learning_rate == 3e-4 and config.data.folds == 5


@pytest.mark.parametrize("item, choices", [
    ("train.loss=foo", vocabulary.LOSS_NAMES),
    ("data.crop=xyz", vocabulary.CROP_MODES),
    ("model.name=bar", vocabulary.MODEL_NAMES),
    ("data.modality=PET", vocabulary.MODALITIES),
    ("train.optimizer=rmsprop", vocabulary.OPTIMIZER_NAMES),
    ("train.distribute=tpu", vocabulary.DISTRIBUTE_MODES),
    ("data.builtin_set=huge", vocabulary.BUILTIN_SETS),
])
def test_override_literal_refused_with_field_value_and_choices(item, choices):
    key, value = item.split("=")
    with pytest.raises(ValueError) as caught:
        apply_overrides(preset("paper"), [item])
    message = str(caught.value)
    assert key in message and repr(value) in message and str(choices) in message


# ---------------------------------------------------------------------------
# checks where a config is made
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("make, key", [
    (lambda: DataConfig(crop="xyz"), "data.crop='xyz'"),
    (lambda: ModelConfig(name="resnet"), "model.name='resnet'"),
    (lambda: TrainConfig(loss="dice"), "train.loss='dice'"),
    (lambda: DataConfig(hu_window=(240.0, -160.0)), "data.hu_window"),
    (lambda: DataConfig(mri_percentiles=(0.5, 150.0)), "data.mri_percentiles"),
    (lambda: DataConfig(fov_mm=0.0), "data.fov_mm"),
    (lambda: DataConfig(input_size=0), "data.input_size"),
    (lambda: DataConfig(focus_fraction=1.5), "data.focus_fraction"),
    (lambda: DataConfig(validation_fraction=1.0), "data.validation_fraction"),
    (lambda: DataConfig(folds=1), "data.folds"),
    (lambda: ModelConfig(units=0), "model.units"),
    (lambda: ModelConfig(channels=0), "model.channels"),
    (lambda: TrainConfig(threshold=1.0), "train.threshold"),
    (lambda: TrainConfig(threshold=0.0), "train.threshold"),
    (lambda: TrainConfig(learning_rate=0.0), "train.learning_rate"),
    (lambda: TrainConfig(momentum=1.0), "train.momentum"),
    (lambda: TrainConfig(batch_size=0), "train.batch_size"),
    (lambda: TrainConfig(epochs_full=-1), "train.epochs_full"),
])
def test_section_checks(make, key):
    with pytest.raises(ValueError, match=f"config key {key}"):
        make()


def test_checks_run_at_override_time():
    with pytest.raises(ValueError, match="train.threshold=1.5"):
        apply_overrides(preset("testing"), ["train.threshold=1.5"])
    with pytest.raises(ValueError, match="data.focus_fraction"):
        apply_overrides(preset("testing"), ["focus_fraction=-0.1"])


def test_stage_skipping_zero_epochs_allowed():
    assert preset("quick").train.epochs_finetune == 0  # the quick preset skips fine-tuning


def test_input_channels_must_match_stacked_slices():
    with pytest.raises(ValueError, match="model.input_slices=3 and data.context_slices=5"):
        apply_overrides(preset("paper"), ["data.context_slices=5"])
    config = apply_overrides(preset("paper"), ["data.context_slices=5", "model.input_slices=5"])
    assert config.model.input_slices == config.data.context_slices == 5


@pytest.mark.parametrize("name", vocabulary.PNET_MODELS)
def test_pnet_input_size_divisible_by_pooling(name):
    with pytest.raises(ValueError, match=r"data.input_size=40: must be divisible by 2\*\*\(model.units-1\) = 16"):
        ExperimentConfig(data=DataConfig(input_size=40), model=ModelConfig(name=name, units=5))
    ExperimentConfig(data=DataConfig(input_size=40), model=ModelConfig(name=name, units=4))  # 40 = 8 * 5


def test_pool_size_matches_the_network():
    from pancreas_seg.config import PNET_POOL_SIZE
    from pancreas_seg.models.pnet import POOL_SIZE

    assert PNET_POOL_SIZE == POOL_SIZE


# ---------------------------------------------------------------------------
# presets, JSON round trip, old config files, hash
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_validates_and_round_trips(name):
    config = preset(name)
    assert isinstance(config, ExperimentConfig)
    assert from_dict(to_dict(config)) == config
    assert from_dict(json.loads(json.dumps(to_dict(config)))) == config  # through JSON: lists back to tuples


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")


def test_to_dict_holds_plain_strings():
    data = to_dict(preset("paper"))
    assert type(data["model"]["name"]) is str and type(data["data"]["modality"]) is str


def test_old_config_with_removed_key_loads_with_a_warning(caplog):
    old = to_dict(preset("testing"))
    old["train"]["validation_steps"] = 1  # written by versions before the field was removed
    del old["train"]["momentum"]  # written by versions before the field existed
    with caplog.at_level(logging.WARNING, logger="pancreas_seg.config"):
        config = from_dict(old)
    assert config == preset("testing") and config.train.momentum == 0.9
    assert "train.validation_steps is no longer used" in caplog.text


def test_from_dict_refuses_unknown_keys_and_bad_values():
    data = to_dict(preset("paper"))
    data["train"]["warmup"] = 3
    with pytest.raises(ValueError, match=r"unknown keys in config section 'train': \['warmup'\]"):
        from_dict(data)
    data = to_dict(preset("paper"))
    data["data"]["crop"] = "xyz"
    with pytest.raises(ValueError, match="data.crop='xyz'"):
        from_dict(data)


def test_config_hash_stable_and_changes_with_a_field():
    assert config_hash(preset("paper")) == config_hash(preset("paper")) == PAPER_HASH
    assert len(config_hash(preset("paper"), length=20)) == 20
    changed = apply_overrides(preset("paper"), ["train.momentum=0.95"])
    assert config_hash(changed) != PAPER_HASH
    assert len({config_hash(preset(name)) for name in PRESETS}) == len(PRESETS)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("paper").train.loss = "ce"


# ---------------------------------------------------------------------------
# vocabulary against the registries and the command line
# ---------------------------------------------------------------------------

def test_registries_hold_exactly_the_vocabulary():
    from pancreas_seg.data.builtin import PHANTOM_SETS
    from pancreas_seg.io.scan import MODALITIES
    from pancreas_seg.losses import LOSSES
    from pancreas_seg.models.build import MODELS

    assert tuple(MODELS) == vocabulary.MODEL_NAMES
    assert tuple(LOSSES) == vocabulary.LOSS_NAMES
    assert tuple(PHANTOM_SETS) == vocabulary.BUILTIN_SETS
    assert MODALITIES == vocabulary.MODALITIES


def test_vocabulary_subsets():
    assert set(vocabulary.SCAN_MODELS) == set(vocabulary.MODEL_NAMES) - {vocabulary.NOT_A_SCAN_MODEL}
    assert set(vocabulary.PNET_MODELS) <= set(vocabulary.MODEL_NAMES)
    assert {vocabulary.BASE_CNN, vocabulary.RNN_MODEL} <= set(vocabulary.SCAN_MODELS)
    assert vocabulary.MODALITY_BY_FLAG == {"ct": "CT", "mri": "MRI"}


def _choices(parser, command, option):
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in sub._actions if option in a.option_strings).choices)


def test_cli_choices_come_from_the_vocabulary():
    parser, _ = build_parser()
    assert _choices(parser, "train", "--model") == vocabulary.SCAN_MODELS
    assert _choices(parser, "train", "--loss") == vocabulary.LOSS_NAMES
    assert set(_choices(parser, "train", "--preset")) == set(PRESETS)
    assert _choices(parser, "train", "--fine-stage") == vocabulary.FINE_STAGES
    from pancreas_seg.config import FINE_STAGE_OVERRIDES
    assert tuple(FINE_STAGE_OVERRIDES) == vocabulary.FINE_STAGES  # every choice has its overrides
    assert _choices(parser, "predict", "--modality") == vocabulary.MODALITIES
    assert _choices(parser, "convert-dicom", "--modality") == vocabulary.MODALITIES


def test_cli_refuses_a_name_outside_the_vocabulary(capsys):
    parser, _ = build_parser()
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["train", "--loss", "dice"])
    assert caught.value.code == 2 and "invalid choice: 'dice'" in capsys.readouterr().err
