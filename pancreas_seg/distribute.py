"""Training on several accelerators or machines through the backends' own engines (``train.distribute``).

Modes (:data:`pancreas_seg.vocabulary.DISTRIBUTE_MODES`):

- ``"none"``: one device.
- ``"data_parallel"``: every local accelerator of one machine: ``tf.distribute.MirroredStrategy``
  under TensorFlow, ``keras.distribution.DataParallel`` under JAX.
- ``"multi_worker"``: one process per machine (worker), gradients averaged across all of them:
  ``tf.distribute.MultiWorkerMirroredStrategy`` configured from ``TF_CONFIG`` under TensorFlow;
  ``keras.distribution.initialize`` (``jax.distributed.initialize``: the ``KERAS_DISTRIBUTION_*``
  variables, or a cluster JAX detects itself such as a SLURM job) and ``DataParallel`` under JAX.

Under ``multi_worker`` every worker draws its own training samples (its dataflow is seeded with
``data.seed + worker index``), so the global batch is ``train.batch_size`` × workers. Only the
chief (worker 0) writes the run folder; the other workers train in a temporary copy of it, which
they delete at the end, so every worker resumes from the chief's checkpoint when all restart.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import keras

from pancreas_seg.errors import PancreasSegError
from pancreas_seg.run_folder import TENSORBOARD_DIR
from pancreas_seg.vocabulary import DISTRIBUTE_MODES

log = logging.getLogger(__name__)

TF_CONFIG_VAR = "TF_CONFIG"  # TensorFlow's cluster description: {"cluster": {...}, "task": {"type", "index"}}
KERAS_CLUSTER_VARS = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                      "KERAS_DISTRIBUTION_PROCESS_ID")  # read by keras.distribution.initialize (JAX)
CHIEF_TASK = "chief"
WORKER_TASK = "worker"
DIGEST_LENGTH = 16  # hex digits of a weights digest
WORKER_FOLDER_PREFIX = "pancreas_seg_worker"


class ClusterError(PancreasSegError):
    """``multi_worker`` training without a usable cluster description."""


@dataclass(frozen=True)
class Worker:
    """This process's place among the training workers: ``index`` in ``0..count-1``; 0 is the chief."""

    index: int = 0
    count: int = 1

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def worker_from_tf_config(text: str) -> Worker:
    """The worker described by a ``TF_CONFIG`` value; a ``chief`` task, when listed, comes first.

    Raises:
        ClusterError: not JSON, no ``cluster``/``task``, or a task outside the cluster.
    """
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        chiefs, workers = list(cluster.get(CHIEF_TASK, [])), list(cluster.get(WORKER_TASK, []))
        kind, index = task["type"], int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ClusterError(f"{TF_CONFIG_VAR} is not a cluster description ({type(exc).__name__}: {exc})") from None
    members = {CHIEF_TASK: chiefs, WORKER_TASK: workers}
    if kind not in members or not 0 <= index < len(members[kind]):
        raise ClusterError(f"{TF_CONFIG_VAR}: task {kind!r} {index} is not in the cluster {cluster}")
    return Worker(index if kind == CHIEF_TASK else len(chiefs) + index, len(chiefs) + len(workers))


@contextlib.contextmanager
def distribution_scope(mode: str) -> Iterator[Worker]:
    """Run the body under ``mode`` (module docstring); yields this process's :class:`Worker`.

    Raises:
        ValueError: unknown mode, or a mode the backend has no engine for.
        ClusterError: ``multi_worker`` without a cluster description.
    """
    if mode not in DISTRIBUTE_MODES:
        raise ValueError(f"unknown distribute mode {mode!r}; choose one of {DISTRIBUTE_MODES}")
    if mode == "none":
        yield Worker()
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        with _tensorflow_scope(mode) as worker:
            yield worker
    elif backend == "jax":
        with _jax_scope(mode) as worker:
            yield worker
    else:
        raise ValueError(f"{mode} is not supported on the {backend} backend")


@contextlib.contextmanager
def _tensorflow_scope(mode: str) -> Iterator[Worker]:
    import tensorflow as tf

    if mode == "data_parallel":
        with tf.distribute.MirroredStrategy().scope():
            yield Worker()
        return
    text = os.environ.get(TF_CONFIG_VAR)
    if not text:
        raise ClusterError(f"multi_worker training under TensorFlow needs {TF_CONFIG_VAR} (see docs/DISTRIBUTED.md)")
    worker = worker_from_tf_config(text)
    with tf.distribute.MultiWorkerMirroredStrategy().scope():
        yield worker


@contextlib.contextmanager
def _jax_scope(mode: str) -> Iterator[Worker]:
    import jax

    worker = Worker()
    if mode == "multi_worker":
        if not jax.distributed.is_initialized():
            try:
                keras.distribution.initialize()  # KERAS_DISTRIBUTION_* variables, else JAX's cluster detection
            except (ValueError, RuntimeError) as exc:
                raise ClusterError(f"multi_worker training under JAX needs {', '.join(KERAS_CLUSTER_VARS)} or a "
                                   f"cluster JAX detects (SLURM, Open MPI): {exc}") from None
        worker = Worker(jax.process_index(), jax.process_count())
    previous = keras.distribution.distribution()
    # each worker's dataflow yields its own local batch: Keras must not shard it again
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=worker.count == 1))
    try:
        yield worker
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def worker_folder(workdir: str | os.PathLike, worker: Worker) -> Iterator[Path]:
    """The folder this worker writes its run into: ``workdir`` for the chief; for the others a
    temporary copy of it (the chief's checkpoints, so that all resume alike), deleted at the end."""
    if worker.is_chief:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix=f"{WORKER_FOLDER_PREFIX}{worker.index}_") as tmp:
        folder = Path(tmp) / "run"
        if Path(workdir).is_dir():
            shutil.copytree(workdir, folder, ignore=shutil.ignore_patterns(TENSORBOARD_DIR, ".*"))
        log.info("worker %d of %d: writing into %s (the chief writes %s)", worker.index, worker.count, folder,
                 workdir)
        yield folder


def weights_digest(model: keras.Model) -> str:
    """Short SHA-256 of a model's weights, in order: equal on every worker after synchronous training."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()[:DIGEST_LENGTH]


def describe_devices() -> str:
    """One line naming the Keras backend and the devices it computes on (GPU names, else CPU)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"backend tensorflow on {_devices_text('GPU', names) if gpus else 'CPU'}"
    if backend == "jax":
        import jax

        devices = jax.local_devices()
        kinds = sorted({device.platform.upper() for device in devices})
        return f"backend jax on {_devices_text('/'.join(kinds), [d.device_kind for d in devices])}"
    return f"backend {backend}"


def _devices_text(kind: str, names: list[str]) -> str:
    return f"{len(names)} {kind} ({', '.join(names)})"
