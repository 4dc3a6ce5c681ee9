"""gapy.validate: procedures (EMT against EMT), report files, bad input, the flag, the command."""

import argparse
import copy
import csv
import json
import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.io import write

import gapy
from gapy import GAPRegressor, GapyError, SOAP
from gapy.sampling import label_structures, run_md
from gapy.validation import validate
from gapy.validation._uncertainty import PosteriorDraws
from gapy.cli import main
from gapy.cli.validate import add_parser, run
from gapy.validation.core import CUBIC_NAMES

CU = bulk("Cu", "fcc", a=3.6)
FAST = dict(progress=False, neb_images=3, eos_points=5)


@pytest.fixture(scope="module")
def cu_model():
    """A small Cu GAP from EMT data: bulk MD, strained cells, a vacancy, (100) and (111) slabs."""
    cell = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)
    frames = run_md(EMT(), cell, 100, 20, 600.0, timestep=2.0, random_state=0)[0]
    for k, strain in enumerate(np.linspace(-0.03, 0.03, 5)):
        atoms = bulk("Cu", "fcc", a=3.59 * (1 + strain), cubic=True).repeat(2)
        atoms.rattle(0.02, seed=k)
        frames.append(atoms)
    vacancy = cell.copy()
    del vacancy[0]
    vacancy.rattle(0.05, seed=1)
    frames.append(vacancy)
    for build in (fcc100, fcc111):
        slab = build("Cu", (2, 2, 5), a=3.59, vacuum=6.0, periodic=True)
        frames.append(slab)
        frames += run_md(EMT(), slab, 80, 20, 500.0, timestep=2.0, random_state=2)[0]
    train = label_structures(frames, EMT(), config_type="train")
    settings = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=6, l_max=4), n_sparse=150, sigma_energy=0.001,
                            sigma_force=0.02, sigma_virial=0.01, random_state=0, n_jobs=2)
    return settings.fit(train)


def test_emt_against_emt_agrees_exactly(tmp_path):
    report = validate(EMT(), CU, "emt", ["eos", "elastic", "vacancy", "surface_energy_111", "barrier"],
                      output=tmp_path, **FAST)
    computed = [r for r in report.results.values() if r.model is not None]
    assert len(computed) == 9
    for result in computed:
        assert result.error is None
        assert result.model == pytest.approx(result.reference, rel=1e-9, abs=1e-12), result.name
        assert result.model_std is None and result.flagged is None  # EMT has no uncertainty
    # physically sane EMT Cu numbers: the procedure computes what it says
    assert report["lattice_constant"].model == pytest.approx(3.59, abs=0.01)
    assert report["bulk_modulus"].model == pytest.approx(134, rel=0.05)
    c11, c12, c44 = (report[n].model for n in ("C11", "C12", "C44"))
    assert (c11 + 2 * c12) / 3 == pytest.approx(report["bulk_modulus"].model, rel=0.03)  # cubic B
    assert c11 > c12 > 0 and c44 > 0
    assert 0.5 < report["vacancy_formation_energy"].model < 2.0
    assert 0.3 < report["vacancy_migration_barrier"].model < 1.5
    assert report["surface_energy_100"].model is None  # not asked for: null


def test_phonons_emt_against_emt(tmp_path):
    pytest.importorskip("phonopy")
    report = validate(EMT(), CU, "emt", ["phonon_X_3", "phonon_L_1"], output=tmp_path, **FAST)
    assert set(n for n in report.results if n.startswith("phonon")) == {"phonon_X_3", "phonon_L_1"}
    x = report["phonon_X_3"]
    assert x.unit == "THz" and x.model == pytest.approx(x.reference, rel=1e-9)
    assert 6 < x.model < 10  # the LA mode at X of Cu (EMT about 8.1 THz)
    assert (tmp_path / "phonons.png").stat().st_size > 1000


