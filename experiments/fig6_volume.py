"""Fig. 6: automatic against manual pancreas volume per case (Sec. IV-C), CT and MRI rows.

One scatter per Table II model with the fitted line, R², the ±15 % bands and the variance of
the relative volume error. Writes figures/fig6_volume.png and a table (.md/.csv).
"""
from __future__ import annotations

from pathlib import Path

from _common import Context, main_guard, run_script

from pancreas_seg.experiment.analysis import VOLUME_BAND, volume_fit
from pancreas_seg.experiment.figures import VolumePanel, plot_volume_agreement
from pancreas_seg.experiment.rows import MODEL_LABELS
from pancreas_seg.experiment.tables import Column, Row

QUICK_TIME = "seconds once Table II has run"
MODELS = ("hnn", "unet", "pnet64", "pnet_msa")
COLUMNS = [Column("r2", "R²", scale=1.0, digits=3), Column("slope", "slope", scale=1.0, digits=2),
           Column("intercept", "intercept (mL)", scale=1.0, digits=1),
           Column("error_variance", "error variance (%²)", scale=1.0, digits=1),
           Column("within_band", f"cases within ±{VOLUME_BAND:.0%} (%)")]


def build(ctx: Context) -> list[Path]:
    grid, rows = [], []
    for modality in ctx.modalities:
        panels = []
        for model in MODELS:
            result = ctx.run(modality, model)
            manual, auto = result.values("volume_gt_ml"), result.values("volume_pred_ml")
            fit = volume_fit(manual, auto)
            label = MODEL_LABELS[model]
            panels.append(VolumePanel(f"{modality} {label}", manual, auto, fit.slope, fit.intercept, fit.r2,
                                      fit.error_variance))
            rows.append(Row(modality, label, {"r2": fit.r2, "slope": fit.slope, "intercept": fit.intercept,
                                              "error_variance": fit.error_variance, "within_band": fit.within_band}))
        grid.append(panels)
    figure = plot_volume_agreement(grid, ctx.figure_path(), VOLUME_BAND, subtitle=ctx.label)
    return [*ctx.table(rows, COLUMNS, "Fig. 6: automatic vs manual volume", notes=[
        "The paper gives R² and error variance only inside the figure; PNet-MSA aligns best with manual volumes.",
        "error variance: variance of (automatic − manual) / manual over cases, in %²."]), figure]


def main(argv=None) -> int:
    return run_script(__file__, __doc__, build, argv, ("ct", "mri"), QUICK_TIME)


if __name__ == "__main__":
    main_guard(main)
