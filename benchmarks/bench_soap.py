#!/usr/bin/env python
"""Benchmark SOAP throughput (atoms/s) of gapy against featomic, dscribe and QUIP.

Three tasks are timed on the mlearn Si training set:

* ``values``   -- descriptor values only,
* ``+pos``     -- values + gradients w.r.t. atomic positions,
* ``+strain``  -- values + position + strain gradients.

Every code/thread-count combination runs in its own fresh subprocess, so thread
pools (rayon, OpenMP, numba) are configured from the environment before import
and one code cannot warm caches for another.  Codes that fail to import are
reported as ``skipped: <reason>``.

Usage (from the project root)::

    python benchmarks/bench_soap.py            # full data set (~7 min on 2 cores)
    python benchmarks/bench_soap.py --quick    # first 20 frames
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
DEFAULT_DATA = (PROJECT_ROOT / "../shared/data/mlearn/Si/train.xyz").resolve()

# common SOAP settings
R_CUT = 5.4
N_MAX = 8
L_MAX = 8
ATOM_SIGMA = 0.5
CUTOFF_WIDTH = 0.5

TASKS = ("values", "positions", "strain")
TASK_TITLES = {
    "values": "values",
    "positions": "values + d/dpos",
    "strain": "values + d/dpos + d/dstrain",
}

QUIP_DESCRIPTOR = (
    f"soap cutoff={R_CUT} cutoff_transition_width={CUTOFF_WIDTH} l_max={L_MAX} "
    f"n_max={N_MAX} atom_sigma={ATOM_SIGMA} n_species=1 species_Z={{14}}"
)

RESULT_TAG = "BENCH_RESULT "
DEFAULT_PARALLEL_CHUNK = 64  # frames per compute call for multi-thread runs (amortises
# joblib's ~10-20 ms per Parallel call and the idle tail of each call)


# --------------------------------------------------------------------------- #
# Runners: one small adapter per code.                                        #
# --------------------------------------------------------------------------- #


class Runner:
    """Adapter giving every code the same interface.

    ``compute(frames, task)`` runs the code on a list of frames and returns
    whatever it produces; ``deriv_nbytes(result, task)`` gives the size of the
    derivative arrays (incl. index arrays) in that result.
    """

    name = "?"
    distribution = None  # package name, for the version report
    n_features = None
    notes = {}  # task -> free-text note printed under the table
    max_frames = {}  # task -> frame limit for that task (None = all)

    def supports(self, task):
        return True

    def compute(self, frames, task):
        raise NotImplementedError

    def deriv_nbytes(self, result, task):
        return 0


class GapyRunner(Runner):
    """gapy.SOAP via ``compute_many(..., n_jobs=n)``."""

    distribution = "gapy"

    def __init__(self, n_jobs):
        import gapy

        self.name = f"gapy ({n_jobs} core{'s' if n_jobs > 1 else ''})"
        self.n_jobs = n_jobs
        self.soap = gapy.SOAP(
            species=["Si"],
            r_cut=R_CUT,
            n_max=N_MAX,
            l_max=L_MAX,
            atom_sigma=ATOM_SIGMA,
            cutoff_width=CUTOFF_WIDTH,
        )

    _GRADIENTS = {"values": False, "positions": "positions", "strain": True}

    def compute(self, frames, task):
        results = self.soap.compute_many(
            frames, gradients=self._GRADIENTS[task], n_jobs=self.n_jobs
        )
        if self.n_features is None:
            first = results[0] if task == "values" else results[0][0]
            self.n_features = int(first.shape[1])
        return results

    def deriv_nbytes(self, result, task):
        if task == "values":
            return 0
        total = 0
        for _, grad in result:
            total += grad.centers.nbytes + grad.neighbors.nbytes + grad.dpos.nbytes
            if grad.dstrain is not None:
                total += grad.dstrain.nbytes
        return total


def featomic_hypers():
    """Hyper-parameters for featomic matching the common SOAP settings."""
    import featomic

    return dict(
        cutoff=featomic.cutoff.Cutoff(
            radius=R_CUT,
            smoothing=featomic.cutoff.ShiftedCosine(width=CUTOFF_WIDTH),
        ),
        density=featomic.density.Gaussian(width=ATOM_SIGMA),
        basis=featomic.basis.TensorProduct(
            max_angular=L_MAX,
            radial=featomic.basis.Gto(max_radial=N_MAX - 1),
        ),
    )


class FeatomicRunner(Runner):
    """featomic SoapPowerSpectrum, restricted to n1 <= n2 properties."""

    distribution = "featomic"

    _GRADIENTS = {"values": None, "positions": ["positions"],
                  "strain": ["positions", "strain"]}

    def __init__(self, n_threads):
        import featomic
        from metatensor import Labels

        self.name = f"featomic ({n_threads} thread{'s' if n_threads > 1 else ''})"
        self.calculator = featomic.SoapPowerSpectrum(**featomic_hypers())
        self.hypers_json = self.calculator.parameters
        pairs = [(l, n1, n2) for l in range(L_MAX + 1)
                 for n1 in range(N_MAX) for n2 in range(n1, N_MAX)]
        self.properties = Labels(["l", "n_1", "n_2"], np.array(pairs, dtype=np.int32))
        self.n_features = len(pairs)

    def compute(self, frames, task):
        return self.calculator.compute(
            frames,
            gradients=self._GRADIENTS[task],
            selected_properties=self.properties,
        )

    def deriv_nbytes(self, result, task):
        total = 0
        for block in result.blocks():
            for parameter in self._GRADIENTS[task] or []:
                gradient = block.gradient(parameter)
                total += gradient.values.nbytes + gradient.samples.values.nbytes
        return total


class DscribeRunner(Runner):
    """dscribe SOAP (GTO basis); derivatives are numerical for periodic systems."""

    name = "dscribe (1 core)"
    distribution = "dscribe"

    def __init__(self, grad_frames):
        from dscribe.descriptors import SOAP

        self.soap = SOAP(species=["Si"], r_cut=R_CUT, n_max=N_MAX, l_max=L_MAX,
                         sigma=ATOM_SIGMA, rbf="gto", periodic=True)
        self.n_features = int(self.soap.get_number_of_features())
        self.max_frames = {"positions": grad_frames}
        self.notes = {
            "positions": f"numerical derivatives (periodic), timed on the first "
                         f"{grad_frames} frames only",
            "strain": "no strain derivatives in dscribe",
        }

    def supports(self, task):
        return task != "strain"

    def compute(self, frames, task):
        if task == "values":
            return [self.soap.create(frame) for frame in frames]
        return [self.soap.derivatives(frame, method="numerical") for frame in frames]

    def deriv_nbytes(self, result, task):
        if task == "values":
            return 0
        return sum(derivatives.nbytes for derivatives, _ in result)


class QuipRunner(Runner):
    """QUIP SOAP through quippy; strain gradients contracted from pair gradients."""

    name = "QUIP (1 core)"
    distribution = "quippy-ase"

    def __init__(self):
        from quippy.descriptors import Descriptor

        self.descriptor = Descriptor(QUIP_DESCRIPTOR)
        self.notes = {
            "strain": "QUIP has no strain-gradient output: time = calc(grad=True) + "
                      "numpy contraction of pair gradients with r_ij",
        }

    def compute(self, frames, task):
        results = []
        for frame in frames:
            out = self.descriptor.calc(frame, grad=task != "values")
            if self.n_features is None:
                self.n_features = int(out["data"].shape[1])
            if task == "strain":
                out["dstrain"] = self._strain(frame, out)
            results.append(out)
        return results

    @staticmethod
    def _strain(frame, out):
        """dX_i/d(strain)[a, b] = sum_j r_ij[a] dX_i/dr_j[b], shape (n_atoms, 3, 3, F)."""
        centers = out["grad_index_0based"][:, 0]
        grad, pos = out["grad_data"], out["pos"]
        if np.any(np.diff(centers) < 0):  # QUIP already sorts pairs by centre
            order = np.argsort(centers, kind="stable")
            centers, grad, pos = centers[order], grad[order], pos[order]
        r_ij = pos - frame.positions[centers]
        n_atoms, n_features = len(frame), grad.shape[2]
        bounds = np.searchsorted(centers, np.arange(n_atoms + 1))
        dstrain = np.empty((n_atoms, 3, 3 * n_features))
        for i in range(n_atoms):
            pairs = slice(bounds[i], bounds[i + 1])
            dstrain[i] = r_ij[pairs].T @ grad[pairs].reshape(-1, 3 * n_features)
        return dstrain.reshape(n_atoms, 3, 3, n_features)

    def deriv_nbytes(self, result, task):
        if task == "values":
            return 0
        total = 0
        for out in result:
            total += out["grad_data"].nbytes + out["grad_index_0based"].nbytes
            if task == "strain":
                total += out["pos"].nbytes + out["dstrain"].nbytes
        return total


def make_runner(code, threads, args):
    if code == "gapy":
        return GapyRunner(threads)
    if code == "featomic":
        return FeatomicRunner(threads)
    if code == "dscribe":
        return DscribeRunner(args.dscribe_grad_frames)
    if code == "quip":
        return QuipRunner()
    raise ValueError(f"unknown code {code}")


# --------------------------------------------------------------------------- #
# Timing                                                                      #
# --------------------------------------------------------------------------- #


def chunks(frames, size):
    for start in range(0, len(frames), size):
        yield frames[start:start + size]


def measure(runner, frames, task, chunk_size, repeat):
    """Warm up, then time ``task`` over ``frames``; best of ``repeat`` passes."""
    limit = runner.max_frames.get(task)
    if limit is not None:
        frames = frames[:limit]
    n_atoms = sum(len(frame) for frame in frames)

    start = time.perf_counter()
    runner.compute(frames[:1], task)  # numba compile / spline setup / ...
    first_call = time.perf_counter() - start
    if limit is None:
        # untimed pass over one full chunk: starts thread pools and lets the
        # allocator settle on chunk-sized arrays (the first pass is otherwise
        # dominated by page faults for codes with large gradient arrays)
        runner.compute(frames[:chunk_size], task)

    best_wall, best_cpu, best_sys, nbytes = float("inf"), 0.0, 0.0, 0
    for _ in range(repeat):
        wall = cpu = system = 0.0
        nbytes = 0
        for chunk in chunks(frames, chunk_size):
            t0, c0 = time.perf_counter(), time.process_time()
            s0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            result = runner.compute(chunk, task)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            system += resource.getrusage(resource.RUSAGE_SELF).ru_stime - s0
            nbytes += runner.deriv_nbytes(result, task)
            del result
        if wall < best_wall:
            best_wall, best_cpu, best_sys = wall, cpu, system

    return {
        "frames_per_call": chunk_size,
        "n_frames": len(frames),
        "n_atoms": n_atoms,
        "seconds": best_wall,
        "atoms_per_s": n_atoms / best_wall,
        "cpu_over_wall": best_cpu / best_wall,
        "system_share": best_sys / best_cpu if best_cpu else 0.0,
        "first_call_s": first_call,
        "deriv_bytes_per_atom": nbytes / n_atoms,
    }


def package_version(distribution):
    """Installed version of a distribution, or of the in-tree gapy package."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        module = sys.modules.get(distribution)
        return getattr(module, "__version__", "unknown")


