"""Coverage maps (PCA, kernel distances), GDF weights, the coverage plot and ``gapy coverage``."""

import csv

import numpy as np
import pytest
from ase.build import bulk
from sklearn.decomposition import PCA

import gapy.coverage
from gapy import SOAP, GAPRegressor, StructureError
from gapy.cli import main
from gapy.coverage import (CoverageMap, density_weights, gaussian_density, gdf_weights, nearest_distance,
                           structure_weights)
from gapy.datasets import load_si
from gapy.plots import coverage_plot


@pytest.fixture(scope="module")
def soap():
    return SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)


@pytest.fixture(scope="module")
def train():
    """Seven structures (all four config_types) of the bundled training data."""
    return load_si("train")[::6]


@pytest.fixture(scope="module")
def fitted(soap, train):
    return CoverageMap(soap, n_components=3).fit(train)


def brute_force_distance(values, reference, zeta, exclude_self=False):
    kernel = (values @ reference.T) ** zeta
    squared = np.diag((values @ values.T) ** zeta)[:, None] + np.diag((reference @ reference.T) ** zeta) - 2 * kernel
    if exclude_self:
        np.fill_diagonal(squared, np.inf)
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


def test_pca_of_training_frames_is_sklearn_pca(soap, train, fitted):
    values = np.concatenate(soap.compute_many(train))
    expected = PCA(n_components=3).fit(values)
    got = fitted.embedding_
    reference = expected.transform(values)
    signs = np.sign(np.sum(got * reference, axis=0))  # components are defined up to a sign
    np.testing.assert_allclose(got * signs, reference, atol=1e-8)
    np.testing.assert_allclose(fitted.pca_.explained_variance_ratio_, expected.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(fitted.transform(train), got, atol=1e-12)
    assert got.shape == (sum(len(a) for a in train), 3)
    assert fitted.row_index_.tolist()[:2] == [[0, 0], [0, 1]]
    assert set(fitted.config_type_) == {"AIMD-NVT", "Elastic", "Surface", "Vacancy"}


def test_training_structure_has_distance_zero_and_a_distorted_one_more(soap, train, fitted):
    seen = fitted.distance(train[3:4])
    assert seen.shape == (len(train[3]),)
    np.testing.assert_allclose(seen, 0.0, atol=1e-6)
    distorted = train[3].copy()
    distorted.set_cell(distorted.cell * 0.85, scale_atoms=True)
    distorted.rattle(0.2, seed=4)
    far = fitted.distance([distorted])
    assert far.min() > 0.05 and far.max() > fitted.threshold_
    # leave-one-out training distances: brute force over the whole (small) matrix
    values = np.concatenate(soap.compute_many(train))
    np.testing.assert_allclose(fitted.train_distance_, brute_force_distance(values, values, 4, True), atol=1e-6)
    assert fitted.threshold_ == pytest.approx(fitted.train_distance_.max())


def test_nearest_distance_in_chunks_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 5))
    values /= np.linalg.norm(values, axis=1, keepdims=True)
    reference = values[:12] + 0.01 * rng.normal(size=(12, 5))
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    species, reference_species = np.arange(30) % 2, np.arange(12) % 2
    monkeypatch.setattr(gapy.coverage, "CHUNK_ELEMENTS", 7)  # chunks of one row
    distance, nearest = nearest_distance(values, species, reference, reference_species, zeta=2)
    for s in (0, 1):
        rows, columns = species == s, reference_species == s
        np.testing.assert_allclose(distance[rows], brute_force_distance(values[rows], reference[columns], 2))
        assert np.all(reference_species[nearest[rows]] == s)
    # a species without reference rows has no nearest point
    distance, nearest = nearest_distance(values, np.full(30, 5), reference, reference_species)
    assert np.all(np.isinf(distance)) and np.all(nearest == -1)


def test_structure_level_and_species_filter(soap, train):
    coverage = CoverageMap(soap, level="structures", species="Si").fit(train)
    assert coverage.embedding_.shape == (len(train), 2)
    assert coverage.row_index_[:, 1].tolist() == [-1] * len(train)
    np.testing.assert_allclose(coverage.distance(train), 0.0, atol=1e-6)
    values = soap.compute(train[0])
    mean = np.mean(values / np.linalg.norm(values, axis=1, keepdims=True), axis=0)
    np.testing.assert_allclose(coverage.transform(train[:1]), coverage.pca_.transform([mean / np.linalg.norm(mean)]))
    assert coverage.row_index(train[:2]).tolist() == [[0, -1], [1, -1]]


