"""Fits that stream their structures: from a file, an ASE database or an iterator, with a
bounded sample of sparse-point candidates, refusing changed or malformed files, and on a
dask cluster whose tasks read their own structures (and survive a killed worker)."""

import os
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from ase.io import read, write

from gapy import SOAP, ClusterError, DataFileError, GAPRegressor
from gapy.datasets import load_si
from gapy.io import FileSource, IteratorSource, frame_source
from gapy.sparsify import CandidateReservoir

SOAP_SMALL = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
N_FRAMES = 12


@pytest.fixture(scope="module")
def frames():
    return load_si("train")[:N_FRAMES]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp("data") / "train.xyz"
    write(path, frames)
    return path


def model(**params):
    return GAPRegressor(SOAP_SMALL, n_sparse=30, **params)


def assert_same_structures(a, b):
    assert (a.numbers == b.numbers).all() and np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.cell.array, b.cell.array) and (a.pbc == b.pbc).all()
    assert a.info == b.info
    for key in ("energy", "forces", "stress"):
        assert np.array_equal(a.calc.results[key], b.calc.results[key])


# ------------------------------------------------------------------ sources


def test_extxyz_source_reads_what_ase_reads_and_skips_unparsed_frames(train_file):
    expected = read(train_file, ":")
    source = frame_source(str(train_file))
    assert source.n_frames is None
    got = list(source)
    assert len(source) == N_FRAMES and [k for k, _ in got] == list(range(N_FRAMES))
    for (_, a), b in zip(got, expected):
        assert_same_structures(a, b)
    assert [k for k, _ in source.structures([7, 2])] == [2, 7]
    ref = source.reference(7)  # what a dask task carries: path and position
    assert_same_structures(ref.load(), expected[7])


def test_iterator_source_replays_from_its_spill_file(frames):
    source = IteratorSource(a for a in frames[:3])
    first = [k for k, _ in source]
    replay = list(source)
    assert first == [0, 1, 2] and len(source) == 3
    for (_, a), b in zip(replay, frames):
        assert_same_structures(a, b)
    source.close()
    with pytest.raises(TypeError, match="element 1|structure 1"):
        list(IteratorSource(iter([frames[0], "not atoms"])))


# ------------------------------------------------------------------ same model


def test_fit_from_a_path_an_iterator_or_a_database_equals_the_list(frames, train_file, tmp_path):
    from ase.db import connect

    database = tmp_path / "train.db"
    with connect(database) as db:
        for atoms in frames:
            db.write(atoms, config_type=atoms.info["config_type"])
    weights = np.linspace(0.0, 2.0, N_FRAMES)
    for params, sources in ((dict(), (str(train_file), iter(read(train_file, ":")), database)),
                            (dict(e0="fit", sigma_virial=0.1, sparse_method="fps"), (train_file,))):
        reference = model(**params).fit(frames, sample_weight=weights)
        for data in sources:
            streamed = model(**params).fit(data, sample_weight=weights)
            np.testing.assert_array_equal(streamed.gp_.alpha, reference.gp_.alpha)
            np.testing.assert_array_equal(streamed.gp_.sparse, reference.gp_.sparse)
            assert streamed.e0_ == reference.e0_ and streamed.label_counts_ == reference.label_counts_
    assert reference.n_environments_ == {"Si": sum(len(a) for a in frames[1:])}  # weight 0 left out
    # below the cap the choice is among all environments, exactly as without one
    unlimited = model(sparse_candidates=None).fit(frames)
    np.testing.assert_array_equal(unlimited.gp_.alpha, model().fit(frames).gp_.alpha)


def test_the_command_line_reads_a_database_as_it_is_streamed(frames, tmp_path):
    """In memory (gapy's commands below 100 MiB) ASE's reader dropped the rows' key-value pairs
    and data: config types and labels kept there were found only with --stream."""
    from ase.db import connect

    from gapy.cli._common import read_frames

    database = tmp_path / "train.db"
    with connect(database) as db:
        for atoms in frames[:4]:
            db.write(atoms, config_type=atoms.info["config_type"], data={"REF_forces": atoms.get_forces()})
    streamed = [atoms for _, atoms in FileSource(database).structures()]
    in_memory = read_frames(database)
    assert [a.info["config_type"] for a in in_memory] == [a.info["config_type"] for a in frames[:4]]
    for a, b, original in zip(in_memory, streamed, frames):
        assert_same_structures(a, b)
        np.testing.assert_array_equal(a.arrays["REF_forces"], original.get_forces())


