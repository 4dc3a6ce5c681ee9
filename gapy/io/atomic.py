"""Files written atomically: to a temporary file next to the target, flushed to disk, then
moved over it, so a failed or killed write leaves any previous file intact."""

import io
import os
import secrets
import stat
from pathlib import Path
from typing import Sequence, Tuple, Union

from ase import Atoms
from ase.io import write


def write_atomically(path: Union[str, os.PathLike], data: Union[bytes, str]) -> None:
    """Write ``data`` to ``path`` atomically, with the permissions a plain write would give.

    Parameters
    ----------
    path : str or path
        The file; its directory must exist. A new file gets the permissions of the
        umask, a replaced file keeps its own (``tempfile.mkstemp`` would make every file
        readable by its owner only: a model or labels shared on a cluster would be
        unreadable by the group).
    data : bytes or str
        The content (text is written as UTF-8).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from gapy.io.atomic import write_atomically
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atomically(Path(tmp) / "state.json", '{"iteration": 3}')
    ...     print((Path(tmp) / "state.json").read_text(), sorted(p.name for p in Path(tmp).iterdir()))
    {"iteration": 3} ['state.json']
    """
    path = Path(path)
    handle, temporary = _temporary_file(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:  # (a full disk: the message names the file, the previous one stays)
        Path(temporary).unlink(missing_ok=True)
        if error.filename is None:
            raise OSError(error.errno, f"{error.strerror}; the previous file is unchanged", str(path)) from error
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def to_extxyz(frames: Sequence[Atoms]) -> str:
    """``frames`` as the text of an extended XYZ file (empty for none)."""
    buffer = io.StringIO()
    if len(frames):
        write(buffer, list(frames), format="extxyz")
    return buffer.getvalue()


def write_structures(path: Union[str, os.PathLike], frames: Sequence[Atoms]) -> None:
    """Write ``frames`` to an extended XYZ file atomically (:func:`write_atomically`); none gives an empty file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ase.build import bulk
    >>> from ase.io import read
    >>> from gapy.io.atomic import write_structures
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_structures(Path(tmp) / "out.xyz", [bulk("Cu"), bulk("Ni")])
    ...     formulas = [atoms.get_chemical_formula() for atoms in read(Path(tmp) / "out.xyz", ":")]
    >>> formulas
    ['Cu', 'Ni']
    """
    write_atomically(path, to_extxyz(frames))


def _temporary_file(path: Path) -> Tuple[int, str]:
    """A new file next to ``path`` with the permissions a plain write would give ``path``."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
    while True:
        temporary = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    if mode is not None:
        try:
            os.chmod(temporary, mode)
        except BaseException:
            os.close(handle)
            Path(temporary).unlink(missing_ok=True)
            raise
    return handle, temporary
