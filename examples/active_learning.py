"""Active learning of a Cu potential
=================================

EMT stands in for DFT as the reference calculator.

Run ``python examples/active_learning.py``. Starts from two slightly rattled fcc cells,
then five times: Langevin MD at 1000 K with the current model, score the snapshots by the
model's own force uncertainty, label the four most uncertain and mutually different ones
with the reference calculator, refit. Any ASE calculator (VASP, Quantum ESPRESSO, ...) can
take EMT's place. Prints the largest uncertainty seen in each round and the force error on
an independent EMT trajectory, and writes the grown training set to ``al_train.xyz``.
"""

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from gapy import GAPRegressor, SOAP
from gapy.sampling import active_learning, label_structures, run_md

cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # 32 atoms
rattled = []
for seed in range(2):
    atoms = cell.copy()
    atoms.rattle(0.03, seed=seed)
    rattled.append(atoms)
train = label_structures(rattled, EMT(), config_type="initial")

# an independent test trajectory, run with the reference itself
snapshots, _ = run_md(EMT(), cell, steps=400, interval=20, temperature=1000.0, timestep=2.0, random_state=1)
test = label_structures(snapshots, EMT(), config_type="test")


def force_rmse(model) -> float:
    predicted = model.predict_all(test, properties=("energy", "forces"))
    return float(np.sqrt(np.mean([(p["forces"] - a.get_forces()) ** 2 for p, a in zip(predicted, test)])))


def report(iteration, model) -> None:
    print(f"{iteration.n_train:5d}  {iteration.n_candidates:10d}  {iteration.max_score:14.3f}  "
          f"{iteration.median_score:14.3f}  {force_rmse(model):16.4f}")


settings = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=6, l_max=4), n_sparse=200, sigma_energy=0.001,
                        sigma_force=0.02, random_state=0)
print(f"initial model ({len(train)} structures): test force RMSE {force_rmse(settings.fit(train)):.4f} eV/A")
print("train  candidates  max std (eV/A)  median std (eV/A)  test F RMSE (eV/A)")
result = active_learning(settings, train, EMT(), cell, n_iterations=5, n_select=4, md_steps=200, md_interval=5,
                         temperature=1000.0, timestep=2.0, random_state=0, callback=report)
write("al_train.xyz", result.frames, format="extxyz")
print(f"final model: {len(result.frames)} structures, test force RMSE {force_rmse(result.model):.4f} eV/A; "
      "wrote al_train.xyz")
