"""gapy.recommend: settings read from the data, in units of the data (not of an element),
and ``gapy fit`` without hyperparameters (recommendation + evidence, recorded in the file)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import gapy
from gapy.cli import main
from gapy.datasets import load_si
from gapy.recommend import (ENERGY_SCALE, ENERGY_SPREAD, LONG_BOND, MAX_CUTOFF_RATIO, MAX_SPARSE, MAX_SPARSE_TOTAL,
                            NEIGHBOURS, SCALED_NEIGHBOURS, recommend)


def labelled(atoms, stress=True):
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def crystals(symbol, a, n=4, stress=True, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = bulk(symbol, "fcc", a=a * (1 + 0.01 * k), cubic=True).repeat(2)
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        frames.append(labelled(atoms, stress))
    return frames


@pytest.mark.parametrize("symbol, a", [("Cu", 3.61), ("Al", 4.05)])
def test_cutoff_holds_the_target_number_of_neighbours_at_the_data_density(symbol, a):
    """fcc metals of different size: r_cut follows the density, theta the bond length."""
    recommendation = recommend(crystals(symbol, a), two_body=True)
    density = 4 / a**3  # fcc, within the 3 % strain of the frames
    expected = (3 * NEIGHBOURS / (4 * np.pi * density)) ** (1 / 3)
    assert recommendation.model.descriptor.r_cut == pytest.approx(expected, rel=0.06)
    nearest = a / np.sqrt(2)
    assert recommendation.measured["nearest_neighbour"] == pytest.approx(nearest, rel=0.04)
    assert recommendation.model.two_body.theta == pytest.approx(nearest / 5, abs=0.02)
    assert recommendation.model.two_body.descriptor.r_cut == recommendation.model.descriptor.r_cut
    # the radial scaling halves a weight where a sphere holds SCALED_NEIGHBOURS neighbours
    scaled = (3 * SCALED_NEIGHBOURS / (4 * np.pi * density)) ** (1 / 3)
    assert recommendation.model.descriptor.scaling_radius == pytest.approx(scaled, rel=0.06)


def test_labels_decide_what_is_fitted_and_e0():
    frames = crystals("Cu", 3.61, stress=False)
    single = labelled(Atoms("Cu", positions=[[0, 0, 0]]), stress=False)
    with_isolated = recommend(frames + [single]).model
    assert with_isolated.e0 == "isolated" and with_isolated.sigma_virial is None
    assert with_isolated.sigma_energy is not None and with_isolated.sigma_force is not None
    assert recommend(frames).model.e0 == "average"
    assert recommend(frames).model.two_body is not None  # a 2-body term unless asked not to
    assert recommend(frames, two_body=False).model.two_body is None
    assert recommend(crystals("Cu", 3.61)).model.sigma_virial is not None
    # several species: per-species e0 by least squares when the compositions vary
    alloys = crystals("Cu", 3.61)
    for k, atoms in enumerate(alloys):
        atoms.numbers[:k + 1] = 79
    assert recommend(alloys).model.e0 == "fit"
    for atoms in alloys:
        atoms.numbers[:] = 29
        atoms.numbers[:4] = 79
    assert recommend(alloys).model.e0 == "average"


def test_isolated_atoms_in_a_periodic_box_and_for_some_species_only():
    """Plane-wave isolated atoms (one atom, pbc, a large box) count as isolated; when only
    some species have one, theirs are e0 and the others' e0 is fitted to the rest."""
    frames = crystals("Cu", 3.61, stress=False)
    boxed = labelled(Atoms("Cu", cell=[15.0, 15.0, 15.0], pbc=True), stress=False)
    assert recommend(frames + [boxed]).model.e0 == "isolated"
    alloys = crystals("Cu", 3.61, n=6, stress=False)
    for k, atoms in enumerate(alloys):
        atoms.numbers[:k + 1] = 79
        alloys[k] = labelled(atoms, stress=False)
    recommendation = recommend(alloys + [boxed])
    e0 = recommendation.model.e0
    assert e0["Cu"] == pytest.approx(boxed.get_potential_energy())
    counts = np.array([[np.sum(a.numbers == 29), np.sum(a.numbers == 79)] for a in alloys])
    energies = np.array([a.get_potential_energy() for a in alloys])
    per_atom = np.linalg.lstsq(counts, energies, rcond=None)[0]  # the isolated atom left out
    assert e0["Au"] == pytest.approx(per_atom[1] - (per_atom[0] - e0["Cu"]))  # less Cu's binding per atom
    assert "isolated-atom energies for Cu" in recommendation.reasons["e0"]


