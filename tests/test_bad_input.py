"""Every bad input gapy knows of, one table each: the error type and a message that names
the structure, field or parameter. Add a row for each new case; the list only grows.

Also: saves that fail or are killed never damage an existing model file, and no command
overwrites its own input.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import gapy
from gapy import GAPCalculator, GAPRegressor, ModelFileError, SOAP, StructureError
from gapy.exceptions import DataFileError
from gapy.cli import main
from gapy.datasets import load_si
from gapy.sampling import active_learning, run_md, select_structures

SMALL_SOAP = dict(species=["Si"], r_cut=4.0, n_max=4, l_max=3)


def soap():
    return SOAP(**SMALL_SOAP)


def labelled(atoms, energy=-10.0, forces=None, stress=None, **info):
    atoms = atoms.copy()
    results = {"energy": energy, "forces": np.zeros((len(atoms), 3)) if forces is None else forces}
    if stress is not None:
        results["stress"] = stress
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(info)
    return atoms


def si(a=5.43, seed=0):
    atoms = bulk("Si", "diamond", a=a, cubic=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


# ------------------------------------------------------------------ parameters
# (constructor arguments, exception, message pattern): checked when fit() is called
ESTIMATOR_PARAMETERS = [
    (dict(n_sparse={"Si": 0}), ValueError, r"n_sparse\['Si'\] must be a positive integer, got 0"),
    (dict(n_sparse={"Si": -3}), ValueError, r"n_sparse\['Si'\] must be a positive integer"),
    (dict(n_sparse=0), ValueError, "n_sparse must be a positive integer"),
    (dict(n_sparse="many"), TypeError, "n_sparse must be a positive integer"),
    (dict(config_type_sigma={"Surface": {"energy": 0.0}}), ValueError,
     r"config_type_sigma\['Surface'\]\['energy'\] must be a positive number"),
    (dict(config_type_sigma={"Surface": {"energy": -1.0}}), ValueError, "must be a positive number"),
    (dict(config_type_sigma={"Surface": {"energy": "small"}}), TypeError, "must be a positive number"),
    (dict(config_type_sigma={"Surface": 0.01}), TypeError, r"config_type_sigma\['Surface'\] must be a dict"),
    (dict(config_type_sigma={"Surface": {"stress": 0.1}}), ValueError, "unknown keys"),
    (dict(sparse_jitter=float("nan")), ValueError, "sparse_jitter must be a non-negative number, got nan"),
    (dict(sparse_jitter=-1e-8), ValueError, "sparse_jitter must be a non-negative number"),
    (dict(delta=float("inf")), ValueError, "delta must be a positive number, got inf"),
    (dict(delta=0.0), ValueError, "delta must be a positive number"),
    (dict(e0={"Si": float("nan")}), ValueError, r"e0\['Si'\] must be a finite number, got nan"),
    (dict(e0={"Xx": 0.0}), ValueError, "unknown species 'Xx'"),
    (dict(e0="isolatd"), ValueError, "e0 must be one of"),
    (dict(e0=float("inf")), ValueError, "e0 must be a finite number"),
    (dict(zeta=None), TypeError, "zeta must be a positive integer, got None"),
    (dict(zeta=0), ValueError, "zeta must be a positive integer"),
    (dict(zeta=2.5), ValueError, "zeta must be a positive integer"),
    (dict(sigma_energy=float("inf")), ValueError, "sigma_energy must be a positive number or None, got inf"),
    (dict(sigma_force=-0.1), ValueError, "sigma_force must be a positive number or None"),
    (dict(sigma_virial="0.1"), TypeError, "sigma_virial must be a positive number or None"),
    (dict(block_rows=0), ValueError, "block_rows must be a positive integer, got 0"),
    (dict(block_rows=-5), ValueError, "block_rows must be a positive integer"),
    (dict(n_jobs=0), ValueError, "n_jobs must be a positive integer or negative"),
    (dict(sparse_method="kmeans"), ValueError, "sparse_method must be one of"),
    (dict(variance="full"), ValueError, "variance must be one of"),
    (dict(sigma_per_atom="yes"), TypeError, "sigma_per_atom must be True or False"),
    (dict(descriptor="soap"), TypeError, "descriptor must be a gapy.SOAP"),
]

SOAP_PARAMETERS = [
    (dict(r_cut=0.0), ValueError, "r_cut must be a positive number"),
    (dict(r_cut="5"), TypeError, "r_cut must be a positive number"),
    (dict(atom_sigma=1e-4), ValueError, "atom_sigma=0.0001 A is below 0.05 A"),
    (dict(n_max=None), TypeError, "n_max must be an integer between 1 and 20, got None"),
    (dict(l_max=25), ValueError, "l_max must be an integer between 0 and 20"),
    (dict(cutoff_width=6.0), ValueError, "must not exceed r_cut"),
    (dict(radial_basis="bessel"), ValueError, "radial_basis must be one of"),
    (dict(species=["Si", "Xx"]), ValueError, "unknown species 'Xx'"),
]


@pytest.mark.parametrize("kwargs, error, match", ESTIMATOR_PARAMETERS)
def test_estimator_parameters(kwargs, error, match):
    settings = {"descriptor": soap(), "n_sparse": 5, "e0": 0.0, **kwargs}
    with pytest.raises(error, match=match):
        GAPRegressor(**settings).fit([labelled(si())])


@pytest.mark.parametrize("kwargs, error, match", SOAP_PARAMETERS)
def test_soap_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        SOAP(**{**SMALL_SOAP, **kwargs})


# ------------------------------------------------------------------ training data
def _nan_forces():
    forces = np.zeros((8, 3))
    forces[2, 1] = np.nan
    return labelled(si(), forces=forces)


def _string_energy():
    atoms = si()
    atoms.info["energy"] = "-10.0 eV"
    atoms.arrays["forces"] = np.zeros((8, 3))
    return atoms


def _zero_cell_stress():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], pbc=False)
    atoms.info["energy"] = -1.0
    atoms.info["stress"] = np.zeros(6)
    return atoms


def _slab_stress():
    atoms = labelled(si(), stress=np.zeros(6))
    atoms.pbc = [True, True, False]
    return atoms


def _periodic_zero_cell_stress():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=np.zeros((3, 3)), pbc=[True, True, True])
    atoms.info["energy"] = -1.0
    atoms.info["stress"] = np.zeros(6)
    return atoms


def _quip_force_array():
    atoms = si()
    atoms.info["energy"] = -10.0
    atoms.arrays["force"] = np.zeros((8, 3))
    return atoms


def _germanium():
    atoms = labelled(si())
    atoms.symbols[0] = "Ge"
    return atoms


def _overlapping():
    atoms = labelled(si())
    atoms.positions[1] = atoms.positions[0] + [0.05, 0, 0]
    return atoms


def _nan_positions():
    atoms = labelled(si())
    atoms.positions[3, 0] = np.nan
    return atoms


def _bad_force_shape():
    return labelled(si(), forces=np.zeros((7, 3)))


def _negative_force_weights():
    atoms = labelled(si())
    atoms.arrays["force_weights"] = -np.ones(8)
    return atoms


def _dummy_atom():
    atoms = labelled(si())
    atoms.numbers[2] = 0  # 'X' in an extxyz file
    return atoms


def _forces_in_info():
    atoms = si()
    atoms.calc = SinglePointCalculator(atoms, energy=-10.0)
    atoms.info["forces"] = np.array([0.1, 0.2, 0.3])  # 'forces="0.1 0.2 0.3"' on an extxyz comment line
    return atoms


# (second training structure, exception, message pattern); the first structure is fine
TRAINING_DATA = [
    (_nan_forces, StructureError, r"structure 1 \(Si8\): field 'forces' contains NaN"),
    (_string_energy, StructureError, r"structure 1 \(Si8\): field 'energy' is not a number"),
    (_zero_cell_stress, StructureError, r"structure 1 \(Si2\): field 'stress' given for a structure that is not"),
    (_slab_stress, StructureError, r"structure 1 \(Si8\): field 'stress' given for a structure that is not periodic "
     r"in all three directions \(pbc=\[True, True, False\]\)"),
    (_periodic_zero_cell_stress, StructureError, r"structure 1 \(Si2\)"),
    (_germanium, StructureError, r"structure 1 \(GeSi7\): species \['Ge'\] not in"),
    (_overlapping, StructureError, r"structure 1 \(Si8\): atoms 0 and 1 are 0.05 A apart"),
    (_nan_positions, StructureError, r"structure 1 \(Si8\): field 'positions' is not finite for atoms \[3\]"),
    (_bad_force_shape, StructureError, r"structure 1 \(Si8\): field 'forces' has shape \(7, 3\)"),
    (_negative_force_weights, StructureError, r"structure 1 \(Si8\): field 'force_weights' has negative"),
    (lambda: "Si8", TypeError, "structure 1: expected ase.Atoms, got str"),
    (_forces_in_info, StructureError, r"structure 1 \(Si8\): field 'forces' is in atoms.info \(3 values for the "
     r"structure\), not an array of the atoms"),
    (_dummy_atom, StructureError, r"structure 1 \(Si7X\): species \['X'\] not in the descriptor's species"),
]


@pytest.mark.parametrize("make, error, match", TRAINING_DATA)
def test_training_data(make, error, match):
    with pytest.raises(error, match=match):
        GAPRegressor(soap(), n_sparse=5, e0=0.0).fit([labelled(si(seed=1)), make()])


def test_targets_given_as_y_must_be_the_labels_of_the_structures():
    """scikit-learn's y was silently ignored (y = 2 x the energies gave the model of the file's
    labels); the labels are read from the structures, so a y must be their energies."""
    frames = [labelled(si(seed=k), energy=-10.0 - k) for k in range(2)]
    model = GAPRegressor(soap(), n_sparse=5, e0=0.0)
    for call in (lambda y: model.fit(frames, y), lambda y: model.maximize_evidence(frames, y),
                 lambda y: model.fit(frames).score(frames, y)):
        with pytest.raises(ValueError, match=r"y is -22 for structure 1 \(Si8\), whose energy label is -11.0: the "
                                             r"labels are read from the structures"):
            call([-10.0, -22.0])
        with pytest.raises(ValueError, match="y has 3 values for 2 structures"):
            call([-10.0, -11.0, -12.0])
        call(np.array([-10.0, -11.0]))  # what cross_val_score(model, frames, energies) passes
    from sklearn.model_selection import cross_val_score
    scores = cross_val_score(model, frames * 2, np.array([-10.0, -11.0] * 2), cv=2)
    assert np.all(np.isfinite(scores))


def test_a_dummy_atom_is_named_where_the_species_come_from_the_data():
    """'X' (atomic number 0) was taken for a species of its own."""
    frames = [labelled(si(seed=1)), _dummy_atom()]
    with pytest.raises(StructureError, match=r"structure 1 \(Si7X\): field 'numbers' has 0 for atoms \[2\], which "
                                             r"is no element \('X', ASE's dummy atom\)"):
        gapy.recommend(frames)
    with pytest.raises(ValueError, match="unknown species 'X' \\(ASE's dummy atom, not an element\\)"):
        SOAP(["X", "Si"])


def test_labels_under_another_name_are_refused():
    quip = [_quip_force_array(), _quip_force_array()]
    with pytest.raises(StructureError, match=r"2 structures have no forces under 'forces' but 'force' \(structure 0 "
                                             r"\(Si8\), ...\): .* give forces_key='force' if every structure"):
        GAPRegressor(soap(), n_sparse=5, e0=0.0).fit(quip)


def test_isolated_atoms_alone_are_refused_with_a_reason():
    """Only atoms without neighbours, whose energy a given e0 fixes: no sparse point, and the fit
    failed with numpy's 'cannot reshape array of size 0 into shape (0)'."""
    atoms = Atoms("Si", cell=[20, 20, 20], pbc=False)
    atoms.calc = SinglePointCalculator(atoms, energy=-0.8, forces=np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"no sparse point: no atom of the 1 training structures has a neighbour "
                                         r"within the cutoff \(4 A\)"):
        GAPRegressor(soap(), n_sparse=5, e0=-0.8).fit([atoms])


