"""``gapy predict``: write predictions (and uncertainties) to extxyz."""

import argparse

from ..calculator import store_results
from ..io.atomic import write_structures
from ._common import about, add_prediction_options, check_model_frames, check_outputs, read_frames, read_model


def run(args: argparse.Namespace) -> int:
    """Run ``gapy predict``; returns the exit status."""
    check_outputs([args.model, args.input], structures=[args.output])
    model = read_model(args.model, args.n_jobs)
    frames = read_frames(args.input)
    check_model_frames(model, frames, args.input)
    with about(args.input):
        predictions = model.predict_all(frames, return_std=args.std, variance=args.variance)
    for atoms, result in zip(frames, predictions):
        store_results(atoms, result)
    write_structures(args.output, frames)
    print(f"predictions for {len(frames)} structures written to {args.output}")
    return 0


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy predict``."""
    predict = commands.add_parser(
        "predict", parents=[common], help="write predictions (and uncertainties) to extxyz",
        description="Predict energies, per-atom energies, forces and (periodic structures) stresses and "
                    "write them as extxyz (eV, eV/A, eV/A^3); labels in the input are replaced. With "
                    "--std, energy_std and stress_std are written per structure, energies_std and "
                    "forces_std per atom, in the same units (stress as ASE writes it, 3x3; stress_std as 6 "
                    "values in Voigt order xx yy zz yz xz xy).",
    )
    predict.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit'")
    predict.add_argument("input", metavar="IN.xyz", help="structures")
    predict.add_argument("-o", "--output", metavar="OUT.xyz", required=True, help="extxyz file to write")
    predict.add_argument("--std", action="store_true", help="also write standard deviations")
    add_prediction_options(predict)
    predict.set_defaults(run=run)