def test_above_the_cap_the_candidates_are_a_seeded_sample(frames, train_file):
    capped = dict(sparse_candidates=200)
    a = model(**capped).fit(frames)
    assert a.n_environments_ == {"Si": sum(len(atoms) for atoms in frames)} and len(a.gp_.sparse) == 30
    np.testing.assert_array_equal(model(**capped).fit(str(train_file)).gp_.alpha, a.gp_.alpha)
    other_seed = model(**capped, random_state=1).fit(frames)
    assert not np.array_equal(other_seed.gp_.sparse, a.gp_.sparse)
    assert not np.array_equal(model().fit(frames).gp_.sparse, a.gp_.sparse)  # not the full CUR choice
    # the sample does not depend on the order in which the structures arrive
    rng = np.random.default_rng(0)
    groups = [(g, rng.integers(0, 2, size=30), rng.normal(size=(30, 4))) for g in range(20)]
    results = []
    for order in (range(20), reversed(range(20))):
        reservoir = CandidateReservoir(cap=50, seed=3)
        for g in order:
            reservoir.add(*groups[g])
        results.append(reservoir.result())
    for x, y in zip(*results[:2]):
        if isinstance(x, dict):
            assert x == y == {0: sum(np.count_nonzero(s == 0) for _, s, _ in groups),
                              1: sum(np.count_nonzero(s == 1) for _, s, _ in groups)}
        else:
            np.testing.assert_array_equal(x, y)
    assert len(results[0][0]) == 100 and np.all(np.diff(results[0][2][:, 0]) >= 0)
    # the rows kept are the 50 of smallest key of each species, in (group, row) order
    keys = np.concatenate([np.random.default_rng([3, g]).random(30) for g in range(20)])
    species = np.concatenate([s for _, s, _ in groups])
    values = np.concatenate([v for _, _, v in groups])
    expected = np.concatenate([np.sort(np.flatnonzero(species == s)[np.argsort(keys[species == s])[:50]])
                               for s in (0, 1)])
    np.testing.assert_array_equal(results[0][0], values[np.sort(expected)])


def test_sparse_candidates_is_checked(frames):
    with pytest.raises(ValueError, match="sparse_candidates=10 is smaller than n_sparse=30"):
        model(sparse_candidates=10).fit(frames)
    with pytest.raises(TypeError, match="sparse_candidates must be a positive integer or None"):
        model(sparse_candidates="many").fit(frames)
    with pytest.raises(ValueError, match="sparse_candidates must be a positive integer or None"):
        model(sparse_candidates=0).fit(frames)


# ------------------------------------------------------------------ bad input


class ChangingSource(FileSource):
    """Rewrites its file when pass ``when`` starts (2: between the passes) or after the
    first structure of pass 2 (``when="during"``)."""

    def __init__(self, path, change, when):
        super().__init__(path)
        self.change, self.when, self.passes = change, when, 0

    def structures(self, indices=None):
        self.passes += 1
        if self.passes == 2 and self.when == "between":
            self.change(self.path)
        for n, pair in enumerate(super().structures(indices)):
            yield pair
            if self.passes == 2 and self.when == "during" and n == 0:
                self.change(self.path)


def _append(path):
    with open(path, "a") as handle:
        handle.write("1\nLattice=\"9 0 0 0 9 0 0 0 9\" Properties=species:S:1:pos:R:3 energy=-1.0\nSi 0 0 0\n")


def _same_size_edit(path):
    stat = os.stat(path)
    text = path.read_text()
    position = text.index("-") + 5  # a digit inside the first negative number
    digit = "7" if text[position] != "7" else "3"
    path.write_text(text[:position] + digit + text[position + 1:])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # only the checksum can tell


@pytest.mark.parametrize("change, when, match", [
    (_append, "between", "size"),
    (_same_size_edit, "between", "SHA-256"),
    (_same_size_edit, "during", "SHA-256"),
])
def test_a_file_that_changes_during_the_fit_is_refused(frames, tmp_path, change, when, match):
    path = tmp_path / "train.xyz"
    write(path, frames)
    estimator = model()
    with pytest.raises(DataFileError, match=f"changed while it was being read.*{match}"):
        estimator.fit(ChangingSource(path, change, when))
    assert not hasattr(estimator, "gp_")


def _break_coordinate(lines, header):
    lines[header + 5] = lines[header + 5].replace(".", "x", 1)


def _break_header(lines, header):
    lines[header] = "sixty-four\n"


@pytest.mark.parametrize("breaker, match", [
    (_break_coordinate, r"cannot read structure 5 \(line {line}\)"),
    (_break_header, r"structure 5 \(line {line}\): expected the number of atoms, got 'sixty-four'"),
])
def test_a_bad_structure_in_the_middle_is_named(frames, tmp_path, breaker, match):
    path = tmp_path / "bad.xyz"
    write(path, frames)
    lines = path.read_text().splitlines(keepends=True)
    header = sum(len(a) + 2 for a in frames[:5])
    breaker(lines, header)
    path.write_text("".join(lines))
    estimator = model()
    with pytest.raises(DataFileError, match=f"{path}: " + match.format(line=header + 1)):
        estimator.fit(str(path))
    assert not hasattr(estimator, "gp_")