def test_a_dimer_curve_in_the_data_does_not_stretch_the_cutoff():
    """Dimers and isolated atoms are left out of the density that sets r_cut."""
    frames = crystals("Cu", 3.61, n=2)
    dimers = [labelled(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, d]]), stress=False)
              for d in np.linspace(1.8, 4.0, 40)]
    alone = recommend(frames).model.descriptor.r_cut
    assert recommend(frames + dimers).model.descriptor.r_cut == alone


def test_several_species_get_a_smaller_radial_basis_and_every_pair():
    frames = crystals("Cu", 3.61)
    for atoms in frames:
        atoms.numbers[::3] = 79  # gold and silver on a third of the sites each
        atoms.numbers[1::3] = 47
    model = recommend(frames, two_body=True).model
    assert model.descriptor.n_max == 5 and list(model.two_body.descriptor.species) == ["Cu", "Ag", "Au"]
    assert set(model.n_sparse) == {"Cu", "Ag", "Au"}
    # many environments: MAX_SPARSE per species, at most MAX_SPARSE_TOTAL in all, in proportion
    many = recommend(frames, n_environments={"Cu": 40000, "Ag": 40000, "Au": 2000}).model.n_sparse
    assert many["Au"] == round(500 * MAX_SPARSE_TOTAL / (2 * MAX_SPARSE + 500))
    assert many["Cu"] == many["Ag"] == round(MAX_SPARSE * MAX_SPARSE_TOTAL / (2 * MAX_SPARSE + 500))
    assert sum(many.values()) <= MAX_SPARSE_TOTAL + 1
    assert recommend(crystals("Cu", 3.61)).model.descriptor.n_max == 8


def test_overrides_are_applied_and_their_scales_kept_by_the_evidence():
    recommendation = recommend(crystals("Cu", 3.61), overrides={"descriptor__r_cut": 4.0, "sigma_force": 0.2,
                                                               "two_body__delta": 3.0, "sigma_virial": None},
                                    two_body=True)
    model = recommendation.model
    assert model.descriptor.r_cut == 4.0 and model.sigma_force == 0.2 and model.two_body.delta == 3.0
    assert sorted(recommendation.fixed) == ["sigma_force", "two_body__delta"]
    assert recommendation.reasons["descriptor__r_cut"] == "given"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="no structures given"):
        recommend([])
    unlabelled = bulk("Cu", "fcc", a=3.61)
    unlabelled.info["dft_energy"] = -3.5
    found = r"no structure has an energy.*structure 0 \(Cu\) has info keys \['dft_energy'\]"
    with pytest.raises(ValueError, match=found):
        recommend([unlabelled])
    lonely = labelled(Atoms("Cu", positions=[[0, 0, 0]]), stress=False)
    with pytest.raises(ValueError, match="no atom has a neighbour within 8 A"):
        recommend([lonely])


def test_recommended_model_fits_with_the_evidence_and_records_why(tmp_path):
    frames = load_si("train")[:5]
    recommendation = recommend(frames, overrides={"descriptor__n_max": 3, "descriptor__l_max": 2, "n_sparse": 20},
                               two_body=True)
    assert gapy.recommend is recommend and "recommend" in gapy.__all__  # the README's gapy.recommend(frames)
    model = recommendation.model.maximize_evidence(frames)
    assert model.gp_.terms and model.baseline_ is not None
    assert set(model.provenance_["evidence"]["deltas"]) == {"delta", "two_body__delta"}
    model.provenance_["recommended"] = recommendation.as_dict()
    model.save(tmp_path / "m.gapy")
    loaded = gapy.load(tmp_path / "m.gapy")
    assert loaded.provenance_ == model.provenance_
    assert loaded.predict(frames[:1]) == pytest.approx(model.predict(frames[:1]), rel=1e-12)
    plain = gapy.GAPRegressor(gapy.SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), n_sparse=5).fit(frames)
    assert set(plain.provenance_) == {"training"}


