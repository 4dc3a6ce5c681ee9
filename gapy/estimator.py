"""``GAPRegressor``: a Gaussian Approximation Potential with a scikit-learn interface."""

import base64
import copy
import hashlib
import logging
import os
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from numbers import Real
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .baseline import ZBL, merge_shortest, shortest_pair_distances
from .descriptors import SOAP
from .exceptions import StructureError
from .gp import SparseSet, check_variance_kind, fit_sparse_gp, voigt
from .gp.sparse_gp import check_force_std_precision
from .gp.terms import InstanceSparseSet
from .gp.variance import local_prior_variance
from .io import estimator_state
from .io.frames import FileSource, FrameSource, frame_source, load_structure
from ._training_checks import (EnergyResiduals, KeptObservations, check_close_atoms, check_config_types, check_energies,
                               check_forces, check_labels, check_repeats, unfitted_message, warn_opposite_virials,
                               warn_rare_species)
from ._validation import check_choice, check_integer, check_number
from .gp.energy_noise import ENERGY_NOISE_SHARE, EnergyRows, choose_energy_sigma, energy_spread
from .gp.evidence import SEARCH_WINDOW, EvidenceStatistics, maximize_evidence, residual_shares, warn_at_bounds
from .kernels import check_theta, check_zeta
from .labels import (LABEL_DECIMALS, SIGMA_NAMES, Labels, digest, geometry_digest, label_fields, lookalike_labels,
                     mixed_label_names, read_labels, stress_from_virial)
from .parallel import runs_remotely, thread_map
from .sparsify import METHODS, CandidateReservoir, grid_points, instance_points, select_points
from .structures import (CLOSE_FACTOR, as_frames, atomic_number, closest_covalent_pair, is_isolated_atom,
                         structure_name)
from .term import TERMS, Term, check_term

logger = logging.getLogger(__name__)

#: Read a model file: :func:`gapy.io.estimator_state.load_model`, which ``gapy.load`` is too.
load_model = estimator_state.load_model

#: Fraction of a Gaussian within two standard deviations (the target of ``calibrate``).
GAUSSIAN_2SIGMA = 0.9545
#: Fewer values of a quantity than this (energies: one per structure) make :meth:`GAPRegressor.calibrate`
#: warn: one held-out energy set the energy factor to x0.046 in a gapy fit of 2 structures.
CALIBRATION_MIN_VALUES = 3
#: Fewer held-out structures than this make :meth:`GAPRegressor.calibrate` warn too: 5 of 25 EMT Cu structures
#: (``gapy fit --validation-fraction 0.2 --calibrate``) put 75-83 % of the errors of 20 others within two stds,
#: 30 structures 92-95 %.
CALIBRATION_MIN_STRUCTURES = 20
#: Fewer held-out values of a quantity than this leave the weight of its noise at 1 in :meth:`GAPRegressor.calibrate`
#: (one factor on the stds, as before): fitted to the 19-21 energies of a tenth of mlearn Si and Mo held out, the
#: weight put 88 and 91 % of the test energies within two stds, against 96 and 100 % unweighted.
NOISE_WEIGHT_MIN_VALUES = 100

#: Ways of choosing the reference energies ``e0`` from the data.
E0_METHODS = ("average", "isolated", "fit")

#: What :meth:`GAPRegressor.predict_all` can predict.
PROPERTIES = ("energy", "energies", "forces", "stress")

#: Structures whose descriptor gradients are computed together in pass 2 of ``fit``.
_BATCH = 16
#: Structures whose descriptors are computed together in pass 1 of ``fit``.
_FIRST_PASS_BATCH = 64
#: Default ``sparse_candidates``: environments per species below which the sparse points
#: are chosen among all of them (the mlearn Si and Mo sets, 13,233 and 10,087 atoms).
SPARSE_CANDIDATES = 20000


#: A label kind whose residuals after a fit have an RMS of at least this share of its labels is practically
#: not fitted (:meth:`GAPRegressor.maximize_evidence` warns, :func:`gapy.gp.evidence.residual_shares`; a plain
#: :meth:`GAPRegressor.fit` of its energies and virials, with given sigmas):
#: EMT Cu stresses or energies of the wrong sign 2.0; mlearn Si 0.26 (virials; 0.48 from 3 structures), forces of
#: ordinary data 0.01-0.15.
UNFITTED_SHARE = 1.0


