"""A paper-size CNN-RNN trained just enough to localise the phantom pancreas (for the speed benchmark).

PNet-MSA at the paper's width (5 units x 4 convs, 64 channels) is trained for a few hundred
Adam steps on ``PATCH`` x ``PATCH`` patches of 512 px phantom CTs (fully convolutional: the
pixel scale is that of the 512 px network grid it predicts on, at a quarter of the cost of whole
slices); half the patches hold pancreas. The BiRNN keeps its near-identity initialisation
(:mod:`pancreas_seg.models.birnn`). The result is a run folder (``config.json`` + ``model.keras``)
cached in ``--cache``: a second call returns it at once. About 12 min on 2 cores.

``--from-cnn RUN`` instead wraps the PNet-MSA of a run trained by ``pancreas-seg train`` (e.g. the
``paper`` preset on a GPU, ``benchmarks/paper_fold.py``) with the same BiRNN, at that run's input size.

    python benchmarks/localiser_model.py --cache /tmp/localiser
    python benchmarks/localiser_model.py --cache /tmp/localiser-gpu --from-cnn runs/paper_fold/run
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from pancreas_seg.config import DataConfig, ExperimentConfig
from pancreas_seg.data.phantom import PhantomConfig, generate_case
from pancreas_seg.data.preprocess import prepare_volume, slice_stack
from pancreas_seg.networks import load_model
from pancreas_seg.losses import cross_entropy, jaccard_loss
from pancreas_seg.models.birnn import build_cnn_rnn
from pancreas_seg.models.build import transfer_weights
from pancreas_seg.models.pnet import build_pnet_msa
from pancreas_seg.run_folder import RunFolder
from pancreas_seg.train import export_run

logger = logging.getLogger("localiser_model")

NETWORK_SIZE = 512  # px, the network grid of the benchmark (phantoms are 512 px: no resize)
PATCH = 192  # px, training patch side (divisible by 2**(units-1) = 16)
BATCH = 4
STEPS = 240
LEARNING_RATE = 1e-3
TRAIN_CASES = (11, 12, 13)  # phantom case numbers (the benchmark predicts other cases)
PANCREAS_FRACTION = 0.5  # share of patches centred near pancreas
CENTRE_JITTER = 48  # px, random shift of a pancreas patch around a pancreas pixel


def benchmark_config() -> ExperimentConfig:
    """The paper CNN-RNN on 512 px slices without cropping (the phantoms' own grid)."""
    base = ExperimentConfig()
    return replace(base, data=replace(base.data, input_size=NETWORK_SIZE, crop="none"),
                   model=replace(base.model, name="cnn_rnn"))


def _training_volumes(data: DataConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    volumes = []
    for number in TRAIN_CASES:
        scan, mask = generate_case(number, "CT", config=PhantomConfig(matrix=NETWORK_SIZE))
        volume, transform = prepare_volume(scan.array, scan.spacing, "CT", data)
        volumes.append((volume, transform.apply_mask(mask)))
    return volumes


def _patch(volume: np.ndarray, mask: np.ndarray, rng: np.random.Generator, context: int):
    size = volume.shape[1]
    if rng.random() < PANCREAS_FRACTION:
        z, y, x = np.argwhere(mask)[rng.integers(mask.sum())]
        y0 = int(np.clip(y - PATCH // 2 + rng.integers(-CENTRE_JITTER, CENTRE_JITTER + 1), 0, size - PATCH))
        x0 = int(np.clip(x - PATCH // 2 + rng.integers(-CENTRE_JITTER, CENTRE_JITTER + 1), 0, size - PATCH))
    else:
        z = rng.integers(volume.shape[0])
        y0, x0 = (int(v) for v in rng.integers(0, size - PATCH + 1, size=2))
    stack = slice_stack(volume, int(z), context)[y0:y0 + PATCH, x0:x0 + PATCH]
    return stack, mask[z, y0:y0 + PATCH, x0:x0 + PATCH, np.newaxis].astype(np.float32)


def _loss(y_true, y_pred):
    return jaccard_loss(y_true, y_pred) + cross_entropy(y_true, y_pred)


def train_localiser(cache: Path, steps: int = STEPS, seed: int = 0) -> Path:
    """The cached run folder in ``cache``; trained now when missing."""
    run = RunFolder(cache)
    if run.model_path.exists():
        return run.root
    config = benchmark_config()
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    volumes = _training_volumes(config.data)
    cnn = build_pnet_msa(config.model, None)
    cnn.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss={"fused": _loss}, jit_compile=False)
    start = time.perf_counter()
    for step in range(steps):
        pairs = [_patch(*volumes[rng.integers(len(volumes))], rng, config.data.context_slices) for _ in range(BATCH)]
        x, y = (np.stack(part) for part in zip(*pairs))
        loss = cnn.train_on_batch(x, {"fused": y})
        if step % 20 == 0:
            logger.info("step %d/%d loss %.3f (%.0f s)", step, steps, float(np.ravel(loss)[0]),
                        time.perf_counter() - start)
    fixed = build_pnet_msa(config.model, NETWORK_SIZE)
    transfer_weights(cnn, fixed)
    export_run(build_cnn_rnn(config.model, cnn=fixed), config, cache)
    return run.root


def wrap_trained_cnn(cnn_run: Path, cache: Path) -> Path:
    """The run folder ``cache``: the PNet-MSA of the run ``cnn_run`` under a near-identity BiRNN."""
    loaded = load_model(cnn_run)
    if loaded.config.model.name != "pnet_msa":
        raise SystemExit(f"{cnn_run}: a pnet_msa run is needed, it holds {loaded.config.model.name}")
    config = replace(loaded.config, model=replace(loaded.config.model, name="cnn_rnn"))
    export_run(build_cnn_rnn(config.model, cnn=loaded.cnn), config, cache)
    return RunFolder(cache).root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="run folder to create or reuse")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--from-cnn", type=Path, help="a trained pnet_msa run folder to wrap instead of training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(wrap_trained_cnn(args.from_cnn, args.cache) if args.from_cnn else train_localiser(args.cache, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
