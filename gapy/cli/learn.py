"""``gapy learn``: active learning from a TOML file, resumable, with a CSV log and a learning curve."""

import argparse
import difflib
import re
import time
import warnings
from pathlib import Path
from typing import Any, Dict

from ase.io import write

from .._validation import check_choice, check_integer, check_number
from ..estimator import GAPRegressor
from ..exceptions import GapyError
from ..labels import read_labels
from ..plots import learning_curve_plot
from ..sampling import (DRIVERS, SCORES, SELECTIONS, active_learning, history_rows, reference_calculator,
                        strained_copies, workdir_history, write_history_csv)
from ..sampling.loop import REFITS
from ..sampling.md import check_driver_options
from ._common import about, check_outputs, integer, read_frames
from .fit import given_hyperparameters, model_from_settings, parse_settings, recommend_overrides

#: Top-level keys of the config file and their defaults (``...``: required).
LEARN_KEYS: Dict[str, Any] = {
    "reference": ..., "train": ..., "workdir": ..., "starts": None, "test": None, "temperatures": [300.0],
    "strains": [0.0], "driver": "md", "iterations": 5, "batch": 4, "md_steps": 200, "md_interval": 10,
    "timestep": 1.0, "score": "forces", "threshold": None, "max_force_std": None, "selection": "diverse",
    "reference_timeout": None, "seed": 0, "progress": True, "refit": None,
}
#: Tables of the config file: model settings (as ``gapy fit``) and the bias of each driver.
LEARN_TABLES = ("model", "metad", "uncertainty")
#: Files ``gapy learn`` writes into the work directory besides the run's own state.
OUTPUTS = {"log": "log.csv", "curve": "learning_curve.png", "model": "model.gapy", "train": "train.xyz"}

EXAMPLE = """\
reference = "emt"            # or "module:factory", a function returning an ASE calculator
                             # (module.py next to this file, in the current directory or installed)
train = "train.xyz"          # labelled initial structures
starts = "starts.xyz"        # MD starting structures (default: train)
test = "test.xyz"            # optional: test errors per iteration
workdir = "learn-cu"         # state, labels, log.csv, learning_curve.png, model.gapy
temperatures = [300, 1200]   # K: one run per start, strain and temperature
strains = [0.0, 0.1, 0.3]     # 0.3: room for a biased run to open the cell (surfaces, clusters)
driver = "metad"             # md, metad or uncertainty
iterations = 10
batch = 4                    # reference calculations per iteration
md_steps = 200
md_interval = 10
timestep = 2.0               # fs
threshold = 0.05             # eV/A: stop when no candidate is more uncertain
reference_timeout = 3600     # s per reference calculation
refit = "recommend"          # every refit chooses the settings from the data, as 'gapy fit' does
                             # (default without [model] hyperparameters); "evidence": the [model]
                             # settings with deltas and sigmas by the evidence; "fit": as given

[model]                      # as 'gapy fit --config'; with refit = "recommend" they replace the
n_max = 6                    # recommended ones
l_max = 4

[metad]
height = 0.005               # eV per atom (the defaults)
width = 0.05
stride = 5
"""


