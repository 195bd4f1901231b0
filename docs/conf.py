"""Sphinx configuration for the vtx documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
from the repository root (``.ci/run`` does exactly that).
"""
import importlib.util
import os
import sys

# Document the vtx that is installed (``pip install -e .`` builds the Cython
# core in place). Only when no vtx can be found at all, fall back to the
# source tree next to this directory.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if importlib.util.find_spec("vtx") is None:
    sys.path.insert(0, ROOT)

project = "vtx"
author = "the vtx authors"
copyright = "the vtx authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]

autodoc_default_options = {
    "members": True,
}
autodoc_member_order = "bysource"

napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
