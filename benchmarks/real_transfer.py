"""How a model trained on phantoms does on real CT slices with manual masks (run by hand).

Each real slice (``*_img.nii.gz`` with its mask ``*_seg.nii.gz``, pancreas = 1, as in
``../shared/data/real/nih_slices``: NIH Pancreas-CT patients 1-3) is read and predicted by the
path ``pancreas-seg predict`` takes (:func:`pancreas_seg.predict.read_input`,
:func:`pancreas_seg.inference.predict_scan`, default options unless given). Printed: per slice,
the DSC, predicted and true pixels, the highest and mean probability inside the true pancreas and
the highest outside it; per patient and overall, the mean DSC and the empty predictions.

These slices are for measuring and looking only: never train on them or choose a checkpoint by
them (a figure measured on what a model learned from says nothing).

    python benchmarks/real_transfer.py RUN                         # RUN: a run folder or model file
    python benchmarks/real_transfer.py RUN --figure figures/real_transfer.png
    python benchmarks/real_transfer.py RUN --figure F --phantoms STORE   # phantom slices beside them
    python benchmarks/real_transfer.py RUN --data DIR --threshold 0.1 --dense
    python benchmarks/real_transfer.py RUN --dense --fat-ring 3     # probe: a fat plane painted around the truth
    python benchmarks/real_transfer.py RUN --dense --phantoms STORE --swap 15,30,60   # probe: swap surroundings

``--context`` prints what surrounds the pancreas (share of fat within 5 mm of it; shares of fat and
of 80-140 HU tissue in the body; the pancreas' area) on
the real slices and, with ``--phantoms``, on the phantoms' slices with the most pancreas: the
measurable gap between the two. ``--fat-ring MM`` paints fat (-95 HU) in a ring of that width
around the true pancreas of every real slice before predicting it: a model that then finds the
pancreas has learned the phantoms' fat plane, not the gland (a probe, never a result).
``--swap R,...`` (with ``--phantoms``) moves a disk of radius R mm around the pancreas between real
and phantom slices (the phantom store's test cases of the model's fold, else all its cases; each
real slice is paired with one phantom slice, both on the phantom's pixel size): "real in phantom"
is the real gland with R mm of its real surroundings pasted into a phantom slice at the phantom
pancreas' place, "phantom in real" the reverse; DSC against the pasted gland. The radius at which
a real gland stops being found is how far the surroundings the model relies on reach.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from pancreas_seg.console import run_guarded, setup_logging
from pancreas_seg.errors import InputError
from pancreas_seg.inference import PredictOptions, predict_scan
from pancreas_seg.data.preprocess import CT_BODY_THRESHOLD_HU
from pancreas_seg.data.store import CaseStore
from pancreas_seg.io.nifti import read_nifti
from pancreas_seg.io.orientation import to_canonical
from pancreas_seg.io.scan import Scan
from pancreas_seg.masks import largest_component
from pancreas_seg.metrics import dice
from pancreas_seg.networks import LoadedModel, load_models
from pancreas_seg.predict import ScanInput, read_input
from pancreas_seg.run_folder import RunFolder

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "nih_slices"
IMAGE_SUFFIX = "_img.nii.gz"
MASK_SUFFIX = "_seg.nii.gz"
PATIENT_PATTERN = re.compile(r"(\d{4})")  # NIH patient number in a slice's file name
FIGURE_WINDOW_HU = (-160, 240)  # HU, display window of the figure (the CT window of the presets)
FAT_HU = -30.0  # HU, below this a body pixel counts as fat (as in benchmarks/phantom_realism.py)
SOLID_HU = (80.0, 140.0)  # HU, enhancing solid tissue (liver, spleen, pancreas, bowel wall) in --context
NEIGHBOURHOOD_MM = 5.0  # mm, ring around the pancreas whose fat share --context reports
RING_FAT_HU = -95.0  # HU, what --fat-ring paints (subcutaneous fat)
RING_NOISE_HU = 12.0  # HU, sd of the noise on it (the real slices' noise in the liver)
SWAP_FEATHER_PX = 3.0  # px, width of the blend at the edge of a swapped disk
AIR_HU = -1024.0  # HU, fill where a resampled slice does not reach


@dataclass(frozen=True)
class SliceResult:
    """One real slice's prediction against its manual mask (probabilities on the scan's grid)."""

    name: str
    patient: str
    dsc: float
    predicted_px: int
    true_px: int
    max_inside: float
    mean_inside: float
    max_outside: float


@dataclass(frozen=True)
class Context:
    """What surrounds the pancreas on one slice: mean HU inside it, share of fat in the ring
    ``NEIGHBOURHOOD_MM`` around it, shares of fat and of ``SOLID_HU`` tissue in the body, and the
    pancreas' area (cm^2)."""

    pancreas_hu: float
    ring_fat: float
    body_fat: float
    body_solid: float
    pancreas_cm2: float


