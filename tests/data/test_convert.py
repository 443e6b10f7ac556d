"""NIH Pancreas-CT and MSD Task07 layouts -> case store (pancreas_seg.data.convert).

Round trips of 64x64 phantoms are exact (int16 HU, mask, affine); conversion is idempotent and
the same in worker processes; every bad input fails its own case alone, with one line naming
the file and the problem, through the library and through data_prep/convert_nih.py.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

from pancreas_seg.console import run_guarded
from pancreas_seg.data.convert import (
    convert_cases,
    detect_set_modality,
    find_msd_cases,
    find_nih_cases,
)
from pancreas_seg.data.phantom import PhantomConfig, generate_case, nih_paths, write_nih_layout, write_phantom_set
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.io.dicom_write import write_dicom_series
from pancreas_seg.io.nifti import write_nifti
from pancreas_seg.io.orientation import CANONICAL_AXCODES, storage_axcodes
from pancreas_seg.io.scan import Scan

REPO = Path(__file__).resolve().parents[2]
CONFIG = PhantomConfig(matrix=64, ct_slices=(48, 64))  # short scans: the converter, not the anatomy, is tested
SEED = 0
CT_CASES = (1, 2, 3)  # case 2: label stored with its rows flipped; case 3: InstanceNumber descending
MRI_CASES = (1, 2)
ML_PER_MM3 = 1e-3
PROGRESS_BAR = re.compile(r"^[\w ]+: +\d+%\|[^\]]*\]")  # a tqdm bar: "convert:  50%|##   | 1/2 [00:00<...]"


def case_id(n: int) -> str:
    return f"PANCREAS_{n:04d}"


def load_script(name: str) -> ModuleType:
    """A data_prep script as a module (data_prep is not a package)."""
    spec = importlib.util.spec_from_file_location(f"data_prep_{name}", REPO / "data_prep" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def message_lines(stderr: str) -> list[str]:
    """Lines of stderr a person reads: the last carriage-return segment of each, less any progress bar."""
    lines = [PROGRESS_BAR.sub("", line.split("\r")[-1]) for line in stderr.splitlines()]
    return [line for line in lines if line.strip()]


# --------------------------------------------------------------------------------
# NIH layout: exact round trip of phantoms
# --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nih_ct(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nih_ct")
    write_phantom_set(root, CT_CASES, CONFIG, seed=SEED, progress=False)
    return root


@pytest.fixture(scope="module")
def ct_store(nih_ct, tmp_path_factory) -> Path:
    """The phantoms converted once (read-only for the tests that use it)."""
    out = tmp_path_factory.mktemp("ct_store") / "store"
    sources, _ = find_nih_cases(nih_ct)
    report = convert_cases(sources, out, "CT", progress=False)
    assert report.failed == {} and report.converted == [case_id(n) for n in CT_CASES]
    return out


def test_phantom_layout_has_the_nih_quirks(nih_ct):
    """Case 2's label is not on the DICOM's axis order and case 3's InstanceNumber runs against z,
    so the round trip below exercises both."""
    series2, label2 = nih_paths(nih_ct, 2)
    image2, _ = generate_case(2, "CT", SEED, CONFIG)
    assert not np.allclose(nib.load(label2).affine, image2.affine)
    series3, _ = nih_paths(nih_ct, 3)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(series3.glob("*.dcm"))]
    z = [float(ds.ImagePositionPatient[2]) for ds in headers]
    numbers = [int(ds.InstanceNumber) for ds in headers]
    assert numbers[int(np.argmin(z))] == max(numbers)


def test_find_nih_cases_pairs_scans_and_labels(nih_ct):
    sources, unmatched = find_nih_cases(nih_ct)
    assert [s.case_id for s in sources] == [case_id(n) for n in CT_CASES] and unmatched == []
    assert all(s.image_path.is_dir() and s.label_path.name == f"label{s.case_id[-4:]}.nii.gz" for s in sources)
    assert detect_set_modality(sources) == "CT"


def test_nih_round_trip_is_exact(ct_store):
    store = CaseStore(ct_store)
    assert store.modality == "CT" and store.case_ids == [case_id(n) for n in CT_CASES]
    for n in CT_CASES:
        image, mask = generate_case(n, "CT", SEED, CONFIG)
        case = store.read_case(case_id(n))
        assert case.image.dtype == np.int16 and case.mask.dtype == np.uint8
        np.testing.assert_array_equal(case.image, image.array)
        np.testing.assert_array_equal(case.mask, mask)
        np.testing.assert_allclose(case.affine, image.affine, atol=1e-6)  # DICOM DS strings: 16 characters
        assert case.source["PatientID"] == case_id(n)
        entry = store.manifest[case_id(n)]
        slices = np.flatnonzero(mask.any(axis=(1, 2)))
        voxel_mm3 = abs(np.linalg.det(image.affine[:3, :3]))
        assert entry["shape"] == list(image.shape)
        assert entry["pancreas_slices"] == [int(slices[0]), int(slices[-1])]
        assert entry["pancreas_volume_ml"] == pytest.approx(mask.sum() * voxel_mm3 * ML_PER_MM3, abs=0.01)
        np.testing.assert_allclose(entry["spacing_mm"], image.spacing, atol=1e-4)


def _case_files(store_root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((store_root / "cases").iterdir())}


def test_conversion_is_idempotent_and_overwrite_converts_again(nih_ct, tmp_path):
    sources, _ = find_nih_cases(nih_ct)
    out = tmp_path / "store"
    convert_cases(sources, out, "CT", progress=False)
    before = _case_files(out)
    again = convert_cases(sources, out, "CT", progress=False)
    assert again.converted == [] and again.skipped == [case_id(n) for n in CT_CASES] and again.failed == {}
    assert _case_files(out) == before
    redone = convert_cases(sources, out, "CT", overwrite=True, progress=False)
    assert redone.converted == [case_id(n) for n in CT_CASES] and redone.skipped == []
    assert _case_files(out) == before  # the same bytes: conversion is deterministic


def test_two_jobs_give_the_same_store(nih_ct, ct_store, tmp_path):
    sources, _ = find_nih_cases(nih_ct)
    report = convert_cases(sources, tmp_path / "store", "CT", jobs=2, progress=False)
    assert sorted(report.converted) == [case_id(n) for n in CT_CASES] and report.failed == {}
    assert CaseStore(tmp_path / "store").manifest == CaseStore(ct_store).manifest
    assert _case_files(tmp_path / "store") == _case_files(ct_store)


def test_mri_phantoms_convert_into_an_mri_store(tmp_path):
    mri_config = PhantomConfig(modality="MRI", matrix=64)
    write_phantom_set(tmp_path / "nih", MRI_CASES, mri_config, seed=SEED, progress=False)
    sources, _ = find_nih_cases(tmp_path / "nih")
    modality = detect_set_modality(sources)  # from the DICOM Modality tag (MR)
    assert modality == "MRI"
    report = convert_cases(sources, tmp_path / "store", modality, progress=False)
    assert report.failed == {}
    store = CaseStore(tmp_path / "store")
    assert store.modality == "MRI"
    for n in MRI_CASES:
        image, mask = generate_case(n, "MRI", SEED, mri_config)
        case = store.read_case(case_id(n))
        assert case.modality == "MRI" and case.image.dtype == np.float32
        value_range = float(np.ptp(image.array))  # MR is stored as uint16 with a rescale slope
        np.testing.assert_allclose(case.image, image.array, atol=1e-5 * value_range)
        np.testing.assert_array_equal(case.mask, mask)
        np.testing.assert_allclose(case.affine, image.affine, atol=1e-6)
    with pytest.raises(InputError, match="holds MRI cases, cannot add CT"):
        convert_cases(sources, tmp_path / "store", "CT", progress=False)


# --------------------------------------------------------------------------------
# MSD Task07 layout
# --------------------------------------------------------------------------------

MSD_AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])  # NIfTI-style RAS affine of (col, row, slice)


def ct_with_air(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """int16 HU like a real CT's: soft tissue in the middle, noisy air (about -1000) in the outer
    columns, so that the converters' intensity check sees a calibrated scan."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-100, 200, shape).astype(np.int16)
    air = rng.integers(-1024, -950, shape).astype(np.int16)
    outside = np.zeros(shape, bool)
    outside[..., :3] = outside[..., -3:] = True
    return np.where(outside, air, array)


