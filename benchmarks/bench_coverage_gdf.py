"""What GDF weights do on Si data, and whether they change the test errors.

For the bundled Si subset (``gapy.datasets.load_si``) or the full mlearn Si set, this
script computes Gaussian density function weights (``gapy.coverage.gdf_weights``) with
the published SOAP settings, reports which config_types they up- or down-weight, fits a
GAP with and without them (``sample_weight`` = per-structure mean of the atom weights,
or with ``--structure-sigmas`` weights from the density of structure fingerprints;
several sparse-point seeds) and prints the energy and force RMSE on the test split per
config_type. It also prints the coverage of the test set by the training set
(``gapy.coverage.CoverageMap``: fraction of test environments farther from the training
set than any training environment is from the rest).

    python benchmarks/bench_coverage_gdf.py --data bundled --seeds 0 1 2   # ~1-2 min on 2 cores
    python benchmarks/bench_coverage_gdf.py --data mlearn --seeds 0 1      # ~8 min on 2 cores
    python benchmarks/bench_coverage_gdf.py --data mlearn --sigmas --structure-sigmas 0.02 0.05
"""

import argparse
import time
from pathlib import Path

import numpy as np
from ase.io import read

from gapy import SOAP, GAPRegressor
from gapy.coverage import CoverageMap, density_weights, gaussian_density, gdf_weights, structure_weights
from gapy.datasets import load_si
from gapy.metrics import compare, config_type_of, error_table
from gapy.sampling import structure_fingerprints

