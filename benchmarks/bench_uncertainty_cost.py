"""What uncertainties cost on top of a plain energy + forces call, and their memory.

Fits a Si model (SOAP r_cut 5.4, n_max = l_max = 8, 1000 sparse points) on the bundled
data, then times ``predict_all`` for diamond Si cells with and without standard
deviations, interleaving the variants so that machine load hits them alike (best of
``--repeats``), and reports each as a ratio to the plain call in the same run (goal:
force stds at most 3x). The "mixed precision" variant sets
``model.force_std_precision = "mixed"``; its relative error against the float64
force stds is measured on rattled, strained, compressed, liquid-like and vacancy cells.
On a loaded machine, ``--clock cpu`` with ``OPENBLAS_NUM_THREADS=1`` times the process's
CPU time on one thread, which other jobs disturb much less than the wall clock.
Peak memory and time of one call on large cells are measured in a fresh subprocess per
variant (``ru_maxrss`` above the loaded model; goal: stds at most 2x the memory of the
plain call).

    python benchmarks/bench_uncertainty_cost.py [--sizes 64 512] [--memory-sizes 1000 10000 50000]
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_uncertainty_cost.py --clock cpu --memory-sizes
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk

import gapy
from gapy import GAPRegressor, SOAP
from gapy.datasets import load_si

VARIANTS = {
    "E+F": dict(),
    "E+F + local-energy stds": dict(return_std=("energies",)),
    "E+F + energy stds": dict(return_std=("energy", "energies")),
    "E+F + force stds": dict(return_std=("energy", "energies", "forces")),
    "E+F + force stds, mixed precision": dict(return_std=("energy", "energies", "forces")),
    "E+F + all stds (stress too)": dict(return_std=True, properties=("energy", "energies", "forces", "stress")),
}
PROPERTIES = ("energy", "energies", "forces")
#: ``GAPRegressor.force_std_precision`` of each variant ("double" when not named).
PRECISION = {"E+F + force stds, mixed precision": "mixed"}


def call(model, atoms, variant: str):
    """``predict_all`` of one variant (its keyword arguments and force-std precision)."""
    model.force_std_precision = PRECISION.get(variant, "double")
    return model.predict_all([atoms], **{"properties": PROPERTIES, **VARIANTS[variant]})


def cell(n_atoms: int):
    repeat = max(1, round((n_atoms / 8) ** (1 / 3)))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=0)
    return atoms


def model_file(directory: Path) -> Path:
    path = directory / "si1000.gapy"
    soap = SOAP(["Si"], r_cut=5.4, n_max=8, l_max=8, atom_sigma=0.5, cutoff_width=0.5)
    GAPRegressor(soap, n_sparse=1000, e0={"Si": -0.79}, random_state=0).fit(load_si("train")).save(path)
    return path


def timings(model, sizes, repeats, clock=time.perf_counter):
    rows = []
    for n in sizes:
        atoms = cell(n)
        best = {name: np.inf for name in VARIANTS}
        for name in VARIANTS:  # warm-up (and the cached inverse factors)
            call(model, atoms, name)
        for _ in range(repeats):
            for name in VARIANTS:
                start = clock()
                call(model, atoms, name)
                best[name] = min(best[name], clock() - start)
        for name in VARIANTS:
            rows.append((len(atoms), name, 1e3 * best[name] / len(atoms), best[name] / best["E+F"]))
    return rows


def test_structures():
    """Cells near and far from the training data, for the error of mixed precision."""
    out = {"rattled 0.05 A (64)": cell(64), "rattled 0.05 A (512)": cell(512)}
    atoms = cell(64)
    atoms.rattle(0.2, seed=1)
    out["rattled 0.2 A"] = atoms
    for name, scale in (("strained +4 %", 1.04), ("compressed -10 %", 0.9)):
        atoms = cell(64)
        atoms.set_cell(atoms.cell * scale, scale_atoms=True)
        out[name] = atoms
    atoms = cell(64)
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.5, atoms.positions.shape)
    out["liquid-like (0.5 A noise)"] = atoms
    atoms = cell(64)
    del atoms[0]
    out["vacancy"] = atoms
    return out


def mixed_precision_errors(model, kinds=("dtc", "sor", "local")):
    """Median force std (eV/A) and max and median relative error of mixed against double precision."""
    rows = []
    for kind in kinds:
        for name, atoms in test_structures().items():
            stds = {}
            for precision in ("double", "mixed"):
                model.force_std_precision = precision
                stds[precision] = model.predict_all([atoms], return_std=("forces",), variance=kind)[0]["forces_std"]
            error = np.abs(stds["mixed"] - stds["double"]) / stds["double"]
            rows.append((kind, name, np.median(stds["double"]), error.max(), np.median(error)))
    model.force_std_precision = "double"
    return rows


def peak_memory(path: Path, n_atoms: int, variant: str):
    """GiB above the loaded, warmed-up model and seconds of one call, in a fresh process.

    The baseline is the resident memory after a warm-up (numba compilation, cached
    factors) with freed heap memory given back (``malloc_trim``); the peak is the
    kernel's high-water mark, reset just before the call (``/proc/self/clear_refs``).
    """
    script = f"""
import ctypes, json, time, gapy
import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
from bench_uncertainty_cost import call, cell

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 2**20

model = gapy.load({str(path)!r}); atoms = cell({n_atoms})
model.predict_all([cell(8)], properties=("energy", "energies", "forces", "stress"), return_std=True)
call(model, cell(8), {variant!r})
ctypes.CDLL("libc.so.6").malloc_trim(0)
base = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
start = time.perf_counter()
call(model, atoms, {variant!r})
seconds = time.perf_counter() - start
print(json.dumps([status("VmHWM:") - base, seconds]))
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[1000, 10000, 50000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-error", action="store_true", help="skip the error of mixed precision")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the calls by the wall clock or by the process's CPU time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = model_file(Path(directory))
        model = gapy.load(path)
        print("| atoms | call | ms/atom | ratio to E+F |\n|---|---|---|---|")
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        for n, name, per_atom, ratio in timings(model, args.sizes, args.repeats, clock):
            print(f"| {n} | {name} | {per_atom:.3f} | {ratio:.2f} |", flush=True)
        if not args.no_error:
            print("\n| variance | structure | median force std (eV/A) | max relative error | median relative error |"
                  "\n|---|---|---|---|---|")
            for kind, name, median_std, largest, median in mixed_precision_errors(model):
                print(f"| {kind} | {name} | {median_std:.4f} | {largest:.1e} | {median:.1e} |", flush=True)
        print("\n| atoms | call | peak memory above the model (GiB) | memory ratio to E+F | ms/atom |"
              "\n|---|---|---|---|---|")
        for n in args.memory_sizes:
            plain = None
            for name in VARIANTS:
                memory, seconds = peak_memory(path, n, name)
                plain = plain or memory
                print(f"| {len(cell(n))} | {name} | {memory:.2f} | {memory / plain:.2f} | "
                      f"{1e3 * seconds / len(cell(n)):.3f} |", flush=True)


if __name__ == "__main__":
    main()
