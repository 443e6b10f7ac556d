"""Multi-worker training (``train.distribute=multi_worker``): the cluster description, the chief's
run folder and the workers' temporary copies, and two real worker processes on localhost that
must end with identical weights."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from pancreas_seg.distribute import (ClusterError, Worker, describe_devices, distribution_scope, weights_digest,
                                     worker_folder, worker_from_tf_config)

REPO = Path(__file__).resolve().parents[1]
WORKERS = 2
WORKER_TIMEOUT_S = 240
# the smallest run of the real trainer: one stage, one step per epoch, a 2-unit PNet-MSA on 16 px slices
TINY_RUN = ["train.distribute=multi_worker", "train.stagewise=false", "train.epochs_finetune=0",
            "train.steps_per_epoch=1", "data.input_size=16", "model.units=2", "model.channels=4",
            "model.convs_per_unit=1"]
DIGEST_LINE = re.compile(r"worker (\d+) of (\d+): final weights ([0-9a-f]+)")


def tf_config(ports: list[int], index: int, chief: bool = False) -> str:
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    if chief:
        cluster = {"chief": cluster["worker"][:1], "worker": cluster["worker"][1:]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def test_tf_config_numbers_the_workers_with_the_chief_first():
    assert worker_from_tf_config(tf_config([1, 2, 3], 2)) == Worker(2, 3)
    assert worker_from_tf_config(tf_config([1, 2, 3], 0)) == Worker(0, 3) and Worker(0, 3).is_chief
    with_chief = json.loads(tf_config([1, 2, 3], 0, chief=True))
    assert worker_from_tf_config(json.dumps(with_chief)) == Worker(1, 3)  # worker 0 comes after the chief
    with_chief["task"] = {"type": "chief", "index": 0}
    assert worker_from_tf_config(json.dumps(with_chief)) == Worker(0, 3)


@pytest.mark.parametrize("text, problem", [
    ("not json", "not a cluster description"),
    ('{"task": {"type": "worker", "index": 0}}', "not a cluster description"),
    (tf_config([1, 2], 2), "not in the cluster"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}), "not in the cluster"),
])
def test_a_broken_tf_config_is_refused_by_name(text, problem):
    with pytest.raises(ClusterError, match=problem):
        worker_from_tf_config(text)


def test_distribution_scopes_without_a_cluster(monkeypatch):
    with distribution_scope("none") as worker:
        assert worker == Worker() and worker.is_chief
    with pytest.raises(ValueError, match="unknown distribute mode 'tpu'"):
        with distribution_scope("tpu"):
            pass
    if keras.backend.backend() == "tensorflow":
        monkeypatch.delenv("TF_CONFIG", raising=False)
        with pytest.raises(ClusterError, match="needs TF_CONFIG"):
            with distribution_scope("multi_worker"):
                pass


def test_the_chief_writes_the_run_folder_the_others_a_temporary_copy(tmp_path):
    run = tmp_path / "run"
    (run / "full" / "backup").mkdir(parents=True)
    (run / "full" / "backup" / "weights.h5").write_text("epoch 3")
    (run / "full" / "tensorboard").mkdir()
    (run / "state.json").write_text("{}")
    with worker_folder(run, Worker(0, 2)) as folder:
        assert folder == run
    with worker_folder(run, Worker(1, 2)) as folder:
        assert folder != run and not folder.is_relative_to(run)
        assert (folder / "full" / "backup" / "weights.h5").read_text() == "epoch 3"  # resumes from the chief's
        assert (folder / "state.json").is_file() and not (folder / "full" / "tensorboard").exists()
        (folder / "model.keras").write_text("worker output")
    assert not folder.exists(), "a worker's temporary folder must be deleted"
    assert not (run / "model.keras").exists(), "only the chief writes the run folder"
    with worker_folder(tmp_path / "new", Worker(1, 2)) as folder:  # a fresh run: nothing to copy yet
        assert not folder.exists()  # the trainer creates it


def test_weights_digest_follows_the_weights():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    digest = weights_digest(model)
    assert digest == weights_digest(model) and re.fullmatch(r"[0-9a-f]{16}", digest)
    kernel, bias = model.get_weights()
    model.set_weights([kernel, bias + np.float32(1e-6)])
    assert weights_digest(model) != digest


def test_describe_devices_names_the_backend():
    line = describe_devices()
    assert line.startswith(f"backend {keras.backend.backend()}") and "\n" not in line


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _cluster_env(backend: str, index: int, ports: list[int]) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    if backend == "jax":
        return dict(env, JAX_PLATFORMS="cpu", KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{ports[0]}",
                    KERAS_DISTRIBUTION_NUM_PROCESSES=str(WORKERS), KERAS_DISTRIBUTION_PROCESS_ID=str(index))
    return dict(env, TF_CONFIG=tf_config(ports, index))


KERAS_MWMS_BUGS = ("Keras 3 (3.15.1 with TensorFlow 2.21) cannot fit under MultiWorkerMirroredStrategy: "
                   "_maybe_symbolic_build reduces a nested batch (keras-team/keras#20329) and reduce_per_replica "
                   "reduces scalar logs along axis 0 (tensorflow/tensorflow#72388)")


KERAS_MWMS_ERRORS = ("with an unsupported type (<class 'tensorflow.python.distribute.values.PerReplica'>)",
                     "Invalid reduction dimension 0 for input with 0 dimensions")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_workers_train_to_identical_weights_and_one_run_folder(backend, tiny_store, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    ports = _free_ports(WORKERS)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "pancreas_seg.cli", "train", "--preset", "testing", "--data",
               str(tiny_store.root), "--quiet", "-o", str(run), "--set", *TINY_RUN]
    workers = [subprocess.Popen(command, env=_cluster_env(backend, index, ports), cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for index in range(WORKERS)]
    try:
        outputs = [worker.communicate(timeout=WORKER_TIMEOUT_S) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    failed = [err for worker, (_, err) in zip(workers, outputs) if worker.returncode != 0]
    if backend == "tensorflow" and failed and all(any(e in err for e in KERAS_MWMS_ERRORS) for err in failed):
        pytest.xfail(KERAS_MWMS_BUGS)  # the run got as far as Keras's fit; passes once Keras is fixed
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, out[-2000:] + err[-4000:]
    digests = {}
    for out, err in outputs:
        ((index, count, digest),) = DIGEST_LINE.findall(err)
        digests[int(index)] = digest
        assert int(count) == WORKERS
    assert sorted(digests) == list(range(WORKERS)) and len(set(digests.values())) == 1, digests
    chief = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
    assert weights_digest(chief) == digests[0]
    assert f"worker 1 of 2: done, weights {digests[1]}" in outputs[1][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "store"], "one run folder, nothing else"
    assert json.loads((run / "state.json").read_text())["order"] == ["full"]