def test_gapy_fit_without_settings_recommends_and_prints_why(tmp_path, capsys):
    data = tmp_path / "train.xyz"
    import ase.io

    ase.io.write(data, load_si("train")[:5])
    small = ["--n-max", "3", "--l-max", "2", "--n-sparse", "20", "--no-progress"]
    assert main(["fit", str(data), "--recommend", *small, "--sigma-force", "0.2", "-o", str(tmp_path / "r.gapy")]) == 0
    out = capsys.readouterr().out
    assert "recommended settings" in out and "r_cut = " in out
    assert "chosen by the evidence (sigma_force kept as given)" in out
    model = gapy.load(tmp_path / "r.gapy")
    assert model.sigma_force == 0.2 and model.two_body is not None  # a 2-body term by default
    assert model.provenance_["recommended"]["reasons"]["sigma_force"] == "given"
    # --two-body none drops the recommended pair term
    assert main(["fit", str(data), "--recommend", *small, "--two-body", "none", "-o", str(tmp_path / "n.gapy")]) == 0
    capsys.readouterr()
    model = gapy.load(tmp_path / "n.gapy")
    assert model.two_body is None and model.provenance_["recommended"]["reasons"]["two_body"] == "given"
    # streamed, with held-out structures: the same recommendation from a sample of the file
    assert main(["fit", str(data), "--recommend", *small, "--stream", "--validation-fraction", "0.4",
                 "-o", str(tmp_path / "s.gapy")]) == 0
    out = capsys.readouterr().out
    assert "recommended settings (from 3 structures)" in out and "errors on the validation set" in out
    # a hyperparameter given without --recommend: the plain defaults, no evidence, and a note that says so
    assert main(["fit", str(data), *small, "-o", str(tmp_path / "p.gapy")]) == 0
    out = capsys.readouterr().out
    assert "recommended settings" not in out and set(gapy.load(tmp_path / "p.gapy").provenance_) == {"training"}
    assert "model settings given (--n-max, --l-max, --n-sparse): the others are gapy's fixed defaults" in out
    # nothing but run options: recommended
    ase.io.write(data, load_si("train")[:3])
    assert main(["fit", str(data), "--no-progress", "--seed", "2", "-o", str(tmp_path / "a.gapy")]) == 0
    out = capsys.readouterr().out
    assert "chosen by the evidence: delta = " in out and "model settings given" not in out
    assert "as the evidence's: the evidence's (fewer than 50 energies: not cross-validated)" in out
    model = gapy.load(tmp_path / "a.gapy")
    assert model.random_state == 2 and "evidence" in model.provenance_ and "recommended" in model.provenance_


def test_a_streamed_recommendation_sees_every_isolated_atom(tmp_path, capsys, monkeypatch):
    """The geometry comes from a sample of a streamed file, the isolated atoms (one-atom
    structures, which set e0) from all of it."""
    import ase.io

    import gapy.cli.fit

    monkeypatch.setattr(gapy.cli.fit, "RECOMMEND_SAMPLE", 2)
    boxed = labelled(Atoms("Cu", cell=[15.0, 15.0, 15.0], pbc=True), stress=False)
    ase.io.write(tmp_path / "train.xyz", crystals("Cu", 3.61, n=5, stress=False) + [boxed])
    small = ["--n-max", "3", "--l-max", "2", "--n-sparse", "10", "--no-progress", "--two-body", "none"]
    assert main(["fit", str(tmp_path / "train.xyz"), "--recommend", *small, "--stream",
                 "-o", str(tmp_path / "m.gapy")]) == 0
    assert "recommended settings (from 3 structures)" in capsys.readouterr().out
    assert gapy.load(tmp_path / "m.gapy").e0_ == {29: pytest.approx(boxed.get_potential_energy())}


def scaled(frames, length=1.0, energy=1.0):
    """The same structures with every length x ``length`` and every energy x ``energy``."""
    out = []
    for atoms in frames:
        copy = atoms.copy()
        copy.set_cell(atoms.cell * length, scale_atoms=True)
        labels = {"energy": atoms.get_potential_energy() * energy, "forces": atoms.get_forces() * energy / length}
        if "stress" in atoms.calc.results:
            labels["stress"] = atoms.get_stress() * energy / length**3
        copy.calc = SinglePointCalculator(copy, **labels)
        out.append(copy)
    return out


