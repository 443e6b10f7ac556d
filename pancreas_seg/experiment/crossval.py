"""Cross-validation of one table row with a cache of models, predictions and metrics (Sec. IV-A).

:func:`run_cross_validation` trains one model per fold and predicts each fold's test cases, all
cached under ``out_root``::

    models/<name>-<config_hash>/        one experiment row, shared by every table that uses it
        data.json                       the store the models were trained on (guards --out reuse)
        folds.json                      the patient-level folds (Sec. IV-A)
        fold_<k>/                       the trainer's run folder (model.keras, config.json, stages)
            test_predictions.npz        probability map per test case, ``[Z, Y, X]`` float16
            validation_thresholds.json  mean validation DSC per output threshold (threshold choice)
            test_metrics.json           the fold's evaluation at the config's threshold in the form of
                                        :mod:`pancreas_seg.evaluate`: ``rows`` (``case_id`` and
                                        :func:`~pancreas_seg.metrics.case_metrics` per test case) and
                                        ``n_cases``, ``std``, ``metrics`` as in ``summary.json``; plus
                                        ``interslice`` AVDs per case (Sec. IV-D) and the cache keys
                                        (``format``, ``config_hash``, ``model``, ``cases``, ``threshold``)

With an ``archive`` (:mod:`~pancreas_seg.experiment.archive`), every scored fold also leaves its
small record there, and a fold without a model here but with a record of the same config,
cases, threshold and cache format is taken from the record instead of being trained; such a
fold has metrics but no probability maps (``maps=True`` trains it here instead).

A fold whose ``model.keras`` exists is not trained again; an interrupted one resumes (the
trainer resumes its run folder); cached predictions are reused while the model file is
unchanged, cached metrics while the threshold and cache format are unchanged. Re-running a
table after all its models exist therefore only reads JSON.

Table I's JAC row, Table II's PNet-MSA row and Table III's first row are one config, hence one
model. ``cnn_rnn`` (PNet-MSA + BiRNN) starts from the PNet-MSA fold run of the same config:
its finished CNN stages are copied from that run, so Table III compares the BiRNN against
exactly the CNN it refines, and the CNN is trained once.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pancreas_seg import evaluate, metrics
from pancreas_seg.experiment import archive as results_archive
from pancreas_seg.experiment.archive import METRICS_FILE, VALIDATION_CURVE_FILE
from pancreas_seg.config import ExperimentConfig, config_hash
from pancreas_seg.data.dataflow import prepare_cases
from pancreas_seg.data.preprocess import PreparedCase
from pancreas_seg.data.splits import Fold, load_folds, save_folds, select_fold, store_folds
from pancreas_seg.data.store import Case, CaseStore
from pancreas_seg.errors import InputError
from pancreas_seg.experiment.rows import MODEL_LABELS
from pancreas_seg.vocabulary import BASE_CNN, PANCREAS_CROP, RNN_MODEL
from pancreas_seg.io.atomic import atomic_write, atomic_write_json
from pancreas_seg.run_folder import RunFolder

log = logging.getLogger(__name__)

SURFACE_SUFFIX = "_surface"  # inter-slice AVDs by the surface measure, beside the point-set ones
CACHE_FORMAT = 4  # bump when the content of test_metrics.json changes (2: evaluate.py's rows and summary;
#                   3: point-set AVD per case and between slices, surface AVD beside it;
#                   4: DSC and JI of every test case at SCORED_THRESHOLDS)
SCORED_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.05), 2))  # Fig. 5's thresholds
MODELS_DIR = "models"
FOLD_DIR = "fold_{index}"
PREDICTIONS_FILE = "test_predictions.npz"
DATA_FILE = "data.json"
FOLDS_FILE = "folds.json"
FAST_ZLIB_LEVEL = 1  # zlib level of the cached probability maps (the default 6 takes twice as long)
PROBABILITY_DTYPE = np.float16  # cached probability maps: ~1e-3 resolution, half the disk
RNN_STAGES = ("rnn", "end_to_end")  # trainer stages that belong to the BiRNN, not the CNN
COARSE_TO_FINE = "c2f"  # row variant: the row's model with a trained localiser (coarse-to-fine prediction)

TrainFn = Callable[..., Any]  # train(config, workdir, store, fold, progress=...) as pancreas_seg.train.train
Predictor = Callable[[Case, PreparedCase], np.ndarray]  # (case, the case on the network grid) -> probability
PredictorFactory = Callable[[Path, ExperimentConfig], Predictor]


def model_dir(config: ExperimentConfig, out_root: str | os.PathLike, variant: str | None = None) -> Path:
    """``out_root/models/<name>-<config_hash>[-<variant>]``: where one row's fold models live."""
    suffix = "" if variant is None else f"-{variant}"
    return Path(out_root) / MODELS_DIR / f"{config.model.name}-{config_hash(config)}{suffix}"


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
    by_threshold: dict[str, dict[str, list[float]]]  # case_id -> {"DSC": [T], "JI": [T]} at SCORED_THRESHOLDS
    model_stamp: dict[str, int]  # the scored model file's mtime and size: keys the cached validation curve

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / PREDICTIONS_FILE

    @property
    def has_maps(self) -> bool:
        """False for a fold taken from the results archive: metrics only, no probability maps."""
        return self.predictions_path.is_file()


