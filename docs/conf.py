"""Sphinx configuration of the gapy documentation.

Build with ``python -m sphinx -W docs OUTDIR`` from the project root (``pip install -e
".[docs]"`` installs what it needs). The gallery runs every ``examples/*.py``; the API
pages are generated from the list in ``api.rst`` into ``generated/`` (git-ignored).
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the gapy of this checkout, installed or not
sys.path.insert(0, str(DOCS / "sphinxext"))

import gapy  # noqa: E402
import gapy_docs  # noqa: E402

# -- project -------------------------------------------------------------------------
project = "gapy"
author = "the gapy developers"
copyright = "the gapy developers"
release = gapy.__version__
version = ".".join(release.split(".")[:2])

# -- general -------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "sphinxext"]
default_role = "py:obj"
nitpicky = False
# No intersphinx: inventories are downloaded at build time, and offline that is a
# warning (an error under -W).

# -- autodoc, autosummary, numpydoc --------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc sections say it, with units and defaults
numpydoc_show_class_members = False  # the class template lists members instead
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# The public docstrings are complete (python docs/sphinxext/check_docstrings.py reports
# nothing): the build keeps them so. Every check listed here has no finding in the API;
# a new finding is a warning, an error under -W. Not enforced: SA01 (See Also), ES01
# (extended summary), SS05 (its "infinitive verb" test misreads summaries such as "Rows
# scaled to unit length").
numpydoc_validation_checks = {
    "GL07", "GL08", "GL09", "GL10",  # docstring present, sections in order
    "SS01", "SS02", "SS03", "SS06",  # a one-line summary, capitalised, with a full stop
    "PR01", "PR02", "PR03", "PR04", "PR05", "PR06", "PR07", "PR08", "PR09", "PR10",  # parameters
    "RT01", "RT02", "RT03", "RT04", "RT05",  # returns
    "YD01", "EX01",  # yields, an example
}
# Not gapy's: scikit-learn's metadata-routing methods (set_fit_request, ...) and the
# ASE Calculator attributes whose docstrings autodoc inherits from ase.
numpydoc_validation_exclude = {
    r"\.set_\w+_request$",
    r"^gapy\.(GAPCalculator|sampling\.\w+)\.(default_parameters|discard_results_on_any_change|implemented_properties)$",
}

# -- MyST (the theory pages and the benchmarks README are markdown) -------------------
myst_heading_anchors = 3

# -- sphinx-gallery ------------------------------------------------------------------
# The examples run from a copy under _build/ (see gapy_docs.copy_examples), so that the
# files they write stay out of the checkout.
gapy_docs.copy_examples(ROOT / "examples", DOCS / "_build" / "examples")
gapy_docs.write_cli_help(DOCS / "generated" / "cli")
sphinx_gallery_conf = {
    "examples_dirs": "_build/examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",  # run every example, not only plot_*.py
    "within_subsection_order": "gapy_docs.ExampleOrder",
    "image_scrapers": ("gapy_docs.png_scraper",),
    "run_stale_examples": True,  # always run them: the build checks that they work
    "write_computation_times": False,  # would write sg_execution_times.rst into docs/
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 0,
}

# -- HTML ----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"gapy {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_static_path = []
html_show_sourcelink = False


def setup(app):
    app.connect("autodoc-skip-member", gapy_docs.skip_member)
