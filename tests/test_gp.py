"""Sparse GP potential: exactness against a dense GP, derivatives, variances, persistence."""

import json
import warnings
import zipfile

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from sklearn.base import clone

import gapy
from gapy import GAPRegressor, ModelFileError, SOAP, StructureError
from gapy.datasets import load_si
from gapy.gp import IncrementalQR, kmm_cholesky
from gapy.sparsify import cur_points, fps_points, select_points
from gapy.testing import assert_allclose_relative, finite_difference_positions, finite_difference_strain

SOAP_SETTINGS = dict(r_cut=4.0, n_max=4, l_max=3, atom_sigma=0.5, cutoff_width=1.0)


def toy_energy(atoms):
    """A smooth many-body reference: pair terms plus a per-atom density term."""
    i, j, d = _pairs(atoms)
    smooth = 0.5 * (1 + np.cos(np.pi * d / 4.0))
    pair = 0.5 * np.sum(smooth * (np.exp(-((d - 2.4) ** 2)) - 0.3 * np.exp(-d)))
    density = np.bincount(i, weights=smooth * np.exp(-d), minlength=len(atoms))
    return float(pair - 0.2 * np.sum(np.sqrt(density + 0.1)))


def _pairs(atoms):
    from ase.neighborlist import neighbor_list

    return neighbor_list("ijd", atoms, 4.0)


def labelled(atoms, with_stress=True):
    atoms = atoms.copy()
    forces = -finite_difference_positions(lambda a: toy_energy(a), atoms, 1e-4)
    results = {"energy": toy_energy(atoms), "forces": forces}
    if with_stress and atoms.pbc.all():
        strain = finite_difference_strain(lambda a: toy_energy(a), atoms, 1e-4)
        stress = strain / atoms.get_volume()
        results["stress"] = np.array([stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]])
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


@pytest.fixture(scope="module")
def training_set():
    frames = []
    for k in range(6):
        atoms = bulk("Si", "diamond", a=5.43 + 0.05 * k)
        atoms = atoms.repeat((2, 1, 1))
        atoms.rattle(0.15, seed=k)
        frames.append(labelled(atoms))
    return frames


@pytest.fixture(scope="module")
def fitted(training_set):
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=20, sigma_energy=0.002,
                         sigma_force=0.02, sigma_virial=0.02, e0=0.0, random_state=0)
    return model.fit(training_set)


def test_energy_only_fit_equals_dense_gp_when_all_environments_are_sparse(training_set):
    """With every environment a sparse point, DTC is the exact GP on energies.

    The kernel is the dot-product kernel conditioned on a zero local energy of an
    isolated atom (q0): K(q, x) = delta^2 [(q.x)^2 - (q.q0)^2 (q0.x)^2].
    """
    soap = SOAP(["Si"], **SOAP_SETTINGS)
    frames = training_set[:4]
    model = GAPRegressor(soap, n_sparse=1000, sigma_energy=0.01, sigma_force=None, zeta=2,
                         delta=0.7, e0=0.0, sparse_jitter=1e-12, variance="dtc").fit(frames)
    values = [soap.compute(a) for a in frames]
    X = np.concatenate(values)
    assert len(model.gp_.sparse) == len(X)
    q0 = soap.compute(Atoms("Si"))[0]

    def conditioned(a, b):
        return 0.49 * ((a @ b.T) ** 2 - np.outer((a @ q0) ** 2, (b @ q0) ** 2))

    kernel = conditioned(X, X)
    assign = np.zeros((len(frames), len(X)))
    start = 0
    for k, v in enumerate(values):
        assign[k, start:start + len(v)] = 1.0
        start += len(v)
    noise = np.diag([(0.01 * np.sqrt(len(a))) ** 2 for a in frames])
    y = np.array([a.get_potential_energy() for a in frames])
    covariance = assign @ kernel @ assign.T + noise
    test = training_set[5]
    q = soap.compute(test)
    k_star = conditioned(q, X)
    k_energy = k_star.sum(0) @ assign.T
    mean = k_energy @ np.linalg.solve(covariance, y)
    prior = conditioned(q, q).sum()
    variance = prior - k_energy @ np.linalg.solve(covariance, k_energy)
    energy, std = model.predict([test], return_std=True)
    np.testing.assert_allclose(energy[0], mean, rtol=1e-6)
    np.testing.assert_allclose(std[0] ** 2, variance, rtol=1e-4)
    # local energies too
    local = model.predict_all([test], return_std=True)[0]
    k_local = k_star @ assign.T
    local_var = np.diag(conditioned(q, q)) - np.einsum("ik,ik->i", k_local, np.linalg.solve(covariance, k_local.T).T)
    np.testing.assert_allclose(local["energies_std"] ** 2, local_var, rtol=1e-4, atol=1e-10)


def test_variance_kinds_are_ordered(fitted, training_set):
    test = training_set[0]
    results = {kind: fitted.predict_all([test], return_std=True, variance=kind)[0] for kind in ("sor", "dtc", "local")}
    for key in ("energy_std", "energies_std", "forces_std", "stress_std"):
        sor, dtc, local = (np.asarray(results[k][key]) for k in ("sor", "dtc", "local"))
        np.testing.assert_allclose(dtc**2, sor**2 + local**2, rtol=1e-8, atol=1e-14)
        assert np.all(sor > 0) and np.all(local >= 0)


def test_forces_and_stress_are_derivatives_of_the_energy(fitted, training_set):
    atoms = training_set[2].copy()
    atoms.rattle(0.05, seed=9)
    result = fitted.predict_all([atoms])[0]
    numeric = -finite_difference_positions(lambda a: fitted.predict([a])[0], atoms, 1e-5)
    assert_allclose_relative(result["forces"], numeric, 1e-6, "forces")
    assert abs(result["forces"].sum(0)).max() < 1e-10
    strain = finite_difference_strain(lambda a: fitted.predict([a])[0], atoms, 1e-5) / atoms.get_volume()
    voigt = np.array([strain[0, 0], strain[1, 1], strain[2, 2], strain[1, 2], strain[0, 2], strain[0, 1]])
    assert_allclose_relative(result["stress"], voigt, 1e-6, "stress")