def _msd_case(root: Path, name: str, label: np.ndarray, image: np.ndarray | None = None) -> None:
    image = image if image is not None else ct_with_air(label.shape)
    write_nifti(Scan(image, MSD_AFFINE, "CT"), root / "imagesTr" / f"{name}.nii.gz")
    write_nifti(Scan(label, MSD_AFFINE, "CT"), root / "labelsTr" / f"{name}.nii.gz", dtype=np.uint8)


def test_msd_mask_is_label_at_least_one(tmp_path):
    label = np.zeros((6, 16, 16), np.uint8)
    label[2:4, 5:9, 5:9] = 1  # pancreas
    label[3, 6:8, 6:8] = 2  # tumour, inside the pancreas
    label[4, 10:12, 10:12] = 2  # tumour alone on a slice
    image = np.arange(label.size, dtype=np.int16).reshape(label.shape) - 700
    _msd_case(tmp_path / "msd", "pancreas_001", label, image)
    write_nifti(Scan(image, MSD_AFFINE, "CT"), tmp_path / "msd" / "imagesTr" / "pancreas_004.nii.gz")
    (tmp_path / "msd" / "imagesTr" / "._pancreas_001.nii.gz").write_bytes(b"macOS resource fork")

    sources, unmatched = find_msd_cases(tmp_path / "msd")
    assert [s.case_id for s in sources] == ["pancreas_001"]
    assert unmatched == ["pancreas_004: no label"]
    report = convert_cases(sources, tmp_path / "store", "CT", progress=False)
    assert report.converted == ["pancreas_001"]
    case = CaseStore(tmp_path / "store").read_case("pancreas_001")
    np.testing.assert_array_equal(case.mask, (label >= 1).astype(np.uint8))
    np.testing.assert_array_equal(case.image, image)
    np.testing.assert_allclose(case.affine, MSD_AFFINE)
    assert CaseStore(tmp_path / "store").manifest["pancreas_001"]["pancreas_slices"] == [2, 4]