def read_learn_config(path) -> Dict[str, Any]:
    """Settings of ``gapy learn`` from a TOML file, every value checked.

    Returns
    -------
    dict
        The top-level keys of :data:`LEARN_KEYS` with defaults filled in, ``"model"``
        (parsed ``gapy fit`` settings) and ``"driver_options"`` (the table of the
        chosen driver).

    Raises
    ------
    GapyError
        Missing or invalid file, an unknown key (with the closest known one), a missing
        required key or a value of the wrong type or range.
    """
    import tomllib

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise GapyError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as error:
        raise GapyError(f"{path}: invalid TOML ({error})") from None
    known = list(LEARN_KEYS) + list(LEARN_TABLES)
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise GapyError(f"{path}: unknown key {key!r}{hint}")
    missing = [key for key, default in LEARN_KEYS.items() if default is ... and key not in raw]
    if missing:
        raise GapyError(f"{path}: missing {', '.join(missing)} (example:\n{EXAMPLE})")
    settings = {key: raw.get(key, default) for key, default in LEARN_KEYS.items()}
    try:
        for key in ("reference", "train", "workdir", "starts", "test"):
            if settings[key] is not None and not isinstance(settings[key], str):
                raise TypeError(f"{key} must be a string, got {settings[key]!r}")
        for key in ("temperatures", "strains"):
            value = settings[key]
            settings[key] = list(value) if isinstance(value, list) else [value]
            if not settings[key]:
                raise ValueError(f"{key} must not be empty")
        for value in settings["temperatures"]:
            check_number("temperatures", value, 0.0, low_inclusive=True)
        for value in settings["strains"]:
            check_number("strains", value, -0.5, 0.5)
        check_choice("driver", settings["driver"], DRIVERS)
        check_choice("score", settings["score"], SCORES)
        check_choice("selection", settings["selection"], SELECTIONS)
        if settings["refit"] is not None:
            check_choice("refit", settings["refit"], REFITS)
        for key in ("iterations", "batch", "md_steps", "md_interval"):
            check_integer(key, settings[key], 1)
        check_integer("seed", settings["seed"], 0)
        check_number("timestep", settings["timestep"], 0.0)
        check_number("threshold", settings["threshold"], 0.0, low_inclusive=True, allow_none=True)
        check_number("max_force_std", settings["max_force_std"], 0.0, allow_none=True)
        check_number("reference_timeout", settings["reference_timeout"], 0.0, allow_none=True)
        if not isinstance(settings["progress"], bool):
            raise TypeError(f"progress must be true or false, got {settings['progress']!r}")
        for table in LEARN_TABLES:
            if table in raw and not isinstance(raw[table], dict):
                raise TypeError(f"[{table}] must be a table, got {raw[table]!r}")
        options = {}
        for table in ("metad", "uncertainty"):
            if table in raw:
                try:
                    check_driver_options(table, raw[table])
                except (TypeError, ValueError) as error:
                    raise type(error)(f"[{table}]: {error}") from None
            if table == settings["driver"]:
                options = dict(raw.get(table, {}))
            elif table in raw:
                warnings.warn(f"{path}: [{table}] is not used: driver = {settings['driver']!r}", UserWarning,
                              stacklevel=2)
    except (TypeError, ValueError) as error:
        raise GapyError(f"{path}: {error}") from None
    settings["model"] = parse_settings(raw.get("model", {}), f"{path}: [model]", targets=("soap", "gap", "term"))
    if settings["refit"] is None:  # as gapy fit: recommended settings unless the model's are given
        settings["refit"] = "fit" if given_hyperparameters(settings["model"]) else "recommend"
    if settings["refit"] == "recommend" and "species" in settings["model"]:
        raise GapyError(f"{path}: [model] species: refit = 'recommend' models the species of the training "
                        "structures; leave species out")
    settings["driver_options"] = options
    return settings


#: Settings of active_learning under their name in the config file, where it differs.
CONFIG_NAMES = {"n_select": "batch", "random_state": "seed", "md_max_force_std": "max_force_std"}


def _with_config_names(message: str, driver: str) -> str:
    """``message`` of :func:`active_learning` with its settings named as in the config file
    (``n_select`` as ``batch``, ``driver_options.height`` as ``metad.height``)."""
    names = {**CONFIG_NAMES, "driver_options": driver}
    return re.sub(r"(?<![.\w])(" + "|".join(names) + r")\b", lambda match: names[match.group(1)], message)


