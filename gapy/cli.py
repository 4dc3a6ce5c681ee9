"""The ``gapy`` command line."""

import argparse
import sys
import time
from typing import List, Optional

import numpy as np

from . import __version__
from .datasets import load_si
from .descriptors import SOAP


def demo(args: argparse.Namespace) -> int:
    """Compute SOAP for the bundled Si data and print a summary."""
    frames = load_si("train")
    soap = SOAP(species=["Si"], r_cut=5.4, n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
    start = time.perf_counter()
    results = soap.compute_many(frames, gradients=True, n_jobs=args.n_jobs, progress=True)
    elapsed = time.perf_counter() - start
    n_atoms = sum(len(atoms) for atoms in frames)
    n_pairs = sum(grad.dpos.shape[0] for _, grad in results)
    print(f"{soap}")
    print(f"{len(frames)} structures, {n_atoms} atoms, {soap.n_features} features per atom")
    print(f"{n_pairs} gradient rows ({n_pairs / n_atoms:.1f} per atom)")
    print(f"values + position + strain gradients in {elapsed:.2f} s ({n_atoms / elapsed:.0f} atoms/s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gapy", description="Gaussian Approximation Potentials")
    parser.add_argument("--version", action="version", version=f"gapy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run gapy on the bundled Si data")
    demo_parser.add_argument("--n-jobs", type=int, default=1, help="parallel threads")
    demo_parser.set_defaults(run=demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``gapy`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except Exception as error:  # one clear line for users, the traceback with --debug
        if args.debug:
            raise
        print(f"gapy {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