def test_reverse_mode_and_explicit_predictions_agree(fitted, training_set):
    fast = fitted.predict_all(training_set[:2])
    full = fitted.predict_all(training_set[:2], return_std=True)
    for a, b in zip(fast, full):
        np.testing.assert_allclose(a["energies"], b["energies"], rtol=1e-12)
        np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-10)
        np.testing.assert_allclose(a["stress"], b["stress"], atol=1e-12)


def _prior_covariance(model, first, second):
    """delta^2 sum_{i,i'} k(q_i, q'_i') between two structures, k conditioned on e(q0) = 0."""
    soap, gp = model.descriptor_, model.gp_
    q, p = soap.compute(first), soap.compute(second)
    q0 = gp.isolated[0]
    plain = ((q @ p.T) ** gp.zeta).sum()
    correction = ((q @ q0) ** gp.zeta).sum() * ((p @ q0) ** gp.zeta).sum() / (q0 @ q0) ** gp.zeta
    return gp.delta**2 * (plain - correction)


def test_force_and_stress_prior_variances_match_finite_differences(fitted, training_set):
    """The prior of DTC/local force variances: mixed second derivative of the kernel."""
    atoms = training_set[1]
    result = fitted.predict_all([atoms], return_std=True, variance="local")[0]
    rows_free = fitted.predict_all([atoms], return_std=True, variance="sor")[0]
    gp = fitted.gp_
    h = 1e-4
    j, a = 3, 1
    moved = []
    for sign in (1, -1):
        b = atoms.copy()
        b.positions[j, a] += sign * h
        moved.append(b)
    mixed = (
        _prior_covariance(fitted, moved[0], moved[0]) - _prior_covariance(fitted, moved[0], moved[1])
        - _prior_covariance(fitted, moved[1], moved[0]) + _prior_covariance(fitted, moved[1], moved[1])
    ) / (4 * h * h)
    # local variance = prior - explained; recover the prior from the kernel rows
    soap = fitted.descriptor_
    values, grad = soap.compute(atoms, gradients=True)
    from scipy.linalg import solve_triangular

    rows = gp.rows(values, np.zeros(len(atoms), int), grad)
    explained = (solve_triangular(gp.kmm_factor, rows["forces"][j, a], lower=True) ** 2).sum()
    np.testing.assert_allclose(result["forces_std"][j, a] ** 2 + explained, mixed, rtol=1e-4)
    assert rows_free["forces_std"][j, a] > 0
    # the virial xx prior: mixed second derivative under the strain eps_xx on both sides
    strained = []
    for sign in (1, -1):
        b = atoms.copy()
        deformation = np.eye(3)
        deformation[0, 0] += sign * h
        b.set_cell(atoms.cell.array @ deformation.T, scale_atoms=True)
        strained.append(b)
    mixed = (
        _prior_covariance(fitted, strained[0], strained[0]) - _prior_covariance(fitted, strained[0], strained[1])
        - _prior_covariance(fitted, strained[1], strained[0]) + _prior_covariance(fitted, strained[1], strained[1])
    ) / (4 * h * h)
    explained = (solve_triangular(gp.kmm_factor, rows["virial"][0], lower=True) ** 2).sum()
    volume = atoms.get_volume()
    np.testing.assert_allclose((result["stress_std"][0] * volume) ** 2 + explained, mixed, rtol=1e-4)


def test_force_and_virial_prior_covariances_of_two_structures_match_finite_differences(fitted, training_set):
    """Cov(virial_k or F_ma of one structure, virial_l or F_nb of another): the mixed second
    difference of their energies' prior covariance under both moves; the diagonal block is
    the variance."""
    from gapy.gp import variance

    from instance_checks import _moved

    soap, gp = fitted.descriptor_, fitted.gp_
    first, second = training_set[1], training_set[2]
    features = []
    for atoms in (first, second):
        values, grad = soap.compute(atoms, gradients=True)
        features.append((values, soap.species_indices(atoms), grad))
    h = 1e-4
    checks = (("virial", [(0, 0), (2, 3), (5, 1)]), ("forces", [((0, 0), (0, 0)), ((3, 1), (2, 2)), ((1, 2), (0, 1))]))
    for quantity, pairs in checks:
        if quantity == "virial":
            covariance_of, variance_of = variance.virial_prior_covariance, variance.virial_prior_variance
            arguments = [(values, species, variance.voigt_strain(grad.dstrain)) for values, species, grad in features]
        else:
            covariance_of, variance_of = variance.force_prior_covariance, variance.force_prior_variance
            arguments = features
        parameters = (gp.zeta, gp.delta, gp.isolated)
        covariance = covariance_of(*arguments[0], *arguments[1], *parameters)
        np.testing.assert_allclose(covariance, covariance_of(*arguments[1], *arguments[0], *parameters).T, rtol=1e-10)
        np.testing.assert_allclose(np.diag(covariance_of(*arguments[0], *arguments[0], *parameters)),
                                   variance_of(*arguments[0], *parameters), rtol=1e-10)
        for k, l in pairs:
            mixed = sum(sa * sb * _prior_covariance(fitted, _moved(first, k, sa * h), _moved(second, l, sb * h))
                        for sa in (1, -1) for sb in (1, -1)) / (4 * h * h)
            index = (k, l) if quantity == "virial" else (3 * k[0] + k[1], 3 * l[0] + l[1])
            assert abs(mixed) > 1e-6 * abs(covariance).max()
            np.testing.assert_allclose(covariance[index], mixed, rtol=1e-4, atol=1e-6 * abs(covariance).max(),
                                       err_msg=f"{quantity} {(k, l)}")


