"""The notebooks in ``notebooks/``, executed headless with nbclient against real local Dask
clusters (and, for the S3 notebook, the moto S3 server), with assertions on what they print."""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="executing notebooks needs nbformat")
nbclient = pytest.importorskip("nbclient", reason="executing notebooks needs nbclient")
pytest.importorskip("ipykernel", reason="executing notebooks needs ipykernel")
pytest.importorskip("matplotlib", reason="the notebooks draw with matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "morphml-tests"
# Per cell; a whole notebook takes well under a minute on 2 cores.
CELL_TIMEOUT_S = 180
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.slow


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec that runs this interpreter, so that the notebooks see the environment
    the tests run in (a virtual environment's packages) without installing a kernel."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    document = {"argv": argv, "display_name": "morphml tests", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def _execute(name: str, kernel: str, workdir: Path) -> tuple[Any, float]:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.monotonic()
    client.execute()
    return notebook, time.monotonic() - start


def _outputs(notebook: Any, kind: str) -> list[Any]:
    """Every output of ``kind``: printed text for "stream", else the data of that MIME type."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output.output_type == "stream":
                found.append(output.text)
            elif kind in output.get("data", {}):
                found.append(output.data[kind])
    return found


def _printed(notebook: Any) -> str:
    return "".join(_outputs(notebook, "stream"))


def _summary(page: str) -> dict[str, str]:
    rows = re.findall(r"<tr><th[^>]*>(.*?)</th><td[^>]*>(.*?)</td></tr>", page)
    return {label: re.sub(r"<[^>]+>", "", value) for label, value in rows}


def test_the_quickstart_finds_an_accurate_digits_model(kernel: str, tmp_path: Path) -> None:
    notebook, seconds = _execute("01-quickstart.ipynb", kernel, tmp_path)
    printed = _printed(notebook)
    match = re.search(r"best val_accuracy: ([\d.]+)% \((t\d+)", printed)
    assert match is not None, printed
    assert float(match[1]) >= 90
    summaries = [s for s in _outputs(notebook, "text/html") if "morphml-search" in s]
    assert len(summaries) == 2  # displayed running, then finished
    assert len(_outputs(notebook, WIDGET_VIEW)) == 1  # the running one is live
    final = _summary(summaries[-1])
    assert final["state"] == "finished"
    assert final["done"] == "6" and final["running"] == "0"
    assert final["best val_accuracy (maximize)"].endswith(f"({match[2]})")
    tables = [t for t in _outputs(notebook, "text/html") if "<table" in t and "dataframe" in t]
    assert any("val_accuracy" in t and "worker" in t for t in tables)
    assert any("xarray" in html or "xr-wrap" in html for html in _outputs(notebook, "text/html"))
    assert len(_outputs(notebook, "image/png")) == 4
    print(f"01-quickstart: {seconds:.1f} s")


def test_the_comparison_runs_every_optimizer_and_plots(kernel: str, tmp_path: Path) -> None:
    notebook, seconds = _execute("02-nb201-comparison.ipynb", kernel, tmp_path)
    printed = _printed(notebook)
    best = re.search(r"best in NAS-Bench-201: index \d+, ([\d.]+)%", printed)
    assert best is not None, printed
    for name in ("random search", "regularized evolution", "ASHA"):
        found = re.search(rf"{name}: ([\d.]+)% after ([\d.]+) simulated GPU hours", printed)
        assert found is not None, f"{name} missing from:\n{printed}"
        assert 80 < float(found[1]) <= float(best[1])
        assert float(found[2]) > 0
    assert len(_outputs(notebook, "image/png")) == 1
    print(f"02-nb201-comparison: {seconds:.1f} s")


def test_the_s3_notebook_reads_back_what_it_stored(
    kernel: str, tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"notebook-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("MORPHML_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("MORPHML_S3_BUCKET", bucket)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    notebook, seconds = _execute("03-s3-storage.ipynb", kernel, tmp_path)
    printed = _printed(notebook)
    assert f"store: s3://{bucket}/searches/nb201-" in printed
    assert f"at {s3_endpoint}" in printed
    ran = re.search(r"ran (\d+) trials", printed)
    read = re.search(r"read back (\d+) trials", printed)
    assert ran is not None and read is not None, printed
    assert ran[1] == read[1] == "30"
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3_endpoint)
    assert fs.glob(f"{bucket}/searches/*/trials/part-*.parquet")
    assert fs.glob(f"{bucket}/searches/*/curves/part-*.zarr.commit")
    print(f"03-s3-storage: {seconds:.1f} s")


def test_the_cluster_notebook_runs_without_slurm_or_kubernetes(
    kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("yaml", reason="the notebook prints the DaskCluster as YAML")
    # A kubeconfig that does not exist: the notebook must skip the Kubernetes search.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    notebook, seconds = _execute("04-slurm-kubernetes.ipynb", kernel, tmp_path)
    printed = _printed(notebook)
    assert (
        f"skipped the Kubernetes search: no kubeconfig at {tmp_path / 'no-kubeconfig'}" in printed
    )
    if "SLURM: reachable" not in printed:
        assert "skipped the SLURM search: " in printed
    if "dask-jobqueue is not installed" not in printed:
        assert "#SBATCH" in printed and "--lifetime" in printed
    if "dask-kubernetes is not installed" not in printed:
        assert "kind: DaskCluster" in printed
    print(f"04-slurm-kubernetes: {seconds:.1f} s")


def test_the_committed_notebooks_have_no_outputs() -> None:
    names = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01-quickstart.ipynb",
        "02-nb201-comparison.ipynb",
        "03-s3-storage.ipynb",
        "04-slurm-kubernetes.ipynb",
    ]
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