def test_labels_of_a_kind_that_is_not_fitted_are_named():
    """Stresses alone under the default sigmas: the error named the missing energies only (and
    listed 'numbers' and 'positions' as candidate labels); it now says the stresses are there,
    fitted with sigma_virial. Structures left out for want of a fitted label, likewise."""
    stressed = []
    for k in range(2):
        atoms = si(seed=k)
        atoms.calc = SinglePointCalculator(atoms, stress=np.full(6, 0.01))
        stressed.append(atoms)
    with pytest.raises(StructureError, match=r"field 'energy'; found info keys \[\], arrays \[\] and calculator "
                                             r"results \['stress'\].*; 2 structures have field 'stress' or 'virial', "
                                             r"fitted when sigma_virial is set"):
        GAPRegressor(soap(), n_sparse=5, e0=0.0).fit(stressed)
    with pytest.warns(UserWarning, match=r"1 training structures have no label to fit and are left out: "
                                         r"\['structure 1 \(Si8\)'\]; 1 structures have field 'stress'"):
        GAPRegressor(soap(), n_sparse=5, e0=0.0).fit([labelled(si(seed=3)), stressed[0]])


def test_stress_that_looks_like_gpa_warns():
    atoms = labelled(si(), stress=np.array([50.0, 50.0, 50.0, 0.0, 0.0, 0.0]))
    with pytest.warns(RuntimeWarning, match=r"structure 0 \(Si8\): field 'stress' reaches 50 eV/A\^3.*GPa"):
        GAPRegressor(soap(), n_sparse=5, e0=0.0, sigma_virial=0.1).fit([atoms])


