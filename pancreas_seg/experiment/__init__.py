"""The paper's experiments (Sec. IV, Tables I–IV, Figs. 5–9), one module per concern.

- :mod:`~pancreas_seg.experiment.rows`: the config of each table row and the rows' names.
- :mod:`~pancreas_seg.experiment.crossval`: cross-validation of a row, with its model cache.
- :mod:`~pancreas_seg.experiment.analysis`: Figs. 5–9 and shape-change numbers from cached results.
- :mod:`~pancreas_seg.experiment.tables`: the paper's numbers beside ours, as Markdown and CSV.
- :mod:`~pancreas_seg.experiment.figures`: the drawings of Figs. 5–9.

Import names from the module that owns them; this package re-exports nothing.
"""
