"""The model's own uncertainty on the structures a property used.

Two numbers per property:

* ``model_std``: the standard deviation of the property itself, in its unit. The
  property is recomputed from ``n_samples`` draws of the model's predictions at the
  geometries it used (the EOS cells, the relaxed vacancy cell, the NEB images, ...).
  Draws share the GP weights drawn from their posterior ``N(alpha, Sigma)``, so that
  predictions on different structures are correlated as the model says they are (an
  energy difference between two similar cells is much surer than either energy). With
  the ``"dtc"`` or ``"local"`` variance the Nystrom residual of the energies is drawn
  too, jointly over the structures with its prior covariance (so each structure's
  energy std is the one ``predict_all`` gives), and so are the residuals of the forces
  and of the stresses (each std is the one ``predict_all`` gives; the residuals of the
  three quantities are drawn independently of each other, as no property uses two).
  Extra 2-/3-body terms are part of all of them: their weights are drawn with SOAP's,
  and their prior covariance between structures joins the residual's.
* ``max_local_std``: the largest predicted standard deviation of one atom's local
  energy (eV) over every structure the property used, compared with the flag threshold.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
from ase import Atoms
from scipy.linalg import solve_triangular

from ..gp.term_variance import instance_prior_covariance
from ..gp.terms import instance_kernel_rows
from ..gp.variance import force_prior_covariance, virial_prior_covariance, voigt_strain


#: Quantities a property may need from the draws.
NEEDS = ("energy", "forces", "stress")


class _Features(NamedTuple):
    """What the residual's prior covariance needs of one structure."""

    values: np.ndarray
    species: np.ndarray
    instances: list
    strain: Optional[np.ndarray]  # Voigt strain gradients, when stresses are drawn
    grad: object  # SOAPGradients, when forces are drawn


