"""Sphinx configuration of the morphml_dask documentation.

Build it with warnings as errors, as ``tests/test_docs.py`` does::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

import morphml_dask

# The configuration reference and diagram extensions live next to this file, not in the
# package.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "morphml_dask"
author = "the morphml_dask authors"
copyright = "the morphml_dask authors"
version = release = morphml_dask.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.autosummary",
    "morphml_config",
    "morphml_diagram",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]
# Docstrings write names in single backticks (numpydoc's convention): make them links to
# the documented object where there is one, code otherwise.
default_role = "py:obj"

myst_heading_anchors = 3
# Troubleshooting lists symptoms as terms with their fixes as definitions.
myst_enable_extensions = ["deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "show-inheritance": True}
# The stubs would be generated files in the source tree; the tables link to autodoc's
# entries instead.
autosummary_generate = False

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"morphml_dask {release}"
