"""``gapy select``: choose uncertain, diverse structures to label next."""

import argparse

import numpy as np

from ..io.atomic import write_structures
from ..sampling import SCORE_UNITS, SCORES, select_structures
from ..structures import structure_name
from ._common import (about, add_prediction_options, check_model_frames, check_outputs, choice, integer, number,
                      read_frames, read_model)


def run(args: argparse.Namespace) -> int:
    """Run ``gapy select``; returns the exit status."""
    check_outputs([args.model, args.pool], structures=[args.output])
    model = read_model(args.model, args.n_jobs)
    frames = read_frames(args.pool)
    check_model_frames(model, frames, args.pool)
    with about(args.pool):
        selection = select_structures(model, frames, args.n, score=args.score, threshold=args.threshold,
                                      diverse=not args.no_diversity, variance=args.variance)
    unit = SCORE_UNITS[args.score]
    scores = selection.scores
    print(f"{len(frames)} structures in {args.pool}: {args.score} uncertainty median "
          f"{np.median(scores):.4g}, max {scores.max():.4g} {unit}")
    if len(selection.indices) == 0:
        write_structures(args.output, [])  # not a batch of an earlier run, to be labelled again
        print(f"no structure scores above the threshold {args.threshold} {unit}; {args.output} written empty")
        return 0
    print(f"\n{'score (' + unit + ')':>14}  structure (index in the pool)")
    chosen = []
    for k in selection.indices:
        atoms = frames[k].copy()
        atoms.calc = None  # the selection is to be labelled: old labels would mislead
        atoms.info["uncertainty_score"] = float(scores[k])
        atoms.info["pool_index"] = int(k)
        chosen.append(atoms)
        print(f"{scores[k]:>14.4g}  {structure_name(frames[k], k)}")
    write_structures(args.output, chosen)
    print(f"\n{len(chosen)} structures written to {args.output} (info: uncertainty_score, pool_index)")
    if len(chosen) < args.n:
        above = int(np.sum(scores > args.threshold)) if args.threshold is not None else len(frames)
        print(f"fewer than the {args.n} asked: " + (
            f"{above} of the {len(frames)} structures score above the threshold" if above < args.n else
            "the others are copies of the chosen ones (the same structure up to symmetry and the "
            "order of the atoms)"))
    return 0


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy select``."""
    select = commands.add_parser(
        "select", parents=[common], help="choose uncertain, diverse structures to label next",
        description="Score every structure of a pool (e.g. MD snapshots) by the model's predicted "
                    "uncertainty and write the N most worth a reference (DFT) calculation: uncertain, "
                    "and different from each other (uncertainty-weighted farthest-point sampling on "
                    "structure fingerprints). Labels in the pool are dropped from the output.",
    )
    select.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit'")
    select.add_argument("pool", metavar="POOL.xyz", help="candidate structures")
    select.add_argument("-n", type=integer, required=True, metavar="N", help="number of structures to choose")
    select.add_argument("-o", "--output", metavar="OUT.xyz", required=True, help="extxyz file to write")
    select.add_argument("--score", type=choice(SCORES), default="forces", metavar="KIND",
                        help="forces: largest force std (eV/A, default); energy: energy std per atom "
                             "(eV/atom); energies: largest local-energy std (eV, fastest)")
    select.add_argument("--threshold", type=number, metavar="VALUE",
                        help="only structures scoring above VALUE (units of --score) are chosen")
    select.add_argument("--no-diversity", action="store_true",
                        help="take the N highest scores, even if they are near-copies")
    add_prediction_options(select)
    select.set_defaults(run=run)
