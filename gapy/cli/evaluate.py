"""``gapy eval``: errors of a model on labelled structures, with plots."""

import argparse
import time
from pathlib import Path

from .._version import __version__
from ..report import evaluate, write_report
from ._common import (about, add_prediction_options, calibration_hint, check_outputs, print_table, read_frames,
                      read_model)


def run(args: argparse.Namespace) -> int:
    """Run ``gapy eval``; returns the exit status."""
    check_outputs([args.model, args.data], directories=[args.output])
    model = read_model(args.model, args.n_jobs)
    frames = read_frames(args.data)
    with_std = not args.no_std
    start = time.perf_counter()
    with about(args.data):
        predictions = model.predict_all(frames, return_std=with_std, variance=args.variance)
        elapsed = time.perf_counter() - start
        comparisons, rows = evaluate(model, frames, predictions)
    print(f"{len(frames)} structures from {args.data} predicted in {elapsed:.1f} s"
          + (f" (with {args.variance or model.variance} standard deviations)" if with_std else ""))
    print_table(f"errors of {args.model} on {args.data}", rows)
    if not model.std_scale_ or (args.variance or model.variance) != model.variance:
        calibration_hint(rows)
    if args.output:
        info = {
            "gapy_version": __version__,
            "model": str(args.model),
            "data": str(args.data),
            "n_structures": len(frames),
            "n_atoms": int(sum(len(atoms) for atoms in frames)),
            "variance": (args.variance or model.variance) if with_std else None,
        }
        written = write_report(args.output, comparisons, rows, info, title=Path(args.data).name,
                               plots=not args.no_plots)
        print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy eval``."""
    evaluate = commands.add_parser(
        "eval", parents=[common], help="errors of a model on labelled structures, with plots",
        description="RMSE and MAE of energies (meV/atom), forces (eV/A) and stresses (GPa), over all "
                    "structures and per config_type; with -o also CSV, JSON, parity plots and a plot of "
                    "the predicted standard deviation against the absolute error.",
    )
    evaluate.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit'")
    evaluate.add_argument("data", metavar="TEST.xyz", help="labelled structures")
    evaluate.add_argument("-o", "--output", metavar="REPORT_DIR", help="directory for errors.csv, errors.json "
                          "and the PNG plots (default: print the table only)")
    evaluate.add_argument("--no-std", action="store_true", help="skip the standard deviations and the "
                          "uncertainty plot (faster)")
    evaluate.add_argument("--no-plots", action="store_true", help="write CSV and JSON only")
    add_prediction_options(evaluate)
    evaluate.set_defaults(run=run)
