"""Build helpers for the gapy documentation (imported by ``docs/conf.py``).

Kept in a module rather than in ``conf.py`` so that sphinx-gallery can refer to them by
their fully qualified names (configuration values must be picklable).
"""

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

from sphinx_gallery.scrapers import figure_rst

#: Examples that write files the other examples read; they run first.
FIRST = ("fit_si.py",)

#: ``gapy`` subcommands whose ``--help`` the CLI guide includes.
CLI_COMMANDS = ("fit", "eval", "predict", "select", "learn", "coverage", "validate", "info", "demo")


#: Files in ``examples/`` that the examples write (or Python caches): not copied.
OUTPUTS = ("__pycache__", "*.pyc", "*.png", "*.gapy", "*.traj")


def copy_examples(source: Path, target: Path) -> None:
    """Copy ``examples/`` (scripts, gallery header, any input files) to a fresh ``target``.

    sphinx-gallery runs each example in the directory it reads it from; running a copy
    keeps the files the examples write (models, plots, trajectories) out of
    ``examples/``. Outputs of earlier runs in ``examples/`` are not copied, so every
    build starts without a stale ``si.gapy`` and only the PNGs an example writes are
    shown with it.
    """
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*OUTPUTS))


def write_cli_help(target: Path, columns: int = 88) -> None:
    """Write the output of ``gapy --help`` and ``gapy COMMAND --help`` to ``target/*.txt``."""
    from gapy.cli import main

    target.mkdir(parents=True, exist_ok=True)
    saved = {key: os.environ.get(key) for key in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS=str(columns), NO_COLOR="1")
    try:
        for name, argv in [("gapy", ["--help"])] + [(command, [command, "--help"]) for command in CLI_COMMANDS]:
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                status = main(argv)
            if status != 0 or not text.getvalue().strip():
                raise RuntimeError(f"gapy {' '.join(argv)} exited with status {status}")
            path = target / f"{name}.txt"
            if not path.exists() or path.read_text() != text.getvalue():  # keep mtimes of unchanged files
                path.write_text(text.getvalue())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ExampleOrder:
    """sphinx-gallery ``within_subsection_order``: the examples in ``FIRST``, then by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename: str):
        return (0, FIRST.index(filename)) if filename in FIRST else (1, filename)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class PNGScraper:
    """sphinx-gallery image scraper: PNG files an example writes to its directory.

    The examples save their plots with ``savefig`` (some without ``pyplot``, so the
    matplotlib scraper does not see them); each PNG that appears is moved into the
    gallery's image directory and shown after the code block that wrote it.
    """

    def __call__(self, block, block_vars, gallery_conf):
        directory = Path(block_vars["src_file"]).parent
        images = []
        for png in sorted(directory.glob("*.png")):
            image_path = block_vars["image_path_iterator"].next()
            shutil.move(str(png), image_path)
            images.append(image_path)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:  # figures already saved to PNG (ase's EOS.plot uses pyplot)
            pyplot.close("all")
        return figure_rst(images, gallery_conf["src_dir"])

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


png_scraper = PNGScraper()


def skip_member(app, what, name, obj, skip, options):
    """``autodoc-skip-member``: leave out scikit-learn's generated ``set_*_request`` methods.

    scikit-learn adds them to every estimator whose methods take ``sample_weight`` (metadata
    routing); their docstrings refer to scikit-learn's own glossary.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None