def test_truncated_files_and_blank_lines_are_refused(frames, tmp_path):
    path = tmp_path / "cut.xyz"
    write(path, frames[:3])
    text = path.read_text()
    path.write_text(text[:len(text) - 200])
    with pytest.raises(DataFileError, match=f"structure 2 .* is truncated: {len(frames[2])} atoms announced"):
        model().fit(path)
    lines = text.splitlines(keepends=True)
    first = len(frames[0]) + 2
    path.write_text("".join(lines[:first]) + "\n" + "".join(lines[first:]))
    with pytest.raises(DataFileError, match=f"blank line at line {first + 1}, after structure 0"):
        model().fit(path)
    path.write_text(text + "\n\n")  # trailing blank lines are fine
    assert len(list(frame_source(path))) == 3
    with pytest.raises(DataFileError, match="no such file"):
        model().fit(tmp_path / "missing.xyz")
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(3,\), got \(4,\)"):
        model().fit(path, sample_weight=np.ones(4))


# ------------------------------------------------------------------ dask


@dataclass(frozen=True)
class _KillingRef:
    """A structure reference whose second load of structure 5 (in pass 2) kills the dask
    worker process reading it, once: a marker file records that it happened."""

    ref: object
    marker: str

    def load(self):
        if self.ref.index == 5:
            first, second = self.marker + ".pass1", self.marker + ".killed"
            if not os.path.exists(first):
                open(first, "w").close()
            elif not os.path.exists(second):
                open(second, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
        return self.ref.load()


class KillingSource(FileSource):
    def __init__(self, path, marker):
        super().__init__(path)
        self.marker = marker

    def reference(self, index):
        return _KillingRef(super().reference(index), self.marker)


def test_fit_on_a_process_cluster_reads_files_on_the_workers_and_survives_a_killed_worker(train_file, tmp_path):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    serial = model().fit(str(train_file))
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with parallel_config(backend="dask"), distributed.get_task_stream(client) as tasks:
            on_cluster = model(n_jobs=2).fit(str(train_file))
        names = {task["key"].split("-")[0] for task in tasks.data}
        # both passes ran on the workers, their large common inputs sent once per batch
        assert {"gapy_first_pass_task", "gapy_observation_rows_task", "gapy_shared"} <= names
        # the workers' BLAS runs on one thread, this process's on several: equal to rounding
        np.testing.assert_allclose(on_cluster.gp_.alpha, serial.gp_.alpha, rtol=1e-9)

        marker = str(tmp_path / "marker")
        with parallel_config(backend="dask"):
            survived = model(n_jobs=2).fit(KillingSource(train_file, marker))
        assert os.path.exists(marker + ".killed")  # a worker really died mid-fit
        np.testing.assert_allclose(survived.gp_.alpha, serial.gp_.alpha, rtol=1e-9)


_STARTED = threading.Event()


@dataclass(frozen=True)
class _SignallingRef:
    ref: object

    def load(self):
        _STARTED.set()
        time.sleep(0.5)
        return self.ref.load()


class SignallingSource(FileSource):
    def reference(self, index):
        return _SignallingRef(super().reference(index))


def test_a_cluster_that_goes_away_gives_a_clear_error(train_file):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    cluster = distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    client = distributed.Client(cluster)
    _STARTED.clear()

    def close():
        _STARTED.wait(60)
        cluster.close()

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    start = time.monotonic()
    try:
        with parallel_config(backend="dask"), pytest.raises(ClusterError, match="nothing was fitted"):
            model(n_jobs=2).fit(SignallingSource(train_file))
    finally:
        closer.join(60)
        client.close()
        cluster.close()
    assert time.monotonic() - start < 60


# ------------------------------------------------------------------ command line


def test_gapy_fit_streams_a_training_file_to_the_same_model(train_file, tmp_path, capsys):
    from gapy import load
    from gapy.cli import main

    small = ["--r-cut", "4.0", "--n-max", "4", "--l-max", "3", "--n-sparse", "10", "--no-progress",
             "--validation-fraction", "0.25"]
    assert main(["fit", str(train_file), *small, "--no-stream", "-o", str(tmp_path / "a.gapy")]) == 0
    in_memory = capsys.readouterr().out
    assert main(["fit", str(train_file), *small, "--stream", "-o", str(tmp_path / "b.gapy")]) == 0
    streamed = capsys.readouterr().out
    assert "training on 9 structures" in streamed and "streamed; validating on 3" in streamed
    np.testing.assert_array_equal(load(tmp_path / "b.gapy").gp_.alpha, load(tmp_path / "a.gapy").gp_.alpha)
    tables = [text[text.index("errors on the training set"):] for text in (in_memory, streamed)]
    assert tables[0] == tables[1]  # same errors, training and validation

    bad = tmp_path / "bad.xyz"
    lines = train_file.read_text().splitlines(keepends=True)
    lines[70] = lines[70].replace(".", "x", 1)
    bad.write_text("".join(lines))
    assert main(["fit", str(bad), *small, "--stream", "-o", str(tmp_path / "c.gapy")]) == 1
    error = capsys.readouterr().err
    assert f"{bad}: cannot read structure 1 (line" in error and error.count(str(bad)) == 1
