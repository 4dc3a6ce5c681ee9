"""Vacancy-migration barrier by the nudged elastic band (``ase.mep.NEB``).

Start: the relaxed vacancy cell of :mod:`gapy.validation.defects`. End: the nearest
neighbour of the vacancy moved into it, relaxed (the vacancy has hopped one site). The
``neb_images`` intermediate images are interpolated (IDPP) and relaxed with a climbing
image (ASE ``NEB(climb=True, method="improvedtangent")``, FIRE) until the largest NEB force
is below ``neb_fmax``. Barrier: highest image energy minus the start energy (eV).
One-species crystals only (``ONE_SPECIES_REASON``).
"""

from typing import Dict, List

import numpy as np
from ase.mep import NEB
from ase.optimize import FIRE

from ._base import Context, Outcome
from ._structures import ConvergenceError, attach, bare, one_species, relax
from .defects import vacancy_cells

#: Why the barrier needs one species (it is an energy difference at fixed composition:
#: no chemical potential enters).
ONE_SPECIES_REASON = ("with several species there is one barrier per vacant sublattice and hopping species, "
                      "and this procedure, which empties the site of atom 0 and moves its nearest neighbour "
                      "into it, would report an arbitrary one of them")


def compute(context: Context) -> Outcome:
    """Vacancy-migration barrier of ``context.calc``; see the module docstring."""
    settings = context.settings
    what = "vacancy migration barrier"
    one_species(context.crystal(what)[0], what, ONE_SPECIES_REASON)
    perfect, start = vacancy_cells(context, what)
    site = perfect.positions[0]
    # the hopping atom: the nearest neighbour of the vacant site (minimum image)
    distances = np.linalg.norm(_mic(start.positions - site, start.cell), axis=1)
    hopping = int(np.argmin(distances))
    end = attach(start, context.calc)
    end.positions[hopping] = site
    relax(end, settings.fmax, settings.relax_steps, "vacancy cell after the hop")
    images = [attach(start, context.new_calculator()) for _ in range(settings.neb_images + 1)]
    images.append(attach(end, context.new_calculator()))
    band = NEB(images, climb=True, method="improvedtangent", allow_shared_calculator=context.factory is None)
    band.interpolate(method="idpp", mic=True)
    optimizer = FIRE(band, logfile=None)
    if not optimizer.run(fmax=settings.neb_fmax, steps=settings.neb_steps):
        raise ConvergenceError(
            f"NEB did not converge in {settings.neb_steps} steps (largest NEB force "
            f"{np.sqrt((band.get_forces() ** 2).sum(axis=1)).max():.3g} eV/A > neb_fmax "
            f"{settings.neb_fmax} eV/A); raise neb_steps"
        )
    energies = np.array([image.get_potential_energy() for image in images])
    frames = [bare(image) for image in images]
    path = np.concatenate([[0.0], np.cumsum([
        np.linalg.norm(_mic(images[k + 1].positions - images[k].positions, start.cell))
        for k in range(len(images) - 1)])])

    def from_predictions(predictions: List[dict]) -> Dict[str, float]:
        energy = np.array([p["energy"] for p in predictions])
        return {"vacancy_migration_barrier": float(energy.max() - energy[0])}

    values = from_predictions([{"energy": e} for e in energies])
    curves = {"path": path, "energies": energies - energies[0]}
    return Outcome(values, {"vacancy_migration_barrier": "eV"}, frames, from_predictions, ("energy",), curves)


def _mic(displacements: np.ndarray, cell) -> np.ndarray:
    """Displacements wrapped to the minimum image (A)."""
    scaled = np.linalg.solve(cell.array.T, displacements.T).T
    scaled -= np.round(scaled)
    return scaled @ cell.array
