#!/usr/bin/env python
"""Active learning with Cu and EMT as the reference: exploration and label efficiency.

Part 1, exploration. Starting from crystal-only data (two rattled 32-atom fcc cells),
``active_learning`` grows the training set with three drivers at the same temperature
and the same number of labels, from the same starts (the crystal as it is, expanded by
10 % and by 30 %, ``--strains``: a periodic cell at fixed density cannot turn into
surfaces or clusters, one at 2.2 times the volume can cavitate): plain Langevin MD with
the model, metadynamics in SOAP space (``driver="metad"``) and uncertainty-biased
dynamics (``driver="uncertainty"``). The models have a ZBL repulsive core
(``GAPRegressor(baseline="zbl")``, ``--baseline``): without one a model fitted on the
crystal knows no repulsion below a bond length, and the biased dynamics push atoms
there (labels with forces of tens of eV/A, which ruin the fit).
Reported: how far from the crystal the labelled structures are (mean kernel distance of
their atoms' SOAP vectors to the perfect crystal's, 0 = crystal; liquid Cu is at about
0.6), and the force RMSE on a test set of other phases made with the reference: liquid
(32 atoms, 3000 K), (111) and (100) slabs (600 K) and Cu13/Cu38 clusters (600 K).

Part 2, label efficiency. A fixed pool of candidate snapshots from reference MD under
mixed conditions, as an exploration campaign produces them (three runs of the perfect
crystal at 300 K, one at 1400 K, one of a vacancy cell at 1000 K: most snapshots are
alike and easy). Starting from the same two rattled cells, each round fits the model,
measures the force RMSE on independent reference trajectories (600, 1000, 1400 K and a
vacancy cell at 1000 K) and labels ``--batch`` more candidates, chosen by the model's
uncertainty (``select_structures``: most uncertain, spread out) or at random from the
same pool, up to ``--max-labels``. Reported: the number of labels needed to reach each
of ``--targets`` eV/A, per seed. The last line is ``labels ratio
(uncertainty/random): X``, mean labels over seeds, at the first target.

    python benchmarks/bench_active_learning.py [--seeds 3] [--part all|exploration|efficiency]
        [--exploration-seeds 3] [--drivers md metad uncertainty] [--strains 0 0.1 0.3]
        [--baseline zbl|none]

EMT stands in for DFT; nothing here depends on it (any ASE calculator works).
"""

import argparse
import time

import numpy as np
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron, Octahedron
from sklearn.base import clone

from gapy import GAPRegressor, SOAP
from gapy.sampling import active_learning, errors_on, label_structures, run_md, select_structures, strained_copies
from gapy.sampling.loop import _refit

CELL = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # 32 atoms
SETTINGS = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=5, l_max=4), n_sparse=200, sigma_energy=0.001,
                        sigma_force=0.02, random_state=0)
METAD = {"height": 0.005, "width": 0.05, "stride": 5}
UNCERTAINTY = {"strength": 0.2}
DRIVER_OPTIONS = {"md": None, "metad": METAD, "uncertainty": UNCERTAINTY}


def reference_trajectory(atoms, temperature, steps, seed, skip=0, interval=25):
    snapshots = run_md(EMT(), atoms, steps, interval, temperature, timestep=2.0, random_state=seed)[0]
    return label_structures(snapshots[skip:], EMT(), config_type=f"{temperature:.0f} K")


def initial_training_set():
    rattled = []
    for seed in range(2):
        atoms = CELL.copy()
        atoms.rattle(0.03, seed=seed)
        rattled.append(atoms)
    return label_structures(rattled, EMT(), config_type="crystal")


def vacancy_cell():
    vacancy = CELL.copy()
    del vacancy[0]
    return vacancy


def force_rmse(model, frames):
    return errors_on(model, frames)[1]


# ------------------------------------------------------------------ part 1: exploration

