"""Training structures read one at a time, as often as a fit needs, never all in memory.

A :class:`FrameSource` yields ``(index, atoms)`` pairs in order, once per pass:

* :class:`ListSource`: a list of ``ase.Atoms`` already in memory (what ``fit`` always took);
* :class:`FileSource`: a file, read structure by structure on each pass: extended XYZ
  (``.xyz``, ``.extxyz``) through gapy's own frame index, an ASE database (``.db``)
  through :mod:`ase.db`, any other format ASE reads through :func:`ase.io.iread`;
* :class:`IteratorSource`: any iterable of ``ase.Atoms`` (a generator), consumed once
  and spilled to a temporary file, which later passes read back.

A file is fingerprinted (size, modification time and SHA-256, read in 1 MiB pieces) at
the first pass; every later pass and :meth:`FrameSource.verify` refuse a file that no
longer matches, so a model is never fitted on two versions of the data. A structure that
cannot be read raises :class:`~gapy.exceptions.DataFileError` naming the file, the
structure's index and its line (for extended XYZ).

For work on other processes (a dask cluster), :meth:`FrameSource.reference` gives a
small picklable handle of one structure of a file (path and position) whose
:meth:`StructureRef.load` reads it where it runs, after checking that the file is the
one that was fingerprinted; the workers must see the file under the same path (a
shared file system).

>>> from gapy.datasets import load_si
>>> source = frame_source(load_si("train")[:3])
>>> [(k, len(atoms)) for k, atoms in source]
[(0, 63), (1, 63), (2, 63)]
"""

import hashlib
import io
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from ase.io.extxyz import key_val_str_to_dict

from ..exceptions import DataFileError
from ..labels import _symmetric_voigt
from ..structures import as_frames, require_atoms
from .model import is_model_file

PathLike = Union[str, os.PathLike]

#: Bytes read at a time when hashing a file.
_CHUNK = 1 << 20
#: File name endings read with gapy's extended XYZ index.
EXTXYZ_SUFFIXES = (".xyz", ".extxyz")
#: File name endings read as ASE databases.
DB_SUFFIXES = (".db",)


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one version of a file: size (bytes), mtime (ns) and SHA-256."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: PathLike) -> "Fingerprint":
        """Fingerprint of the file at ``path``, hashed in 1 MiB pieces."""
        stat = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for piece in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(piece)
        return cls(stat.st_size, stat.st_mtime_ns, digest.hexdigest())

    def differences(self, other: "Fingerprint") -> str:
        """Human-readable list of what differs from ``other`` ('' when nothing does)."""
        parts = []
        if self.size != other.size:
            parts.append(f"size {self.size} -> {other.size} bytes")
        if self.mtime_ns != other.mtime_ns:
            parts.append("modification time" + (" only: touched, the content the same" if (
                self.size, self.sha256) == (other.size, other.sha256) else ""))
        if self.sha256 != other.sha256:
            parts.append(f"SHA-256 {self.sha256[:12]}... -> {other.sha256[:12]}...")
        return ", ".join(parts)


def _changed(path, what: str) -> DataFileError:
    return DataFileError(
        f"{path}: the file changed while it was being read ({what}); nothing was fitted on it. "
        "Fit on a copy that nothing writes to (or wait until the writer is done)"
    )