def test_json_and_csv_schema(tmp_path):
    report = validate(EMT(), CU, "emt", ["eos"], output=tmp_path, **FAST)
    document = json.loads((tmp_path / "validation.json").read_text())
    assert set(CUBIC_NAMES) <= set(document)
    for name in CUBIC_NAMES:
        assert {"model", "reference", "unit", "model_std", "flagged"} <= set(document[name])
    assert document["lattice_constant"]["unit"] == "A"
    assert document["lattice_constant"]["model"] == pytest.approx(report["lattice_constant"].model)
    assert document["C11"]["model"] is None and document["C11"]["reference"] is None  # not computed
    with open(tmp_path / "validation.csv") as handle:
        rows = {row["property"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(document)
    assert float(rows["bulk_modulus"]["model"]) == pytest.approx(report["bulk_modulus"].model, rel=1e-5)
    assert rows["C11"]["model"] == ""
    assert (tmp_path / "eos.png").stat().st_size > 1000
    assert "lattice_constant" in report.table()


class FailsOnDefects(EMT):
    """A reference that raises on any cell with an odd number of atoms (vacancy cells)."""

    def calculate(self, atoms=None, *args, **kwargs):
        if len(atoms) % 2:
            raise RuntimeError("SCF did not converge")
        super().calculate(atoms, *args, **kwargs)


def test_a_failing_reference_keeps_the_other_results(tmp_path):
    report = validate(EMT(), CU, FailsOnDefects(), ["eos", "vacancy", "barrier"], output=tmp_path, **FAST)
    assert report["lattice_constant"].reference is not None and report["lattice_constant"].error is None
    vacancy = report["vacancy_formation_energy"]
    assert vacancy.model is not None and vacancy.reference is None
    assert "reference: RuntimeError: SCF did not converge" in vacancy.error
    assert "SCF did not converge" in report["vacancy_migration_barrier"].error
    document = json.loads((tmp_path / "validation.json").read_text())
    assert document["bulk_modulus"]["reference"] is not None
    assert "SCF" in document["vacancy_formation_energy"]["error"]


def test_unknown_species_is_reported_per_property(cu_model):
    report = validate(cu_model, bulk("Ag", "fcc", a=4.1), "emt", ["eos"], **FAST)
    result = report["lattice_constant"]
    assert result.model is None and result.reference == pytest.approx(4.06, abs=0.05)  # EMT still runs
    assert "species ['Ag']" in result.error and "does not know" in result.error and "['Cu']" in result.error


def test_a_supercell_below_the_model_cutoff_is_warned_of(cu_model):
    """--supercell-length 0.5 made the vacancy cell the 4-atom conventional cell (Cu E_vac 1.18
    against 1.23 eV, barrier 0.93 against 0.79 eV, for EMT too) without a word."""
    with pytest.warns(RuntimeWarning, match=r"supercell_length 3 A is below the model's cutoff \(4 A\)"):
        validate(cu_model, CU, None, ["lattice_constant"], supercell_length=3.0, **FAST)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="supercell_length")
        validate(cu_model, CU, None, ["lattice_constant"], **FAST)


def test_a_property_std_does_not_depend_on_the_other_properties(cu_model):
    """The Nystrom part of the posterior draws took its noise from one generator in turn, so a
    property's model_std changed with the properties computed before it (Al E_vac 0.0141 in a
    full run, 0.0181 with eos, a surface and the vacancy)."""
    alone = validate(cu_model, CU, None, ["vacancy"], **FAST)
    after = validate(cu_model, CU, None, ["eos", "vacancy"], **FAST)
    assert alone["vacancy_formation_energy"].model_std > 0
    assert after["vacancy_formation_energy"].model_std == alone["vacancy_formation_energy"].model_std


def test_default_surfaces_are_distinct_for_hexagonal_crystals():
    """(010) and (100) of an hcp cell are the same surface: both were computed and reported."""
    from gapy.validation.defects import default_miller

    assert default_miller(bulk("Mg", "hcp", a=3.21, c=5.21)) == [(0, 0, 1), (1, 0, 0), (1, 1, 0)]
    assert default_miller(CU) == [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
    tetragonal = Atoms("Sn2", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)], cell=[3.0, 3.0, 4.0], pbc=True)
    assert default_miller(tetragonal) == [(0, 0, 1), (0, 1, 0), (1, 0, 0)]


