"""``gapy demo``: fit and evaluate the bundled Si data."""

import argparse
import time
from pathlib import Path
from typing import List, Optional, Union

from ase import Atoms

from .._version import __version__
from ..datasets import load_si
from ..descriptors import SOAP
from ..recommend import recommend
from ..report import evaluate, write_report
from ._common import calibration_hint, check_outputs, integer, print_table
from .fit import fit_as_recommended


def run_demo(
    output: Union[str, Path] = "gapy-demo",
    *,
    n_jobs: int = -1,
    descriptor: Optional[SOAP] = None,
    n_sparse: Optional[int] = None,
    train: Optional[List[Atoms]] = None,
    test: Optional[List[Atoms]] = None,
    progress: bool = True,
) -> List[dict]:
    """Fit the bundled Si data as ``gapy fit`` does, evaluate on the bundled test set, write model and plots.

    The settings come from the data (:func:`gapy.recommend`, printed with their reasons),
    the deltas and sigmas from the evidence, so the predicted standard deviations need no
    calibration.

    Parameters
    ----------
    output : str or Path, default="gapy-demo"
        Directory for ``model.gapy``, ``errors.csv``, ``errors.json`` and the plots.
    n_jobs : int, default=-1
        Threads (all cores).
    descriptor : SOAP, optional
        Replaces the recommended one; a smaller one makes a quick check.
    n_sparse : int, optional
        Replaces the recommended number of SOAP sparse points.
    train : list of ase.Atoms, optional
        Training structures; default :func:`gapy.datasets.load_si` ``("train")``.
    test : list of ase.Atoms, optional
        Test structures; default :func:`gapy.datasets.load_si` ``("test")``.
    progress : bool, default=True
        Progress bars.

    Returns
    -------
    list of dict
        The test-set rows of :func:`gapy.metrics.error_table` (energies in meV/atom,
        forces in eV/A, stresses in GPa).

    Examples
    --------
    A quick check with a small descriptor (the full demo takes 10-20 s on two cores);
    it prints the settings, the error table and the files written:

    >>> from gapy import SOAP
    >>> from gapy.cli import run_demo
    >>> from gapy.datasets import load_si
    >>> rows = run_demo("demo-out", n_jobs=1, descriptor=SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3),
    ...                 n_sparse=20, train=load_si("train")[:4], test=load_si("test")[:2],
    ...                 progress=False)  # doctest: +SKIP
    """
    start = time.perf_counter()
    output = Path(output)
    train = load_si("train") if train is None else train
    test = load_si("test") if test is None else test
    overrides = {name: value for name, value in (("descriptor", descriptor), ("n_sparse", n_sparse))
                 if value is not None}
    print(f"gapy {__version__} demo: Si, mlearn data (Zuo et al., J. Phys. Chem. A 124, 731 (2020))")
    print(f"training on {len(train)} structures ({sum(len(a) for a in train)} atoms), "
          f"testing on {len(test)} ({sum(len(a) for a in test)} atoms), as gapy fit does")
    recommendation = recommend(train, overrides=overrides)
    model = recommendation.model.set_params(n_jobs=n_jobs, verbose=progress)
    print(recommendation.summary())
    fit_as_recommended(recommendation, train)
    fitted = time.perf_counter()
    print(f"fitted in {fitted - start:.1f} s")
    output.mkdir(parents=True, exist_ok=True)
    model.save(output / "model.gapy")
    predictions = model.predict_all(test, return_std=True)
    comparisons, rows = evaluate(model, test, predictions)
    print(f"test set predicted with {model.variance} standard deviations in {time.perf_counter() - fitted:.1f} s")
    print_table("errors on the bundled test set", rows)
    calibration_hint(rows)
    info = {"gapy_version": __version__, "model": str(output / "model.gapy"), "data": "gapy.datasets.load_si('test')",
            "n_structures": len(test), "n_atoms": int(sum(len(a) for a in test)), "variance": model.variance}
    written = write_report(output, comparisons, rows, info, title="bundled Si test set")
    print(f"\nwrote {output / 'model.gapy'}, " + ", ".join(str(p) for p in written))
    print(f"total {time.perf_counter() - start:.1f} s. Next: gapy eval {output / 'model.gapy'} YOUR_DATA.xyz -o report/")
    return rows


def run(args: argparse.Namespace) -> int:
    """Run ``gapy demo``; returns the exit status."""
    check_outputs([], directories=[args.output])
    run_demo(args.output, n_jobs=args.n_jobs, progress=args.progress)
    return 0


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy demo``."""
    demo = commands.add_parser(
        "demo", parents=[common], help="fit and evaluate the bundled Si data",
        description="Fit a Si model to the bundled mlearn training data as gapy fit does (settings from "
                    "the data, deltas and sigmas by the evidence), evaluate it on the bundled test set and "
                    "write the model, error tables and plots. Takes 10-20 s on two cores.",
    )
    demo.add_argument("-o", "--output", default="gapy-demo", metavar="DIR",
                      help="output directory (default: gapy-demo)")
    demo.add_argument("--n-jobs", type=integer, default=-1, metavar="N", help="threads (default: -1, all cores)")
    demo.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                      help="progress bars (default: on)")
    demo.set_defaults(run=run)