class FrameSource:
    """Structures in order, ``(index, atoms)`` per pass; see the module docstring.

    The base class of :class:`ListSource`, :class:`FileSource` and
    :class:`IteratorSource`; :func:`frame_source` picks the right one. Iterating over a
    source is one pass; ``len(source)`` raises ``TypeError`` while :attr:`n_frames` is
    still None. A source is a context manager: it is closed (:meth:`close`) on exit.

    Attributes
    ----------
    name : str
        What the structures are (a file path, "list", "iterator"), for messages.

    Examples
    --------
    >>> from gapy.datasets import load_si
    >>> with frame_source(load_si("train")[:3]) as source:
    ...     print(source.name, len(source), [k for k, atoms in source])
    list 3 [0, 1, 2]
    """

    name = "structures"

    def __iter__(self) -> Iterator[Tuple[int, Atoms]]:
        raise NotImplementedError("a FrameSource subclass defines __iter__")

    def __len__(self) -> int:
        n = self.n_frames
        if n is None:
            raise TypeError(f"{self.name}: the number of structures is known only after a first pass")
        return n

    @property
    def n_frames(self) -> Optional[int]:
        """Number of structures, or None before the first pass has counted them.

        Returns
        -------
        int or None
            The number of structures; None until a first pass over a file or an
            iterator has counted them (a list knows it from the start).

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> source = IteratorSource(iter(load_si("train")[:3]))
        >>> source.n_frames is None
        True
        >>> _ = list(source)
        >>> source.n_frames
        3
        """
        return None

    def structures(self, indices: Optional[Iterable[int]] = None) -> Iterator[Tuple[int, Atoms]]:
        """``(index, atoms)`` of the structures ``indices`` (sorted; default all), in order.

        Sources that can skip a structure without parsing it (extended XYZ, ASE
        databases) do so.

        Parameters
        ----------
        indices : iterable of int, optional
            Indices of the structures wanted, in any order and possibly repeated (each
            is read once, in increasing order); by default all of them.

        Yields
        ------
        index : int
            Index of the structure in the source.
        atoms : ase.Atoms
            The structure.

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> source = frame_source(iter(load_si("train")[:3]))
        >>> [(k, len(atoms)) for k, atoms in source.structures([2, 0, 2])]
        [(0, 63), (2, 63)]
        """
        if indices is None:
            yield from self
            return
        wanted = iter(sorted(set(int(k) for k in indices)))
        target = next(wanted, None)
        for k, atoms in self:
            if target is None:
                return
            if k == target:
                yield k, atoms
                target = next(wanted, None)

    def reference(self, index: int) -> Optional["StructureRef"]:
        """A picklable handle reading structure ``index`` where it is loaded, or None.

        None means the structure exists only here (a list in memory, a spilled iterator):
        send the ``Atoms`` themselves.

        Parameters
        ----------
        index : int
            Index of the structure in the source.

        Returns
        -------
        StructureRef or None
            The handle (for a :class:`FileSource`), or None.

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> print(frame_source(load_si("train")[:3]).reference(0))
        None
        """
        return None

    def verify(self) -> None:
        """Raise :class:`DataFileError` if the data changed since the first pass.

        Does nothing for data that cannot change (a list in memory, a spilled iterator)
        and before the first pass.

        Raises
        ------
        DataFileError
            The data changed since the first pass (see :meth:`FileSource.verify`).

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> frame_source(load_si("train")[:3]).verify()
        """

    def close(self) -> None:
        """Release temporary files and handles (the source cannot be read afterwards).

        Also called when a ``with`` block on the source ends.

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> source = IteratorSource(iter(load_si("train")[:3]))
        >>> [k for k, atoms in source]
        [0, 1, 2]
        >>> source.close()
        """

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ListSource(FrameSource):
    """Structures already in memory (a list or tuple of ``ase.Atoms``).

    Parameters
    ----------
    frames : ase.Atoms or sequence of ase.Atoms
        The structures (one ``Atoms`` is one structure); kept as they are, not copied.

    Raises
    ------
    TypeError
        An element is not an ``ase.Atoms`` (its index is named).
    ValueError
        No structure is given.

    Examples
    --------
    >>> from gapy.datasets import load_si
    >>> source = ListSource(load_si("train")[:3])
    >>> len(source), [(k, len(atoms)) for k, atoms in source]
    (3, [(0, 63), (1, 63), (2, 63)])
    """

    name = "list"

    def __init__(self, frames: Sequence[Atoms]):
        self.frames = as_frames(frames)

    def __iter__(self):
        return iter(enumerate(self.frames))

    @property
    def n_frames(self) -> int:
        """Number of structures, known from the start.

        Returns
        -------
        int
            The length of the list.

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> ListSource(load_si("train")[:3]).n_frames
        3
        """
        return len(self.frames)

    def structures(self, indices=None):
        """``(index, atoms)`` of the structures ``indices`` (sorted; default all), in order.

        Parameters
        ----------
        indices : iterable of int, optional
            Indices of the structures wanted, in any order and possibly repeated (each
            is given once, in increasing order); by default all of them.

        Yields
        ------
        index : int
            Index of the structure in the list.
        atoms : ase.Atoms
            The structure (the object of the list, not a copy).

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> frames = load_si("train")[:3]
        >>> [(k, atoms is frames[k]) for k, atoms in ListSource(frames).structures([2, 0])]
        [(0, True), (2, True)]
        """
        if indices is None:
            yield from self
            return
        for k in sorted(set(int(k) for k in indices)):
            yield k, self.frames[k]


