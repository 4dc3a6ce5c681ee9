"""List numpydoc problems in the docstrings of the public API (the names in ``docs/api.rst``).

Run from the project root: ``python docs/sphinxext/check_docstrings.py [CODE ...]``.
Prints each public name (and public method) with its problems; the default codes are
those the documentation asks for (parameters and returns documented, an example).
Exit status 1 if any problem is found. Once they are all fixed, the same codes can be
enforced in the docs build with ``numpydoc_validation_checks`` in ``docs/conf.py``.
"""

import importlib
import inspect
import re
import sys
from pathlib import Path

from numpydoc.validate import validate

#: numpydoc checks: no docstring, undocumented or unknown parameters, parameters or
#: return values without a description, no Returns section, no Examples section.
DEFAULT_CODES = ("GL08", "PR01", "PR02", "PR07", "RT01", "RT03", "EX01")

API = Path(__file__).resolve().parents[1] / "api.rst"


def public_names(path: Path = API) -> list:
    """``module.name`` of every autosummary entry of ``api.rst``."""
    names, module = [], None
    for line in path.read_text().splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line)
        if match:
            module = match.group(1)
        elif module and re.fullmatch(r"   [A-Za-z_][\w.]*", line):
            names.append(f"{module}.{line.strip()}")
    return names


def targets(names) -> list:
    """The names and the public methods and properties defined by each class among them."""
    result = []
    for name in names:
        module, _, attribute = name.rpartition(".")
        obj = getattr(importlib.import_module(module), attribute)
        result.append(name)
        if inspect.isclass(obj):
            result += [f"{name}.{key}" for key, value in vars(obj).items()
                       if not key.startswith("_")
                       and (callable(value) or isinstance(value, (property, classmethod, staticmethod)))
                       and not (key.startswith("set_") and key.endswith("_request"))]
    return result


def main(codes=DEFAULT_CODES) -> int:
    sys.path.insert(0, str(API.parents[1]))
    found = 0
    for name in targets(public_names()):
        errors = [(code, message) for code, message in validate(name)["errors"] if code in codes]
        if errors:
            print(name)
            for code, message in errors:
                print(f"    {code}: {message}")
            found += len(errors)
    print(f"{found} problems ({', '.join(codes)})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(tuple(sys.argv[1:]) or DEFAULT_CODES))