def run_worker(args):
    """Benchmark one code in this process and print its results as JSON."""
    code, threads = args.worker.split(":")
    try:
        runner = make_runner(code, int(threads), args)
    except Exception as error:  # ImportError, missing API, ...
        report = {"skipped": f"{type(error).__name__}: {error}"}
        print(RESULT_TAG + json.dumps(report), flush=True)
        return

    import ase.io

    frames = ase.io.read(args.data, ":")[: args.n_frames]
    # one frame per call is the natural (and for featomic the fastest) use;
    # multi-threaded runs need several frames per call to have any parallelism
    chunk_size = args.chunk or (1 if int(threads) == 1 else DEFAULT_PARALLEL_CHUNK)
    report = {"name": runner.name, "tasks": {}, "notes": runner.notes}
    for task in TASKS:
        if not runner.supports(task):
            continue
        try:
            report["tasks"][task] = measure(runner, frames, task, chunk_size, args.repeat)
        except Exception as error:
            report["tasks"][task] = {"error": f"{type(error).__name__}: {error}"}
        print(f"  {runner.name:22s} {task:10s} {report['tasks'][task]}",
              file=sys.stderr, flush=True)
    report["n_features"] = runner.n_features
    report["version"] = package_version(runner.distribution)
    if code == "featomic":
        report["hypers"] = runner.hypers_json
    print(RESULT_TAG + json.dumps(report), flush=True)


