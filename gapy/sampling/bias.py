"""Biased exploration: ASE calculators that add a bias to a fitted GAP.

Plain molecular dynamics only visits what is near where it starts. The two calculators
here add a bias energy ``V`` to the model's energy, so that any ASE dynamics driven by
them leaves the environments the model already knows:

* :class:`DescriptorMetadynamics`: metadynamics with the SOAP descriptor as collective
  variable (Yoo et al., npj Comput. Mater. 7, 131 (2021), "G-metaD"). Gaussians
  deposited in descriptor space at the environments visited push the system away from
  them.
* :class:`UncertaintyBias`: uncertainty-driven dynamics (Kulichenko et al., Nat. Comput.
  Sci. 3, 230 (2023)). The bias lowers the energy where the model's predicted variance
  is large, so the dynamics climbs towards what the model does not know.

Both biases are functions of the atoms' descriptor vectors ``q_i``; their forces and
virial come from ``dV/dq_i`` contracted with the SOAP gradients in one reverse-mode pass
(:meth:`gapy.SOAP.contract_gradients`), fused with the model's own forces (its 2-/3-body
terms and its repulsive baseline included, ``GAPRegressor(baseline="zbl")``: a bias
pushes towards whatever the model does not know, and a model fitted on bulk data alone
knows no repulsion between atoms closer than a bond, so explore with such a core). The
snapshots of a biased run are ordinary structures: label them with the reference, as
:func:`gapy.sampling.active_learning` does (``driver="metad"`` or ``"uncertainty"``).
"""

import threading
from typing import Optional, Sequence

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import voigt_6_to_full_3x3_stress
from sklearn.utils.validation import check_is_fitted

from .._validation import check_choice, check_integer, check_number
from ..calculator import GAPCalculator, forget_results_of_a_changed_model, model_state
from ..estimator import GAPRegressor
from ..exceptions import StructureError
from ..gp import check_variance_kind, voigt
from ..gp.terms import instance_weighted_gradients
from ..gp.variance import local_prior_variance
from ..labels import stress_from_virial
from ..structures import CLOSE_FACTOR, closest_covalent_pair

#: Collective variables of :class:`DescriptorMetadynamics`.
COLLECTIVE_VARIABLES = ("atoms", "structure")

#: The rule of the default ``variance_scale`` of :class:`UncertaintyBias`: the bias
#: reaches half its strength where the mean local variance is this many times the
#: model's median variance at its training environments (its sparse points).
HALF_STRENGTH_VARIANCE_RATIO = 10.0

_STD_KEYS = ("energy_std", "energies_std", "forces_std", "stress_std")


def _fitted_model(model) -> GAPRegressor:
    if isinstance(model, GAPCalculator):
        model = model.model
    if not isinstance(model, GAPRegressor):
        raise TypeError(f"model must be a fitted GAPRegressor or a GAPCalculator, got {type(model).__name__}")
    check_is_fitted(model, "gp_")
    return model


