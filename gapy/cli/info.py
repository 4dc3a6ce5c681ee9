"""``gapy info``: what a model file holds: its terms, noise, uncertainty and training data."""

import argparse
import json
from typing import List

from ase.data import chemical_symbols

from ..estimator import GAPRegressor
from ..io.model import jsonable, read_state
from ._common import read_model

_WIDTH = 12  # width of the label column


def run(args: argparse.Namespace) -> int:
    """Run ``gapy info``; returns the exit status."""
    model = read_model(args.model)  # every field checked, one-line errors
    header, _ = read_state(args.model)
    if args.json:
        print(json.dumps(jsonable({key: value for key, value in header.items() if key != "checksums"}), indent=2))
    else:
        print(f"{args.model}: gapy model file, format {header.get('format_version')}, written by gapy "
              f"{header.get('gapy_version', '(unknown)')}")
        print(describe_model(model))
    return 0


def describe_model(model: GAPRegressor) -> str:
    """A fitted model in a few labelled lines: species and ``e0``, each term, the noise, the
    standard deviations and what the model was fitted on (``gapy info``).

    Parameters
    ----------
    model : GAPRegressor
        A fitted model.

    Returns
    -------
    str

    Examples
    --------
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.cli.info import describe_model
    >>> from gapy.datasets import load_si
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
    >>> print(describe_model(model).splitlines()[2])
    SOAP        r_cut 4 A, n_max 4, l_max 3, atom_sigma 0.5 A; zeta 4, delta 1 eV; 20 sparse points (Si 20)
    """
    lines: List[str] = []

    def add(label: str, text: str) -> None:
        lines.append(f"{label:<{_WIDTH}}{text}")

    symbols = [chemical_symbols[z] for z in model.species_]
    add("species", ", ".join(symbols))
    e0 = ", ".join(f"{chemical_symbols[z]} {value:.6g} eV" for z, value in sorted(model.e0_.items()))
    add("e0", f"{e0} ({_E0_MEANINGS.get(model.e0, 'given')})" if isinstance(model.e0, str) else f"{e0} (given)")
    add("SOAP", _soap_line(model))
    for (name, descriptor), fitted in zip(model.term_descriptors_.items(), model.gp_.terms):
        theta = ", ".join(f"{value:.3g}" for value in fitted.theta)
        add(name, f"r_cut {descriptor.r_cut:g} A, theta {theta}; delta {fitted.delta:.3g} eV; "
                  f"{len(fitted.sparse)} sparse points")
    if model.baseline_ is not None:
        add("baseline", f"ZBL repulsion, switched off between {model.baseline_.r_inner:.3g} and "
                        f"{model.baseline_.r_outer:.3g} A")
    add("noise", _noise_line(model))
    add("stds", _std_line(model))
    for index, text in enumerate(_training_lines(model)):
        add("training" if index == 0 else "", text)
    recommended = model.provenance_.get("recommended", {}).get("reasons", {})
    if recommended:
        add("chosen by", "gapy recommend:")
        for name, reason in recommended.items():
            add("", f"  {name}: {reason}")
    return "\n".join(lines)


_E0_MEANINGS = {
    "average": "mean energy per atom of the training set, not an isolated-atom energy",
    "fit": "least squares of the energies on the compositions, not isolated-atom energies",
    "isolated": "energies of the isolated atoms in the training set",
}


def _soap_line(model: GAPRegressor) -> str:
    soap, gp = model.descriptor_, model.gp_
    text = f"r_cut {soap.r_cut:g} A, n_max {soap.n_max}, l_max {soap.l_max}, atom_sigma {soap.atom_sigma:g} A"
    if soap.scaling_radius is not None:
        text += f", weights falling as r^-{soap.scaling_exponent:g} beyond {soap.scaling_radius:g} A"
    counts = ", ".join(f"{chemical_symbols[model.species_[s]]} {int((gp.sparse_species == s).sum())}"
                       for s in range(len(model.species_)))
    return f"{text}; zeta {gp.zeta}, delta {gp.delta:.3g} eV; {len(gp.sparse)} sparse points ({counts})"


