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

# The small extensions of these docs (the exit-cost chart) live in _ext.
sys.path.insert(0, os.path.join(HERE, "_ext"))

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    # Diagrams are Graphviz text in docs/diagrams, drawn by ``dot`` (Debian's
    # graphviz package) at build time, so they are reviewed like code.
    "sphinx.ext.graphviz",
    "exitcosts",
]

exclude_patterns = ["_build"]

graphviz_output_format = "svg"
graphviz_dot_args = ["-Gfontname=sans-serif", "-Nfontname=sans-serif", "-Efontname=sans-serif"]

# Translations (the concept pages in Korean): Sphinx's gettext workflow.
# ``python -m sphinx -b gettext docs /tmp/pot`` extracts the messages, the
# catalogs are docs/locale/<lang>/LC_MESSAGES/<page>.po, and
# ``-D language=ko`` builds the translated site.
locale_dirs = ["locale/"]
gettext_compact = False
gettext_uuid = False
gettext_location = False

autodoc_default_options = {
    "members": True,
}
autodoc_member_order = "bysource"

napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "vtx"
html_static_path = ["_static"]
html_css_files = ["vtx.css"]
# Furo without network access: no fonts or scripts from elsewhere.
html_theme_options = {
    "navigation_with_keys": True,
}


def _keep_attribute_first_line(app, what, name, obj, options, lines):
    """Napoleon reads the first line of an attribute's or property's
    docstring as ``type: description`` and splits it at the first colon, so
    "bits 15:0 of RAX" rendered as a type "bits 15". vtx's attribute
    docstrings never start with a type: an empty comment as the first line
    (napoleon skips blank lines, not comments) leaves no colon to split at,
    so the whole docstring stays the description."""
    if what in ("attribute", "property", "data") and lines and ":" in lines[0]:
        lines[:0] = ["..", ""]


def setup(app):
    # Before napoleon's handler (priority 500).
    app.connect("autodoc-process-docstring", _keep_attribute_first_line, priority=400)
