"""Learning curves (ours; the paper shows none): validation DSC of PNet-MSA against training slices
seen, for the CE, CBCE and JAC losses, CT and MRI.

Reads the per-epoch history of Table I's fold models (training them if they are not cached).
Writes figures/learning_curves.png and a table (.md/.csv): validation DSC at the last epoch, the
best epoch, and how much the best rose over the last quarter of training (under 2 points = the
curve has flattened).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import Context, main_guard, run_script

from pancreas_seg.experiment.analysis import LATE_FRACTION, learning_curve
from pancreas_seg.experiment.figures import plot_learning_curves
from pancreas_seg.experiment.rows import LOSS_LABELS
from pancreas_seg.experiment.tables import Column, Row
from pancreas_seg.metrics import summarize

QUICK_TIME = "seconds once Table I has run: it reads Table I's training histories"
LOSSES = ("ce", "cbce", "jac")
COLUMNS = [Column("slices", "training slices"),
           Column("last", "validation DSC (%), last epoch"), Column("best", "validation DSC (%), best epoch"),
           Column("late_gain", f"gain of the best in the last {LATE_FRACTION:.0%} of training (points)", scale=1.0)]


def build(ctx: Context) -> list[Path]:
    panels, rows = {}, []
    for modality in ctx.modalities:
        curves = {}
        for loss in LOSSES:
            curve = learning_curve(ctx.run(modality, loss=loss))
            curves[LOSS_LABELS[loss]] = (curve.slices, curve.dsc)
            rows.append(Row(modality, LOSS_LABELS[loss], {
                "slices": int(curve.slices[-1]), "last": summarize(curve.last),
                "best": summarize(np.nanmax(curve.dsc, axis=1)), "late_gain": 100.0 * curve.late_gain()}, {}))
        panels[modality] = curves
    figure = plot_learning_curves(panels, ctx.figure_path(), subtitle=ctx.label)
    return [*ctx.table(rows, COLUMNS, "Learning curves: validation DSC of PNet-MSA per loss", notes=[
        "Not in the paper. Validation DSC is pooled over each fold's validation cases on the network's "
        "grid (the model-selection measure), not the test DSC of Tables I-III.",
        "Last and best: mean ± std [min, max] over folds. Gain: rise of the best mean validation DSC "
        "over the last quarter of the epochs."]), figure]


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct", "mri"), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