class _BiasedCalculator(Calculator):
    """A fitted GAP plus a bias ``V(q_1, ..., q_N)`` of the atoms' descriptor vectors.

    Subclasses define ``_bias(values, species, kernel, factor, instances, term_rows) -> (V,
    dV/dq, forces, virial)``, the last two from the extra terms' instances (zeros without).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "model_energy", "bias_energy",
                              *_STD_KEYS]
    nolabel = True
    discard_results_on_any_change = True

    def __init__(self, model, **kwargs):
        self.model = model = _fitted_model(model)
        self._model_state = model_state(model)
        self.n_calculations = 0
        self._lock = threading.RLock()
        self._stds = GAPCalculator(model)
        Calculator.__init__(self, **kwargs)

    # pickling and copy.deepcopy (multiprocessing) as GAPCalculator: without the lock, each copy gets its own
    __getstate__, __setstate__ = GAPCalculator.__getstate__, GAPCalculator.__setstate__

    def set(self, **kwargs) -> dict:
        """Change settings (checked); cached results are cleared when they change."""
        self._check({**self.parameters, **kwargs} if hasattr(self, "parameters") else
                    {**self.default_parameters, **kwargs})
        with self._lock:
            return Calculator.set(self, **kwargs)

    def _check(self, parameters: dict) -> None:
        self.check_parameters(parameters)

    @classmethod
    def check_parameters(cls, parameters: dict) -> dict:
        """Check settings (missing ones take their defaults) without a model.

        Returns
        -------
        dict
            All settings.

        Raises
        ------
        TypeError
            An unknown setting (the known ones are listed) or a value of the wrong type.
        ValueError
            A value out of range.
        """
        unknown = set(parameters) - set(cls.default_parameters)
        if unknown:
            raise TypeError(f"{cls.__name__} has no parameters {sorted(unknown)}; it has "
                            f"{sorted(cls.default_parameters)}")
        parameters = {**cls.default_parameters, **parameters}
        check_number("min_distance_factor", parameters["min_distance_factor"], 0.0, 1.0, low_inclusive=True)
        cls._check_values(parameters)
        return parameters

    @classmethod
    def _check_values(cls, parameters: dict) -> None:
        """Checks of the subclass's own settings."""

    def get_property(self, name: str, atoms: Optional[Atoms] = None, allow_calculation: bool = True):
        """As ASE's, one thread at a time; results of a model changed since are not kept."""
        with self._lock:
            forget_results_of_a_changed_model(self)
            return Calculator.get_property(self, name, atoms, allow_calculation)

    def calculate(self, atoms: Optional[Atoms] = None, properties: Optional[Sequence[str]] = None,
                  system_changes: Sequence[str] = all_changes) -> None:
        """Model energy, forces and stress plus the bias; ``*_std`` are the model's own.

        Raises
        ------
        gapy.StructureError
            Atoms closer than ``min_distance_factor`` times the sum of their covalent
            radii, or a non-finite energy or force (the bias blew up): stop this
            trajectory (:func:`gapy.sampling.run_md` does, keeping its snapshots).
        """
        with self._lock:
            properties = list(properties) if properties is not None else ["energy"]
            Calculator.calculate(self, atoms, properties, system_changes)
            atoms = self.atoms
            if not atoms.pbc.all() and {"stress", "stress_std"} & set(properties):
                raise PropertyNotImplementedError(
                    f"stress is only defined for structures periodic in all directions; this one has "
                    f"pbc={atoms.pbc.tolist()}")
            if system_changes or "energy" not in self.results:
                self.results = self._evaluate(atoms)
                self.n_calculations += 1
                self._after_calculation(atoms)
            for name in properties:
                if name in _STD_KEYS:
                    self.results[name] = self._stds.get_property(name, atoms)

    def _evaluate(self, atoms: Atoms) -> dict:
        model = self.model
        descriptor, gp = model.descriptor_, model.gp_
        self._check_distances(atoms)
        species = descriptor.species_indices(atoms)
        values = descriptor.compute(atoms)
        kernel, factor = gp.local_kernel(values, species)
        e0 = np.array([model.e0_[int(z)] for z in atoms.numbers])
        energies = kernel @ gp.alpha[:len(gp.sparse)] + e0
        terms = list(getattr(model, "term_descriptors_", {}).values())
        gradients = ["positions", "strain"] if atoms.pbc.all() else ["positions"]
        instances = [found.compute(atoms, gradients=gradients) for found in terms]
        term_rows = [term.rows(found) for term, found in zip(gp.terms, instances)]  # for the model and the bias
        bias, bias_weights, bias_forces, bias_virial = self._bias(values, species, kernel, factor, instances,
                                                                  term_rows)
        weights = gp.energy_gradient_weights(factor) + bias_weights
        forces, virial = descriptor.contract_gradients(atoms, weights)
        forces, virial = forces + bias_forces, virial + voigt_6_to_full_3x3_stress(bias_virial)
        if terms:  # the model's 2-/3-body terms, as it predicts
            energies, term_forces, term_virial = model._term_means(atoms, None, energies, terms, True,
                                                                   atoms.pbc.all(), term_rows)
            forces = forces + term_forces
            virial = virial + voigt_6_to_full_3x3_stress(term_virial)
        model_energy = float(energies.sum())
        baseline = getattr(model, "baseline_", None)
        if baseline is not None:  # the model's fixed repulsion (GAPRegressor(baseline="zbl")), as it predicts
            baseline_energies, baseline_forces, baseline_virial = baseline.compute(atoms)
            model_energy += float(baseline_energies.sum())
            forces = forces + baseline_forces
            virial = virial + voigt_6_to_full_3x3_stress(baseline_virial)
        energy = model_energy + bias
        if not (np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(virial).all()):
            raise StructureError(f"{type(self).__name__}: non-finite energy or forces (bias energy {bias!r} eV); "
                                 "the bias blew up: use a smaller height/strength")
        results = {"energy": energy, "free_energy": energy, "forces": forces, "model_energy": model_energy,
                   "bias_energy": float(bias)}
        if atoms.pbc.all():
            results["stress"] = stress_from_virial(voigt(virial), atoms)
        self._last_values, self._last_species = values, species
        return results

    def _after_calculation(self, atoms: Atoms) -> None:
        """Hook after each new evaluation (metadynamics deposits here)."""

    def _check_distances(self, atoms: Atoms) -> None:
        """Refuse atoms closer than ``min_distance_factor`` times their covalent radii."""
        found = closest_covalent_pair(atoms, self.parameters["min_distance_factor"])
        if found is not None:
            raise StructureError(f"{type(self).__name__}: {found}: the biased dynamics left physical geometries; "
                                 "this trajectory is stopped")

    def _bias(self, values, species, kernel, factor, instances, term_rows):
        """``(V, dV/dq, forces, virial)``: the bias, its gradient in the descriptor vectors and
        any forces (n_atoms, 3) and virial (6,) it has through the extra terms' instances
        (whose kernel rows are ``term_rows``)."""
        raise NotImplementedError("subclasses define the bias")


