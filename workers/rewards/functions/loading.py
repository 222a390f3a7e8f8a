"""Where a reward function is named and how it is imported: ``module:attr`` or ``path/to/file.py:attr``.

Naming is checked without importing (option validation); importing happens once, when the worker sets
the reward up. A file is imported under a private module name, as verl imports its custom reward file;
the file's directory is not added to ``sys.path``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

_ATTRIBUTE = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_MODULE = re.compile(rf"^{_ATTRIBUTE}$")
_NAME = re.compile(rf"^(?P<where>.+):(?P<attr>{_ATTRIBUTE})$")
FORMS = "'module:attribute' or 'path/to/file.py:attribute'"


def resolve_name(text: str, base: Path) -> str:
    """Check a function's name and make a file path absolute (relative to ``base``); imports nothing.

    Raises ValueError saying what is wrong.
    """
    match = _NAME.match(text.strip())
    if match is None:
        raise ValueError(f"must be {FORMS}, got {text!r}")
    where, attr = match["where"], match["attr"]
    if where.endswith(".py"):
        return f"{(base / where).resolve()}:{attr}"
    if not _MODULE.match(where):
        raise ValueError(f"{where!r} is neither a module name nor a .py file; expected {FORMS}")
    return f"{where}:{attr}"


def split_name(name: str) -> tuple[str, str]:
    where, _, attr = name.rpartition(":")
    return where, attr


def module_loader(name: str) -> Callable[[], ModuleType]:
    """A function that imports the module (or file) of a resolved name."""
    where, _ = split_name(name)
    if where.endswith(".py"):
        return lambda: _import_file(Path(where))
    return lambda: importlib.import_module(where)


def attribute(module: ModuleType, attr: str) -> Any:
    """``module.a.b`` for ``attr = "a.b"``; a part may also be a key of a mapping, so that an entry of a
    registry such as ms-swift's ``orms`` is named ``orms.my_reward``. AttributeError names the part."""
    value: Any = module
    for part in attr.split("."):
        value = value[part] if isinstance(value, Mapping) and part in value else getattr(value, part)
    return value


def source_identity(name: str) -> dict[str, str]:
    """What identifies the function's code without importing it: a file's sha256, or the version of the
    distribution that installs the module."""
    where, _ = split_name(name)
    if where.endswith(".py"):
        path = Path(where)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        return {"source": f"sha256:{digest}"}
    top = where.partition(".")[0]
    distributions = importlib.metadata.packages_distributions().get(top, [])
    versions = sorted(f"{d}=={importlib.metadata.version(d)}" for d in set(distributions))
    return {"source": ",".join(versions) or "unknown"}


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    module_name = f"rewardq_function_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}_{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # as verl does: dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
