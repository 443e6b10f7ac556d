"""Table I: CE, CBCE and JAC losses on PNet-MSA (Sec. IV-B), DSC and JI, CT and MRI.

Each loss at the output threshold 0.5 and at the threshold each fold's validation cases chose
(best mean validation DSC over 0.05–0.95): the test cases never choose their own threshold.

Writes figures/table1_losses.md and .csv. The JAC row is the same model as Table II's
PNet-MSA row and Table III's first row.
"""
from __future__ import annotations

from pathlib import Path

from _common import Context, main_guard, run_script

from pancreas_seg.experiment.analysis import (FIG5_THRESHOLDS, chosen_thresholds, overlap_at_fold_thresholds,
                                              selection_note)
from pancreas_seg.experiment.crossval import summary_row
from pancreas_seg.experiment.rows import LOSS_LABELS
from pancreas_seg.experiment.tables import Row, metric_column, paper_rows
from pancreas_seg.metrics import summarize

QUICK_TIME = "CT about 8 min on a 2-core CPU once Table II has run, about 11 min from scratch; --modality both about 10 min more"
COLUMNS = [metric_column("DSC"), metric_column("JI")]
LOSSES = ("ce", "cbce", "jac")


def build(ctx: Context) -> list[Path]:
    rows = []
    for modality in ctx.modalities:
        paper = paper_rows("table1_losses", modality)
        for loss in LOSSES:
            result = ctx.run(modality, loss=loss)
            label = LOSS_LABELS[loss]
            rows.append(Row(modality, f"{label} (t = 0.5)", summary_row(result, [c.key for c in COLUMNS]),
                            paper.get(label, {}), selection_note(result)))
            chosen = chosen_thresholds(ctx.validation_curves(modality, FIG5_THRESHOLDS, loss=loss))
            overlap = overlap_at_fold_thresholds(result, ctx.store(modality), chosen)
            rows.append(Row(modality, f"{label} (validation t)", {k: summarize(v) for k, v in overlap.items()}, {},
                            "t per fold: " + ", ".join(f"{t:.2f}" for t in chosen)))
    return ctx.table(rows, COLUMNS, "Table I: training losses on PNet-MSA", notes=[
        "Our JAC row and Table II's PNet-MSA row are one model; the paper prints different numbers for them.",
        "The paper's rows are at its output threshold (0.5, Sec. IV-B); 'validation t' rows are ours only."])


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct", "mri"), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
