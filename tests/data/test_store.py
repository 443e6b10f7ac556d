import json
import multiprocessing

import numpy as np
import pytest

from pancreas_seg.data.store import Case, CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.io.scan import Scan
from tests.conftest import blob_case


def test_round_trip_keeps_arrays_affine_and_ids(tmp_path):
    store = CaseStore.create(tmp_path / "s", "CT")
    case = blob_case("A", seed=3)
    entry = store.write_case(case)
    loaded = CaseStore(tmp_path / "s").read_case("A")
    np.testing.assert_array_equal(loaded.image, case.image)
    np.testing.assert_array_equal(loaded.mask, case.mask)
    np.testing.assert_allclose(loaded.affine, case.affine)
    assert loaded.image.dtype == np.int16 and loaded.mask.dtype == np.uint8
    assert loaded.source == {"PatientID": "A"}
    assert entry["spacing_mm"] == [2.0, 0.8, 0.8]


def test_case_holds_its_scan_and_delegates_to_it():
    case = blob_case("A", modality="MRI")
    assert isinstance(case.scan, Scan)
    assert case.image is case.scan.array and case.affine is case.scan.affine
    assert case.modality == "MRI" and case.source == {"PatientID": "A"}
    assert case.spacing == pytest.approx((2.0, 0.8, 0.8))
    with pytest.raises(ValueError, match="differ"):
        Case("B", case.scan, case.mask[:-1])


def test_manifest_entry_volume_and_slice_range(tmp_path):
    store = CaseStore.create(tmp_path / "s", "CT")
    case = blob_case("A")
    entry = store.write_case(case)
    voxels = int(case.mask.sum())
    assert entry["pancreas_volume_ml"] == pytest.approx(voxels * 2.0 * 0.8 * 0.8 / 1000, abs=0.01)
    rows = np.flatnonzero(case.mask.any(axis=(1, 2)))
    assert entry["pancreas_slices"] == [rows[0], rows[-1]]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert list(manifest["cases"]) == ["A"]


def test_no_temporary_files_left(tmp_path):
    store = CaseStore.create(tmp_path / "s", "CT")
    store.write_case(blob_case("A"))
    leftovers = [p.name for p in (tmp_path / "s").rglob(".*")]
    assert leftovers == []


def test_modality_mismatch_and_missing_store_are_refused(tmp_path):
    CaseStore.create(tmp_path / "s", "CT")
    with pytest.raises(InputError, match="holds CT"):
        CaseStore.create(tmp_path / "s", "MRI")
    with pytest.raises(InputError, match="not a case store"):
        CaseStore(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no case"):
        CaseStore(tmp_path / "s").read_case("missing")


def test_damaged_case_file_names_the_file(tmp_path):
    store = CaseStore.create(tmp_path / "s", "CT")
    store.write_case(blob_case("A"))
    path = store.case_path("A")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="A.npz"):
        store.read_case("A")


CASES_PER_WRITER = 6


def _add_cases(root, prefix: str, barrier) -> None:
    """Open the store, wait for the other writer, then add cases one by one (as convert_cases does)."""
    store = CaseStore.create(root, "CT")
    barrier.wait()
    for index in range(CASES_PER_WRITER):
        store.write_case(blob_case(f"{prefix}_{index}", depth=6, size=16, seed=index))


def test_concurrent_writers_into_one_store_keep_every_case(tmp_path):
    """Two conversions into one store at once: without the lock each rewrote the manifest it had read."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    writers = [context.Process(target=_add_cases, args=(tmp_path / "s", prefix, barrier)) for prefix in ("A", "B")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [writer.exitcode for writer in writers] == [0, 0]
    expected = sorted(f"{prefix}_{index}" for prefix in "AB" for index in range(CASES_PER_WRITER))
    assert CaseStore(tmp_path / "s").case_ids == expected


def test_add_entries_keeps_what_another_handle_added(tmp_path):
    first = CaseStore.create(tmp_path / "s", "CT")
    second = CaseStore(tmp_path / "s")
    first.write_case(blob_case("A", depth=6, size=16))
    second.write_case(blob_case("B", depth=6, size=16))
    assert second.case_ids == ["A", "B"]
    assert CaseStore(tmp_path / "s").case_ids == ["A", "B"]