class IteratorSource(FrameSource):
    """Any iterable of ``ase.Atoms``, read once and spilled to a temporary file.

    The first pass reads the iterable and writes each structure to the temporary file;
    later passes read them back from it. A later pass before the first one has finished
    raises :class:`~gapy.exceptions.DataFileError`.

    Parameters
    ----------
    iterable : iterable of ase.Atoms
        The structures (a generator, for instance), consumed once by the first pass.
    directory : str or os.PathLike, optional
        Where the temporary file goes (default: the system's temporary directory). It is
        deleted on :meth:`close` (or when the source is garbage-collected).

    Examples
    --------
    >>> from gapy.datasets import load_si
    >>> source = IteratorSource(atoms for atoms in load_si("train")[:3])
    >>> [(k, len(atoms)) for k, atoms in source]  # first pass: reads the generator
    [(0, 63), (1, 63), (2, 63)]
    >>> [(k, len(atoms)) for k, atoms in source]  # later passes: the temporary file
    [(0, 63), (1, 63), (2, 63)]
    >>> source.close()
    """

    name = "iterator"

    def __init__(self, iterable: Iterable[Atoms], directory: Optional[PathLike] = None):
        self._iterable = iter(iterable)
        self._directory = directory
        self._spill = None
        self._count: Optional[int] = None

    @property
    def n_frames(self) -> Optional[int]:
        """Number of structures, or None before the first pass has read them all.

        Returns
        -------
        int or None
            The number of structures the iterable gave; None until the first pass ends.

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> source = IteratorSource(iter(load_si("train")[:3]))
        >>> print(source.n_frames)
        None
        >>> _ = list(source)
        >>> source.n_frames
        3
        """
        return self._count

    def __iter__(self):
        if self._iterable is not None:
            return self._first_pass()
        return self._replay()

    def _first_pass(self):
        iterable, self._iterable = self._iterable, None
        self._spill = tempfile.TemporaryFile(prefix="gapy-frames-", dir=self._directory)
        count = 0
        for atoms in iterable:
            require_atoms(atoms, count)
            pickle.dump(atoms, self._spill, protocol=pickle.HIGHEST_PROTOCOL)
            yield count, atoms
            count += 1
        if count == 0:
            raise ValueError("no structures given")
        self._count = count

    def _replay(self):
        if self._count is None:
            raise DataFileError("iterator: the first pass over the structures did not finish; "
                                "an iterator can be read only once")
        self._spill.flush()
        self._spill.seek(0)
        for k in range(self._count):
            yield k, pickle.load(self._spill)

    def close(self):
        """Delete the temporary file (the source cannot be read afterwards).

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> with IteratorSource(iter(load_si("train")[:3])) as source:  # closed at the end
        ...     print([k for k, atoms in source])
        [0, 1, 2]
        """
        if self._spill is not None:
            self._spill.close()
            self._spill = None