def test_save_and_load_give_identical_predictions(fitted, training_set, tmp_path):
    path = tmp_path / "model.gapy"
    fitted.save(path)
    loaded = gapy.load(path)
    a = fitted.predict_all(training_set[:2], return_std=True)
    b = loaded.predict_all(training_set[:2], return_std=True)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert loaded.get_params()["n_sparse"] == fitted.get_params()["n_sparse"]


def test_corrupt_truncated_and_foreign_model_files_are_rejected(fitted, tmp_path):
    path = tmp_path / "model.gapy"
    fitted.save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.gapy"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a gapy model file|not a readable gapy model"):
        gapy.load(truncated)
    # a damaged member inside an intact archive
    damaged = tmp_path / "damaged.gapy"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            payload = source.read(item.filename)
            if item.filename == "alpha.npy":
                payload = payload[: len(payload) // 2]
            target.writestr(item, payload)
    with pytest.raises(ModelFileError, match="not a readable gapy model"):
        gapy.load(damaged)
    pickled = tmp_path / "pickled.gapy"
    pickled.write_bytes(b"\x80\x04\x95 not an archive")
    with pytest.raises(ModelFileError, match=r"not an \.npz archive"):
        gapy.load(pickled)
    # a future format version
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header["format_version"] = 99
    future = tmp_path / "future.gapy"
    np.savez(open(future, "wb"), **{**arrays, "header": np.array(json.dumps(header))})
    with pytest.raises(ModelFileError, match="format version 99"):
        gapy.load(future)
    # flipped weights
    arrays["alpha"] = arrays["alpha"] + 1e-9
    corrupt = tmp_path / "corrupt.gapy"
    np.savez(open(corrupt, "wb"), **arrays)
    with pytest.raises(ModelFileError, match="checksum of 'alpha'"):
        gapy.load(corrupt)
    other = tmp_path / "other.npz"
    np.savez(open(other, "wb"), x=np.zeros(3))
    with pytest.raises(ModelFileError, match="no header"):
        gapy.load(other)
    with zipfile.ZipFile(tmp_path / "pickle.gapy", "w") as archive:
        archive.writestr("header.npy", b"garbage")
    with pytest.raises(ModelFileError):
        gapy.load(tmp_path / "pickle.gapy")


def test_fit_learns_the_reference(training_set):
    """More data and sparse points reduce the error on held-out structures."""
    test = [labelled(a) for a in (training_set[0].copy(),)]
    test[0].rattle(0.1, seed=42)
    test = [labelled(test[0])]
    errors = []
    for n_sparse, frames in ((4, training_set[:2]), (40, training_set)):
        model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=n_sparse, sigma_energy=0.001,
                             sigma_force=0.01, e0="fit", random_state=1).fit(frames)
        errors.append(np.abs(model.predict_all(test)[0]["forces"] - test[0].get_forces()).mean())
    assert errors[1] < 0.7 * errors[0]
    assert errors[1] < 0.2 * np.abs(test[0].get_forces()).mean()


def test_sample_weights_and_config_type_sigmas(training_set):
    frames = [a.copy() for a in training_set]
    for k, a in enumerate(frames):
        a.calc = training_set[k].calc
        a.info["config_type"] = "bad" if k == 0 else "good"
    base = dict(descriptor=SOAP(["Si"], **SOAP_SETTINGS), n_sparse=20, e0=0.0, random_state=0)
    dropped = GAPRegressor(**base).fit(frames, sample_weight=[0, 1, 1, 1, 1, 1])
    subset = GAPRegressor(**base).fit(frames[1:])
    np.testing.assert_allclose(dropped.predict(frames), subset.predict(frames), rtol=1e-9)
    # a structure with a huge config_type sigma barely matters: garbage labels on it
    # change nothing, while with the default sigmas they do
    garbage = [a.copy() for a in frames]
    for a, b in zip(garbage, frames):
        a.calc = b.calc
    garbage[0].calc = SinglePointCalculator(garbage[0], energy=100.0, forces=np.ones((len(garbage[0]), 3)))
    huge = {"bad": {"energy": 1e6, "force": 1e6}}
    clean = GAPRegressor(**base, config_type_sigma=huge).fit(frames).predict(frames)
    spoiled = GAPRegressor(**base, config_type_sigma=huge).fit(garbage).predict(frames)
    np.testing.assert_allclose(spoiled, clean, atol=1e-5)
    spoiled_default = GAPRegressor(**base).fit(garbage).predict(frames)
    assert np.abs(spoiled_default - clean).max() > 1e-2
    # a config type that no structure has (a typo) is said, with the closest one
    with pytest.warns(UserWarning, match=r"no training structure has: 'godo' \(did you mean 'good'\?\).*"
                                         r"config types in the data: bad, good"):
        GAPRegressor(**base, config_type_sigma={"godo": {"energy": 0.1}}).fit(frames)


def test_e0_options(training_set):
    frames = training_set[:3]
    energies = np.array([a.get_potential_energy() for a in frames])
    n = np.array([len(a) for a in frames])
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=5, e0="average").fit(frames)
    assert model.e0_[14] == pytest.approx(energies.sum() / n.sum())
    isolated = Atoms("Si", positions=[[0, 0, 0]])
    isolated.calc = SinglePointCalculator(isolated, energy=-0.5, forces=np.zeros((1, 3)))
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=5, e0="isolated").fit(frames + [isolated])
    assert model.e0_ == {14: -0.5}
    # as plane-wave codes give it: one atom in a periodic box larger than the cutoff
    boxed = Atoms("Si", positions=[[0, 0, 0]], cell=[12.0, 12.0, 12.0], pbc=True)
    boxed.calc = SinglePointCalculator(boxed, energy=-0.7, forces=np.zeros((1, 3)))
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=5, e0="isolated").fit(frames + [boxed])
    assert model.e0_ == {14: -0.7}
    small_box = boxed.copy()
    small_box.cell = [SOAP_SETTINGS["r_cut"] - 0.5] * 3  # sees its own images: not isolated
    small_box.calc = SinglePointCalculator(small_box, energy=-0.7, forces=np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"no isolated atom \(a single-atom structure without a neighbour within "
                                         r"the cutoff, [0-9.]+ A\) with an energy for Si"):
        GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), e0="isolated").fit(frames + [small_box])
    # with another isolated-atom energy given its label cannot be fitted: said, with the structure
    with pytest.warns(UserWarning, match=r"1 isolated atoms .* e.g. structure 3 \(Si, energy -0.7 eV\).*"
                                         r"use e0='isolated'"):
        GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=5, e0=-0.3).fit(frames + [boxed])
    with pytest.raises(ValueError, match="e0 has no value"):
        GAPRegressor(SOAP(["Si", "Ge"], **SOAP_SETTINGS), e0={"Si": 0.0}).fit(frames)


