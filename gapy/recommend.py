"""Recommended settings of a GAP model, read from the training data.

:func:`recommend` looks at the structures (species, interatomic distances, density,
labels) and returns an unfitted :class:`gapy.GAPRegressor` with a SOAP term, a 2-body
term and a short-range ZBL baseline, each setting with the reason it was chosen. The
scales that the data determine best, the deltas of the terms and the noise sigmas, are
left to :meth:`gapy.GAPRegressor.maximize_evidence`, which ``gapy fit`` runs after it.

The geometric rules are stated in units of the data, not of an element:

- ``r_cut`` holds :data:`NEIGHBOURS` neighbours on average at the density of the data
  (median over atoms of the number density within three nearest-neighbour distances,
  leaving out atoms in vacuum such as isolated atoms and dimers);
  published GAPs of Si, Mo, W, Fe and C hold 26-44 within their cutoff. It is at most
  :data:`MAX_CUTOFF_RATIO` nearest-neighbour distances (data with no condensed phase).
- The 2-body length scale ``theta`` is a fifth of the median nearest-neighbour distance,
  with a grid of sparse distances every ``theta / 3``.
- The SOAP density is radially scaled (Willatt et al. 2018): a neighbour's weight halves
  at ``scaling_radius``, the radius of a sphere holding :data:`SCALED_NEIGHBOURS`
  neighbours at the same density (``0.70 r_cut``), and falls as ``r^-3`` beyond.
- The SOAP basis has ``n_max = 8`` radial functions for one or two species, ``16 //
  n_species`` for more, at least 4 (the power spectrum grows as the square of ``n_species x n_max``).
- The widths (``atom_sigma`` and ``cutoff_width`` 0.5 A, the 2-body ``cutoff_width`` 1 A, as
  in the published GAPs of elements with bonds of 1.4-2.9 A) grow in proportion to the
  nearest-neighbour distance beyond :data:`LONG_BOND` (argon, alkali metals).
- The starts of the evidence search (the deltas, ``sigma_energy 0.005``, ``sigma_force 0.1``,
  ``sigma_virial 0.02``; it searches a factor 100 either way) are those of solids with
  DFT labels, whose energy scale (force RMS x nearest-neighbour distance) lies within
  :data:`ENERGY_SCALE`; data outside it (a noble-gas solid, stiff short bonds) have them
  scaled by the ratio to the nearer bound (the sigmas only down), the force sigma also
  divided by the length factor of the widths.
"""

import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from .baseline import PAIR_LENGTH_RATIO, ZBL, merge_shortest, shortest_pair_distances
from .descriptors import SOAP, TwoBody
from .estimator import GAPRegressor
from .gp.energy_noise import ENERGY_NOISE_SHARE, energy_spread
from .labels import (SIGMA_NAMES, ZERO_FORCES, label_keys, lookalike_labels, mixed_label_names, outlying_forces,
                     read_labels)
from .structures import (as_frames, atomic_number, is_isolated_atom, molecule_image_distance, neighbor_pairs,
                         structure_name)
from .term import Term