def ring_around(mask: np.ndarray, width_mm: float, pixel_mm: float) -> np.ndarray:
    """Pixels within ``width_mm`` of ``mask`` ``[Y, X]`` (square pixels of ``pixel_mm``), outside it."""
    steps = max(1, int(round(width_mm / pixel_mm)))
    return ndimage.binary_dilation(mask, iterations=steps) & ~mask


def body_region(image: np.ndarray) -> np.ndarray:
    """The largest connected region above the body threshold of one slice ``[Y, X]`` HU: the
    patient without the table or the air (gas inside the bowel is left out too)."""
    return largest_component((image > CT_BODY_THRESHOLD_HU)[None])[0]


def pancreas_context(image: np.ndarray, mask: np.ndarray, pixel_mm: float) -> Context:
    """:class:`Context` of one slice ``image`` ``[Y, X]`` HU with its pancreas ``mask``."""
    mask = mask.astype(bool)
    ring = ring_around(mask, NEIGHBOURHOOD_MM, pixel_mm)
    body = image[body_region(image)]
    solid = (body >= SOLID_HU[0]) & (body < SOLID_HU[1])
    return Context(float(image[mask].mean()), float((image[ring] < FAT_HU).mean()), float((body < FAT_HU).mean()),
                   float(solid.mean()), float(mask.sum()) * pixel_mm ** 2 / 100)


def paint_fat_ring(scan: Scan, truth: np.ndarray, width_mm: float, seed: int = 0) -> Scan:
    """``scan`` with fat painted in a ``width_mm`` ring around ``truth`` on every slice (the probe)."""
    rng = np.random.default_rng(seed)
    image = scan.array.copy()
    for z in range(image.shape[0]):
        ring = ring_around(truth[z], width_mm, float(scan.spacing[1]))
        image[z][ring] = np.rint(RING_FAT_HU + rng.normal(0, RING_NOISE_HU, int(ring.sum()))).astype(image.dtype)
    return Scan(image, scan.affine, scan.modality, scan.source)


