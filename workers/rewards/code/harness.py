"""The Python scripts a program runs as: a standard-input program after prime_code's import prelude, and a
call-based program inside a harness that calls its function once and prints the JSON of the return value.

The harness sends the program's own prints to ``/dev/null`` and writes one line, ``MARK`` then
``{"value": <JSON text>}`` or ``{"error": "<Type>: <message>"}``, on a copy of standard output it took first.
The program runs in the harness's process: it could write that line itself, but only a right value passes
(:func:`rewardq.workers.rewards.code.compare.value_matches` reads the value as JSON, never a live object).
"""

from __future__ import annotations

import json
from typing import Any

# prime_code's (and APPS's) prelude: programs written for those scorers may use these names unimported.
PRELUDE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n"
    "from builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\n"
    "import math\nimport random\nimport statistics\nimport itertools\nimport functools\nimport operator\n"
    "import io\nimport sys\nimport json\nsys.setrecursionlimit(6*10**5)\n"
)
MARK = "\x1erewardq-result "
ERROR_LIMIT = 300  # characters of an exception's message in the harness's line

_HARNESS = """
import json as _json, os as _os
_report = _os.fdopen(_os.dup(1), "w")
_os.dup2(_os.open(_os.devnull, _os.O_WRONLY), 1)


def _call():
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    exec(compile(_SOURCE, "<solution>", "exec"), namespace)
    if "class Solution" in _SOURCE:
        function = getattr(namespace["Solution"](), _FN_NAME)
    else:
        function = namespace[_FN_NAME]
    return _json.dumps(function(*_json.loads(_ARGS)))


try:
    _line = {"value": _call()}
except BaseException as _e:
    try:
        _message = f"{type(_e).__name__}: {_e}"
    except BaseException:
        _message = type(_e).__name__
    _line = {"error": _message[:_LIMIT]}
_report.write(_MARK + _json.dumps(_line) + "\\n")
_report.flush()
_os._exit(0)
"""


def stdin_script(program: str, prelude: bool) -> str:
    """The script a standard-input program runs as."""
    return PRELUDE + program if prelude else program


def call_script(program: str, fn_name: str, args: list[Any], prelude: bool) -> str:
    """The script that calls ``fn_name(*args)`` of a call-based program once and prints the result line."""
    return (
        f"_SOURCE = {stdin_script(program, prelude)!r}\n_FN_NAME = {fn_name!r}\n"
        f"_ARGS = {json.dumps(args)!r}\n"
        f"_MARK = {MARK!r}\n_LIMIT = {ERROR_LIMIT}\n{_HARNESS}"
    )


def read_call(stdout: str) -> tuple[str, str]:
    """The harness's line as ``("value", json_text)`` or ``("error", message)``, which it also is when
    the line is missing."""
    start = stdout.rfind(MARK)
    if start < 0:
        return "error", "the harness printed no result (the program ended the process)"
    try:
        line = json.loads(stdout[start + len(MARK) :].split("\n", 1)[0])
    except ValueError:
        return "error", "the harness's result line is not JSON"
    if isinstance(line, dict) and isinstance(line.get("value"), str):
        return "value", line["value"]
    if isinstance(line, dict) and isinstance(line.get("error"), str):
        return "error", line["error"]
    return "error", "the harness's result line has neither a value nor an error"