@pytest.mark.filterwarnings("ignore:evidence maximisation")
def test_long_bonds_scale_the_widths_and_get_a_zbl_core():
    """Data with twice the lengths (bonds of 5.1 A, as Cs or Rb): the geometric settings double,
    the widths grow beyond LONG_BOND, and the ZBL core is switched off from the data's shortest
    distance (baseline='zbl' looked for pairs within 4 A only and could not fit)."""
    frames = crystals("Cu", 3.61, n=2)
    small, large = recommend(frames).model, recommend(scaled(frames, length=2.0)).model
    for name in ("descriptor__r_cut", "descriptor__scaling_radius", "two_body__theta"):
        assert large.get_params()[name] == pytest.approx(2 * small.get_params()[name], rel=0.03), name
    assert small.descriptor.atom_sigma == small.descriptor.cutoff_width == 0.5
    assert small.two_body.descriptor.cutoff_width == 1.0 and small.baseline == "zbl"
    nearest = recommend(scaled(frames, length=2.0)).measured["nearest_neighbour"]
    assert large.descriptor.atom_sigma == pytest.approx(0.5 * nearest / LONG_BOND, abs=0.01)
    assert large.descriptor.cutoff_width == large.descriptor.atom_sigma
    assert large.two_body.descriptor.cutoff_width == pytest.approx(2 * large.descriptor.atom_sigma)
    shortest = min(np.min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)]) for a in scaled(frames, 2.0))
    assert large.baseline == "zbl"
    large.set_params(descriptor__n_max=3, descriptor__l_max=2, n_sparse=10)
    large.maximize_evidence(scaled(frames, length=2.0))
    assert large.baseline_.r_outer == pytest.approx(0.8 * shortest)


@pytest.mark.parametrize("energy", [0.1, 4.0, 20.0])
def test_the_evidence_starts_follow_the_energy_scale_of_the_data(energy):
    """The starts of the evidence search (a window of 100 x either way) are the usual ones for
    data on the energy scale of DFT solids and follow the data beyond it: a noble-gas solid's
    forces and energies are 20-50 times smaller, stiff short bonds' several times larger
    (the sigmas are never raised: their windows reach 100 x above)."""
    frames = scaled(crystals("Cu", 3.61, n=2), energy=energy)
    recommendation = recommend(frames)
    model = recommendation.model
    forces = np.concatenate([a.get_forces().ravel() for a in frames])
    scale = np.sqrt(np.mean(forces**2)) * recommendation.measured["nearest_neighbour"]
    factor = scale / np.clip(scale, *ENERGY_SCALE)
    assert (factor < 1, factor == 1, factor > 1) == (energy == 0.1, energy == 4.0, energy == 20.0)
    assert model.delta == model.two_body.delta == pytest.approx(factor, rel=0.03)
    noise = min(factor, 1.0)
    assert model.sigma_energy == pytest.approx(0.005 * noise, rel=0.03)
    assert model.sigma_force == pytest.approx(0.1 * noise, rel=0.03)
    assert model.sigma_virial == pytest.approx(0.02 * noise, rel=0.03)
    assert "force RMS x nearest neighbour" in recommendation.reasons["delta"]
    # energies alone: the spread of the energies per atom sets the scale
    only = [labelled_as(a, energy=a.get_potential_energy()) for a in frames]
    model = recommend(only).model
    spread = np.std([a.get_potential_energy() / len(a) for a in frames])
    assert model.delta == pytest.approx(spread / np.clip(spread, *ENERGY_SPREAD), rel=0.03)
    assert model.sigma_force is None


def labelled_as(atoms, **labels):
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, **labels)
    return copy


def test_forces_alone_say_why_e0_is_zero():
    frames = [labelled_as(a, forces=a.get_forces()) for a in crystals("Cu", 3.61, n=2)]
    recommendation = recommend(frames)
    assert recommendation.model.sigma_energy is None and "no energy labels" in recommendation.reasons["e0"]


def test_species_without_an_isolated_atom_get_e0_on_the_free_atom_scale():
    """Isolated atoms of some species only: the others' e0 is their energy per atom less the
    binding of the species with one, not the binding of every atom (Au was -8.5 eV beside
    isolated Cu, Ni and Pd; the EMT isolated Au atom has 3.8 eV)."""
    rng = np.random.default_rng(1)
    frames = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(2)
        atoms.numbers[:] = rng.choice([28, 29, 46, 79], len(atoms))
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        frames.append(labelled(atoms, stress=False))
    singles = [labelled(Atoms(symbol), stress=False) for symbol in ("Ni", "Cu", "Pd")]
    e0 = recommend(frames + singles).model.e0
    assert e0["Cu"] == pytest.approx(3.51) and e0["Ni"] == pytest.approx(4.44)
    assert abs(e0["Au"] - 3.80) < 0.5