def test_no_structures_and_all_zero_weights():
    with pytest.raises(ValueError, match="no structures given"):
        GAPRegressor(soap()).fit([])
    with pytest.raises(ValueError, match="no structure to fit"):
        GAPRegressor(soap(), n_sparse=5, e0=0.0).fit([labelled(si())], sample_weight=[0.0])
    with pytest.raises(ValueError, match="sample_weight must be finite and non-negative"):
        GAPRegressor(soap(), n_sparse=5, e0=0.0).fit([labelled(si())], sample_weight=[np.nan])


# ------------------------------------------------------------------ prediction and sampling
@pytest.fixture(scope="module")
def model():
    return GAPRegressor(soap(), n_sparse=10, e0=0.0).fit([labelled(si(seed=k)) for k in range(3)])


PREDICTION = [
    (lambda m: m.predict_all([si()], variance="full"), ValueError, "variance must be one of"),
    (lambda m: m.predict_all([si()], properties=("charges",)), ValueError, "properties must be among"),
    (lambda m: m.predict_all([si()], return_std=("dipole",)), ValueError, "return_std names unknown"),
    (lambda m: m.predict_all([_germanium()]), StructureError, r"structure 0 \(GeSi7\): species \['Ge'\]"),
    (lambda m: m.predict([]), ValueError, "no structures given"),
    (lambda m: GAPCalculator(m, variance="full"), ValueError, "variance must be one of"),
    (lambda m: GAPCalculator("not-a-model"), FileNotFoundError, "does not exist"),
    (lambda m: GAPCalculator(42), TypeError, "model must be a fitted GAPRegressor"),
    (lambda m: select_structures(m, [si()], 0), ValueError, "n must be a positive integer"),
    (lambda m: select_structures(m, [si()], 1, threshold=float("nan")), ValueError, "threshold must be a finite"),
    (lambda m: select_structures(m, [si()], 1, score="stress"), ValueError, "score must be one of"),
    (lambda m: run_md(m, si(), 10, 2, temperature=-300.0), ValueError, "temperature must be a non-negative"),
    (lambda m: run_md(m, si(), 10, 0, temperature=300.0), ValueError, "interval must be a positive integer"),
    (lambda m: run_md(m, si(), 10, 2, 300.0, timestep=0.0), ValueError, "timestep must be a positive number"),
    (lambda m: active_learning(m, [labelled(si())], None, si(), threshold=float("nan")), ValueError,
     "threshold must be a finite number"),
    (lambda m: active_learning(m, [labelled(si())], None, si(), temperature=-1.0), ValueError,
     "temperature must be a non-negative number"),
    (lambda m: active_learning(m, [labelled(si())], None, [], n_iterations=1), ValueError, "starts"),
]