def test_non_crystal_for_a_crystal_property():
    cluster = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]])
    report = validate(EMT(), cluster, "emt", ["eos", "vacancy"], **FAST)
    for name in ("lattice_constant", "vacancy_formation_energy"):
        assert report[name].model is None
        assert "needs a crystal" in report[name].error and "pbc=[False, False, False]" in report[name].error


def test_relaxation_that_does_not_converge():
    report = validate(EMT(), CU, "emt", ["eos", "vacancy"], relax_steps=2, cell_fmax=1e-6, **FAST)
    assert "did not converge in 2 steps" in report["lattice_constant"].error
    assert "did not converge" in report["vacancy_formation_energy"].error


def test_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="unknown property 'bulk_moduls'"):
        validate(EMT(), CU, properties=["bulk_moduls"], progress=False)
    with pytest.raises(ValueError, match="unknown validation settings"):
        validate(EMT(), CU, progress=False, fmx=0.1)
    with pytest.raises(ValueError, match="give 'emt' or 'module:factory'.*, or a .json file of reference values"):
        validate(EMT(), CU, reference="vasp", progress=False)
    with pytest.raises(ValueError, match="cannot import"):
        validate(EMT(), CU, reference="no_such_module_xyz:make", progress=False)
    with pytest.raises(TypeError, match="structure must be an ase.Atoms"):
        validate(EMT(), "Cu", progress=False)
    with pytest.raises(TypeError, match="model_or_calculator"):
        validate(42, CU, progress=False)


def test_reference_by_import_path_and_json_values(tmp_path):
    report = validate(EMT(), CU, "ase.calculators.emt:EMT", ["eos"], **FAST)
    assert report["lattice_constant"].reference == pytest.approx(report["lattice_constant"].model)
    values = tmp_path / "dft.json"
    values.write_text(json.dumps({"lattice_constant": 3.63, "bulk_modulus": {"value": 140.0, "unit": "GPa"}}))
    report = validate(EMT(), CU, str(values), ["eos"], **FAST)
    assert report["lattice_constant"].reference == 3.63 and report["bulk_modulus"].reference == 140.0
    assert report["lattice_constant"].relative_difference == pytest.approx((3.59 - 3.63) / 3.63, abs=0.003)
    values.write_text(json.dumps({"bulk_modulus": {"value": 1.4, "unit": "Mbar"}}))
    with pytest.raises(ValueError, match="'bulk_modulus' is in 'Mbar'"):
        validate(EMT(), CU, str(values), ["eos"], **FAST)


def test_posterior_draws_reproduce_the_predicted_std(cu_model):
    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=3)
    (result,) = cu_model.predict_all([atoms], return_std=True)
    draws = PosteriorDraws(cu_model, 4000, random_state=1).predict([atoms], ("energy", "forces"))
    energies = np.array([d[0]["energy"] for d in draws])
    forces = np.array([d[0]["forces"] for d in draws])
    assert energies.mean() == pytest.approx(result["energy"], abs=4 * result["energy_std"] / np.sqrt(4000))
    assert energies.std() == pytest.approx(result["energy_std"], rel=0.1)
    sor = cu_model.predict_all([atoms], return_std=True, variance="sor")[0]["forces_std"]
    assert result["forces_std"].max() > 1.2 * sor.max()  # the residual matters
    np.testing.assert_allclose(forces.std(axis=0), result["forces_std"], rtol=0.15)