class GAPRegressor(RegressorMixin, BaseEstimator):
    """Gaussian Approximation Potential: SOAP features and a sparse GP on local energies.

    The total energy is ``sum_s n_s e0_s + sum_i e(q_i)`` with the local energy
    ``e(q) = sum_m alpha_m delta^2 (q . x_m)^zeta`` over sparse points ``x_m`` of the same
    species. Fitted jointly on total energies, forces and (optionally) virials.

    Parameters
    ----------
    descriptor : SOAP, optional
        Descriptor; by default ``SOAP`` with the species found in the training data.
    zeta : int, default=4
        Kernel exponent.
    delta : float, default=1.0
        Kernel scale in eV (prior standard deviation of a local energy).
    n_sparse : int or dict, default=1000
        Sparse points per species (a dict maps species symbol or number to a count).
    sparse_method : {"cur", "fps", "random"}, default="cur"
        How sparse points are chosen, see :mod:`gapy.sparsify`.
    sparse_candidates : int or None, default=20000
        Environments per species among which the sparse points are chosen. A species
        with more environments in the training set is represented by a seeded uniform
        sample of this many (streamed: ``fit`` holds at most ``1.25 x sparse_candidates
        x n_features`` floats per species, however large the data); below it the choice
        is among all of them, as without a limit. ``None``: no limit (every descriptor is
        held). See ``docs/gp.md`` for its measured effect on accuracy.
    sigma_energy : float, default=0.01
        Energy noise in eV per atom (with ``sigma_per_atom``; the total-energy sigma of a
        structure of ``N`` atoms is then ``sigma_energy * sqrt(N)``, as ``gap_fit``).
    sigma_force : float or None, default=0.05
        Force noise in eV/A per component; ``None``: forces are not fitted.
    sigma_virial : float or None, default=None
        Virial noise in eV per atom (scaled like the energy); ``None``: stress is not
        fitted and no strain gradients are computed.
    sigma_per_atom : bool, default=True
        Scale energy and virial sigmas by ``sqrt(N)``.
    config_type_sigma : dict, optional
        Per ``atoms.info["config_type"]`` overrides, each a dict with any of the keys
        ``"energy"``, ``"force"``, ``"virial"``.
    e0 : dict, float or {"average", "isolated", "fit"}, default="average"
        Reference energy per species (eV): a dict by symbol or number, one number for all,
        ``"average"`` (mean energy per atom of the training set, for every species),
        ``"isolated"`` (energies of isolated atoms in the data: single-atom structures
        with no neighbour within the cutoff, without periodic boundaries or in a large
        box; they are then not fitted), or ``"fit"`` (least squares of the total energies
        on the composition). A given or ``"isolated"`` e0 is the energy of an atom without
        neighbours (std zero); an estimated one (``"average"``, ``"fit"``) leaves that
        energy to the GP (std ``delta`` where no data have such atoms).
    two_body : Term or None, default=None
        An extra 2-body term (a :class:`~gapy.Term` with a :class:`~gapy.TwoBody`
        descriptor) added to the local energy, with its own kernel, ``delta`` and sparse
        points; ``None``: SOAP only.
    three_body : Term or None, default=None
        An extra 3-body term (a :class:`~gapy.Term` with a :class:`~gapy.ThreeBody`
        descriptor); ``None``: none.
    baseline : None, "zbl" or gapy.baseline.ZBL, default=None
        A fixed short-range repulsion the GP corrects (``E = E_ZBL + E_GAP``): ``"zbl"``
        switches the ZBL potential off below 0.8 of the shortest distance in the training
        data (a species pair whose bonds are much longer, C-H beside H-H, below 0.8 of its
        own: :meth:`gapy.baseline.ZBL.below_distance`), so it changes nothing where there is
        data and keeps atoms apart where there is none (hot MD); see :mod:`gapy.baseline`.
    sparse_jitter : float, default=1e-8
        Added to the diagonal of ``K_MM``.
    energy_key, forces_key, stress_key, virial_key : str
        Label names in ``atoms.calc.results`` or ``atoms.info``/``atoms.arrays``.
    force_weights_key : str, default="force_weights"
        Per-atom force weights in ``atoms.arrays`` (optional, non-negative): the force
        sigma of atom ``i`` is divided by ``sqrt(w_i)``, and ``w_i = 0`` leaves its forces
        out (fixed atoms, a buffer region; GDF weights from :mod:`gapy.coverage`).
    variance : {"sor", "dtc", "local"}, default="dtc"
        Default kind of predictive variance, see :meth:`SparseGP.variance`.
    std_noise : bool, default=False
        Add the fitted noise to the predicted variances of total energies, forces and
        stress (``sigma_energy^2`` times the number of atoms with ``sigma_per_atom``,
        ``sigma_force^2``, ``sigma_virial^2`` likewise over the volume squared): the std
        of a new label rather than of the latent function. Honest when the sigmas were
        chosen by the evidence (:meth:`maximize_evidence`), which counts what the model
        cannot fit as noise. Local energies have no label and are unchanged.
    force_std_precision : {"double", "mixed"}, default="double"
        Arithmetic of the force stds (``precision`` of :meth:`gapy.gp.SparseGP.gradient_variances`):
        ``"mixed"`` computes their largest product in float32 on the residual of a
        float64 low-rank part, within 0.5 % of ``"double"`` and about 1.25x faster.
    block_rows : int, default=4096
        Observation rows folded into the QR factor at a time (memory bound).
    n_jobs : int or None, default=1
        Threads for descriptors and kernel rows (-1: all cores; None: 1, or what a
        joblib ``parallel_backend`` context sets).
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the sparse point selection: the same data and settings give the same
        model. ``None`` draws a fresh seed each fit, recorded in
        ``provenance_["training"]["seed"]`` (fitted again with it, the model is the same).
    verbose : bool, default=False
        Progress bars and a memory estimate.

    Attributes
    ----------
    descriptor_ : SOAP
    gp_ : SparseGP
    term_descriptors_ : dict
        Name (``"two_body"``, ``"three_body"``) to the descriptor of each extra term;
        empty for SOAP only.
    e0_ : dict
        Atomic number to reference energy (eV).
    species_ : ndarray of int
        Atomic numbers the model knows.
    n_environments_ : dict
        Chemical symbol to the number of fitted environments (atoms) of that species.
    pair_shortest_ : dict
        ``(lighter, heavier atomic number)`` to the shortest distance (A) of that species
        pair in the fitted structures (within the cutoff, at least 4 A): what the ZBL
        switch starts from, and below which predictions extrapolate
        (:func:`gapy.baseline.closer_than_training`). Empty in models saved before it.
    label_counts_ : dict
        Number of values fitted of each kind: ``"energy"`` (structures), ``"forces"``
        (components), ``"virial"`` (components).
    std_scale_ : dict
        Factors applied to the predicted standard deviations of ``"energy"`` (total and
        local energies), ``"forces"`` and ``"stress"``; empty (all 1) until
        :meth:`calibrate`.
    std_scale_variance_ : str
        The variance kind :meth:`calibrate` measured the factors for (they scale stds of
        that kind only, whatever ``variance`` is set to later).
    std_noise_weight_ : dict
        Weight of the fitted noise against the latent variance in the stds of
        ``"energy"``, ``"forces"`` and ``"stress"`` (``std_noise``), chosen by
        :meth:`calibrate`; empty (all 1) until then.
    label_sigmas_ : dict
        The noise sigmas the model was fitted with (``"energy"``, ``"forces"``,
        ``"virial"``, ``"per_atom"``): what ``std_noise`` adds, even after a
        ``set_params`` of the sigmas without a refit. With the energy sigma chosen by
        cross-validation (:meth:`maximize_evidence`) the energy's is the evidence's,
        the noise of a new label, not the one that weighed the energies in the fit.
    n_observations_ : int
        Number of fitted values (energies, force and virial components).
    provenance_ : dict
        How the model came about, stored in model files (``gapy info`` shows it):
        ``"training"`` (every fit: structures, environments per species, labels, config
        types, energy range and a SHA-256 of the fitted data), ``"evidence"`` (after
        :meth:`maximize_evidence`: the chosen values, the evidence, convergence),
        ``"recommended"`` (the reasons of :func:`gapy.recommend.recommend`, set by
        ``gapy fit``) and ``"calibration"`` (after :meth:`calibrate`: the structures and
        values the factors came from).

    See Also
    --------
    GAPCalculator : The fitted model as an ASE calculator.
    gapy.load : Read a model written by :meth:`save`.
    gapy.coverage.CoverageMap : How well the training set covers new structures.

    Notes
    -----
    Parameters are checked in :meth:`fit`, not in the constructor (scikit-learn's
    convention), so ``set_params``, ``clone`` and grid searches work as usual.

    References
    ----------
    A. P. Bartók, M. C. Payne, R. Kondor and G. Csányi, "Gaussian approximation
    potentials: the accuracy of quantum mechanics, without the electrons", Phys. Rev.
    Lett. 104, 136403 (2010).

    A. P. Bartók, R. Kondor and G. Csányi, "On representing chemical environments",
    Phys. Rev. B 87, 184115 (2013).

    F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
    uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
    906 (2019).

    V. L. Deringer, A. P. Bartók, N. Bernstein, D. M. Wilkins, M. Ceriotti and
    G. Csányi, "Gaussian process regression for materials and molecules", Chem. Rev.
    121, 10073 (2021).

    Examples
    --------
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> train, test = load_si("train")[:4], load_si("test")[:3]
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(train)
    >>> model.label_counts_, model.gp_.sparse.shape
    ({'energy': 4, 'forces': 756}, (20, 40))
    >>> energy, energy_std = model.predict(test, return_std=True)  # eV, one per structure
    >>> energy.shape, energy_std.shape
    ((3,), (3,))
    """

    def __init__(
        self,
        descriptor: Optional[SOAP] = None,
        *,
        zeta: int = 4,
        delta: float = 1.0,
        n_sparse=1000,
        sparse_method: str = "cur",
        sparse_candidates: Optional[int] = SPARSE_CANDIDATES,
        sigma_energy: float = 0.01,
        sigma_force: Optional[float] = 0.05,
        sigma_virial: Optional[float] = None,
        sigma_per_atom: bool = True,
        config_type_sigma: Optional[Dict[str, Dict[str, float]]] = None,
        e0="average",
        two_body: Optional[Term] = None,
        three_body: Optional[Term] = None,
        baseline=None,
        sparse_jitter: float = 1e-8,
        energy_key: str = "energy",
        forces_key: str = "forces",
        stress_key: str = "stress",
        virial_key: str = "virial",
        force_weights_key: str = "force_weights",
        variance: str = "dtc",
        std_noise: bool = False,
        force_std_precision: str = "double",
        block_rows: int = 4096,
        n_jobs: int = 1,
        random_state=0,
        verbose: bool = False,
    ):
        self.descriptor = descriptor
        self.zeta = zeta
        self.delta = delta
        self.n_sparse = n_sparse
        self.sparse_method = sparse_method
        self.sparse_candidates = sparse_candidates
        self.sigma_energy = sigma_energy
        self.sigma_force = sigma_force
        self.sigma_virial = sigma_virial
        self.sigma_per_atom = sigma_per_atom
        self.config_type_sigma = config_type_sigma
        self.e0 = e0
        self.two_body = two_body
        self.three_body = three_body
        self.baseline = baseline
        self.sparse_jitter = sparse_jitter
        self.energy_key = energy_key
        self.forces_key = forces_key
        self.stress_key = stress_key
        self.virial_key = virial_key
        self.force_weights_key = force_weights_key
        self.variance = variance
        self.std_noise = std_noise
        self.force_std_precision = force_std_precision
        self.block_rows = block_rows
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, frames, y=None, sample_weight=None) -> "GAPRegressor":
        """Fit on structures whose labels are on ``atoms.calc`` or in ``info``/``arrays``.

        The structures are read twice, one at a time, and never all held: pass 1
        computes the SOAP vector of every environment and keeps at most
        ``sparse_candidates`` of them per species (all of them below that number), among
        which the sparse points are chosen; pass 2 folds the kernel rows of every
        observation into the GP. Memory therefore does not grow with the training set.

        Parameters
        ----------
        frames : sequence of ase.Atoms, path or iterable of ase.Atoms
            Training structures with labels: total energy (eV), forces (eV/A), stress
            (eV/A^3) or virial (eV), under the names ``energy_key``, ... (see
            :func:`gapy.labels.read_labels`; a label both on ``atoms.calc`` and in
            ``info``/``arrays`` is taken from ``atoms.calc``, with a
            ``gapy.labels.LabelConflictWarning`` if the two differ, and a stress
            before a virial). Structures in memory; a file path (extended
            XYZ ``.xyz``/``.extxyz``, an ASE database ``.db``, or any format ASE reads),
            read structure by structure on each pass and refused if it changes between
            them; any other iterable of ``Atoms`` (consumed once, spilled to a temporary
            file); or a :class:`gapy.io.FrameSource`. Under
            ``joblib.parallel_config(backend="dask")`` the tasks of a file read their own
            structures (the workers must see the file under the same path).
        y : None or array-like of shape (n_frames,)
            Labels are read from the structures; a ``y`` (as scikit-learn's model selection
            passes it) must be their total energies.
        sample_weight : array-like of shape (n_frames,), optional
            Per-structure weights: every sigma of structure ``k`` is divided by
            ``sqrt(sample_weight[k])``; a weight of 0 leaves the structure out.

        Returns
        -------
        GAPRegressor
            ``self``, fitted.

        Raises
        ------
        TypeError
            An element of ``frames`` is not an ``ase.Atoms``, or a parameter has the
            wrong type.
        ValueError
            ``y`` that is not the structures' energies, a parameter out of range, no
            structures, a bad ``sample_weight``, an ``e0`` that cannot be determined, no
            structure left to fit (all have zero weight or are isolated atoms), or no atom
            with a neighbour (no sparse point).
        gapy.StructureError
            A species the descriptor does not know, a bad geometry or label, or a
            fitted label kind (``sigma_*`` set) that no structure carries.
        gapy.exceptions.SingularKernelError
            ``K_MM`` is not positive definite even with ``sparse_jitter``.
        gapy.DataFileError
            A structure of a file cannot be read (its index, and line for extended XYZ,
            are named) or the file changed during the fit; nothing is fitted.
        gapy.ClusterError
            The dask cluster went away during the fit.

        Warns
        -----
        UserWarning
            Structures without any label to fit (they are left out).
        gapy.labels.LabelConflictWarning
            A label given twice with different values (see ``frames``).
        RuntimeWarning
            The fit leaves the energies or the virials practically as they are (residuals
            as large as the labels, :data:`UNFITTED_SHARE`: stresses of the wrong sign, with
            a tight ``sigma_virial`` the energies give way; only when their kernel rows fit
            within :data:`gapy._training_checks.RESIDUAL_ROWS_BUDGET`).

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> train = load_si("train")[:4]
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20)
        >>> model.fit(train, sample_weight=[1.0, 1.0, 2.0, 0.0]).label_counts_  # the last one left out
        {'energy': 3, 'forces': 567}
        """
        self._check_parameters()
        source = frame_source(frames)
        try:
            with self._unchanged_on_failure(), self._one_seed():
                plan = self._plan(source, sample_weight, y)
                self._fit_plan(plan)
        finally:
            if source is not frames:
                source.close()
        return self

    @contextmanager
    def _unchanged_on_failure(self) -> Iterator[None]:
        """Leave the model as it was, parameters and fitted state, when a fit raises or is
        interrupted: pass 1 sets ``e0_`` and ``baseline_`` for the new data before the GP
        exists, and a model half refitted predicts wrong numbers (18 eV off, no warning)."""
        saved = dict(vars(self))
        try:
            yield
        except BaseException:
            vars(self).clear()
            vars(self).update(saved)
            raise

    @contextmanager
    def _one_seed(self) -> Iterator[None]:
        """With ``random_state=None``, one seed drawn for the whole fit (the candidate sample, the
        sparse points, the folds), recorded in ``provenance_["training"]["seed"]``: a model fitted
        so can be fitted again identically with ``random_state`` set to it."""
        if self.random_state is not None:
            yield
            return
        self.random_state = int(np.random.SeedSequence().generate_state(1)[0])
        try:
            yield
        finally:
            self.random_state = None

    def _fit_plan(self, plan: "_FitPlan", check_unfitted: bool = True) -> None:
        """Pass 2: fold the noise-scaled kernel rows of every observation into the GP; then check
        the energies' residuals (:class:`gapy._training_checks.EnergyResiduals`), that the virials
        have the sign the other labels imply (:func:`gapy._training_checks.warn_opposite_virials`)
        and, with ``check_unfitted``, that energies and virials are fitted (:data:`UNFITTED_SHARE`;
        forces are not kept, their rows are too many)."""
        energies, virials, volumes = EnergyResiduals(), KeptObservations(), []

        def row_blocks():
            for index, observations in zip(plan.used, self._observations(plan, plan.basis)):
                if "energy" in observations:
                    energies.keep(plan.names[index], plan.n_atoms[index], *observations["energy"])
                if "virial" in observations:
                    virials.keep(*observations["virial"])
                    volumes.append(plan.volumes[index])
                yield _noise_scaled(observations)

        gp = fit_sparse_gp(plan.basis, row_blocks(), jitter=self.sparse_jitter, block_rows=self.block_rows)
        plan.source.verify()  # a file that changed during pass 2 gives no model
        energies.check(gp.alpha)
        opposite = warn_opposite_virials(virials, volumes, gp, self._label_fields()["virial"])
        if check_unfitted:
            self._warn_unfitted({"energy": energies.kept.unfitted_share(gp.alpha),
                                 "virial": None if opposite else virials.unfitted_share(gp.alpha)},
                                self._label_sigmas())
        self.gp_ = gp
        self.descriptor_ = plan.descriptor
        self.term_descriptors_ = dict(plan.term_descriptors)
        self.species_ = plan.descriptor.atomic_numbers.copy()
        self.n_observations_ = self.gp_.n_observations
        self.std_scale_, self.std_scale_variance_, self.std_noise_weight_ = {}, self.variance, {}
        self.provenance_ = {"training": plan.training}
        vars(self).pop("evidence_", None)  # (maximize_evidence sets it again after this fit)
        self.label_sigmas_ = self._label_sigmas()

    def _label_sigmas(self) -> dict:
        """The noise sigmas as the fit uses them (``std_noise`` adds these, not later ``set_params``)."""
        return {**{kind: getattr(self, name) for kind, name in SIGMA_NAMES.items()},
                "per_atom": bool(self.sigma_per_atom)}

    def _label_fields(self) -> Dict[str, str]:
        """How messages name the field of each label kind (:func:`gapy.labels.label_fields`)."""
        return label_fields(self.energy_key, self.forces_key, self.stress_key, self.virial_key)

    def maximize_evidence(self, frames, y=None, sample_weight=None, *,
                          fixed: Sequence[str] = (), bounds: Optional[Dict[str, Tuple[float, float]]] = None,
                          energy_sigma: str = "evidence") -> "GAPRegressor":
        """Choose the deltas and the noise sigmas by the evidence, then fit with them.

        The kernel rows of every observation are computed once (at ``delta = 1``) and
        reduced to sufficient statistics, so the evidence and its gradient at any
        ``delta`` and sigmas cost one small QR factorisation (:mod:`gapy.gp.evidence`).
        The sigmas of the label kinds that are fitted (``sigma_energy``, ``sigma_force``,
        ``sigma_virial`` not None), ``delta`` and the delta of each extra term
        (``two_body__delta``, ``three_body__delta``) are optimised from their current values;
        per-structure factors (``sqrt(N)``, weights, ``config_type_sigma`` relative to the
        global sigma) keep their ratios: ``config_type_sigma`` is scaled with them. The
        sparse points are those of a plain fit, and the final fit reuses them.

        Parameters
        ----------
        frames : sequence of ase.Atoms, path or iterable of ase.Atoms
            Labelled training structures, as for :meth:`fit`.
        y : None or array-like of shape (n_frames,)
            Labels are read from the structures; a ``y`` (as scikit-learn's model selection
            passes it) must be their total energies.
        sample_weight : array-like of shape (n_frames,), optional
            As in :meth:`fit`.
        fixed : sequence of str, default=()
            Names kept as they are: ``"delta"``, ``"two_body__delta"``,
            ``"three_body__delta"``, ``"sigma_energy"``, ``"sigma_force"``,
            ``"sigma_virial"``.
        bounds : dict, optional
            ``name: (low, high)`` search bounds; default a factor 100 either way, and
            ``sigma_energy`` at most :data:`~gapy.gp.energy_noise.ENERGY_NOISE_SHARE` times
            the spread of the energies per atom beyond per-species constants (never below
            its start): with many force labels the evidence can otherwise leave the
            energies unfitted.
        energy_sigma : {"evidence", "cross-validation"}, default="evidence"
            ``"cross-validation"``: ``sigma_energy`` is then chosen among the evidence's
            value and its halvings by cross-validation of the energies, the other
            values kept (:mod:`gapy.gp.energy_noise`; what :func:`gapy.recommend`
            asks for). With many force labels the evidence can leave the energies
            loosely fitted. The energy noise that ``std_noise`` adds stays the
            evidence's (``label_sigmas_``). With fewer than
            :data:`~gapy.gp.energy_noise.MIN_ENERGIES` energies the evidence's value
            stands (``provenance_["evidence"]`` says so).

        Returns
        -------
        GAPRegressor
            ``self``, fitted with the chosen values (``get_params()`` shows them);
            ``evidence_`` holds the :class:`~gapy.gp.evidence.OptimizationResult`
            (its sigmas the evidence's), ``provenance_["evidence"]`` the values used.

        Raises
        ------
        ValueError
            A name in ``fixed`` or ``bounds`` that is not optimised, and everything
            :meth:`fit` raises.

        Warns
        -----
        RuntimeWarning
            The optimiser did not converge, a parameter ended on a bound, or the fit leaves
            a label kind practically as it is (residuals as large as the labels,
            :data:`UNFITTED_SHARE`: stresses or energies of the wrong sign).

        References
        ----------
        Rasmussen and Williams, Gaussian Processes for Machine Learning (2006), ch. 5;
        Quinonero-Candela and Rasmussen, JMLR 6, 1939 (2005).

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10, sigma_force=0.2)
        >>> model = model.maximize_evidence(load_si("train")[:3], fixed=("delta",))
        >>> model.delta, bool(model.sigma_force != 0.2)
        (1.0, True)
        """
        self._check_parameters()
        check_choice("energy_sigma", energy_sigma, ("evidence", "cross-validation"))
        cross_validated = energy_sigma == "cross-validation" and self.sigma_energy is not None \
            and "sigma_energy" not in fixed
        energies = EnergyRows() if cross_validated else None
        optimised = {"delta", "sigma_energy", "sigma_force", "sigma_virial",
                     *(f"{name}__delta" for name, _ in self._terms())}
        unknown = (set(fixed) | set(bounds or {})) - optimised
        if unknown:  # (before the passes over the data; a kind without labels is found after pass 1)
            raise ValueError(f"maximize_evidence: {sorted(unknown)} are not among the optimised {sorted(optimised)}")
        source = frame_source(frames)
        try:  # (warnings name the caller's line: no helper method between it and the checks)
            with self._unchanged_on_failure(), self._one_seed():
                plan = self._plan(source, sample_weight, y)
                terms = self._terms()
                statistics = self._evidence_statistics(plan, energies)
                deltas = {"delta": float(self.delta), **{f"{name}__delta": float(term.delta) for name, term in terms}}
                globals_ = self._label_sigmas()
                names = SIGMA_NAMES
                kinds = list(statistics.groups)
                known = {**{name: name for name in deltas}, **{names[kind]: kind for kind in kinds}}
                unknown = (set(fixed) | set(bounds or {})) - set(known)
                if unknown:  # a sigma of a label kind no structure has
                    raise ValueError(f"maximize_evidence: {sorted(unknown)} are not among the optimised "
                                     f"{sorted(known)}")
                cross_validated = cross_validated and "energy" in kinds
                search_bounds = {known[name]: value for name, value in (bounds or {}).items()}
                if "energy" in kinds and "energy" not in search_bounds:  # (many forces must not leave them unfitted)
                    start = float(globals_["energy"])
                    if start / SEARCH_WINDOW < plan.energy_sigma_ceiling < start * SEARCH_WINDOW:
                        search_bounds["energy"] = (start / SEARCH_WINDOW, max(plan.energy_sigma_ceiling, start))
                result = maximize_evidence(
                    statistics, deltas, {kind: float(globals_[kind]) for kind in kinds},
                    fixed=[known[name] for name in fixed], bounds=search_bounds, jitter=self.sparse_jitter,
                    warn_bounds=not cross_validated)
                sigmas = dict(result.sigmas)
                if cross_validated:
                    low = search_bounds.get("energy", (float(globals_["energy"]) / SEARCH_WINDOW, None))[0]
                    choice = choose_energy_sigma(statistics, energies, result.deltas, sigmas, jitter=self.sparse_jitter,
                                                 low=low, seed=_candidate_seed(self.random_state))
                    sigmas["energy"] = choice.sigma
                    # an energy sigma on the upper bound is answered by a lower choice (the advice: weigh them more)
                    warn_at_bounds(result, search_bounds, ["energy"] if choice.sigma < result.sigmas["energy"] else [],
                                   stacklevel=1)
                    logger.info("sigma_energy by cross-validation of the energies: %.4g (%s)", choice.sigma,
                                choice.reason)
                self.set_params(**{name: copy.deepcopy(term) for name, term in terms})  # (not the caller's Terms)
                ratios = {kind: sigmas[kind] / globals_[kind] for kind in kinds}
                self.set_params(**result.deltas, **{names[kind]: sigmas[kind] for kind in kinds},
                                **self._scaled_config_type_sigma(ratios))
                self._warn_unfitted(residual_shares(statistics, result.deltas, sigmas, self.sparse_jitter),
                                    sigmas, "maximize_evidence", stacklevel=3)
                logger.info("evidence: %s", ", ".join(
                    [f"{name}={value:.4g}" for name, value in result.deltas.items()]
                    + [f"{names[k]}={v:.4g}" for k, v in result.sigmas.items()]))
                plan.basis = replace(plan.basis, delta=float(result.delta), terms=tuple(
                    replace(term, delta=float(result.deltas[f"{name}__delta"]))
                    for (name, _), term in zip(terms, plan.basis.terms)))
                self._fit_plan(plan, check_unfitted=False)
                if cross_validated:  # the noise of a new energy label stays the evidence's (std_noise)
                    self.label_sigmas_["energy"] = float(result.sigmas["energy"])
                self.evidence_ = result
                self.provenance_["evidence"] = {
                    "deltas": dict(result.deltas), "sigmas": {names[kind]: value for kind, value in sigmas.items()},
                    "log_marginal_likelihood": result.log_marginal_likelihood, "converged": result.converged,
                    "at_bounds": list(result.at_bounds), "fixed": list(fixed)}
                if cross_validated:
                    self.provenance_["evidence"]["evidence_sigma_energy"] = result.sigmas["energy"]
                    self.provenance_["evidence"]["sigma_energy_cross_validation"] = choice.as_dict()
        finally:
            if source is not frames:
                source.close()
        return self

    def _scaled_config_type_sigma(self, ratios: Dict[str, float]) -> dict:
        """``config_type_sigma`` scaled as its kind's global sigma was (the evidence keeps their ratios)."""
        if not self.config_type_sigma:
            return {}
        kinds = {"energy": "energy", "force": "forces", "virial": "virial"}
        return {"config_type_sigma": {
            config_type: {key: None if value is None else float(value) * ratios.get(kinds[key], 1.0)
                          for key, value in override.items()}
            for config_type, override in self.config_type_sigma.items()}}

    def _warn_unfitted(self, shares: Dict[str, Optional[float]], sigmas: Dict[str, float], where: str = "",
                       stacklevel: int = 4) -> None:
        """Warn of label kinds that the fit leaves practically as they are (:data:`UNFITTED_SHARE`)."""
        fields = self._label_fields()
        for kind, share in shares.items():
            if share is not None and share >= UNFITTED_SHARE:
                warnings.warn(unfitted_message(fields[kind], share, SIGMA_NAMES[kind], sigmas[kind], where),
                              RuntimeWarning, stacklevel=stacklevel)

    def _evidence_statistics(self, plan: "_FitPlan", energies: Optional[EnergyRows] = None) -> EvidenceStatistics:
        """The observations of ``plan`` at unit deltas, one block of columns per delta:
        SOAP's (``"delta"``), then each term's (``"two_body__delta"``, ...); ``K_MM`` is
        block-diagonal. ``energies`` also keeps the energies row by row."""
        unit = plan.unit_basis()
        blocks = {"delta": slice(0, len(unit.sparse)),
                  **{f"{name}__delta": columns for (name, _), columns in zip(self._terms(), unit.term_slices())}}
        statistics = EvidenceStatistics(unit.kernel_matrix(), blocks=blocks)
        globals_ = self._label_sigmas()
        for index, observations in zip(plan.used, self._observations(plan, unit)):
            for kind, (rows, targets, sigmas) in observations.items():
                statistics.add(kind, rows, targets, sigmas / globals_[kind])
                if kind == "energy" and energies is not None:
                    energies.add(rows, targets, sigmas / globals_[kind], np.array([plan.n_atoms[index]]),
                                 np.array([plan.weights[index]]))
        return statistics

    def _plan(self, source: FrameSource, sample_weight, y=None) -> "_FitPlan":
        """Pass 1 of a fit: checks, labels, ``e0``, the baseline and the sparse points; ``y``, if given,
        must be the structures' energies (:func:`_check_y`).

        Every environment's SOAP vector is computed; at most ``sparse_candidates`` per
        species are kept (a seeded uniform sample), among which the sparse points are
        chosen.
        """
        zeta = check_zeta(self.zeta)
        remote = runs_remotely(self.n_jobs)
        descriptor = self._make_descriptor(source)
        weights = _SampleWeights(sample_weight, source.n_frames)
        n_sparse = self._n_sparse_per_species(descriptor)
        cap = self._candidate_cap(n_sparse)
        reservoir = CandidateReservoir(cap, _candidate_seed(self.random_state))
        summaries: List[_Summary] = []
        keys = (set(), set(), set())  # info keys, array keys, calculator results seen (for messages)
        collectors = [_TermCollector(name, term, cap, _candidate_seed(self.random_state) + 1 + k)
                      for k, (name, term) in enumerate(self._terms())]

        shared = (self._task_copy(), descriptor)
        progress = tqdm(total=source.n_frames, desc="SOAP", unit="structure", disable=not self.verbose)
        with progress:
            for batch in _structure_batches(source, None, _FIRST_PASS_BATCH, remote):
                tasks = [(item, k, weights[k]) for k, item in batch]
                results = thread_map(_first_pass_task, tasks, self.n_jobs, progress, shared=shared)
                for summary, species, values, found in results:
                    for seen, names in zip(keys, summary.keys):
                        seen.update(names)
                    summary.keys = None
                    summaries.append(summary)
                    if values is not None:
                        reservoir.add(summary.index, species, values)
                    for collector, (term_values, classes) in zip(collectors, found):
                        collector.add(summary.index, term_values, classes)
                del results
        weights.check_count(len(summaries))
        _check_y(y, [summary.energy for summary in summaries], [summary.name for summary in summaries])

        check_config_types(summaries, self.config_type_sigma)
        if self.sigma_energy is not None:
            check_energies(summaries, self.energy_key)
        if self.sigma_force is not None:
            check_forces(summaries, self.forces_key)
        weighted = [summary for summary in summaries if summary.weight > 0]
        self.e0_ = self._reference_energies(weighted, descriptor)
        fitted = [summary for summary in summaries if summary.used]
        used = [summary.index for summary in fitted]
        if not used:
            raise ValueError("no structure to fit: all have zero weight or are isolated atoms")
        mixed = mixed_label_names([summary.name for summary in fitted], [summary.lookalikes for summary in fitted],
                                  self._fitted_kinds(), {"energy": self.energy_key, "forces": self.forces_key,
                                                         "virial": self.stress_key})
        if mixed is not None:
            raise StructureError(mixed)
        self.label_counts_ = check_labels(
            fitted, keys, sigma_energy=self.sigma_energy,
            sigma_force=self.sigma_force, sigma_virial=self.sigma_virial, energy_key=self.energy_key,
            forces_key=self.forces_key, stress_key=self.stress_key, virial_key=self.virial_key)
        check_repeats(summaries)
        check_close_atoms(summaries)
        self.pair_shortest_ = merge_shortest(summary.pair_shortest for summary in summaries)
        if self.baseline == "zbl":  # (a pair of much longer bonds, C-H beside H-H, gets its own switch)
            self.baseline_ = ZBL.below_distance(min(self.pair_shortest_.values(), default=np.inf),
                                                pair_shortest=self.pair_shortest_)
        else:
            self.baseline_ = None if self.baseline is None else ZBL(**self.baseline.get_params())

        values, all_species, _, seen = reservoir.result()
        for s, n in reservoir.overflowed.items():
            logger.info("species %s: %d environments; sparse points chosen among a seeded sample of %d "
                        "(sparse_candidates)", chemical_symbols[descriptor.atomic_numbers[s]], n, cap)
        # with e0 the isolated-atom energies a neighbourless atom's local energy is fixed
        # (conditioned to 0; never a sparse point); with e0 estimated ("average", "fit") it is
        # unknown like any environment's (prior std delta) and learnt from data that have it
        isolated = isolated_descriptors(descriptor) if self._e0_is_free_atom_energy() else None
        free = local_prior_variance(values, all_species, zeta, 1.0, isolated) > 1e-8
        symbols = {s: chemical_symbols[z] for s, z in enumerate(descriptor.atomic_numbers)}
        chosen = np.flatnonzero(free)[select_points(
            values[free], n_sparse, self.sparse_method, all_species[free], self.random_state, zeta, names=symbols
        )]
        terms = tuple(collector.sparse_set(self.random_state) for collector in collectors)
        if not len(chosen) and not any(len(term.sparse) for term in terms):
            raise ValueError(
                f"no sparse point: no atom of the {len(used)} training structures has a neighbour within the cutoff "
                f"({self._largest_cutoff(descriptor):g} A), so there is no local energy to learn (an isolated "
                "atom's energy is e0 by construction): add structures whose atoms have neighbours")
        basis = SparseSet(values[chosen], all_species[chosen], zeta, float(self.delta), isolated, terms)
        del values, all_species
        self.n_environments_ = {chemical_symbols[descriptor.atomic_numbers[s]]: int(n) for s, n in sorted(seen.items())}
        absent = [chemical_symbols[z] for s, z in enumerate(descriptor.atomic_numbers) if not seen.get(s)]
        if absent:
            e0 = ", ".join(f"{symbol} {self.e0_.get(atomic_number(symbol), 0.0):.4g} eV" for symbol in absent)
            warnings.warn(f"species {', '.join(absent)} of the descriptor appear in no training structure: the "
                          f"model predicts their atoms from e0 ({e0}, which no data of theirs set) and the prior "
                          "alone, and their stds, set by the other species' delta, need not cover the errors (EMT "
                          "Cu-Ni-Pd fitted with Pt named: forces on Pt atoms 0.62 eV/A off at stds of 0.09)",
                          UserWarning, stacklevel=3)
        warn_rare_species(summaries, seen, symbols)
        self._log_memory(max(summary.n_atoms for summary in summaries if summary.used), len(used),
                         descriptor, len(basis.sparse))
        term_descriptors = {name: copy.deepcopy(term.descriptor) for name, term in self._terms()}
        n_atoms = {summary.index: summary.n_atoms for summary in summaries if summary.used}
        volumes = {summary.index: summary.volume_per_atom for summary in summaries
                   if summary.used and summary.volume_per_atom is not None}
        names = {summary.index: summary.name for summary in summaries if summary.used}
        labelled = [summary for summary in summaries if summary.energy is not None and summary.weight > 0]
        spread = energy_spread([summary.composition for summary in labelled], [summary.energy for summary in labelled],
                               [summary.isolated_number for summary in labelled])
        ceiling = ENERGY_NOISE_SHARE * spread * np.sqrt(np.median([summary.weight for summary in labelled] or [1.0]))
        training = _training_record(fitted, self.n_environments_, self.label_counts_, self.random_state)
        return _FitPlan(source, used, weights, descriptor, basis, remote, term_descriptors, n_atoms, names, ceiling,
                        training, volumes)

    def _observations(self, plan: "_FitPlan", basis: SparseSet):
        """Per used structure: ``{kind: (rows, targets, sigmas)}``, in batches on threads
        (or, on a cluster, tasks that read their own structures)."""
        shared = (self._task_copy(), plan.descriptor, basis, list(plan.term_descriptors.values()))
        progress = tqdm(total=len(plan.used), desc="kernel rows", unit="structure", disable=not self.verbose)
        for batch in _structure_batches(plan.source, plan.used, _BATCH, plan.remote):
            # threads over structures, one BLAS thread each: n_jobs x all-core BLAS
            # oversubscribes the machine (3.5x slower on Mo); the QR fold keeps
            # every BLAS thread
            with threadpool_limits(1 if effective_n_jobs(self.n_jobs) > 1 else None, user_api="blas"):
                # each task carries only its own structure, or on a cluster the file
                # position it reads it from (a dask worker gets no more)
                tasks = [(item, k, plan.weights[k]) for k, item in batch]
                yield from thread_map(_observation_rows_task, tasks, self.n_jobs, shared=shared)
            progress.update(len(batch))
        progress.close()

    def _task_copy(self) -> "GAPRegressor":
        """What the tasks of a fit need of ``self``: its parameters, ``e0_`` and
        ``baseline_``, without a previous fit's GP (sent to every dask worker)."""
        task_copy = clone(self)
        for name in ("e0_", "baseline_"):
            if hasattr(self, name):
                setattr(task_copy, name, getattr(self, name))
        return task_copy

    def _largest_cutoff(self, descriptor: SOAP) -> float:
        """The largest cutoff of SOAP and the extra terms: beyond it an atom has no neighbour."""
        return max([float(descriptor.r_cut)] + [float(term.descriptor.r_cut) for _, term in self._terms()])

    def _first_pass_one(self, atoms: Atoms, index: int, weight: float, descriptor: SOAP):
        """What pass 1 needs of one structure: a summary, the species and (if fitted) the features."""
        labels = self._read_labels(atoms, index)
        species = descriptor.species_indices(atoms, index)
        isolated = is_isolated_atom(atoms, self._largest_cutoff(descriptor), index)
        used = bool(weight > 0) and not (self.e0 == "isolated" and isolated)
        values = descriptor.compute(atoms, index=index) if used else None
        found = []  # per extra term: (values, classes) of the instances inside the cutoff
        for _, term in self._terms() if used else ():
            instances = term.descriptor.compute(atoms, index=index)
            inside = instances.weights > 0
            found.append((instances.values[inside], instances.classes[inside]))
        sizes = {kind: (None if getattr(labels, kind) is None else int(np.size(getattr(labels, kind))))
                 for kind in ("energy", "forces", "virial")}
        if labels.forces is not None and labels.force_weights is not None:  # (atoms of weight 0 are not fitted)
            sizes["forces"] = 3 * int(np.count_nonzero(np.asarray(labels.force_weights) > 0))
        lookalikes = {kind: names[0] for kind in self._fitted_kinds() if used and getattr(labels, kind) is None
                      for names in [lookalike_labels(atoms, kind)] if names}
        summary = _Summary(
            index=index, n_atoms=len(atoms), weight=weight, used=used,
            composition=np.bincount(species, minlength=len(descriptor.atomic_numbers)),
            energy=labels.energy, isolated_number=int(atoms.numbers[0]) if isolated else None,
            label_sizes=sizes, lookalikes=lookalikes,
            name=structure_name(atoms, index),
            keys=(tuple(atoms.info), tuple(atoms.arrays),
                  tuple(getattr(atoms.calc, "results", {})) if atoms.calc is not None else ()),
            pair_shortest=shortest_pair_distances(atoms, index, self._largest_cutoff(descriptor)) if used else None,
            config_type=atoms.info.get("config_type"),
            close_pair=closest_covalent_pair(atoms, CLOSE_FACTOR) if used else None,
            force_rms=None if labels.forces is None else float(np.sqrt(np.mean(np.square(labels.forces)))),
            volume_per_atom=None if labels.virial is None else float(abs(atoms.get_volume())) / len(atoms),
            geometry=geometry_digest(atoms),
            label_digest=digest(*(None if value is None else np.round(value, LABEL_DECIMALS) + 0.0  # (no -0.0)
                                  for value in (labels.energy, labels.forces, labels.virial, labels.force_weights))),
        )
        return summary, species, values, found

    def calibrate(self, frames: Sequence[Atoms]) -> "GAPRegressor":
        """Scale the predicted standard deviations to match the errors on held-out data.

        For each of energy (per atom), forces and stress the factor is the one that puts
        95.45 % of the errors on ``frames`` within two standard deviations, the fraction
        of a Gaussian: ``s = quantile(|error / std|, 0.9545) / 2``. Unlike the RMS of
        ``error / std`` (the maximum-likelihood factor) it is not dominated by a few
        errors with near-zero predicted std (stresses of strained crystals). The stds of
        later predictions are multiplied by the factors, kept in :attr:`std_scale_` and
        in saved models; means do not change. With ``std_noise`` the stds are first
        reshaped (from :data:`NOISE_WEIGHT_MIN_VALUES` held-out values of a quantity on,
        forces and stresses in practice): ``std^2 = latent^2 + w noise^2``, the weight
        ``w`` of the fitted noise against the latent variance chosen by the likelihood of
        the errors
        (:func:`gapy.metrics.noise_weight`, kept in :attr:`std_noise_weight_`), so that the
        stds follow the errors from structure to structure, not only on average (mlearn
        Mo, a tenth of the training set held out: the strained crystals' force errors at
        0.76 of their stds on the test set instead of 0.10, 92.7 % of all within two stds;
        ``benchmarks/README.md``). Use structures that were not fitted (20 or
        more). The factors are measured for, and applied to, the model's ``variance``
        kind; stds of another kind (``predict_all(variance=...)``) stay unscaled. A model
        fitted without energy labels gets no energy factor: its energies are known up to a
        constant per species, which the errors on ``frames`` would take for uncertainty.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Labelled structures that were not in the training set.

        Returns
        -------
        GAPRegressor
            ``self``, with :attr:`std_scale_` set (dimensionless factors by quantity:
            ``"energy"``, ``"forces"``, ``"stress"``), and :attr:`std_noise_weight_`.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The model is not fitted.
        gapy.StructureError
            No structure of ``frames`` has an energy, forces or stress, or a label is
            malformed.

        Warns
        -----
        UserWarning
            The model was fitted without energy labels and ``frames`` have energies (not
            used).
        UserWarning
            Fewer than :data:`CALIBRATION_MIN_STRUCTURES` structures, or a factor measured on
            fewer than :data:`CALIBRATION_MIN_VALUES` values.
        UserWarning
            Structures the model was fitted on (named; by :func:`geometry_keys` in
            ``provenance_["training"]``): their errors are smaller than a new structure's.

        References
        ----------
        F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
        uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
        906 (2019).

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> model.calibrate(load_si("test")[:3])  # doctest: +ELLIPSIS
        GAPRegressor(...)
        >>> sorted(model.std_scale_)
        ['energy', 'forces', 'stress']

        """
        from .metrics import compare, noise_weight, standardized_errors

        check_is_fitted(self, "gp_")
        frames = as_frames(frames)
        self.std_scale_, self.std_noise_weight_ = {}, {}
        keys = dict(energy_key=self.energy_key, forces_key=self.forces_key, stress_key=self.stress_key,
                    virial_key=self.virial_key)
        with_noise, self.std_noise = self.std_noise, False
        try:  # the latent stds; the noise apart
            predictions = self.predict_all(frames, return_std=True)
        finally:
            self.std_noise = with_noise
        fitted = training_structures(self, frames)
        if fitted:
            named = ", ".join(structure_name(frames[k], k) for k in fitted[:3]) + (", ..." if len(fitted) > 3 else "")
            warnings.warn(f"calibrate: {len(fitted)} of the {len(frames)} structures are training structures of this "
                          f"model ({named}): its errors on them are smaller than on new ones, so the factors would "
                          "shrink the stds; calibrate on structures left out of the fit ('gapy fit --calibrate' "
                          "holds some out)", UserWarning, stacklevel=2)
        comparisons = compare(frames, predictions, **keys)
        noises = compare(frames, [self._noise_stds(atoms, result) for atoms, result in zip(frames, predictions)],
                         **keys) if with_noise else {}
        if not comparisons:
            raise StructureError("calibrate needs labelled structures: none has an energy, forces or stress")
        if self.label_sigmas_["energy"] is None and comparisons.pop("energy", None) is not None:
            warnings.warn("calibrate: the energy stds are not calibrated: the model was fitted without energy labels, "
                          "so its energies are known up to a constant per species (their errors measure that "
                          "constant, not the uncertainty)", UserWarning, stacklevel=2)
        scale, weights, few = {}, {}, []
        for quantity, comparison in comparisons.items():
            noise = noises.get(quantity)
            if noise is not None and noise.std is not None and np.any(noise.std > 0) and (
                    comparison.error.size >= NOISE_WEIGHT_MIN_VALUES):
                weights[quantity] = noise_weight(comparison.error, comparison.std, noise.std)
                comparison = replace(comparison, std=np.sqrt(comparison.std**2 + weights[quantity] * noise.std**2))
            z = standardized_errors(comparison)
            if z.size:
                scale[quantity] = float(np.quantile(np.abs(z), GAUSSIAN_2SIGMA) / 2.0)
            if 0 < z.size < CALIBRATION_MIN_VALUES:
                few.append(f"{quantity} x{scale[quantity]:.3g} from {z.size} value{'s' if z.size > 1 else ''}")
        if len(frames) < CALIBRATION_MIN_STRUCTURES:
            factors = ", ".join(f"{quantity} x{factor:.3g}" for quantity, factor in scale.items())
            warnings.warn(f"calibrate: {factors} from {len(frames)} structure{'s' if len(frames) > 1 else ''}: "
                          "factors from so few are mostly chance "
                          "(the errors within a structure move together), and can shrink the stds many times over; "
                          f"calibrate on {CALIBRATION_MIN_STRUCTURES} or more structures", UserWarning, stacklevel=2)
        elif few:
            warnings.warn(f"calibrate: {', '.join(few)}: a factor from so few errors is mostly chance (it can shrink "
                          f"the stds many times over); calibrate on {CALIBRATION_MIN_STRUCTURES} or more structures",
                          UserWarning, stacklevel=2)
        self.std_scale_, self.std_noise_weight_ = scale, {q: w for q, w in weights.items() if q in scale}
        self.std_scale_variance_ = self.variance
        self.provenance_["calibration"] = {"structures": len(frames), "values": {
            quantity: int(comparison.error.size) for quantity, comparison in comparisons.items()}}
        return self

    def _noise_stds(self, atoms: Atoms, result: dict) -> dict:
        """``result`` with the fitted noise of a new label as its stds (``std_noise``'s part)."""
        noise = self._label_noise(len(atoms))
        stds = {f"{name}_std": np.full(np.shape(result[name]), np.sqrt(value))
                / (atoms.get_volume() if name == "stress" else 1.0)
                for name, value in noise.items() if name in result}
        return {**result, **{key: float(value) if np.ndim(value) == 0 else value for key, value in stds.items()}}

    def _check_parameters(self) -> None:
        """Every constructor argument, with a message naming it and the allowed values."""
        check_choice("sparse_method", self.sparse_method, METHODS)
        check_integer("sparse_candidates", self.sparse_candidates, 1, allow_none=True)
        check_variance_kind(self.variance)
        check_force_std_precision(self.force_std_precision)
        check_integer("zeta", self.zeta, 1)
        for name in ("sigma_energy", "sigma_force", "sigma_virial"):
            check_number(name, getattr(self, name), 0.0, allow_none=True)
        check_number("delta", self.delta, 0.0)
        check_number("sparse_jitter", self.sparse_jitter, 0.0, low_inclusive=True)
        check_integer("block_rows", self.block_rows, 1)
        if self.n_jobs is not None and check_integer("n_jobs", self.n_jobs, None) == 0:  # (None: joblib's, 1)
            raise ValueError("n_jobs must be a positive integer or negative (-1: all cores), got 0")
        for name in ("sigma_per_atom", "std_noise"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.n_sparse, dict):
            for key, count in self.n_sparse.items():
                check_integer(f"n_sparse[{key!r}]", count, 1)
        else:
            check_integer("n_sparse", self.n_sparse, 1)
        for config_type, override in (self.config_type_sigma or {}).items():
            if not isinstance(override, dict):
                raise TypeError(f"config_type_sigma[{config_type!r}] must be a dict like {{'energy': 0.002}}, "
                                f"got {override!r}")
            unknown = set(override) - {"energy", "force", "virial"}
            if unknown:
                raise ValueError(f"config_type_sigma[{config_type!r}] has unknown keys {sorted(unknown)}; "
                                 "use 'energy', 'force' or 'virial'")
            for kind, value in override.items():
                check_number(f"config_type_sigma[{config_type!r}][{kind!r}]", value, 0.0, allow_none=True)
        if isinstance(self.e0, dict):
            for key, value in self.e0.items():
                atomic_number(key)
                check_number(f"e0[{key!r}]", value)
        elif isinstance(self.e0, str):
            check_choice("e0", self.e0, E0_METHODS)
        else:
            check_number("e0", self.e0)
        if not (self.baseline is None or self.baseline == "zbl" or isinstance(self.baseline, ZBL)):
            raise TypeError(f"baseline must be None, 'zbl' or a gapy.baseline.ZBL, got {self.baseline!r}")
        if self.descriptor is not None and not isinstance(self.descriptor, SOAP):
            raise TypeError(f"descriptor must be a gapy.SOAP, got {type(self.descriptor).__name__}")
        for name, descriptor_type in TERMS:
            if getattr(self, name) is not None:
                check_term(name, getattr(self, name), descriptor_type)

    def _terms(self) -> List[Tuple[str, Term]]:
        """The extra terms that are set, in the order of :data:`TERMS`."""
        return [(name, getattr(self, name)) for name, _ in TERMS if getattr(self, name) is not None]

    def _fitted_kinds(self) -> List[str]:
        """Label kinds fitted (those whose sigma is not None)."""
        return [kind for kind, sigma in (("energy", self.sigma_energy), ("forces", self.sigma_force),
                                         ("virial", self.sigma_virial)) if sigma is not None]

    def _make_descriptor(self, source: FrameSource) -> SOAP:
        """The descriptor to fit with; without one, SOAP for the species found (a pass
        over a file or iterator)."""
        if self.descriptor is not None:
            return SOAP(**self.descriptor.get_params())
        numbers = set()
        for _, atoms in source:
            numbers.update(np.unique(atoms.numbers).tolist())
        return SOAP(species=[chemical_symbols[z] for z in sorted(int(z) for z in numbers)])  # symbols: for messages

    def _candidate_cap(self, n_sparse) -> Optional[int]:
        """``sparse_candidates``, checked against the sparse points asked for."""
        cap = check_integer("sparse_candidates", self.sparse_candidates, 1, allow_none=True)
        largest = max(n_sparse.values(), default=0) if isinstance(n_sparse, dict) else n_sparse
        if cap is not None and cap < largest:
            raise ValueError(f"sparse_candidates={cap} is smaller than n_sparse={self.n_sparse}: the sparse "
                             f"points are chosen among at most sparse_candidates environments per species; "
                             f"give sparse_candidates >= {largest} (10x or more keeps CUR meaningful) or None")
        return cap

    def _read_labels(self, atoms: Atoms, index: int, warn: bool = True) -> Labels:
        return read_labels(atoms, index, self.energy_key, self.forces_key, self.stress_key, self.virial_key,
                           self.force_weights_key, warn=warn)

    def _n_sparse_per_species(self, descriptor: SOAP):
        if isinstance(self.n_sparse, dict):
            per_species = {}
            for key, count in self.n_sparse.items():
                z = atomic_number(key)
                if z not in descriptor.atomic_numbers:
                    raise ValueError(f"n_sparse names species {key!r}, which is not in the descriptor")
                per_species[int(np.searchsorted(descriptor.atomic_numbers, z))] = int(count)
            return per_species
        return int(self.n_sparse)

    def _sigmas(self, atoms: Atoms, weight: float):
        """(energy, force, virial) sigmas of one structure: total energy and virial in eV."""
        sigmas = {"energy": self.sigma_energy, "force": self.sigma_force, "virial": self.sigma_virial}
        config_type = atoms.info.get("config_type")
        if self.config_type_sigma and config_type in self.config_type_sigma:
            sigmas.update(self.config_type_sigma[config_type])
        scale = np.sqrt(len(atoms)) if self.sigma_per_atom else 1.0
        factor = 1.0 / np.sqrt(weight)
        energy = sigmas["energy"] * scale * factor if sigmas["energy"] is not None else None
        force = sigmas["force"] * factor if sigmas["force"] is not None else None
        virial = sigmas["virial"] * scale * factor if sigmas["virial"] is not None else None
        return energy, force, virial

    def _structure_observations(self, atoms, index, labels, species, descriptor, basis, weight, term_descriptors=()):
        """Kernel rows, targets and noise sigma of every observation of one structure, by kind."""
        sigma_energy, sigma_force, sigma_virial = self._sigmas(atoms, weight)
        use_energy = labels.energy is not None and sigma_energy is not None
        use_forces = labels.forces is not None and sigma_force is not None
        use_virial = labels.virial is not None and sigma_virial is not None
        gradients = ["positions"] if use_forces or use_virial else []
        if use_virial:
            gradients.append("strain")
        result = descriptor.compute(atoms, gradients=gradients or False, index=index)
        values, grad = result if gradients else (result, None)
        instances = [term.compute(atoms, gradients=gradients or False, index=index) for term in term_descriptors]
        rows = basis.rows(values, species, grad, instances) if instances else basis.rows(values, species, grad)
        m = len(rows["energy"])
        baseline_energies, baseline_forces, baseline_virial = (
            self.baseline_.compute(atoms, index) if self.baseline_ is not None else (np.zeros(1), 0.0, 0.0))
        observations = {}
        if use_energy:
            reference = sum(self.e0_[int(z)] for z in atoms.numbers) + baseline_energies.sum()
            observations["energy"] = (rows["energy"][None, :], np.array([labels.energy - reference]),
                                      np.array([sigma_energy]))
        if use_forces:
            sigma = np.full(3 * len(atoms), sigma_force)
            keep = np.ones(3 * len(atoms), dtype=bool)
            if labels.force_weights is not None:
                weights = np.repeat(labels.force_weights, 3)
                keep = weights > 0
                sigma[keep] /= np.sqrt(weights[keep])
            targets = (labels.forces - baseline_forces).ravel()[keep]
            observations["forces"] = (rows["forces"].reshape(-1, m)[keep], targets, sigma[keep])
        if use_virial:
            observations["virial"] = (rows["virial"], labels.virial - baseline_virial, np.full(6, sigma_virial))
        return observations

    def _reference_energies(self, summaries: List["_Summary"], descriptor) -> Dict[int, float]:
        """e0 per atomic number, as the ``e0`` parameter says (from pass 1's summaries);
        warns of isolated atoms whose label that e0 cannot fit."""
        e0 = self._e0_values(summaries, descriptor)
        unfit = [summary for summary in summaries if summary.used and summary.isolated_number is not None
                 and summary.energy is not None and abs(summary.energy - e0[summary.isolated_number]) > 1e-3]
        if unfit and self.sigma_energy is not None and self._e0_is_free_atom_energy():
            first = unfit[0]
            warnings.warn(
                f"{len(unfit)} isolated atoms (single atoms without a neighbour within "
                f"{self._largest_cutoff(descriptor):g} A), e.g. structure {first.index} "
                f"({chemical_symbols[first.isolated_number]}, energy {first.energy:.4g} eV): an isolated atom's "
                f"energy is e0 by construction, {e0[first.isolated_number]:.4g} eV with e0={self.e0!r}, so its "
                "label cannot be fitted and counts as noise; use e0='isolated' (or leave them out)",
                UserWarning, stacklevel=4)
        return e0

    def _e0_is_free_atom_energy(self) -> bool:
        """Whether ``e0`` is the energy of an isolated atom (``"isolated"``, or numbers given,
        as QUIP's ``e0``), not an estimate from the structures' energies."""
        return not (isinstance(self.e0, str) and self.e0 in ("average", "fit"))

    def _e0_values(self, summaries: List["_Summary"], descriptor) -> Dict[int, float]:
        """e0 per atomic number, as the ``e0`` parameter says."""
        numbers = [int(z) for z in descriptor.atomic_numbers]
        e0 = self.e0
        if isinstance(e0, dict):
            given = {atomic_number(k): float(v) for k, v in e0.items()}
            missing = [z for z in numbers if z not in given]
            if missing:
                raise ValueError(f"e0 has no value for atomic numbers {missing}")
            return {z: given[z] for z in numbers}
        if isinstance(e0, Real) and not isinstance(e0, bool):
            return {z: float(e0) for z in numbers}
        with_energy = [summary for summary in summaries if summary.energy is not None]
        if e0 == "average":
            if not with_energy:
                return {z: 0.0 for z in numbers}
            total = sum(summary.energy for summary in with_energy)
            return {z: total / sum(summary.n_atoms for summary in with_energy) for z in numbers}
        if e0 == "isolated":
            found = {summary.isolated_number: summary.energy for summary in with_energy
                     if summary.isolated_number is not None}
            missing = [z for z in numbers if z not in found]
            if missing:
                raise ValueError(
                    f"e0='isolated' but there is no isolated atom (a single-atom structure without a neighbour "
                    f"within the cutoff, {self._largest_cutoff(descriptor):g} A) with an energy for "
                    f"{', '.join(chemical_symbols[z] for z in missing)}"
                )
            return {z: found[z] for z in numbers}
        if e0 == "fit":
            if not with_energy:
                raise ValueError("e0='fit' needs structures with energies")
            composition = np.array([summary.composition for summary in with_energy])
            energies = np.array([summary.energy for summary in with_energy])
            solution = np.linalg.lstsq(composition, energies, rcond=None)[0]
            return dict(zip(numbers, solution.tolist()))
        raise ValueError(f"e0 must be a dict, a number or one of {E0_METHODS}; got {e0!r}")

    def _log_memory(self, largest: int, n_used: int, descriptor, m) -> None:
        """Estimate peak memory before the heavy pass and report it."""
        neighbors = 4.0 / 3.0 * np.pi * descriptor.r_cut**3 * 0.1  # generous density
        gradient_bytes = largest * neighbors * 3 * (descriptor.n_features + m) * 8
        qr_bytes = (self.block_rows + 2 * m) * (m + 1) * 8 + 3 * m * m * 8
        threads = effective_n_jobs(self.n_jobs)
        total = qr_bytes + threads * gradient_bytes
        message = (
            f"fit: {n_used} structures, {m} sparse points; estimated peak memory "
            f"{total / 2**30:.2f} GiB (QR {qr_bytes / 2**30:.2f} GiB; block_rows caps it)"
        )
        logger.info(message)
        if self.verbose:
            print(message)

    # -------------------------------------------------------------- predict
    def predict(self, frames: Sequence[Atoms], return_std: bool = False):
        """Total energies (eV), and their standard deviations with ``return_std``.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Structures (an ``ase.Atoms`` alone counts as one); labels are not needed.
        return_std : bool, default=False
            Also return the standard deviations (of the model's ``variance`` kind,
            scaled by :meth:`calibrate` if it was called).

        Returns
        -------
        energy : ndarray of shape (n_frames,)
            Total energy of each structure (eV), ``e0`` included.
        energy_std : ndarray of shape (n_frames,)
            Its standard deviation (eV); only with ``return_std=True``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The model is not fitted.
        gapy.StructureError
            A species the model does not know, or a bad geometry.

        References
        ----------
        F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
        uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
        906 (2019).

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> energy, std = model.predict(load_si("test")[:2], return_std=True)
        >>> energy.shape, bool((std > 0).all())
        ((2,), True)
        """
        results = self.predict_all(frames, return_std=return_std, properties=("energy",))
        energy = np.array([r["energy"] for r in results])
        if return_std:
            return energy, np.array([r["energy_std"] for r in results])
        return energy

    def predict_all(
        self,
        frames: Sequence[Atoms],
        return_std: Union[bool, Sequence[str]] = False,
        variance: Optional[str] = None,
        properties: Sequence[str] = PROPERTIES,
    ) -> List[dict]:
        """Energies, per-atom energies, forces and stress of each structure.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Structures (an ``ase.Atoms`` alone counts as one); labels are not needed.
        return_std : bool or sequence of str, default=False
            ``True``: also return the standard deviation ``"<key>_std"`` of every
            property; a sequence: only of the properties named (``("energies",)`` costs
            no descriptor gradients beyond those the means need).
        variance : {"sor", "dtc", "local"}, optional
            Kind of variance (default: the ``variance`` parameter).
        properties : sequence of str, default=("energy", "energies", "forces", "stress")
            Subset of ``"energy"``, ``"energies"``, ``"forces"``, ``"stress"``.

        Returns
        -------
        list of dict
            ASE result keys: ``energy`` and ``free_energy`` (eV), ``energies``
            (n_atoms,) in eV, ``forces`` (n_atoms, 3) in eV/A, ``stress`` (6,) in eV/A^3
            (structures periodic in all directions only), and the ``*_std`` keys asked
            for, in the same units and shapes (the properties named in ``return_std``
            are predicted too).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The model is not fitted.
        ValueError
            Unknown ``properties``, ``return_std`` names or ``variance`` kind.
        gapy.StructureError
            A species the model does not know, or a bad geometry.

        See Also
        --------
        gapy.GAPCalculator : The same predictions through ASE.
        gapy.calculator.store_results : Write the results, stds included, to extxyz.

        References
        ----------
        F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
        uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
        906 (2019).

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> (result,) = model.predict_all(load_si("test")[:1], return_std=["forces"])
        >>> sorted(result)
        ['energies', 'energy', 'forces', 'forces_std', 'free_energy', 'stress']
        >>> result["forces"].shape, result["forces_std"].shape, result["stress"].shape
        ((63, 3), (63, 3), (6,))
        """
        check_is_fitted(self, "gp_")
        frames = as_frames(frames)
        kind = check_variance_kind(variance or self.variance)
        properties = set(properties)
        unknown = properties - set(PROPERTIES)
        if unknown:
            raise ValueError(f"properties must be among {PROPERTIES}, got {sorted(unknown)}")
        if isinstance(return_std, (bool, np.bool_)):
            std_of = set(properties) if return_std else set()
        else:
            std_of = set(return_std)
            if std_of - set(PROPERTIES):
                raise ValueError(f"return_std names unknown properties {sorted(std_of - set(PROPERTIES))}")
            properties |= std_of
        return thread_map(
            lambda item: self._predict_one(item[1], item[0], std_of, kind, properties),
            list(enumerate(frames)), self.n_jobs,
        )

    def _predict_one(self, atoms: Atoms, index: int, std_of: set, kind: str, properties: set) -> dict:
        descriptor, gp = self.descriptor_, self.gp_
        species = descriptor.species_indices(atoms, index)
        e0 = np.array([self.e0_[int(z)] for z in atoms.numbers])
        if not atoms.pbc.all():
            properties, std_of = properties - {"stress"}, std_of - {"stress"}
        need_gradients = bool({"forces", "stress"} & properties)
        values = descriptor.compute(atoms, index=index)
        kernel, factor = gp.local_kernel(values, species)
        energies = kernel @ gp.alpha[:len(gp.sparse)] + e0
        term_descriptors = list(getattr(self, "term_descriptors_", {}).values())
        if term_descriptors:  # explicit rows: cheap for pairs and triplets
            energies, term_forces, term_virial = self._term_means(atoms, index, energies, term_descriptors,
                                                                  need_gradients, "stress" in properties)
        baseline = getattr(self, "baseline_", None)
        if baseline is not None:
            baseline_energies, baseline_forces, baseline_virial = baseline.compute(atoms, index)
            energies = energies + baseline_energies
        result = {"energy": float(energies.sum()), "free_energy": float(energies.sum()), "energies": energies}
        if need_gradients:
            # reverse mode: forces and virial without any gradient array
            forces, virial = descriptor.contract_gradients(atoms, gp.energy_gradient_weights(factor), index=index)
            virial = voigt(virial)
            if term_descriptors:
                forces, virial = forces + term_forces, virial + term_virial
            if baseline is not None:
                forces, virial = forces + baseline_forces, virial + baseline_virial
            result["forces"] = forces
            if "stress" in properties:
                result["stress"] = stress_from_virial(virial, atoms)
        if not std_of:
            return result
        scale = {"energy": 1.0, "forces": 1.0, "stress": 1.0}
        weight = {"energy": 1.0, "forces": 1.0, "stress": 1.0}  # of the noise against the latent variance
        if kind == self.std_scale_variance_:  # calibrate() measured the factors for this kind only
            scale.update(getattr(self, "std_scale_", {}))
            weight.update(getattr(self, "std_noise_weight_", {}))
        variances, structure = {}, structure_name(atoms, index)  # (named in a negative-variance warning)
        if term_descriptors:
            variances = self._term_model_variances(atoms, index, values, species, std_of, kind, term_descriptors)
        if {"energies", "energy"} & std_of and not term_descriptors:
            quantities = sorted({"energies", "energy"} & std_of)
            priors = gp.prior_variances(values, species, None, quantities) if kind != "sor" else {}
            rows_of = {"energies": kernel, "energy": kernel.sum(axis=0)}
            variances = {name: gp.variance(rows_of[name], kind, priors.get(name), name=structure)
                         for name in quantities}
        if {"forces", "stress"} & std_of and not term_descriptors:
            # force and virial rows one block of atoms at a time: memory stays that of a block
            blocks = descriptor.gradient_blocks(atoms, strain="stress" in std_of, positions="forces" in std_of,
                                                index=index)
            gradient = gp.gradient_variances(values, species, factor, blocks, kind, forces="forces" in std_of,
                                             virial="stress" in std_of, precision=self.force_std_precision,
                                             name=structure)
            variances.update({"forces": gradient.get("forces"), "stress": gradient.get("virial")})
        units = {"energies": scale["energy"], "energy": scale["energy"], "forces": scale["forces"],
                 "stress": scale["stress"] / atoms.get_volume() if "stress" in std_of else None}
        noise = self._label_noise(len(atoms)) if self.std_noise else {}
        for name in sorted(std_of):
            std = np.sqrt(variances[name] + weight.get(name, 1.0) * noise.get(name, 0.0)) * units[name]
            result[f"{name}_std"] = float(std[0]) if name == "energy" else std.reshape(np.shape(result[name]))
        return result

    def _label_noise(self, n_atoms: int) -> Dict[str, float]:
        """Noise variance of a new label of a structure of ``n_atoms`` (energy eV^2,
        forces (eV/A)^2, virial eV^2), as the fit weighted the labels; kinds not fitted
        have none."""
        sigmas = self.label_sigmas_
        per_atom = n_atoms if sigmas["per_atom"] else 1
        noise = {}
        if sigmas["energy"] is not None:
            noise["energy"] = sigmas["energy"]**2 * per_atom
        if sigmas["forces"] is not None:
            noise["forces"] = sigmas["forces"]**2
        if sigmas["virial"] is not None:
            noise["stress"] = sigmas["virial"]**2 * per_atom  # virial, divided by the volume with the std
        return noise

    def _term_means(self, atoms, index, energies, term_descriptors, need_gradients, with_stress, term_rows=None):
        """Add the extra terms' local energies; their forces and virial (zeros without gradients).

        ``term_rows``: each term's kernel rows of ``atoms`` when already computed (with the
        gradients asked)."""
        gp = self.gp_
        gradients = (["positions", "strain"] if with_stress else ["positions"]) if need_gradients else False
        if term_rows is None:
            term_rows = [term.rows(found.compute(atoms, gradients=gradients, index=index))
                         for term, found in zip(gp.terms, term_descriptors)]
        forces, virial = np.zeros((len(atoms), 3)), np.zeros(6)
        for rows, columns in zip(term_rows, gp.term_slices()):
            alpha = gp.alpha[columns]
            energies = energies + rows["energies"] @ alpha
            if need_gradients:
                forces += rows["forces"] @ alpha
            if "virial" in rows:
                virial += rows["virial"] @ alpha
        return energies, forces, virial

    def _term_model_variances(self, atoms, index, values, species, std_of, kind, term_descriptors) -> dict:
        """Variances of a model with extra terms, from the rows of the whole structure.

        The SOAP rows, then each term's rows (:meth:`SparseSet.rows` with the terms'
        instances), and priors that add; memory is that of the structure's force rows
        (``3 n_atoms x M``), not of a block of atoms as for SOAP-only models.
        """
        gp = self.gp_
        gradients = []
        if {"forces", "stress"} & std_of:
            gradients.append("positions")
        if "stress" in std_of:
            gradients.append("strain")
        grad = self.descriptor_.compute(atoms, gradients=gradients, index=index)[1] if gradients else None
        instances = [found.compute(atoms, gradients=gradients or False, index=index) for found in term_descriptors]
        rows = gp.rows(values, species, grad, instances)
        names = {"energies": "energies", "energy": "energy", "forces": "forces", "stress": "virial"}
        quantities = sorted(names[name] for name in std_of)
        priors = gp.prior_variances(values, species, grad, quantities, instances) if kind != "sor" else {}
        m = len(gp.alpha)
        return {name: gp.variance(rows[names[name]].reshape(-1, m), kind, priors.get(names[name]),
                                  name=structure_name(atoms, index))
                for name in std_of}

    def to_state(self) -> Tuple[dict, Dict[str, np.ndarray]]:
        """The fitted model as a JSON-able header and named arrays (what files store).

        Returns
        -------
        header : dict
            Hyperparameters (``params``), descriptor settings, ``e0``, ``zeta``,
            ``delta``, ``n_observations`` and ``std_scale``.
        arrays : dict of str to ndarray
            ``sparse``, ``sparse_species``, ``alpha``, ``r_factor``, ``kmm_factor`` and
            ``isolated`` (descriptors of neighbourless atoms, see :class:`gapy.gp.SparseSet`).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The model is not fitted.

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> header, arrays = model.to_state()
        >>> header["zeta"], arrays["alpha"].shape
        (4, (20,))
        """
        return estimator_state.to_state(self)

    @classmethod
    def from_state(cls, header: dict, arrays: Dict[str, np.ndarray]) -> "GAPRegressor":
        """A fitted model from :meth:`to_state`'s output, every field checked.

        Parameters
        ----------
        header : dict
            The header of :meth:`to_state` (as read from a model file).
        arrays : dict of str to ndarray
            The arrays of :meth:`to_state`.

        Returns
        -------
        GAPRegressor
            A fitted model that predicts as the one that wrote the state.

        Raises
        ------
        gapy.ModelFileError
            A missing or malformed field, arrays of inconsistent shapes or non-finite
            values.

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> copy = GAPRegressor.from_state(*model.to_state())
        >>> test = load_si("test")[:2]
        >>> bool((copy.predict(test) == model.predict(test)).all())
        True
        """
        return estimator_state.from_state(cls, header, arrays)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the fitted model to ``path``: an ``.npz`` archive with a checked JSON header.

        No pickle; the write is atomic (a failed save leaves a previous file unchanged).
        Load it with :func:`gapy.load`.

        Parameters
        ----------
        path : str or os.PathLike
            File to write (e.g. ``model.gapy``; any name); its directory must exist.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The model is not fitted.
        OSError
            The file cannot be written (``IsADirectoryError``: ``path`` is a directory;
            ``FileNotFoundError``: its directory does not exist).

        See Also
        --------
        gapy.io.write_state : The file format.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import gapy
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     model.save(Path(tmp) / "si.gapy")
        ...     loaded = gapy.load(Path(tmp) / "si.gapy")
        >>> loaded.get_params() == model.get_params()
        True
        """
        estimator_state.save_model(self, path)

    def score(self, frames: Sequence[Atoms], y=None, sample_weight=None) -> float:
        """Negative energy RMSE per atom (eV/atom): higher is better.

        Compares predicted and reference total energies divided by the number of atoms.
        This is the score scikit-learn's model selection (``cross_val_score``,
        ``GridSearchCV``) maximises by default; its named scorers
        (``scoring="neg_mean_absolute_error"``) compare predictions with a ``y``, which
        this estimator does not take (they give NaN): use this score, or
        :func:`gapy.search.search_settings` for forces and stresses too.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Structures with reference energies (under ``energy_key``).
        y : None or array-like of shape (n_frames,)
            The energies are read from the structures; a ``y`` must be them.
        sample_weight : array-like of shape (n_frames,), optional
            Weights of the structures in the mean squared error (finite, non-negative,
            not all zero).

        Returns
        -------
        float
            ``-sqrt(mean((E_pred / N - E_ref / N)^2))`` in eV/atom; at most 0.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The model is not fitted.
        ValueError
            ``y`` that is not the structures' energies, or ``sample_weight`` of the wrong
            shape, negative, NaN or all zero.
        gapy.StructureError
            A structure has no energy label.

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> score = model.score(load_si("test")[:3])
        >>> bool(score <= 0)
        True
        """
        check_is_fitted(self, "gp_")
        frames = as_frames(frames)
        weights = _SampleWeights(sample_weight, len(frames)).values
        if weights is not None and not weights.sum() > 0:
            raise ValueError("sample_weight must have a positive value: all weights are zero")
        labels = [self._read_labels(atoms, k) for k, atoms in enumerate(frames)]
        _check_y(y, [lab.energy for lab in labels], [structure_name(atoms, k) for k, atoms in enumerate(frames)])
        missing = [k for k, lab in enumerate(labels) if lab.energy is None]
        if missing:
            raise StructureError(f"score needs energies; structures {missing[:10]} have none")
        n_atoms = np.array([len(atoms) for atoms in frames])
        predicted = self.predict(frames) / n_atoms
        reference = np.array([lab.energy for lab in labels]) / n_atoms
        return -float(np.sqrt(np.average((predicted - reference) ** 2, weights=weights)))


def _check_y(y, energies: Sequence[Optional[float]], names: Sequence[str]) -> None:
    """scikit-learn's ``y``: the labels are read from the structures, so a ``y`` (``cross_val_score(model, frames,
    energies)``) is accepted only when it is their total energies; any other would be silently ignored."""
    if y is None:
        return
    try:
        values = np.asarray(y, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"y must be None or the structures' total energies, got {type(y).__name__}") from None
    if len(values) != len(energies):
        raise ValueError(f"y has {len(values)} values for {len(energies)} structures; the labels are read from "
                         "the structures (pass y=None)")
    for value, energy, name in zip(values, energies, names):
        if energy is None or not np.isclose(value, energy, rtol=1e-6, atol=1e-6):
            raise ValueError(f"y is {value:.10g} for {name}, whose energy label is {energy}: the labels are read "
                             "from the structures (atoms.calc, or info/arrays under energy_key, forces_key, "
                             "stress_key); put the targets there and pass y=None")


class _SampleWeights:
    """``sample_weight`` checked, indexed by structure; its length is checked against the
    number of structures as soon as that is known (after pass 1 for a stream)."""

    def __init__(self, sample_weight, n_frames: Optional[int]):
        self.values = None
        if sample_weight is None:
            return
        weights = np.asarray(sample_weight, dtype=float)
        if weights.ndim != 1 or (n_frames is not None and weights.shape != (n_frames,)):
            expected = f"({n_frames},)" if n_frames is not None else "(n_frames,)"
            raise ValueError(f"sample_weight must have shape {expected}, got {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("sample_weight must be finite and non-negative")
        self.values = weights

    def __getitem__(self, k: int) -> float:
        if self.values is None:
            return 1.0
        if k >= len(self.values):
            raise ValueError(f"sample_weight has {len(self.values)} values, but there are more structures "
                             f"(structure {k} has none)")
        return self.values[k]

    def check_count(self, n_frames: int) -> None:
        if self.values is not None and len(self.values) != n_frames:
            raise ValueError(f"sample_weight must have shape ({n_frames},), got {self.values.shape}")


@dataclass
class _Summary:
    """What pass 1 keeps of one structure (no per-atom arrays but ``composition``)."""

    index: int
    n_atoms: int
    weight: float
    used: bool
    composition: np.ndarray  # atoms of each descriptor species
    energy: Optional[float]
    isolated_number: Optional[int]  # atomic number of a single atom without neighbours (is_isolated_atom)
    label_sizes: Dict[str, Optional[int]]  # values of each label kind fitted, None where missing
    lookalikes: Dict[str, str]  # fitted kind it lacks: a name that looks like that label (lookalike_labels)
    name: str  # structure_name, for messages
    keys: Optional[tuple]  # info keys, array names, calculator results (dropped once merged)
    pair_shortest: Optional[Dict[Tuple[int, int], float]] = None  # shortest distance by species pair
    config_type: Optional[object] = None  # atoms.info["config_type"]
    close_pair: Optional[str] = None  # closest_covalent_pair(atoms, CLOSE_FACTOR)
    force_rms: Optional[float] = None  # root mean square of the force labels (eV/A), None without
    geometry: str = ""  # gapy.labels.geometry_digest: the numbers, positions, cell and pbc
    label_digest: str = ""  # ... and of the labels
    volume_per_atom: Optional[float] = None  # (A^3) of a structure with a virial label


def _training_record(used: List[_Summary], environments: Dict[str, int], labels: Dict[str, int],
                     random_state) -> dict:
    """What a model was fitted on, for its file (``provenance_["training"]``, ``gapy info``):
    structures, environments per species, labels, config types, the range of the energies
    per atom, a SHA-256 of the structures (species, positions, cell, pbc), their labels as
    read and their weights, in their order, the seed (None for a Generator) and the
    structures' :func:`geometry_keys`."""
    hasher = hashlib.sha256()
    for summary in used:
        hasher.update(f"{summary.geometry} {summary.label_digest} {float(summary.weight).hex()}\n".encode())
    per_atom = [summary.energy / summary.n_atoms for summary in used if summary.energy is not None]
    config_types = Counter(str(summary.config_type) for summary in used if summary.config_type is not None)
    return {"structures": len(used), "atoms": int(sum(summary.n_atoms for summary in used)),
            "environments": dict(environments), "labels": dict(labels),
            "config_types": dict(sorted(config_types.items())),
            "energy_per_atom": [min(per_atom), max(per_atom)] if per_atom else None, "sha256": hasher.hexdigest(),
            "seed": int(random_state) if isinstance(random_state, (int, np.integer)) else None,
            "geometry_keys": geometry_keys([summary.geometry for summary in used])}