class FileSource(FrameSource):
    """Structures of a file, parsed one at a time on every pass.

    The first pass indexes and fingerprints the file; every later pass, and
    :meth:`verify`, refuse a file that changed since.

    Parameters
    ----------
    path : str or os.PathLike
        The file; workers of a cluster that use :meth:`reference` must see it under the
        same path.
    format : str, optional
        ``"extxyz"``, ``"db"`` (ASE database) or any ASE format name; by default from the
        file name (``.xyz``/``.extxyz``: extxyz, ``.db``: db, otherwise ASE's guess).

    Raises
    ------
    DataFileError
        No such file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ase.io import write
    >>> from gapy.datasets import load_si
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "train.xyz"
    >>> write(path, load_si("train")[:3])
    >>> source = FileSource(path)
    >>> source.format, source.n_frames is None
    ('extxyz', True)
    >>> [(k, len(atoms)) for k, atoms in source]
    [(0, 63), (1, 63), (2, 63)]
    >>> source.n_frames
    3
    >>> tmp.cleanup()
    """

    def __init__(self, path: PathLike, format: Optional[str] = None):
        self.path = Path(path)
        self.name = str(path)
        if not self.path.is_file():
            raise DataFileError(f"{path}: no such file")
        if is_model_file(self.path):
            raise DataFileError(f"{path}: is a gapy model file, not structures")
        if format is None:
            suffix = self.path.suffix.lower()
            format = "extxyz" if suffix in EXTXYZ_SUFFIXES else "db" if suffix in DB_SUFFIXES else None
        self.format = format
        self.fingerprint: Optional[Fingerprint] = None
        self._offsets: Optional[np.ndarray] = None  # extxyz: byte offset of each frame, and the end
        self._lines: Optional[np.ndarray] = None  # extxyz: 1-based line of each frame's header
        self._ids: Optional[np.ndarray] = None  # db: row id of each structure
        self._count: Optional[int] = None

    @property
    def n_frames(self) -> Optional[int]:
        """Number of structures in the file, or None before the first pass.

        Returns
        -------
        int or None
            The number of structures found by the first pass; None before it.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from ase.io import write
        >>> from gapy.datasets import load_si
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "train.xyz"
        >>> write(path, load_si("train")[:3])
        >>> source = FileSource(path)
        >>> print(source.n_frames)
        None
        >>> _ = source.begin_pass()
        >>> source.n_frames
        3
        >>> tmp.cleanup()
        """
        return self._count

    # ------------------------------------------------------------ passes
    def __iter__(self):
        return self.structures()

    def begin_pass(self) -> bool:
        """Start a pass: index and fingerprint the file, or check that it is unchanged.

        Called by :meth:`structures` (so by every pass); the first call indexes and
        fingerprints the file, the later ones check it against the fingerprint.

        Returns
        -------
        bool
            True for the first pass (the file was indexed and fingerprinted), False for
            a later one (the file was checked).

        Raises
        ------
        DataFileError
            The file contains no structures or a malformed one (first pass), or it
            changed since the first pass.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from ase.io import write
        >>> from gapy.datasets import load_si
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "train.xyz"
        >>> write(path, load_si("train")[:3])
        >>> source = FileSource(path)
        >>> source.begin_pass(), source.begin_pass()
        (True, False)
        >>> tmp.cleanup()
        """
        if self.fingerprint is None:
            self._index()
            return True
        self.verify()
        return False

    def structures(self, indices=None):
        """``(index, atoms)`` of the structures ``indices`` (sorted; default all), in order.

        One pass over the file (see :meth:`begin_pass`); extended XYZ and ASE databases
        skip the structures not wanted without parsing them.

        Parameters
        ----------
        indices : iterable of int, optional
            Indices of the structures wanted, in any order and possibly repeated (each
            is read once, in increasing order); by default all of them.

        Yields
        ------
        index : int
            Index of the structure in the file.
        atoms : ase.Atoms
            The structure, freshly parsed.

        Raises
        ------
        DataFileError
            A structure cannot be read (the file, the index and, for extended XYZ, the
            line are named), or the file changed since the first pass.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from ase.io import write
        >>> from gapy.datasets import load_si
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "train.xyz"
        >>> write(path, load_si("train")[:3])
        >>> source = FileSource(path)
        >>> [(k, len(atoms)) for k, atoms in source.structures([2, 0])]
        [(0, 63), (2, 63)]
        >>> tmp.cleanup()
        """
        first = self.begin_pass()
        wanted = None if indices is None else sorted(set(int(k) for k in indices))
        if self.format == "extxyz":
            yield from self._extxyz_frames(wanted)
        elif self.format == "db":
            yield from self._db_frames(wanted)
        else:
            yield from self._ase_frames(wanted, first)

    def _index(self) -> None:
        """First pass: the fingerprint, and the position of every structure."""
        if self.format == "extxyz":
            self._offsets, self._lines, self.fingerprint = _index_extxyz(self.path)
            self._count = len(self._offsets) - 1
        else:
            self.fingerprint = Fingerprint.of(self.path)
            if self.format == "db":
                with _connect(self.path) as db:
                    self._ids = np.array([row.id for row in db.select(include_data=False)], dtype=np.int64)
                self._count = len(self._ids)
        if self._count == 0:
            raise DataFileError(f"{self.path}: contains no structures")

    def _extxyz_frames(self, wanted):
        indices = range(self._count) if wanted is None else wanted
        with open(self.path, "rb") as handle:
            for k in indices:
                start, end = int(self._offsets[k]), int(self._offsets[k + 1])
                if handle.tell() != start:
                    handle.seek(start)
                yield k, _parse_extxyz(handle.read(end - start), self.path, k, int(self._lines[k]))

    def _db_frames(self, wanted):
        ids = self._ids if wanted is None else self._ids[wanted]
        indices = range(self._count) if wanted is None else wanted
        with _connect(self.path) as db:
            if wanted is None:
                rows = db.select()
            else:
                rows = (db.get(id=int(row_id)) for row_id in ids)
            for k, row_id, row in zip(indices, ids, rows):
                if row.id != row_id:
                    raise _changed(self.path, f"structure {k} has row id {row.id}, expected {row_id}")
                yield k, _row_atoms(row, self.path, k)

    def _ase_frames(self, wanted, first: bool):
        from ase.io import iread

        wanted_set = None if wanted is None else set(wanted)
        k = -1
        frames = iread(str(self.path), index=":", format=self.format)
        while True:
            try:
                atoms = next(frames)
            except StopIteration:
                break
            except Exception as error:  # ASE raises many types for malformed files
                raise DataFileError(
                    f"{self.path}: cannot read structure {k + 1} ({type(error).__name__}: {error})"
                ) from error
            k += 1
            if wanted_set is None or k in wanted_set:
                yield k, atoms
        if first:
            self._count = k + 1
            if self._count == 0:
                raise DataFileError(f"{self.path}: contains no structures")
        elif k + 1 != self._count:
            raise _changed(self.path, f"{k + 1} structures, {self._count} before")

    # ------------------------------------------------------------ checks
    def verify(self) -> None:
        """Raise :class:`DataFileError` if the file changed since the first pass.

        Compares the size, modification time and SHA-256 of the file with the
        fingerprint of the first pass; does nothing before it.

        Raises
        ------
        DataFileError
            The file was removed or differs from its fingerprint (what differs is
            named).

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from ase.io import write
        >>> from gapy.datasets import load_si
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "train.xyz"
        >>> write(path, load_si("train")[:3])
        >>> source = FileSource(path)
        >>> _ = list(source)
        >>> source.verify()  # unchanged
        >>> with open(path, "a") as handle:
        ...     _ = handle.write(" ")  # any change
        >>> try:
        ...     source.verify()
        ... except DataFileError as error:
        ...     print("the file changed" in str(error))
        True
        >>> tmp.cleanup()
        """
        if self.fingerprint is None:
            return
        now = Fingerprint.of(self.path) if self.path.exists() else None
        if now is None:
            raise _changed(self.path, "it was removed")
        if now != self.fingerprint:
            raise _changed(self.path, self.fingerprint.differences(now))

    def reference(self, index: int) -> Optional["StructureRef"]:
        """A picklable handle that reads structure ``index`` of the file where it is loaded.

        Parameters
        ----------
        index : int
            Index of the structure in the file.

        Returns
        -------
        StructureRef
            The path, format and position of the structure and the file's size and
            modification time.

        Raises
        ------
        RuntimeError
            Before the first pass (the file is not indexed yet).

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from ase.io import write
        >>> from gapy.datasets import load_si
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "train.xyz"
        >>> write(path, load_si("train")[:3])
        >>> source = FileSource(path)
        >>> _ = source.begin_pass()
        >>> ref = source.reference(1)
        >>> ref.index, len(ref.load())
        (1, 63)
        >>> tmp.cleanup()
        """
        if self.fingerprint is None:
            raise RuntimeError("FileSource.reference before the first pass")
        if self.format == "extxyz":
            where = (int(self._offsets[index]), int(self._offsets[index + 1]), int(self._lines[index]))
        elif self.format == "db":
            where = int(self._ids[index])
        else:
            where = int(index)
        return StructureRef(str(self.path), self.format, int(index), where,
                            self.fingerprint.size, self.fingerprint.mtime_ns)