@pytest.mark.parametrize("call, error, match", PREDICTION)
def test_prediction_and_sampling(model, call, error, match):
    with pytest.raises(error, match=match):
        call(model)


# ------------------------------------------------------------------ model files
def _edit_header(path, target, change, legacy=False):
    """Write ``path`` with its header changed; ``legacy``: without the header checksum, as
    files of format versions 1 and 2 are."""
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    change(header)
    arrays["header"] = np.array(json.dumps(header))
    if legacy:
        arrays.pop("header_sha256")
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)


def _edit_array(path, target, name, value):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays[name] = value(arrays[name])
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)


MODEL_FILES = [
    ("edited zeta", lambda p, t: _edit_header(p, t, lambda h: h.update(zeta=2)), "header does not match"),
    ("future version", lambda p, t: _edit_header(p, t, lambda h: h.update(format_version=99)),
     "format version 99"),
    ("foreign format", lambda p, t: _edit_header(p, t, lambda h: h.update(format="other")), "not a gapy model"),
    ("alpha changed", lambda p, t: _edit_array(p, t, "alpha", lambda a: a + 1e-9), "checksum of 'alpha'"),
    ("not an archive", lambda p, t: t.write_bytes(b"\x80\x04\x95 pickle"), r"not an \.npz archive"),
    ("truncated", lambda p, t: t.write_bytes(p.read_bytes()[:300]), "damaged or truncated archive"),
    ("edited, marked as an old version", lambda p, t: _edit_header(p, t, lambda h: h.update(zeta=2, format_version=2)),
     "header does not match"),
    ("version true", lambda p, t: _edit_header(p, t, lambda h: h.update(format_version=True)),
     "format version True"),
    ("version as text", lambda p, t: _edit_header(p, t, lambda h: h.update(format_version="4")),
     "format version '4'"),
    ("terms in an old version", lambda p, t: _edit_header(p, t, lambda h: h.update(format_version=2, terms={"a": 1}),
                                                          legacy=True), "version 2 cannot hold extra terms"),
    ("empty", lambda p, t: t.write_bytes(b""), r"not an \.npz archive"),
    ("no header", lambda p, t: np.savez(open(t, "wb"), alpha=np.zeros(3)), "no header"),
    ("a directory", lambda p, t: t.mkdir(), "is a directory"),
    ("an array header damaged", lambda p, t: t.write_bytes(_flipped(p.read_bytes(), b"{'descr'", 1)),
     r"not a readable gapy model file \((SyntaxError|TokenError|ValueError)"),
]