# --------------------------------------------------------------------------- #
# Driver                                                                      #
# --------------------------------------------------------------------------- #


def worker_env(code, threads, numba_cache):
    """Environment for a worker: thread counts fixed before any import."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p
    )
    # BLAS/OpenMP stay single threaded; parallelism is only what each code
    # does by itself (rayon threads for featomic, n_jobs for gapy).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env["RAYON_NUM_THREADS"] = str(threads) if code == "featomic" else "1"
    if code == "gapy":
        env["NUMBA_CACHE_DIR"] = numba_cache
    return env


def busy_cores(seconds=1.0):
    """Number of CPU cores kept busy by the system over ``seconds`` (Linux only)."""

    def sample():
        with open("/proc/stat") as stat:
            fields = [float(x) for x in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return None
    return (1 - (idle1 - idle0) / (total1 - total0)) * os.cpu_count()


CEILING_SCRIPT = """
import time
from concurrent.futures import ThreadPoolExecutor
import numba, numpy as np

@numba.njit(nogil=True)
def work(n):
    acc = 0.0
    for i in range(n):
        acc += np.sqrt(i * 1.0001) * 1e-9
    return acc

work(10)
n = 20_000_000
one = two = float("inf")
with ThreadPoolExecutor(2) as pool:
    for _ in range(5):
        start = time.perf_counter(); work(n); work(n); one = min(one, time.perf_counter() - start)
        start = time.perf_counter(); list(pool.map(work, [n, n])); two = min(two, time.perf_counter() - start)
