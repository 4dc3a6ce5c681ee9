"""Parameter checks shared by the descriptors (ranges, types, messages)."""

from numbers import Integral, Real
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .structures import atomic_number

GradientsArg = Union[bool, str, Sequence[str]]


def check_number(name: str, value, low: Optional[float]) -> None:
    """``value`` must be a finite real number (not a bool), ``> low`` unless ``low`` is None."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and value <= low:
        raise ValueError(f"{name} must be > {low}, got {value!r}")


def check_cutoff(r_cut, cutoff_width) -> None:
    """``r_cut > 0`` and ``0 < cutoff_width <= r_cut`` (both in Angstrom)."""
    check_number("r_cut", r_cut, low=0.0)
    check_number("cutoff_width", cutoff_width, low=0.0)
    if cutoff_width > r_cut:
        raise ValueError(f"cutoff_width={cutoff_width} must not exceed r_cut={r_cut}")


def check_species(species) -> np.ndarray:
    """Sorted atomic numbers of a non-empty list of distinct symbols or numbers."""
    if isinstance(species, (str, Integral)) or len(species) == 0:
        raise ValueError(f"species must be a non-empty list of species, got {species!r}")
    numbers = [atomic_number(s) for s in species]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"species has duplicates: {list(species)!r}")
    return np.array(sorted(numbers))


def parse_gradients(gradients: GradientsArg) -> Tuple[bool, bool]:
    """Map a ``gradients`` argument to (positions, strain) flags.

    ``True`` means both; ``False`` or ``None`` neither; ``"positions"`` positions only;
    ``("positions", "strain")`` both.
    """
    if gradients is True:
        return True, True
    if gradients is False or gradients is None:
        return False, False
    names = {gradients} if isinstance(gradients, str) else set(gradients)
    unknown = names - {"positions", "strain"}
    if unknown:
        raise ValueError(
            f"gradients must be True, False, 'positions' or ('positions', 'strain'); "
            f"got unknown {sorted(unknown)}"
        )
    return True, "strain" in names
