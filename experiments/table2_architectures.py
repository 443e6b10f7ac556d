"""Table II: HNN, UNet, PNet-64 and PNet-MSA (Sec. IV-C), DSC, JI, precision, recall, CT and MRI.

Writes figures/table2_architectures.md and .csv. All models use the JAC loss and the output
threshold 0.5. HNN and UNet are trained from scratch here (the paper fine-tunes released
snapshots) unless their configs load pretrained weights. Two last rows beyond the paper, both
coarse-to-fine with a localiser trained on each fold (docs/PREDICTION.md): the same PNet-MSA fold
models run on the localiser's region, and a PNet-MSA trained on squares cut around the pancreas
and run on the square around the localiser's region (as Zhou et al. [9]).
"""
from __future__ import annotations

from pathlib import Path

from _common import Context, main_guard, run_script

from pancreas_seg.config import CROP_FINE_STAGE
from pancreas_seg.experiment.analysis import selection_note
from pancreas_seg.experiment.crossval import COARSE_TO_FINE, summary_row
from pancreas_seg.experiment.rows import MODEL_LABELS
from pancreas_seg.experiment.tables import Row, metric_column, paper_rows
from pancreas_seg.vocabulary import BASE_CNN

QUICK_TIME = "CT about 12 min on a 2-core CPU from scratch, including building the phantom set; --modality both about 5 min more once Table I's MRI rows exist"
COLUMNS = [metric_column(key) for key in ("DSC", "JI", "precision", "recall")]
MODELS = ("hnn", "unet", "pnet64", BASE_CNN)
COARSE_TO_FINE_LABEL = "PNet-MSA, coarse-to-fine (ours)"  # not in the paper: its Sec. V's suggested combination
CROPS_LABEL = "PNet-MSA on crops, coarse-to-fine (ours)"


def build(ctx: Context) -> list[Path]:
    rows = []
    for modality in ctx.modalities:
        paper = paper_rows("table2_architectures", modality)
        for model in MODELS:
            label = MODEL_LABELS[model]
            result = ctx.run(modality, model)
            rows.append(Row(modality, label, summary_row(result, [c.key for c in COLUMNS]), paper.get(label, {}),
                            selection_note(result)))
        for label, overrides in ((COARSE_TO_FINE_LABEL, ()), (CROPS_LABEL, CROP_FINE_STAGE)):
            result = ctx.run(modality, BASE_CNN, variant=COARSE_TO_FINE, overrides=overrides)
            rows.append(Row(modality, label, summary_row(result, [c.key for c in COLUMNS]), {},
                            selection_note(result)))
    return ctx.table(rows, COLUMNS, "Table II: CNN architectures (JAC loss, threshold 0.5)")


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct", "mri"), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