MLEARN = (Path(__file__).resolve().parent / ".." / ".." / "shared" / "data" / "mlearn" / "Si").resolve()
SOAP_SETTINGS = dict(species=["Si"], r_cut=5.4, n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
GAP_SETTINGS = dict(zeta=4, delta=1.0, sparse_method="cur", sigma_energy=0.01, sigma_force=0.05,
                    e0={"Si": -0.79})


def load(data: str):
    if data == "bundled":
        return load_si("train"), load_si("test"), 500
    return read(MLEARN / "train.xyz", ":"), read(MLEARN / "test.xyz", ":"), 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("bundled", "mlearn"), default="bundled")
    parser.add_argument("--sigmas", type=float, nargs="*", default=[0.02, 0.05, 0.1],
                        help="GDF widths of the atom-level weights (averaged per structure)")
    parser.add_argument("--structure-sigmas", type=float, nargs="*", default=[],
                        help="GDF widths of weights from the density of structure fingerprints")
    parser.add_argument("--force-sigmas", type=float, nargs="*", default=[],
                        help="GDF widths of per-atom force weights (atoms.arrays['force_weights'], "
                             "as Jeong et al.; energies unweighted)")
    parser.add_argument("--power", type=float, default=1.0, help="exponent of 1/rho (1: Jeong et al.)")
    parser.add_argument("--max-weight", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()

    train, test, n_sparse = load(args.data)
    soap = SOAP(**SOAP_SETTINGS)
    config = np.array([config_type_of(a) for a in train])
    groups = sorted(set(config))
    print(f"{args.data}: {len(train)} training structures ({sum(map(len, train))} atoms), "
          f"{len(test)} test structures ({sum(map(len, test))} atoms); {soap}")

    start = time.perf_counter()
    coverage = CoverageMap(soap, n_jobs=args.n_jobs).fit(train)
    distance = coverage.distance(test)
    test_config = np.array([config_type_of(test[k]) for k in coverage.row_index(test)[:, 0]])
    print(f"\ncoverage ({time.perf_counter() - start:.1f} s): PC1+PC2 explain "
          f"{100 * coverage.pca_.explained_variance_ratio_.sum():.1f} % of the variance; training "
          f"leave-one-out nearest-neighbour kernel distance median {np.median(coverage.train_distance_):.4f}, "
          f"max {coverage.threshold_:.4f}")
    for group in sorted(set(test_config)):
        d = distance[test_config == group]
        print(f"  test {group:10s} median distance {np.median(d):.4f}, max {d.max():.4f}, "
              f"beyond the training max {np.mean(d > coverage.threshold_):.1%}")

    weights = {}
    for sigma in args.sigmas:
        start = time.perf_counter()
        atom_w = gdf_weights(train, soap, sigma=sigma, power=args.power, max_weight=args.max_weight,
                             n_jobs=args.n_jobs)
        w = structure_weights(atom_w)
        weights[sigma] = w
        flat = np.concatenate(atom_w)
        print(f"\nGDF sigma={sigma}, power={args.power} ({time.perf_counter() - start:.1f} s): atom weights "
              f"{flat.min():.3g}..{flat.max():.3g}, clipped at {args.max_weight}; structure weights "
              f"{w.min():.3g}..{w.max():.3g}")
        for group in groups:
            mask = config == group
            group_atoms = np.concatenate([a for a, m in zip(atom_w, mask) if m])
            print(f"  {group:10s} {mask.sum():4d} structures: mean structure weight {w[mask].mean():.3f}, "
                  f"share of the total weight {w[mask].sum() / w.sum():.1%} (unweighted "
                  f"{mask.mean():.1%}); atom weights median {np.median(group_atoms):.3g}")

    fits = [("unweighted", None)] + [(f"GDF sigma={s}", w) for s, w in weights.items()]
    if args.structure_sigmas:
        fingerprints = structure_fingerprints(soap, train, n_jobs=args.n_jobs)
        for sigma in args.structure_sigmas:
            w = density_weights(gaussian_density(fingerprints, np.zeros(len(train), int), sigma),
                                power=args.power, max_weight=args.max_weight)
            fits.append((f"struct. GDF {sigma}", w))
            print(f"\nstructure-level GDF sigma={sigma}: structure weights {w.min():.3g}..{w.max():.3g}; "
                  + ", ".join(f"{g} {w[config == g].mean():.3f}" for g in groups))

    fits = [(label, train, w) for label, w in fits]
    for sigma in args.force_sigmas:
        atom_w = gdf_weights(train, soap, sigma=sigma, power=args.power, max_weight=args.max_weight,
                             n_jobs=args.n_jobs)
        weighted = []
        for atoms, w in zip(train, atom_w):
            copy = atoms.copy()
            copy.calc = atoms.calc
            copy.arrays["force_weights"] = w
            weighted.append(copy)
        fits.append((f"atom F GDF {sigma}", weighted, None))

    results = {}
    for label, frames, sample_weight in fits:
        for seed in args.seeds:
            model = GAPRegressor(SOAP(**SOAP_SETTINGS), n_sparse=n_sparse, random_state=seed,
                                 n_jobs=args.n_jobs, **GAP_SETTINGS)
            start = time.perf_counter()
            model.fit(frames, sample_weight=sample_weight)
            rows = error_table(compare(test, model.predict_all(test)))
            results.setdefault(label, []).append(rows)
            print(f"{label}, seed {seed}: fitted and predicted in {time.perf_counter() - start:.0f} s", flush=True)

    print(f"\ntest RMSE (mean over seeds {args.seeds}); energy meV/atom, forces eV/A")
    test_groups = ["all"] + sorted(set(config_type_of(a) for a in test))
    header = f"{'fit':18s} " + " ".join(f"{q[0].upper()} {g:>10s}" for q in ("energy", "forces") for g in test_groups)
    print(header)
    for label, runs in results.items():
        cells = []
        for quantity in ("energy", "forces"):
            for group in test_groups:
                values = [r["rmse"] for rows in runs for r in rows
                          if r["quantity"] == quantity and r["config_type"] == group]
                cells.append(f"{np.mean(values):12.4g}")
        print(f"{label:18s} " + " ".join(cells))
    print("\nper seed, all test structures: energy meV/atom / forces eV/A")
    for label, runs in results.items():
        cells = []
        for rows in runs:
            energy, forces = (next(r["rmse"] for r in rows if r["quantity"] == q and r["config_type"] == "all")
                              for q in ("energy", "forces"))
            cells.append(f"{energy:.3f} / {forces:.4f}")
        print(f"{label:18s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
