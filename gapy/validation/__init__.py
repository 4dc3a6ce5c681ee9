"""Validation of a potential by the properties simulations need, with the model's uncertainty.

``validate(model, structure, reference=..., properties=...)`` computes, with the same
procedure for the model and the reference: the equation of state (:mod:`.eos`), elastic
constants (:mod:`.elastic`), phonons (:mod:`.phonons`, phonopy), the vacancy formation
energy and surface energies (:mod:`.defects`) and the vacancy-migration barrier
(:mod:`.barrier`, ASE NEB). See ``docs/validation.md``.
"""

from ._base import Settings
from .core import FAMILIES, PropertyResult, ValidationReport, validate

__all__ = ["FAMILIES", "PropertyResult", "Settings", "ValidationReport", "validate"]
