"""Learning curves (ours; the paper shows none): validation DSC against training samples seen for
every model of Tables I–III, CT and MRI, each fold's kept epoch marked.

Per modality three panels: PNet-MSA per loss (Table I), the CNNs with the JAC loss (Table II) and
the BiRNN stage of the CNN-RNN with its CNN frozen (Table III). Reads the per-epoch histories of
the tables' fold models (training them if they are not cached). Writes figures/learning_curves.png
and a table (.md/.csv): samples seen, validation DSC at the last and the kept epoch, and how much
the best rose over the last quarter of training (under 2 points = the curve has flattened).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import Context, main_guard, run_script

from pancreas_seg.experiment.analysis import LATE_FRACTION, learning_curve, selection_note
from pancreas_seg.experiment.figures import plot_learning_curves
from pancreas_seg.experiment.rows import LOSS_LABELS, MODEL_LABELS
from pancreas_seg.experiment.tables import Column, Row
from pancreas_seg.metrics import summarize
from pancreas_seg.vocabulary import BASE_CNN, RNN_MODEL

QUICK_TIME = "seconds once Tables I-III have run: it reads their training histories"
LOSSES = ("ce", "cbce", "jac")
MODELS = ("hnn", "unet", "pnet64", BASE_CNN)
COLUMNS = [Column("slices", "samples seen"),
           Column("last", "validation DSC (%), last epoch"), Column("kept", "validation DSC (%), kept epoch"),
           Column("late_gain", f"gain of the best in the last {LATE_FRACTION:.0%} of training (points)", scale=1.0)]


def _panels(ctx: Context, modality: str) -> dict[str, list[tuple[str, object, str]]]:
    """``{panel title: [(label, cross-validation result, stage)]}`` of one modality."""
    return {
        f"{modality}: PNet-MSA per loss": [(LOSS_LABELS[loss], ctx.run(modality, loss=loss), "full")
                                           for loss in LOSSES],
        f"{modality}: CNNs, JAC loss": [(MODEL_LABELS[model], ctx.run(modality, model), "full") for model in MODELS],
        f"{modality}: BiRNN": [(MODEL_LABELS[RNN_MODEL], ctx.run(modality, RNN_MODEL), "rnn")],
    }


def build(ctx: Context) -> list[Path]:
    figure_panels, rows = {}, []
    for modality in ctx.modalities:
        for title, entries in _panels(ctx, modality).items():
            curves = {}
            for label, result, stage in entries:
                curve = learning_curve(result, stage)
                curves[label] = (curve.slices, curve.dsc, curve.kept)
                kept = curve.dsc[np.arange(len(curve.dsc)), curve.kept - 1]
                rows.append(Row(title, f"{label} ({stage})", {
                    "slices": int(curve.slices[-1]), "last": summarize(curve.last), "kept": summarize(kept),
                    "late_gain": 100.0 * curve.late_gain()}, {}, selection_note(result)))
            figure_panels[title] = curves
    figure = plot_learning_curves(figure_panels, ctx.figure_path(), subtitle=ctx.label)
    return [*ctx.table(rows, COLUMNS, "Learning curves: validation DSC of every model of Tables I-III", notes=[
        "Not in the paper. Validation DSC is pooled over each fold's validation cases on the network's "
        "grid (the model-selection measure), not the test DSC of Tables I-III.",
        "Samples: 3-slice stacks for the CNNs, slice runs for the BiRNN stage. Last and kept: mean ± std "
        "[min, max] over folds. Gain: rise of the best mean validation DSC over the last quarter of the epochs."]),
        figure]


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct", "mri"), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