#: Mean number of neighbours within the recommended SOAP cutoff.
NEIGHBOURS = 35
#: Mean number of neighbours within the radius where the radial scaling halves a
#: neighbour's weight, and the exponent of that scaling.
SCALED_NEIGHBOURS, SCALING_EXPONENT = 12, 3.0
#: Largest cutoff, in nearest-neighbour distances: the density rule gives 1.9-2.5 for the
#: published GAPs of solids and liquids, but 10 for data of dimers alone (the density of a
#: gas), whose predictions would then look 20 A around every atom.
MAX_CUTOFF_RATIO = 5.0
#: Atoms count in the density when their neighbours within three nearest-neighbour
#: distances are at least this share of the 90th percentile over atoms ("condensed").
CONDENSED_SHARE = 0.5
#: Structures sampled (seeded) for the geometry when there are more.
SAMPLE = 300
#: Largest number of sparse points per species, the share of a species' environments
#: used when there are few, and the largest total over all species.
MAX_SPARSE, SPARSE_SHARE, MAX_SPARSE_TOTAL = 2000, 0.25, 4000
#: A species has at least this share of the largest species' sparse points (or all its environments, when it
#: has fewer): a minority species' environments are as diverse as its atoms (each sits in another environment
#: of the others), and a quarter of them was too few (EMT Cu with 1.5 % Au: 10 of 38 Au environments gave Au
#: forces 0.34 eV/A, all 38 gave 0.19; the cost is that of the largest species).
MINORITY_SPARSE_SHARE = 0.1
#: Nearest-neighbour distance (A) up to which the widths of the published GAPs (``atom_sigma`` 0.5 A)
#: are kept; beyond it they grow in proportion (mlearn Si and Mo, the EMT metals: 2.3-2.7 A).
LONG_BOND = 3.0
#: Energy scale of the data (eV: force RMS x nearest-neighbour distance, or for data without
#: forces the spread of the energies per atom, eV/atom) within which the evidence search starts
#: from the usual deltas and sigmas (mlearn Si 2.0 and Mo 4.1 eV, EMT metals 1.1-1.9 eV; energy
#: spreads 0.06-0.43 eV/atom); beyond a bound the starts are scaled by the ratio to it.
ENERGY_SCALE, ENERGY_SPREAD = (1.0, 5.0), (0.05, 0.5)
#: Largest virial noise the evidence may choose for data of several species, as a multiple of the RMS of the
#: virial labels per atom: with many force labels it can prefer to leave the stresses unfitted (random EMT alloys
#: of 3-4 species: sigma_virial at the top of its window, 2 eV/atom against virials of 0.2-0.27, test stresses
#: 6-7 GPa off, worse than zero). One species is left as it was (mlearn Si's evidence chooses 1.2 times its
#: virials' RMS and still predicts the test stresses to 0.6 GPa; the bound moved its deltas by 1e-4).
VIRIAL_NOISE_SHARE = 2.0


