"""A plain folder of image/label NIfTI pairs -> case store (find_nifti_pairs, data_prep/convert_nifti.py).

The files are written with nibabel, as other tools write them: 32x32x8 CT (int16 HU, noisy air
around a body) on an L, P, S grid (the store's canonical orientation, so the stored mask is the
label's array transposed), labels with TotalSegmentator's values (pancreas 7, liver 5, spleen 1).
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

from pancreas_seg.config import DataConfig
from pancreas_seg.console import EXIT_USER_ERROR, run_guarded
from pancreas_seg.data.convert import convert_cases, find_nifti_pairs, find_msd_cases
from pancreas_seg.data.dataflow import SliceStackFlow, prepare_cases, sample_positions
from pancreas_seg.data.splits import store_folds
from pancreas_seg.data.store import CaseStore
from pancreas_seg.errors import InputError

REPO = Path(__file__).resolve().parents[2]
SHAPE_XYZ = (32, 32, 8)  # as NIfTI stores it; the store's arrays are [Z, Y, X] = (8, 32, 32)
AFFINE = np.diag([-0.8, -0.8, 2.0, 1.0])  # voxel axes L, P, S: the canonical orientation, no flips
PANCREAS, LIVER, SPLEEN = 7, 5, 1  # TotalSegmentator's label values
EXIT_SOME_CASES_FAILED = 1
PROGRESS_BAR = re.compile(r"^[\w ]+: +\d+%\|[^\]]*\]")  # a tqdm bar: "convert:  50%|##   | 1/2 [00:00<...]"
TQDM_MARK = "%|"


def load_script(name: str) -> ModuleType:
    """A data_prep script as a module (data_prep is not a package)."""
    spec = importlib.util.spec_from_file_location(f"data_prep_{name}", REPO / "data_prep" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script("convert_nifti")


def convert(*args: str) -> int:
    return run_guarded(lambda: SCRIPT.main(list(args)))


def message_lines(stderr: str) -> list[str]:
    """Lines of stderr a person reads: the last carriage-return segment of each, less any progress bar."""
    lines = [PROGRESS_BAR.sub("", line.split("\r")[-1]) for line in stderr.splitlines()]
    return [line for line in lines if line.strip()]


def ct_image(seed: int) -> np.ndarray:
    """``[X, Y, Z]`` int16 HU: a soft-tissue body in the middle, noisy air (about -1000) around it."""
    rng = np.random.default_rng(seed)
    image = rng.integers(-1024, -950, SHAPE_XYZ).astype(np.int16)
    image[6:26, 6:26] = rng.integers(-100, 200, (20, 20, SHAPE_XYZ[2]))
    return image


def organ_label(seed: int, pancreas: bool = True) -> np.ndarray:
    """``[X, Y, Z]`` uint8: a liver box, a spleen box and (``pancreas``) a pancreas blob of value 7."""
    label = np.zeros(SHAPE_XYZ, np.uint8)
    label[7:14, 7:14, 1:7] = LIVER
    label[20:24, 8:12, 2:5] = SPLEEN
    if pancreas:
        x0 = 14 + seed
        label[x0:x0 + 6, 16:22, 2 + seed % 2:6] = PANCREAS
    return label


def write(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, path)
    return path


def write_pair(images: Path, labels: Path, case_id: str, seed: int, pancreas: bool = True,
               image_name: str | None = None) -> tuple[Path, Path]:
    return (write(images / (image_name or f"{case_id}.nii.gz"), ct_image(seed)),
            write(labels / f"{case_id}.nii.gz", organ_label(seed, pancreas)))


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """images/ and labels/: s01..s03 with pancreas, s04 with other organs only (pancreas-free)."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    for seed, case_id in enumerate(("s01", "s02", "s03")):
        write_pair(images, labels, case_id, seed)
    write_pair(images, labels, "s04", 3, pancreas=False)
    return images, labels