def test_from_model_uses_the_model_descriptor_and_zeta(soap, train):
    model = GAPRegressor(soap, zeta=2, n_sparse=5, sigma_force=None, random_state=0).fit(train[:3])
    coverage = CoverageMap.from_model(model, n_components=2).fit(train[:3])
    assert coverage.descriptor_ == soap and coverage.zeta == 2


def duplicates_and_unique():
    """Three copies of perfect diamond (24 identical environments) and one rattled cell."""
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    rattled = crystal.copy()
    rattled.rattle(0.15, seed=2)
    rattled.info["config_type"] = "unique"
    return [crystal.copy() for _ in range(3)] + [rattled]


def test_gdf_duplicated_environments_weigh_less_and_mean_is_one(soap):
    frames = duplicates_and_unique()
    weights, density = gdf_weights(frames, soap, sigma=0.05, max_weight=None, return_density=True)
    assert [w.shape for w in weights] == [(8,)] * 4
    everything = np.concatenate(weights)
    assert everything.mean() == pytest.approx(1.0)
    assert weights[0].max() < weights[3].min()  # every duplicated atom below every unique one
    np.testing.assert_allclose(weights[0], weights[1])
    assert np.all(density[0] > density[3])
    # the structure weights follow, with mean 1
    per_structure = structure_weights(weights)
    assert per_structure.mean() == pytest.approx(1.0) and per_structure[3] > per_structure[0]
    # clipping narrows the range, softening with power < 1 too
    clipped = np.concatenate(gdf_weights(frames, soap, sigma=0.05, max_weight=1.5))
    soft = np.concatenate(gdf_weights(frames, soap, sigma=0.05, power=0.5, max_weight=None))
    assert clipped.mean() == pytest.approx(1.0) and soft.mean() == pytest.approx(1.0)
    assert np.ptp(clipped) < np.ptp(everything) and np.ptp(soft) < np.ptp(everything)


def test_gdf_weights_follow_atom_permutation(soap, train):
    frames = [atoms.copy() for atoms in train[:4]]
    weights = gdf_weights(frames, soap, sigma=0.05)
    order = np.random.default_rng(1).permutation(len(frames[2]))
    frames[2] = frames[2][order]
    permuted = gdf_weights(frames, soap, sigma=0.05)
    np.testing.assert_allclose(permuted[2], weights[2][order], rtol=1e-10)
    for k in (0, 1, 3):
        np.testing.assert_allclose(permuted[k], weights[k], rtol=1e-10)


def test_gdf_weights_are_per_species(triclinic_sige):
    soap = SOAP(["Si", "Ge"], r_cut=4.0, n_max=3, l_max=2)
    other = triclinic_sige.copy()
    other.rattle(0.2, seed=5)
    weights = np.concatenate(gdf_weights([triclinic_sige, other], soap, sigma=0.05))
    numbers = np.concatenate([triclinic_sige.numbers, other.numbers])
    for z in (14, 32):
        assert weights[numbers == z].mean() == pytest.approx(1.0)


def test_structure_weights_feed_gap_fit(soap, train):
    frames = train[:4]
    weights = structure_weights(gdf_weights(frames, soap, sigma=0.05))
    assert weights.shape == (4,) and not np.allclose(weights, 1.0)
    settings = dict(n_sparse=10, sigma_energy=0.01, sigma_force=0.1, e0={"Si": -0.79}, random_state=0)
    weighted = GAPRegressor(soap, **settings).fit(frames, sample_weight=weights)
    plain = GAPRegressor(soap, **settings).fit(frames)
    assert not np.allclose(weighted.predict(frames), plain.predict(frames))


@pytest.mark.parametrize("call, error, match", [
    (lambda s, f: gdf_weights(f, s, sigma=0.0), ValueError, "sigma must be a positive number, got 0.0"),
    (lambda s, f: gdf_weights(f, s, sigma=-1), ValueError, "sigma must be a positive"),
    (lambda s, f: gdf_weights(f, s, power=-1.0), ValueError, "power must be"),
    (lambda s, f: gdf_weights(f, s, max_weight=0.5), ValueError, "max_weight must be"),
    (lambda s, f: gdf_weights([], s), ValueError, "no structures given"),
    (lambda s, f: CoverageMap(s).fit([]), ValueError, "no structures given"),
    (lambda s, f: CoverageMap(s, level="molecules").fit(f), ValueError, "level must be one of"),
    (lambda s, f: CoverageMap(s, species="Ge").fit(f), ValueError, "species='Ge' is not among"),
    (lambda s, f: CoverageMap(s, n_components=0).fit(f), ValueError, "n_components must be"),
    (lambda s, f: CoverageMap(s, max_reference=1).fit(f), ValueError, "max_reference must be"),
    (lambda s, f: CoverageMap(s, level="structures", n_components=3).fit(f[:2]), ValueError, "too few"),
    (lambda s, f: CoverageMap(s).transform(f), Exception, "not fitted"),
    (lambda s, f: structure_weights([np.array([1.0]), np.array([])]), ValueError, r"atom_weights\[1\]"),
])
def test_bad_input_is_reported_clearly(soap, train, call, error, match):
    with pytest.raises(error, match=match):
        call(soap, train[:3])