@dataclass
class Recommendation:
    """Settings chosen from the data by :func:`recommend`.

    Every parameter is stored as an attribute of the same name.

    Parameters
    ----------
    model : GAPRegressor
        The unfitted model with the recommended settings.
    reasons : dict of str to str
        Setting name (as in ``model.get_params()``) to why it has its value.
    measured : dict of str to float
        What the data showed: ``nearest_neighbour`` and ``shortest`` distances (A),
        ``density`` (atoms/A^3), ``structures`` looked at.
    fixed : list of str, default=[]
        Parameters that :meth:`GAPRegressor.maximize_evidence` should not change (those
        the user set by hand in :func:`recommend`'s ``overrides``).
    bounds : dict, default={}
        Search bounds for :meth:`GAPRegressor.maximize_evidence` other than its default
        (``sigma_energy`` at most :data:`ENERGY_NOISE_SHARE` times the spread of the
        energies per atom; with several species ``sigma_virial`` at most
        :data:`VIRIAL_NOISE_SHARE` times the RMS of the virials per atom).
    energy_sigma : str, default="cross-validation"
        How :meth:`GAPRegressor.maximize_evidence` chooses ``sigma_energy`` after the
        evidence (:mod:`gapy.gp.energy_noise`).

    Examples
    --------
    >>> from gapy.recommend import recommend
    >>> from gapy.datasets import load_si
    >>> recommendation = recommend(load_si("train")[:20])
    >>> recommendation.model.descriptor.r_cut > 4.0, recommendation.model.two_body is not None
    (True, True)
    """

    model: GAPRegressor
    reasons: Dict[str, str]
    measured: Dict[str, float]
    fixed: list = field(default_factory=list)
    bounds: dict = field(default_factory=dict)
    energy_sigma: str = "cross-validation"

    @property
    def evidence_options(self) -> dict:
        """The keyword arguments of :meth:`GAPRegressor.maximize_evidence` for these settings.

        Examples
        --------
        >>> from gapy.recommend import recommend
        >>> from gapy.datasets import load_si
        >>> sorted(recommend(load_si("train")[:20]).evidence_options)
        ['bounds', 'energy_sigma', 'fixed']
        """
        return {"fixed": list(self.fixed), "bounds": dict(self.bounds), "energy_sigma": self.energy_sigma}

    def fit(self, frames, sample_weight=None) -> GAPRegressor:
        """Fit :attr:`model` as ``gapy fit`` does, keeping these reasons in the model.

        The deltas and sigmas are chosen by the evidence (:attr:`evidence_options`); the
        reasons go to ``provenance_["recommended"]``, which model files store.

        Parameters
        ----------
        frames : sequence of ase.Atoms or path
            The labelled training structures.
        sample_weight : array-like, optional
            Per-structure weights (0 leaves a structure out).

        Returns
        -------
        GAPRegressor
            :attr:`model`, fitted.

        Examples
        --------
        >>> from gapy.recommend import recommend
        >>> from gapy.datasets import load_si
        >>> train = load_si("train")[:8]
        >>> model = recommend(train, overrides={"descriptor__n_max": 4, "descriptor__l_max": 3}).fit(train)
        >>> sorted(model.provenance_)
        ['evidence', 'recommended', 'training']
        """
        self.model.maximize_evidence(frames, sample_weight=sample_weight, **self.evidence_options)
        self.model.provenance_["recommended"] = self.as_dict()
        return self.model

    def summary(self) -> str:
        """One line per setting: the value and why.

        Returns
        -------
        str
            The table ``gapy fit`` prints.

        Examples
        --------
        >>> from gapy.recommend import recommend
        >>> from gapy.datasets import load_si
        >>> print(recommend(load_si("train")[:20]).summary().splitlines()[0])
        recommended settings (from 20 structures):
        """
        params = self.model.get_params()
        lines = [f"recommended settings (from {int(self.measured['structures'])} structures):"]
        for name, why in self.reasons.items():
            value = params.get(name, "")
            lines.append(f"  {name} = {value!r}: {why}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """The reasons and measurements, JSON-serialisable (stored in model files).

        Returns
        -------
        dict
            ``{"reasons": ..., "measured": ..., "fixed": ..., "bounds": ...}``.

        Examples
        --------
        >>> from gapy.recommend import recommend
        >>> from gapy.datasets import load_si
        >>> sorted(recommend(load_si("train")[:20]).as_dict())
        ['bounds', 'energy_sigma', 'fixed', 'measured', 'reasons']
        """
        return {"reasons": dict(self.reasons), "measured": {k: float(v) for k, v in self.measured.items()},
                "fixed": list(self.fixed), "bounds": {k: [float(v) for v in pair] for k, pair in self.bounds.items()},
                "energy_sigma": self.energy_sigma}


def _cap_noise(bounds: dict, reasons: dict, sigmas: dict, name: str, share: float, scale: float, scale_what: str,
               labels: str, when: str = "") -> None:
    """Search the noise sigma ``name`` up to ``share x scale`` (never below its start), with the reason."""
    if not scale > 0 or share * scale >= 100 * sigmas[name]:
        return
    ceiling = max(share * scale, sigmas[name])
    bounds[name] = (sigmas[name] / 100, ceiling)
    reasons[name] = reasons[name][:-1] + (
        f"; searched up to {ceiling:.3g} eV/atom, {share:g} x {scale_what} ({scale:.3g}): with more noise than that "
        f"the {labels} would hardly be fitted, as the evidence can prefer{when} when forces far outnumber them)")


def recommend(frames: Union[Atoms, Iterable[Atoms]], *, energy_key: str = "energy", forces_key: str = "forces",
              stress_key: str = "stress", virial_key: str = "virial", overrides: Optional[dict] = None,
              n_environments: Optional[Dict[str, int]] = None, two_body: bool = True,
              random_state: int = 0) -> Recommendation:
    """Settings of a SOAP + 2-body GAP with a ZBL core, chosen from the training data.

    Parameters
    ----------
    frames : ase.Atoms or iterable of ase.Atoms
        The labelled training structures (all of them: the counts of environments per
        species set the number of sparse points; the geometry is read from a seeded
        sample of at most :data:`SAMPLE`).
    energy_key, forces_key, stress_key, virial_key : str
        Names of the labels, as for :class:`GAPRegressor`; a label kind that no
        structure carries is not fitted.
    overrides : dict, optional
        ``GAPRegressor.set_params`` values (nested names such as ``descriptor__r_cut``
        or ``two_body__delta`` work) applied after the recommendation; they are listed in
        :attr:`Recommendation.fixed` so that the evidence keeps them.
    n_environments : dict of str to int, optional
        Atoms of each species in the whole training set, when ``frames`` is a sample of
        it (a streamed file); default: counted in ``frames``.
    two_body : bool, default=True
        Add a 2-body term. On the mlearn test sets (CUR seeds 1-3) it lowers the force
        RMSE of the radially scaled SOAP by 1.7 % on Si and 0.9 % on Mo; the energy RMSE
        moves within the seed spread (Si +3 %, Mo -1 %).
    random_state : int, default=0
        Seed of the structure sample and of the model.

    Returns
    -------
    Recommendation
        The model (unfitted), the reasons and what was measured.

    Raises
    ------
    ValueError
        No structures, no labels at all, or no atom with a neighbour within 8 A.

    See Also
    --------
    GAPRegressor.maximize_evidence : chooses the deltas and sigmas of the recommended model.

    Examples
    --------
    >>> from gapy.recommend import recommend
    >>> from gapy.datasets import load_si
    >>> frames = load_si("train")[:20]
    >>> recommendation = recommend(frames)
    >>> model = recommendation.model.maximize_evidence(frames)  # doctest: +SKIP
    """
    frames = as_frames(frames)
    keys = dict(energy_key=energy_key, forces_key=forces_key, stress_key=stress_key, virial_key=virial_key)
    counts: Dict[int, int] = {}
    has = {"energy": 0, "forces": 0, "virial": 0}
    force_squares = []  # per structure with forces: sum of squared force components, and their number
    virials = []  # per structure with a virial: its components per atom (eV/atom)
    compositions, energies, singles = [], [], []  # of the structures with an energy; singles: one atom
    present = sorted({int(z) for atoms in frames for z in atoms.numbers})
    lookalikes = []  # per structure: kind it lacks to a name that looks like that label
    for k, atoms in enumerate(frames):
        labels = read_labels(atoms, k, **keys, warn=False)  # (the fit warns of units and label conflicts)
        lookalikes.append({kind: names[0] for kind in has if getattr(labels, kind) is None
                           for names in [lookalike_labels(atoms, kind)] if names})
        if labels.energy is not None:
            compositions.append([int(np.sum(atoms.numbers == z)) for z in present])
            energies.append(float(labels.energy))
            singles.append(k if len(atoms) == 1 else None)
        for kind in has:
            has[kind] += getattr(labels, kind) is not None
        if labels.virial is not None:
            virials.append(np.ravel(labels.virial) / len(atoms))
        if labels.forces is not None:
            force_squares.append((float(np.sum(np.square(labels.forces))), int(np.size(labels.forces))))
        for z, n in zip(*np.unique(atoms.numbers, return_counts=True)):
            counts[int(z)] = counts.get(int(z), 0) + int(n)
    if not any(has.values()):
        raise ValueError("recommend: no structure has an energy, forces or a stress "
                         f"(looked for {energy_key!r}, {forces_key!r}, {stress_key!r}/{virial_key!r}); "
                         f"{structure_name(frames[0], 0)} has {label_keys(frames[0])}: name the labels with "
                         "energy_key=..., forces_key=..., stress_key=... or virial_key=...")
    fitted = [kind for kind, sigma in SIGMA_NAMES.items() if (overrides or {}).get(sigma, 0.0) is not None]
    mixed = mixed_label_names([structure_name(atoms, k) for k, atoms in enumerate(frames)], lookalikes, fitted,
                              {"energy": energy_key, "forces": forces_key, "virial": stress_key},
                              without=lambda sigma: f"overrides={{{sigma!r}: None}}")
    if mixed is not None:
        raise ValueError(f"recommend: {mixed}")
    if n_environments is not None:
        counts = {atomic_number(symbol): int(n) for symbol, n in n_environments.items()}
    species = sorted(counts)
    symbols = [chemical_symbols[z] for z in species]
    rng = np.random.default_rng(random_state)
    picked = sorted(rng.choice(len(frames), min(SAMPLE, len(frames)), replace=False).tolist())
    sample = [frames[k] for k in picked]
    nearest, shortest, density = _geometry(sample)

    reasons, measured = {}, {"nearest_neighbour": nearest, "shortest": shortest, "density": density,
                             "structures": float(len(frames))}
    r_cut = round(float((3 * NEIGHBOURS / (4 * np.pi * density)) ** (1 / 3)), 1)
    reasons["descriptor__r_cut"] = (f"{NEIGHBOURS} neighbours on average at the data's density "
                                    f"{density:.4f} atoms/A^3 (nearest neighbour {nearest:.2f} A)")
    if r_cut > MAX_CUTOFF_RATIO * nearest:  # (dimers or molecules in vacuum only: no condensed phase)
        r_cut = round(float(MAX_CUTOFF_RATIO * nearest), 1)
        reasons["descriptor__r_cut"] += (f"; at most {MAX_CUTOFF_RATIO:g} nearest-neighbour distances: these data "
                                         "have no condensed phase whose density could set it")
    _warn_molecule_images(frames, picked, r_cut)
    length = max(1.0, nearest / LONG_BOND)  # widths in units of the published GAPs' (bonds up to 3 A)
    factor, scale_why = _energy_factor(force_squares, nearest, compositions, energies, singles)
    noise = min(factor, 1.0)  # the sigma windows reach 100 x above their starts: only ever lowered
    start = {"delta": _start(1.0, factor), "sigma_energy": _start(0.005, noise),
             "sigma_force": _start(0.1, noise / length), "sigma_virial": _start(0.02, noise)}
    n_max = int(min(8, max(4, 16 // len(species))))
    reasons["descriptor__n_max"] = ("8 radial functions for one or two species, 16 // n_species for more, at "
                                    "least 4 (features grow as (n_species n_max)^2)")
    reasons["descriptor__l_max"] = "n_max, as the published SOAP-GAPs (l_max = n_max = 8 for one species)"
    scaling_radius = round(float(r_cut * (SCALED_NEIGHBOURS / NEIGHBOURS) ** (1 / 3)), 1)
    reasons["descriptor__scaling_radius"] = (
        f"radial scaling: a neighbour's weight halves where a sphere holds {SCALED_NEIGHBOURS} neighbours at the "
        "data's density, so that the many outer neighbours do not drown the near ones, while the outer shells "
        "still see a missing half-space (mlearn test forces 19 % below the published setup on Si, 3 % on Mo)")
    reasons["descriptor__scaling_exponent"] = f"weights fall as r^-{SCALING_EXPONENT:g} beyond scaling_radius"
    width = round(0.5 * length, 2)
    reasons["descriptor__atom_sigma"] = (
        "0.5 A as the published SOAP-GAPs (bonds of 1.4-2.9 A)" if length == 1 else
        f"0.5 A x nearest neighbour / {LONG_BOND:g} A: the published SOAP-GAPs' 0.5 A in proportion to the "
        f"longer bonds of the data ({nearest:.2f} A)")
    reasons["descriptor__cutoff_width"] = "as atom_sigma"
    soap = SOAP(symbols, r_cut=r_cut, n_max=n_max, l_max=n_max, atom_sigma=width, cutoff_width=width,
                scaling_radius=scaling_radius, scaling_exponent=SCALING_EXPONENT)

    n_sparse = {z: min(MAX_SPARSE, max(10, round(SPARSE_SHARE * counts[z]))) for z in species}
    floor = round(MINORITY_SPARSE_SHARE * max(n_sparse.values()))  # a minority species' environments are diverse
    n_sparse = {z: max(n, min(counts[z], floor)) for z, n in n_sparse.items()}
    scale = min(1.0, MAX_SPARSE_TOTAL / sum(n_sparse.values()))
    n_sparse = {symbol: int(min(max(1, counts[z]), max(10, round(scale * n_sparse[z]))))
                for symbol, z in zip(symbols, species)}
    reasons["n_sparse"] = (f"{MAX_SPARSE} per species, or {SPARSE_SHARE:.0%} of a species' environments when "
                           f"it has fewer than {int(MAX_SPARSE / SPARSE_SHARE)}, at least 10 (or all, when there are "
                           f"fewer), and at least {MINORITY_SPARSE_SHARE:.0%} of the largest species' count (or all of "
                           "its environments): each atom of a minority species sits in another environment of the "
                           f"others; at most {MAX_SPARSE_TOTAL} in all, shared in proportion (fit time grows as the "
                           "square of the total)")
    theta = round(max(0.05, nearest / 5), 2)
    grid = int(np.ceil((r_cut - shortest) / (theta / 3))) + 1
    pair_term = None
    if two_body:
        pair_term = Term(TwoBody(symbols, r_cut=r_cut, cutoff_width=round(2 * width, 2)), delta=start["delta"],
                         theta=theta, n_sparse=grid)
        reasons["two_body"] = (f"a pair term (length scale theta = nearest neighbour / 5 = {theta} A, {grid} "
                               f"sparse distances per pair from {shortest:.2f} A to r_cut, cutoff width twice "
                               "atom_sigma): the pair repulsion and bond stretching that SOAP's normalised kernel "
                               "describes poorly")
    baseline = "zbl"
    reasons["baseline"] = (f"ZBL repulsion switched off below 0.8 x the shortest distance in the data "
                           f"({shortest:.2f} A): keeps atoms apart where there is no data, zero on the data")
    if len(species) > 1:  # molecules: C-H bonds of 1.1 A beside H2 at 0.74 A need their own switch
        # all of them: the switch must stay below every pair of the data
        pair_shortest = merge_shortest(shortest_pair_distances(atoms, k) for k, atoms in enumerate(frames))
        zbl = ZBL.below_distance(min(pair_shortest.values(), default=shortest), pair_shortest=pair_shortest)
        if zbl.pairs:
            baseline = zbl
            reasons["baseline"] += (f"; the species pairs {', '.join(zbl.pairs)}, whose shortest distances (at most "
                                    f"the sum of covalent radii) are over {PAIR_LENGTH_RATIO:g} x longer, below 0.8 x "
                                    "their own: one switch for all would leave those pairs without repulsion below "
                                    "their bonds, where the GP, without data, can attract them")

    # an atom without a neighbour within the cutoff (no pbc, or a large box) has e0 as its energy
    isolated_rows = [row for row, k in enumerate(singles)
                     if k is not None and is_isolated_atom(frames[k], r_cut, k)]
    isolated = {int(frames[singles[row]].numbers[0]): energies[row] for row in isolated_rows}
    if all(z in isolated for z in species):
        e0, reasons["e0"] = "isolated", "energies of the isolated atoms in the data"
    elif isolated:
        e0 = _partial_isolated_e0(isolated, present, species, compositions, energies, isolated_rows)
        reasons["e0"] = (f"isolated-atom energies for {', '.join(chemical_symbols[z] for z in isolated)}; the "
                         "others' their energy per atom in the other structures (least squares on the "
                         "compositions) less the mean binding energy per atom of those species")
    elif len(species) > 1 and np.linalg.matrix_rank(np.array(compositions, dtype=float)) == len(species):
        e0, reasons["e0"] = "fit", ("per species, least squares of the energies on the compositions (no "
                                    "isolated-atom energies for every species; the compositions vary)")
    else:
        e0, reasons["e0"] = "average", ("mean energy per atom (no isolated-atom energies for every species"
                                        + ("; the compositions do not determine a constant per species)"
                                           if len(species) > 1 else ")"))
    if not has["energy"]:
        reasons["e0"] = "no energy labels: 0 (the energies are known up to a constant per atom)"
    sigmas = {name: start[name] if has[kind] else None
              for name, kind in (("sigma_energy", "energy"), ("sigma_force", "forces"), ("sigma_virial", "virial"))}
    for name, kind in (("sigma_energy", "energy"), ("sigma_force", "forces"), ("sigma_virial", "virial")):
        reasons[name] = (f"start of the evidence search ({has[kind]} structures have {kind} labels; {scale_why})"
                         if has[kind] else f"not fitted: no structure has {kind} labels")
    if has["forces"] and length != 1:
        reasons["sigma_force"] = reasons["sigma_force"][:-1] + f"; / {length:.3g} for the longer bonds)"
    reasons["delta"] = f"start of the evidence search (each term's delta is chosen with the sigmas; {scale_why})"
    bounds = {}
    spread = energy_spread(compositions, energies, singles) if has["energy"] else 0.0
    _cap_noise(bounds, reasons, sigmas, "sigma_energy", ENERGY_NOISE_SHARE, spread,
               "the spread of the energies per atom beyond per-species constants", "energies")
    if has["energy"]:
        reasons["sigma_energy"] = reasons["sigma_energy"][:-1] + (
            "; then the lowest error of held-out energies among the evidence's value and its halvings, "
            "the other values kept: gapy.gp.energy_noise)")
    if len(species) > 1:
        virial_rms = float(np.sqrt(np.mean(np.square(virials)))) if virials else 0.0
        _cap_noise(bounds, reasons, sigmas, "sigma_virial", VIRIAL_NOISE_SHARE, virial_rms,
                   "the RMS of the virials per atom", "stresses", " for several species")

    model = GAPRegressor(soap, zeta=4, delta=start["delta"], n_sparse=n_sparse, sparse_method="cur", e0=e0,
                         two_body=pair_term, baseline=baseline, random_state=random_state, **sigmas, **keys)
    reasons["zeta"] = "4, as the published SOAP-GAPs"
    reasons["random_state"] = ("seed of the sparse points and of the structure sample: the same data and "
                               "settings give the same model")
    model.set_params(std_noise=True)
    reasons["std_noise"] = ("the predicted stds of energies, forces and stress include the fitted noise: with "
                            "sigmas from the evidence they are the stds of new labels")
    fixed = []
    if overrides:
        model.set_params(**overrides)
        for name in overrides:
            reasons[name] = "given"
        fixed = [name for name, value in overrides.items() if value is not None
                 and (name in ("delta", "sigma_energy", "sigma_force", "sigma_virial") or name.endswith("__delta"))]
        for name in ("sigma_energy", "sigma_virial"):  # (a sigma given, or a label kind left out: no bound)
            if getattr(model, name) is None or name in fixed:
                bounds.pop(name, None)
    return Recommendation(model, reasons, measured, fixed, bounds)


def _warn_molecule_images(frames: Sequence[Atoms], picked: List[int], r_cut: float) -> None:
    """Warn when sampled structures are lone molecules in periodic boxes whose images are within ``r_cut``
    (:func:`gapy.structures.molecule_image_distance`): the model then learns an interaction with the
    images, which a gas-phase molecule does not have (36 EMT molecules of six kinds in a 9 A box, r_cut
    6.9 A, three seeds: test forces 0.70 eV/A against 0.61 with pbc=False, energies 75 against 62
    meV/atom, the evidence's force noise 0.42-0.55 against 0.24-0.29 eV/A)."""
    found = [(k, distance) for k in picked if frames[k].pbc.any()
             and (distance := molecule_image_distance(frames[k], r_cut, k)) is not None]
    if found:
        k, distance = min(found, key=lambda item: item[1])
        warnings.warn(f"{len(found)} of the {len(picked)} structures looked at are a lone molecule in a periodic box "
                      f"whose periodic images are within the cutoff r_cut={r_cut} A (nearest: "
                      f"{structure_name(frames[k], k)}, {distance:.2f} A): the model would learn an interaction "
                      "with the images; for gas-phase molecules set pbc=False (the box of a plane-wave code is "
                      "not part of the molecule), or use boxes larger than the molecule plus r_cut",
                      RuntimeWarning, stacklevel=3)


def _energy_factor(force_squares, nearest: float, compositions, energies, singles):
    """Factor of the evidence search's starts (1 for data on the energy scale of DFT solids), and why.

    The scale is the force RMS times the nearest-neighbour distance when the data have
    forces that are not all zero (:data:`gapy.labels.ZERO_FORCES`: a scale of 1e-14 eV from the
    forces of crystals at equilibrium put every delta and sigma at 1e-14; structures whose forces are outliers,
    :func:`gapy.labels.outlying_forces`, left out), else the spread of the energies per atom
    (the residuals of a least-squares fit on the compositions, single atoms left out); within :data:`ENERGY_SCALE` (or
    :data:`ENERGY_SPREAD`) the factor is 1, beyond it the ratio to the nearer bound.
    """
    squares = np.array(force_squares, dtype=float).reshape(-1, 2)
    outliers = outlying_forces(np.sqrt(squares[:, 0] / squares[:, 1]))
    kept = np.delete(squares, outliers, axis=0).sum(axis=0)
    rms = np.sqrt(kept[0] / kept[1]) if kept[1] else 0.0
    if rms >= ZERO_FORCES:
        value = float(rms * nearest)
        (low, high), what = ENERGY_SCALE, f"force RMS x nearest neighbour {value:.3g} eV"
        if len(outliers):
            what += (f" (without {len(outliers)} structure{'s' if len(outliers) > 1 else ''} whose forces are far "
                     "larger: gapy.labels.outlying_forces)")
    else:  # (no forces, or all zero: energies, or only virials, which leave the starts as they are)
        value = energy_spread(compositions, energies, singles)
        (low, high), what = ENERGY_SPREAD, f"spread of the energies per atom {value:.3g} eV/atom"
        if len(squares):
            what = f"all forces zero (RMS {rms:.2g} eV/A: structures at equilibrium), {what}"
    if not value > 0:
        return 1.0, f"{what}: no energy scale in the data, the usual starts"
    if low <= value <= high:
        return 1.0, f"{what}, within the {low:g}-{high:g} of DFT solids"
    factor = value / (low if value < low else high)
    return factor, (f"{what}, outside the {low:g}-{high:g} of DFT solids: the usual starts x {factor:.2g}"
                    + (" (the deltas' only: the sigmas' windows reach 100 x above the usual starts)"
                       if factor > 1 else ""))


def _start(value: float, factor: float) -> float:
    """``value * factor`` to two significant digits (``value`` itself for ``factor == 1``)."""
    return value if factor == 1 else float(f"{value * factor:.2g}")


def _partial_isolated_e0(isolated: Dict[int, float], present: List[int], species: List[int], compositions,
                         energies, isolated_rows) -> Dict[str, float]:
    """``e0`` per species: the isolated atoms' energies where the data have them, estimates of
    the others' on the same (free-atom) scale.

    The energy per atom of each species in the other structures is fitted by least squares on
    their compositions (the mean per atom when the compositions do not determine it); the
    others' ``e0`` is that less the mean binding energy per atom of the species with an
    isolated atom (their fitted energy per atom less their isolated-atom energy, weighted by
    their atoms). Fitting the others' ``e0`` directly to the energies less the isolated
    atoms' part (the previous rule) gave them the binding energy of every atom: -8.5 eV for
    Au beside isolated Cu, Ni and Pd atoms of EMT (isolated Au 3.8 eV), and test energy
    errors of 0.5 eV/atom.
    """
    rest = [z for z in species if z not in isolated]
    keep = sorted(set(range(len(energies))) - set(isolated_rows))
    counts = np.array(compositions, dtype=float)[keep].reshape(len(keep), len(present))
    values = np.array(energies, dtype=float)[keep]
    e0 = {chemical_symbols[z]: value for z, value in isolated.items()}
    atoms = counts.sum(axis=0)
    if not len(keep) or any(z not in present or atoms[present.index(z)] == 0 for z in rest):
        e0.update({chemical_symbols[z]: 0.0 for z in rest})  # (a species with no energy at all: nothing to fit)
        return e0
    used = atoms > 0
    if np.linalg.matrix_rank(counts[:, used]) == int(used.sum()):
        per_atom = np.zeros(len(present))
        per_atom[used] = np.linalg.lstsq(counts[:, used], values, rcond=None)[0]
    else:
        per_atom = np.full(len(present), values.sum() / counts.sum())
    known = [present.index(z) for z in isolated if z in present and atoms[present.index(z)] > 0]
    binding = (float(np.average([per_atom[c] - isolated[present[c]] for c in known], weights=atoms[known]))
               if known else 0.0)
    e0.update({chemical_symbols[z]: float(per_atom[present.index(z)] - binding) for z in rest})
    return e0


def _geometry(frames: Sequence[Atoms]):
    """Median nearest-neighbour distance and local number density of the condensed atoms,
    and the shortest distance of all.

    The density is the median, over atoms, of the number of neighbours within three
    nearest-neighbour distances, divided by that sphere's volume; atoms with fewer than half
    the 90th percentile of that count (isolated atoms, dimers, atoms of small molecules in
    vacuum) are left out, so that a dimer curve or isolated atoms in the data do not make
    the cutoff long. Data of one kind (bulk, or slabs only, or clusters only) keep every atom.
    """
    nearest = []  # per atom: the nearest neighbour within 8 A, or inf
    for k, atoms in enumerate(frames):
        pairs = neighbor_pairs(atoms, 8.0, k)
        distances = np.linalg.norm(pairs.vectors, axis=1)
        nearest.extend(distances[pairs.offsets[i]:pairs.offsets[i + 1]].min(initial=np.inf)
                       for i in range(len(atoms)))
    nearest = np.array(nearest)
    found = np.isfinite(nearest)
    if not found.any():
        raise ValueError(f"recommend: no atom has a neighbour within 8 A in {len(frames)} structures "
                         f"(e.g. {structure_name(frames[0], 0)})")

    def neighbours_within(radius):
        return np.concatenate([np.diff(neighbor_pairs(atoms, radius, k).offsets) for k, atoms in enumerate(frames)])

    radius = 3 * np.median(nearest[found])  # averages over the first shells
    local = neighbours_within(radius)
    condensed = local >= CONDENSED_SHARE * np.percentile(local, 90)
    if not condensed.all():  # the same over the condensed atoms alone
        radius = 3 * np.median(nearest[condensed & found])
        local = neighbours_within(radius)
    density = float(np.median(local[condensed]) / (4 / 3 * np.pi * radius**3))
    return float(radius / 3), float(nearest[found].min()), density