class PosteriorDraws:
    """Correlated draws of a GAP's predictions over several structures.

    Parameters
    ----------
    model : GAPRegressor
        A fitted model.
    n_samples : int
        Number of draws.
    random_state : int or None
        Seed of the draws.
    """

    def __init__(self, model, n_samples: int, random_state=0):
        self.model = model
        self.n_samples = int(n_samples)
        self.random_state = random_state
        self.rng = np.random.default_rng(random_state)
        gp = model.gp_
        self.term_descriptors = list(getattr(model, "term_descriptors_", {}).values())
        kind = model.variance
        self.weights = kind in ("sor", "dtc")
        self.residual = kind in ("dtc", "local")
        z = self.rng.standard_normal((len(gp.alpha), self.n_samples))
        # Sigma = R^-1 R^-T (SparseGP.variance: k Sigma k^T = |R^-T k|^2)
        self.dalpha = solve_triangular(gp.r_factor, z, lower=False) if self.weights else np.zeros_like(z)
        self.scale = {"energy": 1.0, "forces": 1.0, "stress": 1.0}
        if kind == getattr(model, "std_scale_variance_", kind):  # calibrate() measured them for this kind only
            self.scale.update(getattr(model, "std_scale_", {}) or {})

    def predict(self, frames: Sequence[Atoms], needs: Sequence[str] = ("energy",)) -> List[List[dict]]:
        """Draws of the predictions of every structure.

        Returns
        -------
        list of list of dict
            ``draws[s][k]`` is draw ``s`` of structure ``k``: ``energy`` (eV), and as
            asked ``forces`` (n_atoms, 3) in eV/A and ``stress`` (6,) in eV/A^3.
        """
        model, gp = self.model, self.model.gp_
        descriptor = model.descriptor_
        gradients = False
        if "stress" in needs:
            gradients = ("positions", "strain")
        elif "forces" in needs:
            gradients = "positions"
        energies = np.zeros((len(frames), self.n_samples))
        forces, stresses, features, energy_rows, force_rows, virial_rows = [], [], [], [], [], []
        for k, atoms in enumerate(frames):
            mean = model.predict_all([atoms], properties=tuple(needs) + ("energies",))[0]
            species = descriptor.species_indices(atoms, k)
            computed = descriptor.compute(atoms, gradients=gradients, index=k)
            values, grad = computed if gradients else (computed, None)
            instances = [term.modelled(found.compute(atoms, gradients=gradients, index=k))  # (as the model's priors)
                         for term, found in zip(gp.terms, self.term_descriptors)]
            strain = voigt_strain(grad.dstrain) if "stress" in needs else None
            features.append(_Features(values, species, instances, strain, grad if "forces" in needs else None))
            rows = gp.rows(values, species, grad, instances or None)
            energy_rows.append(rows["energy"])
            energies[k] = mean["energy"] + self.scale["energy"] * (rows["energy"] @ self.dalpha)
            if "forces" in needs:
                m = len(gp.alpha)
                force_rows.append(rows["forces"].reshape(-1, m))
                deviation = (force_rows[-1] @ self.dalpha).T.reshape(self.n_samples, -1, 3)
                forces.append(mean["forces"][None] + self.scale["forces"] * deviation)
            if "stress" in needs:
                virial_rows.append(rows["virial"])
                deviation = -(rows["virial"] @ self.dalpha).T / atoms.get_volume()
                stresses.append(mean["stress"][None] + self.scale["stress"] * deviation)
        if self.residual:
            rng = self._residual_rng(features)
            energies += self.scale["energy"] * self._draw(self._energy_prior(features), energy_rows, rng)
            if forces:
                drawn = self._draw(self._gradient_prior(features, "forces"), force_rows, rng)
                edges = np.cumsum([0] + [3 * len(atoms) for atoms in frames])
                for k, atoms in enumerate(frames):
                    deviation = drawn[edges[k]:edges[k + 1]].T.reshape(self.n_samples, -1, 3)
                    forces[k] = forces[k] + self.scale["forces"] * deviation
            if stresses:
                virials = self._draw(self._gradient_prior(features, "virial"), virial_rows, rng)
                for k, atoms in enumerate(frames):
                    deviation = -virials[6 * k:6 * (k + 1)].T / atoms.get_volume()
                    stresses[k] = stresses[k] + self.scale["stress"] * deviation
        draws = []
        for s in range(self.n_samples):
            row = []
            for k in range(len(frames)):
                draw = {"energy": float(energies[k, s])}
                if forces:
                    draw["forces"] = forces[k][s]
                if stresses:
                    draw["stress"] = stresses[k][s]
                row.append(draw)
            draws.append(row)
        return draws

    def _residual_rng(self, features) -> np.random.Generator:
        """The generator of the Nystrom residual: seeded by the structures, not by the calls
        before, so that a property's std does not depend on which other properties were computed."""
        if self.random_state is None:
            return self.rng
        return np.random.default_rng([int(self.random_state), len(features)] + [len(f.values) for f in features])

    def _draw(self, prior: np.ndarray, rows: List[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """Draws of the Nystrom residual of observables with prior covariance ``prior`` and
        kernel rows ``rows`` (stacked: one row per observable), ndarray of shape (n_obs, n_samples).

        The covariance is ``prior - e K_MM^-1 e^T`` with ``e`` the rows.
        """
        rows = np.vstack([np.atleast_2d(block) for block in rows])
        explained = solve_triangular(self.model.gp_.kmm_factor, rows.T, lower=True)
        covariance = prior - explained.T @ explained
        eigenvalues, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
        root = vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
        return root @ rng.standard_normal((len(rows), self.n_samples))

    def _energy_prior(self, features) -> np.ndarray:
        """Prior covariance of the structures' energies, (n_frames, n_frames).

        ``C[a, b] = sum_{i in a, j in b} k(q_i, q_j)``; with extra terms plus each term's
        ``sum_{t in a, t' in b} w_t w_t' k(x_t, x_t')``. Its diagonal less the explained part
        is the ``"local"`` energy variance of :meth:`GAPRegressor.predict_all`.
        """
        gp = self.model.gp_
        n = len(features)
        prior = np.zeros((n, n))
        for a in range(n):
            for b in range(a, n):
                first, second = features[a], features[b]
                prior[a, b] = gp.kernel(first.values, first.species, second.values, second.species).sum()
                for term, found_a, found_b in zip(gp.terms, first.instances, second.instances):
                    if len(found_a.values) and len(found_b.values):
                        cross = instance_kernel_rows(found_a, found_b.values, found_b.classes, term.theta, term.delta)
                        prior[a, b] += cross["energy"] @ found_b.weights
                prior[b, a] = prior[a, b]
        return prior

    def _gradient_prior(self, features, quantity: str) -> np.ndarray:
        """Prior covariance of the structures' forces (atom-major) or Voigt virials, one
        structure after the other: (n_obs, n_obs) with 3 n_atoms or 6 rows per structure."""
        gp = self.model.gp_
        covariance, gradients = {"forces": (force_prior_covariance, "grad"),
                                 "virial": (virial_prior_covariance, "strain")}[quantity]
        sizes = [3 * len(f.values) if quantity == "forces" else 6 for f in features]
        edges = np.concatenate([[0], np.cumsum(sizes)])
        prior = np.zeros((edges[-1], edges[-1]))
        for a in range(len(features)):
            for b in range(a, len(features)):
                first, second = features[a], features[b]
                block = covariance(first.values, first.species, getattr(first, gradients), second.values,
                                   second.species, getattr(second, gradients), gp.zeta, gp.delta, gp.isolated)
                prior[edges[a]:edges[a + 1], edges[b]:edges[b + 1]] = block
                prior[edges[b]:edges[b + 1], edges[a]:edges[a + 1]] = block.T
        for t, term in enumerate(gp.terms):
            prior += instance_prior_covariance([f.instances[t] for f in features], quantity, term.theta, term.delta)
        return prior


def max_local_std(model, frames: Sequence[Atoms]) -> float:
    """Largest predicted local-energy standard deviation (eV) of any atom in ``frames``."""
    results = model.predict_all(list(frames), return_std=True, properties=("energy", "energies"))
    return float(max(r["energies_std"].max() for r in results))


def std_over_draws(values: List[Dict[str, float]], names: Sequence[str]) -> Dict[str, float]:
    """Standard deviation of each named value over the draws (NaN draws left out)."""
    out = {}
    for name in names:
        column = np.array([v.get(name, np.nan) for v in values], dtype=float)
        column = column[np.isfinite(column)]
        out[name] = float(column.std(ddof=1)) if len(column) > 1 else None
    return out