def test_msd_script_converts_and_reports(tmp_path, capsys):
    label = np.zeros((6, 16, 16), np.uint8)
    label[2:4, 5:9, 5:9] = 1
    _msd_case(tmp_path / "msd", "pancreas_001", label)
    _msd_case(tmp_path / "msd", "pancreas_002", np.zeros_like(label))  # empty label: fails alone
    script = load_script("convert_msd")
    code = run_guarded(lambda: script.main(["--data", str(tmp_path / "msd"), "-o", str(tmp_path / "store")]))
    out, err = capsys.readouterr()
    assert code != 0
    assert "converted 1, already there 0, failed 1" in out and "1 CT cases" in out
    lines = message_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(tmp_path / "msd" / "labelsTr" / "pancreas_002.nii.gz") in lines[0] and "no pancreas voxels" in lines[0]


# --------------------------------------------------------------------------------
# Bad inputs: each builder spoils case 1 of an NIH root whose case 2 is good, and returns
# (path the message must name, words it must hold). Case 1 is first, so the modality
# detection of the script meets the broken case first, too.
# --------------------------------------------------------------------------------

TINY_SHAPE = (8, 16, 16)  # [Z, Y, X]
TINY_AFFINE = np.array([[-0.8, 0.0, 0.0, 6.0], [0.0, -0.8, 0.0, 6.0], [0.0, 0.0, 2.0, -40.0], [0.0, 0.0, 0.0, 1.0]])
BAD, GOOD = 1, 2


def tiny_case(affine: np.ndarray = TINY_AFFINE, seed: int = 0) -> tuple[Scan, np.ndarray]:
    """A small CT (int16 HU, air at the sides) with a box-shaped 'pancreas' in slices 2..5."""
    array = ct_with_air(TINY_SHAPE, seed)
    mask = np.zeros(TINY_SHAPE, np.uint8)
    mask[2:6, 5:10, 4:11] = 1
    return Scan(array, affine, "CT"), mask


def _spoiled_label(root: Path, array: np.ndarray, affine: np.ndarray = TINY_AFFINE, dtype=np.uint8) -> Path:
    image, mask = tiny_case()
    series, label = write_nih_layout(image, mask, root, BAD)
    write_nifti(Scan(array, affine, "CT"), label, dtype=dtype)
    return label