@dataclass(frozen=True)
class StructureRef:
    """One structure of a file, read where :meth:`load` runs (a dask worker).

    Holds the path, the format, the structure's index and position in the file, and the
    file's size and modification time: :meth:`load` refuses a file that changed. Made by
    :meth:`FileSource.reference`; small and picklable, to send to other processes.

    Parameters
    ----------
    path : str
        Path of the file (the same for every process that loads it).
    format : str or None
        ``"extxyz"``, ``"db"``, an ASE format name, or None for ASE's guess.
    index : int
        Index of the structure in the file (for messages).
    where : object
        Position of the structure: ``(start byte, end byte, header line)`` for extended
        XYZ, the row id for an ASE database, the index for other formats.
    size : int
        Size of the file (bytes) when it was fingerprinted.
    mtime_ns : int
        Modification time of the file (ns) when it was fingerprinted.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ase.io import write
    >>> from gapy.datasets import load_si
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "train.xyz"
    >>> write(path, load_si("train")[:3])
    >>> import pickle
    >>> source = FileSource(path)
    >>> _ = source.begin_pass()
    >>> ref = pickle.loads(pickle.dumps(source.reference(2)))
    >>> ref.format, ref.index, ref.load().get_chemical_formula()
    ('extxyz', 2, 'Si63')
    >>> tmp.cleanup()
    """

    path: str
    format: Optional[str]
    index: int
    where: object
    size: int
    mtime_ns: int

    def load(self) -> Atoms:
        """The structure, read from the file.

        The file's size and modification time are checked first.

        Returns
        -------
        ase.Atoms
            The structure, freshly parsed.

        Raises
        ------
        DataFileError
            The file changed since it was fingerprinted, or the structure is malformed.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> from ase.io import write
        >>> from gapy.datasets import load_si
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "train.xyz"
        >>> write(path, load_si("train")[:3])
        >>> source = FileSource(path)
        >>> _ = source.begin_pass()
        >>> ref = source.reference(0)
        >>> len(ref.load())
        63
        >>> with open(path, "a") as handle:
        ...     _ = handle.write(" ")  # any change
        >>> try:
        ...     ref.load()
        ... except DataFileError as error:
        ...     print("the file changed" in str(error))
        True
        >>> tmp.cleanup()
        """
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise _changed(self.path, "it was removed") from None
        if (stat.st_size, stat.st_mtime_ns) != (self.size, self.mtime_ns):
            raise _changed(self.path, f"size {self.size} -> {stat.st_size} bytes or modification time")
        if self.format == "extxyz":
            start, end, line = self.where
            with open(self.path, "rb") as handle:
                handle.seek(start)
                return _parse_extxyz(handle.read(end - start), self.path, self.index, line)
        if self.format == "db":
            with _connect(self.path) as db:
                return _row_atoms(db.get(id=self.where), self.path, self.index)
        from ase.io import read

        try:
            return read(self.path, index=self.where, format=self.format)
        except Exception as error:
            raise DataFileError(
                f"{self.path}: cannot read structure {self.index} ({type(error).__name__}: {error})"
            ) from error


