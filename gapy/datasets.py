"""Small data sets shipped with gapy."""

from importlib import resources
from typing import List

from ase import Atoms
from ase.io import read

_FILES = {"train": "si_train.xyz", "test": "si_test.xyz"}


def load_si(split: str = "train") -> List[Atoms]:
    """Load the bundled mlearn Si DFT data (Zuo et al. 2020, BSD-3; see ``data/README.md``).

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        ``"train"``: 38 structures (2,144 atoms) sampled from the mlearn training set;
        ``"test"``: the full mlearn test set (25 structures, 1,525 atoms).

    Returns
    -------
    list of ase.Atoms
        With energy (eV), forces (eV/A) and stress (eV/A^3) on ``atoms.calc`` and
        ``config_type`` in ``atoms.info``.

    Raises
    ------
    ValueError
        ``split`` is not ``"train"`` or ``"test"``.

    References
    ----------
    Y. Zuo, C. Chen, X. Li, Z. Deng, Y. Chen, J. Behler, G. Csányi, A. V. Shapeev,
    A. P. Thompson, M. A. Wood and S. P. Ong, "Performance and cost assessment of
    machine learning interatomic potentials", J. Phys. Chem. A 124, 731 (2020).

    Examples
    --------
    >>> from gapy.datasets import load_si
    >>> train = load_si("train")
    >>> len(train), sum(len(atoms) for atoms in train)
    (38, 2144)
    >>> train[0].get_forces().shape == (len(train[0]), 3)
    True
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    path = resources.files("gapy") / "data" / _FILES[split]
    with resources.as_file(path) as file:
        return read(file, ":", format="extxyz")
