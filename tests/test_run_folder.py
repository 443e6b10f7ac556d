"""The run folder: identity checks on resume, adopting stages, locating a model."""
from __future__ import annotations

import json
import logging

import pytest

from pancreas_seg.config import apply_overrides, preset
from pancreas_seg.data.splits import Fold
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.run_folder import RunFolder, RunIdentity, locate_model, store_fingerprint
from tests.conftest import blob_case

FOLD_0 = Fold(0, train=("CASE_00", "CASE_01"), validation=("CASE_02",), test=("CASE_03",))
FOLD_1 = Fold(1, train=("CASE_00", "CASE_03"), validation=("CASE_02",), test=("CASE_01",))


def test_a_new_run_records_config_fold_and_store(tiny_store, tmp_path):
    run = RunFolder(tmp_path / "run")
    run.start(preset("testing"), RunIdentity.of(tiny_store, FOLD_0), "tensorflow")
    payload = json.loads(run.config_path.read_text())
    assert payload["identity"]["fold"] == {"index": 0, "train": ["CASE_00", "CASE_01"], "validation": ["CASE_02"],
                                           "test": ["CASE_03"]}
    assert payload["identity"]["store_fingerprint"] == store_fingerprint(tiny_store)
    assert run.read_config() == (preset("testing"), payload["config_hash"])


def test_resume_of_the_same_run_is_accepted(tiny_store, tmp_path):
    run = RunFolder(tmp_path / "run")
    run.start(preset("testing"), RunIdentity.of(tiny_store, FOLD_0), "tensorflow")
    moved = CaseStore(tiny_store.root.rename(tmp_path / "moved"))  # same cases elsewhere: the same data
    run.start(preset("testing"), RunIdentity.of(moved, FOLD_0), "tensorflow")


def test_resume_with_another_fold_store_or_config_is_refused(tiny_store, tmp_path):
    run = RunFolder(tmp_path / "run")
    run.start(preset("testing"), RunIdentity.of(tiny_store, FOLD_0), "tensorflow")
    with pytest.raises(InputError, match="trained on fold 0 .* this run is for fold 1"):
        run.start(preset("testing"), RunIdentity.of(tiny_store, FOLD_1), "tensorflow")
    other = CaseStore.create(tmp_path / "other", "CT")
    for index in range(4):
        other.write_case(blob_case(f"CASE_{index:02d}", seed=10 + index))
    with pytest.raises(InputError, match="another case store"):
        run.start(preset("testing"), RunIdentity.of(other, FOLD_0), "tensorflow")
    with pytest.raises(InputError, match="another config"):
        run.start(apply_overrides(preset("testing"), ["train.loss=ce"]), RunIdentity.of(tiny_store, FOLD_0), "t")


def test_a_run_of_an_older_version_resumes_with_a_warning(tiny_store, tmp_path, caplog):
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    run.write_config(preset("testing"))  # no identity, as before runs recorded it
    with caplog.at_level(logging.WARNING):
        run.start(preset("testing"), RunIdentity.of(tiny_store, FOLD_0), "tensorflow")
    assert "no fold or store" in caplog.text


def test_adopt_stages_copies_models_history_and_state(tmp_path):
    source, target = RunFolder(tmp_path / "cnn"), RunFolder(tmp_path / "rnn")
    for stage in ("full", "rnn"):
        source.stage_dir(stage).mkdir(parents=True)
        (source.stage_dir(stage) / "best.keras").write_bytes(stage.encode())
        (source.stage_dir(stage) / "last.keras").write_bytes(b"last " + stage.encode())
        source.history_path(stage).write_text("epoch\n0\n")
        source.state.finish(stage, model=f"{stage}/best.keras", epochs=1, best=0.5)
    target.root.mkdir()
    assert target.adopt_stages(source, exclude={"rnn"}) == ["full"]
    assert target.state.stages == ["full"] and target.state.best("full") == 0.5
    assert (target.stage_dir("full") / "best.keras").read_bytes() == b"full"
    assert (target.stage_dir("full") / "last.keras").read_bytes() == b"last full", "resume and _finish need it"
    assert target.history_path("full").is_file() and not target.stage_dir("rnn").exists()
    assert target.adopt_stages(source) == [], "a run that has a state adopts nothing"


def test_adopt_stages_takes_nothing_when_a_model_file_is_missing(tmp_path):
    source, target = RunFolder(tmp_path / "cnn"), RunFolder(tmp_path / "rnn")
    source.root.mkdir()
    source.state.finish("full", model="full/best.keras", epochs=1, best=0.5)
    target.root.mkdir()
    assert target.adopt_stages(source) == [] and not target.state_path.exists()


def test_locate_model_refusals(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        locate_model(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match="has no model.keras"):
        locate_model(tmp_path / "run")
    (tmp_path / "run" / "model.keras").write_bytes(b"")
    with pytest.raises(InputError, match="no config.json beside the model"):
        locate_model(tmp_path / "run")
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(InputError, match="not a Keras model file"):
        locate_model(tmp_path / "weights.h5")
    RunFolder(tmp_path / "run").write_config(preset("testing"))
    run, model = locate_model(tmp_path / "run" / "model.keras")
    assert run.root == tmp_path / "run" and model == tmp_path / "run" / "model.keras"


def test_read_config_refuses_what_is_not_a_run_config(tmp_path):
    run = RunFolder(tmp_path)
    run.config_path.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a run configuration"):
        run.read_config()
    run.config_path.write_text(json.dumps({"config": {"model": {"colour": "red"}}}))
    with pytest.raises(InputError, match=r"incomplete run configuration: section\(s\) \['data', 'train'\] missing"):
        run.read_config()
    run.config_path.write_text(json.dumps({"config": {"data": {}, "model": {"colour": "red"}, "train": {}}}))
    with pytest.raises(InputError, match="not a run configuration"):
        run.read_config()


@pytest.mark.parametrize("last_dsc, kept", [(0.69, False), (0.71, True), (0.72, True), (float("nan"), False)])
def test_a_fine_tuning_stage_is_kept_only_once_back_at_acc_t(tmp_path, last_dsc, kept):
    state = RunFolder(tmp_path).state
    state.finish("full", model="full/best.keras", best=0.70)
    state.finish("rnn", model="rnn/best.keras", best=0.71)
    assert state.kept("full") and state.kept("rnn")  # selected on validation: nothing to regain
    assert state.kept("end_to_end")  # not run yet
    state.finish("end_to_end", model="end_to_end/last.keras", best=last_dsc)
    assert RunFolder(tmp_path).state.kept("end_to_end") is kept
