"""The work directory of the active-learning loop: damaged, edited or interrupted files, bad
reference results and settings are refused or repaired with a clear message, and a resumed run
never repeats a reference calculation (Cu8 + EMT, a tiny SOAP)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read
from ase.stress import voigt_6_to_full_3x3_stress
from sklearn.base import clone

from gapy import GapyError, GAPRegressor, SOAP, StructureError
from gapy.sampling import ReferenceFailure, active_learning, label_structures, loop, reference_results, run_md
from gapy.sampling._workdir import Workdir


def cu8(rattle: float, seed: int):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(rattle, seed=seed)
    return atoms


def test_a_set_valued_setting_has_the_same_repr_under_every_hash_seed():
    code = ("from gapy.sampling.loop import _stable_repr\n"
            "print(_stable_repr({'elements': {'Cu', 'Al', 'Ni', 'Zn', 'Ag'}, 'k': [frozenset({'b', 'a'})]}))\n")
    outputs = set()
    for seed in ("1", "2", "3"):
        environment = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).parents[1])}
        process = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                                 timeout=120, check=True)
        outputs.add(process.stdout.strip())
    assert outputs == {"{'elements': {'Ag', 'Al', 'Cu', 'Ni', 'Zn'}, 'k': [frozenset({'a', 'b'})]}"}
    assert loop._stable_repr([1, (2.5, "a"), {"x": None}]) == repr([1, (2.5, "a"), {"x": None}])


class CountingEMT(EMT):
    """EMT that appends a line per calculation to a file; calls in ``fail_at`` (counted over every run
    on the file) raise, as a DFT code whose SCF does not converge."""

    def __init__(self, path, fail_at=()):
        super().__init__()
        self.path, self.fail_at = Path(path), set(fail_at)

    def calls(self):
        return self.path.read_text().split() if self.path.exists() else []

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        call = len(self.calls()) + 1
        super().calculate(atoms, properties, system_changes)
        digest = hashlib.sha256(np.round(atoms.positions, 6).tobytes()).hexdigest()[:16]
        with open(self.path, "a") as stream:
            stream.write(f"{digest}{'-failed' if call in self.fail_at else ''}\n")
        if call in self.fail_at:
            raise RuntimeError("SCF did not converge")


def training_set():
    return label_structures([cu8(0.02, seed) for seed in range(2)], EMT())


MODEL = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=12, sigma_energy=0.001,
                     sigma_force=0.01, random_state=0)


def run(reference, workdir=None, frames=None, starts=None, model=MODEL, **options):
    """Two labels per iteration from short MD of one start."""
    options = {"n_iterations": 1, "n_select": 2, "md_steps": 12, "md_interval": 3, "temperature": 600.0,
               "timestep": 2.0, "random_state": 7, **options}
    frames = training_set() if frames is None else frames
    starts = [cu8(0.0, 0)] if starts is None else starts
    return active_learning(model, frames, reference, starts, workdir=workdir, **options)


def test_a_partly_written_last_failure_is_set_aside_on_resume_and_damage_elsewhere_refused(tmp_path, caplog):
    workdir, calls = tmp_path / "run", tmp_path / "calls.txt"
    run(CountingEMT(calls, fail_at={1}), workdir)
    text = (workdir / "failed.xyz").read_text()
    with open(workdir / "failed.xyz", "a") as stream:  # killed while appending a failure
        stream.write(text[:len(text) // 2])
    result = run(CountingEMT(calls, fail_at={4}), workdir, n_iterations=2)
    assert "failed.xyz ends with a partly written structure" in caplog.text
    assert (workdir / "failed.xyz.cut").read_text() == text[:len(text) // 2]
    assert [failure["id"].split(":")[0] for failure in result.failures] == ["0", "1"]
    result = run(CountingEMT(calls), workdir, n_iterations=2, retry_failed=True)
    assert not result.failures and len(result.frames) == 2 + 4 and len(CountingEMT(calls).calls()) == 6
    # a cut structure in the middle (appended after, by a run that did not repair it): refused, whatever
    # error ASE's extxyz reader gives (KeyError, AttributeError, ValueError at these cuts)
    one = "".join(text.splitlines(keepends=True)[:10])
    for cut in (2, 59, len(one) // 2):
        (workdir / "failed.xyz").write_text(one + one[:cut] + one)
        with pytest.raises(GapyError, match=r"failed.xyz is damaged at structure 1 \(line 11: "):
            Workdir(workdir, {}).read_failed()


class Killed(BaseException):
    """A kill at a chosen point (nothing catches it, as nothing catches SIGKILL)."""


def test_a_failure_written_to_failed_xyz_but_not_to_the_state_is_not_run_again(tmp_path, monkeypatch, caplog):
    workdir, calls = tmp_path / "run", tmp_path / "calls.txt"
    append_failed = Workdir.append_failed

    def then_killed(self, atoms):
        append_failed(self, atoms)
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(Workdir, "append_failed", then_killed)
        with pytest.raises(Killed):
            run(CountingEMT(calls, fail_at={1}), workdir)
    result = run(CountingEMT(calls), workdir)
    names = CountingEMT(calls).calls()
    assert len(names) == 2 and names[0].endswith("-failed") and names[1] != names[0].split("-")[0]
    assert "are in failed.xyz but not in the state" in caplog.text
    uninterrupted = run(CountingEMT(tmp_path / "other.txt", fail_at={1}))
    assert [(f["id"], f["kind"], f["attempts"]) for f in result.failures] == [
        (f["id"], f["kind"], f["attempts"]) for f in uninterrupted.failures]
    assert [h.n_failed for h in result.history] == [1] and len(result.frames) == 3


class WrongShapeEMT(EMT):
    """EMT whose result ``key`` is replaced by ``change(value)``."""

    def __init__(self, key, change):
        super().__init__()
        self.key, self.change = key, change

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        super().calculate(atoms, properties, system_changes)
        self.results[self.key] = self.change(self.results[self.key])


@pytest.mark.parametrize("key, change, message", [
    ("forces", lambda forces: forces[:-1], r"forces of shape \(7, 3\) for Cu8 \(8 atoms\); expected \(8, 3\)"),
    ("forces", np.ravel, r"forces of shape \(24,\) for Cu8 \(8 atoms\); expected \(8, 3\)"),
    ("stress", lambda stress: np.ones(9), r"stress of shape \(9,\) for Cu8 \(8 atoms\); expected \(6,\) or \(3, 3\)"),
    ("energy", lambda energy: np.array([energy, 1.0]), r"energy of shape \(2,\) for Cu8 \(8 atoms\); expected a num"),
])
def test_a_reference_result_of_the_wrong_shape_is_a_recorded_failure(tmp_path, key, change, message):
    with pytest.raises(ReferenceFailure, match="reference returned " + message) as error:
        reference_results(cu8(0.05, 1), WrongShapeEMT(key, change))
    assert error.value.kind == "exception"
    result = run(WrongShapeEMT(key, change), tmp_path / "run")  # recorded, and the loop goes on
    assert len(result.frames) == 2 and len(result.failures) == 2
    assert all(re.search(message, failure["message"]) for failure in result.failures)
    assert len(read(tmp_path / "run" / "failed.xyz", ":")) == 2
    # a 3x3 stress is a stress (in Voigt order)
    results = reference_results(cu8(0.05, 1), WrongShapeEMT("stress", voigt_6_to_full_3x3_stress))
    np.testing.assert_allclose(results["stress"], reference_results(cu8(0.05, 1), EMT())["stress"])


def test_labels_that_cannot_be_stored_are_a_recorded_failure(tmp_path, monkeypatch):
    def unwritable(*args, **kwargs):
        raise ValueError("cannot write this label")

    monkeypatch.setattr(loop, "_labelled_copy", unwritable)
    result = run(EMT(), tmp_path / "run")
    assert [failure["message"] for failure in result.failures] == [
        "its labels cannot be stored: ValueError: cannot write this label"] * 2


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A work directory of a finished one-iteration run (copied by each test that changes it)."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    run(EMT(), workdir)
    return workdir


@pytest.mark.parametrize("edit, message", [
    (lambda state: "", r"cannot read state.json \(.*\); use another workdir, with labelled.xyz added to the train"),
    (lambda state: {**state, "phase": "labelling"}, r"field 'phase' is \"labelling\", not one of 'md', 'label'"),
    (lambda state: {**state, "iteration": "1"}, r"field 'iteration' is \"1\", not a count"),
    (lambda state: {k: v for k, v in state.items() if k != "rng"}, r"field 'rng' is missing, not the random gen"),
    (lambda state: {**state, "history": [{**state["history"][0], "note": 1}]},
     r"field 'history\[0\]' has an unknown field 'note'"),
    (lambda state: {**state, "history": [{**state["history"][0], "n_train": None}]},
     r"field 'history\[0\]' has n_train = null, not a count"),
    (lambda state: {**state, "failures": {}}, r"field 'failures' is \{\}, not a list of failed calculations"),
    (lambda state: {**state, "phase": "label", "current": None}, r"field 'current' is null, not the iteration being"),
    (lambda state: {k: v for k, v in state.items() if k != "settings"}, r"field 'settings' is missing, not a table"),
    (lambda state: {**state, "rng": {**state["rng"], "bit_generator": "MT19937"}},
     r"field 'rng' is not a random generator's state \(ValueError: "),
])
def test_a_state_edited_by_hand_is_refused_naming_the_field(finished_run, tmp_path, edit, message):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    changed = edit(json.loads((workdir / "state.json").read_text()))
    (workdir / "state.json").write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(GapyError, match=r"workdir .*run: .*" + message):
        run(EMT(), workdir, n_iterations=2)


def test_labels_lost_from_labelled_xyz_are_refused_on_resume(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    text = (workdir / "labelled.xyz").read_text()
    one = "".join(text.splitlines(keepends=True)[:10])
    (workdir / "labelled.xyz").write_text(text + one[:len(one) // 2])  # a kill while appending: set aside
    assert len(run(EMT(), workdir).frames) == 4
    (workdir / "labelled.xyz").write_text(one)
    with pytest.raises(GapyError, match=r"labelled.xyz holds 1 labelled structures but state.json records 2: "
                                        r"labels were lost .*restore it"):
        run(EMT(), workdir, n_iterations=2)
    (workdir / "labelled.xyz").unlink()
    with pytest.raises(GapyError, match=r"labelled.xyz holds 0 labelled structures but state.json records 2"):
        run(EMT(), workdir, n_iterations=2)


def test_a_run_that_stopped_before_any_reference_calculation_is_replaced_by_a_corrected_one(tmp_path, caplog):
    close = cu8(0.0, 0)
    close.positions[1] = close.positions[0] + [0.4, 0.0, 0.0]
    with pytest.raises(GapyError, match="every MD run stopped before its first snapshot"):
        run(EMT(), tmp_path / "run", starts=[close])
    assert (tmp_path / "run" / "state.json").exists()
    result = run(EMT(), tmp_path / "run")  # the starts corrected
    assert "replacing the run it holds, with other settings (starts), which labelled nothing" in caplog.text
    assert len(result.frames) == 4 and [h.n_train for h in result.history] == [2]
    # a run with labels is kept: refused
    with pytest.raises(GapyError, match=r"holds another run \(different starts\)"):
        run(EMT(), tmp_path / "run", starts=[close])


def labels_in_info(shift: float):
    """The training set with its labels under custom keys in info and arrays, the energies shifted."""
    frames = []
    for atoms in training_set():
        bare = cu8(0.0, 0)
        bare.positions = atoms.positions
        bare.info["REF_energy"] = atoms.get_potential_energy() + shift
        bare.arrays["REF_forces"] = atoms.get_forces()
        frames.append(bare)
    return frames


def test_labels_in_info_and_arrays_are_part_of_the_training_set_digest(tmp_path, monkeypatch, caplog):
    model = clone(MODEL).set_params(energy_key="REF_energy", forces_key="REF_forces")
    run(EMT(), tmp_path / "run", frames=labels_in_info(0.0), model=model)
    with pytest.raises(GapyError, match=r"holds another run \(different training_set\)"):
        run(EMT(), tmp_path / "run", frames=labels_in_info(1.0), model=model)
    for key, shift in (("config_type", "surface"), ("energy_weight", 2.0)):
        changed = labels_in_info(0.0)
        changed[0].info[key] = shift
        with pytest.raises(GapyError, match=r"different training_set"):
            run(EMT(), tmp_path / "run", frames=changed, model=model)
    # a work directory of the digest before (calculator labels only): compared by it, then by the new one
    from gapy.sampling._workdir import frames_digest_v1, through_extxyz

    state_file = tmp_path / "run" / "state.json"
    state = json.loads(state_file.read_text())
    del state["settings"]["digest"]
    state["settings"]["training_set"] = frames_digest_v1(through_extxyz(labels_in_info(0.0)))
    state["settings"]["starts"] = frames_digest_v1([cu8(0.0, 0)])
    state["model_labelled_digest"] = "an old digest"
    state_file.write_text(json.dumps(state))
    with caplog.at_level("INFO", logger="gapy.sampling"):
        before = run(EMT(), tmp_path / "run", frames=labels_in_info(0.0), model=model)
    assert "compared by the old digest" in caplog.text
    assert json.loads(state_file.read_text())["settings"]["digest"] == 2
    with monkeypatch.context() as patch:  # the model fitted again once, then kept
        patch.setattr(loop, "_refit", lambda *args, **kwargs: pytest.fail("refitted a kept model"))
        again = run(EMT(), tmp_path / "run", frames=labels_in_info(0.0), model=model)
    probe = [cu8(0.1, 3)]
    np.testing.assert_array_equal(again.model.predict(probe), before.model.predict(probe))
    with pytest.raises(GapyError, match=r"different training_set"):
        run(EMT(), tmp_path / "run", frames=labels_in_info(1.0), model=model)


def test_gapy_learn_imports_a_reference_module_from_the_config_files_directory(tmp_path, monkeypatch, capsys):
    from ase.io import write

    from gapy.cli import main

    name = "gapy_test_reference_next_to_the_config"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "conf").mkdir()
    write("conf/train.xyz", training_set())
    Path("conf/learn.toml").write_text(
        f'reference = "{name}:make"\ntrain = "conf/train.xyz"\nworkdir = "run"\niterations = 1\nbatch = 1\n'
        'md_steps = 6\nmd_interval = 3\nprogress = false\nrefit = "fit"\n'
        '[model]\nr_cut = 4.0\nn_max = 3\nl_max = 2\nn_sparse = 12\n')
    assert main(["learn", "conf/learn.toml"]) == 1
    error = capsys.readouterr().err
    assert f"cannot import '{name}'" in error and f"looked for it in {tmp_path / 'conf'}, {tmp_path}, the ins" in error
    Path(f"conf/{name}.py").write_text("from ase.calculators.emt import EMT\n\n\ndef make():\n    return EMT()\n")
    path = list(sys.path)
    assert main(["learn", "conf/learn.toml"]) == 0
    assert "1 structures labelled" in capsys.readouterr().out
    assert sys.path == path  # (put in front for the import only)
    sys.modules.pop(name)


def test_a_one_atom_start_is_refused_and_a_stopped_trajectory_is_named(caplog):
    from ase import Atoms

    one = Atoms("Cu", cell=[2.5, 2.5, 2.5], pbc=True)
    with pytest.raises(StructureError, match=r"starts\[1\] \(Cu\) has 1 atom: the MD keeps the centre of mass"):
        run(EMT(), starts=[cu8(0.0, 0), one])
    with pytest.raises(StructureError, match=r"start \(Cu\) has 1 atom"):
        run_md(EMT(), one, 4, 2, 300.0)
    close = cu8(0.0, 0)
    close.positions[1] = close.positions[0] + [0.4, 0.0, 0.0]
    close.info["strain"] = 0.02
    assert run_md(EMT(), close, 4, 2, 600.0, random_state=0) == ([], True)
    assert "MD of Cu8, strain 0.02 at 600 K stopped after 0 steps: atoms 0 and 1 are 0.4 A apart" in caplog.text


def test_gapy_learn_names_the_settings_of_another_run_as_its_config_file(tmp_path, monkeypatch, capsys):
    from ase.io import write

    from gapy.cli import main

    monkeypatch.chdir(tmp_path)
    write("train.xyz", training_set())
    config = ('reference = "emt"\ntrain = "train.xyz"\nworkdir = "run"\niterations = 1\nbatch = 1\nseed = 0\n'
              'md_steps = 6\nmd_interval = 3\nprogress = false\nrefit = "fit"\ndriver = "metad"\n'
              '[model]\nr_cut = 4.0\nn_max = 3\nl_max = 2\nn_sparse = 12\n[metad]\nheight = 0.01\n')
    Path("learn.toml").write_text(config)
    assert main(["learn", "learn.toml"]) == 0
    capsys.readouterr()
    Path("learn.toml").write_text(config.replace("batch = 1", "batch = 2").replace("seed = 0", "seed = 1")
                                  .replace("height = 0.01", "height = 0.02"))
    assert main(["learn", "learn.toml"]) == 1
    error = capsys.readouterr().err
    assert "holds another run (different metad.height, batch, seed): metad.height: \"0.01\" in the w" in error
    assert "batch: 1 in the workdir, 2 now; seed: 0 in the workdir, 1 now" in error
    assert "n_select" not in error and "random_state" not in error and "driver_options" not in error