def _flipped(data: bytes, marker: bytes, offset: int) -> bytes:
    """``data`` with one bit flipped ``offset`` bytes after the first ``marker`` (numpy parses the
    array headers before the archive's checksum is checked: a SyntaxError was not named as the file's)."""
    position = data.index(marker) + offset
    return data[:position] + bytes([data[position] ^ 0x10]) + data[position + 1:]


@pytest.mark.parametrize("name, damage, match", MODEL_FILES, ids=[case[0] for case in MODEL_FILES])
def test_model_files(model, tmp_path, name, damage, match):
    path, target = tmp_path / "good.gapy", tmp_path / "bad.gapy"
    model.save(path)
    damage(path, target)
    with pytest.raises(ModelFileError, match=match):
        gapy.load(target)


def test_malformed_headers_and_arrays_raise_model_file_error(model, tmp_path):
    """Old-format files (no header checksum) are checked field by field."""
    path = tmp_path / "good.gapy"
    model.save(path)

    def old_format(change):
        def edit(header):
            header["format_version"] = 2
            change(header)
        return edit

    cases = [
        (old_format(lambda h: h.pop("zeta")), "malformed model header.*zeta"),
        (old_format(lambda h: h.update(delta="big")), "malformed model header"),
        (old_format(lambda h: h.update(e0=[1, 2])), "malformed model header"),
        (old_format(lambda h: h["params"].update(sigma_force=-1)), "malformed model header.*sigma_force"),
        (old_format(lambda h: h["descriptor"].update(n_max=None)), "malformed model header.*n_max"),
        (old_format(lambda h: h.update(e0={})), "e0 has no value"),
        (old_format(lambda h: h.update(std_noise_weight={"forces": -1.0})), "std_noise_weight >= 0"),
        (old_format(lambda h: h.update(pair_shortest=[[14, 14, -1.0]])), "pair_shortest must hold positive"),
    ]
    for change, match in cases:
        _edit_header(path, tmp_path / "bad.gapy", change, legacy=True)
        with pytest.raises(ModelFileError, match=match):
            gapy.load(tmp_path / "bad.gapy")
    # arrays of the wrong shape or with NaN (checksums recomputed, as a careless tool would)
    for name, value, match in [("alpha", lambda a: a[:-1], "'alpha' has shape"),
                               ("r_factor", lambda a: a * np.nan, "'r_factor' is not numeric and finite")]:
        with np.load(path) as archive:
            arrays = {k: archive[k] for k in archive.files}
        arrays[name] = value(arrays[name])
        header = json.loads(str(arrays["header"]))
        header["format_version"] = 2
        header["checksums"][name] = __import__("hashlib").sha256(np.ascontiguousarray(arrays[name]).tobytes()).hexdigest()
        arrays["header"] = np.array(json.dumps(header))
        arrays.pop("header_sha256")
        with open(tmp_path / "bad.gapy", "wb") as handle:
            np.savez(handle, **arrays)
        with pytest.raises(ModelFileError, match=match):
            gapy.load(tmp_path / "bad.gapy")


