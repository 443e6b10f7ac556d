"""Speed and memory of ``predict`` on one CT volume (run by hand; prints numbers).

Times one prediction of a synthetic ``size x size x slices`` CT (written as NIfTI first) split
into read, preprocess, CNN, BiRNN, postprocess and write, reports the peak resident memory, and
puts the CNN's achieved GFLOP/s (FLOPs counted from its Conv/Deconv layers) beside what one plain
3x3 convolution of the same width reaches on this machine in the same run.

    python benchmarks/predict_speed.py --size 512 --slices 240                 # untrained paper PNet-MSA
    python benchmarks/predict_speed.py --size 512 --slices 240 --model-name cnn_rnn   # with the BiRNN
    python benchmarks/predict_speed.py --model runs/fold0                      # a trained run
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from pancreas_seg import inference, predict
from pancreas_seg.config import DEFAULT_PREDICT_BATCH_SIZE, ExperimentConfig
from pancreas_seg.io.nifti import write_nifti
from pancreas_seg.io.scan import Scan
from pancreas_seg.models.build import build_model
from pancreas_seg.train import export_run
from pancreas_seg.vocabulary import BASE_CNN, SCAN_MODELS

REFERENCE_CHANNELS = 64  # width of the plain 3x3 convolution used as the machine's reference
REFERENCE_KERNEL = 3
REFERENCE_REPEATS = 5  # timed calls of the reference convolution (after one warm-up call)
BODY_HU, ORGAN_HU, AIR_HU = 40, 100, -1000
SPACING_MM = (2.0, 0.7, 0.7)  # (z, y, x)
KIB_PER_GIB = 1024 ** 2  # ru_maxrss is in KiB on Linux


def synthetic_ct(size: int, slices: int, seed: int = 0) -> Scan:
    """An elliptic body of soft tissue with a brighter ellipsoid, Gaussian noise; int16 HU."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    body = (y / 0.35) ** 2 + (x / 0.45) ** 2 <= 1
    array = np.full((slices, size, size), AIR_HU, np.int16)
    array[:, body] = BODY_HU
    z = (np.arange(slices) / slices - 0.5)[:, None, None]
    organ = ((y / 0.06) ** 2 + ((x - 0.05) / 0.15) ** 2 + (z / 0.15) ** 2) <= 1
    array[organ] = ORGAN_HU
    array += rng.normal(0, 10, array.shape).astype(np.int16)
    affine = np.diag([-SPACING_MM[2], -SPACING_MM[1], SPACING_MM[0], 1.0])
    return Scan(array, affine, "CT")


def conv_flops(model: keras.Model) -> float:
    """FLOPs of one forward pass of one sample: 2 x (multiply-adds) of every Conv2D / Conv2DTranspose.

    Conv2D: 2 * H_out * W_out * k_h * k_w * C_in * C_out; Conv2DTranspose: the same with the input's
    H, W (every input pixel scatters a full kernel). Nested models are counted layer by layer.
    """
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += conv_flops(layer)
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            continue
        k_h, k_w = layer.kernel_size
        c_in, c_out = layer.input.shape[-1], layer.filters
        if isinstance(layer, keras.layers.Conv2DTranspose):
            height, width = layer.input.shape[1:3]
        else:
            height, width = layer.output.shape[1:3]
        total += 2.0 * height * width * k_h * k_w * c_in * c_out
    return total


def reference_gflops(size: int, batch: int) -> float:
    """GFLOP/s of a plain 64 -> 64 3x3 Conv2D at ``size`` x ``size``, batch ``batch`` (mean of repeats)."""
    inputs = keras.Input((size, size, REFERENCE_CHANNELS))
    model = keras.Model(inputs, keras.layers.Conv2D(REFERENCE_CHANNELS, REFERENCE_KERNEL, padding="same")(inputs))
    data = np.random.default_rng(0).random((batch, size, size, REFERENCE_CHANNELS)).astype(np.float32)
    model.predict_on_batch(data)  # warm-up: tracing
    start = time.perf_counter()
    for _ in range(REFERENCE_REPEATS):
        model.predict_on_batch(data)
    seconds = (time.perf_counter() - start) / REFERENCE_REPEATS
    return conv_flops(model) * batch / seconds / 1e9


def fresh_run(folder: Path, model_name: str, size: int) -> Path:
    """A run folder with an untrained model of the paper config (speed does not depend on weights)."""
    config = ExperimentConfig()
    config = replace(config, data=replace(config.data, input_size=size, crop="none"),
                     model=replace(config.model, name=model_name))
    return export_run(build_model(config.model, size), config, folder).root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="in-plane pixels of the synthetic CT")
    parser.add_argument("--slices", type=int, default=240, help="slices of the synthetic CT")
    parser.add_argument("--model", type=Path, help="run folder (default: a fresh untrained paper model)")
    parser.add_argument("--model-name", default=BASE_CNN, choices=SCAN_MODELS, help="the fresh model's name")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_PREDICT_BATCH_SIZE)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="predict_speed-") as tmp:
        tmp = Path(tmp)
        run = args.model or fresh_run(tmp / "run", args.model_name, args.size)
        models = inference.load_models([run])
        network_size = models[0].config.data.input_size
        image = write_nifti(synthetic_ct(args.size, args.slices), tmp / "ct.nii.gz")
        item = predict.ScanInput("ct", image, "nifti")
        options = inference.PredictOptions(batch_size=args.batch_size)
        # warm-up on 2 * batch slices so that tracing is not timed
        write_nifti(synthetic_ct(args.size, 2 * args.batch_size), tmp / "warm.nii.gz")
        predict.predict_case(predict.ScanInput("warm", tmp / "warm.nii.gz", "nifti"),
                               predict.OutputPaths.beside(tmp / "warm_mask.nii.gz"), models, options)
        report = predict.predict_case(item, predict.OutputPaths.beside(tmp / "mask.nii.gz"), models, options)
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_GIB

    timings = report["timings_s"]
    cnn_flops = conv_flops(models[0].cnn)
    achieved = cnn_flops * args.slices / max(timings["cnn"], 1e-9) / 1e9
    reference = reference_gflops(network_size, args.batch_size)
    print(f"device: {keras.backend.backend()} {', '.join(d for d in _devices())}")
    print(f"volume {args.size}x{args.size}x{args.slices}, network {network_size}px, model {models[0].config.model.name} "
          f"({run}), batch {args.batch_size}")
    for stage in predict.STAGES:
        per_slice = 1000 * timings[stage] / args.slices
        print(f"  {stage:<12} {timings[stage]:9.2f} s  {per_slice:8.2f} ms/slice")
    print(f"  {'total':<12} {timings['total']:9.2f} s")
    print(f"peak resident memory: {peak_gib:.2f} GiB (ru_maxrss, whole process)")
    print(f"CNN: {cnn_flops / 1e9:.1f} GFLOP/slice, {achieved:.1f} GFLOP/s achieved")
    print(f"plain {REFERENCE_KERNEL}x{REFERENCE_KERNEL} Conv2D {REFERENCE_CHANNELS}->{REFERENCE_CHANNELS} at "
          f"{network_size}px, batch {args.batch_size}: {reference:.1f} GFLOP/s")
    print(f"efficiency (CNN / plain conv): {achieved / reference:.2f}")
    return 0


def _devices() -> list[str]:
    try:
        import tensorflow as tf
        return [d.name for d in tf.config.list_logical_devices()]
    except ImportError:
        return []


if __name__ == "__main__":
    sys.exit(main())
