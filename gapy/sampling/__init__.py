"""Uncertainty-driven sampling: which structures are worth a reference calculation.

:mod:`~gapy.sampling.select` scores structures by the model's own uncertainty and picks
uncertain, mutually different ones; :mod:`~gapy.sampling.md` runs molecular dynamics
with the model and :mod:`~gapy.sampling.bias` biases it away from what the model has
seen (descriptor-space metadynamics) or towards its uncertainty;
:mod:`~gapy.sampling.reference` labels structures with any ASE calculator, checked;
:mod:`~gapy.sampling.loop` runs the whole loop (explore, select, label, refit) and
:mod:`~gapy.sampling._workdir` keeps its state on disk.
"""

from .bias import COLLECTIVE_VARIABLES, HALF_STRENGTH_VARIANCE_RATIO, DescriptorMetadynamics, UncertaintyBias
from .loop import (HISTORY_COLUMNS, SELECTIONS, ActiveLearningResult, Iteration, active_learning, errors_on,
                   history_rows, workdir_history, write_history_csv)
from .md import DRIVERS, driver_calculator, run_md, strained_copies
from .reference import (ACTIVE_LEARNING_CONFIG_TYPE, ReferenceFailure, label_structures, reference_calculator,
                        reference_results)
from .select import (SCORE_UNITS, SCORES, Selection, select_per_run, select_structures, structure_fingerprints,
                     uncertainty_scores)

__all__ = [
    "ACTIVE_LEARNING_CONFIG_TYPE",
    "ActiveLearningResult",
    "COLLECTIVE_VARIABLES",
    "DRIVERS",
    "DescriptorMetadynamics",
    "HALF_STRENGTH_VARIANCE_RATIO",
    "HISTORY_COLUMNS",
    "Iteration",
    "ReferenceFailure",
    "SELECTIONS",
    "SCORES",
    "SCORE_UNITS",
    "Selection",
    "active_learning",
    "driver_calculator",
    "errors_on",
    "history_rows",
    "label_structures",
    "reference_calculator",
    "reference_results",
    "run_md",
    "select_per_run",
    "select_structures",
    "strained_copies",
    "structure_fingerprints",
    "UncertaintyBias",
    "uncertainty_scores",
    "workdir_history",
    "write_history_csv",
]