print(one / two)
"""


def hardware_ceiling():
    """2-thread speed-up of a pure compute loop (no memory, no GIL): what the cores give."""
    process = subprocess.run([sys.executable, "-c", CEILING_SCRIPT], stdout=subprocess.PIPE,
                             text=True, env=worker_env("numba", 1, ""))
    try:
        return float(process.stdout.split()[-1])
    except (IndexError, ValueError):
        return None


def spawn(code, threads, args, numba_cache, chunk=None):
    """Run one worker subprocess and return its parsed report."""
    command = [sys.executable, str(Path(__file__).resolve()),
               "--worker", f"{code}:{threads}", "--data", str(args.data),
               "--chunk", str(chunk or args.chunk or 0), "--repeat", str(args.repeat),
               "--dscribe-grad-frames", str(args.dscribe_grad_frames)]
    if args.n_frames is not None:
        command += ["--n-frames", str(args.n_frames)]
    process = subprocess.run(command, env=worker_env(code, threads, numba_cache),
                             stdout=subprocess.PIPE, stderr=None, text=True)
    for line in process.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {"skipped": f"worker exited with code {process.returncode}"}


def fmt_rate(entry):
    if entry is None:
        return "n/a"
    if "error" in entry:
        return "error"
    return f"{entry['atoms_per_s']:,.0f}"


def fmt_ratio(a, b):
    if not a or not b or "atoms_per_s" not in a or "atoms_per_s" not in b:
        return "n/a"
    return f"{a['atoms_per_s'] / b['atoms_per_s']:.2f}"


def _same_chunk_key(reports, code):
    """The 1-thread run of ``code`` with the 2-thread run's frames per call, if measured."""
    key = f"{code}:1:chunk"
    return key if key in reports and "skipped" not in reports[key] else f"{code}:1"