def _noise_line(model: GAPRegressor) -> str:
    sigmas = model.label_sigmas_
    per_atom = " x sqrt(atoms)" if sigmas.get("per_atom") else ""
    parts = [f"{name} {sigmas[kind]:.3g} {unit}" for kind, name, unit in (
        ("energy", "energy", f"eV{per_atom}"), ("forces", "forces", "eV/A"), ("virial", "virial", f"eV{per_atom}"))
        if sigmas.get(kind) is not None]
    evidence = model.provenance_.get("evidence")
    if evidence is None:
        return f"{', '.join(parts)} (given)"
    how = "by the evidence" + ("" if evidence.get("converged", True) else " (not converged)")
    if evidence.get("sigma_energy_cross_validation", {}).get("candidates"):
        how += ", the energy's by cross-validation"
    bounds = evidence.get("at_bounds") or []
    if bounds:
        how += f"; at a bound of the search: {', '.join(bounds)}"
    return f"{', '.join(parts)} ({how})"


def _std_line(model: GAPRegressor) -> str:
    text = f"variance '{model.variance}'" + (", with the fitted noise (std_noise)" if model.std_noise else "")
    if not model.std_scale_:
        return f"{text}; not calibrated"
    factors = ", ".join(f"{quantity} x{factor:.3g}" for quantity, factor in model.std_scale_.items())
    calibration = model.provenance_.get("calibration")
    source = f" on {calibration['structures']} structures" if calibration else ""
    return f"{text}; calibrated{source} ({factors}, for variance '{model.std_scale_variance_}')"


def _training_lines(model: GAPRegressor) -> List[str]:
    record = model.provenance_.get("training")
    shortest = ", ".join(f"{chemical_symbols[a]}-{chemical_symbols[b]} {distance:.3g} A"
                         for (a, b), distance in sorted(model.pair_shortest_.items()))
    last = [f"shortest pairs {shortest} (predictions warn of closer ones)"] if shortest else []
    if record is None:
        return [f"{model.n_observations_} values fitted (no record of the structures: file written before "
                "gapy kept one)"] + last
    order = {chemical_symbols[z]: k for k, z in enumerate(model.species_)}  # (files keep JSON keys sorted)
    environments = ", ".join(f"{symbol} {count}" for symbol, count in
                             sorted(record["environments"].items(), key=lambda item: order.get(item[0], len(order))))
    labels = ", ".join(f"{count} {_LABEL_NAMES.get(kind, kind)}" for kind, count in record["labels"].items())
    lines = [f"{record['structures']} structures, {record['atoms']} atoms ({environments}); fitted {labels}"]
    if record.get("config_types"):
        lines.append("config types: " + ", ".join(f"{name} {count}" for name, count in record["config_types"].items()))
    if record.get("energy_per_atom"):
        low, high = record["energy_per_atom"]
        lines.append(f"energies {low:.4g} to {high:.4g} eV/atom")
    seed = "" if record.get("seed") is None else f"; seed {record['seed']}"
    return lines + last + [f"data sha256 {record['sha256']}{seed}"]


_LABEL_NAMES = {"energy": "energies", "forces": "force components", "virial": "virial components"}


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy info``."""
    info = commands.add_parser(
        "info", parents=[common], help="what a model file holds: terms, noise, training data",
        description="Print what a model file holds: species and e0, the SOAP and extra terms with their "
                    "deltas and sparse points, the noise sigmas and how they were chosen, the kind of "
                    "standard deviations and their calibration, and what the model was fitted on "
                    "(structures, atoms, labels, config types, energy range, shortest pairs, a SHA-256 of "
                    "the data) with the reasons of 'gapy fit' for its settings.",
    )
    info.add_argument("model", metavar="MODEL", help="model file written by 'gapy fit' or GAPRegressor.save")
    info.add_argument("--json", action="store_true", help="print the file's whole header as JSON instead")
    info.set_defaults(run=run)