def test_bad_training_data_gives_clear_errors(training_set):
    soap = SOAP(["Si"], **SOAP_SETTINGS)
    unlabelled = training_set[0].copy()
    with pytest.raises(StructureError, match=r"sigma_energy=0.01 but no training structure has field 'energy'"):
        GAPRegressor(soap, n_sparse=5, e0=0.0).fit([unlabelled])
    nan = training_set[0].copy()
    forces = training_set[0].get_forces().copy()
    forces[1, 2] = np.nan
    nan.calc = SinglePointCalculator(nan, energy=1.0, forces=forces)
    with pytest.raises(StructureError, match=r"structure 1 \(Si4\): field 'forces' contains NaN"):
        GAPRegressor(soap, n_sparse=5, e0=0.0).fit([training_set[1], nan])
    germanium = training_set[0].copy()
    germanium.symbols[0] = "Ge"
    with pytest.raises(StructureError, match=r"species \['Ge'\] not in"):
        GAPRegressor(soap, n_sparse=5, e0=0.0).fit([germanium])
    with pytest.raises(ValueError, match="sigma_force must be a positive number"):
        GAPRegressor(soap, sigma_force=-1.0).fit(training_set)
    with pytest.raises(ValueError, match="sparse_method must be one of"):
        GAPRegressor(soap, sparse_method="kmeans").fit(training_set)
    with pytest.raises(ValueError, match="zeta must be a positive integer"):
        GAPRegressor(soap, zeta=2.5).fit(training_set)


def test_too_few_environments_uses_all_distinct_ones(caplog):
    crystal = bulk("Si", "diamond", a=5.43)  # two identical environments
    crystal.calc = SinglePointCalculator(crystal, energy=-10.0, forces=np.zeros((2, 3)))
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=10, e0=0.0).fit([crystal])
    assert len(model.gp_.sparse) == 1
    assert "species Si: 10 sparse points asked for but only 1 distinct environments" in caplog.text


def test_sparsification_is_seeded_and_sensible():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    X[:100] *= 0.01  # a dense cluster and a spread-out cloud
    for method in ("cur", "fps", "random"):
        a = select_points(X, 20, method, random_state=3)
        b = select_points(X, 20, method, random_state=3)
        np.testing.assert_array_equal(a, b)
        assert len(np.unique(a)) == 20
    fps = fps_points(X, 20, random_state=0)
    assert np.count_nonzero(fps >= 100) >= 18  # farthest points avoid the cluster
    cur = cur_points(X, 20, random_state=0)
    assert np.count_nonzero(cur >= 100) >= 15  # high leverage in the cloud
    species = np.repeat([0, 1], 100)
    chosen = select_points(X, {0: 5, 1: 7}, "fps", species, random_state=0)
    assert np.count_nonzero(chosen < 100) == 5 and np.count_nonzero(chosen >= 100) == 7


def test_cur_with_more_features_than_rows_solves_the_small_eigenproblem(monkeypatch):
    """Five species with n_max 8 and l_max 6 have 5740 SOAP features for some hundred
    environments of each: the 5740^2 eigenproblem of X^T X took 144 s and 1.7 GB; X X^T
    gives the same leverages."""
    import gapy.sparsify

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 400)) * np.linspace(2.0, 0.1, 400)
    X[:10] *= 0.05
    eigenvalues, eigenvectors = np.linalg.eigh(X.T @ X)  # the leverage over the top 8, the long way
    top = eigenvectors[:, np.argsort(eigenvalues)[::-1][:8]] / np.sqrt(np.sort(eigenvalues)[::-1][:8])
    probability = ((X @ top) ** 2).sum(axis=1)
    expected = np.sort(np.random.default_rng(4).choice(30, size=8, replace=False, p=probability / probability.sum()))
    shapes = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(gapy.sparsify.np.linalg, "eigh", lambda matrix: shapes.append(matrix.shape) or eigh(matrix))
    np.testing.assert_array_equal(cur_points(X, 8, random_state=4), expected)
    assert shapes == [(30, 30)]


def test_incremental_qr_equals_direct_least_squares():
    rng = np.random.default_rng(1)
    m = 6
    kmm = rng.normal(size=(m, m))
    kmm = kmm @ kmm.T + m * np.eye(m)
    L = kmm_cholesky(kmm, 0.0)
    A, b = rng.normal(size=(50, m)), rng.normal(size=50)
    solver = IncrementalQR(L, block_rows=7)
    for start in range(0, 50, 5):
        solver.add(A[start:start + 5], b[start:start + 5])
    alpha = solver.solve()
    expected = np.linalg.solve(kmm + A.T @ A, A.T @ b)
    np.testing.assert_allclose(alpha, expected, rtol=1e-10)
    np.testing.assert_allclose(solver.r_factor.T @ solver.r_factor, kmm + A.T @ A, rtol=1e-10)
    with pytest.raises(np.linalg.LinAlgError, match="duplicate sparse points"):
        kmm_cholesky(np.ones((3, 3)), 0.0)