def label_other_shape(root: Path):
    array = np.ones((TINY_SHAPE[0], TINY_SHAPE[1], TINY_SHAPE[2] - 1), np.uint8)
    return _spoiled_label(root, array), ["grid differs", "(8, 16, 15)"]


def label_shifted_origin(root: Path):
    shifted = TINY_AFFINE.copy()
    shifted[2, 3] += 5.0  # 2.5 slices higher
    return _spoiled_label(root, tiny_case()[1], shifted), ["grid differs", "origin"]


def empty_label(root: Path):
    return _spoiled_label(root, np.zeros(TINY_SHAPE, np.uint8)), ["no pancreas voxels"]


def nan_label(root: Path):
    array = tiny_case()[1].astype(np.float32)
    array[3, 7, 7] = np.nan
    return _spoiled_label(root, array, dtype=np.float32), ["NaN"]


def missing_slice(root: Path):
    series, _ = write_nih_layout(*tiny_case(), root, BAD)
    sorted(series.glob("*.dcm"))[4].unlink()
    return series.parents[1], ["missing slice", "gap of 4.000 mm"]


def gantry_tilt(root: Path):
    tilted = TINY_AFFINE.copy()
    tilted[1, 2] = 2.0 * np.tan(np.radians(15.0))  # each slice shifted 0.54 mm along y: 15 degrees
    series, _ = write_nih_layout(*tiny_case(tilted), root, BAD)
    return series.parents[1], ["gantry tilt of 15.00 degrees"]


def truncated_file(root: Path):
    series, _ = write_nih_layout(*tiny_case(), root, BAD)
    path = sorted(series.glob("*.dcm"))[3]
    path.write_bytes(path.read_bytes()[:-50])
    return path, ["truncated"]


def truncated_header(root: Path):
    series, _ = write_nih_layout(*tiny_case(), root, BAD)
    path = sorted(series.glob("*.dcm"))[0]
    path.write_bytes(path.read_bytes()[:400])
    return path, ["truncated"]


def two_series(root: Path):
    series, _ = write_nih_layout(*tiny_case(), root, BAD)
    shifted = TINY_AFFINE.copy()
    shifted[2, 3] += 100.0
    write_dicom_series(tiny_case(shifted)[0], series.parent / "Pancreas-99999", patient_id=case_id(BAD),
                       series_uid="1.2.826.0.1.99", series_description="arterial")
    return series.parents[1], ["2 image series", "1.2.826.0.1.99"]


def no_dicom(root: Path):
    series, _ = write_nih_layout(*tiny_case(), root, BAD)
    shutil.rmtree(series)
    series.mkdir()
    (series / "README.txt").write_text("images withdrawn")
    return series.parents[1], ["no DICOM image series"]


def non_image_dicom(root: Path):
    series, _ = write_nih_layout(*tiny_case(), root, BAD)
    shutil.rmtree(series)
    series.mkdir()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "SR", generate_uid()
    ds.save_as(series / "report.dcm", enforce_file_format=True)
    return series.parents[1], ["no DICOM image series"]


def uncalibrated_scan(root: Path):
    image, mask = tiny_case()
    shifted = Scan((image.array + 1024).astype(np.int16), image.affine, "CT")  # stored without its -1024 intercept
    series, _ = write_nih_layout(shifted, mask, root, BAD)
    return series.parents[1], ["does not look like HU-calibrated CT", "near +24"]


def impossible_hu(root: Path):
    image, mask = tiny_case()
    corrupt = image.array.copy()
    corrupt[:, ::2, 4:12] = 20000  # a quarter of the field far above any tissue, bone or contrast
    series, _ = write_nih_layout(Scan(corrupt, image.affine, "CT"), mask, root, BAD)
    return series.parents[1], ["corrupt CT intensities", "outside -1200..4000 HU"]


BAD_CASES = [label_other_shape, label_shifted_origin, empty_label, nan_label, missing_slice, gantry_tilt,
             truncated_file, truncated_header, two_series, no_dicom, non_image_dicom, uncalibrated_scan,
             impossible_hu]


@pytest.fixture
def spoiled(request, tmp_path) -> tuple[Path, Path, list[str]]:
    root = tmp_path / "nih"
    write_nih_layout(*tiny_case(seed=GOOD), root, GOOD)
    named, words = request.param(root)
    return root, named, words