class DescriptorMetadynamics(_BiasedCalculator):
    """Metadynamics in SOAP space: a fitted GAP plus Gaussians at the environments visited.

    With ``collective_variable="atoms"`` every atom's descriptor vector ``q_i`` is a
    point in descriptor space and each deposit ``k`` adds a Gaussian at every atom's
    vector ``s_k`` of the visited structure:

    .. math::

        V = \\sum_k h_k \\sum_{i:\\,Z_i = Z_k} \\exp\\left(-\\frac{|q_i - s_k|^2}{2 w^2}\\right)

    (Gaussians act on atoms of their own species only). With ``"structure"`` the
    collective variable is the structure fingerprint ``F`` (the normalised mean of the
    atoms' unit descriptor vectors, :func:`gapy.sampling.structure_fingerprints`):
    ``V = N sum_k h_k exp(-|F - S_k|^2 / 2 w^2)`` for ``N`` atoms, so that ``height`` is
    per atom in both cases. Well-tempered metadynamics (``bias_temperature`` = ΔT)
    lowers each new height to ``h exp(-V_here / k_B ΔT)``, with ``V_here`` the bias per
    atom already present where it is deposited.

    A Gaussian is deposited after every ``stride``-th evaluation of a new structure
    (with ASE dynamics: every ``stride`` steps); ``stride=0`` deposits only on
    :meth:`deposit`. The energy is the model's plus the bias; forces and stress include
    the bias forces; ``bias_energy`` and ``model_energy`` are reported separately, and
    ``*_std`` are the model's own (computed on demand, as :class:`gapy.GAPCalculator`).

    Parameters
    ----------
    model : GAPRegressor or GAPCalculator
        A fitted model (2-/3-body terms and a baseline count in its energy); its SOAP
        descriptor is the collective variable.
    height : float, default=0.005
        Height of each Gaussian, eV per atom. With ``stride`` 5 the bias grows by at most
        0.001 eV per atom and step: the setting the exploration benchmark measured best
        (twice that rate labelled harder collisions and gave worse models;
        ``benchmarks/README.md``).
    width : float, default=0.05
        Width ``w`` in descriptor space (the descriptor vectors are unit vectors:
        distances lie between 0 and 2).
    stride : int, default=5
        Evaluations between automatic deposits (0: none).
    bias_temperature : float, optional
        ΔT of well-tempered metadynamics in K (``None``: plain metadynamics).
    collective_variable : {"atoms", "structure"}, default="atoms"
        ``"atoms"``: Gaussians on every atom's descriptor vector, per species;
        ``"structure"``: one Gaussian on the structure fingerprint per deposit. It cannot
        change once Gaussians were deposited (``ValueError``).
    min_distance_factor : float, default=0.5
        Refuse (``StructureError``, which stops :func:`gapy.sampling.run_md`) atoms
        closer than this times the sum of their covalent radii; 0 turns it off.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Attributes
    ----------
    n_deposits : int
        Deposits so far (calls of :meth:`deposit`, automatic ones included).
    n_calculations : int
        Evaluations of a new structure so far.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.sampling import label_structures
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
    ...     label_structures([atoms], EMT()))
    >>> crystal = bulk("Cu", cubic=True)  # four identical environments
    >>> crystal.calc = DescriptorMetadynamics(model, height=0.05, stride=0)
    >>> crystal.calc.deposit(crystal)  # four Gaussians, one per atom
    >>> round(crystal.calc.get_property("bias_energy", crystal), 6)  # 4 atoms x 4 x 0.05 eV
    0.8
    """

    default_parameters = {"height": 0.005, "width": 0.05, "stride": 5, "bias_temperature": None,
                          "collective_variable": "atoms", "min_distance_factor": CLOSE_FACTOR}

    def __init__(self, model, height: float = 0.005, width: float = 0.05, stride: int = 5,
                 bias_temperature: Optional[float] = None, collective_variable: str = "atoms",
                 min_distance_factor: float = CLOSE_FACTOR, **kwargs):
        self._centers = np.zeros((0, _fitted_model(model).descriptor_.n_features))
        self._center_species = np.zeros(0, dtype=np.int64)
        self._heights = np.zeros(0)
        self.n_deposits = 0
        super().__init__(model, height=height, width=width, stride=stride, bias_temperature=bias_temperature,
                         collective_variable=collective_variable, min_distance_factor=min_distance_factor,
                         **kwargs)

    @classmethod
    def _check_values(cls, parameters: dict) -> None:
        check_number("height", parameters["height"], 0.0, low_inclusive=True)
        check_number("width", parameters["width"], 0.0)
        check_integer("stride", parameters["stride"], 0)
        check_number("bias_temperature", parameters["bias_temperature"], 0.0, allow_none=True)
        check_choice("collective_variable", parameters["collective_variable"], COLLECTIVE_VARIABLES)

    def _check(self, parameters: dict) -> None:
        super()._check(parameters)
        if getattr(self, "n_deposits", 0) and hasattr(self, "parameters") and \
                parameters["collective_variable"] != self.parameters["collective_variable"]:
            raise ValueError("collective_variable cannot change after Gaussians were deposited; "
                             "start a new DescriptorMetadynamics")

    @property
    def centers(self) -> np.ndarray:
        """Gaussian centres, ndarray of shape (n_gaussians, n_features).

        A copy: one row per Gaussian, in the order deposited (descriptor vectors with
        ``collective_variable="atoms"``, structure fingerprints with ``"structure"``).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from ase.calculators.emt import EMT
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.sampling import DescriptorMetadynamics, label_structures
        >>> atoms = bulk("Cu", cubic=True)
        >>> atoms.rattle(0.05, seed=0)
        >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
        ...     label_structures([atoms], EMT()))
        >>> calc = DescriptorMetadynamics(model, stride=0)
        >>> calc.centers.shape == (0, model.descriptor_.n_features)
        True
        >>> calc.deposit(atoms)  # one Gaussian per atom
        >>> calc.centers.shape == (len(atoms), model.descriptor_.n_features)
        True
        """
        return self._centers.copy()

    @property
    def heights(self) -> np.ndarray:
        """Gaussian heights in eV (per atom), ndarray of shape (n_gaussians,).

        A copy, in the order of :attr:`centers`: ``height`` each, or less with
        ``bias_temperature`` (well-tempered metadynamics).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from ase.calculators.emt import EMT
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.sampling import DescriptorMetadynamics, label_structures
        >>> atoms = bulk("Cu", cubic=True)
        >>> atoms.rattle(0.05, seed=0)
        >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
        ...     label_structures([atoms], EMT()))
        >>> calc = DescriptorMetadynamics(model, height=0.05, stride=0, bias_temperature=1000.0)
        >>> calc.deposit(atoms)
        >>> calc.deposit(atoms)  # on top of the first: lower
        >>> heights = calc.heights.reshape(2, len(atoms))
        >>> bool((heights[0] == 0.05).all() and (heights[1] < 0.05).all())
        True
        """
        return self._heights.copy()

    def deposit(self, atoms: Optional[Atoms] = None) -> None:
        """Add Gaussians at the descriptor vectors of ``atoms`` (default: the last structure).

        With ``collective_variable="atoms"`` one Gaussian per atom, with ``"structure"``
        one at the structure fingerprint; each of height ``height`` (lowered by the bias
        already there with ``bias_temperature``). Cached results are cleared.

        Parameters
        ----------
        atoms : ase.Atoms, optional
            Structure whose environments get the Gaussians (not modified); by default
            the last structure this calculator evaluated.

        Raises
        ------
        ValueError
            ``atoms`` is not given and no structure was evaluated yet.
        gapy.StructureError
            ``atoms`` has a species the model's descriptor does not know.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from ase.calculators.emt import EMT
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.sampling import DescriptorMetadynamics, label_structures
        >>> atoms = bulk("Cu", cubic=True)
        >>> atoms.rattle(0.05, seed=0)
        >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
        ...     label_structures([atoms], EMT()))
        >>> atoms.calc = DescriptorMetadynamics(model, height=0.05, stride=0)
        >>> before = atoms.calc.get_property("bias_energy", atoms)
        >>> atoms.calc.deposit()  # at the structure just evaluated
        >>> before, atoms.calc.n_deposits, len(atoms.calc.heights)
        (0.0, 1, 4)
        >>> bias = atoms.calc.get_property("bias_energy", atoms)  # 4 atoms x 4 Gaussians x 0.05 eV at most
        >>> bool(0.75 < bias <= 0.8)
        True
        """
        with self._lock:
            if atoms is None:
                if not hasattr(self, "_last_values"):
                    raise ValueError("deposit: no structure evaluated yet; give atoms")
                values, species = self._last_values, self._last_species
            else:
                descriptor = self.model.descriptor_
                species = descriptor.species_indices(atoms)
                values = descriptor.compute(atoms)
            height = float(self.parameters["height"])
            if self.parameters["collective_variable"] == "structure":
                centres, _ = _fingerprint(values)
                centres, species = centres[None, :], np.array([-1])
            else:
                centres = values
            here = self._weights(centres, species).sum(axis=1)  # bias per atom already there
            heights = np.full(len(centres), height)
            if self.parameters["bias_temperature"] is not None:
                heights = heights * np.exp(-np.asarray(here) / (units.kB * self.parameters["bias_temperature"]))
            self._centers = np.vstack([self._centers, centres])
            self._center_species = np.concatenate([self._center_species, species])
            self._heights = np.concatenate([self._heights, heights])
            self.n_deposits += 1
            self.results = {}  # the bias changed: cached results are stale

    def _weights(self, points: np.ndarray, species: np.ndarray) -> np.ndarray:
        """``h_k exp(-|p - s_k|^2 / 2 w^2)`` of each point and Gaussian, zero across species."""
        width = float(self.parameters["width"])
        squared = ((points**2).sum(axis=1)[:, None] + (self._centers**2).sum(axis=1)[None, :]
                   - 2.0 * points @ self._centers.T)
        weights = self._heights * np.exp(-np.maximum(squared, 0.0) / (2.0 * width**2))
        return weights * (species[:, None] == self._center_species[None, :])

    def _bias(self, values, species, kernel, factor, instances, term_rows):
        bias, weights = self._descriptor_bias(values, species)
        return bias, weights, np.zeros((len(values), 3)), np.zeros(6)

    def _descriptor_bias(self, values, species):
        """``(V, dV/dq)`` of the Gaussians deposited."""
        n_atoms = len(values)
        if not len(self._heights):
            return 0.0, np.zeros_like(values)
        width2 = float(self.parameters["width"]) ** 2
        if self.parameters["collective_variable"] == "structure":
            fingerprint, backward = _fingerprint(values)
            weights = self._weights(fingerprint[None, :], np.array([-1]))[0]
            bias = n_atoms * weights.sum()
            d_fingerprint = -n_atoms * (weights.sum() * fingerprint - weights @ self._centers) / width2
            return float(bias), backward(d_fingerprint)
        weights = self._weights(values, species)  # (n_atoms, n_gaussians)
        bias = weights.sum()
        gradient = -(weights.sum(axis=1)[:, None] * values - weights @ self._centers) / width2
        return float(bias), gradient

    def _after_calculation(self, atoms: Atoms) -> None:
        stride = self.parameters["stride"]
        if stride and self.n_calculations % stride == 0:
            results = self.results
            self.deposit()
            self.results = results  # those of this structure, with the bias before the deposit