def run(args: argparse.Namespace) -> int:
    """Run ``gapy learn``; returns the exit status."""
    settings = read_learn_config(args.config)
    if args.iterations is not None:
        settings["iterations"] = args.iterations
    workdir = Path(settings["workdir"])
    inputs = [args.config, settings["train"], settings["starts"], settings["test"]]
    check_outputs(inputs, directories=[workdir], models=[workdir / OUTPUTS["model"]],
                  files=[workdir / name for key, name in OUTPUTS.items() if key != "model"])
    train = read_frames(settings["train"])
    starts = read_frames(settings["starts"]) if settings["starts"] else [a.copy() for a in train]
    test = read_frames(settings["test"]) if settings["test"] else None
    try:
        reference = reference_calculator(settings["reference"], search=[Path(args.config).resolve().parent,
                                                                        Path.cwd()])
    except (TypeError, ValueError) as error:
        raise GapyError(f"{args.config}: {error}") from None
    overrides = None
    if settings["refit"] == "recommend":  # the [model] settings given replace the recommended ones
        species = sorted({s for atoms in train for s in atoms.get_chemical_symbols()})
        try:
            overrides, run_arguments = recommend_overrides(settings["model"], species)
            model = GAPRegressor(**run_arguments)
        except (TypeError, ValueError) as error:
            raise GapyError(f"{args.config}: [model]: {error}") from None
    else:
        model = model_from_settings(settings["model"], train + starts)
    for path, frames in ((settings["train"], train), (settings["test"], test or [])):
        with about(path):  # bad labels named with their file, before any work
            for k, atoms in enumerate(frames):
                read_labels(atoms, k, model.energy_key, model.forces_key, model.stress_key, model.virial_key,
                            warn=False)
    unstrained = sum(not atoms.pbc.all() for atoms in starts)
    if unstrained and any(settings["strains"]):
        print(f"note: {unstrained} of the {len(starts)} starts are not periodic in all directions: they run once, "
              "unstrained (strains scale periodic cells only)")
    starts = strained_copies(starts, settings["strains"])
    outputs = {key: workdir / name for key, name in OUTPUTS.items()}
    n_temperatures = len(settings["temperatures"])
    print(f"{len(train)} training structures from {settings['train']}; {len(starts)} starts "
          f"x {n_temperatures} temperature{'s' if n_temperatures > 1 else ''}; driver {settings['driver']}; reference "
          f"{settings['reference']}; refit {settings['refit']}; work directory {workdir}")

    def report(iteration, fitted) -> None:
        rows = history_rows(workdir_history(workdir))
        if not printed:
            print(f"{'iter':>4} {'train':>6} {'cand':>5} {'max score':>10} {'labelled':>8} {'failed':>6} "
                  f"{'test F RMSE':>11} {'ref s':>8} {'gapy s':>8}")
            printed.append(True)
        write_history_csv(rows, outputs["log"])
        learning_curve_plot(rows, outputs["curve"], title=str(workdir))
        force = "" if iteration.test_force_rmse is None else f"{iteration.test_force_rmse:.4f}"
        print(f"{len(rows) - 1:>4} {iteration.n_train:>6} {iteration.n_candidates:>5} {iteration.max_score:>10.4g} "
              f"{iteration.n_labelled:>8} {iteration.n_failed:>6} {force:>11} {iteration.reference_seconds:>8.1f} "
              f"{iteration.gapy_seconds:>8.1f}", flush=True)

    printed = []
    start = time.perf_counter()
    try:
        result = active_learning(
            model, train, reference, starts, n_iterations=settings["iterations"], n_select=settings["batch"],
            md_steps=settings["md_steps"], md_interval=settings["md_interval"],
            temperature=settings["temperatures"], timestep=settings["timestep"], score=settings["score"],
            threshold=settings["threshold"], md_max_force_std=settings["max_force_std"],
            random_state=settings["seed"], callback=report, driver=settings["driver"],
            driver_options=settings["driver_options"], selection=settings["selection"], workdir=workdir,
            reference_timeout=settings["reference_timeout"], test_frames=test, progress=settings["progress"],
            refit=settings["refit"], overrides=overrides, retry_failed=args.retry_failed,
        )
    except GapyError as error:
        if "holds another run" not in str(error):
            raise
        raise GapyError(_with_config_names(str(error), settings["driver"])) from None
    rows = history_rows(result.history, final=result)
    write_history_csv(rows, outputs["log"])
    learning_curve_plot(rows, outputs["curve"], title=str(workdir))
    result.model.save(outputs["model"])
    write(outputs["train"], result.frames, format="extxyz")
    n_labelled = len(result.frames) - len(train)
    stop = "converged: no candidate above the threshold" if result.converged else \
        f"{len(result.history)} iterations done"
    failed = "" if not result.failures else (f" (their structures are in {workdir / 'failed.xyz'}, the errors in "
                                             f"{workdir / 'state.json'}; --retry-failed tries them again)")
    print(f"\n{stop}; {n_labelled} structures labelled, {len(result.failures)} reference calculations "
          f"failed{failed}; {time.perf_counter() - start:.0f} s")
    if result.test_force_rmse is not None:
        print(f"final model: test force RMSE {result.test_force_rmse:.4f} eV/A, energy RMSE "
              f"{1000 * result.test_energy_rmse:.2f} meV/atom")
    print(f"wrote {outputs['model']}, {outputs['train']}, {outputs['log']}, {outputs['curve']}")
    return 0


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy learn``."""
    learn = commands.add_parser(
        "learn", parents=[common], help="active learning: explore with the model, label with a reference, refit",
        description="Grow a training set by active learning, as set in a TOML file: run MD with the model "
                    "(plain, metadynamics in descriptor space, or biased towards its uncertainty) from every "
                    "start, strain and temperature, send the most uncertain, diverse snapshots to the reference "
                    "calculator, refit, repeat. Every reference result is written to the work directory as "
                    "soon as it exists; run the same command again to resume a killed run (no reference "
                    "calculation is repeated) or, with --iterations, to continue a finished one. Failed, "
                    "timed-out or non-finite reference calculations are recorded and skipped (their "
                    "structures kept in failed.xyz; --retry-failed tries them again on resuming). Writes a CSV "
                    "log per iteration, a learning-curve PNG, the final model and training set. Paths in the "
                    "file are relative to the current directory; a reference 'module:factory' is imported from "
                    "the config file's directory, the current directory or the installed packages.",
        epilog="Example learn.toml:\n\n" + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    learn.add_argument("config", metavar="CONFIG.toml", help="settings (see below)")
    learn.add_argument("--iterations", type=integer, metavar="N",
                       help="override the number of iterations (e.g. to continue a finished run)")
    learn.add_argument("--retry-failed", action="store_true",
                       help="on resuming, first run the reference again on the structures whose calculation "
                            "failed (e.g. after raising reference_timeout)")
    learn.set_defaults(run=run)