def geometry_keys(geometries: Sequence[str]) -> str:
    """The structures' :func:`gapy.labels.geometry_digest` cut to 64 bits, as base64 text.

    Sorted, 11 characters per structure in a model file: :meth:`GAPRegressor.calibrate`
    names training structures among its held-out ones by them.
    """
    keys = np.unique(np.array([int(text[:16], 16) for text in geometries], dtype=np.uint64))
    return base64.b64encode(keys.astype("<u8").tobytes()).decode("ascii")


def training_structures(model: "GAPRegressor", frames: Sequence[Atoms]) -> List[int]:
    """Indices of ``frames`` that ``model`` was fitted on (by :func:`geometry_keys`).

    [] for a model whose file has none.
    """
    record = getattr(model, "provenance_", {}).get("training")
    text = record.get("geometry_keys") if isinstance(record, dict) else None
    try:
        keys = np.frombuffer(base64.b64decode(text, validate=True), dtype="<u8") if isinstance(text, str) else None
    except ValueError:  # (binascii.Error, or a length that is no multiple of 8: a file edited by hand)
        keys = None
    if keys is None or not len(keys):
        return []
    wanted = np.array([int(geometry_digest(atoms)[:16], 16) for atoms in frames], dtype=np.uint64)
    return np.flatnonzero(np.isin(wanted, keys)).tolist()


