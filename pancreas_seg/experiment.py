"""Cross-validated experiments behind the paper's tables and figures (Sec. IV, Tables I–IV, Figs. 5–9).

:func:`run_cross_validation` trains one model per fold and predicts each fold's test cases, all
cached under ``out_root``::

    models/<name>-<config_hash>/        one experiment row, shared by every table that uses it
        data.json                       the store the models were trained on (guards --out reuse)
        folds.json                      the patient-level folds (Sec. IV-A)
        fold_<k>/                       the trainer's run folder (model.keras, config.json, stages)
            test_predictions.npz        probability map per test case, ``[Z, Y, X]`` float16
            test_metrics.json           :func:`~pancreas_seg.metrics.case_metrics` at the config's
                                        threshold, plus inter-slice AVDs (Sec. IV-D)

A fold whose ``model.keras`` exists is not trained again; an interrupted one resumes (the
trainer resumes its run folder); cached predictions are reused while the model file is
unchanged, cached metrics while the threshold and cache format are unchanged. Re-running a
table after all its models exist therefore only reads JSON.

Table I's JAC row, Table II's PNet-MSA row and Table III's first row are one config, hence one
model. ``cnn_rnn`` (PNet-MSA + BiRNN) starts from the PNet-MSA fold run of the same config:
its finished CNN stages are copied from that run, so Table III compares the BiRNN against
exactly the CNN it refines, and the CNN is trained once.

:func:`write_table` puts the paper's numbers (``pancreas_seg/resources/reported_results.json``)
beside ours, always labelled with the data and preset they came from: results on the built-in
phantoms are never the paper's numbers.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Union

import numpy as np

from pancreas_seg import metrics
from pancreas_seg.config import ExperimentConfig, apply_overrides, config_hash, preset
from pancreas_seg.data.splits import Fold, load_folds, save_folds, select_fold, store_folds
from pancreas_seg.data.store import Case, CaseStore
from pancreas_seg.io.atomic import atomic_write, atomic_write_json, atomic_write_text
from pancreas_seg.errors import InputError
from pancreas_seg.io.scan import Scan
from pancreas_seg.run_folder import MODEL_NAME, RunFolder

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the content of test_metrics.json changes
MODELS_DIR = "models"
FOLD_DIR = "fold_{index}"
PREDICTIONS_FILE = "test_predictions.npz"
METRICS_FILE = "test_metrics.json"
DATA_FILE = "data.json"
FOLDS_FILE = "folds.json"
PROBABILITY_DTYPE = np.float16  # cached probability maps: ~1e-3 resolution, half the disk
CNN_RNN = "cnn_rnn"
BASE_CNN = "pnet_msa"  # the CNN under the BiRNN (Sec. IV-D)
RNN_STAGES = ("rnn", "end_to_end")  # trainer stages that belong to the BiRNN, not the CNN
FIG5_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))  # Fig. 5: output thresholds 0.05..0.95
VOLUME_BAND = 0.15  # Fig. 6: ±15 % over-/under-segmentation band
QUOTED = "quoted from the paper"
MISSING = "—"

MODEL_LABELS = {"hnn": "HNN", "unet": "UNet", "pnet64": "PNet-64", "pnet_msa": "PNet-MSA",
                CNN_RNN: "PNet-MSA + BiRNN"}  # the paper's row names (Tables II–IV)
LOSS_LABELS = {"ce": "CE", "cbce": "CBCE", "jac": "JAC"}  # Table I
MODALITY_NAMES = {"ct": "CT", "mri": "MRI"}

TrainFn = Callable[..., Any]  # train(config, workdir, store, fold, progress=...) as pancreas_seg.train.train
PredictorFactory = Callable[[Path, ExperimentConfig], Callable[[Scan], np.ndarray]]


# ---------------------------------------------------------------------------
# configs of table rows
# ---------------------------------------------------------------------------

def modality_name(modality: str) -> str:
    """``"ct"``/``"CT"`` → ``"CT"``, ``"mri"`` → ``"MRI"``; anything else raises ``ValueError``."""
    try:
        return MODALITY_NAMES[modality.lower()]
    except KeyError:
        raise ValueError(f"unknown modality {modality!r}; choose ct or mri") from None


def experiment_config(preset_name: str, modality: str, model: str = BASE_CNN, loss: str = "jac",
                      builtin_set: str | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config of one table row: a preset with the row's modality, model and loss.

    ``builtin_set`` (``"standard"`` | ``"tiny"``) picks the phantom set used when no store is
    given; ``None`` keeps the preset's. ``overrides`` are ``key=value`` strings applied last.
    """
    config = preset(preset_name)
    items = [f"data.modality={modality_name(modality)}", f"model.name={model}", f"train.loss={loss}"]
    if builtin_set is not None:
        items.append(f"data.builtin_set={builtin_set}")
    config = apply_overrides(config, items + list(overrides))
    if config.model.name not in MODEL_LABELS:
        raise ValueError(f"unknown model {config.model.name!r}; choose one of {sorted(MODEL_LABELS)}")
    if config.train.loss not in LOSS_LABELS:
        raise ValueError(f"unknown loss {config.train.loss!r}; choose one of {sorted(LOSS_LABELS)}")
    return config


