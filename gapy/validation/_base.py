"""Settings, the per-calculator context and what a property procedure returns."""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ase import Atoms

from ._structures import attach, check_crystal, conventional_cell, relax


@dataclass
class Settings:
    """Knobs of the procedures; every property uses the same ones for model and reference.

    Every parameter is stored as an attribute of the same name. :func:`validate` checks
    them and accepts single fields as keywords.

    Parameters
    ----------
    eos_strain : float, default=0.02
        EOS lattice strains span ``+-eos_strain`` (volumes about +-6 %).
    eos_points : int, default=7
        Number of EOS volumes.
    elastic_strain : float, default=0.005
        Size of the +- strains of the elastic constants.
    fmax : float, default=0.01
        Force convergence of position relaxations (eV/A).
    cell_fmax : float, default=0.002
        Convergence of the cell relaxation (eV/A; stress times volume per atom).
    relax_steps : int, default=300
        Largest number of optimiser steps of each relaxation.
    supercell_length : float, default=7.0
        Vacancy, NEB and phonon supercells repeat the conventional cell until every
        plane spacing is at least this (A); below the model's cutoff ``validate`` warns
        (defects would interact with their periodic images).
    phonon_displacement : float, default=0.01
        Finite displacement of phonopy (A).
    miller : sequence of tuple of int, optional
        Surfaces; default (1,0,0), (1,1,0), (1,1,1) for cubic crystals, (0,0,1), (1,0,0),
        (1,1,0) for hexagonal cells, else (0,0,1), (0,1,0), (1,0,0) of the conventional cell.
    slab_thickness : float, default=8.0
        Smallest slab thickness (A).
    vacuum : float, default=6.0
        Vacuum on each side of a slab (A).
    neb_images : int, default=5
        Intermediate NEB images.
    neb_fmax : float, default=0.05
        NEB force convergence (eV/A).
    neb_steps : int, default=300
        Largest number of NEB optimiser steps.
    n_samples : int, default=32
        Posterior draws for ``model_std``.
    flag_std : float, default=0.01
        Flag threshold on the largest local-energy standard deviation (eV).
    random_state : int, default=0
        Seed of the posterior draws.

    Examples
    --------
    >>> from gapy.validation import Settings
    >>> settings = Settings(miller=[(1, 1, 1)], flag_std=0.02)
    >>> settings.eos_points, settings.flag_std
    (7, 0.02)
    """

    eos_strain: float = 0.02
    eos_points: int = 7
    elastic_strain: float = 0.005
    fmax: float = 0.01
    cell_fmax: float = 0.002
    relax_steps: int = 300
    supercell_length: float = 7.0
    phonon_displacement: float = 0.01
    miller: Optional[Sequence[Tuple[int, int, int]]] = None
    slab_thickness: float = 8.0
    vacuum: float = 6.0
    neb_images: int = 5
    neb_fmax: float = 0.05
    neb_steps: int = 300
    n_samples: int = 32
    flag_std: float = 0.01
    random_state: int = 0


@dataclass
class Outcome:
    """Values of one property family for one calculator.

    Attributes
    ----------
    values : dict
        Property name to value.
    units : dict
        Property name to unit.
    structures : list of ase.Atoms
        The fixed geometries the values are computed from (EOS cells, relaxed defect
        cells, NEB images, displaced supercells, ...).
    from_predictions : callable, optional
        ``from_predictions(predictions) -> values``: the values recomputed from
        predictions (dicts with ``energy``, ``forces``, ``stress``) at ``structures``;
        used with posterior draws for ``model_std``.
    needs : tuple of str
        What ``from_predictions`` reads: ``"energy"``, ``"forces"``, ``"stress"``.
    curves : dict
        Data for the plots.
    """

    values: Dict[str, float]
    units: Dict[str, str]
    structures: List[Atoms] = field(default_factory=list)
    from_predictions: Optional[Callable[[List[dict]], Dict[str, float]]] = None
    needs: Tuple[str, ...] = ("energy",)
    curves: dict = field(default_factory=dict)


class Context:
    """One calculator's view of the crystal, with cached shared steps.

    The relaxed conventional cell is computed once and used by every property (each
    calculator at its own equilibrium); a failure is kept and raised again. ``factory``
    (optional) makes new calculators of the same kind, one per NEB image.
    """

    def __init__(self, calc, structure: Atoms, settings: Settings, factory: Optional[Callable] = None):
        self.calc = calc
        self.factory = factory
        self.structure = structure
        self.settings = settings
        self._cache: Dict[str, object] = {}

    def new_calculator(self):
        """A calculator of its own (NEB images), or the shared one without a factory."""
        return self.factory() if self.factory is not None else self.calc

    def cached(self, key: str, compute: Callable[[], object]):
        if key not in self._cache:
            try:
                self._cache[key] = compute()
            except Exception as error:  # kept: every property that needs it fails alike
                self._cache[key] = error
        value = self._cache[key]
        if isinstance(value, Exception):
            raise value
        return value

    def crystal(self, what: str) -> Tuple[Atoms, bool]:
        """The unrelaxed conventional cell and whether it is cubic."""
        check_crystal(self.structure, what)
        return self.cached("conventional", lambda: conventional_cell(self.structure))

    def equilibrium(self, what: str) -> Atoms:
        """The conventional cell relaxed (cell and positions) with this calculator."""
        conventional, cubic = self.crystal(what)

        def compute():
            atoms = attach(conventional, self.calc)
            relax(atoms, self.settings.cell_fmax, self.settings.relax_steps, "bulk cell", cell=True,
                  hydrostatic=cubic)
            return atoms

        return self.cached("equilibrium", compute)

    def bulk_energy(self, what: str) -> float:
        """Energy per atom of the relaxed conventional cell (eV/atom)."""
        atoms = self.equilibrium(what)
        return atoms.get_potential_energy() / len(atoms)
