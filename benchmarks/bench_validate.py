#!/usr/bin/env python
"""``gapy.validate`` on a Cu GAP fitted to EMT data: accuracy against EMT and wall time.

The model and its training data are those of ``examples/validate_cu.py`` (MD at 300,
800 and 1300 K, strained cells, a vacancy, (100) and (111) slabs; the (110) facet is not
trained). Reported, per training-data seed: the model's error against EMT for each
target of issue 11 (lattice constant 0.5 %, bulk modulus 5 %, C11/C12/C44 10 %, vacancy
formation energy 0.05 eV, phonon frequencies at X 5 %), whether surface_energy_110 is
flagged and 100/111 are not, and the wall time of the full suite: model only
(``reference=None``) and model + EMT, each in a fresh context after a warm-up (numba
compilation excluded, as for every later run).

    python benchmarks/bench_validate.py [--seeds 2]
"""

import argparse
import sys
import time
from pathlib import Path

from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from validate_cu import check_targets, fit_model, print_targets, training_data  # noqa: E402

from gapy import validate  # noqa: E402

CU = bulk("Cu", "fcc", a=3.6)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="training-data seeds (default 1)")
    args = parser.parse_args()
    for seed in range(args.seeds):
        start = time.perf_counter()
        frames = training_data(seed=seed)
        generated = time.perf_counter() - start
        start = time.perf_counter()
        model = fit_model(frames)
        fitted = time.perf_counter() - start
        print(f"\nseed {seed}: {len(frames)} EMT structures ({sum(len(a) for a in frames)} atoms) in "
              f"{generated:.1f} s; fit {fitted:.1f} s")
        if seed == 0:  # warm-up: numba compilation of the descriptor kernels
            validate(model, CU, None, ["eos"], progress=False)
        start = time.perf_counter()
        alone = validate(model, CU, None, progress=False)
        model_only = time.perf_counter() - start
        start = time.perf_counter()
        report = validate(model, CU, "emt", progress=False)
        both = time.perf_counter() - start
        print(report.table())
        print_targets(check_targets(report))
        trained = [report[f"surface_energy_{m}"] for m in ("100", "111")]
        print(f"surface flags: 110 {report['surface_energy_110'].flagged} "
              f"(max local std {report['surface_energy_110'].max_local_std:.3g} eV); "
              + ", ".join(f"{r.name[-3:]} {r.flagged} ({r.max_local_std:.3g} eV)" for r in trained)
              + f"; NEB {report['vacancy_migration_barrier'].flagged} "
                f"({report['vacancy_migration_barrier'].max_local_std:.3g} eV)")
        failed = [r.name for r in alone.results.values() if r.error]
        print(f"wall time of the full suite (2 cores): model only {model_only:.1f} s, model + EMT {both:.1f} s"
              + (f"; failed: {failed}" if failed else ""))
        print("per step (model + EMT): " + ", ".join(f"{k} {v:.1f} s" for k, v in report.info["timings_s"].items()))


if __name__ == "__main__":
    main()