def _fingerprint(values: np.ndarray):
    """Structure fingerprint ``F = u / |u|``, ``u = sum_i q_i / |q_i|``, and its backward map."""
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    unit = values / norms
    total = unit.sum(axis=0)
    length = np.linalg.norm(total)
    fingerprint = total / length

    def backward(d_fingerprint: np.ndarray) -> np.ndarray:
        d_total = (d_fingerprint - fingerprint * (fingerprint @ d_fingerprint)) / length
        return (d_total[None, :] - unit * (unit @ d_total)[:, None]) / norms

    return fingerprint, backward


class UncertaintyBias(_BiasedCalculator):
    """Uncertainty-driven dynamics: a fitted GAP plus a bias towards its own uncertainty.

    With ``s`` the mean over atoms of the predicted variances ``sigma_i^2`` of the local
    energies (eV^2),

    .. math::

        V = N A \\left[\\exp(-s / B) - 1\\right]

    (Kulichenko et al. 2023, with local instead of committee variances): the energy is
    lowered where the model is unsure, by up to ``A`` per atom, and the bias saturates
    once ``s`` is several ``B``, so the dynamics is pulled out of what the model knows
    without being flung away. For small ``s``, ``V ~ -(A / B) sum_i sigma_i^2``.

    The variance of ``e(q_i)`` is a function of ``q_i`` through the kernel row
    ``k_i = delta^2 (x_m . q_i)^zeta``: ``sigma_i^2 = k_i^T Sigma k_i`` (SoR), ``delta^2 -
    k_i^T K_MM^-1 k_i`` (local) or their sum (DTC), so ``d sigma_i^2 / d q_i`` follows
    from ``dk_i/dq_i = zeta delta^2 (x_m . q_i)^(zeta - 1) x_m`` and is contracted with
    the SOAP gradients like the model's own forces. Calibration factors of the energy
    std (:meth:`GAPRegressor.calibrate`) are applied as in the model's predictions.

    Parameters
    ----------
    model : GAPRegressor or GAPCalculator
        A fitted model.
    strength : float, default=0.1
        ``A``: largest bias in eV per atom.
    variance_scale : float, optional
        ``B`` in eV^2. Default: from the model's own variance on its data,
        ``B = X r / ln 2`` with ``X =`` ``HALF_STRENGTH_VARIANCE_RATIO = 10`` and
        ``r`` the :meth:`reference_variance` (the median predicted variance of the local
        energies at the sparse points, see Notes): the bias reaches half its strength
        where the mean variance ``s`` is ten times that of a typical training
        environment (a std about three times as large). :attr:`effective_variance_scale`
        is the ``B`` in use.
    variance : {"sor", "dtc", "local"}, optional
        Kind of variance (default: the model's).
    min_distance_factor : float, default=0.5
        As in :class:`DescriptorMetadynamics`.
    reference_frames : sequence of ase.Atoms, optional
        Training structures: ``r`` is then the median SoR variance of their atoms' local
        energies instead of the sparse points' (see Notes). Needed, or ``variance_scale``,
        for a model with extra terms (``ValueError`` otherwise).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Attributes
    ----------
    n_calculations : int
        Evaluations of a new structure so far.

    Notes
    -----
    Why the default ``B`` comes from the data rather than from ``delta``: the variance of a
    local energy runs from about ``r`` on the training environments (set by the noise
    of the fit and the density of the data) up to the prior ``delta^2`` far from them,
    and the two are not proportional (a model fitted with a 4 times larger ``delta``
    has 16 times the prior variance but about 9 times the variance on its data); a
    fixed fraction of ``delta^2`` (``delta^2 / 100`` before) can therefore sit anywhere
    relative to the data, and with evidence-fitted ``delta`` it is arbitrary. With
    ``B = 10 r / ln 2`` the rule is stated in the model's own terms: a structure as well
    known as the training set (``s ~ r``) feels the linear part of the bias (about 7 %
    of ``A`` per atom), half the strength is reached at ``s = 10 r``, and the bias is
    flat (more than 94 % of ``A``) beyond ``s = 40 r``. Being a ratio of variances, it is
    unchanged by a calibration of the std (:meth:`GAPRegressor.calibrate`) and by
    scaling ``delta``, the noise sigmas and the jitter together.

    ``r`` is the median, over the sparse points, of their posterior (SoR) variance
    ``k_m^T Sigma k_m``: the sparse points are training environments, there the local
    (Nystrom) part of the variance vanishes, so this is their DTC variance too, and it
    costs one product with the ``M x M`` factor. The same ``r`` is used whatever the
    ``variance`` kind of the bias (it is zero at the sparse points for ``"local"``),
    times the calibration factor applied to the bias's variances. Far from the data
    ``s`` can be hundreds of ``r`` (``B`` is then smaller than ``delta^2 / 100``): the
    bias is flat there, by design, and acts on the way out of the known environments.

    With extra terms (2-body, 3-body) ``sigma_i^2`` is the variance of the whole local
    energy: the row ``k_i`` holds each term's share of atom ``i`` (half of each of its
    pairs, its triplets) after SOAP's, so the posterior part covers the terms and their
    covariance with SOAP (they trade energy: SOAP's share alone is not fixed by the data),
    and its gradient flows through the pair and triplet instances
    (:func:`gapy.gp.terms.instance_weighted_gradients`). The Nystrom part (``"local"``,
    ``"dtc"``) is SOAP's; the terms' is left out (their sparse points are dense in their
    few features: for the recommended 2-body grid it is negligible). A sparse point has no
    pairs of its own, so ``r`` then comes from ``reference_frames``.

    References
    ----------
    M. Kulichenko et al., Uncertainty-driven dynamics for active learning of
    interatomic potentials, Nat. Comput. Sci. 3, 230 (2023).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.sampling import UncertaintyBias, label_structures
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
    ...     label_structures([atoms], EMT()))
    >>> probe = bulk("Cu", cubic=True)
    >>> probe.rattle(0.1, seed=1)
    >>> probe.calc = UncertaintyBias(model, strength=0.1)
    >>> bias = probe.calc.get_property("bias_energy", probe)
    >>> bool(-4 * 0.1 < bias < 0.0)  # lowered, by less than strength per atom
    True
    >>> total = probe.get_potential_energy()
    >>> bool(abs(total - probe.calc.get_property("model_energy", probe) - bias) < 1e-9)
    True
    >>> probe.get_forces().shape
    (4, 3)
    """

    default_parameters = {"strength": 0.1, "variance_scale": None, "variance": None,
                          "min_distance_factor": CLOSE_FACTOR}

    def __init__(self, model, strength: float = 0.1, variance_scale: Optional[float] = None,
                 variance: Optional[str] = None, min_distance_factor: float = CLOSE_FACTOR,
                 reference_frames: Optional[Sequence[Atoms]] = None, **kwargs):
        fitted = _fitted_model(model)
        self.reference_frames = None if reference_frames is None else list(reference_frames)
        if fitted.gp_.terms and variance_scale is None and not self.reference_frames:
            raise ValueError(
                "UncertaintyBias of a model with extra terms "
                f"({', '.join(fitted.term_descriptors_)}) needs variance_scale or reference_frames (training "
                "structures) for its scale: a sparse point is a SOAP environment, with no pairs or triplets "
                "of its own to give the terms' share of its variance")
        super().__init__(model, strength=strength, variance_scale=variance_scale, variance=variance,
                         min_distance_factor=min_distance_factor, **kwargs)

    @classmethod
    def _check_values(cls, parameters: dict) -> None:
        check_number("strength", parameters["strength"], 0.0, low_inclusive=True)
        check_number("variance_scale", parameters["variance_scale"], 0.0, allow_none=True)
        if parameters["variance"] is not None:
            check_variance_kind(parameters["variance"])

    def _calibration(self, kind: str) -> float:
        """Factor of the variances of ``kind``: the model's energy std calibration, squared."""
        model = self.model
        if kind == model.variance:
            return getattr(model, "std_scale_", {}).get("energy", 1.0) ** 2
        return 1.0

    def reference_variance(self) -> float:
        """The model's typical local-energy variance on its data (eV^2), ``r``.

        The median over the sparse points (training environments) of their posterior
        (SoR) variance ``k_m^T Sigma k_m``, equal there to the DTC variance, times the
        calibration factor applied to the bias's variances (see Notes of the class).
        The default ``variance_scale`` is ``HALF_STRENGTH_VARIANCE_RATIO * r / ln 2``.

        Returns
        -------
        float
            ``r`` in eV^2 (at least ``eps * delta^2``, so that it is positive).

        Examples
        --------
        >>> import numpy as np
        >>> from ase.build import bulk
        >>> from ase.calculators.emt import EMT
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.sampling import UncertaintyBias, label_structures
        >>> atoms = bulk("Cu", cubic=True)
        >>> atoms.rattle(0.05, seed=0)
        >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
        ...     label_structures([atoms], EMT()))
        >>> bias = UncertaintyBias(model)
        >>> reference = bias.reference_variance()
        >>> bool(0.0 < reference < model.gp_.delta**2)  # far below the prior on the data
        True
        >>> bool(np.isclose(bias.effective_variance_scale, 10.0 * reference / np.log(2.0)))
        True
        """
        kind = self.parameters["variance"] or self.model.variance
        references = self.__dict__.setdefault("_references", {})
        if kind not in references:
            gp = self.model.gp_
            if self.reference_frames:
                variances = np.concatenate([self._local_variances(atoms, "sor") for atoms in self.reference_frames])
            else:
                kernel, _ = gp.local_kernel(gp.sparse, gp.sparse_species)
                variances = gp.variance(kernel, "sor")  # k Sigma k^T at each sparse point
            reference = max(float(np.median(variances)), float(np.finfo(float).eps) * gp.delta**2)
            references[kind] = self._calibration(kind) * reference
        return references[kind]

    @property
    def effective_variance_scale(self) -> float:
        """``B`` in use (eV^2): ``variance_scale``, or the default of the data-derived rule.

        The default is ``HALF_STRENGTH_VARIANCE_RATIO * r / ln 2`` with ``r`` the
        :meth:`reference_variance`: the bias is half its strength where the mean local
        variance is ten times ``r``.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from ase.calculators.emt import EMT
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.sampling import UncertaintyBias, label_structures
        >>> atoms = bulk("Cu", cubic=True)
        >>> atoms.rattle(0.05, seed=0)
        >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
        ...     label_structures([atoms], EMT()))
        >>> UncertaintyBias(model, variance_scale=1e-3).effective_variance_scale
        0.001
        """
        scale = self.parameters["variance_scale"]
        if scale is not None:
            return float(scale)
        return HALF_STRENGTH_VARIANCE_RATIO * self.reference_variance() / float(np.log(2.0))

    def local_variances(self, atoms: Atoms) -> np.ndarray:
        """Predicted variances of the local energies (eV^2), as the bias sees them.

        Of the kind ``variance`` (default: the model's), calibrated as the model's
        predictions are (:meth:`gapy.GAPRegressor.calibrate`).

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified; no calculator needed).

        Returns
        -------
        ndarray of shape (n_atoms,)
            Variance ``sigma_i^2`` of each atom's local energy in eV^2; the bias is a
            function of their mean.

        Raises
        ------
        gapy.StructureError
            ``atoms`` has a species the model's descriptor does not know.

        Examples
        --------
        >>> import numpy as np
        >>> from ase.build import bulk
        >>> from ase.calculators.emt import EMT
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.sampling import UncertaintyBias, label_structures
        >>> atoms = bulk("Cu", cubic=True)
        >>> atoms.rattle(0.05, seed=0)
        >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
        ...     label_structures([atoms], EMT()))
        >>> variances = UncertaintyBias(model).local_variances(bulk("Cu", cubic=True))
        >>> variances.shape, bool(np.allclose(variances, variances[0]))  # four identical environments
        ((4,), True)
        """
        return self._local_variances(atoms)

    def _local_variances(self, atoms: Atoms, kind: Optional[str] = None) -> np.ndarray:
        descriptor, gp = self.model.descriptor_, self.model.gp_
        species = descriptor.species_indices(atoms)
        values = descriptor.compute(atoms)
        kernel, factor = gp.local_kernel(values, species)
        term_rows = [term.rows(found.compute(atoms)) for term, found
                     in zip(gp.terms, getattr(self.model, "term_descriptors_", {}).values())]
        return self._variances(values, species, kernel, factor, term_rows, kind)[0]

    def _variances(self, values, species, kernel: np.ndarray, factor: np.ndarray, term_rows=(), kind=None):
        """Variances of the local energies, their gradients ``d var_i / d q_i`` and, with extra
        terms, ``d var_i / d e_i`` for each term's local-energy row ``e_i``."""
        model, gp = self.model, self.model.gp_
        kind = kind or self.parameters["variance"] or model.variance
        scale = self._calibration(kind)
        n_soap = kernel.shape[1]
        rows = np.concatenate([kernel] + [part["energies"] for part in term_rows], axis=1)  # local-energy rows
        variances = np.zeros(len(kernel))
        d_rows = np.zeros_like(rows)  # d var_i / d k_i
        d_values = np.zeros_like(values)  # d var_i / d q_i through the prior
        if kind in ("sor", "dtc"):
            projected = rows @ gp._inverse_r  # (R^-T k)^T
            variances += (projected**2).sum(axis=1)
            d_rows += 2.0 * projected @ gp._inverse_r.T  # 2 Sigma k
        if kind in ("dtc", "local"):  # SOAP's Nystrom residual (the terms': see the class Notes)
            inverse_l = gp._inverse_l[:n_soap, :n_soap]  # K_MM is block-diagonal
            projected = kernel @ inverse_l.T  # (L^-1 k)^T
            prior = local_prior_variance(values, species, gp.zeta, gp.delta, gp.isolated)
            variances += prior - (projected**2).sum(axis=1)
            d_rows[:, :n_soap] -= 2.0 * projected @ inverse_l  # 2 K_MM^-1 k
            d_values += gp.local_prior_gradient(values, species)
        gradient = gp.contract_kernel_gradient(d_rows[:, :n_soap], factor) + d_values
        d_terms = [scale * d_rows[:, columns] for columns in gp.term_slices()]
        return scale * variances, scale * gradient, d_terms

    def _bias(self, values, species, kernel, factor, instances, term_rows):
        strength = float(self.parameters["strength"])
        scale = self.effective_variance_scale
        variances, d_variances, d_terms = self._variances(values, species, kernel, factor, term_rows)
        n_atoms = len(values)
        decay = np.exp(-variances.mean() / scale)
        bias = n_atoms * strength * (decay - 1.0)
        d_variance = -strength / scale * decay  # dV / d sigma_i^2, the same for every atom
        forces, virial = np.zeros((n_atoms, 3)), np.zeros(6)
        for term, found, d_rows in zip(self.model.gp_.terms, instances, d_terms):
            term_forces, term_virial = instance_weighted_gradients(
                found, term.sparse, term.sparse_classes, term.theta, term.delta, d_variance * d_rows)
            forces += term_forces
            if term_virial is not None:
                virial += term_virial
        return float(bias), d_variance * d_variances, forces, virial