def stored_mask(label_xyz: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """The mask the store must hold: the label's values on the [Z, Y, X] canonical grid."""
    return np.isin(label_xyz.transpose(2, 1, 0), values).astype(np.uint8)


# --------------------------------------------------------------------------------
# Converting: label values, pancreas-free cases, the store they make
# --------------------------------------------------------------------------------


def test_label_7_is_the_mask_and_a_label_without_it_is_pancreas_free(folders, tmp_path, capsys):
    images, labels = folders
    out = tmp_path / "store"
    assert convert("--images", str(images), "--labels", str(labels), "--label", "7", "-o", str(out), "--quiet") == 0
    stdout, stderr = capsys.readouterr()
    assert "converted 4, already there 0, failed 0" in stdout
    assert "pancreas-free (no label value [7]): 1 case(s): s04" in stdout and "4 CT cases" in stdout
    assert message_lines(stderr) == []
    store = CaseStore(out)
    assert store.case_ids == ["s01", "s02", "s03", "s04"] and store.modality == "CT"
    for seed, case_id in enumerate(store.case_ids):
        case = store.read_case(case_id)
        label = nib.load(labels / f"{case_id}.nii.gz").get_fdata().astype(np.uint8)
        np.testing.assert_array_equal(case.mask, stored_mask(label, (PANCREAS,)))
        np.testing.assert_array_equal(case.image, ct_image(seed).transpose(2, 1, 0))
        np.testing.assert_allclose(case.affine, AFFINE)
    assert not store.read_case("s04").mask.any()
    assert store.manifest["s04"]["pancreas_slices"] is None and store.manifest["s04"]["pancreas_volume_ml"] == 0
    assert store.manifest["s01"]["pancreas_slices"] == [2, 5]


def test_several_label_values_make_one_mask(folders, tmp_path, capsys):
    images, labels = folders
    out = tmp_path / "store"
    assert convert("--images", str(images), "--labels", str(labels), "--label", "7", "1", "-o", str(out),
                   "--quiet") == 0
    assert "pancreas-free" not in capsys.readouterr().out  # s04 has spleen (1)
    label = nib.load(labels / "s04.nii.gz").get_fdata().astype(np.uint8)
    np.testing.assert_array_equal(CaseStore(out).read_case("s04").mask, stored_mask(label, (PANCREAS, SPLEEN)))


def test_a_wrong_label_value_is_warned_about(folders, tmp_path, capsys):
    images, labels = folders
    assert convert("--images", str(images), "--labels", str(labels), "--label", "11", "-o", str(tmp_path / "s"),
                   "--quiet") == 0
    assert message_lines(capsys.readouterr().err) == [
        "warning: none of the 4 converted cases has label values [11]; is --label right?"]


def test_a_store_with_a_pancreas_free_case_feeds_the_dataflow(folders, tmp_path):
    images, labels = folders
    sources, _ = find_nifti_pairs(images, labels, label_values=(PANCREAS,))
    convert_cases(sources, tmp_path / "store", "CT", progress=False)
    store = CaseStore(tmp_path / "store")
    assert store.summary().splitlines()[0] == f"{store.root}: 4 CT cases"
    config = DataConfig(input_size=32, crop="body", augment=False, focus_margin=1, focus_fraction=0.5)
    assert sorted(case for fold in store_folds(store, config) for case in fold.test) == store.case_ids
    cases = prepare_cases(store, store.case_ids, config, cache_dir=tmp_path / "prepared", progress=False)
    free = store.case_ids.index("s04")
    assert cases[free].pancreas_slices.size == 0
    positions = sample_positions(cases, config.focus_fraction, config.focus_margin, None)
    assert [s for c, s in positions if c == free] == list(range(SHAPE_XYZ[2]))  # every slice: all background
    flow = SliceStackFlow(cases, config, shuffle=False)
    flow.reset_state()
    masks = [mask for (stack, mask), (c, _) in zip(flow, positions) if c == free]
    assert len(masks) == SHAPE_XYZ[2] and not any(mask.any() for mask in masks)


def test_msd_still_refuses_a_label_without_pancreas(tmp_path):
    write(tmp_path / "msd" / "imagesTr" / "pancreas_001.nii.gz", ct_image(0))
    write(tmp_path / "msd" / "labelsTr" / "pancreas_001.nii.gz", np.zeros(SHAPE_XYZ, np.uint8))
    sources, _ = find_msd_cases(tmp_path / "msd")
    report = convert_cases(sources, tmp_path / "store", "CT", progress=False)
    assert "no pancreas voxels" in report.failed["pancreas_001"]


# --------------------------------------------------------------------------------
# Pairing: names, nnU-Net's _0000, patterns
# --------------------------------------------------------------------------------


def test_nnunet_image_names_pair_with_their_labels(tmp_path):
    write_pair(tmp_path / "imagesTr", tmp_path / "labelsTr", "case_7", 0, image_name="case_7_0000.nii.gz")
    write(tmp_path / "imagesTr" / "case_8.nii", ct_image(1))  # .nii and .nii.gz pair alike
    write(tmp_path / "labelsTr" / "case_8.nii.gz", organ_label(1))
    write(tmp_path / "imagesTr" / "._case_8.nii", np.zeros(SHAPE_XYZ, np.uint8))  # macOS resource fork: ignored
    sources, unmatched = find_nifti_pairs(tmp_path / "imagesTr", tmp_path / "labelsTr", label_values=[PANCREAS])
    assert [(s.case_id, s.image_path.name, s.label_path.name) for s in sources] == [
        ("case_7", "case_7_0000.nii.gz", "case_7.nii.gz"), ("case_8", "case_8.nii", "case_8.nii.gz")]
    assert unmatched == [] and all(s.label_values == (PANCREAS,) and s.pancreas_free_ok for s in sources)


def test_patterns_pair_files_of_one_folder_and_of_subfolders(tmp_path):
    for seed, case_id in enumerate(("a1", "b2")):
        write(tmp_path / "flat" / f"{case_id}_ct.nii.gz", ct_image(seed))
        write(tmp_path / "flat" / f"{case_id}_seg.nii.gz", organ_label(seed))
        write(tmp_path / "tree" / case_id / "ct.nii.gz", ct_image(seed))
        write(tmp_path / "tree" / case_id / "segmentations" / "pancreas.nii.gz", organ_label(seed))
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    sources, unmatched = find_nifti_pairs(tmp_path / "flat", image_pattern="{id}_ct.nii.gz",
                                          label_pattern="{id}_seg.nii.gz")
    assert [(s.case_id, s.image_path.name, s.label_path.name) for s in sources] == [
        ("a1", "a1_ct.nii.gz", "a1_seg.nii.gz"), ("b2", "b2_ct.nii.gz", "b2_seg.nii.gz")] and unmatched == []
    sources, unmatched = find_nifti_pairs(tmp_path / "tree", image_pattern="{id}/ct.nii.gz",
                                          label_pattern="{id}/segmentations/pancreas.nii.gz")
    assert [s.case_id for s in sources] == ["a1", "b2"] and unmatched == []
    # the label pattern's files are never images, even where the image pattern matches them too
    write(tmp_path / "flat" / "a1.nii.gz", ct_image(0))
    sources, unmatched = find_nifti_pairs(tmp_path / "flat", image_pattern="{id}.nii.gz",
                                          label_pattern="{id}_seg.nii.gz")
    assert [(s.case_id, s.image_path.name, s.label_path.name) for s in sources] == [
        ("a1", "a1.nii.gz", "a1_seg.nii.gz")]
    assert unmatched == [f"{tmp_path / 'flat' / 'a1_ct.nii.gz'}: image without a label",
                         f"{tmp_path / 'flat' / 'b2_ct.nii.gz'}: image without a label",
                         f"{tmp_path / 'flat' / 'b2_seg.nii.gz'}: label without an image"]


def test_pairing_refusals_name_the_folder_or_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'empty'}: no image files")):
        find_nifti_pairs(tmp_path / "empty", tmp_path / "empty", "{id}_ct.nii.gz", "{id}_seg.nii.gz")
    with pytest.raises(InputError, match="images and labels in one folder need an image and a label pattern"):
        find_nifti_pairs(tmp_path / "empty")
    with pytest.raises(InputError, match="not a folder"):
        find_nifti_pairs(tmp_path / "empty", tmp_path / "nowhere")
    write(tmp_path / "images" / "x.nii", ct_image(0))
    write(tmp_path / "images" / "x.nii.gz", ct_image(0))
    write(tmp_path / "labels" / "y.nii.gz", organ_label(0))
    with pytest.raises(InputError, match=re.escape(f"2 files give case id 'x' ({tmp_path / 'images' / 'x.nii'}, "
                                                   f"{tmp_path / 'images' / 'x.nii.gz'})")):
        find_nifti_pairs(tmp_path / "images", tmp_path / "labels")
    (tmp_path / "images" / "x.nii").unlink()
    with pytest.raises(InputError, match="none of the 1 images has a label of the same case id"):
        find_nifti_pairs(tmp_path / "images", tmp_path / "labels")
    with pytest.raises(ValueError, match="holding {id} once"):
        find_nifti_pairs(tmp_path / "images", image_pattern="ct.nii.gz", label_pattern="{id}_seg.nii.gz")
    with pytest.raises(ValueError, match="0 is background"):
        find_nifti_pairs(tmp_path / "images", tmp_path / "labels", label_values=[0])