def model_dir(config: ExperimentConfig, out_root: str | os.PathLike) -> Path:
    """``out_root/models/<name>-<config_hash>``: where one row's fold models live."""
    return Path(out_root) / MODELS_DIR / f"{config.model.name}-{config_hash(config)}"


def data_label(preset_name: str, modalities: Sequence[str], data: str | os.PathLike | None = None) -> str:
    """Header of the ``ours`` column, e.g. ``"ours (built-in CT phantoms, quick preset)"``."""
    names = "+".join(modality_name(m) for m in modalities)
    source = f"built-in {names} phantoms" if data is None else f"{names} store {Path(data).name}"
    return f"ours ({source}, {preset_name} preset)"


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

@dataclass
class FoldResult:
    """Test cases of one fold with their metrics at the config's threshold."""

    index: int
    run_dir: Path  # the trainer's run folder of this fold
    case_ids: tuple[str, ...]
    metrics: dict[str, dict[str, float]]  # case_id -> case_metrics (fractions, mm, mL)
    interslice: dict[str, dict[str, list[float]]]  # case_id -> {"pred": AVDs mm, "gt": AVDs mm}, nan = skipped pair

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / PREDICTIONS_FILE


@dataclass
class CrossValResult:
    """All folds of one experiment row."""

    config: ExperimentConfig
    root: Path  # out_root/models/<name>-<hash>
    folds: list[FoldResult]
    trained: list[int] = field(default_factory=list)  # folds trained (or resumed) by this call
    predicted: list[int] = field(default_factory=list)  # folds whose test cases were predicted by this call

    @property
    def label(self) -> str:
        return MODEL_LABELS[self.config.model.name]

    @property
    def case_ids(self) -> list[str]:
        """Test cases of all folds, in fold order."""
        return [cid for fold in self.folds for cid in fold.case_ids]

    def case_metrics(self) -> dict[str, dict[str, float]]:
        return {cid: fold.metrics[cid] for fold in self.folds for cid in fold.case_ids}

    def values(self, key: str) -> np.ndarray:
        """float64 ``[cases]`` of one metric (see :data:`~pancreas_seg.metrics.METRIC_KEYS`)."""
        return np.array([m[key] for m in self.case_metrics().values()], dtype=np.float64)

    def summary(self, key: str) -> metrics.Summary:
        return metrics.summarize(self.values(key))

    def fold_of(self, case_id: str) -> FoldResult:
        for fold in self.folds:
            if case_id in fold.case_ids:
                return fold
        raise KeyError(f"{case_id} is no test case of the folds run")

    def probability(self, case_id: str) -> np.ndarray:
        """Cached probability map of a test case, ``[Z, Y, X]`` float32 on the scan's grid."""
        with np.load(self.fold_of(case_id).predictions_path) as data:
            return data[case_id].astype(np.float32)

    def probabilities(self) -> Iterable[tuple[str, np.ndarray]]:
        """``(case_id, [Z, Y, X] float32)`` for every test case, one fold file open at a time."""
        for fold in self.folds:
            with np.load(fold.predictions_path) as data:
                for cid in fold.case_ids:
                    yield cid, data[cid].astype(np.float32)


