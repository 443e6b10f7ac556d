"""pancreas_seg: pancreas segmentation in CT and MRI with PNet-MSA, a bidirectional
ConvLSTM and the Jaccard loss (Cai, Lu, Xing, Yang, IEEE TMI 2018)."""

__version__ = "0.1.0"

# Registers the custom layers, losses and metric with Keras, so that a saved ``.keras`` file loads
# with plain ``keras.saving.load_model(path)`` after ``import pancreas_seg``. It costs the Keras
# import (a few seconds) at start-up, which every command that runs a model pays anyway.
from pancreas_seg import losses, models  # noqa: E402

__all__ = ["__version__", "losses", "models"]