def test_force_and_stress_variances_equal_dense_gp_when_all_environments_are_sparse(training_set):
    """Trained on energies with every environment sparse, DTC is the exact GP for any
    linear functional: forces and stress too. The dense reference is built from finite
    differences of the kernel between structures, independently of the kernel rows."""
    soap = SOAP(["Si"], **SOAP_SETTINGS)
    frames = training_set[:3]
    delta2, zeta, sigma = 0.49, 2, 0.01
    model = GAPRegressor(soap, n_sparse=1000, sigma_energy=sigma, sigma_force=None, zeta=zeta,
                         delta=0.7, e0=0.0, sparse_jitter=1e-12, variance="dtc").fit(frames)

    q0 = soap.compute(Atoms("Si"))[0]

    def covariance(a, b):  # the kernel conditioned on a zero local energy of an isolated atom
        q, p = soap.compute(a), soap.compute(b)
        return delta2 * (((q @ p.T) ** zeta).sum() - ((q @ q0) ** zeta).sum() * ((p @ q0) ** zeta).sum())

    noise = np.diag([(sigma * np.sqrt(len(a))) ** 2 for a in frames])
    gram = np.array([[covariance(a, b) for b in frames] for a in frames]) + noise
    test = training_set[4].copy()
    test.rattle(0.05, seed=3)
    result = model.predict_all([test], return_std=True)[0]
    h = 1e-4
    for j, a in ((0, 0), (2, 1)):
        moved = []
        for sign in (1, -1):
            b = test.copy()
            b.positions[j, a] += sign * h
            moved.append(b)
        cross = np.array([-(covariance(moved[0], f) - covariance(moved[1], f)) / (2 * h) for f in frames])
        prior = (covariance(moved[0], moved[0]) - covariance(moved[0], moved[1])
                 - covariance(moved[1], moved[0]) + covariance(moved[1], moved[1])) / (4 * h * h)
        variance = prior - cross @ np.linalg.solve(gram, cross)
        np.testing.assert_allclose(result["forces_std"][j, a] ** 2, variance, rtol=1e-3)
    # stress component xx: derivative with respect to the strain eps_xx, divided by volume
    volume = test.get_volume()
    strained = []
    for sign in (1, -1):
        b = test.copy()
        deformation = np.eye(3)
        deformation[0, 0] += sign * h
        b.set_cell(test.cell.array @ deformation.T, scale_atoms=True)
        strained.append(b)
    cross = np.array([(covariance(strained[0], f) - covariance(strained[1], f)) / (2 * h) for f in frames]) / volume
    prior = (covariance(strained[0], strained[0]) - covariance(strained[0], strained[1])
             - covariance(strained[1], strained[0]) + covariance(strained[1], strained[1])) / (4 * h * h) / volume**2
    variance = prior - cross @ np.linalg.solve(gram, cross)
    np.testing.assert_allclose(result["stress_std"][0] ** 2, variance, rtol=1e-3)


def test_calibrate_scales_stds_to_the_held_out_errors(tmp_path):
    from gapy.metrics import compare, error_table

    frames = load_si("train")
    fit_set, calibration_set, test_set = frames[:12], frames[12:24], load_si("test")[::3]
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=40, sigma_energy=0.005, sigma_force=0.05,
                         sigma_virial=0.05, e0={"Si": -0.79}, random_state=0).fit(fit_set)
    before = model.predict_all(calibration_set, return_std=True)
    model.calibrate(calibration_set)
    after = model.predict_all(calibration_set, return_std=True)
    assert set(model.std_scale_) == {"energy", "forces", "stress"}
    for old, new in zip(before, after):
        assert new["energy"] == old["energy"]
        np.testing.assert_array_equal(new["forces"], old["forces"])
        np.testing.assert_allclose(new["forces_std"], old["forces_std"] * model.std_scale_["forces"])
        np.testing.assert_allclose(new["energies_std"], old["energies_std"] * model.std_scale_["energy"])
        assert new["stress_std"] == pytest.approx(old["stress_std"] * model.std_scale_["stress"])
    # on the calibration structures 95.45 % of the errors are now within two stds
    rows = {r["quantity"]: r for r in error_table(compare(calibration_set, after)) if r["config_type"] == "all"}
    for quantity in ("energy", "forces", "stress"):
        n_values = rows[quantity]["n_values"]
        assert abs(rows[quantity]["within_2std"] - 0.9545) <= 1.5 / n_values + 1e-12
    # and the stds describe unseen errors better than before
    uncalibrated = clone(model).fit(fit_set)
    test_before = {r["quantity"]: r for r in error_table(
        compare(test_set, uncalibrated.predict_all(test_set, return_std=True))) if r["config_type"] == "all"}
    test_after = {r["quantity"]: r for r in error_table(
        compare(test_set, model.predict_all(test_set, return_std=True))) if r["config_type"] == "all"}
    assert abs(np.log(test_after["forces"]["z_rms"])) < abs(np.log(test_before["forces"]["z_rms"]))
    assert abs(test_after["forces"]["within_2std"] - 0.9545) < abs(test_before["forces"]["within_2std"] - 0.9545)
    # only the calibrated variance kind is scaled
    other = model.predict_all(calibration_set[:1], return_std=True, variance="sor")[0]
    plain = uncalibrated.predict_all(calibration_set[:1], return_std=True, variance="sor")[0]
    np.testing.assert_allclose(other["forces_std"], plain["forces_std"], rtol=1e-10)
    # kept in model files; a refit forgets it; labels are required
    model.save(tmp_path / "calibrated.gapy")
    assert gapy.load(tmp_path / "calibrated.gapy").std_scale_ == model.std_scale_
    assert uncalibrated.std_scale_ == {}
    with pytest.raises(StructureError, match="labelled"):
        model.calibrate([Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]])])


