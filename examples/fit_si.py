"""Fit a GAP to the bundled Si data
================================

Fit on the bundled training set and evaluate on the bundled test set.

Run ``python examples/fit_si.py``. It writes ``si.gapy`` in the current directory, which
the other examples load (they fit it themselves when it is missing). About 20 s on two
cores.
"""

import time
from pathlib import Path

import gapy
from gapy import GAPRegressor, SOAP
from gapy.datasets import load_si
from gapy.metrics import compare, error_table, format_table

#: Where the model is written, and where the other examples look for it.
MODEL = Path("si.gapy")


def fit() -> GAPRegressor:
    """A Si model: smaller settings than ``gapy demo``, fitted on energies, forces and stress."""
    soap = SOAP(species=["Si"], r_cut=5.0, n_max=6, l_max=6, atom_sigma=0.5, cutoff_width=1.0)
    model = GAPRegressor(soap, zeta=4, n_sparse=300, sigma_energy=0.005, sigma_force=0.05,
                         sigma_virial=0.05, e0={"Si": -0.79}, n_jobs=-1, random_state=0)
    return model.fit(load_si("train"))


def load_or_fit() -> GAPRegressor:
    """``si.gapy`` if it exists, else a freshly fitted (and saved) model."""
    if MODEL.exists():
        return gapy.load(MODEL)
    print(f"{MODEL} not found: fitting it (run fit_si.py to see the errors)")
    model = fit()
    model.save(MODEL)
    return model


if __name__ == "__main__":
    start = time.perf_counter()
    model = fit()
    print(f"fitted in {time.perf_counter() - start:.1f} s")
    model.save(MODEL)
    test = load_si("test")
    print(format_table(error_table(compare(test, model.predict_all(test)))))
    print(f"model written to {MODEL}")
