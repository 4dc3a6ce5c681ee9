"""The gapy command line: fit -> eval -> predict on tiny data, config files, errors, demo."""

import csv
import inspect
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import gapy
from gapy import GAPRegressor, SOAP, StructureError
from gapy.cli import FIT_OPTIONS, main, run_demo
from gapy.datasets import load_si
from gapy.baseline import ShortDistanceWarning, shortest_distance
from gapy.labels import EnergyResidualWarning

SMALL = ["--r-cut", "4.0", "--n-max", "4", "--l-max", "3", "--n-sparse", "10", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Eight training and five test structures of the bundled data, as extxyz files."""
    folder = tmp_path_factory.mktemp("data")
    write(folder / "train.xyz", load_si("train")[::5], format="extxyz")
    write(folder / "test.xyz", load_si("test")[::6], format="extxyz")
    return folder


@pytest.fixture(scope="module")
def model_file(data):
    path = data / "model.gapy"
    args = ["fit", str(data / "train.xyz"), *SMALL, "--sigma-virial", "0.05", "--e0", "Si:-0.79",
            "--seed", "0", "-o", str(path)]
    assert main(args) == 0
    return path


def one_line_error(capsys, argv, status=1) -> str:
    """Run ``gapy argv``, check the exit status and that stderr is one line; return it."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_fit_writes_a_model_and_reports_errors(data, tmp_path, capsys):
    path = tmp_path / "si.gapy"
    argv = ["fit", str(data / "train.xyz"), *SMALL, "--e0", "Si:-0.79", "--validation-fraction", "0.25",
            "--seed", "1", "-o", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "training on 6 structures" in out and "validating on 2" in out
    assert "errors on the training set" in out and "errors on the validation set" in out
    model = gapy.load(path)
    assert len(model.gp_.sparse) == 10
    assert model.e0_ == {14: -0.79}
    assert model.descriptor_.r_cut == 4.0 and model.descriptor_.l_max == 3


def test_config_file_with_command_line_overrides(data, tmp_path, capsys):
    config = tmp_path / "fit.toml"
    config.write_text(
        'r_cut = 4.0\nn_max = 4\nl_max = 3\nn_sparse = 7\nzeta = 2\ne0 = {Si = -0.79}\n'
        'sigma_force = "none"\nconfig_type_sigma = {Surface = {energy = 0.02}}\nprogress = false\n'
        f'output = "{tmp_path / "from_toml.gapy"}"\n'
    )
    argv = ["fit", str(data / "train.xyz"), "--config", str(config), "--n-sparse", "9", "--zeta", "3"]
    assert main(argv) == 0
    model = gapy.load(tmp_path / "from_toml.gapy")
    assert len(model.gp_.sparse) == 9 and model.gp_.zeta == 3  # flags win
    assert model.sigma_force is None and model.config_type_sigma == {"Surface": {"energy": 0.02}}
    assert "forces" not in capsys.readouterr().err


def test_eval_writes_tables_and_plots(model_file, data, tmp_path, capsys):
    report = tmp_path / "report"
    assert main(["eval", str(model_file), str(data / "test.xyz"), "-o", str(report)]) == 0
    out = capsys.readouterr().out
    assert "meV/atom" in out and "AIMD-NVT" in out
    # the three structures with the largest energy errors, largest first, as the model predicts them
    frames = read(data / "test.xyz", ":")
    errors = [(gapy.load(model_file).predict([atoms])[0] - atoms.get_potential_energy()) / len(atoms) * 1000
              for atoms in frames]
    order = np.argsort(-np.abs(errors))[:3]
    (line,) = [line for line in out.splitlines() if line.startswith("largest energy errors (meV/atom): ")]
    assert [int(part.split()[1]) for part in line.split(": ", 1)[1].split("; ")] == order.tolist()
    assert f"{errors[order[0]]:+.3g} (" in line
    assert "largest force errors (eV/A, RMS over the components): " in out
    with open(report / "errors.csv") as handle:
        rows = list(csv.DictReader(handle))
    overall = {row["quantity"]: row for row in rows if row["config_type"] == "all"}
    assert set(overall) == {"energy", "forces", "stress"}
    assert {row["config_type"] for row in rows} >= {"all", "AIMD-NVT", "Elastic", "Vacancy"}
    for row in rows:
        rmse, mae = float(row["rmse"]), float(row["mae"])
        assert np.isfinite(rmse) and 0 <= mae <= rmse + 1e-12
    assert int(overall["energy"]["n_structures"]) == 5
    assert int(overall["forces"]["n_values"]) == 3 * sum(len(a) for a in read(data / "test.xyz", ":"))
    assert overall["stress"]["unit"] == "GPa" and int(overall["stress"]["n_values"]) == 30
    report_json = json.loads((report / "errors.json").read_text())
    assert report_json["n_structures"] == 5 and report_json["variance"] == "dtc"
    assert [r["rmse"] for r in report_json["errors"]] == pytest.approx([float(r["rmse"]) for r in rows])
    for name in ("parity_energy", "parity_forces", "parity_stress", "uncertainty"):
        assert (report / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_eval_units_match_a_direct_computation(model_file, data, tmp_path):
    report = tmp_path / "report"
    assert main(["eval", str(model_file), str(data / "test.xyz"), "-o", str(report), "--no-std", "--no-plots"]) == 0
    rows = {r["quantity"]: r for r in json.loads((report / "errors.json").read_text())["errors"]
            if r["config_type"] == "all"}
    frames = read(data / "test.xyz", ":")
    model = gapy.load(model_file)
    n_atoms = np.array([len(a) for a in frames])
    reference = np.array([a.get_potential_energy() for a in frames]) / n_atoms
    energy_rmse = 1000 * np.sqrt(np.mean((model.predict(frames) / n_atoms - reference) ** 2))
    assert rows["energy"]["rmse"] == pytest.approx(energy_rmse, rel=1e-10)
    assert rows["energy"]["rmse"] == pytest.approx(-1000 * model.score(frames), rel=1e-10)
    predicted = model.predict_all(frames)
    stress_error = np.concatenate([p["stress"] - a.get_stress() for p, a in zip(predicted, frames)])
    assert rows["stress"]["rmse"] == pytest.approx(160.21766208 * np.sqrt(np.mean(stress_error**2)), rel=1e-10)
    assert sorted(p.name for p in report.iterdir()) == ["errors.csv", "errors.json"]


def test_predict_writes_extxyz_with_stds(model_file, data, tmp_path):
    out = tmp_path / "out.xyz"
    assert main(["predict", str(model_file), str(data / "test.xyz"), "-o", str(out), "--std"]) == 0
    frames = read(out, ":")
    model = gapy.load(model_file)
    expected = model.predict_all(read(data / "test.xyz", ":"), return_std=True)
    assert len(frames) == 5
    for atoms, want in zip(frames, expected):
        assert atoms.get_potential_energy() == pytest.approx(want["energy"], rel=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), want["forces"], atol=1e-8)
        np.testing.assert_allclose(atoms.get_stress(), want["stress"], rtol=1e-12)
        assert atoms.info["energy_std"] == pytest.approx(want["energy_std"], rel=1e-12)
        assert np.all(atoms.arrays["forces_std"] >= 0) and atoms.arrays["forces_std"].shape == (len(atoms), 3)
        assert atoms.info["config_type"]  # input metadata kept
    assert main(["predict", str(model_file), str(data / "test.xyz"), "-o", str(out)]) == 0
    plain = read(out, 0)
    assert "energy_std" not in plain.info and "forces_std" not in plain.arrays


def test_atoms_closer_than_in_training_are_named(model_file, data, tmp_path, capsys):
    """A SOAP-only model predicted a structure squeezed to half its cell with a small std, silently."""
    model = gapy.load(model_file)
    shortest = min(shortest_distance(atoms) for atoms in read(data / "train.xyz", ":"))
    assert model.pair_shortest_ == {(14, 14): pytest.approx(shortest, abs=1e-6)}  # kept in the model file
    test = read(data / "test.xyz", ":")
    squeezed = test[1].copy()
    squeezed.set_cell(squeezed.cell * 0.8, scale_atoms=True)
    write(tmp_path / "pool.xyz", test[:1] + [squeezed], format="extxyz")
    for argv in (["predict", str(model_file), str(tmp_path / "pool.xyz"), "-o", str(tmp_path / "out.xyz")],
                 ["select", str(model_file), str(tmp_path / "pool.xyz"), "-n", "1", "-o", str(tmp_path / "out.xyz")]):
        with pytest.warns(ShortDistanceWarning) as caught:
            assert main(argv) == 0
        message = str(caught[0].message)
        assert f"1 structure has atoms closer than any pair of the training data (structure 1 ({squeezed.symbols}" in (
            message)
        assert f"Si-Si {0.8 * shortest_distance(test[1]):.2f} A (shortest in training {shortest:.2f} A)" in message
        assert "without a repulsive core" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortDistanceWarning)
        assert main(["predict", str(model_file), str(data / "test.xyz"), "-o", str(tmp_path / "out.xyz")]) == 0


def test_errors_are_one_line_with_the_file_and_field(model_file, data, tmp_path, capsys):
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("garbage\n")
    unlabelled = read(data / "train.xyz", ":")
    unlabelled[2].calc = None
    write(tmp_path / "unlabelled.xyz", unlabelled, format="extxyz")
    truncated = tmp_path / "truncated.gapy"
    truncated.write_bytes(model_file.read_bytes()[:2000])
    train, test = str(data / "train.xyz"), str(data / "test.xyz")
    cases = [
        (["fit", str(tmp_path / "missing.xyz")], "missing.xyz: no such file"),
        (["fit", str(garbage)], "garbage.xyz: structure 0 (line 1): expected the number of atoms, got 'garbage'"),
        (["fit", str(tmp_path / "unlabelled.xyz"), *SMALL], "structure 2 (Si24, config_type=Surface) has no label"),
        (["eval", str(tmp_path / "missing.gapy"), test], "missing.gapy: no such model file"),
        (["eval", train, test], "train.xyz: not a gapy model file"),
        (["eval", str(truncated), test], "truncated.gapy"),
        (["predict", str(model_file), str(garbage), "-o", str(tmp_path / "x.xyz")], "garbage.xyz"),
        (["fit", train, "--species", "Ge", *SMALL], "species ['Si'] not in --species Ge"),
        (["fit", train, "--config", str(tmp_path / "none.toml")], "none.toml: no such config file"),
    ]
    for argv, expected in cases:
        err = one_line_error(capsys, argv)
        assert err.startswith(f"gapy {argv[0]}: error: ") and expected in err, (argv, err)


def test_config_file_errors(data, tmp_path, capsys):
    train = str(data / "train.xyz")
    for text, expected in [
        ("r_cutt = 4.0\n", "unknown key 'r_cutt'; did you mean 'r_cut'?"),
        ("n_max = 4.5\n", "n_max must be an integer, got 4.5"),
        ("normalize = 1\n", "normalize must be true or false"),
        ("e0 = 'Si=1'\n", "e0: expected a number, 'average'"),
        ("n_max = \n", "invalid TOML"),
    ]:
        config = tmp_path / "bad.toml"
        config.write_text(text)
        err = one_line_error(capsys, ["fit", train, "--config", str(config)])
        assert "bad.toml" in err and expected in err, err


def test_usage_errors_exit_with_status_2(data, capsys):
    train = str(data / "train.xyz")
    err = one_line_error(capsys, ["fit", train, "--n-max", "x"], status=2)
    assert "argument --n-max: expected an integer, got 'x'" in err
    err = one_line_error(capsys, ["fit", train, "--e0", "Xx:1"], status=2)
    assert "unknown species 'Xx'" in err
    err = one_line_error(capsys, ["fit", train, "--validation", "v.xyz", "--validation-fraction", "0.2",
                                  "--validation-fraction", "2"], status=2)
    assert "between 0 and 1" in err
    one_line_error(capsys, ["predict", "m.gapy", train], status=2)  # -o missing
    one_line_error(capsys, ["frobnicate"], status=2)


def test_debug_shows_the_traceback(data, tmp_path):
    with pytest.raises(gapy.GapyError, match="no such file"):
        main(["--debug", "fit", str(tmp_path / "missing.xyz")])
    with pytest.raises(gapy.GapyError, match="no such file"):
        main(["fit", str(tmp_path / "missing.xyz"), "--debug"])


def test_help_mentions_every_option(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("fit", "eval", "predict", "demo"))
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    for option in FIT_OPTIONS:
        assert option.flag in out, option.flag
    for command in ("eval", "predict", "demo"):
        assert main([command, "--help"]) == 0
        assert "--n-jobs" in capsys.readouterr().out


def test_fit_has_a_flag_for_every_constructor_argument():
    """New SOAP or GAPRegressor arguments must get a flag (and a TOML key)."""
    names = {option.argument or option.name for option in FIT_OPTIONS}
    for cls, skipped in ((SOAP, set()), (GAPRegressor, {"descriptor", "verbose"})):
        arguments = set(inspect.signature(cls.__init__).parameters) - {"self"} - skipped
        assert arguments <= names, sorted(arguments - names)


def test_console_entry_point_in_a_subprocess():
    where = Path(gapy.__file__).parents[1]  # so that this gapy is the one imported
    result = subprocess.run([sys.executable, "-m", "gapy", "--help"], capture_output=True, text=True,
                            timeout=60, cwd=where)
    assert result.returncode == 0 and "gapy fit" not in result.stderr
    assert "usage: gapy" in result.stdout and "demo" in result.stdout


def test_demo_pipeline_with_a_small_descriptor(tmp_path, capsys):
    """The full demo runs ~30 s (run by hand); here the same pipeline with small settings."""
    soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
    rows = run_demo(tmp_path / "demo", descriptor=soap, n_sparse=10, train=load_si("train")[::10],
                    test=load_si("test")[::12], n_jobs=1, progress=False)
    out = capsys.readouterr().out
    assert "errors on the bundled test set" in out
    assert {row["quantity"] for row in rows} == {"energy", "forces", "stress"}
    written = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert written == ["errors.csv", "errors.json", "model.gapy", "parity_energy.png", "parity_forces.png",
                       "parity_stress.png", "uncertainty.png"]
    assert gapy.load(tmp_path / "demo" / "model.gapy").descriptor_ == soap


def test_select_writes_the_most_uncertain_structures(model_file, data, tmp_path, capsys):
    pool = read(data / "test.xyz", ":")
    far = pool[0].copy()
    far.rattle(0.3, seed=7)  # far from anything in training: the most uncertain
    pool.append(far)
    write(tmp_path / "pool.xyz", pool, format="extxyz")
    out_path = tmp_path / "selected.xyz"
    assert main(["select", str(model_file), str(tmp_path / "pool.xyz"), "-n", "2", "-o", str(out_path)]) == 0
    out = capsys.readouterr().out
    chosen = read(out_path, ":")
    assert len(chosen) == 2
    assert chosen[0].info["pool_index"] == len(pool) - 1  # most uncertain first
    assert chosen[0].info["uncertainty_score"] >= chosen[1].info["uncertainty_score"]
    np.testing.assert_allclose(chosen[0].positions, far.positions, atol=1e-6)  # extxyz precision
    assert chosen[0].calc is None  # labels dropped: these go to the reference code
    model = gapy.load(model_file)
    as_read = read(tmp_path / "pool.xyz", -1)
    expected = model.predict_all([as_read], return_std=True)[0]["forces_std"].max()
    assert chosen[0].info["uncertainty_score"] == pytest.approx(expected)
    assert f"structure {len(pool) - 1}" in out
    # above every score: the batch is empty, said plainly; the previous batch is not left to be labelled again
    assert main(["select", str(model_file), str(tmp_path / "pool.xyz"), "-n", "2", "-o",
                 str(out_path), "--threshold", "1e6"]) == 0
    assert f"{out_path} written empty" in capsys.readouterr().out and out_path.read_text() == ""
    # fewer than asked: why
    write(tmp_path / "copies.xyz", [far, far.copy(), far.copy()], format="extxyz")
    assert main(["select", str(model_file), str(tmp_path / "copies.xyz"), "-n", "2", "-o", str(out_path)]) == 0
    assert "fewer than the 2 asked: the others are copies" in capsys.readouterr().out
    assert len(read(out_path, ":")) == 1
    err = one_line_error(capsys, ["select", str(model_file), str(tmp_path / "pool.xyz"), "-n", "2",
                                  "-o", str(out_path), "--score", "stress"], status=2)
    assert "--score" in err


def test_fit_calibrates_stds_on_the_validation_set(data, tmp_path, capsys):
    path = tmp_path / "calibrated.gapy"
    argv = ["fit", str(data / "train.xyz"), *SMALL, "--e0", "Si:-0.79", "--validation-fraction", "0.25",
            "--seed", "1", "--calibrate", "-o", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "calibrated on the validation set (energy x" in out and "RMS(err/std)" in out
    model = gapy.load(path)
    assert set(model.std_scale_) == {"energy", "forces", "stress"} and all(f > 0 for f in model.std_scale_.values())
    err = one_line_error(capsys, ["fit", str(data / "train.xyz"), *SMALL, "--calibrate", "-o", str(path)])
    assert "--calibrate needs validation structures" in err


def test_overconfident_stds_get_a_hint(capsys):
    from gapy.cli._common import calibration_hint as _calibration_hint

    rows = [{"quantity": "forces", "config_type": "all", "within_2std": 0.62},
            {"quantity": "energy", "config_type": "all", "within_2std": 0.93},
            {"quantity": "stress", "config_type": "Surface", "within_2std": 0.1},
            {"quantity": "stress", "config_type": "all", "within_2std": None}]
    _calibration_hint(rows)
    out = capsys.readouterr().out
    assert "predicted forces standard deviations are too small" in out and "--calibrate" in out
    _calibration_hint(rows[1:])
    assert capsys.readouterr().out == ""
    # stds far larger than the errors pass as "100 % within 2 std": said too (small molecules: 20-80 times)
    _calibration_hint([{"quantity": "forces", "config_type": "all", "within_2std": 1.0, "z_rms": 0.046},
                       {"quantity": "energy", "config_type": "all", "within_2std": 1.0, "z_rms": 0.8}])
    out = capsys.readouterr().out
    assert "far larger than the errors here (RMS of error / std: forces 0.046)" in out and "energy" not in out


def test_coverage_with_a_model_reports_its_uncertainty(model_file, data, tmp_path, capsys):
    out_dir = tmp_path / "coverage"
    argv = ["coverage", str(data / "train.xyz"), str(data / "test.xyz"), "--model", str(model_file),
            "--color", "std", "-o", str(out_dir)]
    assert main(argv) == 0
    assert "rank correlation with the distance" in capsys.readouterr().out
    with open(out_dir / "coverage.csv") as handle:
        rows = list(csv.DictReader(handle))
    new = [row for row in rows if row["set"] == "new"]
    assert all(row["energy_std"] == "" for row in rows if row["set"] == "train")
    model = gapy.load(model_file)
    first = read(data / "test.xyz", 0)
    expected = model.predict_all([first], return_std=True)[0]["energies_std"]
    got = [float(row["energy_std"]) for row in new if row["structure"] == "0"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert (out_dir / "coverage.png").stat().st_size > 0
    err = one_line_error(capsys, ["coverage", str(data / "train.xyz"), "--color", "std", "-o", str(out_dir)])
    assert "--color std needs a model" in err


def test_fit_with_extra_terms_from_flags_and_toml(data, tmp_path, capsys):
    path = tmp_path / "terms.gapy"
    argv = ["fit", str(data / "train.xyz"), *SMALL, "--e0", "Si:-0.79", "-o", str(path),
            "--two-body", "delta=2,theta=0.5,n_sparse=6,r_cut=4"]
    assert main(argv) == 0
    model = gapy.load(path)
    assert model.two_body.delta == 2.0 and model.two_body.descriptor.r_cut == 4.0
    assert model.three_body is None and list(model.term_descriptors_) == ["two_body"]

    config = tmp_path / "fit.toml"
    config.write_text("r_cut = 4.0\nn_max = 4\nl_max = 3\nn_sparse = 10\n"
                      "[three_body]\ndelta = 0.3\ntheta = 0.7\nn_sparse = 5\nr_cut = 3.0\n")
    assert main(["fit", str(data / "train.xyz"), "--config", str(config), "--no-progress", "-o",
                 str(tmp_path / "toml.gapy")]) == 0
    assert gapy.load(tmp_path / "toml.gapy").three_body.n_sparse == 5
    capsys.readouterr()
    assert main(["fit", str(data / "train.xyz"), "--two-body", "delta=2,sigma=1"]) == 2
    assert "unknown term setting 'sigma'" in capsys.readouterr().err


def test_forces_only_fit_with_sigma_energy_none(data, tmp_path, capsys):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = read(data / "train.xyz", ":")[:4]
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, forces=atoms.get_forces())
    write(tmp_path / "forces.xyz", frames, format="extxyz")
    base = ["fit", str(tmp_path / "forces.xyz"), *SMALL]
    assert main([*base, "--sigma-energy", "none", "-o", str(tmp_path / "flag.gapy")]) == 0
    assert gapy.load(tmp_path / "flag.gapy").sigma_energy is None
    config = tmp_path / "fit.toml"
    config.write_text('sigma_energy = "none"\n')
    assert main([*base, "--config", str(config), "-o", str(tmp_path / "toml.gapy")]) == 0
    assert gapy.load(tmp_path / "toml.gapy").sigma_energy is None
    assert main(["fit", "--help"]) == 0
    assert "'none': energies are not fitted" in " ".join(capsys.readouterr().out.split())


def test_eval_and_fit_name_the_label_keys(model_file, data, tmp_path, capsys):
    frames = read(data / "test.xyz", ":")[:3]
    for atoms in frames:
        atoms.info["dft_energy"] = atoms.get_potential_energy()
        atoms.arrays["dft_forces"] = atoms.get_forces()
        atoms.calc = None
    renamed = tmp_path / "dft.xyz"
    write(renamed, frames, format="extxyz")
    for argv in (["eval", str(model_file), str(renamed)], ["fit", str(renamed), *SMALL]):
        err = one_line_error(capsys, argv)
        assert "structure 0 (Si" in err and "'energy'" in err, err
        assert "'dft_energy'], arrays ['dft_forces']" in err, err
        assert "(here perhaps --energy-key dft_energy --forces-key dft_forces)" in err, err
    argv = ["eval", str(model_file), str(renamed), "--energy-key", "dft_energy", "--forces-key", "dft_forces",
            "-o", str(tmp_path / "report"), "--no-plots", "--no-std"]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "report" / "errors.json").read_text())["errors"]
    assert {(r["quantity"], r["n_structures"]) for r in rows if r["config_type"] == "all"} == {("energy", 3),
                                                                                             ("forces", 3)}
    # energies under another name in some kinds only: the rows of the others, and a note for the energies
    capsys.readouterr()
    argv = ["eval", str(model_file), str(renamed), "--forces-key", "dft_forces", "--no-std"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert ("note: the model was fitted on field 'energy' but no structure of " in out
            and "has it, so there are no energy errors below; structure 0 (Si" in out), out
    assert "\nforces " in out and "\nenergy " not in out


@pytest.fixture(scope="module")
def emt_cu():
    """Six small rattled EMT Cu cells with energies, forces and stresses."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(6):
        atoms = bulk("Cu", cubic=True, a=3.55 + 0.03 * k)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                           stress=atoms.get_stress())
        frames.append(atoms)
    return frames


def _fit_warnings(frames, tmp_path, *extra):
    write(tmp_path / "cu.xyz", frames, format="extxyz")
    with pytest.warns(RuntimeWarning) as record:
        assert main(["fit", str(tmp_path / "cu.xyz"), *SMALL, *extra, "-o", str(tmp_path / "cu.gapy")]) == 0
    return [str(warning.message) for warning in record]


def test_fit_warns_once_for_stresses_in_gpa(emt_cu, tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = [atoms.copy() for atoms in emt_cu]
    for atoms, labelled in zip(frames, emt_cu):
        atoms.calc = SinglePointCalculator(atoms, energy=labelled.get_potential_energy(),
                                           forces=labelled.get_forces(), stress=labelled.get_stress() * 160.2 + 10)
    unit = [message for message in _fit_warnings(frames, tmp_path, "--sigma-virial", "0.05")
            if "GPa or kbar" in message]
    assert len(unit) == 1, unit
    assert "of 6 structures" in unit[0] and "'structure 0 (Cu4)', " in unit[0] and unit[0].endswith(" ...")


def test_fit_warns_once_for_labels_given_twice_with_different_values(emt_cu, tmp_path):
    frames = [atoms.copy() for atoms in emt_cu]
    for atoms, labelled in zip(frames, emt_cu):
        atoms.calc = labelled.calc
        atoms.info["virial"] = labelled.get_stress(voigt=False) * atoms.get_volume()  # the stress's sign: wrong
    conflicts = [message for message in _fit_warnings(frames, tmp_path, "--sigma-virial", "0.05")
                 if "give a label twice" in message]
    assert len(conflicts) == 1, conflicts
    assert f"{len(frames)} structures give a label twice with different values, the first: structure 0" in conflicts[0]
    assert "field 'virial' differs between atoms.info and -stress * volume" in conflicts[0]


def test_fit_warns_of_an_absurd_energy(emt_cu, tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = [atoms.copy() for atoms in emt_cu]
    for k, (atoms, labelled) in enumerate(zip(frames, emt_cu)):
        energy = 1e6 if k == 3 else labelled.get_potential_energy()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=labelled.get_forces())
    frames[3].info["config_type"] = "slip"
    outliers = [message for message in _fit_warnings(frames, tmp_path, "--sigma-energy", "0.001")
                if "lies far from the others'" in message]
    assert len(outliers) == 1 and "field 'energy' of 1 structure " in outliers[0], outliers
    assert "structure 3 (Cu4, config_type=slip): 250000 eV/atom" in outliers[0]
    assert "structure 2" not in outliers[0]


def test_unknown_species_errors_say_once_what_to_do_on_the_command_line(model_file, emt_cu, tmp_path, capsys):
    write(tmp_path / "cu.xyz", emt_cu[:2], format="extxyz")
    for command in ("predict", "eval"):
        err = one_line_error(capsys, [command, str(model_file), str(tmp_path / "cu.xyz"), "-o", str(tmp_path / "out")])
        assert "structure 0 (Cu4) has species ['Cu']" in err and "fitted for ['Si']" in err, err
        assert "refit it with 'gapy fit'" in err and "--species" in err and "SOAP(" not in err, err
    validate = ["validate", str(model_file), "--bulk", "Cu:fcc:3.6", "--properties", "eos", "-o", str(tmp_path / "v")]
    err = one_line_error(capsys, validate)
    assert "species ['Cu'] that the model does not know" in err
    assert main([*validate, "--reference", "emt"]) == 0
    out = capsys.readouterr().out
    assert out.count("does not know") == 2 and "the same for 2 more properties below" in out, out  # progress, table


def test_warnings_are_one_line_each_without_source_lines(emt_cu, tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = [atoms.copy() for atoms in emt_cu]
    for k, (atoms, labelled) in enumerate(zip(frames, emt_cu)):
        atoms.calc = SinglePointCalculator(atoms, energy=1e6 if k == 3 else labelled.get_potential_energy(),
                                           forces=labelled.get_forces())
    write(tmp_path / "cu.xyz", frames, format="extxyz")
    command = [sys.executable, "-m", "gapy", "fit", str(tmp_path / "cu.xyz"), *SMALL, "--sigma-energy", "0.001",
               "-o", str(tmp_path / "cu.gapy"), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr
    warning_lines = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
    assert warning_lines and all(line.startswith("gapy fit: warning: ") for line in warning_lines), done.stderr
    assert ".py:" not in done.stderr  # no source paths


def test_gapy_fit_recommends_a_model_for_structures_labelled_with_a_stress_alone(tmp_path, capsys):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k, strain in enumerate((-0.02, -0.01, 0.0, 0.01, 0.02, 0.03)):
        atoms = bulk("Cu", "fcc", a=3.6 * (1 + strain), cubic=True)
        atoms.rattle(0.02, seed=k)
        stress = EMT().get_stress(atoms)
        atoms.calc = SinglePointCalculator(atoms, stress=stress)  # (no energy, no forces)
        frames.append(atoms)
    write(tmp_path / "stressed.xyz", frames)
    assert main(["fit", str(tmp_path / "stressed.xyz"), "-o", str(tmp_path / "m.gapy"), "--no-progress"]) == 0
    assert "36 virial values" in capsys.readouterr().out


def test_gapy_eval_says_when_the_model_was_fitted_without_energies(tmp_path, capsys):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        forces, energy = atoms.get_forces(), atoms.get_potential_energy()
        atoms.calc = SinglePointCalculator(atoms, forces=forces, energy=energy)
        frames.append(atoms)
    model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=8, sigma_energy=None).fit(frames)
    model.save(tmp_path / "forces.gapy")
    write(tmp_path / "test.xyz", frames)
    assert main(["eval", str(tmp_path / "forces.gapy"), str(tmp_path / "test.xyz")]) == 0
    assert "fitted without energies, so its energies are known up to a constant" in capsys.readouterr().out
    GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=8).fit(frames).save(tmp_path / "both.gapy")
    assert main(["eval", str(tmp_path / "both.gapy"), str(tmp_path / "test.xyz")]) == 0
    assert "fitted without energies" not in capsys.readouterr().out


def test_fit_names_a_training_energy_it_misses_far_more_than_the_others(tmp_path, capsys):
    """One energy stored per atom instead of per structure bends the whole fit; the training
    errors name that structure first (the unchanged data: nothing)."""
    frames = load_si("train")[:20]
    wrong = frames[4]
    wrong.calc = SinglePointCalculator(wrong, energy=wrong.get_potential_energy() / len(wrong),
                                       forces=wrong.get_forces(), stress=wrong.get_stress())
    write(tmp_path / "slip.xyz", frames)
    with pytest.warns(EnergyResidualWarning) as record:
        assert main(["fit", str(tmp_path / "slip.xyz"), *SMALL, "-o", str(tmp_path / "slip.gapy")]) == 0
    warned = [str(w.message) for w in record if "misses the energy" in str(w.message)]
    assert len(warned) == 1 and "far more than all the others' (structure 4 (Si63, config_type=Vacancy) -" in warned[0]
    write(tmp_path / "clean.xyz", load_si("train")[:20])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(["fit", str(tmp_path / "clean.xyz"), *SMALL, "-o", str(tmp_path / "clean.gapy")]) == 0
    assert not [w for w in record if "misses the energy" in str(w.message)]


def test_n_jobs_given_on_the_command_line_bounds_the_blas_threads_too(monkeypatch):
    """'gapy demo --n-jobs 1' used two cores: OpenBLAS takes every core for the solves."""
    from threadpoolctl import threadpool_info

    import gapy.cli.predict

    seen = []

    def record(args):
        seen.append([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"])
        return 0

    monkeypatch.setattr(gapy.cli.predict, "run", record)
    assert main(["predict", "m.gapy", "d.xyz", "-o", "o.xyz", "--n-jobs", "1"]) == 0
    assert main(["predict", "m.gapy", "d.xyz", "-o", "o.xyz"]) == 0
    assert seen[0] and all(n == 1 for n in seen[0])
    assert seen[1] == [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # as OMP_NUM_THREADS=1 sets it: --n-jobs 2 does not raise it
        assert main(["predict", "m.gapy", "d.xyz", "-o", "o.xyz", "--n-jobs", "2"]) == 0
    assert seen[2] and all(n == 1 for n in seen[2])


def test_info_describes_a_model_and_what_it_was_fitted_on(model_file, data, tmp_path, capsys):
    """``gapy info``: terms, noise, stds and the training record, whose counts are the fit's
    and whose digest is that of the data (a file and the same structures in memory agree)."""
    assert main(["info", str(model_file)]) == 0
    out = capsys.readouterr().out
    train = read(data / "train.xyz", ":")
    model = gapy.load(model_file)
    assert model.label_counts_ == {"energy": 8, "forces": 3 * sum(map(len, train)), "virial": 48}
    assert model.n_environments_ == {"Si": sum(map(len, train))}
    for expected in ["species     Si", "e0          Si -0.79 eV (given)", "SOAP        r_cut 4 A, n_max 4, l_max 3",
                     "10 sparse points (Si 10)", "noise       energy 0.01 eV x sqrt(atoms), forces",
                     "variance 'dtc'; not calibrated", f"training    8 structures, {sum(map(len, train))} atoms",
                     f"data sha256 {model.provenance_['training']['sha256']}"]:
        assert expected in out, (expected, out)
    energies = [atoms.get_potential_energy() / len(atoms) for atoms in train]
    assert f"energies {min(energies):.4g} to {max(energies):.4g} eV/atom" in out
    in_memory = GAPRegressor(**model.get_params(deep=False)).fit(train)
    assert in_memory.provenance_["training"] == model.provenance_["training"]
    relabelled = [atoms.copy() for atoms in train]
    for atoms, original in zip(relabelled, train):
        atoms.calc = SinglePointCalculator(atoms, **original.calc.results)
    relabelled[3].calc.results["energy"] += 1e-3
    changed = GAPRegressor(**model.get_params(deep=False)).fit(relabelled)
    assert changed.provenance_["training"]["sha256"] != model.provenance_["training"]["sha256"]
    # calibration is recorded and shown; --json prints the header
    calibrated = tmp_path / "calibrated.gapy"
    model.calibrate(read(data / "test.xyz", ":") * 4).save(calibrated)
    assert main(["info", str(calibrated)]) == 0
    assert "calibrated on 20 structures (energy x" in capsys.readouterr().out
    assert main(["info", str(calibrated), "--json"]) == 0
    header = json.loads(capsys.readouterr().out)
    assert header["provenance"]["calibration"]["structures"] == 20 and "checksums" not in header
    error = one_line_error(capsys, ["info", str(data / "train.xyz")])
    assert "not a gapy model file" in error


def test_labels_under_another_name_are_not_left_out(data, tmp_path, capsys):
    """QUIP's 'force' array: the recommendation found no 'forces' and fitted energies and stresses
    alone, saying so only among its reasons; a file that names them 'forces' in some structures
    and 'force' in others lost the latter's without a word. Both refused, naming the flag."""
    text = (data / "train.xyz").read_text()
    renamed = tmp_path / "quip.xyz"
    renamed.write_text(text.replace(":forces:R:3", ":force:R:3"))
    for extra in ([], ["--n-max", "4", "--l-max", "3", "--n-sparse", "10"]):  # recommended, and settings given
        error = one_line_error(capsys, ["fit", str(renamed), "--no-progress", "-o", str(tmp_path / "m.gapy"), *extra])
        assert "8 structures have no forces under 'forces' but 'force' (structure 0" in error
        assert "give '--forces-key force' if every structure names it so" in error
    frames = read(renamed, ":")
    with pytest.raises(ValueError, match=r"give forces_key='force' if every structure.*overrides=\{'sigma_force': "
                                         r"None\} fits without that kind"):
        gapy.recommend(frames)
    with pytest.raises(StructureError, match=r"no forces under 'forces' but 'force'.*sigma_force=None fits"):
        GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10).fit(frames)
    assert gapy.recommend(frames, forces_key="force").model.sigma_force is not None
    assert gapy.recommend(frames, overrides={"sigma_force": None}).model.sigma_force is None
    blocks = text.split("Lattice=")
    mixed = tmp_path / "mixed.xyz"  # the last four structures name them 'force'
    mixed.write_text("Lattice=".join(blocks[:5] + [block.replace(":forces:R:3", ":force:R:3") for block in blocks[5:]]))
    error = one_line_error(capsys, ["fit", str(mixed), "--no-progress", "-o", str(tmp_path / "m.gapy")])
    assert "4 structures have no forces under 'forces' but 'force' (structure 4" in error
    with pytest.raises(StructureError, match="4 structures have no forces under 'forces' but 'force'"):
        GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10).fit(read(mixed, ":"))


