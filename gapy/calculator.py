"""``GAPCalculator``: an ASE calculator for a fitted GAP, with optional uncertainties."""

import os
import threading
from typing import Optional, Sequence, Union

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from sklearn.utils.validation import check_is_fitted

from .estimator import GAPRegressor, load_model
from .gp import check_variance_kind

#: Result keys that ``SinglePointCalculator`` accepts and extxyz writes as they are.
_STANDARD_KEYS = ("energy", "free_energy", "energies", "forces", "stress")
#: Uncertainty keys, stored per structure (``atoms.info``) or per atom (``atoms.arrays``).
_INFO_STD_KEYS = ("energy_std", "stress_std")
_ARRAY_STD_KEYS = ("energies_std", "forces_std")


class GAPCalculator(Calculator):
    """ASE calculator evaluating a fitted :class:`~gapy.GAPRegressor`.

    Results are in ASE units: ``energy``, ``free_energy`` (eV, equal), ``energies``
    (eV per atom, shape (n_atoms,)), ``forces`` (eV/A, shape (n_atoms, 3)) and, for
    structures periodic in all three directions, ``stress`` (eV/A^3, Voigt order xx,
    yy, zz, yz, xz, xy; positive is tensile). Standard deviations of the predictions
    are under ``energy_std``, ``energies_std``, ``forces_std`` and ``stress_std``
    (same units and shapes, always >= 0).

    Without ``compute_std`` a calculation takes the reverse-mode path of
    :meth:`GAPRegressor.predict_all` (no kernel rows, no variances), so molecular
    dynamics pays nothing for the uncertainty machinery. Asking for any ``*_std``
    property (``calc.get_property("forces_std", atoms)``) computes the variances on
    demand for the current structure; results are cached until the structure changes.

    Parameters
    ----------
    model : GAPRegressor, str or os.PathLike
        A fitted model, or the path of a model file written by :meth:`GAPRegressor.save`.
    compute_std : bool, default=False
        Compute the standard deviations with every calculation.
    variance : {"sor", "dtc", "local"}, optional
        Kind of predictive variance (default: the model's ``variance`` parameter), see
        :meth:`gapy.gp.SparseGP.variance`.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator` (``label``, ``atoms``,
        ...).

    Attributes
    ----------
    model : GAPRegressor
        The fitted model.
    n_calculations : int
        Number of times the model was evaluated (ASE's cache avoids re-evaluations).

    Raises
    ------
    TypeError
        ``model`` is neither a ``GAPRegressor`` nor a path.
    sklearn.exceptions.NotFittedError
        ``model`` is an unfitted ``GAPRegressor``.
    FileNotFoundError
        ``model`` is a path to a file that does not exist.
    gapy.ModelFileError
        ``model`` is a path to a corrupt file or not a gapy model.

    See Also
    --------
    store_results : Keep the results, stds included, on the structure for extxyz.

    References
    ----------
    A. P. Bartók, M. C. Payne, R. Kondor and G. Csányi, "Gaussian approximation
    potentials: the accuracy of quantum mechanics, without the electrons", Phys. Rev.
    Lett. 104, 136403 (2010).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy import GAPCalculator, GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20,
    ...                      random_state=0).fit(load_si("train")[:4])
    >>> atoms = bulk("Si", cubic=True)
    >>> atoms.calc = GAPCalculator(model)
    >>> atoms.get_forces().shape
    (8, 3)
    >>> atoms.calc.get_property("forces_std", atoms).shape
    (8, 3)
    """

    implemented_properties = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "energy_std",
        "energies_std",
        "forces_std",
        "stress_std",
    ]
    nolabel = True

    default_parameters = {"compute_std": False, "variance": None}
    discard_results_on_any_change = True

    def __init__(
        self,
        model: Union[GAPRegressor, str, os.PathLike],
        compute_std: bool = False,
        variance: Optional[str] = None,
        **kwargs,
    ):
        if isinstance(model, (str, os.PathLike)):
            model = load_model(model)
        elif not isinstance(model, GAPRegressor):
            raise TypeError(
                f"model must be a fitted GAPRegressor or the path of a model file, "
                f"got {type(model).__name__}"
            )
        check_is_fitted(model, "gp_")
        self.model = model
        self._model_state = model_state(model)
        self.n_calculations = 0
        self._lock = threading.RLock()
        Calculator.__init__(self, compute_std=compute_std, variance=variance, **kwargs)

    def __getstate__(self) -> dict:
        """The calculator's state for pickling and ``copy.deepcopy`` (multiprocessing), without its lock.

        Returns
        -------
        dict
            The attributes; the copy gets a lock of its own (:meth:`__setstate__`).

        Examples
        --------
        >>> import pickle
        >>> from ase.build import bulk
        >>> from gapy import GAPCalculator, GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> atoms = bulk("Si", cubic=True)
        >>> atoms.calc = pickle.loads(pickle.dumps(GAPCalculator(model)))
        >>> atoms.get_forces().shape
        (8, 3)
        """
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled or deep-copied calculator, with a new lock.

        Parameters
        ----------
        state : dict
            What :meth:`__getstate__` returned.
        """
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @property
    def compute_std(self) -> bool:
        """Whether every calculation computes the standard deviations (``calc.set(compute_std=...)``).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPCalculator, GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> calc = GAPCalculator(model)
        >>> calc.compute_std
        False
        >>> _ = calc.set(compute_std=True)
        >>> calc.compute_std
        True
        """
        return bool(self.parameters["compute_std"])

    @property
    def variance(self) -> Optional[str]:
        """Kind of predictive variance (``None``: the model's); change it with ``calc.set(variance=...)``.

        One of ``"sor"``, ``"dtc"``, ``"local"`` or ``None``; see
        :meth:`gapy.gp.SparseGP.variance`.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPCalculator, GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> calc = GAPCalculator(model, variance="local")
        >>> calc.variance
        'local'
        """
        return self.parameters["variance"]

    def set(self, **kwargs) -> dict:
        """Change ``compute_std`` or ``variance``; cached results are cleared when they change.

        Parameters
        ----------
        **kwargs
            ``compute_std`` (bool) and/or ``variance`` (``"sor"``, ``"dtc"``,
            ``"local"`` or ``None``: the model's).

        Returns
        -------
        dict
            The parameters that changed, with their new values (as ASE's
            ``Calculator.set``).

        Raises
        ------
        TypeError
            A parameter other than ``compute_std`` and ``variance``.
        ValueError
            ``variance`` is not one of the allowed kinds.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPCalculator, GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> calc = GAPCalculator(model)
        >>> calc.set(variance="sor", compute_std=False)
        {'variance': 'sor'}
        """
        if kwargs.get("variance") is not None:
            check_variance_kind(kwargs["variance"])
        if "compute_std" in kwargs:
            kwargs["compute_std"] = bool(kwargs["compute_std"])
        unknown = set(kwargs) - set(self.default_parameters)
        if unknown:
            raise TypeError(f"GAPCalculator has no parameters {sorted(unknown)}; it has {sorted(self.default_parameters)}")
        with self._lock:
            return Calculator.set(self, **kwargs)

    def get_property(self, name: str, atoms: Optional[Atoms] = None, allow_calculation: bool = True):
        """A property of ``atoms``, as ASE's ``Calculator.get_property``, one thread at a time.

        A calculator shared between threads returns each caller the results for its own
        structure.

        Parameters
        ----------
        name : str
            One of :attr:`implemented_properties`: ``"energy"``, ``"free_energy"``
            (eV), ``"energies"`` (eV), ``"forces"`` (eV/A), ``"stress"`` (eV/A^3) or
            their ``"*_std"`` standard deviations.
        atoms : ase.Atoms, optional
            The structure (default: the calculator's last one); it is evaluated if it
            changed since the cached results.
        allow_calculation : bool, default=True
            ``False``: return only a cached result, ``None`` if there is none.

        Returns
        -------
        float or ndarray
            The property: a float for ``energy``, ``free_energy`` and ``energy_std``;
            ndarray of shape (n_atoms,) for ``energies`` and ``energies_std``, (n_atoms, 3)
            for ``forces`` and ``forces_std``, (6,) for ``stress`` and ``stress_std``.
            Arrays are copies.

        Raises
        ------
        ase.calculators.calculator.PropertyNotImplementedError
            An unknown property, or ``stress`` of a structure that is not periodic in all
            three directions.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPCalculator, GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> atoms = bulk("Si", cubic=True)
        >>> calc = GAPCalculator(model)
        >>> calc.get_property("energies_std", atoms).shape
        (8,)
        >>> calc.get_property("forces_std", atoms, allow_calculation=False) is None
        True
        """
        with self._lock:
            forget_results_of_a_changed_model(self)
            return Calculator.get_property(self, name, atoms, allow_calculation)

    def calculate(
        self,
        atoms: Optional[Atoms] = None,
        properties: Optional[Sequence[str]] = None,
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Evaluate the model on ``atoms`` and fill ``self.results``.

        Energy, per-atom energies, forces and (periodic structures) stress are computed
        together: they come from one pass. With ``compute_std`` all standard deviations
        are added; otherwise a requested ``*_std`` property computes that standard
        deviation only (variances are the expensive part; with a force or stress std, the
        cheaper energy stds come along), merged into the cached results. Calls are serialised by a lock, so one calculator can serve several
        threads.

        Parameters
        ----------
        atoms : ase.Atoms, optional
            The structure (default: the calculator's current one).
        properties : sequence of str, optional
            Properties asked for (default: ``["energy"]``); the ``*_std`` ones decide
            which standard deviations are computed.
        system_changes : sequence of str, default=ase.calculators.calculator.all_changes
            What changed since the last calculation (ASE's list); any change clears the
            cached results.

        Raises
        ------
        ase.calculators.calculator.PropertyNotImplementedError
            ``stress`` or ``stress_std`` requested for a structure that is not periodic
            in all three directions.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPCalculator, GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> atoms = bulk("Si", cubic=True)
        >>> calc = GAPCalculator(model)
        >>> calc.calculate(atoms, ["energy", "forces_std"])
        >>> sorted(calc.results)
        ['energies', 'energies_std', 'energy', 'energy_std', 'forces', 'forces_std', 'free_energy', 'stress']
        """
        with self._lock:
            self._calculate(atoms, properties, system_changes)

    def _calculate(self, atoms, properties, system_changes) -> None:
        properties = list(properties) if properties is not None else ["energy"]
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.all())
        if not periodic and {"stress", "stress_std"} & set(properties):
            raise PropertyNotImplementedError(
                f"stress is only defined for structures periodic in all directions; "
                f"this one has pbc={atoms.pbc.tolist()}"
            )
        if system_changes:
            self.results = {}
        # variances are the costly part: without compute_std, only those asked for
        requested_std = {name[: -len("_std")] for name in properties if name.endswith("_std")}
        if requested_std & {"forces", "stress"}:  # the energy stds then cost a third or less more
            requested_std |= {"energy", "energies"}
        (result,) = self.model.predict_all(
            [atoms], return_std=True if self.compute_std else requested_std, variance=self.variance,
            properties=_PREDICTED,
        )
        self.n_calculations += 1
        self.results.update(result)


#: The fitted attributes of a model that its predictions read: a refit or ``calibrate`` replaces them.
_MODEL_STATE = ("gp_", "descriptor_", "term_descriptors_", "e0_", "baseline_", "std_scale_", "std_scale_variance_",
                "std_noise_weight_", "label_sigmas_")


def model_state(model: GAPRegressor) -> tuple:
    """What a fitted model's predictions depend on.

    Its fitted attributes (compared by identity: a refit or ``calibrate`` replaces them),
    then its ``variance`` and ``std_noise``.
    """
    return tuple(getattr(model, name, None) for name in _MODEL_STATE) + (model.variance, model.std_noise)


def forget_results_of_a_changed_model(calculator: Calculator) -> None:
    """Clear ``calculator.results`` when its ``model`` changed since they were computed.

    A refit, ``calibrate`` or ``set_params(variance=..., std_noise=...)`` of the model the
    calculator holds changes its predictions; ASE's cache checks only the atoms.
    """
    state = model_state(calculator.model)
    old = calculator._model_state
    if any(a is not b for a, b in zip(state[:-2], old[:-2])) or state[-2:] != old[-2:]:
        calculator.results = {}
        calculator._model_state = state


#: What :meth:`GAPCalculator.calculate` asks the model for (stress only if periodic).
_PREDICTED = ("energy", "energies", "forces", "stress")


def store_results(atoms: Atoms, results: dict) -> None:
    """Attach ``results`` to ``atoms`` so that extxyz writes all of them, stds included.

    ``SinglePointCalculator`` (and so ``ase.io.write``) keeps only ASE's standard
    properties. This puts ``energy``, ``free_energy``, ``energies``, ``forces`` and
    ``stress`` on a ``SinglePointCalculator`` and copies the uncertainties to
    ``atoms.info`` (``energy_std``, ``stress_std``) and ``atoms.arrays``
    (``energies_std``, ``forces_std``). ``atoms`` is modified in place: that is the
    purpose of this function. Stds left from an earlier call are removed first.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure the results belong to.
    results : dict
        Results of a :class:`GAPCalculator` (``calc.results``) or an element of
        :meth:`GAPRegressor.predict_all`.

    Raises
    ------
    ValueError
        A per-atom result whose length is not ``len(atoms)``.

    Examples
    --------
    >>> from gapy.calculator import store_results
    >>> from ase.build import bulk
    >>> atoms = bulk("Si")
    >>> store_results(atoms, {"energy": -10.0, "energy_std": 0.01})
    >>> atoms.get_potential_energy(), atoms.info["energy_std"]
    (-10.0, 0.01)
    """
    for key in _ARRAY_STD_KEYS + ("energies",):
        value = results.get(key)
        if value is not None and len(value) != len(atoms):
            raise ValueError(f"results[{key!r}] has {len(value)} rows but the structure has {len(atoms)} atoms")
    for key in _INFO_STD_KEYS:
        atoms.info.pop(key, None)
    for key in _ARRAY_STD_KEYS:
        if key in atoms.arrays:
            del atoms.arrays[key]
    standard = {key: results[key] for key in _STANDARD_KEYS if key in results}
    atoms.calc = SinglePointCalculator(atoms, **standard)
    for key in _INFO_STD_KEYS:
        if key in results:
            value = results[key]
            atoms.info[key] = float(value) if np.ndim(value) == 0 else np.array(value, dtype=float)
    for key in _ARRAY_STD_KEYS:
        if key in results:
            atoms.arrays[key] = np.array(results[key], dtype=float)