def other_phases():
    """Liquid, surfaces and clusters made with the reference (none in the training data)."""
    phases = {
        "liquid": reference_trajectory(CELL, 3000.0, 600, seed=1, skip=4, interval=50),
        "surfaces": (reference_trajectory(fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0), 600.0, 200, seed=2,
                                          interval=50)
                     + reference_trajectory(fcc100("Cu", (2, 2, 4), a=3.61, vacuum=6.0), 600.0, 200, seed=3,
                                            interval=50)),
        "clusters": (reference_trajectory(Icosahedron("Cu", 2), 600.0, 200, seed=4, interval=50)
                     + reference_trajectory(Octahedron("Cu", 4, 1), 600.0, 200, seed=5, interval=50)),
    }
    for name, frames in phases.items():
        for atoms in frames:
            atoms.info["config_type"] = name
    return phases


def distance_from_crystal(descriptor, frames, zeta=4):
    """Mean over atoms of the kernel distance of their SOAP vectors to the perfect crystal's."""
    crystal = descriptor.compute(CELL)[0]
    return float(np.mean([np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (descriptor.compute(a) @ crystal) ** zeta)).mean()
                          for a in frames]))


def exploration(seeds, iterations, n_select, temperature, strains, drivers=("md", "metad", "uncertainty"),
                baseline="zbl", selection="diverse", refit="fit", md_steps=200):
    train = initial_training_set()
    starts = strained_copies([CELL], strains)
    phases = other_phases()
    test = [atoms for frames in phases.values() for atoms in frames]
    settings = clone(SETTINGS).set_params(baseline=baseline)
    crystal_model = _refit(settings, train, refit)  # as the loop fits its models
    print(f"## Exploration: crystal-only start ({len(train)} rattled fcc cells), {iterations} iterations x "
          f"{n_select} labels, MD at {temperature:.0f} K from the crystal under strains {strains} "
          f"({len(starts)} runs of {md_steps} steps per iteration, 20 snapshots each); model baseline {baseline}, "
          f"selection {selection}, "
          f"refit {refit}\n")
    print("test set of other phases (EMT): " + ", ".join(f"{k} {len(v)}" for k, v in phases.items())
          + "; distance from the crystal: " + ", ".join(
              f"{k} {distance_from_crystal(crystal_model.descriptor_, v):.2f}" for k, v in phases.items()))
    print("crystal-only model: force RMSE " + ", ".join(
        f"{k} {force_rmse(crystal_model, v):.3f}" for k, v in phases.items()) + " eV/A\n")
    print("| driver | seed | labels | labelled: distance from crystal | largest labelled force (eV/A) "
          "| force RMSE liquid | surfaces | clusters | all other phases (eV/A) | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary, per_phase = {}, {}
    for driver in drivers:
        options = DRIVER_OPTIONS[driver]
        for seed in range(seeds):
            start = time.perf_counter()
            result = active_learning(settings, train, EMT(), starts, n_iterations=iterations,
                                     n_select=n_select, md_steps=md_steps, md_interval=md_steps // 20,
                                     temperature=temperature,
                                     timestep=2.0, random_state=seed, driver=driver, driver_options=options,
                                     selection=selection, refit=refit)
            new = result.frames[len(train):]
            distance = distance_from_crystal(result.model.descriptor_, new)
            errors = {name: force_rmse(result.model, frames) for name, frames in phases.items()}
            overall = force_rmse(result.model, test)
            summary.setdefault(driver, []).append(overall)
            for name, value in errors.items():
                per_phase.setdefault((driver, name), []).append(value)
            largest = max(float(abs(atoms.get_forces()).max()) for atoms in new)
            print(f"| {driver} | {seed} | {len(new)} | {distance:.2f} | {largest:.1f} | {errors['liquid']:.3f} | "
                  f"{errors['surfaces']:.3f} | {errors['clusters']:.3f} | {overall:.3f} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)
    means = {driver: float(np.mean(values)) for driver, values in summary.items()}
    print("\nmean force RMSE on the other phases: " + ", ".join(
        f"{k} {v:.3f} (sd {np.std(summary[k], ddof=1) if seeds > 1 else 0.0:.3f})" for k, v in means.items())
          + " eV/A")
    for driver in drivers:
        if driver == "md" or "md" not in drivers:
            continue
        per_seed = np.array(summary["md"]) / np.array(summary[driver])
        print(f"force RMSE ratio (md/{driver}): {means['md'] / means[driver]:.2f} (ratio of the means); "
              f"per seed {' '.join(f'{r:.2f}' for r in per_seed)}, mean {per_seed.mean():.2f}, "
              f"range {per_seed.min():.2f}-{per_seed.max():.2f}")
        print(f"per phase, md/{driver}: " + ", ".join(
            f"{name} {np.mean(per_phase[('md', name)]) / np.mean(per_phase[(driver, name)]):.2f}"
            for name in phases))
    print()


# ------------------------------------------------------------- part 2: label efficiency

def candidate_pool(seed):
    """Reference MD under mixed conditions: 60 % of the snapshots are of the crystal at 300 K."""
    runs = [(CELL, 300.0), (CELL, 300.0), (CELL, 300.0), (CELL, 1400.0), (vacancy_cell(), 1000.0)]
    pool = []
    for k, (start, temperature) in enumerate(runs):
        snapshots = run_md(EMT(), start, 250, 10, temperature, timestep=2.0, random_state=1000 * seed + k)[0]
        pool += snapshots[1:]
    return pool


def learning_curve(strategy, train, pool, test, batch, max_labels, seed):
    """Force RMSE on ``test`` after 0, batch, 2 batch, ... labels from ``pool``."""
    rng = np.random.default_rng(seed)
    remaining = list(range(len(pool)))
    labelled, curve = [], []
    while True:
        model = clone(SETTINGS).fit(train + labelled)
        curve.append((len(labelled), force_rmse(model, test)))
        if len(labelled) >= max_labels:
            return curve
        if strategy == "random":
            picks = rng.choice(len(remaining), batch, replace=False)
        else:
            picks = select_structures(model, [pool[k] for k in remaining], batch).indices
        chosen = [remaining[k] for k in picks]
        remaining = [k for k in remaining if k not in chosen]
        labelled += label_structures([pool[k] for k in chosen], EMT())


def labels_to(target, curve):
    """The first number of labels whose model reaches ``target`` (None: not on this curve)."""
    return next((n for n, rmse in curve if rmse <= target), None)


def efficiency(seeds, targets, batch, max_labels):
    """Labels to each target, uncertainty vs random; returns the ratio at the first target."""
    train = initial_training_set()
    test = []
    for temperature in (600.0, 1000.0, 1400.0):
        test += reference_trajectory(CELL, temperature, 500, seed=100 + int(temperature))
    test += reference_trajectory(vacancy_cell(), 1000.0, 500, seed=7)
    print(f"## Label efficiency: labels to reach a force RMSE target on {len(test)} independent EMT frames "
          f"(600/1000/1400 K, vacancy at 1000 K); batches of {batch}, up to {max_labels} labels\n")
    print("| strategy | seed | pool | " + " | ".join(f"labels to {t}" for t in targets)
          + " | force RMSE after 0, 4, 8, ... labels (eV/A) |")
    print("|---|---|---|" + "---|" * len(targets) + "---|")
    needed = {strategy: {t: [] for t in targets} for strategy in ("uncertainty", "random")}
    for seed in range(seeds):
        pool = candidate_pool(seed)
        for strategy in needed:
            curve = learning_curve(strategy, train, pool, test, batch, max_labels, seed)
            cells = []
            for target in targets:
                count = labels_to(target, curve)
                needed[strategy][target].append(max_labels + batch if count is None else count)
                cells.append(str(count) if count is not None else f"> {max_labels}")
            shown = " ".join(f"{rmse:.3f}" for n, rmse in curve if n % 4 == 0)
            print(f"| {strategy} | {seed} | {len(pool)} | {' | '.join(cells)} | {shown} |", flush=True)
    ratios = []
    for target in targets:
        means = {strategy: float(np.mean(needed[strategy][target])) for strategy in needed}
        censored = any(n > max_labels for strategy in needed for n in needed[strategy][target])
        ratios.append(means["uncertainty"] / means["random"])
        print(f"target {target} eV/A: mean labels uncertainty {means['uncertainty']:.1f}, random "
              f"{means['random']:.1f}, ratio {ratios[-1]:.2f}"
              + (f" (runs that never reached it counted as {max_labels + batch}: a bound, not a value)"
                 if censored else ""))
    return ratios[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "exploration", "efficiency"), default="all")
    parser.add_argument("--seeds", type=int, default=3, help="efficiency: seeds")
    parser.add_argument("--exploration-seeds", type=int, default=3, help="exploration: seeds (slower)")
    parser.add_argument("--iterations", type=int, default=5, help="exploration: iterations of the loop")
    parser.add_argument("--n-select", type=int, default=4, help="exploration: labels per iteration")
    parser.add_argument("--temperature", type=float, default=600.0, help="exploration: MD temperature (K)")
    parser.add_argument("--strains", type=float, nargs="+", default=[0.0, 0.1, 0.3],
                        help="exploration: isotropic strains of the crystal the MD starts from (0.3: 2.2x the "
                             "volume, room for the cell to cavitate into surfaces and clusters)")
    parser.add_argument("--drivers", nargs="+", choices=tuple(DRIVER_OPTIONS), default=list(DRIVER_OPTIONS),
                        help="exploration: drivers to compare (md first: the baseline of the ratios)")
    parser.add_argument("--selection", choices=("diverse", "per_run"), default="diverse",
                        help="exploration: choice of the labels among the snapshots of all runs")
    parser.add_argument("--baseline", choices=("zbl", "none"), default="zbl",
                        help="exploration: the model's repulsive core (GAPRegressor(baseline=...)); 'none' as before")
    parser.add_argument("--refit", choices=("fit", "evidence", "recommend"), default="fit",
                        help="exploration: each refit of the loop with the given settings, its deltas and sigmas "
                             "by the evidence, or every setting by gapy.recommend (then the evidence)")
    parser.add_argument("--md-steps", type=int, default=200,
                        help="exploration: steps of 2 fs per MD run (a snapshot every md_steps / 20)")
    parser.add_argument("--metad-height", type=float, default=METAD["height"], help="exploration: eV per atom")
    parser.add_argument("--metad-width", type=float, default=METAD["width"],
                        help="exploration: width in descriptor distance")
    parser.add_argument("--metad-stride", type=int, default=METAD["stride"], help="exploration: steps per deposit")
    parser.add_argument("--metad-bias-temperature", type=float, default=None,
                        help="exploration: well-tempered metadynamics with this bias temperature (K)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.03, 0.035, 0.027],
                        help="efficiency: force RMSE targets (eV/A); the last line is the ratio at the first")
    parser.add_argument("--batch", type=int, default=2, help="efficiency: labels per round")
    parser.add_argument("--max-labels", type=int, default=40, help="efficiency: label budget")
    args = parser.parse_args()
    start = time.perf_counter()
    ratio = None
    METAD.update(height=args.metad_height, width=args.metad_width, stride=args.metad_stride)
    if args.metad_bias_temperature is not None:
        METAD["bias_temperature"] = args.metad_bias_temperature
    if args.part in ("all", "exploration"):
        exploration(args.exploration_seeds, args.iterations, args.n_select, args.temperature, args.strains,
                    args.drivers, None if args.baseline == "none" else args.baseline, args.selection, args.refit,
                    args.md_steps)
    if args.part in ("all", "efficiency"):
        ratio = efficiency(args.seeds, args.targets, args.batch, args.max_labels)
    print(f"total time {time.perf_counter() - start:.0f} s")
    if ratio is not None:  # the last line
        print(f"labels ratio (uncertainty/random): {ratio:.2f}")


if __name__ == "__main__":
    main()
