import pytest

from pancreas_seg.config import DataConfig
from pancreas_seg.data.splits import load_folds, make_folds, save_folds, select_fold, store_folds
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from tests.conftest import blob_case


def _patients(n_cases, per_patient=1):
    return {f"C{i:03d}": f"P{i // per_patient:03d}" for i in range(n_cases)}


def test_folds_partition_cases_and_are_patient_disjoint():
    cases = _patients(22, per_patient=2)
    folds = make_folds(cases, folds=4, validation_fraction=0.2, seed=1)
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == set(cases)
    assert sum(len(t) for t in tests) == len(cases)
    for fold in folds:
        groups = [{cases[c] for c in part} for part in (fold.train, fold.validation, fold.test)]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
        assert set(fold.train) | set(fold.validation) | set(fold.test) == set(cases)
        assert len(fold.validation) >= 1


def test_folds_are_deterministic_and_seed_dependent():
    cases = _patients(20)
    assert make_folds(cases, seed=5) == make_folds(cases, seed=5)
    assert make_folds(cases, seed=5) != make_folds(cases, seed=6)


def test_fold_sizes_are_balanced():
    folds = make_folds(_patients(82), folds=4)
    assert sorted(len(f.test) for f in folds) == [20, 20, 21, 21]


def test_save_load_round_trip(tmp_path):
    folds = make_folds(_patients(9), folds=4, seed=2)
    assert load_folds(save_folds(folds, tmp_path / "folds.json")) == folds


def test_too_few_patients():
    with pytest.raises(ValueError, match="cannot make 4 folds"):
        make_folds(_patients(3), folds=4)


def test_a_store_with_too_few_patients_is_refused_naming_it(tmp_path):
    store = CaseStore.create(tmp_path / "anonymised", "CT")
    for index in range(4):  # every case anonymised to the same PatientID: one patient
        case = blob_case(f"CASE_{index}", seed=index)
        case.scan.source["PatientID"] = "ANON"
        store.write_case(case)
    with pytest.raises(InputError, match=r"anonymised: 1 patients cannot make 4 folds .*PatientID"):
        store_folds(store, DataConfig())
    with pytest.raises(ValueError, match="fold 4 does not exist; folds are 0..3"):
        select_fold(make_folds({f"c{i}": f"p{i}" for i in range(4)}), 4)
