"""Tables with the paper's numbers beside ours, labelled with the data and preset."""
from __future__ import annotations

import csv

import pytest

from pancreas_seg.experiment.rows import data_label
from pancreas_seg.experiment.tables import QUOTED, Column, Row, metric_column, paper_rows, write_table
from pancreas_seg.metrics import Summary, summarize


def test_paper_rows_come_from_the_shipped_numbers():
    assert paper_rows("table1_losses", "ct")["JAC"]["DSC"] == [83.7, 5.4, 58.4, 90.4]
    assert paper_rows("table2_architectures", "MRI")["PNet-MSA"]["JI"] == [68.2, 9.64, 32.3, 82.7]
    assert paper_rows("table3_birnn_ct", "ct")["PNet-MSA + BiRNN"]["AVD_mm"] == [0.54, 0.53, 0.12, 3.78]
    assert paper_rows("table3_birnn_ct", "mri") == {}
    with pytest.raises(KeyError):
        paper_rows("table9", "ct")


def test_table_has_paper_and_labelled_ours_columns(tmp_path):
    label = data_label("quick", ["ct"])
    assert label == "ours (built-in CT phantoms, quick preset)"
    assert data_label("paper", ["mri"], "/data/store-mri") == "ours (MRI store store-mri, paper preset)"
    columns = [metric_column("DSC"), metric_column("AVD_mm", "AVD (mm)")]
    # metric columns take their units from evaluate.DISPLAY
    assert columns == [Column("DSC", "DSC (%)"), Column("AVD_mm", "AVD (mm)", scale=1.0, digits=2)]
    rows = [Row("CT", "PNet-MSA", {"DSC": summarize([0.8, 0.9]), "AVD_mm": Summary(0.61, 0.5, 0.15, 3.48, 2, 1)},
                {"DSC": [83.3, 5.6, 59.0, 91.0]}),
            Row("CT", "3D FCN", {}, {"DSC": [76.8, 9.4, 43.7, 89.4]}, QUOTED),
            Row("CT", "Roth et al.", {}, {"DSC": [81.3, 6.3, 50.6, 88.9], "AVD_mm": [0.61, 0.53, 0.15, 3.5]}, QUOTED)]
    md, table = write_table(rows, tmp_path / "figs" / "table_x", columns, label, title="Table X")
    assert (md.name, table.name) == ("table_x.md", "table_x.csv")
    text = md.read_text()
    assert "| DSC (%) paper | DSC (%) ours |" in text  # short headers: the data is named once, above
    assert f"`{label}`: this reproduction" in text
    assert "| CT | PNet-MSA | 83.3±5.6 [59.0,91.0] | 85.0±7.1 [80.0,90.0] | — | 0.61±0.50 [0.15,3.48] (1 nan) |" in text
    assert f"| CT | 3D FCN | 76.8±9.4 [43.7,89.4] | — | — | — | {QUOTED} |" in text
    assert "| 0.61±0.53 [0.15,3.50] |" in text  # the paper's digits are kept, never fewer than the column's
    lines = list(csv.DictReader(table.open()))
    assert lines[0]["paper"] == "83.3±5.6 [59.0,91.0]" and lines[0][label] == "85.0±7.1 [80.0,90.0]"
    assert float(lines[0]["ours_mean"]) == pytest.approx(85.0) and lines[0]["ours_n"] == "2"
    assert lines[2]["note"] == QUOTED and lines[2][label] == "—"
    assert not list((tmp_path / "figs").glob(".*"))  # no temporary files left


def test_columns_left_out_of_the_markdown_stay_in_the_csv(tmp_path):
    columns = [metric_column("DSC"), Column("AVD_mm", "surface AVD (mm)", scale=1.0, digits=2, markdown=False)]
    rows = [Row("CT", "PNet-MSA", {"DSC": 0.8, "AVD_mm": 3.25})]
    md, table = write_table(rows, tmp_path / "t", columns, data_label("cpu", ["ct"]))
    text = md.read_text()
    assert "surface AVD (mm) ours" not in text and "in the CSV only: surface AVD (mm)" in text
    assert [line["metric"] for line in csv.DictReader(table.open())] == ["DSC (%)", "surface AVD (mm)"]
