"""``gapy coverage``: map how new structures sit in the training set (PCA, distances)."""

import argparse
import time
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from scipy.stats import spearmanr

from ..coverage import CoverageMap, local_energy_std, write_coverage_csv
from ..descriptors import SOAP
from .fit import SOAP_DEFAULTS
from ..exceptions import GapyError
from ..structures import atomic_number
from ._common import (about, check_model_frames, check_outputs, choice, integer, number, read_frames, read_model,
                      species_list)


def _check_center(center: str, descriptor: SOAP, sources, model_path) -> None:
    """Refuse ``--center`` for a species no structure of a file has, or the descriptor lacks, before any SOAP work.

    ``sources`` are ``(path, frames)`` pairs; ``model_path`` is None without ``--model``.
    """
    z = atomic_number(center)
    symbol = chemical_symbols[z]
    for path, frames in sources:
        if frames and not any((atoms.numbers == z).any() for atoms in frames):
            present = sorted({int(n) for atoms in frames for n in atoms.numbers})
            raise GapyError(f"{path}: none of its {len(frames)} structures contains {symbol} (to map with "
                            f"--center {symbol}); they have {[chemical_symbols[n] for n in present]}")
    if z not in descriptor.atomic_numbers:
        owner = f"the model {model_path}" if model_path else "the descriptor (--species)"
        raise GapyError(f"--center {symbol}: {owner} has no species {symbol}; its species are "
                        f"{list(descriptor.species)}")


