#!/usr/bin/env python
"""Is a gapy/QUIP accuracy gap due to the SOAP descriptor or to the sparse GP?

Fits gapy's sparse GP (the same steps as ``GAPRegressor.fit``: CUR sparse points, K_MM
Cholesky, blockwise QR on noise-scaled energy and force rows) twice on the same data:
once on gapy's ``SOAP`` features and once on QUIP's ``soap`` features (quippy
``Descriptor``, gradients summed over periodic images). Same hyperparameters as
``bench_vs_quip.py``. If the QUIP-descriptor fit matches ``gap_fit``'s test errors, the
GP is fine and any gap comes from the descriptor (the radial basis differs: gapy uses
GTOs ``r^n exp(-r^2 / 2 sigma_n^2)``, QUIP Gaussians of width ``atom_sigma`` on an
equispaced grid reaching beyond the cutoff).

Uses gapy internals (``gapy.gp``, ``gapy.sparsify``); diagnostic only.

Usage::

    python benchmarks/diag_descriptor_swap.py --element Si --n-train 214 --n-sparse 1000
"""

import argparse
import time
from types import SimpleNamespace

import numpy as np
from ase.io import read

from bench_vs_quip import (ATOM_SIGMA, CUTOFF_WIDTH, DEFAULT_DATA_DIR, DELTA, L_MAX, N_MAX, PUBLISHED,
                           SIGMA_ENERGY, SIGMA_FORCE, SPARSE_JITTER, ZETA)
from gapy import SOAP
from gapy.gp import IncrementalQR, kmm_cholesky
from gapy.gp import kernel_rows
from gapy.kernels import dot_product_kernel
from gapy.sparsify import select_points


class QuipSOAP:
    """QUIP's soap through quippy, returning gapy-shaped values and position gradients."""

    def __init__(self, element, cutoff):
        from ase.data import atomic_numbers
        from quippy.descriptors import Descriptor

        z = atomic_numbers[element]
        self.descriptor = Descriptor(
            f"soap l_max={L_MAX} n_max={N_MAX} atom_sigma={ATOM_SIGMA} cutoff={cutoff} "
            f"cutoff_transition_width={CUTOFF_WIDTH} n_species=1 species_Z={{{z}}} Z={z}"
        )

    def compute(self, atoms, gradients=False):
        out = self.descriptor.calc(atoms, grad=bool(gradients))
        values = out["data"]
        if not gradients:
            return values
        index = out["grad_index_0based"]
        keys = index[:, 0].astype(np.int64) * len(atoms) + index[:, 1]
        unique, inverse = np.unique(keys, return_inverse=True)
        dpos = np.zeros((len(unique), 3, values.shape[1]))
        np.add.at(dpos, inverse, out["grad_data"])  # sum periodic images of one neighbour
        grad = SimpleNamespace(centers=unique // len(atoms), neighbors=unique % len(atoms), dpos=dpos, dstrain=None)
        return values, grad


class GapySOAP:
    def __init__(self, element, cutoff):
        self.soap = SOAP(species=[element], r_cut=cutoff, n_max=N_MAX, l_max=L_MAX,
                         atom_sigma=ATOM_SIGMA, cutoff_width=CUTOFF_WIDTH)

    def compute(self, atoms, gradients=False):
        return self.soap.compute(atoms, gradients="positions" if gradients else False)


def fit(descriptor, frames, n_sparse, e0):
    """Sparse GP weights and sparse points, as GAPRegressor.fit does (energies + forces)."""
    values = [descriptor.compute(a) for a in frames]
    all_values = np.concatenate(values)
    species = np.zeros(len(all_values), dtype=int)
    chosen = select_points(all_values, n_sparse, "cur", species, 1, ZETA)
    sparse = all_values[chosen]
    sparse_species = np.zeros(len(sparse), dtype=int)
    kmm, _ = dot_product_kernel(sparse, sparse_species, sparse, sparse_species, ZETA)
    solver = IncrementalQR(kmm_cholesky(DELTA**2 * kmm, SPARSE_JITTER))
    for atoms in frames:
        values, grad = descriptor.compute(atoms, gradients=True)
        rows = kernel_rows(values, np.zeros(len(atoms), int), sparse, sparse_species, ZETA, DELTA, grad)
        sigma_e = SIGMA_ENERGY * np.sqrt(len(atoms))
        solver.add(rows["energy"][None, :] / sigma_e, [(atoms.get_potential_energy() - e0 * len(atoms)) / sigma_e])
        solver.add(rows["forces"].reshape(-1, len(sparse)) / SIGMA_FORCE, atoms.get_forces().ravel() / SIGMA_FORCE)
    return solver.solve(), sparse


def test_errors(descriptor, alpha, sparse, frames, e0):
    """Energy RMSE (meV/atom) overall and per config_type, and force RMSE (eV/A)."""
    de, df = [], []
    for atoms in frames:
        values, grad = descriptor.compute(atoms, gradients=True)
        rows = kernel_rows(values, np.zeros(len(atoms), int), sparse, np.zeros(len(sparse), int), ZETA, DELTA, grad)
        energy = rows["energy"] @ alpha + e0 * len(atoms)
        de.append((energy - atoms.get_potential_energy()) / len(atoms) * 1000)
        df.append((rows["forces"] @ alpha - atoms.get_forces()).ravel())
    de = np.array(de)
    types = np.array([a.info.get("config_type", "default") for a in frames])
    energy = {"all": float(np.sqrt(np.mean(de**2)))}
    energy.update({t: float(np.sqrt(np.mean(de[types == t] ** 2))) for t in sorted(set(types))})
    return energy, float(np.sqrt(np.mean(np.concatenate(df) ** 2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--element", choices=sorted(PUBLISHED), default="Si")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-sparse", type=int, default=None)
    args = parser.parse_args()
    settings = PUBLISHED[args.element]
    train = read(DEFAULT_DATA_DIR / args.element / "train.xyz", ":")[: args.n_train]
    test = read(DEFAULT_DATA_DIR / args.element / "test.xyz", ":")
    n_sparse = args.n_sparse or settings["n_sparse"]
    print(f"{args.element}: {len(train)} training structures, n_sparse {n_sparse}; gapy sparse GP on each descriptor")
    groups = ["all"] + sorted({a.info.get("config_type", "default") for a in test})
    print("| descriptor | " + " | ".join(f"energy RMSE {g} (meV/atom)" for g in groups)
          + " | force RMSE (eV/A) | fit (s) |")
    print("|" + "---|" * (len(groups) + 3))
    for name, cls in (("gapy SOAP", GapySOAP), ("QUIP soap", QuipSOAP)):
        descriptor = cls(args.element, settings["cutoff"])
        start = time.perf_counter()
        alpha, sparse = fit(descriptor, train, n_sparse, settings["e0"])
        seconds = time.perf_counter() - start
        energy, force = test_errors(descriptor, alpha, sparse, test, settings["e0"])
        cells = " | ".join(f"{energy[g]:.2f}" for g in groups)
        print(f"| {name} | {cells} | {force:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