def test_calibrating_on_training_structures_is_named(tmp_path):
    """calibrate on the training set shrank the stds silently (a QA pass: force factor x0.17,
    86 % of test errors within 2 std instead of 94 %): the model file keeps 64-bit keys of its
    training structures, and calibrate names those among its structures, after a save and
    load and for copies read back from a file."""
    import warnings

    from ase.io import read, write

    frames = load_si("train")
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=40, random_state=0)
    model.fit(frames[:12], sample_weight=[1.0] * 10 + [0.0] * 2)  # the last two left out
    model.save(tmp_path / "m.gapy")
    loaded = gapy.load(tmp_path / "m.gapy")
    write(tmp_path / "copies.xyz", frames[8:20])
    with pytest.warns(UserWarning, match=r"calibrate: 2 of the 12 structures are training structures of this model "
                                         r"\(structure 0 \(Si.*\), structure 1 \(Si.*\)\)"):
        loaded.calibrate(read(tmp_path / "copies.xyz", ":"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.calibrate(frames[10:22])  # left out of the fit, or never in it
        for damaged in ("not base64!", "AAAA", None):  # (a file edited by hand: nothing to compare with)
            model.provenance_["training"]["geometry_keys"] = damaged
            model.calibrate(frames[:12])
        model.provenance_["training"] = None
        model.calibrate(frames[:12])
    assert not [w for w in caught if "training structures of this model" in str(w.message)]


def test_version_1_model_files_still_load(fitted, tmp_path):
    path = tmp_path / "v2.gapy"
    fitted.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(str(arrays["header"]))
    header["format_version"] = 1
    del header["std_scale"]
    old = tmp_path / "v1.gapy"
    del arrays["header_sha256"]  # (from format version 3 on)
    np.savez(open(old, "wb"), **{**arrays, "header": np.array(json.dumps(header))})
    model = gapy.load(old)
    assert model.std_scale_ == {}
    np.testing.assert_array_equal(model.gp_.alpha, fitted.gp_.alpha)


def test_per_atom_force_weights(training_set):
    settings = dict(n_sparse=20, sigma_energy=0.002, sigma_force=0.05, e0=0.0, random_state=0)
    reference = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(training_set)
    # zero weight: an atom's forces are left out, so garbage there changes nothing
    damaged = []
    for original in training_set:
        atoms = original.copy()
        forces = original.get_forces().copy()
        forces[0] += 50.0
        atoms.calc = SinglePointCalculator(atoms, energy=original.get_potential_energy(), forces=forces,
                                           stress=original.get_stress())
        atoms.arrays["force_weights"] = np.r_[0.0, np.ones(len(atoms) - 1)]
        damaged.append(atoms)
    masked = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(damaged)
    unmasked = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(
        [_without_weights(a) for a in damaged])
    assert masked.n_observations_ == reference.n_observations_ - 3 * len(training_set)
    test = training_set[0].copy()
    test.rattle(0.05, seed=9)
    error = lambda model: np.abs(model.predict_all([test])[0]["forces"] - labelled(test).get_forces()).max()
    assert error(masked) < 0.2 * error(unmasked)
    # a uniform weight w is a force sigma divided by sqrt(w)
    weighted = [a.copy() for a in training_set]
    for atoms, original in zip(weighted, training_set):
        atoms.calc = original.calc
        atoms.arrays["force_weights"] = np.full(len(atoms), 4.0)
    by_weight = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(weighted)
    by_sigma = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **{**settings, "sigma_force": 0.025}).fit(training_set)
    np.testing.assert_allclose(by_weight.gp_.alpha, by_sigma.gp_.alpha, rtol=1e-8, atol=1e-10)
    # bad weights name the structure and the field
    bad = weighted[2].copy()
    bad.calc = weighted[2].calc
    bad.arrays["force_weights"] = np.r_[-1.0, np.ones(len(bad) - 1)]
    with pytest.raises(StructureError, match=r"structure 2 .*'force_weights' has negative weights \(atoms \[0\]\)"):
        GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(weighted[:2] + [bad])
    bad.arrays["force_weights"] = np.full(len(bad), np.nan)
    with pytest.raises(StructureError, match="'force_weights' contains NaN"):
        GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(weighted[:2] + [bad])


def _without_weights(atoms):
    copy = atoms.copy()
    copy.calc = atoms.calc
    del copy.arrays["force_weights"]
    return copy


def test_labels_under_another_name_are_not_silently_left_out(training_set):
    """QUIP writes forces as the 'force' array: fitting energies only would report success."""
    from ase.io import read, write
    import io as _io

    buffer = _io.StringIO()
    frames = []
    for atoms in training_set[:3]:
        copy = atoms.copy()
        copy.info["energy"] = atoms.get_potential_energy()
        copy.arrays["force"] = atoms.get_forces()
        frames.append(copy)
    write(buffer, frames, format="extxyz")
    buffer.seek(0)
    quip = read(buffer, ":", format="extxyz")
    settings = dict(n_sparse=5, e0=0.0)
    with pytest.raises(StructureError, match=r"3 structures have no forces under 'forces' but 'force'.*"
                                             r"forces_key='force'.*\(sigma_force=None fits without that kind\)"):
        GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(quip)
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), forces_key="force", **settings).fit(quip)
    assert model.label_counts_ == {"energy": 3, "forces": 3 * sum(len(a) for a in quip)}
    # a structure without any fitted label is named, not skipped in silence
    bare = training_set[3].copy()
    bare.calc = None
    with pytest.warns(UserWarning, match=r"1 training structures have no label to fit.*structure 3"):
        GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), forces_key="force", **settings).fit(quip + [bare])