# --------------------------------------------------------------------------------
# The script's errors: one line naming the file, a non-zero exit
# --------------------------------------------------------------------------------


def test_unpaired_files_are_refused_unless_skipped(folders, tmp_path, capsys):
    images, labels = folders
    lonely_image = write(images / "s05.nii.gz", ct_image(5))
    lonely_label = write(labels / "s06.nii.gz", organ_label(0))
    out = tmp_path / "store"
    assert convert("--images", str(images), "--labels", str(labels), "--label", "7", "-o", str(out)) == EXIT_USER_ERROR
    assert message_lines(capsys.readouterr().err) == [
        f"error: 2 unpaired file(s): {lonely_image}: image without a label; {lonely_label}: label without an image; "
        "give --skip-unpaired to convert the 4 pair(s) alone"]
    assert not out.exists()

    assert convert("--images", str(images), "--labels", str(labels), "--label", "7", "-o", str(out), "--quiet",
                   "--skip-unpaired") == 0
    stdout, stderr = capsys.readouterr()
    assert message_lines(stderr) == [f"skipped {lonely_image}: image without a label",
                                     f"skipped {lonely_label}: label without an image"]
    assert "converted 4, already there 0, failed 0" in stdout
    assert CaseStore(out).case_ids == ["s01", "s02", "s03", "s04"]


