"""Instance descriptors: many small descriptors per structure (pairs, triplets).

A SOAP vector describes one atom. A 2-body or 3-body descriptor instead describes every
pair or triplet of atoms within a cutoff, so a structure has a variable number of
*instances*, each with a few features, a *class* (the species it involves), a smooth
cutoff weight and the atoms it touches. :class:`Instances` holds them for one structure;
:class:`InstanceDescriptor` is the shared part of :class:`~gapy.descriptors.TwoBody` and
:class:`~gapy.descriptors.ThreeBody` (parameters, species checks, batches).

The local energy of such a term is ``sum_n w_n g(x_n)`` over instances with cutoff
weight ``w_n``, features ``x_n`` and a latent function ``g`` (a sparse GP, see
``gapy.gp.terms``); the ``energy_shares`` of an instance say how that energy is split
among its atoms for the local-energy rows.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from .._validation import check_number
from ..parallel import thread_map
from ..structures import check_species, species_indices
from .soap import GradientsArg
from .soap import _parse_gradients as parse_gradients  # one definition of the argument


@dataclass
class Instances:
    """Instances (pairs or triplets) of one structure, with optional gradients.

    Made by :meth:`TwoBody.compute <gapy.TwoBody.compute>` and
    :meth:`ThreeBody.compute <gapy.ThreeBody.compute>`; every parameter is stored as an
    attribute of the same name, and ``len(instances)`` is ``n_instances``.

    Parameters
    ----------
    values : ndarray of shape (n_instances, n_features)
        Features of each instance (Angstrom or Angstrom^2, see the descriptor).
    classes : ndarray of int of shape (n_instances,)
        Class of each instance (a combination of species, see ``class_labels()``).
    weights : ndarray of shape (n_instances,)
        Smooth cutoff weight in [0, 1] of each instance.
    atoms : ndarray of int of shape (n_instances, n_slots)
        The atoms of each instance (``n_slots`` is 2 for pairs, 3 for triplets); an
        atom may fill two slots when an instance reaches its own periodic image.
    energy_shares : ndarray of shape (n_slots,)
        Fraction of an instance's energy attributed to the atom in each slot (sums to 1).
    n_atoms : int
        Number of atoms of the structure.
    dvalues : ndarray of shape (n_instances, n_slots, 3, n_features) or None, default=None
        ``dvalues[n, s, a] = d values[n] / d positions[atoms[n, s], a]``; ``None``
        without position gradients.
    dweights : ndarray of shape (n_instances, n_slots, 3) or None, default=None
        ``d weights[n] / d positions[atoms[n, s], a]`` (1/Angstrom).
    dvalues_strain : ndarray of shape (n_instances, 3, 3, n_features) or None, default=None
        ``d values[n] / d epsilon[a, b]`` under the deformation ``r -> (1 + epsilon) r``
        of positions and cell (not symmetrised); ``None`` without strain gradients.
    dweights_strain : ndarray of shape (n_instances, 3, 3) or None, default=None
        ``d weights[n] / d epsilon[a, b]``.

    Examples
    --------
    >>> from ase import Atoms
    >>> from gapy import TwoBody
    >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
    >>> pairs = TwoBody(["Si"], r_cut=3.0).compute(dimer, gradients="positions")
    >>> len(pairs), pairs.n_atoms, pairs.atoms.tolist(), pairs.energy_shares.tolist()
    (1, 2, [[0, 1]], [0.5, 0.5])
    >>> pairs.dvalues[0, :, :, 0].tolist()  # d r / d positions of atoms 0 and 1
    [[-0.0, -0.0, -1.0], [0.0, 0.0, 1.0]]
    """

    values: np.ndarray
    classes: np.ndarray
    weights: np.ndarray
    atoms: np.ndarray
    energy_shares: np.ndarray
    n_atoms: int
    dvalues: Optional[np.ndarray] = None
    dweights: Optional[np.ndarray] = None
    dvalues_strain: Optional[np.ndarray] = None
    dweights_strain: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def has_gradients(self) -> bool:
        """Whether position gradients are present (``dvalues`` is not None).

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy import TwoBody
        >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
        >>> pairs = TwoBody(["Si"], r_cut=3.0)
        >>> pairs.compute(dimer).has_gradients, pairs.compute(dimer, gradients="positions").has_gradients
        (False, True)
        """
        return self.dvalues is not None

    @property
    def has_strain(self) -> bool:
        """Whether strain gradients are present (``dvalues_strain`` is not None).

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy import TwoBody
        >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
        >>> pairs = TwoBody(["Si"], r_cut=3.0)
        >>> pairs.compute(dimer, gradients="positions").has_strain, pairs.compute(dimer, gradients=True).has_strain
        (False, True)
        """
        return self.dvalues_strain is not None


def cosine_cutoff(distance: np.ndarray, r_cut: float, width: float) -> Tuple[np.ndarray, np.ndarray]:
    """Smooth cutoff and its derivative, elementwise.

    ``f_c(r) = 1`` for ``r <= r_cut - width``, ``(1 + cos(pi (r - r_cut + width) /
    width)) / 2`` up to ``r_cut`` and 0 beyond (QUIP's ``coordination_function``; the
    same function as SOAP's cutoff).

    Parameters
    ----------
    distance : ndarray
        Distances in Angstrom.
    r_cut, width : float
        Cutoff and transition width in Angstrom.

    Returns
    -------
    f_c, df_c : ndarray
        Values and derivatives (1/Angstrom), of the shape of ``distance``.
    """
    distance = np.asarray(distance, dtype=float)
    phase = np.pi * np.clip((distance - (r_cut - width)) / width, 0.0, 1.0)
    inside = (distance > r_cut - width) & (distance < r_cut)
    value = 0.5 * (1.0 + np.cos(phase))
    derivative = np.where(inside, -0.5 * np.pi / width * np.sin(phase), 0.0)
    return value, derivative


def unordered_pair_index(a: np.ndarray, b: np.ndarray, n_species: int) -> np.ndarray:
    """Index of the unordered species pair ``{a, b}`` among the ``n (n + 1) / 2`` pairs.

    Pairs are numbered ``(0, 0), (0, 1), ..., (0, n-1), (1, 1), ...``.
    """
    low = np.minimum(a, b)
    high = np.maximum(a, b)
    return low * n_species - low * (low - 1) // 2 + (high - low)


class InstanceDescriptor:
    """Shared parameters and checks of the pair and triplet descriptors.

    Subclasses define ``compute``, ``n_features``, ``feature_names``, ``n_classes`` and
    ``class_labels``; use :class:`~gapy.TwoBody` or :class:`~gapy.ThreeBody`.

    Parameters
    ----------
    species : sequence of str or int
        Every chemical species that may occur, as symbols or atomic numbers.
    r_cut : float, default=5.0
        Cutoff radius in Angstrom (> 0).
    cutoff_width : float, default=1.0
        Width of the cosine transition below ``r_cut``, in Angstrom;
        ``0 < cutoff_width <= r_cut``.

    Attributes
    ----------
    atomic_numbers : ndarray of int
        Sorted atomic numbers of ``species``.

    Raises
    ------
    ValueError
        An empty, duplicated or unknown species, a cutoff that is not > 0, or
        ``cutoff_width > r_cut``.
    TypeError
        ``r_cut`` or ``cutoff_width`` is not a number.

    Examples
    --------
    >>> from gapy import TwoBody
    >>> pairs = TwoBody(["Si", "C"], r_cut=4.0, cutoff_width=0.5)
    >>> pairs.atomic_numbers.tolist(), pairs.n_species
    ([6, 14], 2)
    """

    #: short name used in progress bars
    _name = "instances"

    def __init__(
        self,
        species: Sequence[Union[str, int]],
        r_cut: float = 5.0,
        cutoff_width: float = 1.0,
    ):
        numbers = check_species(species)
        check_number("r_cut", r_cut, low=0.0)
        check_number("cutoff_width", cutoff_width, low=0.0)
        if cutoff_width > r_cut:
            raise ValueError(f"cutoff_width={cutoff_width} must not exceed r_cut={r_cut}")
        # stored as given, so that scikit-learn's clone() sees the same objects
        self.species = species
        self.r_cut = r_cut
        self.cutoff_width = cutoff_width
        self.atomic_numbers = numbers

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments, so that ``type(d)(**d.get_params())`` is a copy.

        Together with :meth:`set_params` this lets scikit-learn clone and grid-search
        an estimator holding the descriptor (``descriptor__r_cut``).

        Parameters
        ----------
        deep : bool, default=True
            Ignored: a descriptor holds no nested estimators (scikit-learn's signature).

        Returns
        -------
        dict
            ``species``, ``r_cut`` and ``cutoff_width``, as given to the constructor.

        Examples
        --------
        >>> from gapy import ThreeBody
        >>> triplets = ThreeBody(["Si"], r_cut=3.5)
        >>> triplets.get_params()
        {'species': ['Si'], 'r_cut': 3.5, 'cutoff_width': 1.0}
        >>> ThreeBody(**triplets.get_params()) == triplets
        True
        """
        return {"species": self.species, "r_cut": self.r_cut, "cutoff_width": self.cutoff_width}

    def set_params(self, **params) -> "InstanceDescriptor":
        """Change settings (validated as in the constructor); returns ``self``.

        Parameters
        ----------
        **params
            Constructor parameters to change (``r_cut=4.5``, ...).

        Returns
        -------
        InstanceDescriptor
            ``self``, changed.

        Raises
        ------
        ValueError
            An unknown parameter, or a value the constructor rejects.
        TypeError
            A numeric parameter is not a number.

        Examples
        --------
        >>> from gapy import TwoBody
        >>> TwoBody(["Si"], r_cut=4.0).set_params(r_cut=5.0, cutoff_width=0.5)
        TwoBody(species=['Si'], r_cut=5.0, cutoff_width=0.5)
        """
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameters {sorted(unknown)}")
        self.__init__(**{**self.get_params(), **params})
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and _canonical(self) == _canonical(other)

    __hash__ = None

    # ------------------------------------------------------------------ species
    @property
    def n_species(self) -> int:
        """Number of species.

        Examples
        --------
        >>> from gapy import TwoBody
        >>> TwoBody(["Si", "Ge", "C"]).n_species
        3
        """
        return len(self.atomic_numbers)

    def species_indices(self, atoms: Atoms, index: Optional[int] = None) -> np.ndarray:
        """Index of each atom's species in ``atomic_numbers``, with a clear error.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure.
        index : int, optional
            The structure's place in a data set; only serves the error message.

        Returns
        -------
        ndarray of int of shape (n_atoms,)
            Position of each atom's atomic number in the sorted ``atomic_numbers``.

        Raises
        ------
        StructureError
            A species that the descriptor does not know.

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy import TwoBody
        >>> TwoBody(["Si", "C"]).species_indices(Atoms("SiCSi")).tolist()  # C is 6, Si is 14
        [1, 0, 1]
        """
        return species_indices(atoms, self.atomic_numbers, type(self).__name__, index, self.species)

    # ------------------------------------------------------------------ batches
    def compute(self, atoms: Atoms, gradients: GradientsArg = False, *,
                index: Optional[int] = None) -> Instances:  # pragma: no cover - abstract
        """Instances of one structure, and optionally their gradients (in subclasses).

        Parameters
        ----------
        atoms : ase.Atoms
            Periodic, partly periodic or isolated structure.
        gradients : bool, str or sequence of str, default=False
            ``True`` for position and strain gradients, ``"positions"`` for position
            gradients only, ``("positions", "strain")`` for both.
        index : int, optional
            Index of the structure in a data set, used in error messages.

        Returns
        -------
        Instances
            The pairs or triplets of ``atoms`` (see :meth:`TwoBody.compute
            <gapy.TwoBody.compute>`, :meth:`ThreeBody.compute <gapy.ThreeBody.compute>`).

        Raises
        ------
        NotImplementedError
            Here: the base class has no instances.

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy import TwoBody
        >>> TwoBody(["Si"], r_cut=3.0).compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])).values
        array([[2.]])
        """
        raise NotImplementedError(f"{type(self).__name__} does not define compute()")

    def compute_many(
        self,
        frames: Sequence[Atoms],
        gradients: GradientsArg = False,
        n_jobs: int = 1,
        progress: bool = False,
    ) -> List[Instances]:
        """:meth:`compute` for each structure, in parallel threads.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            The structures.
        gradients : bool, str or sequence of str, default=False
            As in :meth:`compute`.
        n_jobs : int, default=1
            Number of threads (``-1``: all cores).
        progress : bool, default=False
            Show a tqdm progress bar.

        Returns
        -------
        list of Instances
            One per structure, in order.

        Raises
        ------
        ValueError
            An unknown ``gradients`` value.
        StructureError
            As in :meth:`compute`.

        Examples
        --------
        >>> from gapy import TwoBody
        >>> from gapy.datasets import load_si
        >>> found = TwoBody(["Si"], r_cut=3.0).compute_many(load_si("train")[:2])
        >>> [len(instances) > 0 for instances in found]
        [True, True]
        """
        frames = list(frames)
        parse_gradients(gradients)
        bar = tqdm(total=len(frames), desc=self._name, unit="structure", disable=not progress)
        with bar:
            return thread_map(
                lambda item: self.compute(item[1], gradients, index=item[0]),
                list(enumerate(frames)), n_jobs, bar,
            )

    def collect(self, frames: Sequence[Atoms], n_jobs: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Values and classes of all instances of ``frames``, for choosing sparse points.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            The structures (training structures, typically).
        n_jobs : int, default=1
            Number of threads.

        Returns
        -------
        values : ndarray of shape (n_instances_total, n_features)
            Features of every instance with a non-zero cutoff weight, structure after
            structure.
        classes : ndarray of int of shape (n_instances_total,)
            Class of each of those instances.

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy import TwoBody
        >>> trimer = Atoms("Si3", positions=[[0, 0, 0], [0, 0, 2.0], [0, 0, 5.0]])
        >>> values, classes = TwoBody(["Si"], r_cut=4.0).collect([trimer])  # 5 A is beyond r_cut
        >>> values.tolist(), classes.tolist()
        ([[2.0], [3.0]], [0, 0])
        """
        found = self.compute_many(frames, n_jobs=n_jobs)
        values = [inst.values[inst.weights > 0] for inst in found]
        classes = [inst.classes[inst.weights > 0] for inst in found]
        return (
            np.concatenate(values) if values else np.zeros((0, self.n_features)),
            np.concatenate(classes) if classes else np.zeros(0, dtype=np.int64),
        )

    @property
    def n_features(self) -> int:  # pragma: no cover - abstract
        """Number of features of an instance (defined by subclasses).

        Examples
        --------
        >>> from gapy import ThreeBody, TwoBody
        >>> TwoBody(["Si"]).n_features, ThreeBody(["Si"]).n_features
        (1, 3)
        """
        raise NotImplementedError

    @property
    def n_classes(self) -> int:  # pragma: no cover - abstract
        """Number of classes of instances (defined by subclasses).

        Examples
        --------
        >>> from gapy import ThreeBody, TwoBody
        >>> TwoBody(["Si", "C"]).n_classes, ThreeBody(["Si", "C"]).n_classes
        (3, 6)
        """
        raise NotImplementedError


def _canonical(descriptor: InstanceDescriptor) -> tuple:
    params = descriptor.get_params()
    params["species"] = tuple(int(z) for z in descriptor.atomic_numbers)
    return tuple(sorted((k, v if k == "species" else float(v)) for k, v in params.items()))