def test_an_atom_without_neighbours_contributes_exactly_its_e0(training_set):
    """The kernel is conditioned on e(q0) = 0 for the isolated-atom descriptor q0."""
    isolated = Atoms("Si", pbc=False)
    isolated.calc = SinglePointCalculator(isolated, energy=-0.79)
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=20, e0="isolated", sigma_virial=0.05,
                         random_state=0).fit(training_set + [isolated])
    assert model.e0_ == {14: -0.79}
    (single,) = model.predict_all([Atoms("Si", pbc=False)], return_std=True)
    assert single["energy"] == pytest.approx(-0.79, abs=1e-12) and single["energy_std"] < 1e-6
    far = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 4.5]], pbc=False)  # beyond r_cut = 4 A
    (dimer,) = model.predict_all([far], return_std=True)
    assert dimer["energy"] == pytest.approx(2 * -0.79, abs=1e-12)
    np.testing.assert_allclose(dimer["forces"], 0.0, atol=1e-12)
    # smooth as the neighbour leaves the cutoff: energies just inside approach 2 e0
    inside = [model.predict([Atoms("Si2", positions=[[0, 0, 0], [0, 0, 4.0 - d]], pbc=False)])[0]
              for d in (1e-2, 1e-3)]
    assert abs(inside[1] - 2 * -0.79) < abs(inside[0] - 2 * -0.79) < 1e-3
    # in a crystal the local energies are not pinned
    bulk_energy = model.predict_all([training_set[0]], return_std=True)[0]
    assert bulk_energy["energies_std"].min() > 0


def test_an_estimated_e0_leaves_an_atom_without_neighbours_uncertain(training_set):
    """With e0 estimated from the structures ("average", "fit") the energy of a lone atom is
    not known: its std is the prior's (delta), not zero, as the atom leaves its neighbours too."""
    model = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=20, delta=0.7, e0="average",
                         random_state=0).fit(training_set)
    assert model.gp_.isolated is None
    (single,) = model.predict_all([Atoms("Si", pbc=False)], return_std=True)
    assert 0.5 * 0.7 < single["energy_std"] <= 0.7 + 1e-9
    stds = [model.predict_all([Atoms("Si2", positions=[[0, 0, 0], [0, 0, d]], pbc=False)], return_std=True)[0]
            ["energies_std"].min() for d in (2.4, 3.5, 3.99, 4.5)]
    assert min(stds) > 0.5 * 0.7
    # given isolated-atom energies pin it (the conditioned kernel), as test above
    pinned = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=20, delta=0.7, e0=-0.79,
                          random_state=0).fit(training_set)
    assert pinned.gp_.isolated is not None
    assert pinned.predict_all([Atoms("Si", pbc=False)], return_std=True)[0]["energy_std"] < 1e-6


def test_models_without_isolated_descriptors_load_with_the_plain_kernel(fitted, training_set, tmp_path):
    """Files written before the conditioning (no 'isolated' array) keep their predictions."""
    path = tmp_path / "new.gapy"
    fitted.save(path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k not in ("isolated", "header_sha256")}
    header = json.loads(str(arrays["header"]))
    header["format_version"] = 2
    del header["checksums"]["isolated"]
    old = tmp_path / "old.gapy"
    np.savez(open(old, "wb"), **{**arrays, "header": np.array(json.dumps(header))})
    model = gapy.load(old)
    assert model.gp_.isolated is None
    values = model.descriptor_.compute(training_set[0])
    plain = model.gp_.delta**2 * (values @ model.gp_.sparse.T) ** model.gp_.zeta
    expected = plain @ model.gp_.alpha + model.e0_[14]
    np.testing.assert_allclose(model.predict_all([training_set[0]])[0]["energies"], expected, rtol=1e-12)


def test_zero_weight_structures_do_not_enter_e0(training_set):
    frames = training_set[:3]
    outlier = labelled(training_set[3])
    outlier.calc.results["energy"] += 1000.0
    settings = dict(n_sparse=10, e0="average", random_state=0)
    weighted = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(
        frames + [outlier], sample_weight=[1, 1, 1, 0])
    plain = GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **settings).fit(frames)
    assert weighted.e0_ == plain.e0_


def test_negative_variances_are_clipped_with_a_warning(fitted, training_set):
    gp = fitted.gp_
    values = fitted.descriptor_.compute(training_set[0])
    rows = gp.rows(values, np.zeros(len(values), int))["energies"]
    with pytest.warns(RuntimeWarning, match="were negative"):
        variance = gp.variance(rows, "local", prior=np.zeros(len(rows)))  # a prior that is too small
    assert np.all(variance == 0.0)


def test_the_negative_variance_warning_names_the_structure(fitted, training_set, monkeypatch):
    import gapy.gp.sparse_gp

    monkeypatch.setattr(gapy.gp.sparse_gp, "NEGATIVE_VARIANCE_TOLERANCE", -1.0)  # every variance "negative"
    frames = training_set[:2]
    for std in ("energies", "forces"):
        with pytest.warns(RuntimeWarning, match=r"^structure 1 \(Si\d+.*\): \d+ predicted variances were negative"):
            fitted.predict_all(frames, return_std=(std,), variance="dtc")


