#!/usr/bin/env python
"""Does the recommendation generalise? ``gapy.recommend`` on EMT metals the project does not tune on.

The mlearn data (Si, Mo) are what the recommended settings were measured on. This
benchmark makes data sets of the same kinds for other elements with ASE's EMT (fcc
metals: no install, noise-free labels) and compares variants of the recommendation on
them, each followed by ``maximize_evidence`` like ``gapy fit``:

- ``recommended``: ``recommend(train)`` as it is (radially scaled SOAP + 2-body);
- ``unscaled``: the same with ``descriptor__scaling_radius=None`` (plain SOAP + 2-body);
- ``no-two-body``: the same without the 2-body term (``two_body=None``).

The data follow mlearn's recipe (Zuo et al. 2020) on a 2x2x2 conventional fcc cell (32
atoms): ``AIMD-NVT`` snapshots of Langevin MD at 300, 0.5 T_hot and T_hot K (T_hot
1500 K); ``Elastic`` cells under random strains up to 5 %; ``Vacancy`` cells (31 atoms) at
300 and 900 K; ``Surface``: one slab per Miller index (12 indices, 6 layers, rattled), so
that test surfaces have orientations the training set does not. A seeded split puts
15 % of each kind in the test set (at least 2 surfaces). Two symbols (``--elements CuAu``)
make random fcc alloys instead: 25, 50 and 75 % of the second element (Vegard's law for
the lattice constant), a third of the crystal structures each, slabs half swapped.

Prints one markdown row per element, variant and seed (test RMSE of energy in meV/atom,
overall and on the surfaces, and of forces in eV/A), then the mean over seeds per element
and the ratio of the variants.

Usage (from the project root)::

    python benchmarks/bench_recommend_emt.py --elements Cu Al --seeds 1 2    # ~20 min on 2 cores
    python benchmarks/bench_recommend_emt.py --elements CuAu NiPt --variants recommended no-two-body
"""

import argparse
import time
import warnings

import numpy as np
from ase import Atoms
from ase.build import bulk, surface
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, reference_states
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.units import fs

from gapy.recommend import recommend
from gapy.sampling import label_structures

MILLER = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 0), (2, 1, 1), (2, 2, 1), (3, 1, 0), (3, 1, 1), (3, 2, 0),
          (3, 2, 1), (3, 3, 1), (3, 3, 2)]
VARIANTS = {"recommended": {}, "unscaled": {"descriptor__scaling_radius": None}, "no-two-body": {"two_body": None}}