def run(args: argparse.Namespace) -> int:
    """Run ``gapy coverage``; returns the exit status."""
    from ..plots import coverage_plot  # matplotlib: only when plotting

    check_outputs([args.train, args.new, args.model], directories=[args.output])
    if args.color == "std" and not (args.model and args.new):
        raise GapyError("--color std needs a model (--model) and new structures (NEW.xyz)")
    soap_flags = {name: getattr(args, name) for name in ("species", "r_cut", "n_max", "l_max", "atom_sigma")
                  if getattr(args, name) is not None}
    train = read_frames(args.train)
    new = read_frames(args.new) if args.new else []
    if args.model:
        if soap_flags:
            flags = ", ".join("--" + name.replace("_", "-") for name in soap_flags)
            raise GapyError(f"give either --model or SOAP settings ({flags}), not both")
        model = read_model(args.model)
        check_model_frames(model, train, args.train)
        check_model_frames(model, new, args.new)
        descriptor = model.descriptor_
        zeta = model.zeta if args.zeta is None else args.zeta
    else:
        species = soap_flags.pop("species", None) or sorted(
            {s for atoms in train + new for s in atoms.get_chemical_symbols()}, key=atomic_number)
        try:
            descriptor = SOAP(species, **soap_flags)
        except (TypeError, ValueError) as error:
            raise GapyError(f"invalid setting: {error}") from None
        zeta = 4 if args.zeta is None else args.zeta
    if args.center is not None:
        _check_center(args.center, descriptor, [(args.train, train), (args.new, new)], args.model)
    coverage = CoverageMap(descriptor, n_components=args.n_components, level=args.level, species=args.center,
                           zeta=zeta, max_reference=args.max_reference, random_state=args.seed, n_jobs=args.n_jobs)
    start = time.perf_counter()
    with about(args.train):
        coverage.fit(train)
    ratio = coverage.pca_.explained_variance_ratio_
    rows = "environments" if args.level == "atoms" else "structures"
    distance = coverage.train_distance_
    print(f"coverage map of {len(distance)} training {rows} from {args.train}; {descriptor}, zeta={zeta}; "
          + ", ".join(f"PC{i + 1} {100 * r:.1f} %" for i, r in enumerate(ratio)) + " of the variance")
    if len(coverage.reference_) < len(distance):
        print(f"PCA and distances use a random subsample of {len(coverage.reference_)} training {rows} "
              f"(--max-reference {args.max_reference})")
    finite = distance[np.isfinite(distance)]
    median = f"{np.median(finite):.4f}" if finite.size else "-"
    print(f"training nearest-neighbour kernel distance (leave one out): median {median}, "
          f"max {coverage.threshold_:.4f}")

    table = [("train", coverage.row_index_, coverage.row_species_, coverage.config_type_, coverage.embedding_,
              distance)]
    new_xy = new_distance = new_std = None
    if new:
        with about(args.new):
            new_xy, new_distance = coverage.transform(new, return_distance=True)
            index = coverage.row_index(new)
        numbers = np.array([new[k].numbers[i] if i >= 0 else 0 for k, i in index], dtype=np.int64)
        config = np.array([str(new[k].info.get("config_type", "(none)")) for k in index[:, 0]], dtype=str)
        table.append(("new", index, numbers, config, new_xy, new_distance))
        beyond = ~(new_distance <= coverage.threshold_)
        print(f"{len(new_distance)} new {rows} from {args.new}: kernel distance to the training set median "
              f"{np.median(new_distance):.4f}, max {np.max(new_distance):.4f}; {beyond.mean():.1%} "
              f"({beyond.sum()}) beyond the largest training nearest-neighbour distance {coverage.threshold_:.4f}")
        unseen = ~np.isfinite(new_distance)
        if unseen.any():
            species = sorted({int(z) for z in numbers[unseen] if z > 0})
            print(f"  {unseen.sum()} of them ({unseen.mean():.1%}) have no training {rows} to compare with (distance "
                  "inf)" + (f": species {', '.join(chemical_symbols[z] for z in species)} not in {args.train}"
                            if species else ""))
        for row in np.argsort(-new_distance, kind="stable")[:min(5, int(beyond.sum()))]:
            k, i = index[row]
            where = f"structure {k}" + (f" atom {i} ({chemical_symbols[numbers[row]]})" if i >= 0 else "")
            print(f"  {where}, config_type={config[row]}: {new_distance[row]:.4f}")
        if args.model:
            with about(args.new):
                new_std = local_energy_std(model, new, index)
            correlation = spearmanr(new_distance, new_std).correlation
            print(f"model's local-energy std of the new {rows}: median {np.median(new_std):.4g}, max "
                  f"{new_std.max():.4g} eV/atom; rank correlation with the distance {correlation:.2f}")
    print(f"done in {time.perf_counter() - start:.1f} s")

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = output / "coverage.csv", output / "coverage.png"
    write_coverage_csv(csv_path, coverage.n_components, table, new_std)
    written = [csv_path]
    if coverage.n_components >= 2:
        title = Path(args.train).name + (f" and {Path(args.new).name}" if new else "")
        if args.color == "std":
            values, label = new_std, "model's local-energy std (eV/atom)"
        else:
            values, label = new_distance, f"kernel distance to the training set (zeta={zeta})"
        coverage_plot(coverage.embedding_, png_path, config_type=coverage.config_type_, new=new_xy,
                      values=values, value_label=label, explained_variance_ratio=ratio, title=title)
        written.append(png_path)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def add_parser(commands, common: argparse.ArgumentParser) -> None:
    """Register ``gapy coverage``."""
    coverage = commands.add_parser(
        "coverage", parents=[common], help="map how new structures sit in the training set (PCA, distances)",
        description="PCA map of the SOAP vectors of the training environments (or structures) and the "
                    "kernel distance sqrt(2 - 2 (q.x)^zeta) of each environment to its nearest training "
                    "environment of the same species. Writes coverage.csv (PCA coordinates and distances; "
                    "for training rows the leave-one-out distance) and coverage.png (with two or more "
                    "components), and prints the fraction of new environments farther than the largest "
                    "training nearest-neighbour distance.",
    )
    coverage.add_argument("train", metavar="TRAIN.xyz", help="training structures")
    coverage.add_argument("new", metavar="NEW.xyz", nargs="?", help="structures to place on the map (e.g. from MD)")
    coverage.add_argument("-o", "--output", default="coverage-map", metavar="DIR",
                          help="output directory (default: coverage-map; a directory named 'coverage' would "
                               "hide the coverage package from Python run there)")
    coverage.add_argument("--model", metavar="MODEL", help="take the descriptor and zeta from a model file "
                          "written by 'gapy fit' (instead of the SOAP options)")
    coverage.add_argument("--species", type=species_list, metavar="SYMBOLS", help="SOAP species, e.g. Si,Ge "
                          "(default: those in the data)")
    coverage.add_argument("--r-cut", type=number, metavar="A", help="SOAP cutoff radius in Angstrom "
                          f"(default: {SOAP_DEFAULTS['r_cut']})")
    coverage.add_argument("--n-max", type=integer, metavar="N", help="SOAP radial basis functions "
                          f"(default: {SOAP_DEFAULTS['n_max']})")
    coverage.add_argument("--l-max", type=integer, metavar="L", help="largest SOAP angular momentum "
                          f"(default: {SOAP_DEFAULTS['l_max']})")
    coverage.add_argument("--atom-sigma", type=number, metavar="A", help="SOAP Gaussian width in Angstrom "
                          f"(default: {SOAP_DEFAULTS['atom_sigma']})")
    coverage.add_argument("--zeta", type=integer, metavar="Z", help="kernel exponent of the distance "
                          "(default: the model's, else 4)")
    coverage.add_argument("--level", type=choice(("atoms", "structures")), default="atoms", metavar="LEVEL",
                          help="map atomic environments or whole structures (mean SOAP vector): atoms, "
                          "structures (default: atoms)")
    coverage.add_argument("--center", metavar="SYMBOL", help="only environments centred on this species")
    coverage.add_argument("--n-components", type=integer, default=2, metavar="N",
                          help="principal components written to the CSV (default: 2)")
    coverage.add_argument("--max-reference", type=integer, default=20000, metavar="N",
                          help="cap on training rows per species for the PCA and distances; larger sets "
                          "are subsampled at random (default: 20000)")
    coverage.add_argument("--seed", type=integer, metavar="N", help="random seed of that subsample")
    coverage.add_argument("--n-jobs", type=integer, default=1, metavar="N", help="threads (default: 1)")
    coverage.add_argument("--color", type=choice(("distance", "std")), default="distance", metavar="BY",
                          help="colour the new points by their distance to the training set (default) or by "
                               "the model's local-energy std (needs --model)")
    coverage.set_defaults(run=run)
