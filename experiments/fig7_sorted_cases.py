"""Fig. 7: per-case DSC with and without the BiRNN, sorted by PNet-MSA's DSC (Sec. IV-D).

Writes figures/fig7_sorted_cases.png and a table (.md/.csv) of how many cases the BiRNN
improves and by how much, overall and in the worst quarter of PNet-MSA's cases.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import Context, main_guard, run_script

from pancreas_seg.experiment.figures import plot_sorted_cases
from pancreas_seg.experiment.rows import MODEL_LABELS
from pancreas_seg.experiment.tables import Column, Row
from pancreas_seg.metrics import summarize
from pancreas_seg.vocabulary import RNN_MODEL

QUICK_TIME = "seconds once Table III has run"
WORST_FRACTION = 0.25  # the "cases with low DSC" the paper says the BiRNN helps most
COLUMNS = [Column("cases", "cases", scale=1.0, digits=0), Column("improved", "improved by BiRNN", scale=1.0, digits=0),
           Column("delta", "ΔDSC (points)"), Column("delta_worst", f"ΔDSC, worst {WORST_FRACTION:.0%} (points)")]


def build(ctx: Context) -> list[Path]:
    rows, figures = [], []
    for modality in ctx.modalities:
        base, refined = ctx.run(modality, "pnet_msa"), ctx.run(modality, RNN_MODEL)
        refined_dsc = dict(zip(refined.case_ids, refined.values("DSC")))
        before = base.values("DSC")
        after = np.array([refined_dsc[cid] for cid in base.case_ids])
        delta = after - before
        worst = np.argsort(np.nan_to_num(before, nan=-np.inf))[:max(1, int(round(WORST_FRACTION * before.size)))]
        rows.append(Row(modality, MODEL_LABELS[RNN_MODEL] + " vs " + MODEL_LABELS["pnet_msa"], {
            "cases": int(before.size), "improved": int(np.sum(delta > 0)),
            "delta": summarize(delta), "delta_worst": summarize(delta[worst])}))
        suffix = "" if len(ctx.modalities) == 1 else modality.lower()
        figures.append(plot_sorted_cases(before, after, ctx.figure_path(suffix),
                                         (MODEL_LABELS["pnet_msa"], MODEL_LABELS[RNN_MODEL]),
                                         subtitle=f"{modality}, {ctx.label}"))
    return [*ctx.table(rows, COLUMNS, "Fig. 7: per-case DSC with and without the BiRNN", notes=[
        "The paper shows 80 CT cases only as a figure: the BiRNN helps low-DSC cases most."]), *figures]


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct",), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