@pytest.mark.parametrize("spoiled", BAD_CASES, ids=lambda f: f.__name__, indirect=True)
def test_bad_case_fails_alone_with_one_clear_line(spoiled, tmp_path, capsys):
    root, named, words = spoiled
    sources, unmatched = find_nih_cases(root)
    assert [s.case_id for s in sources] == [case_id(BAD), case_id(GOOD)] and unmatched == []

    report = convert_cases(sources, tmp_path / "store", "CT", progress=False)
    assert report.converted == [case_id(GOOD)] and list(report.failed) == [case_id(BAD)]
    message = report.failed[case_id(BAD)]
    assert str(named) in message and all(word in message for word in words), message
    assert "\n" not in message
    store = CaseStore(tmp_path / "store")
    assert store.case_ids == [case_id(GOOD)]
    assert sorted(p.name for p in (store.root / "cases").iterdir()) == [f"{case_id(GOOD)}.npz"]

    script = load_script("convert_nih")
    code = run_guarded(lambda: script.main(["--data", str(root), "-o", str(tmp_path / "cli_store")]))
    out, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err
    assert message_lines(err) == [f"error: {message}"]
    assert "converted 1, already there 0, failed 1" in out
    assert CaseStore(tmp_path / "cli_store").case_ids == [case_id(GOOD)]


def test_folder_without_scans_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no PANCREAS_NNNN scan folders") as info:
        find_nih_cases(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)
    with pytest.raises(InputError, match="not a folder"):
        find_nih_cases(tmp_path / "nowhere")
    with pytest.raises(InputError, match="expected imagesTr/ and labelsTr/"):
        find_msd_cases(tmp_path / "empty")


def test_scans_without_any_label_are_refused(tmp_path):
    """Nothing to convert is an error, not an empty store (and no IndexError in the script)."""
    series, label = write_nih_layout(*tiny_case(), tmp_path / "nih", BAD)
    label.unlink()
    with pytest.raises(InputError, match="none of the 1 PANCREAS_NNNN scan folders has a labelNNNN"):
        find_nih_cases(tmp_path / "nih")
    write_nifti(tiny_case()[0], tmp_path / "msd" / "imagesTr" / "pancreas_001.nii.gz")
    (tmp_path / "msd" / "labelsTr").mkdir()
    with pytest.raises(InputError, match="none of the 1 images in imagesTr/ has a label"):
        find_msd_cases(tmp_path / "msd")


def test_unmatched_scans_and_labels_are_listed(tmp_path):
    write_nih_layout(*tiny_case(), tmp_path / "nih", 1)
    write_nih_layout(*tiny_case(), tmp_path / "nih", 2)
    write_nih_layout(*tiny_case(), tmp_path / "nih", 3)
    shutil.rmtree(nih_paths(tmp_path / "nih", 2)[0].parents[1])  # a removed duplicate: label only
    nih_paths(tmp_path / "nih", 3)[1].unlink()  # scan only
    sources, unmatched = find_nih_cases(tmp_path / "nih")
    assert [s.case_id for s in sources] == [case_id(1)]
    assert unmatched == ["PANCREAS_0003: no label0003.nii.gz", "label0002: no PANCREAS_0002 scan (removed duplicate?)"]


def test_store_holds_cases_in_the_canonical_orientation(tmp_path):
    label = np.zeros((6, 16, 16), np.uint8)
    label[2:4, 5:9, 3:6] = 1
    image = np.arange(label.size, dtype=np.int16).reshape(label.shape) - 700
    ras = np.diag([0.8, 0.8, 2.5, 1.0])  # stored as many NIfTI tools do: columns right, rows anterior
    _msd_case(tmp_path / "msd", "pancreas_001", label, image)
    for folder, array in (("imagesTr", image), ("labelsTr", label)):
        write_nifti(Scan(array, ras, "CT"), tmp_path / "msd" / folder / "pancreas_001.nii.gz")
    sources, _ = find_msd_cases(tmp_path / "msd")
    convert_cases(sources, tmp_path / "store", "CT", progress=False)
    case = CaseStore(tmp_path / "store").read_case("pancreas_001")
    assert storage_axcodes(case.scan) == CANONICAL_AXCODES
    np.testing.assert_array_equal(case.image, image[:, ::-1, ::-1])
    np.testing.assert_array_equal(case.mask, label[:, ::-1, ::-1])