def test_the_reason_for_n_max_names_its_floor():
    """Seven species get n_max = 4, not 16 // 7 = 2: the reason says so."""
    frames = crystals("Cu", 3.61)
    for atoms in frames:
        atoms.numbers[:7] = [13, 28, 29, 46, 47, 78, 79]
    recommendation = recommend(frames)
    assert recommendation.model.descriptor.n_max == 4
    assert "at least 4" in recommendation.reasons["descriptor__n_max"]
    # l_max = 4 too, which its reason must say (it read as if l_max were 8)
    assert recommendation.model.descriptor.l_max == 4
    assert recommendation.reasons["descriptor__l_max"].startswith("n_max, as")


def random_alloy_cells(stress=True):
    """Eight labelled 32-atom random NiCuPdAu cells at four lattice constants."""
    rng = np.random.default_rng(2)
    frames = []
    for k in range(8):
        atoms = bulk("Cu", "fcc", a=3.75 * (1 + 0.02 * (k % 4)), cubic=True).repeat(2)
        atoms.numbers[:] = rng.choice([28, 29, 46, 79], len(atoms))
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        frames.append(labelled(atoms, stress=stress))
    return frames


@pytest.mark.filterwarnings("ignore:evidence maximisation")
def test_the_energy_noise_is_searched_below_a_share_of_the_energy_spread():
    """With many force labels the evidence can prefer to leave the energies unfitted (5-7
    species: sigma_energy at the top of its window, test energies 0.1 eV/atom off); the
    recommendation bounds the energy noise by a share of the energies' own spread."""
    from gapy.recommend import ENERGY_NOISE_SHARE

    frames = random_alloy_cells(stress=False)
    counts = np.array([[np.sum(a.numbers == z) for z in (28, 29, 46, 79)] for a in frames], dtype=float)
    energies = np.array([a.get_potential_energy() for a in frames])
    residual = energies - counts @ np.linalg.lstsq(counts, energies, rcond=None)[0]
    spread = np.std(residual / counts.sum(axis=1))
    recommendation = recommend(frames)
    low, high = recommendation.bounds["sigma_energy"]
    start = recommendation.model.sigma_energy  # (the bound is never below where the search starts)
    assert high == pytest.approx(max(ENERGY_NOISE_SHARE * spread, start)) and low == start / 100
    assert "searched up to" in recommendation.reasons["sigma_energy"]
    model = recommendation.model.set_params(descriptor__n_max=3, descriptor__l_max=2, n_sparse=10)
    model.maximize_evidence(frames, fixed=recommendation.fixed, bounds=recommendation.bounds)
    assert model.sigma_energy <= high * (1 + 1e-9)
    assert recommendation.as_dict()["bounds"] == {"sigma_energy": [low, high]}
    # a hand-set energy sigma, or none, is not bounded
    assert recommend(frames, overrides={"sigma_energy": 0.01}).bounds == {}
    assert recommend(frames, overrides={"sigma_energy": None}).bounds == {}


@pytest.mark.filterwarnings("ignore:evidence maximisation", "ignore:maximize_evidence")
def test_the_virial_noise_is_searched_below_a_multiple_of_the_virials():
    """With many force labels the evidence can leave the stresses unfitted: on random EMT alloys of
    3-4 species it put sigma_virial on the top of its window (2 eV/atom, ten times the virials per
    atom) and the test stresses were 6-7 GPa off, worse than zero; the recommendation bounds the
    virial noise of data of several species by a multiple of the virials' own RMS per atom."""
    from gapy.recommend import VIRIAL_NOISE_SHARE

    frames = random_alloy_cells()
    virials = np.array([-a.get_stress() * a.get_volume() / len(a) for a in frames])
    rms = np.sqrt(np.mean(np.square(virials)))
    recommendation = recommend(frames)
    low, high = recommendation.bounds["sigma_virial"]
    start = recommendation.model.sigma_virial
    assert high == pytest.approx(max(VIRIAL_NOISE_SHARE * rms, start)) and low == start / 100
    assert high < 100 * start and "searched up to" in recommendation.reasons["sigma_virial"]
    model = recommendation.model.set_params(descriptor__n_max=3, descriptor__l_max=2, n_sparse=10)
    model.maximize_evidence(frames, fixed=recommendation.fixed, bounds=recommendation.bounds)
    assert model.sigma_virial <= high * (1 + 1e-9)
    # a hand-set virial sigma, or none, is not bounded; nor are data without stresses
    assert "sigma_virial" not in recommend(frames, overrides={"sigma_virial": 0.05}).bounds
    assert "sigma_virial" not in recommend(frames, overrides={"sigma_virial": None}).bounds
    assert "sigma_virial" not in recommend([labelled(atoms, stress=False) for atoms in frames]).bounds
    assert "sigma_virial" not in recommend(crystals("Cu", 3.61)).bounds  # one species: as it was


