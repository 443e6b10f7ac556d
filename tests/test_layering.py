"""The prediction core is one way down (output_plan -> predict -> inference -> localiser -> roi -> networks), and the losses
stand apart from the models: checked on the modules' own import statements."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pancreas_seg"


def imported_modules(module: str) -> set[str]:
    """Every ``pancreas_seg`` module ``module`` imports, at the top or inside functions."""
    tree = ast.parse((PACKAGE / f"{module.replace('.', '/')}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pancreas_seg"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pancreas_seg"))
    return found


@pytest.mark.parametrize("module, above", [
    ("networks", ["roi", "localiser", "inference", "predict", "cli"]),
    ("roi", ["localiser", "inference", "predict", "cli"]),
    ("localiser", ["inference", "predict", "cli", "train"]),
    ("inference", ["predict", "cli"]),
    ("predict", ["output_plan", "cli"]),
    ("output_plan", ["cli"]),
])
def test_prediction_core_never_imports_a_layer_above(module, above):
    imports = imported_modules(module)
    for upper in above:
        assert f"pancreas_seg.{upper}" not in imports, f"{module} imports {upper}"


def test_losses_import_nothing_from_models():
    assert not [name for name in imported_modules("losses") if name.startswith("pancreas_seg.models")]


@pytest.mark.parametrize("script", ["experiments/_common.py", "data_prep/convert_nih.py",
                                    "data_prep/convert_msd.py", "data_prep/make_phantoms.py"])
def test_scripts_do_not_use_the_command_line_as_a_library(script):
    source = (PACKAGE.parent / script).read_text()
    assert "from pancreas_seg.cli import" not in source and "pancreas_seg.console" in source