def print_tables(reports, args, n_frames, n_atoms):
    """Print the throughput table and a table of per-code details (markdown)."""
    done = [(key, r) for key, r in reports.items() if "skipped" not in r]

    def get(key, task):
        report = reports.get(key, {})
        return report.get("tasks", {}).get(task)

    print(f"\n### SOAP throughput, atoms/s ({n_frames} frames, {n_atoms} atoms; "
          f"n_max={N_MAX}, l_max={L_MAX}, r_cut={R_CUT}, atom_sigma={ATOM_SIGMA}, "
          f"cutoff_width={CUTOFF_WIDTH})\n")
    header = ["task"] + [r["name"] for _, r in done] + [
        "gapy/featomic (1 core)", "gapy/featomic (2 cores)", "gapy/QUIP (1 core)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for task in TASKS:
        row = [TASK_TITLES[task]] + [fmt_rate(get(key, task)) for key, _ in done]
        row += [fmt_ratio(get("gapy:1", task), get("featomic:1", task)),
                fmt_ratio(get("gapy:2", task), get("featomic:2", task)),
                fmt_ratio(get("gapy:1", task), get("quip:1", task))]
        print("| " + " | ".join(row) + " |")

    scaling = [key.split(":")[0] for key, _ in done if key.endswith(":2")]
    if scaling:
        print("\n### Speed-up from 1 to 2 cores\n")
        print("| task | " + " | ".join(scaling) + " | pure-compute ceiling |")
        print("|---|" + "---|" * (len(scaling) + 1))
        ceiling = f"{args.ceiling:.2f}" if args.ceiling else "n/a"
        for task in TASKS:
            row = [fmt_ratio(get(f"{code}:2", task), get(_same_chunk_key(reports, code), task))
                   for code in scaling]
            print(f"| {TASK_TITLES[task]} | " + " | ".join(row) + f" | {ceiling} |")
        print("\nBoth runs of a code pass the same number of frames per call (the 1-core run "
              "with that many frames is the extra `..., N frames/call` column above).")

    print("\n### Details\n")
    header = ["code", "features", "frames/call", "first call (s): values / +pos / +strain",
              "deriv. bytes/atom: +pos / +strain", "CPU/wall: values / +pos / +strain",
              "kernel (sys) share of CPU: values / +pos / +strain"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for key, report in done:
        tasks = [report["tasks"].get(task) or {} for task in TASKS]
        first = " / ".join(f"{t['first_call_s']:.2f}" if "first_call_s" in t else "n/a"
                           for t in tasks)
        nbytes = " / ".join(f"{t['deriv_bytes_per_atom']:,.0f}"
                            if "deriv_bytes_per_atom" in t else "n/a" for t in tasks[1:])
        cpu = " / ".join(f"{t['cpu_over_wall']:.2f}" if "cpu_over_wall" in t else "n/a"
                         for t in tasks)
        system = " / ".join(f"{t['system_share']:.0%}" if "system_share" in t else "n/a"
                            for t in tasks)
        per_call = tasks[0].get("frames_per_call", "n/a")
        print(f"| {report['name']} | {report['n_features']} | {per_call} | {first} | "
              f"{nbytes} | {cpu} | {system} |")

    notes = []
    for key, report in reports.items():
        if "skipped" in report:
            notes.append(f"{key.split(':')[0]}: skipped: {report['skipped']}")
            continue
        for task, note in report.get("notes", {}).items():
            notes.append(f"{report['name']}, {TASK_TITLES[task]}: {note}")
        for task, entry in report["tasks"].items():
            if "error" in entry:
                notes.append(f"{report['name']}, {TASK_TITLES[task]}: {entry['error']}")
            elif entry["n_frames"] != n_frames:
                notes.append(f"{report['name']}, {TASK_TITLES[task]}: "
                             f"{entry['n_frames']} frames / {entry['n_atoms']} atoms, "
                             f"atoms/s extrapolated from this subset")
    versions = {r["name"].split(" (")[0]: r["version"] for _, r in done}
    notes.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if "featomic:1" in reports and "hypers" in reports["featomic:1"]:
        notes.append(f"featomic hypers: {reports['featomic:1']['hypers']}")
    notes.append("pure-compute ceiling: 2-thread speed-up of a numba loop with no memory "
                 "traffic and no GIL, measured in the same run; on a shared VM it is below 2")
    notes.append("kernel (sys) share: CPU time spent in the operating system, almost all of "
                 "it page faults on freshly allocated derivative arrays")
    notes.append("CPU/wall counts threads of the benchmark process only "
                 "(not child processes).")
    print()
    for note in notes:
        print(f"- {note}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="extxyz file (default: %(default)s)")
    parser.add_argument("--n-frames", type=int, default=None,
                        help="use only the first N frames (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="shortcut for --n-frames 20")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed passes per task, the best one is kept")
    parser.add_argument("--chunk", type=int, default=0,
                        help="frames per compute call; default: 1 for single-thread "
                             f"runs, {DEFAULT_PARALLEL_CHUNK} for multi-thread runs"),
    parser.add_argument("--codes", default="gapy,featomic,dscribe,quip",
                        help="comma separated subset of gapy,featomic,dscribe,quip")
    parser.add_argument("--threads", default="1,2",
                        help="core/thread counts for gapy and featomic")
    parser.add_argument("--dscribe-grad-frames", type=int, default=3,
                        help="frames used to time dscribe's numerical derivatives")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the raw results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and args.n_frames is None:
        args.n_frames = 20
    args.data = args.data.resolve()
    return args


def main():
    args = parse_args()
    if args.worker:
        run_worker(args)
        return

    import ase.io

    frames = ase.io.read(args.data, ":")[: args.n_frames]
    n_frames, n_atoms = len(frames), sum(len(frame) for frame in frames)
    print(f"data: {args.data} ({n_frames} frames, {n_atoms} atoms)", flush=True)
    busy = busy_cores()
    if busy is not None and busy > 0.3:
        print(f"warning: other processes keep {busy:.1f} cores busy; timings "
              f"(especially multi-threaded ones) will be perturbed", flush=True)

    threads = [int(t) for t in args.threads.split(",")]
    codes = [c.strip() for c in args.codes.split(",")]
    reports = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gapy-numba-cache-") as numba_cache:
        for code in codes:
            for n in (threads if code in ("gapy", "featomic") else [1]):
                print(f"running {code} ({n})...", file=sys.stderr, flush=True)
                report = spawn(code, n, args, numba_cache)
                reports[f"{code}:{n}"] = report
                if "skipped" in report:
                    print(f"{code}: skipped: {report['skipped']}", flush=True)
                    break  # no point trying other thread counts
                if n == 1 and 2 in threads and not args.chunk:
                    # the same frames per call as the 2-thread run, for a like-for-like
                    # speed-up: many frames per call cost page faults even on one thread
                    print(f"running {code} (1, {DEFAULT_PARALLEL_CHUNK} frames/call)...",
                          file=sys.stderr, flush=True)
                    report = spawn(code, 1, args, numba_cache, chunk=DEFAULT_PARALLEL_CHUNK)
                    if "name" in report:
                        report["name"] += f", {DEFAULT_PARALLEL_CHUNK} frames/call"
                    reports[f"{code}:1:chunk"] = report
    args.ceiling = hardware_ceiling() if 2 in threads else None
    print(f"\ntotal benchmark time: {time.perf_counter() - start:.0f} s")
    print_tables(reports, args, n_frames, n_atoms)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