def test_forces_that_are_all_zero_give_no_energy_scale():
    """Perfect crystals at equilibrium (forces 1e-15 eV/A): the force RMS made every delta and
    sigma start at 1e-14, and the evidence gave predicted stds of 1e-12; the spread of the
    energies per atom sets the scale instead, or the usual starts when there is none."""
    frames = [labelled(bulk("Cu", "fcc", a=3.61 * (1 + 0.01 * k), cubic=True).repeat((2, 1, 1))) for k in range(4)]
    recommendation = recommend(frames)
    spread = np.std([a.get_potential_energy() / len(a) for a in frames])
    assert recommendation.model.delta == pytest.approx(spread / ENERGY_SPREAD[0], rel=0.05)
    assert "all forces zero" in recommendation.reasons["delta"]
    model = recommendation.model.set_params(descriptor__n_max=3, descriptor__l_max=2, n_sparse=4)
    model.maximize_evidence(frames, bounds=recommendation.bounds)
    rattled = frames[1].copy()
    rattled.rattle(0.05, seed=1)
    (result,) = model.predict_all([rattled], return_std=["forces"])
    assert model.delta > 1e-3 and result["forces_std"].max() > 1e-3
    single = recommend([labelled(bulk("Cu", "fcc", a=3.61 + 0.02 * k)) for k in range(3)])  # one atom each
    assert (single.model.delta, single.model.sigma_force) == (1.0, 0.1)
    assert "no energy scale in the data" in single.reasons["delta"]


def test_no_more_sparse_points_than_environments_are_recommended():
    """One 4-atom structure: 10 sparse points were recommended for 4 environments, and every
    gapy fit of it warned that it asked for more than there are."""
    frames = crystals("Cu", 3.61, n=1)
    assert recommend(frames[:1]).model.n_sparse == {"Cu": 10}  # 32 atoms: at least 10
    small = [labelled(bulk("Cu", "fcc", a=3.61, cubic=True))]
    assert recommend(small).model.n_sparse == {"Cu": 4}
    assert recommend(small, n_environments={"Cu": 0}).model.n_sparse == {"Cu": 1}


def test_data_without_a_condensed_phase_get_a_cutoff_of_at_most_five_bonds():
    """Cu2 dimers alone have the density of a gas: 35 neighbours would need a 22 A cutoff."""
    dimers = [labelled(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, d]]), stress=False) for d in (2.1, 2.3, 2.5, 2.8)]
    recommendation = recommend(dimers)
    nearest = recommendation.measured["nearest_neighbour"]
    assert recommendation.model.descriptor.r_cut == pytest.approx(MAX_CUTOFF_RATIO * nearest, abs=0.05)
    assert "no condensed phase" in recommendation.reasons["descriptor__r_cut"]


def test_a_minority_species_gets_a_tenth_of_the_largest_species_sparse_points():
    """Cu with 20 Au atoms among 800: a quarter of the Au environments (5, then the floor of 10)
    was too few; now at least a tenth of Cu's 195 points, so all 20 (the cap: its environments).
    Cu alone keeps its quarter."""
    frames = crystals("Cu", 3.61, n=25, stress=False)
    for k in range(20):
        atoms = frames[k].copy()
        atoms.symbols[k % 32] = "Au"
        frames[k] = labelled(atoms, stress=False)
    assert recommend(frames).model.n_sparse == {"Cu": 195, "Au": 20}
    assert recommend(crystals("Cu", 3.61, n=25, stress=False)).model.n_sparse == {"Cu": 200}
