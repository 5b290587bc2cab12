"""The Colab notebook runs top to bottom (on the generated data, without installing anything)."""

import os

import pytest

# Every test here trains a model (or loads one trained for the module).
pytestmark = pytest.mark.slow

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks", "twostage_colab.ipynb")


def test_colab_notebook_runs_end_to_end(tmp_path):
    papermill = pytest.importorskip("papermill", reason="papermill is not installed (pip install -e .[test])")
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        NOTEBOOK, str(out), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters={"INSTALL": False, "DATA": "synthetic", "EPOCHS": 2, "ARCHITECTURES": ["svd"],
                    "OUT": str(tmp_path / "model"), "REPORT": str(tmp_path / "report")})
    assert (tmp_path / "report" / "report.html").exists()
    assert sorted(os.listdir(tmp_path / "model" / "twostage")) == ["1", "2"]