@pytest.mark.parametrize("kind", ["sor", "dtc", "local"])
def test_blockwise_force_and_stress_stds_equal_whole_structure_rows(training_set, kind, monkeypatch):
    """Force and stress stds are computed one block of atoms at a time (memory of a block);
    on a two-species cell cut into many blocks they equal the variances of the rows and
    priors of the whole structure at once."""
    frames = []
    for atoms in training_set[:4]:
        atoms = atoms.copy()
        atoms.symbols[::3] = "Ge"
        frames.append(labelled(atoms))
    model = GAPRegressor(SOAP(["Si", "Ge"], **SOAP_SETTINGS), n_sparse=15, sigma_energy=0.002,
                         sigma_force=0.02, sigma_virial=0.02, e0=0.0, random_state=0).fit(frames)
    test = frames[0].repeat((2, 2, 2))
    test.rattle(0.05, seed=7)
    monkeypatch.setattr(gapy.descriptors.soap, "GRADIENT_BLOCK_BYTES", 1)  # the smallest blocks: 8 atoms
    assert len(gapy.structures.spatial_blocks(test, 8)) >= 4
    result = model.predict_all([test], return_std=True, variance=kind)[0]

    gp, soap = model.gp_, model.descriptor_
    values, grad = soap.compute(test, gradients=True)
    species = soap.species_indices(test)
    rows = gp.rows(values, species, grad)
    priors = gp.prior_variances(values, species, grad, ["forces", "virial"]) if kind != "sor" else {}
    forces = gp.variance(rows["forces"].reshape(-1, len(gp.alpha)), kind, priors.get("forces"))
    virial = gp.variance(rows["virial"], kind, priors.get("virial"))
    np.testing.assert_allclose(result["forces_std"], np.sqrt(forces).reshape(-1, 3), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(result["stress_std"], np.sqrt(virial) / test.get_volume(), rtol=1e-8)
    assert result["forces_std"].max() > 0


@pytest.mark.parametrize("kind", ["sor", "dtc", "local"])
def test_mixed_precision_force_stds_agree_with_double_precision(fitted, training_set, kind, monkeypatch):
    """``force_std_precision="mixed"`` (float32 residual of the row product) stays within
    the documented 1 % of the float64 force stds, on near, strained and far structures;
    energy and stress stds do not change."""
    structures = []
    for scale, noise in ((1.0, 0.05), (1.04, 0.05), (0.9, 0.05), (1.0, 0.4)):
        atoms = training_set[2].repeat((2, 2, 2))
        atoms.set_cell(atoms.cell * scale, scale_atoms=True)
        atoms.rattle(noise, seed=5)
        structures.append(atoms)
    double = fitted.predict_all(structures, return_std=True, variance=kind)
    monkeypatch.setattr(fitted, "force_std_precision", "mixed")  # GAPRegressor(force_std_precision="mixed")
    mixed = fitted.predict_all(structures, return_std=True, variance=kind)
    errors = []
    for exact, approximate in zip(double, mixed):
        assert exact["forces_std"].min() > 0
        errors.append(np.abs(approximate["forces_std"] - exact["forces_std"]) / exact["forces_std"])
        np.testing.assert_array_equal(approximate["forces"], exact["forces"])
        np.testing.assert_allclose(approximate["stress_std"], exact["stress_std"], rtol=1e-10)
        np.testing.assert_allclose(approximate["energy_std"], exact["energy_std"], rtol=1e-10)
    errors = np.concatenate(errors)
    assert errors.max() < 1e-2
    assert errors.max() > 1e-9  # the float32 path was taken


def test_split_points_and_force_std_precision_checks(fitted, monkeypatch):
    from gapy.gp.design import split_points

    points = fitted.gp_.sparse
    split = split_points(points, tolerance=0.1)
    assert split.residual.dtype == np.float32 and split.basis.dtype == np.float64
    assert np.linalg.norm(split.residual) <= 0.1 * np.linalg.norm(points)
    np.testing.assert_allclose(split.coefficients.T @ split.basis + split.residual, points, atol=1e-6)
    np.testing.assert_allclose(split.basis @ split.basis.T, np.eye(len(split.basis)), atol=1e-12)
    assert len(split_points(points, tolerance=0.0).basis) == min(points.shape)  # residual zero
    monkeypatch.setattr(fitted, "force_std_precision", "single")
    with pytest.raises(ValueError, match="force_std_precision must be one of"):
        fitted.predict_all(bulk("Si", cubic=True), return_std=["forces"])
    with pytest.raises(ValueError, match="force_std_precision must be one of"):
        fitted._check_parameters()


def test_a_species_without_training_environments_is_said(training_set):
    with pytest.warns(UserWarning, match=r"species Ge of the descriptor appear in no training structure: the model "
                                         r"predicts their atoms from e0 \(Ge -?\d.* eV, which no data of theirs set\) "
                                         r"and the prior alone, and their stds, .* need not cover the errors"):
        model = GAPRegressor(SOAP(["Si", "Ge"], **SOAP_SETTINGS), n_sparse=5).fit(training_set[:2])
    assert model.n_environments_ == {"Si": sum(len(a) for a in training_set[:2])}


def test_a_rare_species_is_named_with_its_counts():
    """Cu-Ni with Au in 6 atoms of 4 of 50 structures (EMT): test structures with one Au atom were
    0.5-2.8 eV off at 2-12 predicted stds, and nothing said that Au was barely in the data."""

    frames = []
    for k in range(10):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.1, seed=k)
        if k in (3, 7):
            atoms.symbols[0] = "Ge"
        frames.append(labelled(atoms))
    model = GAPRegressor(SOAP(["Si", "Ge"], **SOAP_SETTINGS), n_sparse=5)
    with pytest.warns(RuntimeWarning, match=r"few atoms of some species in the training data \(Ge: 2 atoms in 2 of "
                                            r"the 10 structures; Si: 78\)"):
        model.fit(frames)
    for atoms in frames:  # one in eight atoms, in every structure: not rare
        atoms.symbols[1] = "Ge"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="few atoms")
        model.fit([labelled(atoms) for atoms in frames])


def test_an_absurd_energy_is_named_by_the_python_fit(training_set):
    from gapy.labels import EnergyOutlierWarning, EnergyResidualWarning

    frames = [a.copy() for a in training_set[:6]]
    for k, (atoms, original) in enumerate(zip(frames, training_set)):
        energy = 1e6 if k == 4 else original.get_potential_energy()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=original.get_forces())
    with pytest.warns(EnergyOutlierWarning, match=r"of 1 structure lies far from the others'.*structure 4 \("):
        # the fit misses every energy (e0 is shifted) and that one far more: named after the fit too
        with pytest.warns(EnergyResidualWarning, match=r"as a whole .*; 1 training structure far more: structure 4"):
            GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), n_sparse=5).fit(frames)