def load_structure(item: Union[Atoms, StructureRef]) -> Atoms:
    """``item`` itself if it is an ``Atoms``, else what :meth:`StructureRef.load` reads."""
    return item if isinstance(item, Atoms) else item.load()


def frame_source(frames, format: Optional[str] = None) -> FrameSource:
    """The :class:`FrameSource` for what ``GAPRegressor.fit`` was given.

    Parameters
    ----------
    frames : FrameSource, ase.Atoms, list or tuple of ase.Atoms, path or iterable of ase.Atoms
        A path (``str`` or ``os.PathLike``) is read with :class:`FileSource`; a list or
        tuple (one ``Atoms``) is used in memory; any other iterable is consumed once
        (:class:`IteratorSource`).
    format : str, optional
        File format of a path (see :class:`FileSource`).

    Returns
    -------
    FrameSource
        ``frames`` itself if it is a :class:`FrameSource`, else a :class:`FileSource`,
        :class:`ListSource` or :class:`IteratorSource`.

    Raises
    ------
    TypeError
        An element is not an ``ase.Atoms`` (its index is named) or ``frames`` is not
        iterable.
    ValueError
        An empty list.
    DataFileError
        A path that is not a file.

    Examples
    --------
    >>> from gapy.datasets import load_si
    >>> frames = load_si("train")[:3]
    >>> type(frame_source(frames)).__name__, type(frame_source(iter(frames))).__name__
    ('ListSource', 'IteratorSource')
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ase.io import write
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write(Path(tmp) / "train.xyz", frames)
    ...     source = frame_source(Path(tmp) / "train.xyz")
    ...     print(type(source).__name__, [k for k, atoms in source])
    FileSource [0, 1, 2]
    """
    if isinstance(frames, FrameSource):
        return frames
    if isinstance(frames, (str, os.PathLike)):
        return FileSource(frames, format)
    if isinstance(frames, (Atoms, list, tuple, np.ndarray)):
        return ListSource(frames)
    try:
        iterator = iter(frames)
    except TypeError:
        raise TypeError(f"frames must be a list of ase.Atoms, a file path or an iterable of ase.Atoms, "
                        f"got {type(frames).__name__}") from None
    return IteratorSource(iterator)