def test_lookalike_label_names():
    """A virial is named for virial_key, a stress for stress_key; settings and stds are no labels."""
    from ase.build import bulk

    from gapy.labels import label_key, lookalike_labels

    atoms = bulk("Cu", cubic=True)
    atoms.info.update(dft_virial=np.zeros(9), energy_cutoff=520.0, free_energy=-14.0, smearing_energy=0.1)
    atoms.arrays["forces_std"] = np.zeros((4, 3))
    atoms.arrays["dft_forces"] = np.zeros((4, 3))
    assert lookalike_labels(atoms, "virial") == ["dft_virial"] and label_key("virial", "dft_virial") == "virial_key"
    assert lookalike_labels(atoms, "forces") == ["dft_forces"]
    assert lookalike_labels(atoms, "energy") == ["free_energy"]


def test_the_training_record_fingerprints_geometry_labels_and_weights(data):
    """The SHA-256 changes with the positions (it held the labels alone), not with how equal weights
    are given; force components of atoms with force weight 0 are not counted as fitted."""
    train = read(data / "train.xyz", ":")[:4]
    model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10)
    record = model.fit(train).provenance_["training"]
    assert model.fit(train, sample_weight=[1.0] * 4).provenance_["training"] == record
    assert model.fit(train, sample_weight=[1.0, 1.0, 2.0, 1.0]).provenance_["training"]["sha256"] != record["sha256"]
    moved = [atoms.copy() for atoms in train]
    for atoms, original in zip(moved, train):
        atoms.calc = SinglePointCalculator(atoms, **original.calc.results)
    moved[2].positions += 0.05
    assert model.fit(moved).provenance_["training"]["sha256"] != record["sha256"]
    weighted = [atoms.copy() for atoms in train]
    for atoms, original in zip(weighted, train):
        atoms.calc = SinglePointCalculator(atoms, **original.calc.results)
    weighted[0].arrays["force_weights"] = np.ones(len(weighted[0]))
    weighted[0].arrays["force_weights"][:2] = 0.0
    model.fit(weighted)
    assert model.label_counts_["forces"] == record["labels"]["forces"] - 6
    assert model.n_observations_ == model.label_counts_["energy"] + model.label_counts_["forces"]
