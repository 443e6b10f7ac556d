"""Fig. 9: 3D surfaces of ground truth (yellow) and PNet-MSA + BiRNN prediction (green) for three
cases, the best, median and worst by DSC (Sec. IV-E).

Surfaces by marching cubes (scikit-image) in mm, drawn with matplotlib. Writes
figures/fig9_3d.png and a table (.md/.csv) of the three cases' DSC.
"""
from __future__ import annotations

from pathlib import Path

from _common import Context, main_guard, run_script

from pancreas_seg.experiment.analysis import rank_cases
from pancreas_seg.experiment.figures import SurfaceCase, plot_surfaces
from pancreas_seg.experiment.rows import MODEL_LABELS
from pancreas_seg.experiment.tables import Row, metric_column
from pancreas_seg.vocabulary import RNN_MODEL

QUICK_TIME = "seconds once Table III has run"
MODEL = RNN_MODEL
PAPER_DSC = {"best": 90.0, "median": 75.0, "worst": 60.0}  # %, Fig. 9 caption: "The DSC are 90%, 75%, and 60%"
COLUMNS = [metric_column("DSC")]


def build(ctx: Context) -> list[Path]:
    rows, figures = [], []
    for modality in ctx.modalities:
        result = ctx.run(modality, MODEL, maps=True)
        ranked = rank_cases(result)
        picks = {"best": ranked[-1], "median": ranked[len(ranked) // 2], "worst": ranked[0]}
        cases, metrics = [], result.case_metrics()
        for rank, case_id in picks.items():
            case = ctx.store(modality).read_case(case_id)
            prediction = result.probability(case_id) > result.config.train.threshold
            dsc = metrics[case_id]["DSC"]
            cases.append(SurfaceCase(f"{rank}: {case_id}, DSC {100 * dsc:.1f} %", case.mask, prediction, case.spacing))
            rows.append(Row(modality, f"{rank} ({case_id})", {"DSC": dsc}, {"DSC": [PAPER_DSC[rank]]}))
        suffix = "" if len(ctx.modalities) == 1 else modality.lower()
        figures.append(plot_surfaces(cases, ctx.figure_path(suffix),
                                     subtitle=f"{modality} {MODEL_LABELS[MODEL]}, {ctx.label}"))
    return [*ctx.table(rows, COLUMNS, "Fig. 9: 3D surfaces of three cases", notes=[
        "paper: the DSC of the three CT examples in the Fig. 9 caption."]), *figures]


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct",), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