# ------------------------------------------------------------------ extended XYZ


def _index_extxyz(path: Path) -> Tuple[np.ndarray, np.ndarray, Fingerprint]:
    """Byte offsets (n + 1) and header lines (n) of every frame, and the fingerprint.

    One streaming read of the file hashes it and finds the frames as ASE does (a header
    line with the number of atoms, a comment line, the atom lines, optional ``VEC``
    lines); it refuses what ASE would silently stop at (a blank line before more
    structures) and a truncated last frame.
    """
    stat = os.stat(path)
    digest = hashlib.sha256()
    offsets: List[int] = []
    lines: List[int] = []
    position = 0
    line_number = 0
    with open(path, "rb") as handle:
        def next_line() -> bytes:
            nonlocal position, line_number
            line = handle.readline()
            digest.update(line)
            position += len(line)
            line_number += 1
            return line

        line = next_line()
        while line:
            start, start_line = position - len(line), line_number
            if not line.strip():
                # ASE stops reading here: refuse if anything but blank lines follows
                end = start
                while True:
                    rest = next_line()
                    if not rest:
                        break
                    if rest.strip():
                        raise DataFileError(
                            f"{path}: blank line at line {start_line}, after structure {len(offsets) - 1}, "
                            f"before more data at line {line_number}: ASE would stop reading there and "
                            f"leave the rest out; remove the blank line"
                        )
                break
            k = len(offsets)
            try:
                natoms = int(line)
                if natoms < 0:
                    raise ValueError
            except ValueError:
                raise DataFileError(
                    f"{path}: structure {k} (line {start_line}): expected the number of atoms, got "
                    f"{line[:60].decode(errors='replace').strip()!r}"
                ) from None
            offsets.append(start)
            lines.append(start_line)
            for read in range(natoms + 1):
                if not (line := next_line()):
                    raise DataFileError(
                        f"{path}: structure {k} (line {start_line}) is truncated: {natoms} atoms announced, "
                        f"the file ends after {max(read - 1, 0)} of them"
                    )
                if read == 0 and b"stress" in line:
                    _check_comment_stress(line, f"{path}: structure {k} (line {start_line + 1})")
            line = next_line()
            while line.lstrip().startswith(b"VEC"):  # VEC1..3 lines belong to this frame
                line = next_line()
        else:
            end = position
        digest.update(handle.read())  # nothing, unless the file grew while we read it
    fingerprint = Fingerprint(stat.st_size, stat.st_mtime_ns, digest.hexdigest())
    if os.stat(path).st_size != stat.st_size or end > stat.st_size:
        raise _changed(path, "it grew while it was indexed")
    return np.array(offsets + [end], dtype=np.int64), np.array(lines, dtype=np.int64), fingerprint