def test_unknown_species_names_the_structure(soap, train):
    frames = [train[0], bulk("Ge", "diamond", a=5.66)]
    with pytest.raises(StructureError, match=r"structure 1 \(Ge2\): species \['Ge'\] not in"):
        gdf_weights(frames, soap)
    with pytest.raises(StructureError, match=r"structure 1 \(Ge2\)"):
        CoverageMap(soap).fit(frames)
    fitted = CoverageMap(soap).fit(train[:2])
    with pytest.raises(StructureError, match=r"structure 1 \(Ge2\)"):
        fitted.distance(frames)


def test_coverage_plot_checks_shapes(tmp_path):
    with pytest.raises(ValueError, match="train must have shape"):
        coverage_plot(np.zeros((3, 1)), tmp_path / "a.png")
    with pytest.raises(ValueError, match="values has shape"):
        coverage_plot(np.zeros((3, 2)), tmp_path / "a.png", new=np.zeros((2, 2)), values=np.zeros(3))
    coverage_plot(np.random.default_rng(0).normal(size=(5, 2)), tmp_path / "b.png", config_type=list("aabbc"),
                  new=np.zeros((2, 2)), values=np.array([0.1, np.inf]), explained_variance_ratio=[0.7, 0.2])
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


SMALL = ["--r-cut", "4.0", "--n-max", "4", "--l-max", "3"]


