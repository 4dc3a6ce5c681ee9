"""The work directory of the active-learning loop: damaged, edited or interrupted files, bad
reference results and settings are refused or repaired with a clear message, and a resumed run
never repeats a reference calculation (Cu8 + EMT, a tiny SOAP)."""

import os
import subprocess
import sys
from pathlib import Path

from ase.build import bulk

from gapy.sampling import loop


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
