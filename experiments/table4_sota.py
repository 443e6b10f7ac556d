"""Table IV: our PNet-MSA (and PNet-MSA + BiRNN on CT) beside the state of the art (Sec. IV-E).

Rows of other methods are quoted from the paper and marked so; only our own models are run.
Writes figures/table4_sota.md and .csv.
"""
from __future__ import annotations

from pathlib import Path

from _common import Context, main_guard, run_script

from pancreas_seg.experiment.crossval import summary_row
from pancreas_seg.experiment.rows import MODEL_LABELS
from pancreas_seg.experiment.tables import QUOTED, Row, metric_column, paper_rows

QUICK_TIME = "seconds once Tables II and III have run"
COLUMNS = [metric_column("DSC"), metric_column("JI")]
TABLE = "table4_state_of_the_art"


def build(ctx: Context) -> list[Path]:
    ours_by_label = {label: model for model, label in MODEL_LABELS.items()}
    rows = []
    for modality in ctx.modalities:
        for method, reported in paper_rows(TABLE, modality).items():
            if method in ours_by_label:
                result = ctx.run(modality, ours_by_label[method])
                rows.append(Row(modality, method, summary_row(result, [c.key for c in COLUMNS]), reported))
            else:
                rows.append(Row(modality, method, {}, reported, QUOTED))
    return ctx.table(rows, COLUMNS, "Table IV: comparison with the state of the art", notes=[
        f"Rows marked '{QUOTED}' are other authors' results as printed in the paper; we did not run them."])


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct", "mri"), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