def summary_row(result: CrossValResult, keys: Sequence[str]) -> dict[str, metrics.Summary]:
    """``{metric: Summary}`` over the test cases of all folds: one table row."""
    return {key: result.summary(key) for key in keys}


# ---------------------------------------------------------------------------
# cross-validation with caching
# ---------------------------------------------------------------------------

def _check_data(root: Path, store: CaseStore) -> None:
    """Models in ``root`` must come from the same store: config hashes do not see the data path."""
    record = {"store": str(store.root.resolve()), "modality": store.modality, "cases": store.case_ids}
    path = root / DATA_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("store") != record["store"] or previous.get("cases") != record["cases"]:
            raise InputError(root, f"holds models trained on {previous.get('store')}, not on {store.root}; "
                                   "pass another --out for this data")
        return
    atomic_write_json(path, record)


def _default_train(config: ExperimentConfig, workdir: Path, store: CaseStore, fold: Fold, progress: bool):
    from pancreas_seg.train import train

    return train(config, workdir, store, fold, progress=progress)


def _default_predictor(model_path: Path, config: ExperimentConfig) -> Callable[[Scan], np.ndarray]:
    """Load a fold's run folder once; return ``scan -> [Z, Y, X] float32`` probability on the scan's
    grid (:func:`pancreas_seg.inference.predict_scan`, no TTA, no component filtering)."""
    from pancreas_seg import inference

    loaded = inference.load_model(model_path.parent)
    if loaded.config_hash != config_hash(config):
        raise RuntimeError(f"{model_path.parent} holds a run of config {loaded.config_hash}, expected {config_hash(config)}")
    return lambda scan: inference.predict_scan(scan, [loaded]).probability


