"""What uncertainties cost on top of a plain energy + forces call, and their memory.

Fits a Si model (SOAP r_cut 5.4, n_max = l_max = 8, 1000 sparse points) on the bundled
data, then times ``predict_all`` for diamond Si cells with and without standard
deviations, interleaving the variants so that machine load hits them alike (best of
``--repeats``), and reports each as a ratio to the plain call in the same run. Peak
memory and time of one call on large cells are measured in a fresh subprocess per
variant (``ru_maxrss`` above the loaded model; goal: stds at most 2x the memory of the
plain call).

    python benchmarks/bench_uncertainty_cost.py [--sizes 64 512] [--memory-sizes 1000 10000 50000]
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
    "E+F + all stds (stress too)": dict(return_std=True, properties=("energy", "energies", "forces", "stress")),
}
PROPERTIES = ("energy", "energies", "forces")


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


def timings(model, sizes, repeats):
    rows = []
    for n in sizes:
        atoms = cell(n)
        best = {name: np.inf for name in VARIANTS}
        for name, kwargs in VARIANTS.items():  # warm-up (and the cached inverse factors)
            model.predict_all([atoms], **{"properties": PROPERTIES, **kwargs})
        for _ in range(repeats):
            for name, kwargs in VARIANTS.items():
                start = time.perf_counter()
                model.predict_all([atoms], **{"properties": PROPERTIES, **kwargs})
                best[name] = min(best[name], time.perf_counter() - start)
        for name in VARIANTS:
            rows.append((len(atoms), name, 1e3 * best[name] / len(atoms), best[name] / best["E+F"]))
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
from bench_uncertainty_cost import VARIANTS, PROPERTIES, cell

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 2**20

model = gapy.load({str(path)!r}); atoms = cell({n_atoms})
model.predict_all([cell(8)], properties=PROPERTIES + ("stress",), return_std=True)
ctypes.CDLL("libc.so.6").malloc_trim(0)
base = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
start = time.perf_counter()
model.predict_all([atoms], **{{"properties": PROPERTIES, **VARIANTS[{variant!r}]}})
seconds = time.perf_counter() - start
print(json.dumps([status("VmHWM:") - base, seconds]))
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = model_file(Path(directory))
        model = gapy.load(path)
        print("| atoms | call | ms/atom | ratio to E+F |\n|---|---|---|---|")
        for n, name, per_atom, ratio in timings(model, args.sizes, args.repeats):
            print(f"| {n} | {name} | {per_atom:.3f} | {ratio:.2f} |")
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
