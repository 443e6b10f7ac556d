"""Fig. 8: probability maps of HNN, UNet, PNet-MSA and PNet-MSA + BiRNN on one slice (Sec. IV-D).

Takes the test case with PNet-MSA's median DSC, its slice with the largest pancreas area, and
shows the input, each model's probability map and the ground truth, one row per modality.
Writes figures/fig8_probability_maps.png and a table (.md/.csv) of the shown case and slice DSC.
"""
from __future__ import annotations

from pathlib import Path

from _common import Context, main_guard, run_script

from pancreas_seg.data.preprocess import normalize_intensity
from pancreas_seg.experiment.analysis import pancreas_slice, rank_cases
from pancreas_seg.experiment.figures import ProbabilityRow, crop_box, plot_probability_maps
from pancreas_seg.experiment.rows import MODEL_LABELS
from pancreas_seg.experiment.tables import Column, Row
from pancreas_seg.metrics import dice
from pancreas_seg.vocabulary import RNN_MODEL

QUICK_TIME = "seconds once Tables II and III have run; --modality both about 3 min more for the MRI BiRNN"
MODELS = ("hnn", "unet", "pnet_msa", RNN_MODEL)
COLUMNS = [Column("case_dsc", "case DSC (%)"), Column("slice_dsc", "slice DSC (%)")]


def build(ctx: Context) -> list[Path]:
    figure_rows, rows = [], []
    for modality in ctx.modalities:
        results = {model: ctx.run(modality, model, maps=True) for model in MODELS}
        ranked = rank_cases(results["pnet_msa"])
        case_id = ranked[len(ranked) // 2]
        case = ctx.store(modality).read_case(case_id)
        z = pancreas_slice(case.mask)
        window = crop_box(case.mask[z])
        config = results["pnet_msa"].config
        image = normalize_intensity(case.image, case.modality, config.data)[z]  # MRI: per-volume percentiles
        maps = {}
        for model, result in results.items():
            probability = result.probability(case_id)[z]
            maps[MODEL_LABELS[model]] = probability[window]
            case_dsc = result.case_metrics()[case_id]["DSC"]
            slice_dsc = dice(probability > result.config.train.threshold, case.mask[z])
            rows.append(Row(modality, f"{MODEL_LABELS[model]} ({case_id} slice {z})",
                            {"case_dsc": case_dsc, "slice_dsc": slice_dsc}))
        figure_rows.append(ProbabilityRow(f"{modality} {case_id} slice {z}", image[window], maps, case.mask[z][window]))
    figure = plot_probability_maps(figure_rows, ctx.figure_path(), subtitle=ctx.label)
    return [*ctx.table(rows, COLUMNS, "Fig. 8: probability maps", notes=[
        "The paper shows these maps only as a figure: PNet-MSA + BiRNN gives the sharpest maps; "
        "HNN and UNet have low recall."]), figure]


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct", "mri"), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