@dataclass
class CrossValResult:
    """All folds of one experiment row."""

    config: ExperimentConfig
    root: Path  # out_root/models/<name>-<hash>
    folds: list[FoldResult]
    trained: list[int] = field(default_factory=list)  # folds trained (or resumed) by this call
    predicted: list[int] = field(default_factory=list)  # folds whose test cases were predicted by this call
    archived: list[int] = field(default_factory=list)  # folds read from the results archive (no maps)
    archive: Path | None = None  # the results archive the folds' records are saved in

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
        fold = _with_maps(self.fold_of(case_id))
        with np.load(fold.predictions_path) as data:
            return data[case_id].astype(np.float32)

    def probabilities(self) -> Iterable[tuple[str, np.ndarray]]:
        """``(case_id, [Z, Y, X] float32)`` for every test case, one fold file open at a time."""
        for fold in self.folds:
            with np.load(_with_maps(fold).predictions_path) as data:
                for cid in fold.case_ids:
                    yield cid, data[cid].astype(np.float32)


def _with_maps(fold: FoldResult) -> FoldResult:
    if not fold.has_maps:
        raise InputError(fold.run_dir, f"fold {fold.index} is an archived record without probability maps; "
                                       "train it here (run_cross_validation(..., maps=True))")
    return fold


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


def _default_predictor(model_path: Path, config: ExperimentConfig) -> Predictor:
    """Load a fold's run folder once; return ``(case, prepared) -> [Z, Y, X] float32`` probability on
    the case's grid, as :func:`pancreas_seg.inference.predict_scan` gives it for the stored scan (no
    TTA, no component filtering; Keras in float32), from the case already prepared for the network
    (every model of a table shares the test cases' preprocessing)."""
    from pancreas_seg import inference, networks

    loaded = networks.load_model(model_path.parent)
    if loaded.config_hash != config_hash(config):
        raise RuntimeError(f"{model_path.parent} holds a run of config {loaded.config_hash}, expected {config_hash(config)}")

    options = inference.PredictOptions(runtime="keras", precision="float32")  # the same arithmetic on every machine

    def predict(case: Case, prepared: PreparedCase) -> np.ndarray:
        if config.data.crop == PANCREAS_CROP:  # cut around the localiser's region, not the prepared mask's
            return inference.predict_scan(case.scan, [loaded], options).probability
        total, _, _ = inference.network_probability(prepared.image, prepared.transform.grid_mm(case.spacing), [loaded],
                                                    options)
        return prepared.transform.invert(total)

    return predict


def _ensure_model(config: ExperimentConfig, store: CaseStore, out_root: Path, fold: Fold,
                  progress: bool, train_fn: TrainFn, variant: str | None = None) -> tuple[Path, bool]:
    """Train fold ``fold`` of ``config`` unless its ``model.keras`` exists; ``(run_dir, trained)``.

    ``variant`` :data:`COARSE_TO_FINE`: the row's own fold model (trained first if needed, its
    stages copied) with a localiser trained on the same fold."""
    root = model_dir(config, out_root, variant).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _check_data(root, store)
    run = RunFolder(root / FOLD_DIR.format(index=fold.index))
    if variant == COARSE_TO_FINE:
        return _ensure_coarse_to_fine(run, config, store, out_root, fold, progress, train_fn)
    if run.finished:
        return run.root, False
    if config.model.name == RNN_MODEL:
        base = replace(config, model=replace(config.model, name=BASE_CNN))
        base_dir, _ = _ensure_model(base, store, out_root, fold, progress, train_fn)
        adopted = run.adopt_stages(RunFolder(base_dir), exclude=RNN_STAGES)
        if adopted:
            log.info("%s: CNN stages %s taken from %s", run.root, adopted, base_dir)
    log.info("training %s fold %d in %s", MODEL_LABELS[config.model.name], fold.index, run.root)
    train_fn(config, run.root, store, fold, progress=progress)
    if not run.finished:
        raise RuntimeError(f"training finished without writing {run.model_path}")
    return run.root, True


