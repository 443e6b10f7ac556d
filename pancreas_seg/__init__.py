"""pancreas_seg: pancreas segmentation in CT and MRI with PNet-MSA, a bidirectional
ConvLSTM and the Jaccard loss (Cai, Lu, Xing, Yang, IEEE TMI 2018)."""

__version__ = "0.1.0"