def _ensure_model(config: ExperimentConfig, store: CaseStore, out_root: Path, fold: Fold,
                  progress: bool, train_fn: TrainFn) -> tuple[Path, bool]:
    """Train fold ``fold`` of ``config`` unless its ``model.keras`` exists; ``(run_dir, trained)``."""
    root = model_dir(config, out_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _check_data(root, store)
    run_dir = root / FOLD_DIR.format(index=fold.index)
    if (run_dir / MODEL_NAME).is_file():
        return run_dir, False
    if config.model.name == CNN_RNN:
        base = replace(config, model=replace(config.model, name=BASE_CNN))
        base_dir, _ = _ensure_model(base, store, out_root, fold, progress, train_fn)
        adopted = RunFolder(run_dir).adopt_stages(RunFolder(base_dir), exclude=RNN_STAGES)
        if adopted:
            log.info("%s: CNN stages %s taken from %s", run_dir, adopted, base_dir)
    log.info("training %s fold %d in %s", MODEL_LABELS[config.model.name], fold.index, run_dir)
    train_fn(config, run_dir, store, fold, progress=progress)
    if not (run_dir / MODEL_NAME).is_file():
        raise RuntimeError(f"training finished without writing {run_dir / MODEL_NAME}")
    return run_dir, True


def _model_stamp(run_dir: Path) -> dict[str, int]:
    stat = (run_dir / MODEL_NAME).stat()
    return {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def evaluate_case(probability: np.ndarray, case: Case, threshold: float) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Metrics of ``probability > threshold`` against the case's mask (Sec. IV-A, IV-D).

    Args:
        probability: ``[Z, Y, X]`` float in [0, 1] on the case's grid.
        case: the case with its ground-truth mask and spacing ``(z, y, x)`` mm.
        threshold: probability threshold of the binary mask (Sec. IV-C).

    Returns:
        ``case_metrics`` (fractions, mm, mL) and ``{"pred": [...], "gt": [...]}``, the in-plane
        AVD in mm between neighbouring slices of the prediction and of the ground truth
        (:func:`~pancreas_seg.metrics.interslice_avd`; nan = pair skipped).
    """
    if probability.shape != case.mask.shape:
        raise ValueError(f"case {case.case_id}: probability {probability.shape} is not on the scan grid {case.mask.shape}")
    pred = probability > threshold
    gt = case.mask.astype(bool)
    values = metrics.case_metrics(pred, gt, case.spacing)
    interslice = {"pred": metrics.interslice_avd(pred, case.spacing).tolist(),
                  "gt": metrics.interslice_avd(gt, case.spacing).tolist()}
    return values, interslice


def _predict_fold(run_dir: Path, config: ExperimentConfig, store: CaseStore, case_ids: Sequence[str],
                  progress: bool, predictor_factory: PredictorFactory) -> None:
    """Predict every test case of a fold into ``test_predictions.npz`` (float16, compressed)."""
    from tqdm import tqdm

    predict = predictor_factory(run_dir / MODEL_NAME, config)
    maps = {}
    for cid in tqdm(case_ids, desc=f"predict {run_dir.parent.name}/{run_dir.name}", disable=not progress):
        case = store.read_case(cid)
        probability = np.asarray(predict(Scan(case.image, case.affine, case.modality, case.source)))
        if probability.shape != case.image.shape:
            raise RuntimeError(f"prediction of {cid} has shape {probability.shape}, scan {case.image.shape}")
        maps[cid] = np.clip(probability, 0.0, 1.0).astype(PROBABILITY_DTYPE)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **maps)

    atomic_write(run_dir / PREDICTIONS_FILE, write)


def _fold_results(run_dir: Path, config: ExperimentConfig, store: CaseStore, fold: Fold, progress: bool,
                  predictor_factory: PredictorFactory) -> tuple[FoldResult, bool]:
    """Cached or fresh test predictions and metrics of one fold; ``(result, predicted)``."""
    path = run_dir / METRICS_FILE
    stamp = _model_stamp(run_dir)
    cached = json.loads(path.read_text()) if path.is_file() else {}
    fresh_predictions = (cached.get("model") == stamp and cached.get("cases") == list(fold.test)
                         and (run_dir / PREDICTIONS_FILE).is_file())
    predicted = False
    if not fresh_predictions:
        _predict_fold(run_dir, config, store, fold.test, progress, predictor_factory)
        predicted = True
    if (fresh_predictions and cached.get("format") == CACHE_FORMAT
            and cached.get("threshold") == config.train.threshold):
        values, interslice = _from_json(cached["metrics"]), _from_json(cached["interslice"])
    else:
        values, interslice = {}, {}
        with np.load(run_dir / PREDICTIONS_FILE) as data:
            for cid in fold.test:
                values[cid], interslice[cid] = evaluate_case(data[cid].astype(np.float32), store.read_case(cid),
                                                             config.train.threshold)
        atomic_write_json(path, _json_safe({
            "format": CACHE_FORMAT, "config_hash": config_hash(config), "model": stamp, "cases": list(fold.test),
            "threshold": config.train.threshold, "metrics": values, "interslice": interslice}))
    return FoldResult(fold.index, run_dir, tuple(fold.test), values, interslice), predicted


def run_cross_validation(config: ExperimentConfig, store: CaseStore, out_root: str | os.PathLike,
                         folds: Sequence[int] | None = None, progress: bool = True, *,
                         train_fn: TrainFn | None = None,
                         predictor_factory: PredictorFactory | None = None) -> CrossValResult:
    """Cross-validate ``config`` on ``store`` with everything cached under ``out_root``.

    Per fold: train into ``out_root/models/<name>-<config_hash>/fold_<k>/`` unless its
    ``model.keras`` exists (an interrupted run resumes), predict the fold's test cases on their
    own grid and score them at ``config.train.threshold``. See the module docstring for the
    cache files.

    Args:
        folds: fold indices to run (default: all ``config.data.folds``).
        train_fn: the trainer (default :func:`pancreas_seg.train.train`); tests pass a stub.
        predictor_factory: ``(model_path, config) -> (Scan -> [Z, Y, X] float32)``; default loads
            the Keras model and calls :func:`pancreas_seg.inference.predict_probability`.
    """
    if store.modality != config.data.modality:
        raise InputError(store.root, f"store holds {store.modality} cases, the experiment is for {config.data.modality}")
    all_folds = store_folds(store, config.data)
    chosen = [select_fold(all_folds, index) for index in (range(len(all_folds)) if folds is None else folds)]
    out_root = Path(out_root)
    root = model_dir(config, out_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _check_data(root, store)
    if not (root / FOLDS_FILE).is_file() or load_folds(root / FOLDS_FILE) != all_folds:
        save_folds(all_folds, root / FOLDS_FILE)
    result = CrossValResult(config, root, [])
    for fold in chosen:
        run_dir, trained = _ensure_model(config, store, out_root, fold, progress, train_fn or _default_train)
        fold_result, predicted = _fold_results(run_dir, config, store, fold, progress,
                                               predictor_factory or _default_predictor)
        result.folds.append(fold_result)
        if trained:
            result.trained.append(fold.index)
        if predicted:
            result.predicted.append(fold.index)
    return result


def clear_predictions(result: CrossValResult) -> None:
    """Delete the cached test predictions and metrics (the models stay)."""
    for fold in result.folds:
        for name in (PREDICTIONS_FILE, METRICS_FILE):
            (fold.run_dir / name).unlink(missing_ok=True)


def remove_models(config: ExperimentConfig, out_root: str | os.PathLike) -> None:
    """Delete every fold model of ``config`` under ``out_root`` (to retrain from scratch)."""
    shutil.rmtree(model_dir(config, out_root), ignore_errors=True)


# ---------------------------------------------------------------------------
# analyses on cached results
# ---------------------------------------------------------------------------

def threshold_curves(result: CrossValResult, store: CaseStore,
                     thresholds: Sequence[float] = FIG5_THRESHOLDS) -> np.ndarray:
    """DSC of every test case at every output threshold (Fig. 5), from the cached maps.

    Returns float64 ``[len(thresholds), cases]`` in [0, 1], cases in ``result.case_ids`` order.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.size == 0 or thresholds.min() <= 0.0 or thresholds.max() >= 1.0:
        raise ValueError(f"thresholds must lie in (0, 1), got {thresholds.tolist()}")
    columns = []
    for cid, probability in result.probabilities():
        gt = store.read_case(cid).mask.astype(bool)
        # voxels below every threshold and outside the organ never count: score the rest only
        relevant = (probability > thresholds.min()) | gt
        probability, gt = probability[relevant], gt[relevant]
        columns.append([metrics.dice(probability > t, gt) for t in thresholds])
    return np.array(columns, dtype=np.float64).T.reshape(len(thresholds), -1)


@dataclass(frozen=True)
class InterSliceShare:
    """Neighbouring-slice shape changes (Sec. IV-D) pooled over the test cases."""

    flagged: int  # pairs with AVD > threshold_mm
    compared: int  # pairs with organ in both slices
    avd: metrics.Summary  # pooled inter-slice AVD, mm

    @property
    def share(self) -> float:
        return self.flagged / self.compared if self.compared else math.nan


def interslice_share(result: CrossValResult, source: str = "pred",
                     threshold_mm: float = metrics.ABNORMAL_SHAPE_CHANGE_MM) -> InterSliceShare:
    """Share of neighbouring-slice pairs with an abnormal shape change, AVD > ``threshold_mm``
    (Sec. IV-D: 0.5 mm for CT), in the predictions (``source="pred"``) or the ground truth (``"gt"``)."""
    if source not in ("pred", "gt"):
        raise ValueError(f"source must be 'pred' or 'gt', got {source!r}")
    values = np.array([v for fold in result.folds for cid in fold.case_ids for v in fold.interslice[cid][source]],
                      dtype=np.float64)
    kept = values[~np.isnan(values)]
    return InterSliceShare(int((kept > threshold_mm).sum()), int(kept.size), metrics.summarize(kept))


@dataclass(frozen=True)
class VolumeFit:
    """Automatic vs manual volume (Fig. 6): least-squares line auto = slope·manual + intercept."""

    slope: float
    intercept: float  # mL
    r2: float  # coefficient of determination of the fit
    error_variance: float  # variance (ddof=1) of the relative error (auto − manual)/manual, in %²
    within_band: float  # share of cases whose auto volume is within ±VOLUME_BAND of manual
    n: int


def volume_fit(manual_ml: Sequence[float], auto_ml: Sequence[float]) -> VolumeFit:
    """Fit auto ~ manual volumes (mL, one per case); nan statistics with fewer than 2 cases."""
    manual, auto = np.asarray(manual_ml, np.float64), np.asarray(auto_ml, np.float64)
    if manual.shape != auto.shape:
        raise ValueError(f"{manual.shape} manual and {auto.shape} automatic volumes")
    keep = np.isfinite(manual) & np.isfinite(auto) & (manual > 0)
    manual, auto = manual[keep], auto[keep]
    n = int(manual.size)
    if n == 0:
        return VolumeFit(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    error = (auto - manual) / manual * 100.0
    within = float(np.mean(np.abs(auto - manual) <= VOLUME_BAND * manual))
    if n < 2 or np.ptp(manual) == 0:
        return VolumeFit(math.nan, math.nan, math.nan, math.nan, within, n)
    slope, intercept = np.polyfit(manual, auto, 1)
    residual = auto - (slope * manual + intercept)
    total = np.sum((auto - auto.mean()) ** 2)
    r2 = 1.0 - float(np.sum(residual ** 2) / total) if total > 0 else math.nan
    return VolumeFit(float(slope), float(intercept), r2, float(error.var(ddof=1)), within, n)


def rank_cases(result: CrossValResult, key: str = "DSC") -> list[str]:
    """Test case ids sorted by ``key`` ascending (nan first)."""
    values = result.values(key)
    order = np.argsort(np.nan_to_num(values, nan=-np.inf), kind="stable")
    return [result.case_ids[i] for i in order]


def pancreas_slice(mask: np.ndarray) -> int:
    """Axial slice ``[Z, Y, X]`` with the largest pancreas area (Fig. 8); the middle slice if none."""
    area = mask.reshape(mask.shape[0], -1).astype(bool).sum(axis=1)
    return int(np.argmax(area)) if area.any() else mask.shape[0] // 2


# ---------------------------------------------------------------------------
# the paper's numbers and the table writer
# ---------------------------------------------------------------------------

def reported_results() -> dict[str, Any]:
    """The paper's numbers shipped with the package (``resources/reported_results.json``)."""
    text = resources.files("pancreas_seg").joinpath("resources", "reported_results.json").read_text()
    return json.loads(text)


def paper_rows(table: str, modality: str) -> dict[str, dict[str, list[float]]]:
    """``{method: {metric: [mean, std, min, max]}}`` of one table and modality, in the paper's
    units (% or mm). Tables reported for CT only (``table3_birnn_ct``) give ``{}`` for MRI."""
    reported = reported_results()
    if table not in reported:
        raise KeyError(f"no table {table!r} in the reported results; known: {sorted(k for k in reported if not k.startswith('_'))}")
    entry, name = reported[table], modality_name(modality)
    if name in entry:
        return entry[name]
    if set(entry) & set(MODALITY_NAMES.values()):
        return {}
    return entry if table.lower().endswith(f"_{name.lower()}") else {}


@dataclass(frozen=True)
class Column:
    """A metric column: ``ours`` values are multiplied by ``scale`` (100: fraction → %);
    paper values are already in display units."""

    key: str
    title: str
    scale: float = 100.0
    digits: int = 1


Cell = Union[metrics.Summary, float, int, str, Sequence[float], None]


@dataclass
class Row:
    """One table row: our results and the paper's, per column key."""

    group: str  # "CT" / "MRI"
    method: str
    ours: Mapping[str, Cell] = field(default_factory=dict)  # Summary, number (ours units) or text
    paper: Mapping[str, Cell] = field(default_factory=dict)  # [mean, std, min, max], number or text (paper units)
    note: str = ""


def _paper_number(value: float, digits: int) -> str:
    """A transcribed number with at least ``digits`` decimals and all it was given with (``8.12``)."""
    text = repr(float(value))
    given = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return f"{value:.{max(digits, given)}f}"


def _format_paper(cell: Cell, digits: int) -> str:
    """The paper's ``mean±std [min,max]`` as transcribed (values already in %, mm)."""
    if isinstance(cell, (list, tuple)) and len(cell) == 4:
        mean, std, low, high = (_paper_number(v, digits) for v in cell)
        return f"{mean}±{std} [{low},{high}]"
    if isinstance(cell, (list, tuple)) and len(cell) == 1:
        return _paper_number(cell[0], digits)
    return _format(cell, 1.0, digits)


def _format(cell: Cell, scale: float, digits: int) -> str:
    if cell is None:
        return MISSING
    if isinstance(cell, str):
        return cell
    if isinstance(cell, metrics.Summary):
        return MISSING if cell.n == 0 else metrics.format_summary(cell, scale, digits)
    if isinstance(cell, (int, np.integer)) and not isinstance(cell, bool):
        return str(int(cell))
    if isinstance(cell, (float, np.floating)):
        return MISSING if math.isnan(cell) else f"{cell * scale:.{digits}f}"
    values = list(cell)
    if len(values) == 4:
        return metrics.format_summary(metrics.Summary(*values, n=1, n_nan=0), scale, digits)
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    raise ValueError(f"cannot format {cell!r}")


def _numbers(cell: Cell, scale: float) -> list[Any]:
    """``[mean, std, min, max, n]`` of an ``ours`` cell in display units, blanks where unknown."""
    if isinstance(cell, metrics.Summary):
        return [*(None if math.isnan(v) else v * scale for v in cell[:4]), cell.n]
    if isinstance(cell, (int, float, np.integer, np.floating)) and not isinstance(cell, bool):
        value = float(cell)
        return [None if math.isnan(value) else value * scale, None, None, None, None]
    return [None] * 5


def render_markdown(rows: Sequence[Row], columns: Sequence[Column], data_label: str, title: str = "",
                    notes: Sequence[str] = ()) -> str:
    """Markdown table with a ``paper`` and an ``ours (<data, preset>)`` column per metric."""
    header = ["", "method"]
    for column in columns:
        header += [f"{column.title} paper", f"{column.title} {data_label}"]
    header.append("note")
    lines = [f"# {title}", ""] if title else []
    lines += [f"`paper`: Cai et al. 2018, as printed. `{data_label}`: this reproduction; "
              "results on phantoms are not the paper's numbers.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for row in rows:
        cells = [row.group, row.method]
        for column in columns:
            cells.append(_format_paper(row.paper.get(column.key), column.digits))
            cells.append(_format(row.ours.get(column.key), column.scale, column.digits))
        cells.append(row.note)
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[Row], columns: Sequence[Column], data_label: str) -> str:
    """Long CSV, one line per row and metric: the paper's and our formatted cells side by side,
    then our mean/std/min/max in display units and the case count."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["group", "method", "metric", "paper", data_label,
                     "ours_mean", "ours_std", "ours_min", "ours_max", "ours_n", "note"])
    for row in rows:
        for column in columns:
            numbers = _numbers(row.ours.get(column.key), column.scale)
            writer.writerow([row.group, row.method, column.title,
                             _format_paper(row.paper.get(column.key), column.digits),
                             _format(row.ours.get(column.key), column.scale, column.digits),
                             *("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in numbers),
                             row.note])
    return buffer.getvalue()


def write_table(rows: Sequence[Row], path_stem: str | os.PathLike, columns: Sequence[Column], data_label: str,
                title: str = "", notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``<path_stem>.md`` and ``<path_stem>.csv`` atomically; returns both paths."""
    stem = Path(path_stem)
    md = atomic_write_text(stem.with_name(stem.name + ".md"), render_markdown(rows, columns, data_label, title, notes))
    table = atomic_write_text(stem.with_name(stem.name + ".csv"), render_csv(rows, columns, data_label))
    return md, table


def quoted_rows(table: str, modality: str, methods: Sequence[str] | None = None) -> list[Row]:
    """Rows of other methods quoted from the paper (Table IV), marked :data:`QUOTED`."""
    reported = paper_rows(table, modality)
    return [Row(modality_name(modality), method, {}, reported[method], QUOTED)
            for method in (methods if methods is not None else reported)]