def test_a_label_on_another_grid_fails_its_case_alone(folders, tmp_path, capsys):
    images, labels = folders
    write(images / "s07.nii.gz", ct_image(0))
    bad_shape = write(labels / "s07.nii.gz", organ_label(0)[:, :, :7])
    write(images / "s08.nii.gz", ct_image(1))
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.4  # half a voxel
    bad_origin = write(labels / "s08.nii.gz", organ_label(1), shifted)
    write(images / "s10.nii.gz", ct_image(2))
    rounded = AFFINE.copy()
    rounded[:3, 3] += 1e-5  # mm: a rounding in another tool's header, within the tolerance
    write(labels / "s10.nii.gz", organ_label(2), rounded)
    out = tmp_path / "store"
    code = convert("--images", str(images), "--labels", str(labels), "--label", "7", "-o", str(out), "--quiet")
    stdout, stderr = capsys.readouterr()
    assert code == EXIT_SOME_CASES_FAILED and "Traceback" not in stderr
    lines = message_lines(stderr)
    assert len(lines) == 2 and all(line.startswith("error: ") and "grid differs" in line for line in lines)
    assert lines[0].startswith(f"error: {bad_shape}: ") and "(7, 32, 32)" in lines[0]
    assert lines[1].startswith(f"error: {bad_origin}: ") and "origin" in lines[1]
    assert "converted 5, already there 0, failed 2" in stdout
    assert CaseStore(out).case_ids == ["s01", "s02", "s03", "s04", "s10"]


def test_non_integer_label_values_fail_their_case(folders, tmp_path, capsys):
    images, labels = folders
    write(images / "s09.nii.gz", ct_image(0))
    fractional = write(labels / "s09.nii.gz", organ_label(0).astype(np.float32) * 0.5)
    code = convert("--images", str(images), "--labels", str(labels), "--label", "7", "-o", str(tmp_path / "s"),
                   "--quiet")
    assert code == EXIT_SOME_CASES_FAILED
    assert message_lines(capsys.readouterr().err) == [f"error: {fractional}: label map has non-integer values"]


def test_an_empty_folder_and_bad_arguments_are_refused(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    out = tmp_path / "store"
    assert convert("--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
                   "-o", str(out)) == EXIT_USER_ERROR
    assert message_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'images'}: no image files (*.nii, *.nii.gz) found"]
    assert convert("--images", str(tmp_path / "images"), "--image-pattern", "ct.nii.gz",
                   "--label-pattern", "{id}.nii.gz", "-o", str(out)) == EXIT_USER_ERROR
    assert "--image-pattern/--label-pattern: file pattern 'ct.nii.gz'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        SCRIPT.parse_args(["--images", "x", "-o", "y", "--label", "0"])
    assert info.value.code == EXIT_USER_ERROR and "0 is background" in capsys.readouterr().err
    assert not out.exists()


def test_quiet_prints_no_progress_bar(folders, tmp_path, capsys):
    images, labels = folders
    assert convert("--images", str(images), "--labels", str(labels), "--label", "7", "-o", str(tmp_path / "a")) == 0
    assert TQDM_MARK in capsys.readouterr().err  # the bar this test is about
    assert convert("--images", str(images), "--labels", str(labels), "--label", "7", "-o", str(tmp_path / "b"),
                   "--quiet") == 0
    assert TQDM_MARK not in capsys.readouterr().err