def md_snapshots(atoms: Atoms, temperature: float, count: int, rng: np.random.Generator, config_type: str):
    """``count`` snapshots, 40 steps (80 fs) apart after 200 steps, of Langevin MD with EMT, labelled."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(atoms, 2 * fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
    dynamics.run(200)
    frames = []
    for _ in range(count):
        dynamics.run(40)
        frames.append(atoms.copy())
    return label_structures(frames, EMT(), config_type)


def alloyed(atoms: Atoms, other: str, fraction: float, rng: np.random.Generator) -> Atoms:
    """``atoms`` with a random ``fraction`` of its sites taken by ``other``."""
    atoms = atoms.copy()
    numbers = atoms.numbers.copy()
    numbers[rng.choice(len(atoms), round(fraction * len(atoms)), replace=False)] = atomic_numbers[other]
    atoms.numbers = numbers
    return atoms


def emt_data(element: str, seed: int = 0, t_hot: float = 1500.0):
    """Training and test structures of ``element`` in mlearn's kinds, labelled by EMT.

    ``element`` is one symbol, or two (``"CuAu"``): then random fcc alloys with 25, 50 and
    75 % of the second (lattice constant by Vegard's law), a third of the crystal
    structures each, and surfaces with half their sites swapped.
    """
    rng = np.random.default_rng(seed)
    symbols = Atoms(element).get_chemical_symbols()
    if len(symbols) == 1:
        cells = [bulk(element, "fcc", cubic=True) * (2, 2, 2)]
    else:
        first, second = (reference_states[atomic_numbers[symbol]]["a"] for symbol in symbols)
        cells = [alloyed(bulk(symbols[0], "fcc", a=first + x * (second - first), cubic=True) * (2, 2, 2),
                         symbols[1], x, rng) for x in (0.25, 0.5, 0.75)]
    share = len(cells)
    kinds = {"AIMD-NVT": [], "Elastic": [], "Vacancy": [], "Surface": []}
    for cell in cells:
        for temperature in (300.0, 0.5 * t_hot, t_hot):
            kinds["AIMD-NVT"] += md_snapshots(cell, temperature, 30 // share, rng, "AIMD-NVT")
    for k in range(40):
        cell = cells[k % share]
        strain = rng.uniform(-0.05, 0.05, (3, 3))
        strained = cell.copy()
        strained.set_cell(cell.cell @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        strained.rattle(0.01, seed=int(rng.integers(2**31)))
        kinds["Elastic"].append(strained)
    kinds["Elastic"] = label_structures(kinds["Elastic"], EMT(), "Elastic")
    for cell in cells:
        vacancy = cell.copy()
        del vacancy[0]
        for temperature in (300.0, 900.0):
            kinds["Vacancy"] += md_snapshots(vacancy, temperature, 12 // share, rng, "Vacancy")
    primitive = bulk(symbols[0], "fcc", a=None if share == 1 else np.mean([c.cell[0, 0] / 2 for c in cells]))
    for miller in MILLER:
        slab = surface(primitive, miller, layers=6, vacuum=8.0, periodic=True)
        while len(slab) < 12:
            slab = slab * (2, 1, 1) if slab.cell.lengths()[0] <= slab.cell.lengths()[1] else slab * (1, 2, 1)
        if share > 1:
            slab = alloyed(slab, symbols[1], 0.5, rng)
        slab.rattle(0.03, seed=int(rng.integers(2**31)))
        kinds["Surface"].append(slab)
    kinds["Surface"] = label_structures(kinds["Surface"], EMT(), "Surface")
    train, test = [], []
    for frames in kinds.values():
        order = rng.permutation(len(frames))
        n_test = max(2, round(0.15 * len(frames)))
        test += [frames[k] for k in order[:n_test]]
        train += [frames[k] for k in order[n_test:]]
    return train, test


def test_errors(model, test) -> dict:
    results = model.predict_all(test)
    e_err = np.array([1e3 * (r["energy"] - a.get_potential_energy()) / len(a) for a, r in zip(test, results)])
    f_err = np.concatenate([(r["forces"] - a.get_forces()).ravel() for a, r in zip(test, results)])
    surface_mask = np.array([a.info["config_type"] == "Surface" for a in test])
    return {"e_rmse": float(np.sqrt(np.mean(e_err**2))),
            "e_surface": float(np.sqrt(np.mean(e_err[surface_mask] ** 2))),
            "f_rmse": float(np.sqrt(np.mean(f_err**2)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", nargs="+", default=["Cu", "Al", "Ni", "Pt"],
                        help="fcc metals of EMT; two symbols (CuAu) for a random alloy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="CUR seeds of the fits")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| element | variant | seed | E RMSE (meV/atom) | E RMSE surfaces | F RMSE (eV/A) | fit s | "
          "r_cut | scaling_radius |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for element in args.elements:
        train, test = emt_data(element)
        for variant in args.variants:
            for seed in args.seeds:
                start = time.perf_counter()
                recommendation = recommend(train, random_state=seed, overrides=VARIANTS[variant] or None)
                model = recommendation.model.set_params(n_jobs=args.n_jobs).maximize_evidence(
                    train, **recommendation.evidence_options)
                seconds = time.perf_counter() - start
                row = test_errors(model, test)
                summary.setdefault((element, variant), []).append(row)
                soap = model.descriptor
                print(f"| {element} | {variant} | {seed} | {row['e_rmse']:.2f} | {row['e_surface']:.2f} "
                      f"| {row['f_rmse']:.4f} | {seconds:.0f} | {soap.r_cut} | {soap.scaling_radius} |", flush=True)
    print()
    print("| element | variant | E RMSE mean ± std | E RMSE surfaces | F RMSE mean ± std |")
    print("|---|---|---|---|---|")
    for (element, variant), rows in summary.items():
        values = {key: np.array([r[key] for r in rows]) for key in rows[0]}
        print(f"| {element} | {variant} | {values['e_rmse'].mean():.2f} ± {values['e_rmse'].std():.2f} "
              f"| {values['e_surface'].mean():.2f} | {values['f_rmse'].mean():.4f} ± {values['f_rmse'].std():.4f} |")
    has_reference = "recommended" in args.variants
    others = [variant for variant in args.variants if variant != "recommended"] if has_reference else []
    for other in others:
        for key, label in (("e_rmse", "energy"), ("f_rmse", "forces")):
            ratios = [np.mean([r[key] for r in summary[(el, "recommended")]])
                      / np.mean([r[key] for r in summary[(el, other)]]) for el in args.elements]
            print(f"recommended/{other} {label}: " + ", ".join(f"{el} {r:.2f}" for el, r in zip(args.elements, ratios)))


if __name__ == "__main__":
    main()