def _default_localiser(run_dir: Path, config: ExperimentConfig, store: CaseStore, progress: bool) -> None:
    from pancreas_seg.train_localiser import train_localiser

    train_localiser(run_dir, config, store, progress=progress)


def _ensure_coarse_to_fine(run: RunFolder, config: ExperimentConfig, store: CaseStore, out_root: Path, fold: Fold,
                           progress: bool, train_fn: TrainFn) -> tuple[Path, bool]:
    """The row's fold model in ``run`` (stages copied from its plain run) with its localiser, trained
    with the row's preset (:func:`pancreas_seg.train_localiser.train_localiser`)."""
    if run.finished and RunFolder(run.localiser_dir).margin_path.is_file():
        return run.root, False
    if not run.finished:
        plain_dir, _ = _ensure_model(config, store, out_root, fold, progress, train_fn)
        adopted = run.adopt_stages(RunFolder(plain_dir))
        log.info("%s: stages %s taken from %s", run.root, adopted, plain_dir)
        train_fn(config, run.root, store, fold, progress=progress)  # every stage adopted: only the final model
    log.info("training the localiser of %s fold %d in %s", MODEL_LABELS[config.model.name], fold.index, run.root)
    _default_localiser(run.root, config, store, progress)
    return run.root, True


def _model_stamp(run_dir: Path) -> dict[str, int]:
    stat = RunFolder(run_dir).model_path.stat()
    return {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


def _score_case(probability: np.ndarray, case: Case,
                threshold: float) -> tuple[dict[str, float], dict[str, list[float]], dict[str, list[float]]]:
    """Metrics of ``probability > threshold`` against the case's mask (Sec. IV-A, IV-D):
    :func:`~pancreas_seg.metrics.case_metrics`, as :func:`pancreas_seg.evaluate.evaluate_case`
    computes them for files, plus the inter-slice AVDs.

    Args:
        probability: ``[Z, Y, X]`` float in [0, 1] on the case's grid.
        case: the case with its ground-truth mask and spacing ``(z, y, x)`` mm.
        threshold: probability threshold of the binary mask (Sec. IV-C).

    Returns:
        ``case_metrics`` (fractions, mm, mL) and the in-plane AVD in mm between neighbouring slices
        of the prediction and of the ground truth: ``"pred"``, ``"gt"`` by the point-set AVD
        (:func:`~pancreas_seg.metrics.interslice_pointset_avd`, the paper's measure),
        ``"pred_surface"``, ``"gt_surface"`` by the surface AVD; nan = pair skipped; and
        ``{"DSC": [T], "JI": [T]}`` at :data:`SCORED_THRESHOLDS` (Fig. 5, Table I's chosen thresholds).
    """
    if probability.shape != case.mask.shape:
        raise ValueError(f"case {case.case_id}: probability {probability.shape} is not on the scan grid {case.mask.shape}")
    pred = probability > threshold
    gt = case.mask.astype(bool)
    values = metrics.case_metrics(pred, gt, case.spacing)
    interslice = {}
    for name, mask in (("pred", pred), ("gt", gt)):
        interslice[name] = metrics.interslice_pointset_avd(mask, case.spacing).tolist()
        interslice[f"{name}{SURFACE_SUFFIX}"] = metrics.interslice_avd(mask, case.spacing).tolist()
    dsc, ji = metrics.overlap_by_threshold(probability, gt, SCORED_THRESHOLDS)
    return values, interslice, {"DSC": dsc.tolist(), "JI": ji.tolist()}


def _predict_fold(run_dir: Path, config: ExperimentConfig, store: CaseStore, case_ids: Sequence[str],
                  progress: bool, predictor_factory: PredictorFactory) -> None:
    """Predict every test case of a fold into ``test_predictions.npz`` (float16, compressed), from
    the test cases prepared for the network once per store and preprocessing (``prepare_cases``'s
    cache, shared by every model of the tables)."""
    maps = dict(_predict_cases(run_dir, config, store, case_ids, progress, predictor_factory))

    def write(tmp: Path) -> None:
        _save_npz_fast(tmp, maps)

    atomic_write(run_dir / PREDICTIONS_FILE, write)


def _predict_cases(run_dir: Path, config: ExperimentConfig, store: CaseStore, case_ids: Sequence[str],
                   progress: bool, predictor_factory: PredictorFactory) -> Iterable[tuple[str, np.ndarray]]:
    """``(case_id, [Z, Y, X] float16 probability on the scan grid)`` of a fold model, case by case."""
    from tqdm import tqdm

    predict = predictor_factory(RunFolder(run_dir).model_path, config)
    prepared = prepare_cases(store, case_ids, config.data, progress=False)
    for cid, ready in tqdm(list(zip(case_ids, prepared)), desc=f"predict {run_dir.parent.name}/{run_dir.name}",
                           disable=not progress):
        case = store.read_case(cid)
        probability = np.asarray(predict(case, ready))
        if probability.shape != case.image.shape:
            raise RuntimeError(f"prediction of {cid} has shape {probability.shape}, scan {case.image.shape}")
        yield cid, np.clip(probability, 0.0, 1.0).astype(PROBABILITY_DTYPE)


def validation_threshold_curves(result: CrossValResult, store: CaseStore, thresholds: Sequence[float],
                                progress: bool = True, *,
                                predictor_factory: PredictorFactory | None = None) -> np.ndarray:
    """Mean DSC of each fold's validation cases at every output threshold, float64 ``[folds, T]``:
    what a threshold is chosen on without seeing the test cases (Table I, Fig. 5). Predicts the
    validation cases once per fold model; the curve is cached in ``fold_<k>/validation_thresholds.json``
    while the model file, the cases and the thresholds are unchanged."""
    thresholds = [float(t) for t in thresholds]
    by_index = {fold.index: fold for fold in store_folds(store, result.config.data)}
    curves = []
    for fold in result.folds:
        cases = list(by_index[fold.index].validation)
        path = fold.run_dir / VALIDATION_CURVE_FILE
        key = {"model": fold.model_stamp, "cases": cases, "thresholds": thresholds}
        cached = json.loads(path.read_text()) if path.is_file() else {}
        if {k: cached.get(k) for k in key} != key:
            if not fold.has_maps:
                raise InputError(fold.run_dir, f"the archived record of fold {fold.index} has no validation curve "
                                               f"at thresholds {thresholds}; train the fold here (maps=True)")
            per_case = [metrics.overlap_by_threshold(probability.astype(np.float32), store.read_case(cid).mask,
                                                     thresholds)[0]
                        for cid, probability in _predict_cases(fold.run_dir, result.config, store, cases, progress,
                                                               predictor_factory or _default_predictor)]
            cached = {**key, "mean_dsc": np.nanmean(np.array(per_case), axis=0).tolist()}
            atomic_write_json(path, evaluate.nan_to_none(cached))
            if result.archive is not None:
                results_archive.save_fold(fold.run_dir, results_archive.record_dir(result.archive, result.root.name,
                                                                                   fold.index))
        curves.append(evaluate.none_to_nan(cached["mean_dsc"]))
    return np.array(curves, dtype=np.float64).reshape(len(result.folds), len(thresholds))


def stage_selection(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``{stage: {"selected_epoch", "epochs", "selected_slices", "selected_by", ...}}`` of a fold's run,
    in training order, from its ``state.json`` (runs from before these keys give only ``epochs``)."""
    state = RunFolder(run_dir).state
    return {stage: state.get(stage) for stage in state.stages}


def _save_npz_fast(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at zlib level 1: half the time of its default level for 3 % more disk
    on probability maps (``np.load`` reads either)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=FAST_ZLIB_LEVEL) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array)


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
    if not (fresh_predictions and _current(cached, config, fold)):
        values, interslice, by_threshold = {}, {}, {}
        with np.load(run_dir / PREDICTIONS_FILE) as data:
            for cid in fold.test:
                values[cid], interslice[cid], by_threshold[cid] = _score_case(
                    data[cid].astype(np.float32), store.read_case(cid), config.train.threshold)
        cached = _write_fold_metrics(path, config, stamp, fold, values, interslice, by_threshold)
    return _from_record(cached, run_dir, fold), predicted


def _current(record: dict[str, Any], config: ExperimentConfig, fold: Fold) -> bool:
    """Whether a ``test_metrics.json`` holds this config's scores of this fold's test cases."""
    return (record.get("format") == CACHE_FORMAT and record.get("config_hash") == config_hash(config)
            and record.get("threshold") == config.train.threshold and record.get("cases") == list(fold.test))


def _from_record(record: dict[str, Any], run_dir: Path, fold: Fold) -> FoldResult:
    rows = evaluate.none_to_nan(record["rows"])
    values = {row["case_id"]: {key: row[key] for key in metrics.METRIC_KEYS} for row in rows}
    return FoldResult(fold.index, run_dir, tuple(fold.test), values, evaluate.none_to_nan(record["interslice"]),
                      evaluate.none_to_nan(record["by_threshold"]), record["model"])


def _write_fold_metrics(path: Path, config: ExperimentConfig, stamp: dict[str, int], fold: Fold,
                        values: dict[str, dict[str, float]], interslice: dict[str, dict[str, list[float]]],
                        by_threshold: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """``test_metrics.json``: evaluate.py's per-case rows and summary, inter-slice AVDs, overlap at
    :data:`SCORED_THRESHOLDS`, cache keys. Returns what it wrote."""
    rows = [{"case_id": cid, **values[cid]} for cid in fold.test]
    record = evaluate.nan_to_none({
        "format": CACHE_FORMAT, "config_hash": config_hash(config), "model": stamp, "cases": list(fold.test),
        "threshold": config.train.threshold, "n_cases": len(rows), "std": evaluate.STD_CONVENTION,
        "metrics": evaluate.metric_summaries(evaluate.summarize_rows(rows)), "rows": rows,
        "interslice": interslice, "scored_thresholds": list(SCORED_THRESHOLDS), "by_threshold": by_threshold})
    atomic_write_json(path, record)
    return record


def _archived(config: ExperimentConfig, archive: Path | None, fold: Fold,
              variant: str | None = None) -> FoldResult | None:
    """The fold's archived record as a result without maps, when one of this config exists."""
    if archive is None:
        return None
    record_dir = results_archive.record_dir(archive, model_dir(config, "", variant).name, fold.index)
    record = results_archive.load_metrics(record_dir)
    if record is None or not _current(record, config, fold):
        return None
    return _from_record(record, record_dir, fold)


def run_cross_validation(config: ExperimentConfig, store: CaseStore, out_root: str | os.PathLike,
                         folds: Sequence[int] | None = None, progress: bool = True, *,
                         train_fn: TrainFn | None = None,
                         predictor_factory: PredictorFactory | None = None,
                         archive: str | os.PathLike | None = None, maps: bool = False,
                         variant: str | None = None) -> CrossValResult:
    """Cross-validate ``config`` on ``store`` with everything cached under ``out_root``.

    Per fold: train into ``out_root/models/<name>-<config_hash>/fold_<k>/`` unless its
    ``model.keras`` exists (an interrupted run resumes), predict the fold's test cases on their
    own grid and score them at ``config.train.threshold``. See the module docstring for the
    cache files.

    Args:
        folds: fold indices to run (default: all ``config.data.folds``).
        train_fn: the trainer (default :func:`pancreas_seg.train.train`); tests pass a stub.
        predictor_factory: ``(model_path, config) -> ((case, prepared case) -> [Z, Y, X] float32)``;
            default loads the Keras model and predicts as :func:`pancreas_seg.inference.predict_scan`.
        archive: results archive (:mod:`~pancreas_seg.experiment.archive`): each scored fold's record
            is saved there, and a fold with a current record and no model here is read from it.
        maps: every fold with probability maps: archived records are not used (figures of maps).
        variant: :data:`COARSE_TO_FINE` for the row's model predicted through a trained localiser
            (its own folder, ``<name>-<hash>-c2f``).
    """
    if store.modality != config.data.modality:
        raise InputError(store.root, f"store holds {store.modality} cases, the experiment is for {config.data.modality}")
    all_folds = store_folds(store, config.data)
    chosen = [select_fold(all_folds, index) for index in (range(len(all_folds)) if folds is None else folds)]
    out_root = Path(out_root)
    root = model_dir(config, out_root, variant).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _check_data(root, store)
    if not (root / FOLDS_FILE).is_file() or load_folds(root / FOLDS_FILE) != all_folds:
        save_folds(all_folds, root / FOLDS_FILE)
    archive = None if archive is None else Path(archive)
    result = CrossValResult(config, root, [], archive=archive)
    for fold in chosen:
        archived = None if maps or RunFolder(root / FOLD_DIR.format(index=fold.index)).finished \
            else _archived(config, archive, fold, variant)
        if archived is not None:
            result.folds.append(archived)
            result.archived.append(fold.index)
            continue
        run_dir, trained = _ensure_model(config, store, out_root, fold, progress, train_fn or _default_train, variant)
        fold_result, predicted = _fold_results(run_dir, config, store, fold, progress,
                                               predictor_factory or _default_predictor)
        result.folds.append(fold_result)
        if archive is not None:
            results_archive.save_fold(run_dir, results_archive.record_dir(archive, root.name, fold.index))
        if trained:
            result.trained.append(fold.index)
        if predicted:
            result.predicted.append(fold.index)
    return result