# ------------------------------------------------------------------ saves never lose a model
def test_numpy_settings_can_be_saved(tmp_path):
    numbers = np.unique(si().numbers)
    model = GAPRegressor(SOAP(species=numbers, r_cut=np.float64(4.0), n_max=np.int64(4), l_max=np.int64(3)),
                         n_sparse=np.int64(5), e0=np.float64(0.0), random_state=np.int64(0)).fit([labelled(si())])
    model.save(tmp_path / "numpy.gapy")
    loaded = gapy.load(tmp_path / "numpy.gapy")
    np.testing.assert_array_equal(loaded.gp_.alpha, model.gp_.alpha)


def test_a_failed_save_leaves_the_previous_file_unchanged(model, tmp_path, monkeypatch):
    path = tmp_path / "model.gapy"
    model.save(path)
    before = path.read_bytes()
    unsaveable = GAPRegressor(soap(), n_sparse=5, e0=0.0).fit([labelled(si())])
    unsaveable.set_params(random_state=object())  # not storable: fails while serialising
    with pytest.raises(TypeError, match="cannot store"):
        unsaveable.save(path)
    assert path.read_bytes() == before

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device; the previous file is unchanged") as error:
        unsaveable.set_params(random_state=0)
        unsaveable.save(path)
    assert error.value.filename == str(path)  # named (the message was only '[Errno 28] No space left')
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gapy"]  # no temporary file left behind
    gapy.load(path)


