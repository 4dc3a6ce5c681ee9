"""``gapy validate``: the command line of :func:`gapy.validate`.

``add_parser(commands, common)`` adds the subcommand to the ``gapy`` parser (``commands``
is its subparsers object, ``common`` a parent parser with ``--debug``); ``run(args)``
checks the paths, runs the validation and prints the table; returns the exit status.
"""

import argparse
import re
import time
from pathlib import Path
from typing import List

from ase.build import bulk

from ..exceptions import GapyError
from ..structures import atomic_number
from ..validation import FAMILIES, Settings, validate
from ..validation.core import _resolve_reference as resolve_reference
from ._common import check_outputs, read_frames


def _bulk_spec(text: str):
    """``SYMBOL:LATTICE[:A]`` to ``ase.build.bulk`` arguments (A in Angstrom)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(f"expected SYMBOL:LATTICE:A such as Cu:fcc:3.6, got {text!r}")
    symbol, lattice = parts[0], parts[1]
    try:
        atomic_number(symbol)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    a = None
    if len(parts) == 3:
        try:
            a = float(parts[2])
        except ValueError:
            raise argparse.ArgumentTypeError(f"lattice constant must be a number in Angstrom, got {parts[2]!r}") \
                from None
        if not a > 0:
            raise argparse.ArgumentTypeError(f"lattice constant must be positive, got {parts[2]!r}")
    return symbol, lattice, a


def _miller_list(text: str) -> List[tuple]:
    """``"100,110,111"`` or ``"1 0 0;1 1 0"`` to Miller index tuples."""
    out = []
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        tokens = item.split() if " " in item else re.findall(r"-?\d", item)
        if "".join(tokens).replace(" ", "") != item.replace(" ", ""):
            raise argparse.ArgumentTypeError(f"expected Miller indices like 100,110,111 or '1 -1 0', got {item!r}")
        digits = [int(x) for x in tokens]
        if len(digits) != 3 or not any(digits):
            raise argparse.ArgumentTypeError(f"expected three Miller indices (not all 0), got {item!r}")
        out.append(tuple(digits))
    return out


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def add_parser(commands, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``validate`` to the subcommands ``commands``; returns its parser."""
    parser = commands.add_parser(
        "validate", parents=[common], help="properties of a model against a reference, with its uncertainty",
        description="Compute, with the same procedure for the model and the reference: the equation of state "
                    "(lattice constant, volume, bulk modulus), elastic constants, phonons (phonopy), the "
                    "vacancy formation energy, surface energies and the vacancy-migration barrier (NEB), "
                    "with the model's standard deviation next to each number and a flag where the model "
                    "is unsure. Writes validation.csv, validation.json and PNG plots to the output directory.",
        epilog="Examples:\n  gapy validate cu.gapy --bulk Cu:fcc:3.6 --reference emt -o validate-cu\n"
               "  gapy validate cu.gapy --structure POSCAR --reference mypackage.calc:make -o out\n"
               "  gapy validate cu.gapy --bulk Cu:fcc:3.6 --reference dft_values.json --properties eos,elastic -o out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit'")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--structure", metavar="FILE", help="crystal structure file (any format ase.io reads)")
    source.add_argument("--bulk", type=_bulk_spec, metavar="SYMBOL:LATTICE:A",
                        help="crystal built by ase.build.bulk, e.g. Cu:fcc:3.6 or Si:diamond:5.43")
    parser.add_argument("--reference", metavar="REF",
                        help="'emt', 'module:factory' (a function returning an ASE calculator) or a JSON file "
                             "of reference values (default: model only)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="directory for validation.csv, validation.json and the plots (created if missing)")
    parser.add_argument("--properties", metavar="LIST",
                        help=f"comma-separated families ({', '.join(FAMILIES)}) or property names "
                             "(bulk_modulus, surface_energy_110, ...); default: all")
    parser.add_argument("--miller", type=_miller_list, metavar="LIST",
                        help="surfaces, e.g. 100,110,111 (default: the low-index ones)")
    parser.add_argument("--flag-std", type=_positive, default=Settings.flag_std, metavar="EV",
                        help="flag a property when some atom of a structure it used has a local-energy std above "
                             f"this (eV; default {Settings.flag_std})")
    parser.add_argument("--supercell-length", type=_positive, default=Settings.supercell_length, metavar="A",
                        help="vacancy, NEB and phonon supercells have plane spacings of at least this "
                             f"(Angstrom; default {Settings.supercell_length})")
    parser.add_argument("--n-samples", type=_count, default=Settings.n_samples, metavar="N",
                        help=f"posterior draws for the model's std (default {Settings.n_samples})")
    parser.add_argument("--no-plots", action="store_true", help="write CSV and JSON only")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``gapy validate``; returns the exit status (0, or 1 when every property failed)."""
    model_path = Path(args.model)
    if not model_path.is_file():
        raise GapyError(f"{model_path}: no such model file")
    inputs = [model_path]
    if args.structure:
        structure_path = Path(args.structure)
        if not structure_path.is_file():
            raise GapyError(f"{structure_path}: no such structure file")
        inputs.append(structure_path)
        frames = read_frames(structure_path)
        if len(frames) > 1:
            raise GapyError(f"{structure_path}: holds {len(frames)} structures; give a file with the one crystal "
                            "to validate on")
        structure = frames[0]
    else:
        symbol, lattice, a = args.bulk
        try:
            structure = bulk(symbol, lattice, a=a)
        except Exception as error:
            raise GapyError(f"--bulk {symbol}:{lattice}: {error}") from None
    if args.reference and args.reference.endswith(".json"):
        if not Path(args.reference).is_file():
            raise GapyError(f"{args.reference}: no such reference file")
        inputs.append(Path(args.reference))
        try:  # its names, units and values, before the output directory is made
            resolve_reference(args.reference)
        except ValueError as error:
            raise GapyError(str(error)) from None
    output = Path(args.output)
    check_outputs(inputs, directories=[output])

    properties = [p.strip() for p in args.properties.split(",") if p.strip()] if args.properties else None
    overrides = dict(flag_std=args.flag_std, supercell_length=args.supercell_length, n_samples=args.n_samples)
    if args.miller:
        overrides["miller"] = args.miller
    print(f"validating {model_path} on {structure.get_chemical_formula()} ({len(structure)} atoms) against "
          f"{args.reference or 'no reference'}; results in {output}/")
    start = time.perf_counter()
    report = validate(str(model_path), structure, reference=args.reference, properties=properties,
                      output=output, plots=not args.no_plots, **overrides)
    print()
    print(report.table())
    flagged = [name for name, result in report.results.items() if result.flagged]
    if flagged:
        print(f"\n* flagged (the model is unsure on the structures used: local-energy std > {args.flag_std} eV): "
              + ", ".join(flagged))
    computed = [r for r in report.results.values() if r.model is not None or r.reference is not None]
    print(f"\n{'done' if computed else 'no property computed (exit status 1)'} in "
          f"{time.perf_counter() - start:.1f} s; wrote {output}/validation.csv, validation.json"
          + ("" if args.no_plots else " and the plots"))
    return 0 if computed else 1
