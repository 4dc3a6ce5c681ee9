"""Uncertainty-driven sampling: which structures are worth a reference calculation.

:mod:`~gapy.sampling.select` scores structures by the model's own uncertainty and picks
uncertain, mutually different ones; :mod:`~gapy.sampling.loop` runs molecular dynamics
with the model, labels the selection with any ASE calculator and refits;
:mod:`~gapy.sampling.bias` biases the dynamics away from what the model has seen
(descriptor-space metadynamics) or towards its uncertainty.
"""

from .bias import COLLECTIVE_VARIABLES, DescriptorMetadynamics, UncertaintyBias
from .loop import (ACTIVE_LEARNING_CONFIG_TYPE, DRIVERS, SELECTIONS, ActiveLearningResult, Iteration,
                   ReferenceFailure, active_learning, driver_calculator, errors_on, label_structures,
                   reference_results, run_md)
from .select import SCORE_UNITS, SCORES, Selection, select_structures, structure_fingerprints, uncertainty_scores

__all__ = [
    "ACTIVE_LEARNING_CONFIG_TYPE",
    "ActiveLearningResult",
    "COLLECTIVE_VARIABLES",
    "DRIVERS",
    "DescriptorMetadynamics",
    "Iteration",
    "ReferenceFailure",
    "SELECTIONS",
    "SCORES",
    "SCORE_UNITS",
    "Selection",
    "active_learning",
    "driver_calculator",
    "errors_on",
    "label_structures",
    "reference_results",
    "run_md",
    "select_structures",
    "structure_fingerprints",
    "UncertaintyBias",
    "uncertainty_scores",
]