def _candidate_seed(random_state) -> int:
    """Seed of the candidate keys, from ``random_state`` without consuming a Generator."""
    if isinstance(random_state, np.random.Generator):
        random_state = copy.deepcopy(random_state)
    return int(np.random.default_rng(random_state).integers(2**63))


def _first_pass_task(task: tuple, shared: tuple):
    """Pass 1 of a fit for one structure ``(item, index, weight)``; ``shared`` is
    ``(model, descriptor)`` (a module function: a small task for dask)."""
    item, k, weight = task
    model, descriptor = shared
    return model._first_pass_one(load_structure(item), k, weight, descriptor)


def _observation_rows_task(task: tuple, shared: tuple) -> dict:
    """Pass 2 of a fit for one structure ``(item, index, weight)``: its observations;
    ``shared`` is ``(model, descriptor, basis, term descriptors)``."""
    item, k, weight = task
    model, descriptor, basis, term_descriptors = shared
    atoms = load_structure(item)
    labels = model._read_labels(atoms, k, warn=False)  # (pass 1 gave them)
    species = descriptor.species_indices(atoms, k)
    return model._structure_observations(atoms, k, labels, species, descriptor, basis, weight, term_descriptors)


def _structure_batches(source: FrameSource, indices: Optional[List[int]], size: int,
                       remote: bool) -> Iterator[List[tuple]]:
    """Lists of up to ``size`` ``(index, item)`` pairs, in order; an item is an ``Atoms``
    read here, or, for work on a dask cluster, a :class:`gapy.io.StructureRef` to a file
    that the worker reads itself."""
    if remote and isinstance(source, FileSource):
        source.begin_pass()
        items = ((k, source.reference(k)) for k in (range(len(source)) if indices is None else indices))
    else:
        items = source.structures(indices)
    batch = []
    for k, item in items:
        batch.append((k, item))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class _FitPlan:
    """What pass 1 of a fit decided: the structures used and the sparse points."""

    source: FrameSource
    used: List[int]
    weights: "_SampleWeights"
    descriptor: SOAP
    basis: SparseSet
    remote: bool
    term_descriptors: Dict[str, object]
    n_atoms: Dict[int, int]  # atoms of each used structure
    names: Dict[int, str]  # structure_name of each used structure
    energy_sigma_ceiling: float  # ENERGY_NOISE_SHARE x the energies' spread per atom (x sqrt(weight)), or 0
    training: dict  # _training_record: what the model was fitted on (provenance_["training"])
    volumes: Dict[int, float]  # volume per atom of each used structure with a virial label

    def unit_basis(self) -> SparseSet:
        """:attr:`basis` with every delta (SOAP's and each term's) set to 1."""
        return replace(self.basis, delta=1.0, terms=tuple(replace(term, delta=1.0) for term in self.basis.terms))


