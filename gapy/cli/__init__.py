"""The ``gapy`` command line: ``gapy fit``, ``eval``, ``predict``, ``select``, ``learn``,
``coverage``, ``validate``, ``info`` and ``demo``, one module each.

Run ``gapy --help`` or ``gapy COMMAND --help``. Errors are reported as one line on
stderr with exit status 1 (2 for bad command-line usage), warnings as one line each;
``--debug`` shows the traceback and the warnings' source lines instead. Each command
module has ``add_parser(commands, common)`` and ``run(args)``; it parses, checks its
output paths before any work, calls library functions and prints.
"""

import argparse
import logging
import sys
import warnings
from typing import List, Optional

from threadpoolctl import threadpool_info, threadpool_limits
from tqdm.auto import tqdm

from .._version import __version__
from ..exceptions import GapyError
from . import coverage, demo, evaluate, fit, info, learn, predict, select, validate
from .demo import run_demo
from .fit import FIT_OPTIONS, read_config

__all__ = ["FIT_OPTIONS", "build_parser", "main", "read_config", "run_demo"]

#: Command modules, in the order ``gapy --help`` lists them.
COMMANDS = (fit, evaluate, predict, select, learn, coverage, validate, info, demo)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``gapy`` argument parser with its subcommands.

    Each subcommand sets ``args.run``, the function that runs it, and
    ``args.command``, its name.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``gapy [--version] [--debug] COMMAND ...``; usage errors print
        one line on stderr and exit with status 2.

    See Also
    --------
    main : Parse and run a command.

    Examples
    --------
    >>> from gapy.cli import build_parser
    >>> args = build_parser().parse_args(["demo", "-o", "demo-out", "--n-jobs", "2"])
    >>> args.command, args.output, args.n_jobs
    ('demo', 'demo-out', 2)
    """
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = _Parser(
        prog="gapy",
        description="Gaussian Approximation Potentials: fit SOAP/GAP models to DFT data, evaluate "
                    "them and predict energies, forces, stresses and their uncertainties.",
        epilog="Start with 'gapy demo'. Structures are read with ase.io (extxyz for .xyz files); labels "
               "are the energy (eV), forces (eV/A) and stress (eV/A^3) ASE reads from them, and "
               "atoms.info['config_type'] groups the error tables.",
    )
    parser.add_argument("--version", action="version", version=f"gapy {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in COMMANDS:
        command.add_parser(commands, common)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``gapy`` console script; returns the exit status.

    Errors are printed as one line on stderr, or raised with their traceback when
    ``--debug`` is given.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success (and for ``--help``, ``--version``), 1 on an error,
        2 on a command-line usage error, 130 when interrupted (Ctrl-C).

    Examples
    --------
    >>> from gapy.cli import main
    >>> main(["--version"])  # doctest: +ELLIPSIS
    gapy ...
    0
    >>> main(["fit"])  # no data file given: usage error on stderr
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else 2
    formatwarning, handler = warnings.formatwarning, _LineHandler(args.command)
    if not args.debug:  # one line per warning, without the source line that raised it
        warnings.formatwarning = lambda message, *_, **__: f"{handler.line('warning', str(message))}\n"
    package_logger = logging.getLogger("gapy")
    package_logger.addHandler(handler)  # the library's log warnings too (a failed reference calculation)
    given = argv if argv is not None else sys.argv[1:]
    threads = getattr(args, "n_jobs", None)
    explicit = any(item == "--n-jobs" or item.startswith("--n-jobs=") for item in given)
    limit = None  # --n-jobs N: at most N cores, the BLAS of the solves included (OpenBLAS takes every core by
    if explicit and isinstance(threads, int) and threads > 0:  # default), never more than the environment allows
        limit = min([threads] + [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"])
    try:
        with threadpool_limits(limit, user_api="blas"):
            return args.run(args)
    except KeyboardInterrupt:
        print(f"gapy {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line for users, the traceback with --debug
        if args.debug:
            raise
        message = str(error) or type(error).__name__
        if not isinstance(error, (GapyError, OSError, ValueError)):
            message = f"{type(error).__name__}: {message} (run with --debug for the traceback)"
        print(f"gapy {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning
        package_logger.removeHandler(handler)


class _LineHandler(logging.Handler):
    """The library's log records as ``gapy COMMAND: warning: ...`` lines on stderr, above
    any progress bar (``tqdm.write``); the same text for Python warnings."""

    def __init__(self, command: str):
        super().__init__(logging.WARNING)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.line(record.levelname.lower(), record.getMessage()), file=sys.stderr)

    def line(self, level: str, message: str) -> str:
        return f"gapy {self.command}: {level}: {' '.join(message.split())}"


if __name__ == "__main__":
    sys.exit(main())