def test_posterior_draws_leave_out_term_classes_the_model_does_not_have():
    """A 2-body pair class without sparse points (Ni-Ni, absent from the training data) is not
    in the model, but the draws of gapy validate added its prior: energy std 4.48 eV drawn
    against 3.84 predicted, force stds up to 1.8x (a QA pass)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from gapy import SOAP, GAPRegressor, Term, TwoBody

    rng = np.random.default_rng(0)
    train = []
    for k in range(6):  # Cu cells with one Ni atom: no Ni-Ni pair
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        atoms.symbols[int(rng.integers(32))] = "Ni"
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        train.append(atoms)
    species = ["Cu", "Ni"]
    model = GAPRegressor(SOAP(species, r_cut=4.0, n_max=3, l_max=2), n_sparse=20,
                         two_body=Term(TwoBody(species, r_cut=4.0), delta=0.5, theta=0.4, n_sparse=6)).fit(train)
    test = bulk("Cu", "fcc", a=3.61, cubic=True)
    test.symbols[:2] = "Ni"  # a Ni-Ni pair
    test.rattle(0.05, seed=9)
    (result,) = model.predict_all([test], return_std=True)
    draws = PosteriorDraws(model, 4000, random_state=1).predict([test], ("energy", "forces"))
    assert np.std([d[0]["energy"] for d in draws]) == pytest.approx(result["energy_std"], rel=0.06)
    np.testing.assert_allclose(np.std([d[0]["forces"] for d in draws], axis=0), result["forces_std"], rtol=0.12)


def test_posterior_draws_scale_only_the_calibrated_variance_kind(cu_model):
    """Factors calibrated for 'dtc' are not applied to 'sor' draws, as predict_all does not."""
    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=3)
    model = copy.deepcopy(cu_model)
    model.std_scale_, model.std_scale_variance_ = {"energy": 3.0, "forces": 3.0, "stress": 3.0}, "dtc"
    for kind in ("dtc", "sor"):
        model.set_params(variance=kind)
        (result,) = model.predict_all([atoms], return_std=True)
        draws = PosteriorDraws(model, 2000, random_state=1).predict([atoms], ("energy",))
        assert np.std([d[0]["energy"] for d in draws]) == pytest.approx(result["energy_std"], rel=0.1)


def test_stress_draws_carry_the_nystrom_residual_jointly_over_structures(cu_model):
    """Each stress's spread over the draws is predict_all's stress std (weights and Nystrom
    residual), also far from the data where the residual dominates; and two strained cells
    are drawn jointly: the spread of the difference of their normal stresses is far below
    that of independent draws."""
    near = bulk("Cu", "fcc", a=3.59, cubic=True)
    near.rattle(0.05, seed=3)
    far = bulk("Cu", "fcc", a=3.2, cubic=True)  # -11 %: no data
    sheared = near.copy()
    sheared.set_cell(near.cell.array @ (np.eye(3) + [[0, 0.01, 0], [0.01, 0, 0], [0, 0, 0]]), scale_atoms=True)
    frames = [near, far, sheared]
    n = 4000
    draws = PosteriorDraws(cu_model, n, random_state=1).predict(frames, ("stress",))
    stresses = np.array([[d[k]["stress"] for k in range(len(frames))] for d in draws])
    for k, atoms in enumerate(frames):
        (dtc,) = cu_model.predict_all([atoms], return_std=True, properties=("energy", "stress"))
        (sor,) = cu_model.predict_all([atoms], return_std=True, properties=("energy", "stress"), variance="sor")
        spread = stresses[:, k].std(axis=0)
        np.testing.assert_allclose(spread, dtc["stress_std"], rtol=0.1, atol=1e-3 * dtc["stress_std"].max())
        np.testing.assert_allclose(stresses[:, k].mean(axis=0), dtc["stress"], atol=5 * dtc["stress_std"].max() / np.sqrt(n))
        if k == 1:  # far from the data the residual is most of the std
            assert dtc["stress_std"].max() > 2 * sor["stress_std"].max()
    difference = (stresses[:, 2] - stresses[:, 0]).std(axis=0)[:3]
    independent = np.hypot(stresses[:, 2].std(axis=0), stresses[:, 0].std(axis=0))[:3]
    assert np.all(difference < 0.3 * independent)


def test_gap_lattice_constant_and_the_untrained_facet_is_flagged(cu_model, tmp_path):
    report = validate(cu_model, CU, "emt", ["eos", "surfaces"], output=tmp_path, **FAST)
    a = report["lattice_constant"]
    assert a.model == pytest.approx(a.reference, rel=0.02)
    assert 0 < a.model_std < 0.01 and a.flagged is False
    trained = [report["surface_energy_100"], report["surface_energy_111"]]
    untrained = report["surface_energy_110"]
    assert all(r.error is None for r in trained + [untrained])
    assert untrained.flagged is True
    assert not any(r.flagged for r in trained)
    assert untrained.max_local_std > 3 * max(r.max_local_std for r in trained)
    assert untrained.model_std > max(r.model_std for r in trained)
    document = json.loads((tmp_path / "validation.json").read_text())
    assert document["surface_energy_110"]["flagged"] is True
    assert document["surface_energy_100"]["flagged"] is False


def test_validate_is_exported():
    assert gapy.validate is validate and "validate" in gapy.__all__


def _parse(argv):
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    add_parser(commands, argparse.ArgumentParser(add_help=False))
    return parser.parse_args(argv)


def test_command_end_to_end(cu_model, tmp_path, capsys):
    model_path = tmp_path / "cu.gapy"
    cu_model.save(model_path)
    output = tmp_path / "new" / "report"  # missing parent directories are created
    args = _parse(["validate", str(model_path), "--bulk", "Cu:fcc:3.6", "--reference", "emt",
                   "--properties", "eos,surface_energy_110", "-o", str(output), "--n-samples", "8"])
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "[1/2] equation of state" in printed and "surface_energy_110" in printed and "flagged" in printed
    document = json.loads((output / "validation.json").read_text())
    assert document["surface_energy_110"]["flagged"] is True
    assert document["lattice_constant"]["reference"] == pytest.approx(3.59, abs=0.01)
    assert (output / "validation.csv").is_file() and (output / "eos.png").is_file()


def test_command_checks_paths_first(cu_model, tmp_path):
    model_path = tmp_path / "cu.gapy"
    cu_model.save(model_path)
    with pytest.raises(GapyError, match="would overwrite the input"):
        run(_parse(["validate", str(model_path), "--bulk", "Cu:fcc:3.6", "-o", str(model_path)]))
    with pytest.raises(GapyError, match="no such model file"):
        run(_parse(["validate", str(tmp_path / "missing.gapy"), "--bulk", "Cu:fcc", "-o", str(tmp_path / "o")]))
    with pytest.raises(GapyError, match="no such structure file"):
        run(_parse(["validate", str(model_path), "--structure", str(tmp_path / "POSCAR"), "-o", str(tmp_path / "o")]))
    write(tmp_path / "frames.xyz", [bulk("Cu", "fcc", 3.6), bulk("Cu", "fcc", 3.7)])
    with pytest.raises(GapyError, match="frames.xyz: holds 2 structures; give a file with the one crystal"):
        run(_parse(["validate", str(model_path), "--structure", str(tmp_path / "frames.xyz"), "-o",
                    str(tmp_path / "o")]))
    with pytest.raises(GapyError, match="cu.gapy: is a gapy model file, not structures"):
        run(_parse(["validate", str(model_path), "--structure", str(model_path), "-o", str(tmp_path / "o")]))
    (tmp_path / "dft.json").write_text('{"bulk_moduls": 140}')  # refused before the output directory is made
    with pytest.raises(GapyError, match="dft.json: unknown property 'bulk_moduls'"):
        run(_parse(["validate", str(model_path), "--bulk", "Cu:fcc:3.6", "--reference", str(tmp_path / "dft.json"),
                    "-o", str(tmp_path / "o")]))
    with pytest.raises(SystemExit):  # usage error: --bulk needs SYMBOL:LATTICE
        _parse(["validate", str(model_path), "--bulk", "Cu", "-o", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
    # through the gapy command line: one line on stderr, exit status 1
    assert main(["validate", str(model_path), "--bulk", "Cu:fcc:3.6", "-o", str(model_path)]) == 1


def test_slabs_have_the_intended_layers():
    # at this lattice constant ase.build.surface alone puts a bottom atom on top (an adatom)
    from gapy.validation.defects import slab

    for miller in ((1, 0, 0), (1, 1, 0), (1, 1, 1)):
        atoms = slab(bulk("Cu", "fcc", a=3.58984601, cubic=True), miller, 8.0, 6.0)
        heights = np.round(atoms.positions[:, 2], 3)
        counts = np.unique(heights, return_counts=True)[1]
        assert len(set(counts.tolist())) == 1, (miller, counts)  # every plane complete
        assert heights.max() - heights.min() >= 8.0 - 2.6  # thick enough (plane spacing < 2.6 A)
        assert heights.min() == pytest.approx(6.0, abs=1e-6)  # vacuum below


def test_constants_zero_by_symmetry_get_no_relative_difference(tmp_path):
    # hcp: 21 constants, C14, C15, ... zero by symmetry (reference ~1e-11 GPa, model its own noise)
    frames = []
    for k in range(8):
        atoms = bulk("Cu", "hcp", a=2.55, c=4.16).repeat((2, 2, 2))
        atoms.set_cell(atoms.cell * (1 + 0.01 * (k - 4)), scale_atoms=True)
        atoms.rattle(0.03, seed=k)
        frames.append(atoms)
    train = label_structures(frames, EMT())
    model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10, random_state=0).fit(train)
    report = validate(model, bulk("Cu", "hcp", a=2.55, c=4.16), "emt", ["elastic"], output=tmp_path, plots=False,
                      progress=False, n_samples=4)
    c14, c11 = report["C14"], report["C11"]
    assert abs(c14.reference) < 1e-6 and c14.model is not None
    assert c14.relative_difference is None and c14.difference == pytest.approx(c14.model - c14.reference)
    assert c11.relative_difference == pytest.approx((c11.model - c11.reference) / c11.reference)
    assert c14.reference_scale == pytest.approx(max(abs(r.reference) for r in report.results.values()))
    table = report.table()
    line = next(line for line in table.splitlines() if line.startswith("C14 "))
    assert "%" not in line and f"{c14.difference:+.2e}" in line
    assert "%" in next(line for line in table.splitlines() if line.startswith("C11 "))
    assert "where the reference is ~0" in table
    with open(tmp_path / "validation.csv") as handle:
        rows = {row["property"]: row for row in csv.DictReader(handle)}
    assert rows["C14"]["difference_percent"] == "" and rows["C14"]["difference"] != ""
    assert rows["C11"]["difference_percent"] != ""


def test_alloy_barrier_is_refused_for_its_own_reason():
    alloy = bulk("Cu", "fcc", a=3.7, cubic=True)
    alloy.symbols[[0]] = "Au"  # L1_2 AuCu3
    report = validate(EMT(), alloy, "emt", ["vacancy", "barrier"], **FAST)
    barrier = report["vacancy_migration_barrier"].error
    assert barrier.startswith("model: vacancy migration barrier is defined here for one-species crystals only")
    assert "vacancy formation energy" not in barrier and "chemical potential" not in barrier
    assert "one barrier per vacant sublattice and hopping species" in barrier and "['Au', 'Cu']" in barrier
    assert "AuCu3" in barrier
    vacancy = report["vacancy_formation_energy"].error
    assert "vacancy formation energy is defined here" in vacancy and "chemical potential" in vacancy


def test_reference_values_with_unknown_names_or_units_are_refused_before_any_work(tmp_path):
    values = tmp_path / "dft.json"
    values.write_text(json.dumps({"lattice_constant": 3.63, "bulk_modulous": 140.0}))  # a typo
    with pytest.raises(ValueError, match=r"dft.json: unknown property 'bulk_modulous'"):
        validate(EMT(), CU, str(values), ["eos"], **FAST)
    # a wrong unit of a property computed late must stop the run before the first property
    values.write_text(json.dumps({"surface_energy_111": {"value": 1.3, "unit": "J/m2"}}))
    steps = []
    with pytest.raises(ValueError, match=r"dft.json: 'surface_energy_111' is in 'J/m2'; gapy reports it in 'J/m\^2'"):
        validate(EMT(), CU, str(values), ["eos", "surfaces"], **{**FAST, "progress": steps.append})
    assert steps == []
    values.write_text('{"lattice_constant": NaN}')  # (json reads NaN; it was reported as a reference of nan)
    with pytest.raises(ValueError, match=r"dft.json: 'lattice_constant' must be a finite number or null, got nan"):
        validate(EMT(), CU, str(values), ["eos"], **FAST)
    values.write_text(json.dumps({"phonon_X_3": {"value": 7.0, "unit": "THz"}, "surface_energy_m110": 1.2,
                                  "C13": 80.0}))  # accepted
    validate(EMT(), CU, str(values), ["eos"], **FAST)


def test_lattice_parameters_of_a_non_cubic_crystal_are_property_names(tmp_path):
    hcp = bulk("Cu", "hcp", a=2.54, c=4.14)
    report = validate(EMT(), hcp, "emt", ["lattice_c", "bulk_modulus"], **FAST)
    assert report["lattice_c"].model == pytest.approx(4.143, abs=0.01) and report["lattice_c"].unit == "A"
    assert "lattice_a" not in report.results
    values = tmp_path / "dft.json"
    values.write_text(json.dumps({"lattice_a": {"value": 2.55, "unit": "A"}, "lattice_c": 4.2}))
    report = validate(EMT(), hcp, str(values), ["eos"], **FAST)
    assert report["lattice_a"].reference == 2.55 and report["lattice_c"].reference == 4.2


@pytest.mark.parametrize("name", ["surface_energy_1m", "surface_energy_abc", "surface_energy_1101",
                                  "surface_energy_000"])
def test_malformed_surface_names_are_refused_clearly(name):
    with pytest.raises(ValueError, match=f"'{name}': Miller indices must be three digits"):
        validate(EMT(), CU, properties=[name], progress=False)


def test_a_name_the_crystal_does_not_have_says_so():
    report = validate(EMT(), CU, "emt", ["C11", "C14", "phonon_Q_1", "lattice_a"], **FAST)
    assert report["C11"].model is not None and report["C11"].error is None
    for name, family in (("C14", "C11, C12, C44"), ("phonon_Q_1", "phonon_X_1"), ("lattice_a", "lattice_constant")):
        result = report[name]
        assert result.model is None and result.reference is None and result.flagged is None
        assert f"{name} is not computed for this crystal (Cu)" in result.error and family in result.error


def test_an_unstable_crystal_is_said_to_be_unstable():
    # bcc Cu under EMT: C11 < C12 (Bain path) and imaginary phonons at N
    report = validate(EMT(), bulk("Cu", "bcc", a=2.87), "emt", ["elastic", "phonon_N_1"], **FAST)
    assert report["C11"].reference < report["C12"].reference and report["phonon_N_1"].reference < 0
    table = report.table()
    for side in ("model", "reference"):
        assert f"{side}: imaginary phonon frequencies" in table and "lowest phonon_N_1 = -1.1" in table
        assert f"{side}: the elastic constants fail the Born stability criteria" in table
    stable = validate(EMT(), CU, "emt", ["elastic", "phonon_X_1"], **FAST).table()
    assert "unstable" not in stable


def test_a_crystal_with_noise_is_said_to_have_no_symmetry():
    """A cubic cell rattled by 3 mA (a relaxation's noise) is P1 at symprec 1e-3 A: its properties came
    out as those of a triclinic cell (lattice_a/b/c, 21 Cij) without a word."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.003, seed=1)
    with pytest.warns(UserWarning, match=r"no symmetry at symprec 0.001 A .* but is Fm-3m \(225\) at 0.05 A"):
        results = validate(EMT(), atoms, "emt", ["eos"], **FAST).results
    assert "lattice_a" in results


def test_a_crystal_with_atoms_far_closer_than_a_bond_is_refused():
    """--bulk Cu:fcc:0.5 (a lattice constant in another unit) was accepted: the model 'relaxed'
    it to a bulk modulus of 4449 GPa, and EMT's relaxation ran for more than ten minutes. The
    one atom of the primitive cell is that close to its own periodic images."""
    report = validate(EMT(), bulk("Cu", "fcc", a=0.5), None, ["eos"], **FAST)
    for result in report.results.values():
        assert result.model is None and re.search(
            r"equation of state: the crystal \(Cu\) has atoms 0 and 0 are 0.354 A apart.* is its lattice constant in "
            r"Angstrom\?", result.error), result.error