def test_cli_writes_map_table_and_summary(tmp_path, capsys, soap, train):
    from ase.io import write

    new = load_si("test")[::8]
    write(tmp_path / "train.xyz", train, format="extxyz")
    write(tmp_path / "new.xyz", new, format="extxyz")
    out = tmp_path / "report"
    assert main(["coverage", str(tmp_path / "train.xyz"), str(tmp_path / "new.xyz"), "-o", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "beyond the largest training nearest-neighbour distance" in printed
    assert (out / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "coverage.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(len(a) for a in train) + sum(len(a) for a in new)
    assert set(rows[0]) == {"set", "structure", "atom", "species", "config_type", "pc1", "pc2", "distance",
                            "energy_std"}
    new_rows = [r for r in rows if r["set"] == "new"]
    expected = CoverageMap(soap).fit(train).distance(new)
    np.testing.assert_allclose([float(r["distance"]) for r in new_rows], expected, rtol=1e-5, atol=1e-7)

    # descriptor and zeta from a model file; SOAP flags with --model are refused
    model = GAPRegressor(soap, zeta=2, n_sparse=5, sigma_force=None, random_state=0).fit(train[:3])
    model.save(tmp_path / "m.gapy")
    argv = ["coverage", str(tmp_path / "train.xyz"), "--model", str(tmp_path / "m.gapy"), "-o", str(tmp_path / "m")]
    assert main([*argv, "--level", "structures"]) == 0
    assert "zeta=2" in capsys.readouterr().out
    assert (tmp_path / "m" / "coverage.csv").is_file()
    assert main([*argv, "--r-cut", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give either --model or SOAP settings (--r-cut)" in err


def test_subsampled_reference_is_seeded_and_gives_upper_bounds(soap, train, fitted):
    small = CoverageMap(soap, n_components=3, max_reference=40, random_state=3).fit(train)
    assert len(small.reference_) == 40
    again = CoverageMap(soap, n_components=3, max_reference=40, random_state=3).fit(train)
    np.testing.assert_array_equal(small.reference_, again.reference_)
    new = load_si("test")[:2]
    assert np.all(small.distance(new) >= fitted.distance(new) - 1e-12)
    weights = np.concatenate(gdf_weights(train, soap, sigma=0.05, max_reference=30, random_state=0))
    assert np.all(np.isfinite(weights)) and weights.mean() == pytest.approx(1.0)
    same = np.concatenate(gdf_weights(train, soap, sigma=0.05, max_reference=30, random_state=0))
    np.testing.assert_array_equal(weights, same)


def test_gaussian_density_in_chunks_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(25, 4))
    species = np.arange(25) % 3
    monkeypatch.setattr(gapy.coverage, "CHUNK_ELEMENTS", 5)
    density = gaussian_density(values, species, sigma=0.7)
    for s in range(3):
        x = values[species == s]
        squared = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
        np.testing.assert_allclose(density[species == s], np.exp(-squared / (2 * 0.7**2)).mean(axis=1))
    weights = density_weights(density, species, max_weight=None)
    for s in range(3):
        expected = 1 / density[species == s]
        np.testing.assert_allclose(weights[species == s], expected / expected.mean())
    with pytest.raises(ValueError, match="density must be"):
        density_weights(np.array([1.0, 0.0]))


def _cu(seed, gold=()):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[list(gold)] = "Au"
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_center_species_without_atoms_is_named(tmp_path, capsys):
    from ase.io import write

    cuau = SOAP(["Cu", "Au"], r_cut=4.0, n_max=3, l_max=2)
    copper, mixed = [_cu(k) for k in range(3)], [_cu(k, gold=[1]) for k in range(3)]
    with pytest.raises(StructureError, match=r"no atom of species Au \(species='Au'\) in the 3 training "
                                             r"structures: they have \['Cu'\]"):
        CoverageMap(cuau, species="Au").fit(copper)
    fitted = CoverageMap(cuau, species="Au").fit(copper + mixed)
    for level in ("atoms", "structures"):  # was sklearn's "Found array with 0 sample(s)"
        with pytest.raises(StructureError, match=r"no atom of species Au .* in the 3 structures: they have \['Cu'\]"):
            CoverageMap(cuau, species="Au", level=level).fit(mixed).transform(copper)
    assert fitted.distance(mixed).shape == (3,)

    write(tmp_path / "copper.xyz", copper, format="extxyz")
    write(tmp_path / "mixed.xyz", mixed, format="extxyz")
    small = ["--r-cut", "4.0", "--n-max", "3", "--l-max", "2"]
    cases = [
        (["mixed.xyz", "copper.xyz", "--center", "Au"], "copper.xyz: none of its 3 structures contains Au (to map "
                                                       "with --center Au); they have ['Cu']"),
        (["copper.xyz", "--center", "Au", "--species", "Cu,Au"], "copper.xyz: none of its 3 structures contains Au"),
        (["mixed.xyz", "--center", "Ag", "--species", "Cu,Au"], "mixed.xyz: none of its 3 structures contains Ag"),
        (["mixed.xyz", "--center", "Au", "--species", "Cu"], "--center Au: the descriptor (--species) has no "
                                                             "species Au; its species are ['Cu']"),
    ]
    for arguments, message in cases:
        argv = ["coverage", *[str(tmp_path / a) if a.endswith(".xyz") else a for a in arguments], *small]
        assert main([*argv, "-o", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out" / "coverage.csv").exists()


def test_cli_unknown_species_of_the_model_advises(tmp_path, capsys):
    from ase.io import write

    from gapy.sampling import label_structures
    from ase.calculators.emt import EMT

    train = label_structures([_cu(k) for k in range(3)], EMT())
    GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10, random_state=0).fit(train).save(
        tmp_path / "cu.gapy")
    alloy = _cu(5, gold=[2])
    alloy.info["config_type"] = "alloy"
    write(tmp_path / "train.xyz", train, format="extxyz")
    write(tmp_path / "new.xyz", [_cu(4), alloy], format="extxyz")
    for files in (["train.xyz", "new.xyz"], ["new.xyz"]):
        argv = ["coverage", *[str(tmp_path / f) for f in files], "--model", str(tmp_path / "cu.gapy"),
                "-o", str(tmp_path / "out")]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert ("new.xyz: structure 1 (AuCu3, config_type=alloy) has species ['Au'] that the model does not know "
                "(it was fitted for ['Cu']): refit it with 'gapy fit'") in err


def test_cli_default_output_is_not_named_coverage(tmp_path, monkeypatch, train):
    """A directory named 'coverage' where Python runs hides the coverage package that numba
    imports ('import gapy' then fails): the default output has another name."""
    from ase.io import write

    monkeypatch.chdir(tmp_path)
    write("train.xyz", train[:4], format="extxyz")
    assert main(["coverage", "train.xyz", *SMALL]) == 0
    assert (tmp_path / "coverage-map" / "coverage.csv").is_file() and not (tmp_path / "coverage").exists()
