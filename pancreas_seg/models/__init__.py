"""Networks of the paper: PNet-MSA and PNet-64 (Sec. III-A), HNN and UNet baselines (Table II),
the bidirectional ConvLSTM and the stacked CNN-RNN (Sec. III-B); see :mod:`pancreas_seg.models.build`.

Importing this package registers every custom layer, loss and metric of the project with Keras,
so ``keras.saving.load_model(path)`` loads any ``.keras`` file the project wrote, compiled or not.
"""
from pancreas_seg import losses  # noqa: F401 - registers the losses and BinaryDice (compiled checkpoints)
from pancreas_seg.models.birnn import build_birnn, build_cnn_rnn, cnn_of, set_cnn_trainable
from pancreas_seg.models.build import (MODELS, build_model, count_parameters, load_weights, output_names,
                                       transfer_weights)

__all__ = ["MODELS", "build_model", "build_birnn", "build_cnn_rnn", "cnn_of", "set_cnn_trainable",
           "count_parameters", "load_weights", "output_names", "transfer_weights"]