def test_a_save_killed_midway_leaves_the_previous_file_loadable(model, tmp_path):
    path = tmp_path / "model.gapy"
    model.save(path)
    before = path.read_bytes()
    script = f"""
import os, signal
import numpy as np
import gapy.io.model as files
header, arrays = {{"x": 1}}, {{"a": np.zeros(10)}}
real_fsync = os.fsync
def killed(fd):
    os.kill(os.getpid(), signal.SIGKILL)   # dies with the new file half-written
os.fsync = killed
files.write_state(header, arrays, {str(path)!r})
"""
    process = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert process.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    np.testing.assert_array_equal(gapy.load(path).gp_.alpha, model.gp_.alpha)


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def files(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("files")
    write(folder / "data.xyz", load_si("train")[::10], format="extxyz")
    model.save(folder / "m.gapy")
    return folder


def _commands(folder):
    data, model_file = str(folder / "data.xyz"), str(folder / "m.gapy")
    return [
        ["predict", model_file, data, "-o", data],
        ["predict", model_file, data, "-o", model_file],
        ["select", model_file, data, "-n", "1", "-o", data],
        ["fit", data, "-o", data, "--r-cut", "4.0", "--n-max", "4", "--l-max", "3", "--n-sparse", "5"],
        ["eval", model_file, data, "-o", data],
        ["coverage", data, "-o", data],
    ]


@pytest.mark.parametrize("case", range(6))
def test_no_command_overwrites_its_input(files, capsys, case):
    argv = _commands(files)[case]
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "would overwrite the input" in err or "exists and is not a directory" in err, err
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before


def test_a_model_is_never_written_over_structures_nor_structures_over_a_model(files, tmp_path, capsys):
    """'gapy fit train.xyz -o test.xyz' (a typo for --validation) replaced the test set with a model."""
    test_set, other_model = tmp_path / "test.xyz", tmp_path / "other.gapy"
    test_set.write_bytes((files / "data.xyz").read_bytes())
    other_model.write_bytes((files / "m.gapy").read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    fit = ["fit", str(files / "data.xyz"), "--r-cut", "4.0", "--n-max", "4", "--l-max", "3", "--n-sparse", "5",
           "--no-progress", "-o"]
    assert main(fit + [str(test_set)]) == 1
    assert "test.xyz: exists and is not a gapy model file" in capsys.readouterr().err
    for command in ("predict", "select"):
        assert main([command, str(files / "m.gapy"), str(files / "data.xyz"), "-o", str(other_model)]
                    + (["-n", "1"] if command == "select" else [])) == 1
        assert "other.gapy: is a gapy model file and would be replaced" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert main(fit + [str(other_model)]) == 0  # a model over a model: a refit
    assert gapy.load(other_model).gp_.alpha.shape == (5,)


def test_an_extxyz_stress_in_another_layout_and_a_blank_line_are_refused(files, tmp_path, capsys):
    """ASE's reader keeps the upper triangle of a 9-value stress (a Voigt vector padded to 9 was
    fitted as wrong numbers without a word) and stops at a blank line (the structures after it
    were silently left out of a 'gapy fit'); both are refused, naming the structure and line."""
    text = (files / "data.xyz").read_text()
    lines = text.splitlines(keepends=True)
    n = int(lines[0]) + 2  # lines of the first structure
    header = lines[n + 1]
    assert 'stress="' in header
    start = header.index('stress="') + len('stress="')
    padded = header[:start] + "0.01 0.02 0.03 0.001 0.002 0.003 0.0 0.0 0.0" + header[header.index('"', start):]
    (tmp_path / "padded.xyz").write_text("".join(lines[:n + 1] + [padded] + lines[n + 2:]))
    argv = ["fit", str(tmp_path / "padded.xyz"), "--r-cut", "4.0", "--n-max", "4", "--l-max", "3", "--n-sparse", "5",
            "--sigma-virial", "0.05", "--no-progress", "-o", str(tmp_path / "m.gapy")]
    assert main(argv) == 1
    assert "padded.xyz: structure 1 (line " in capsys.readouterr().err
    with pytest.raises(StructureError, match=r"structure 1 \(line [0-9]+\): field 'stress' is not a symmetric 3x3"):
        GAPRegressor(soap(), n_sparse=5, sigma_virial=0.05).fit(str(tmp_path / "padded.xyz"))
    (tmp_path / "blank.xyz").write_text("".join(lines[:n]) + "\n" + "".join(lines[n:]))
    assert main(argv[:1] + [str(tmp_path / "blank.xyz")] + argv[2:]) == 1
    assert "blank line at line" in capsys.readouterr().err


def test_a_model_file_given_as_structures_is_named(files, capsys):
    assert main(["fit", str(files / "m.gapy")]) == 1
    assert f"{files / 'm.gapy'}: is a gapy model file, not structures" in capsys.readouterr().err
    with pytest.raises(DataFileError, match="is a gapy model file, not structures"):
        GAPRegressor(soap(), n_sparse=5).fit(str(files / "m.gapy"))


def test_a_failed_calibrated_fit_leaves_the_previous_model(files, tmp_path, capsys):
    """The model was written before the validation set was checked: a validation file with a
    species the training data lack replaced a calibrated model with an uncalibrated one."""
    validation = tmp_path / "validation.xyz"
    write(validation, [labelled(si(seed=4)), _germanium()], format="extxyz")
    output = tmp_path / "m.gapy"
    output.write_bytes((files / "m.gapy").read_bytes())
    before = output.read_bytes()
    argv = ["fit", str(files / "data.xyz"), "--r-cut", "4.0", "--n-max", "4", "--l-max", "3", "--n-sparse", "5",
            "--no-progress", "--validation", str(validation), "--calibrate", "-o", str(output)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "structure 1 (GeSi7) has species ['Ge'], which the training structures do not have" in captured.err
    assert "training on" not in captured.out  # refused before the fit
    write(validation, [si(seed=5)], format="extxyz")  # no labels
    assert main(argv) == 1
    assert "no structure has an energy, forces or stress" in capsys.readouterr().err
    assert output.read_bytes() == before


def test_output_locations_are_checked_before_the_work(files, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    data = str(files / "data.xyz")
    argv = ["fit", data, "-o", str(blocker / "model.gapy"), "--r-cut", "4.0", "--n-max", "4", "--l-max", "3",
            "--n-sparse", "5", "--no-progress"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "cannot write there" in captured.err and "training on" not in captured.out  # refused before fitting
    # a missing directory is created
    assert main(argv[:3] + [str(tmp_path / "new" / "dir" / "model.gapy")] + argv[4:]) == 0
    assert (tmp_path / "new" / "dir" / "model.gapy").is_file()


@pytest.mark.parametrize("command", ["predict", "select"])
def test_structures_are_not_written_under_the_name_of_another_format(files, tmp_path, capsys, command):
    """'gapy predict ... -o out.traj' said "written" and wrote extxyz text that ASE could not read back."""
    data, model_file = str(files / "data.xyz"), str(files / "m.gapy")
    extra = ["-n", "1"] if command == "select" else []
    for name in ("out.traj", "out.db"):
        assert main([command, model_file, data, *extra, "-o", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert "structures are written as extended XYZ; give a name ending in .xyz or .extxyz" in err
        assert not (tmp_path / name).exists()
    assert main([command, model_file, data, *extra, "-o", str(tmp_path / "out.extxyz")]) == 0
    assert len(read(tmp_path / "out.extxyz", ":")) == (1 if command == "select" else len(read(data, ":")))
    assert main([command, model_file, data, *extra, "-o", str(tmp_path / "at_1.5GPa")]) == 0  # (no format's name)


def test_a_file_in_place_of_a_directory_is_named(files, tmp_path, capsys):
    data = str(files / "data.xyz")
    assert main(["fit", data, "-o", str(files / "data.xyz" / "sub" / "m.gapy")]) == 1
    assert f"{files / 'data.xyz'} is a file, not a directory" in capsys.readouterr().err
    assert main(["predict", str(files), data, "-o", str(tmp_path / "out.xyz")]) == 1
    assert f"{files}: is a directory, not a model file" in capsys.readouterr().err


def test_the_same_command_gives_the_same_model(files, tmp_path):
    argv = ["fit", str(files / "data.xyz"), "--r-cut", "4.0", "--n-max", "4", "--l-max", "3", "--n-sparse", "5",
            "--no-progress", "-o"]
    assert main(argv + [str(tmp_path / "a.gapy")]) == 0
    assert main(argv + [str(tmp_path / "b.gapy")]) == 0
    a, b = gapy.load(tmp_path / "a.gapy"), gapy.load(tmp_path / "b.gapy")
    np.testing.assert_array_equal(a.gp_.alpha, b.gp_.alpha)
    assert a.random_state == 0


def test_a_save_into_a_missing_directory_names_the_directory(model, tmp_path):
    """Was a FileNotFoundError naming the hidden temporary file ('.model.gapy.x1y2.tmp')."""
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match=f"directory {missing} does not exist") as caught:
        model.save(missing / "model.gapy")
    assert ".tmp" not in str(caught.value)
    assert not (tmp_path / "no").exists()


def test_saved_model_files_have_the_permissions_of_a_plain_write(model, tmp_path):
    """mkstemp's owner-only mode survived the atomic rename: a model saved on a shared
    cluster was unreadable by the group, and a save over a shared file took its rights away."""
    previous = os.umask(0o022)
    try:
        model.save(tmp_path / "new.gapy")
        (tmp_path / "plain").write_bytes(b"")
        assert (tmp_path / "new.gapy").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "new.gapy", 0o664)
        model.save(tmp_path / "new.gapy")
        assert (tmp_path / "new.gapy").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.gapy", "plain"]
    gapy.load(tmp_path / "new.gapy")


def test_a_foreign_npz_with_a_header_is_not_a_gapy_model_rather_than_corrupt(tmp_path):
    """Was 'corrupt: the header has no array checksums' for another tool's archive."""
    np.savez(tmp_path / "other.npz", header=np.array(json.dumps({"format": "other-tool"})), a=np.zeros(2))
    with pytest.raises(ModelFileError, match=r"not a gapy model file \(format 'other-tool'\)"):
        gapy.load(tmp_path / "other.npz")


def test_a_model_with_the_default_descriptor_names_its_species_by_symbol():
    """Was "species ['Ge'] not in the descriptor's species [14]": atomic numbers beside symbols."""
    model = GAPRegressor(n_sparse=5, e0=0.0).fit([labelled(si())])
    assert model.descriptor_.species == ["Si"]
    germanium = si()
    germanium.symbols[:] = "Ge"
    with pytest.raises(StructureError, match=r"species \['Ge'\] not in the descriptor's species \['Si'\]"):
        model.predict([germanium])