def _noise_scaled(observations: dict) -> Tuple[np.ndarray, np.ndarray]:
    """Rows and targets of one structure divided by their noise sigma, stacked."""
    blocks = [rows / sigmas[:, None] for rows, _, sigmas in observations.values()]
    targets = [values / sigmas for _, values, sigmas in observations.values()]
    if not blocks:
        return np.zeros((0, 0)), np.zeros(0)
    return np.concatenate(blocks), np.concatenate(targets)


def isolated_descriptors(descriptor: SOAP) -> np.ndarray:
    """Descriptor of an atom without neighbours, one row per species of ``descriptor``.

    Returns
    -------
    ndarray of shape (n_species, n_features)
    """
    return np.concatenate([descriptor.compute(Atoms(numbers=[z], pbc=False)) for z in descriptor.atomic_numbers])


#: A 2-body class (species pair) with fewer pairs than ``RARE_PAIRS`` in the training data, and
#: fewer than ``RARE_PAIRS_SHARE`` of the most common class's, is left out of the term, with a
#: warning: beside a well-sampled pair it shares the term's delta with, its pair energy is poorly
#: determined (a Cu-1.5 % Au fit gave Au-Au pairs at distances without data force errors of 21 eV/A).
RARE_PAIRS, RARE_PAIRS_SHARE = 100, 0.05
class _TermCollector:
    """Pass 1 of a fit for one extra term: what its sparse points are chosen from.

    A 2-body (one-feature) term keeps the shortest distance of each class (the grid
    starts there); a term with more features keeps a seeded uniform sample of at most
    ``cap`` instances per class (:class:`CandidateReservoir`), among which farthest-point
    sampling chooses.
    """

    def __init__(self, name: str, term: Term, cap: Optional[int], seed: int):
        self.name, self.term = name, term
        self.count = 0
        self.grid = term.descriptor.n_features == 1
        self.shortest: Dict[int, float] = {}
        self.longest: Dict[int, float] = {}
        self.pairs: Dict[int, int] = {}
        self.reservoir = None if self.grid else CandidateReservoir(cap, seed)

    def add(self, group: int, values: np.ndarray, classes: np.ndarray) -> None:
        self.count += len(values)
        if self.grid:
            for c in np.unique(classes).tolist():
                found = values[classes == c, 0]
                self.shortest[c] = min(self.shortest.get(c, np.inf), float(found.min()))
                self.longest[c] = max(self.longest.get(c, -np.inf), float(found.max()))
                self.pairs[c] = self.pairs.get(c, 0) + len(found)
        elif len(values):
            self.reservoir.add(group, classes, values)

    def sparse_set(self, random_state) -> InstanceSparseSet:
        descriptor = self.term.descriptor
        if self.count == 0:
            kind = "pair" if self.grid else "triplet"
            raise ValueError(f"{self.name}: no {kind} of atoms of any training structure is within "
                             f"r_cut={descriptor.r_cut} A of its descriptor; increase r_cut or drop the term")
        theta = check_theta(self.term.theta, descriptor.n_features)
        if self.grid:
            rare = self._rare_pairs()
            classes = np.array(sorted(c for c in self.shortest if c not in rare), dtype=np.int64)
            shortest = np.array([[self.shortest[c]] for c in classes.tolist()])
            sparse, sparse_classes = grid_points(shortest, classes, int(self.term.n_sparse), float(descriptor.r_cut))
        else:
            values, classes, _, _ = self.reservoir.result()
            sparse, sparse_classes = instance_points(values, classes, int(self.term.n_sparse), "fps", theta,
                                                     random_state)
        return InstanceSparseSet(sparse, sparse_classes, theta, float(self.term.delta))

    def _rare_pairs(self) -> List[int]:
        """The species pairs with few pairs beside a well-sampled one, left out of the term (warned):
        sharing the term's one delta with the common pairs, their pair energy is poorly determined
        and was extrapolated wildly at distances without data; SOAP alone describes them."""
        labels, most = self.term.descriptor.class_labels(), max(self.pairs.values(), default=0)
        rare = [c for c, n in sorted(self.pairs.items()) if n < RARE_PAIRS and n < RARE_PAIRS_SHARE * most]
        if rare:
            names = [f"{chemical_symbols[labels[c][0]]}-{chemical_symbols[labels[c][1]]}: {self.pairs[c]} pairs at "
                     f"{self.shortest[c]:.2f}-{self.longest[c]:.2f} A" for c in rare]
            warnings.warn(f"{self.name}: few pairs of some species in the training data ({'; '.join(names)}): "
                          "they are left out of the term, so SOAP alone describes them (with the term's one delta, "
                          "set by the common pairs, they were extrapolated wildly at distances without data); add "
                          "structures with them to bring them in", RuntimeWarning, stacklevel=4)
        return rare
