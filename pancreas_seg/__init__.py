"""pancreas_seg: pancreas segmentation in CT and MRI with PNet-MSA, a bidirectional
ConvLSTM and the Jaccard loss (Cai, Lu, Xing, Yang, IEEE TMI 2018).

``import pancreas_seg`` stays light (no Keras): the command line's data commands start in a
fraction of a second and print nothing from TensorFlow. ``import pancreas_seg.models`` registers
the custom layers, losses and metric with Keras, so a saved ``.keras`` file then loads with plain
``keras.saving.load_model(path)``.
"""

__version__ = "0.1.0"
