"""``gapy eval``: errors of a model on labelled structures, with plots."""

import argparse
import time
from pathlib import Path

import numpy as np

from .._version import __version__
from ..exceptions import GapyError
from ..labels import label_keys, read_labels
from ..metrics import largest_errors
from ..report import evaluate, write_report
from ..structures import structure_name
from ._common import (about, add_prediction_options, calibration_hint, check_model_frames, check_outputs,
                      print_table, read_frames, read_model)
from .fit import FIT_OPTIONS, key_hint

#: ``gapy fit`` options that name the labels; ``gapy eval`` takes them too.
LABEL_KEYS = ("energy_key", "forces_key", "stress_key", "virial_key")


def _check_labelled(model, frames, path) -> None:
    """Refuse test structures of which none has a label under the model's keys, naming the keys found;
    print a note for each kind the model was fitted on that no structure has (no rows for it below)."""
    keys = [getattr(model, name) for name in LABEL_KEYS]
    found = set()
    for k, atoms in enumerate(frames):
        labels = read_labels(atoms, k, *keys, warn=False)  # (said when the errors are computed)
        found |= {kind for kind in ("energy", "forces", "virial") if getattr(labels, kind) is not None}
    first = f"{structure_name(frames[0], 0)} has {label_keys(frames[0])}: {key_hint(frames[0])}"
    if not found:
        fields = ", ".join(f"'{key}'" for key in keys)
        raise GapyError(f"{path}: no structure has a label to compare with (fields {fields}); {first}")
    fields = model._label_fields()
    periodic = any(atoms.pbc.all() for atoms in frames)  # (a slab or a molecule has no stress to compare)
    for kind in ("energy", "forces", "virial") if periodic else ("energy", "forces"):
        if kind not in found and getattr(model, "label_sigmas_", {}).get(kind) is not None:
            print(f"note: the model was fitted on field {fields[kind]} but no structure of {path} has it, so there "
                  f"are no {'stress' if kind == 'virial' else kind} errors below; {first}")


def run(args: argparse.Namespace) -> int:
    """Run ``gapy eval``; returns the exit status."""
    check_outputs([args.model, args.data], directories=[args.output])
    model = read_model(args.model, args.n_jobs)
    model.set_params(**{name: getattr(args, name) for name in LABEL_KEYS if getattr(args, name) is not None})
    frames = read_frames(args.data)
    check_model_frames(model, frames, args.data)
    with about(args.data):
        _check_labelled(model, frames, args.data)
    with_std = not args.no_std
    start = time.perf_counter()
    with about(args.data):
        predictions = model.predict_all(frames, return_std=with_std, variance=args.variance)
        elapsed = time.perf_counter() - start
        comparisons, rows = evaluate(model, frames, predictions)
    print(f"{len(frames)} structures from {args.data} predicted in {elapsed:.1f} s"
          + (f" (with {args.variance or model.variance} standard deviations)" if with_std else ""))
    print_table(f"errors of {args.model} on {args.data}", rows)
    for quantity, comparison in comparisons.items():  # the structures that make the RMSE
        worst = largest_errors(comparison)
        if len(frames) > len(worst):
            signed = quantity == "energy"
            print(f"largest {'force' if quantity == 'forces' else quantity} errors ({comparison.unit}"
                  + ("" if signed else ", RMS over the components") + "): " + "; ".join(
                      f"{structure_name(frames[k], k)} {value:{'+' if signed else ''}.3g}"
                      + (f" ({z:.1f} std)" if z is not None else "") for k, value, z in worst))
    if "energy" in comparisons and model.label_sigmas_.get("energy") is None:
        offset = float(np.mean(comparisons["energy"].error))
        print(f"note: {args.model} was fitted without energies, so its energies are known up to a constant per "
              f"species (e0); the energy errors measure mostly that constant (mean {offset:.4g} meV/atom)")
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
    for option in FIT_OPTIONS:
        if option.name in LABEL_KEYS:
            evaluate.add_argument(option.flag, dest=option.name, metavar=option.metavar,
                                  help=option.help + " (default: the key the model was fitted with)")
    add_prediction_options(evaluate)
    evaluate.set_defaults(run=run)
