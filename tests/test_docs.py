"""The documentation site builds with warnings as errors, and its generated pages are whole.

One Sphinx build per module (about 20 s on 2 cores, most of it importing the package for
autodoc); the tests read the HTML it wrote.
"""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import morphml_dask
from morphml_dask.config import load_defaults

pytest.importorskip("sphinx", reason="building the documentation needs sphinx")
pytest.importorskip("myst_parser", reason="the documentation pages are MyST Markdown")
pytest.importorskip("furo", reason="the documentation uses the furo theme")

pytestmark = pytest.mark.slow

DOCS = Path(__file__).parents[1] / "docs"


class _Text(HTMLParser):
    """The text of an HTML page, without its tags, scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skipping += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skipping -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _text(page: Path) -> str:
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return " ".join(parser.parts)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs-html")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0:
        pytest.fail(f"sphinx-build failed:\n{build.stdout[-3000:]}\n{build.stderr}")
    return out


def test_configuration_reference_lists_every_key(site: Path) -> None:
    text = _text(site / "configuration.html")
    missing = [key for key in load_defaults()["morphml"] if f"morphml.{key}" not in text]
    assert not missing, f"configuration.html lacks {missing}"
    assert "DASK_MORPHML__MAX_TRIALS" in text  # the environment variable of each key


def test_api_reference_documents_the_public_modules(site: Path) -> None:
    assert "Search" in _text(site / "api" / "driver.html")
    assert 'id="morphml_dask.driver.Search"' in (site / "api" / "driver.html").read_text()
    assert 'id="morphml_dask.optim.ASHA"' in (site / "api" / "optim.html").read_text()
    index = _text(site / "api" / "index.html")
    exported = [name for name in morphml_dask.__all__ if name != "__version__"]
    missing = [name for name in exported if name not in index]
    assert not missing, f"api/index.html does not list {missing} of morphml_dask.__all__"


def test_how_to_and_troubleshooting_pages_are_built(site: Path) -> None:
    for page in ("cli-search", "s3", "resume", "slurm", "kubernetes", "custom-task", "own-model"):
        assert (site / "howto" / f"{page}.html").is_file()
    assert "SearchStalledError" in _text(site / "troubleshooting.html")


def test_the_architecture_page_draws_a_trials_path(site: Path) -> None:
    html = (site / "architecture.html").read_text(encoding="utf-8")
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="morphml-flow"')
    drawing = html[start : html.index("</svg>", start)]
    titles = [
        "Optimizer",
        "SearchState",
        "SearchSession",
        "Dask scheduler",
        "Worker",
        "StoreWriter",
        "ExperimentStore",
        "Dashboard",
    ]
    positions = [drawing.index(f">{title}</text>") for title in titles]
    assert positions == sorted(positions), "the boxes are not in the trial's order"
    assert drawing.count("<rect") == len(titles)
    assert drawing.count('marker-end="url(#morphml-arrow)"') == len(titles) - 1
    assert 'href="architecture.html"' in (site / "modules.html").read_text(encoding="utf-8")


def test_a_flow_diagram_with_a_malformed_line_names_it() -> None:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from morphml_diagram import parse  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    from sphinx.errors import ExtensionError

    with pytest.raises(ExtensionError, match=r"line 2: expected 'title \| what it does"):
        parse(["A | does | here", "B only"])
    with pytest.raises(ExtensionError, match="an arrow before any box"):
        parse(["-> x", "A | b | c"])
    boxes = parse(["A | does | here", "-> calls", "B | does | there"])
    assert [(b.title, b.arrow) for b in boxes] == [("A", ""), ("B", "calls")]