def on_pixel_size(image: np.ndarray, mask: np.ndarray, from_mm: float, to_mm: float,
                  shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A slice ``[Y, X]`` of ``from_mm`` pixels and its mask resampled to ``to_mm`` pixels, cut or
    padded (air) at the bottom and right to ``shape``."""
    factor = from_mm / to_mm
    image = ndimage.zoom(image.astype(np.float32), factor, order=1)
    mask = ndimage.zoom(mask.astype(np.float32), factor, order=1) > 0.5
    pad = [(0, max(0, shape[0] - image.shape[0])), (0, max(0, shape[1] - image.shape[1]))]
    image = np.pad(image, pad, constant_values=AIR_HU)[:shape[0], :shape[1]]
    return image, np.pad(mask, pad)[:shape[0], :shape[1]]


def paste_neighbourhood(target: np.ndarray, target_mask: np.ndarray, source: np.ndarray, source_mask: np.ndarray,
                        radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """``source``'s pixels within ``radius_px`` of its pancreas' centroid, moved onto ``target``'s
    pancreas centroid (blended over :data:`SWAP_FEATHER_PX`), and the moved source pancreas inside
    the disk: ``(image, truth)``. Both slices ``[Y, X]`` on one pixel size."""
    source_centre = np.array(ndimage.center_of_mass(source_mask))
    target_centre = np.array(ndimage.center_of_mass(target_mask))
    dy, dx = np.rint(target_centre - source_centre).astype(int)
    moved = ndimage.shift(source.astype(np.float32), (dy, dx), order=0, mode="nearest")
    moved_mask = ndimage.shift(source_mask.astype(np.uint8), (dy, dx), order=0) > 0
    rows, cols = np.indices(target.shape)
    distance = np.hypot(rows - target_centre[0], cols - target_centre[1])
    weight = np.clip((radius_px - distance) / SWAP_FEATHER_PX, 0.0, 1.0)
    return target * (1 - weight) + moved * weight, moved_mask & (weight > 0.5)


@dataclass(frozen=True)
class SwapResult:
    """Mean DSC of the pasted gland at one radius, each way."""

    radius_mm: float
    real_in_phantom: float
    phantom_in_real: float


def swap_probe(reals: list[tuple[Scan, np.ndarray]], phantoms: list[tuple[Scan, np.ndarray]], radii_mm: list[float],
               models: list[LoadedModel], options: PredictOptions) -> list[SwapResult]:
    """The ``--swap`` probe: one-slice ``(scan, truth [Y, X])`` pairs, real and phantom, the i-th real
    slice with the (i mod n)-th phantom one."""
    def dsc(image: np.ndarray, like: Scan, truth: np.ndarray) -> float:
        scan = Scan(np.rint(image)[None].astype(np.int16), like.affine, "CT", {})
        return dice(predict_scan(scan, models, options, {}).mask[0] > 0, truth)

    results = []
    for radius in radii_mm:
        into_phantom, into_real = [], []
        for index, (real, real_truth) in enumerate(reals):
            phantom, phantom_truth = phantoms[index % len(phantoms)]
            real_mm, phantom_mm = float(real.spacing[1]), float(phantom.spacing[1])
            source = on_pixel_size(real.array[0], real_truth, real_mm, phantom_mm, phantom.array.shape[1:])
            image, truth = paste_neighbourhood(phantom.array[0].astype(np.float32), phantom_truth, *source,
                                               radius / phantom_mm)
            into_phantom.append(dsc(image, phantom, truth))
            source = on_pixel_size(phantom.array[0], phantom_truth, phantom_mm, real_mm, real.array.shape[1:])
            image, truth = paste_neighbourhood(real.array[0].astype(np.float32), real_truth, *source, radius / real_mm)
            into_real.append(dsc(image, real, truth))
        results.append(SwapResult(radius, float(np.mean(into_phantom)), float(np.mean(into_real))))
    return results


def swap_cases(store: CaseStore, model: LoadedModel) -> list[tuple[Scan, np.ndarray]]:
    """The slice with the most pancreas of each of ``store``'s test cases of ``model``'s fold (all
    cases when the run names none of them), in the networks' orientation."""
    identity = RunFolder(model.path.parent).read_identity()
    test = [case_id for case_id in (identity.fold["test"] if identity else []) if store.has_case(case_id)]
    chosen = []
    for case_id in test or store.case_ids:
        case = store.read_case(case_id)
        chosen.append(canonical_slice(case.scan, case.mask, int(np.argmax(case.mask.sum(axis=(1, 2))))))
    return chosen


def canonical_slice(scan: Scan, mask: np.ndarray, z: int) -> tuple[Scan, np.ndarray]:
    """Slice ``z`` (first array axis) of ``scan`` as a one-slice scan at its own position, and its
    mask ``[Y, X]``, in the networks' orientation."""
    affine = scan.affine.copy()
    affine[:3, 3] += z * affine[:3, 2]
    canonical, _ = to_canonical(Scan(scan.array[z:z + 1], affine, scan.modality, {}))
    truth, _ = to_canonical(Scan(mask[z:z + 1].astype(np.uint8), affine, scan.modality, {}))
    return canonical, truth.array[0] > 0


def print_context(label: str, contexts: list[Context]) -> None:
    """Means and sds of :class:`Context` over ``contexts``."""
    for name in ("pancreas_hu", "ring_fat", "body_fat", "body_solid", "pancreas_cm2"):
        values = np.array([getattr(c, name) for c in contexts])
        print(f"{label} {name}: {values.mean():.2f} ± {values.std():.2f}")


def find_slices(root: Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs of ``root``: every ``*_img.nii.gz`` with its ``*_seg.nii.gz``."""
    if not root.is_dir():
        raise InputError(root, "not a folder of real slices (give --data)")
    images = sorted(root.glob("*" + IMAGE_SUFFIX))
    pairs = [(image, image.with_name(image.name[:-len(IMAGE_SUFFIX)] + MASK_SUFFIX)) for image in images]
    missing = [str(mask) for _, mask in pairs if not mask.exists()]
    if missing:
        raise InputError(missing[0], f"mask missing ({len(missing)} of {len(pairs)} slices have none)")
    if not pairs:
        raise InputError(root, f"no *{IMAGE_SUFFIX} files")
    return pairs


def patient_of(path: Path) -> str:
    """The patient number in a file name (``nihhu_0001_000_img.nii.gz`` -> ``0001``), else the stem."""
    match = PATIENT_PATTERN.search(path.name)
    return match.group(1) if match else path.name[:-len(IMAGE_SUFFIX)]


def score_slice(image_path: Path, mask_path: Path, models: list[LoadedModel], options: PredictOptions,
                fat_ring_mm: float = 0.0) -> tuple[SliceResult, Scan, np.ndarray, np.ndarray]:
    """Predict one real slice as ``predict`` does (after :func:`paint_fat_ring` when ``fat_ring_mm``);
    returns its result, scan, truth and probability."""
    scan = read_input(ScanInput(image_path.name[:-len(IMAGE_SUFFIX)], image_path, "nifti"), "CT")
    truth = read_nifti(mask_path, modality="CT", kind="label").array > 0
    if truth.shape != scan.array.shape:
        raise InputError(mask_path, f"mask shape {truth.shape} differs from the image's {scan.array.shape}")
    if fat_ring_mm > 0:
        scan = paint_fat_ring(scan, truth, fat_ring_mm)
    prediction = predict_scan(scan, models, options, {})
    probability = prediction.probability
    inside = probability[truth]
    result = SliceResult(image_path.name[:-len(IMAGE_SUFFIX)], patient_of(image_path),
                         dice(prediction.mask > 0, truth), int(prediction.mask.sum()), int(truth.sum()),
                         float(inside.max()) if inside.size else 0.0, float(inside.mean()) if inside.size else 0.0,
                         float(probability[~truth].max()))
    return result, scan, truth, probability


def print_results(results: list[SliceResult]) -> None:
    """Per-slice rows, then per patient and overall: mean DSC and empty predictions."""
    print(f"{'slice':<18}{'DSC':>7}{'pred px':>9}{'true px':>9}{'max in':>8}{'mean in':>9}{'max out':>9}")
    for r in results:
        print(f"{r.name:<18}{r.dsc:7.3f}{r.predicted_px:9d}{r.true_px:9d}{r.max_inside:8.3f}{r.mean_inside:9.3f}"
              f"{r.max_outside:9.3f}")
    groups = {p: [r for r in results if r.patient == p] for p in sorted({r.patient for r in results})}
    for patient, rows in [*groups.items(), ("all", results)]:
        empty = sum(r.predicted_px == 0 for r in rows)
        print(f"patient {patient}: mean DSC {np.mean([r.dsc for r in rows]):.3f} over {len(rows)} slices, "
              f"{empty} empty predictions")


def canonical_slices(affine: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """The middle axial slice of each ``[Z, Y, X]`` array on ``affine``'s grid, turned to the
    orientation the networks see (:func:`~pancreas_seg.io.orientation.to_canonical`: anterior up,
    the patient's right on the image's left), so real and phantom slices are shown alike."""
    views = []
    for array in arrays:
        canonical, _ = to_canonical(Scan(np.asarray(array, np.float32), affine))
        views.append(canonical.array[canonical.array.shape[0] // 2])
    return views


def phantom_contexts(store: CaseStore) -> list[Context]:
    """:class:`Context` of every case's slice with the most pancreas."""
    contexts = []
    for case_id in store.case_ids:
        case = store.read_case(case_id)
        z = int(np.argmax(case.mask.sum(axis=(1, 2))))
        contexts.append(pancreas_context(case.image[z].astype(np.float32), case.mask[z], float(case.spacing[1])))
    return contexts


def phantom_panels(store: CaseStore, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(case id, slice, pancreas mask)`` of the slice with the most pancreas of the first
    ``count`` cases of ``store``, in the networks' orientation."""
    panels = []
    for case_id in store.case_ids[:count]:
        case = store.read_case(case_id)
        z = int(np.argmax(case.mask.sum(axis=(1, 2))))
        image, mask = canonical_slices(case.affine, case.image[z:z + 1], case.mask[z:z + 1])
        panels.append((case_id, image, mask))
    return panels


def save_figure(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                phantoms: list[tuple[str, np.ndarray, np.ndarray]] = ()) -> None:
    """Real slices at the CT window with the manual outline (red) and the prediction's
    probability beside each (the model's view of what it was never trained on); with
    ``phantoms``, a first row of phantom slices at the same window, as the model was trained on."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    top = 1 if phantoms else 0
    columns = max(len(panels), len(phantoms))
    fig, axes = plt.subplots(2 + top, columns, figsize=(2.4 * columns, 2.5 * (2 + top)), squeeze=False)
    for column, (name, image, truth) in enumerate(phantoms):
        axes[0, column].imshow(image, cmap="gray", vmin=FIGURE_WINDOW_HU[0], vmax=FIGURE_WINDOW_HU[1])
        axes[0, column].contour(truth, levels=[0.5], colors="r", linewidths=0.7)
        axes[0, column].set_title(f"phantom {name}", fontsize=8)
    for column, (name, image, truth, probability) in enumerate(panels):
        axes[top, column].imshow(image, cmap="gray", vmin=FIGURE_WINDOW_HU[0], vmax=FIGURE_WINDOW_HU[1])
        axes[top, column].contour(truth, levels=[0.5], colors="r", linewidths=0.7)
        axes[top, column].set_title(f"real {name}", fontsize=8)
        axes[top + 1, column].imshow(probability, cmap="magma", vmin=0, vmax=1)
        axes[top + 1, column].contour(truth, levels=[0.5], colors="c", linewidths=0.7)
    for axis in axes.flat:
        axis.set_axis_off()
    axes[top + 1, 0].set_title("probability on the real slice", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="+", help="run folder(s) or model file(s), as for predict")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"folder of slices (default {DEFAULT_DATA})")
    parser.add_argument("--threshold", type=float, default=None, help="mask threshold (default: the model's)")
    parser.add_argument("--dense", action="store_true", help="whole slices instead of the region of interest")
    parser.add_argument("--figure", type=Path, default=None, help="write a figure of every patient's first slice")
    parser.add_argument("--phantoms", type=Path, default=None,
                        help="case store whose slices the figure shows above the real ones (the built-in CT store)")
    parser.add_argument("--context", action="store_true",
                        help="print what surrounds the pancreas (fat within 5 mm, in the body), real and --phantoms")
    parser.add_argument("--fat-ring", type=float, default=0.0, metavar="MM",
                        help="probe: paint a fat ring this wide around the true pancreas before predicting")
    parser.add_argument("--swap", type=_radii, default=[], metavar="R,...",
                        help="probe (needs --phantoms): swap the surroundings within R mm of the pancreas "
                             "between real and phantom slices")
    args = parser.parse_args(argv)
    if args.fat_ring < 0:
        parser.error(f"--fat-ring must be >= 0 mm, got {args.fat_ring}")
    if args.swap and not args.phantoms:
        parser.error("--swap needs --phantoms STORE (the phantom slices to swap with)")
    if args.swap and args.fat_ring:
        parser.error("--swap and --fat-ring are separate probes: give one")
    return args


def _radii(text: str) -> list[float]:
    try:
        radii = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected radii in mm separated by commas, got {text!r}") from None
    if not radii or min(radii) <= 0:
        raise argparse.ArgumentTypeError(f"radii must be > 0 mm, got {text!r}")
    return radii


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    pairs = find_slices(args.data)
    models = load_models(args.model)
    options = PredictOptions(threshold=args.threshold, dense=True if args.dense else None)
    phantoms = CaseStore(args.phantoms) if args.phantoms else None
    results, panels, shown, contexts, reals = [], [], set(), [], []
    for image_path, mask_path in pairs:
        result, scan, truth, probability = score_slice(image_path, mask_path, models, options, args.fat_ring)
        results.append(result)
        if args.swap:
            reals.extend(canonical_slice(scan, truth, z) for z in range(truth.shape[0]) if truth[z].any())
        if args.context:
            contexts.extend(pancreas_context(scan.array[z].astype(np.float32), truth[z], float(scan.spacing[1]))
                            for z in range(truth.shape[0]) if truth[z].any())
        if result.patient not in shown:
            shown.add(result.patient)
            panels.append((result.name, *canonical_slices(scan.affine, scan.array, truth, probability)))
    print_results(results)
    if args.context:
        print_context("real", contexts)
        if phantoms:
            print_context("phantom", phantom_contexts(phantoms))
    if args.swap:
        print(f"{'swap radius':<14}{'real in phantom':>17}{'phantom in real':>17}")
        for swap in swap_probe(reals, swap_cases(phantoms, models[0]), args.swap, models, options):
            print(f"{swap.radius_mm:8.0f} mm   {swap.real_in_phantom:17.3f}{swap.phantom_in_real:17.3f}")
    if args.figure:
        save_figure(args.figure, panels, phantom_panels(phantoms, len(panels)) if phantoms else [])
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