def _check_comment_stress(comment: bytes, name: str) -> None:
    """Refuse a 9-value ``stress`` on an extxyz comment line that is not symmetric: ASE's reader
    keeps its upper triangle as the Voigt stress, so another layout (a Voigt vector padded to 9,
    another order) would be fitted as wrong numbers (:func:`gapy.labels.read_labels` refuses the
    same tensor in ``atoms.info``)."""
    try:
        info = key_val_str_to_dict(comment.decode(errors="replace"))
    except Exception:  # (ASE's reader says what is wrong with the line)
        return
    value = info.get("stress")
    if value is not None and np.shape(value) in ((3, 3), (9,)):
        _symmetric_voigt(np.asarray(value, dtype=float), name, "stress")


def check_extxyz(path: PathLike) -> None:
    """Check an extended XYZ file as :class:`FileSource` indexes it: no blank line before more
    structures (ASE would stop reading there), no truncated structure, symmetric 9-value stresses.

    Raises
    ------
    gapy.DataFileError
        A blank line or a truncated structure, named by its line.
    gapy.StructureError
        A 9-value stress that is not symmetric, named by its structure and line.
    """
    _index_extxyz(Path(path))


def _parse_extxyz(text: bytes, path, index: int, line: int) -> Atoms:
    from ase.io.extxyz import read_xyz

    try:
        return next(read_xyz(io.StringIO(text.decode()), index=0))
    except Exception as error:  # ASE raises many types for malformed frames
        raise DataFileError(
            f"{path}: cannot read structure {index} (line {line}) ({type(error).__name__}: {error})"
        ) from error


# ------------------------------------------------------------------ ASE databases


def _connect(path):
    from ase.db import connect

    return connect(str(path), type="db", create_indices=False, use_lock_file=False, append=True)


def _row_atoms(row, path, index: int) -> Atoms:
    """An ``Atoms`` from a database row: key-value pairs to ``info``; ``data`` entries of
    one value per atom to ``arrays``, the others to ``info``."""
    try:
        atoms = row.toatoms()
        atoms.info.update(row.key_value_pairs)
        for key, value in (row.get("data") or {}).items():
            if isinstance(value, np.ndarray) and value.shape[:1] == (len(atoms),):
                atoms.arrays[key] = value
            else:
                atoms.info[key] = value
    except Exception as error:
        raise DataFileError(
            f"{path}: cannot read structure {index} (row id {row.id}) ({type(error).__name__}: {error})"
        ) from error
    return atoms
