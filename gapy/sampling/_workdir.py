"""The on-disk state of an active-learning run: every reference result as soon as it exists.

A work directory holds

* ``labelled.xyz``: every structure the reference labelled, appended (flushed and
  fsynced) as soon as its result exists, with ``atoms.info["al_id"]``
  (``"<iteration>:<candidate>"``);
* ``pending.xyz``: the structures chosen for labelling in the current iteration;
* ``failed.xyz``: every structure whose reference calculation failed, appended as
  ``labelled.xyz`` is, with ``atoms.info["al_failure"]`` (the kind of failure), to look
  at or to try again (``active_learning(..., retry_failed=True)``);
* ``model.gapy``: the model of the last refit (written before ``state.json`` records the
  number of labelled structures it was fitted on), so a resumed run goes on with it
  instead of fitting it again;
* ``state.json``: iteration, phase, the random generator's state, the settings the run
  was started with, the history so far and the failed reference calculations; replaced
  atomically (temporary file, fsync, ``os.replace``), so a kill leaves the old or the new
  version, never half of one;
* ``.lock``: held (``flock``) by the run using the directory, with its process id and host.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import socket
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

try:
    import fcntl
except ImportError:  # (Windows: no advisory locks)
    fcntl = None

import numpy as np
from ase import Atoms
from ase.io import read

from ..estimator import load_model
from ..exceptions import GapyError, ModelFileError
from ..io.atomic import to_extxyz, write_atomically
from ..io.model import jsonable

logger = logging.getLogger(__name__)

STATE_FORMAT = "gapy-active-learning"
STATE_VERSION = 1
STATE_FILE = "state.json"
LABELLED_FILE = "labelled.xyz"
PENDING_FILE = "pending.xyz"
FAILED_FILE = "failed.xyz"
MODEL_FILE = "model.gapy"
LOCK_FILE = ".lock"
#: Phases of ``state.json``: dynamics and selection, labelling the pending structures, converged.
PHASES = ("md", "label", "done")
#: Settings added after the first state version: a work directory written before has none and
#: resumes (its state then records them).
LATER_SETTINGS = ("reference",)


def from_extxyz(text: str) -> List[Atoms]:
    if not text.strip():
        return []
    return read(io.StringIO(text), index=":", format="extxyz")


def through_extxyz(frames: Sequence[Atoms]) -> List[Atoms]:
    """``frames`` as they come back from an extxyz file (positions and labels rounded).

    The loop works on these copies whether or not it writes a work directory, so a
    resumed run continues from exactly what an uninterrupted one had in memory.
    """
    return from_extxyz(to_extxyz(frames)) if len(frames) else []


#: Version of :func:`frames_digest`, recorded in the settings (``"digest"``): a state without it was
#: written with :func:`frames_digest_v1`.
DIGEST_VERSION = 2


def frames_digest(frames: Sequence[Atoms]) -> str:
    """SHA-256 of ``frames``: species, positions, cell, pbc and every label, on the calculator or
    in ``info`` and ``arrays`` (the model's label keys, ``config_type``, weights), in a canonical
    form (keys sorted)."""
    digest = hashlib.sha256()
    for atoms in frames:
        results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        for name, table in (("arrays", atoms.arrays), ("results", results)):
            for key in sorted(table):
                value = np.asarray(table[key])
                digest.update(f"{name}.{key} {value.dtype.str} {value.shape}\n".encode())
                digest.update(repr(value.tolist()).encode() if value.dtype == object else
                              np.ascontiguousarray(value).tobytes())
        for array in (atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(json.dumps(atoms.info, sort_keys=True, default=_json_value).encode())
    return digest.hexdigest()


def _json_value(value):
    """A value of ``atoms.info`` that ``json`` does not know, for :func:`frames_digest`."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def frames_digest_v1(frames: Sequence[Atoms]) -> str:
    """The digest of work directories written before :data:`DIGEST_VERSION`: species, positions,
    cell, pbc and the calculator's labels only."""
    digest = hashlib.sha256()
    for atoms in frames:
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
        results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        for key in ("energy", "forces", "stress"):
            if key in results:
                digest.update(np.ascontiguousarray(results[key], dtype=float).tobytes())
    return digest.hexdigest()


def _flatten(settings: dict, prefix: str = "") -> dict:
    """``{"model": {"zeta": 4}}`` to ``{"model.zeta": 4}``."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _describe(settings: dict, key: str) -> str:
    if key not in settings:
        return "unset (the default)"
    text = json.dumps(settings[key], sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _complete_last_line(lines: List[str]) -> bool:
    """Whether the last line of an extxyz text without its final newline is whole: an atom
    line as long as the one before it (ASE writes fixed-width columns; a kill while appending
    cuts a line short)."""
    return len(lines) >= 2 and len(lines[-1]) == len(lines[-2].rstrip("\n")) and len(lines[-1].split()) > 1


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _iteration_problem(entry) -> Optional[str]:
    """What is wrong with an :class:`~gapy.sampling.Iteration` as stored, or None."""
    from dataclasses import MISSING, fields

    from .loop import Iteration

    if not isinstance(entry, dict):
        return f"is {type(entry).__name__}, not a table of the iteration's fields"
    known = {f.name: f for f in fields(Iteration)}
    for name in entry:
        if name not in known:
            return f"has an unknown field {name!r} (known: {', '.join(known)})"
    for name, field in known.items():
        if name not in entry:
            if field.default is MISSING:
                return f"has no {name!r}"
            continue
        value = entry[name]
        if name == "selected_scores":
            valid, expected = isinstance(value, list) and all(_is_number(v) for v in value), "a list of numbers"
        elif field.type is int:
            valid, expected = _is_count(value), "a count"
        else:
            valid, expected = _is_number(value) or (value is None and field.default is None), "a number"
        if not valid:
            return f"has {name} = {json.dumps(value)[:40]}, not {expected}"
    return None


def state_problem(state: dict) -> Optional[str]:
    """The first field of a ``state.json`` (format already checked) that gapy did not write so
    (edited by hand, or damaged), with what is wrong with it; None when every field is valid."""
    checks = [
        ("version", _is_count(state.get("version", 0)), "a count"),
        ("iteration", _is_count(state.get("iteration")), "a count (0, 1, ...)"),
        ("phase", state.get("phase") in PHASES, f"one of {', '.join(map(repr, PHASES))}"),
        ("converged", isinstance(state.get("converged"), bool), "true or false"),
        ("settings", isinstance(state.get("settings"), dict), "a table"),
        ("rng", isinstance(state.get("rng"), dict) and isinstance(state["rng"].get("bit_generator"), str),
         "the random generator's state (a table with 'bit_generator')"),
        ("history", isinstance(state.get("history"), list), "a list of iterations"),
        ("failures", isinstance(state.get("failures"), list), "a list of failed calculations"),
        ("current", state.get("current") is None and state.get("phase") != "label" or isinstance(
            state.get("current"), dict), "the iteration being labelled (phase 'label')"),
        ("model_labelled", _is_count(state.get("model_labelled", 0)), "a count"),
        ("model_labelled_digest", isinstance(state.get("model_labelled_digest", ""), str), "a digest (text)"),
    ]
    for name, valid, expected in checks:
        if not valid:
            found = json.dumps(state[name]) if name in state else "missing"
            return f"field {name!r} is {found if len(found) <= 40 else found[:37] + '...'}, not {expected}"
    entries = [(f"history[{k}]", entry) for k, entry in enumerate(state["history"])]
    for name, entry in entries + ([("current", state["current"])] if state["current"] is not None else []):
        problem = _iteration_problem(entry)
        if problem is not None:
            return f"field {name!r} {problem}"
    for k, failure in enumerate(state["failures"]):
        if not (isinstance(failure, dict) and isinstance(failure.get("id"), str)
                and _is_count(failure.get("iteration")) and isinstance(failure.get("kind"), str)
                and isinstance(failure.get("message"), str) and _is_count(failure.get("attempts", 1))):
            return (f"field 'failures[{k}]' is {json.dumps(failure)[:60]}, not a failed calculation (id, iteration, "
                    "kind, message, attempts)")
    return None


class Workdir:
    """A work directory of :func:`gapy.sampling.active_learning` (see the module docstring).

    Parameters
    ----------
    path : str or Path
        Created if missing.
    settings : dict
        JSON-able settings of the run; a directory holding a run with other settings is
        refused (unless that run labelled nothing and recorded no failure).
    digests_v1 : dict, optional
        Setting name to :func:`frames_digest_v1` of its structures (``"training_set"``,
        ``"starts"``): a state written before :data:`DIGEST_VERSION` is compared by these.
    """

    def __init__(self, path: Union[str, os.PathLike], settings: dict, digests_v1: Optional[dict] = None):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise GapyError(f"workdir {self.path}: exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.settings = jsonable(settings)
        self.digests_v1 = digests_v1 or {}

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory for one run: a second run on it at the same time (the same job
        submitted twice) is refused rather than labelling the same structures twice and
        interleaving its writes. The lock is the operating system's (``flock``), so a killed
        run leaves none behind; on a file system without locks the run goes on, with a warning.

        Raises
        ------
        GapyError
            Another process holds the directory (its process id and host are named).
        """
        if fcntl is None:  # (Windows)
            yield
            return
        with open(self.path / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise GapyError(f"workdir {self.path} is in use by another run ({owner}); wait for it to end, "
                                "or give another workdir") from None
            except OSError as error:
                logger.warning("workdir %s: cannot lock it (%s); make sure no other run uses it", self.path, error)
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()  # (the lock goes with the file handle)

    def load(self) -> Optional[dict]:
        """The saved state, or None for a fresh directory.

        Raises
        ------
        GapyError
            The directory holds something else: a state of another format or newer
            version, a state edited by hand (the field is named), labelled structures
            without a state, or a run with other settings (the message names the settings
            that differ) that has labels or failures; one with neither is replaced (with a
            warning) and None returned.
        """
        if not self.state_file.exists():
            leftovers = [name for name in (LABELLED_FILE, PENDING_FILE, FAILED_FILE)
                         if (self.path / name).exists()]
            if leftovers:
                raise GapyError(f"workdir {self.path}: has {', '.join(leftovers)} but no {STATE_FILE}; it is not "
                                f"a resumable gapy run (or its state was deleted); use another workdir"
                                f"{self._labels_kept()}")
            return None
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GapyError(f"workdir {self.path}: cannot read {STATE_FILE} ({error}); use another "
                            f"workdir{self._labels_kept()}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise GapyError(f"workdir {self.path}: {STATE_FILE} is not a gapy active-learning state; "
                            "use another workdir")
        if _is_count(state.get("version", 0)) and state.get("version", 0) > STATE_VERSION:
            raise GapyError(f"workdir {self.path}: {STATE_FILE} has version {state.get('version')}, newer than this "
                            f"gapy reads ({STATE_VERSION}); upgrade gapy")
        problem = state_problem(state)
        if problem is not None:
            raise GapyError(f"workdir {self.path}: {STATE_FILE}: {problem} (edited by hand?); restore it, or use "
                            f"another workdir{self._labels_kept()}")
        saved = self._with_new_digests(state["settings"])
        old, new = _flatten(saved), _flatten(self.settings)
        later = [name for name in LATER_SETTINGS if name not in saved]
        differ = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
                  and key.split(".")[0] not in later]
        if differ and self._holds_nothing(state):
            logger.warning("workdir %s: replacing the run it holds, with other settings (%s), which labelled "
                           "nothing and recorded no failure", self.path, ", ".join(differ[:4]))
            return None
        if differ:
            details = "; ".join(f"{key}: {_describe(old, key)} in the workdir, {_describe(new, key)} now"
                                for key in differ[:4])
            advice = ("Resume with the same settings, or use another workdir" if not any(
                key.startswith("reference.") for key in differ) else
                f"Its labels were made by the reference as it was: resume with it, or, if only settings that "
                f"do not change the labels differ (SCF steps, cores), start a new workdir with {LABELLED_FILE} "
                "added to the training structures")
            raise GapyError(f"workdir {self.path} holds another run (different {', '.join(differ)}): {details}. "
                            f"{advice}")
        return state

    def _with_new_digests(self, saved: dict) -> dict:
        """``saved`` settings, those of a state written before :data:`DIGEST_VERSION` with the digests
        of :func:`frames_digest_v1` that agree with ``digests_v1`` replaced by the new ones (a digest
        that differs stays: the structures differ)."""
        if "digest" in saved or "digest" not in self.settings:
            return saved
        saved = {**saved, "digest": self.settings["digest"]}
        for key, value in self.digests_v1.items():
            if saved.get(key) == value:
                saved[key] = self.settings[key]
        logger.info("workdir %s: written before labels in info and arrays were digested; its structures are "
                    "compared by the old digest (the kept model is fitted again once)", self.path)
        return saved

    def _holds_nothing(self, state: dict) -> bool:
        """Whether the run of ``state`` has nothing worth keeping: no label and no failure (e.g. it
        stopped before its first reference calculation), so a run with other settings may replace it."""
        def empty(name: str) -> bool:
            path = self.path / name
            return not path.exists() or not path.read_text().strip()

        return not state["failures"] and empty(LABELLED_FILE) and empty(FAILED_FILE)

    def _labels_kept(self) -> str:
        """The advice to keep the labels of this directory in another run (or nothing without any)."""
        if not (self.path / LABELLED_FILE).exists():
            return ""
        return f", with {LABELLED_FILE} added to the training structures (its labels are kept there)"

    def save(self, state: dict) -> None:
        """Replace ``state.json`` atomically."""
        state = {**jsonable(state), "format": STATE_FORMAT, "version": STATE_VERSION, "settings": self.settings}
        write_atomically(self.state_file, json.dumps(state, indent=1, sort_keys=True, allow_nan=False))

    def append_labelled(self, atoms: Atoms) -> None:
        """Append one labelled structure to ``labelled.xyz`` and make it durable (fsync)."""
        self._append(LABELLED_FILE, atoms)

    def read_labelled(self) -> List[Atoms]:
        """Every labelled structure; a partly written last one (a kill while writing) is dropped."""
        return self._read_appended(LABELLED_FILE, "its reference calculation will be repeated")

    def check_labelled(self, state: dict, labelled: Sequence[Atoms]) -> None:
        """Refuse ``labelled`` (as read) when it holds fewer structures than ``state`` records: the
        structures the history counts and those the kept model was fitted on. (A partly written last
        structure, dropped on reading, was never counted.)

        Raises
        ------
        GapyError
            Labels were lost (``labelled.xyz`` deleted, truncated or replaced); both numbers are named.
        """
        recorded = max(sum(entry.get("n_labelled", 0) for entry in state["history"]), state.get("model_labelled", 0))
        if len(labelled) < recorded:
            raise GapyError(f"workdir {self.path}: {LABELLED_FILE} holds {len(labelled)} labelled structures but "
                            f"{STATE_FILE} records {recorded}: labels were lost ({LABELLED_FILE} deleted, truncated or "
                            "replaced); restore it (from a backup), or use another workdir")

    def append_failed(self, atoms: Atoms) -> None:
        """Append one structure whose reference calculation failed to ``failed.xyz`` (fsync)."""
        self._append(FAILED_FILE, atoms)

    def read_failed(self) -> List[Atoms]:
        """Every structure of ``failed.xyz``, the last one of each ``al_id`` (a structure fails
        again when a run is killed after writing it and before recording the failure)."""
        frames = self._read_appended(FAILED_FILE, "its failure was not recorded, so it will be tried again")
        return list({atoms.info["al_id"]: atoms for atoms in frames}.values())

    def _append(self, name: str, atoms: Atoms) -> None:
        data = to_extxyz([atoms]).encode()
        try:
            with open(self.path / name, "ab") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:  # (a full disk: a resume drops the partly written structure)
            if error.filename is not None:
                raise
            raise OSError(error.errno, f"{error.strerror} while appending", str(self.path / name)) from error

    def _read_appended(self, name: str, when_cut: str) -> List[Atoms]:
        """The structures of an appended file; a partly written last one is dropped (with
        ``when_cut`` in the warning), damage elsewhere refused."""
        path = self.path / name
        if not path.exists():
            return []
        lines = path.read_text().splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n") and _complete_last_line(lines):
            lines[-1] += "\n"  # (an editor that drops the final newline; the next append needs it)
            write_atomically(path, "".join(lines))
        frames, position = [], 0
        while position < len(lines):
            n_atoms = 0
            try:
                n_atoms = int(lines[position])
                block = lines[position:position + n_atoms + 2]
                if len(block) < n_atoms + 2 or not block[-1].endswith("\n"):
                    raise ValueError("incomplete structure")
                (atoms,) = from_extxyz("".join(block))
            except Exception as error:  # (ASE's reader: ValueError, KeyError, IndexError, AttributeError, XYZError)
                if not isinstance(error, ValueError):
                    error = f"{type(error).__name__}: {error}"
                if position + max(n_atoms + 2, 1) < len(lines):  # (in the middle: not a kill while appending)
                    raise GapyError(f"workdir {self.path}: {name} is damaged at structure {len(frames)} "
                                    f"(line {position + 1}: {error}); repair or remove it") from None
                kept = self.path / f"{name}.cut"  # (set aside, never deleted)
                with open(kept, "a") as stream:
                    stream.write("".join(lines[position:]))
                logger.warning("workdir %s: %s ends with a partly written structure (%s), moved to %s; %s",
                               self.path, name, error, kept.name, when_cut)
                write_atomically(path, "".join(lines[:position]))
                break
            if "al_id" not in atoms.info:
                raise GapyError(f"workdir {self.path}: {name} has a structure that gapy did not write (structure "
                                f"{len(frames)}, line {position + 1}: no al_id in its info); remove it, and give "
                                "extra training structures in the training file instead")
            frames.append(atoms)
            position += n_atoms + 2
        return frames

    def save_model(self, model) -> None:
        """Write the fitted ``model`` to ``model.gapy`` (atomically)."""
        model.save(self.path / MODEL_FILE)

    def load_model(self, state: dict, labelled: Sequence[Atoms]):
        """The saved model if ``state`` says it was fitted on these ``labelled`` structures (their
        digest: a label edited by hand in ``labelled.xyz`` gives a refit), else None; an
        unreadable file is reported and None returned (the run fits the model again)."""
        digest = state.get("model_labelled_digest")  # (states before it: the count)
        if (state.get("model_labelled") != len(labelled) or digest not in (None, frames_digest(labelled))
                or not (self.path / MODEL_FILE).exists()):
            return None
        try:
            return load_model(self.path / MODEL_FILE)
        except (OSError, ModelFileError) as error:
            logger.warning("workdir %s: cannot read %s (%s); fitting the model again", self.path, MODEL_FILE, error)
            return None

    def write_pending(self, frames: Sequence[Atoms]) -> None:
        write_atomically(self.path / PENDING_FILE, to_extxyz(frames))

    def read_pending(self) -> List[Atoms]:
        path = self.path / PENDING_FILE
        if not path.exists():
            raise GapyError(f"workdir {self.path}: {STATE_FILE} says structures are being labelled but "
                            f"{PENDING_FILE} is missing; use another workdir")
        return from_extxyz(path.read_text())


def read_state_file(workdir: Union[str, os.PathLike]) -> dict:
    """``state.json`` of a work directory, without checking its settings."""
    path = Path(workdir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise GapyError(f"workdir {workdir}: no {STATE_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GapyError(f"workdir {workdir}: cannot read {STATE_FILE} ({error})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise GapyError(f"workdir {workdir}: {STATE_FILE} is not a gapy active-learning state")
    problem = state_problem(state)
    if problem is not None:
        raise GapyError(f"workdir {workdir}: {STATE_FILE}: {problem} (edited by hand?)")
    return state
