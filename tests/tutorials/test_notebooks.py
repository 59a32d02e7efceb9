"""The notebook tutorials run top to bottom in FAST mode, executed by a real Jupyter kernel (nbclient).

The quick start runs in the fast suite; the others (real data, or a longer chain) are slow-marked, and
the real-data ones skip with a reason when ``../shared/data`` is absent. The kernel imports monai_synth
from this repository (``PYTHONPATH``) and writes only to a temporary ``MONAI_DATA_DIRECTORY``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need the test extras (nbformat, nbclient)")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need the test extras (nbformat, nbclient)")
pytest.importorskip("ipykernel", reason="the notebook tests need the test extras (ipykernel)")

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = REPO / "tutorials"
SHARED_DATA = REPO.parent / "shared" / "data"

NOTEBOOKS = {
    "01_quickstart_phantom.ipynb": None,
    "02_your_2d_dataset_shenzhen.ipynb": "cxr_shenzhen",
    "03_datasetgan_annotate_interpret_generate.ipynb": None,
    "04_3d_msd_hippocampus.ipynb": "msd_hippocampus",
}


def _execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("MONAI_DATA_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(TUTORIALS)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert str(tmp_path) in outputs  # it wrote where it was told to, not into the repository


def test_notebooks_are_committed_without_outputs_and_have_a_fast_switch() -> None:
    assert sorted(p.name for p in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        notebook = nbformat.read(TUTORIALS / name, as_version=4)
        nbformat.validate(notebook)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), name
        assert any(c.source.startswith("FAST = True") for c in code), name


def test_quickstart_notebook_runs_in_fast_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _execute("01_quickstart_phantom.ipynb", tmp_path, monkeypatch)
    # it trained, generated and published: the model-zoo folder and the generated datalist are there
    assert (tmp_path / "my_bundle" / "models" / "generator.ts").is_file()
    assert (tmp_path / "paired_dcgan" / "generated" / "datalist.json").is_file()
    assert (tmp_path / "study" / "results.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n != "01_quickstart_phantom.ipynb"])
def test_notebook_runs_in_fast_mode(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = NOTEBOOKS[name]
    if data is not None and not (SHARED_DATA / data).is_dir():
        pytest.skip(f"{SHARED_DATA / data} is absent (real data for tests lives in ../shared/data)")
    _execute(name, tmp_path, monkeypatch)
    assert (tmp_path / "study" / "results.json").is_file() or (tmp_path / "datasetgan" / "generated").is_dir()
