"""One harness for the NUMBA_DISABLE_JIT equality tests.

Every numba kernel of memdesc must give the same results as plain Python (the brief's rule,
see ``memdesc._numba``).  A test proves it by running a small workload in a fresh interpreter
with ``NUMBA_DISABLE_JIT=1`` and comparing what it prints with the compiled run (in a second
subprocess or in the test's own process).  This module is that subprocess, once:

* ``run_json(code, jit=...)`` runs ``python -c code`` with ``NUMBA_DISABLE_JIT`` set to ``"0"``
  or ``"1"``, this repository's ``src/`` first on ``PYTHONPATH`` (the subprocess tests the tree
  under test, never an installed copy) and ``tests/`` importable; before ``code`` it asserts
  that the interpreter really runs in the requested mode; a non-zero exit fails the test with
  the tail of stderr; it returns the JSON of the last line of stdout;
* ``call_json(module, func, jit=...)``: the common case, ``print(json.dumps(module.func()))``
  for a workload function defined in a test module;
* ``both(code)`` / ``both_call(module, func)``: ``(nojit, jit)``, each from its own subprocess;
* ``jsonable(x)``: an in-process result as it reads back from JSON (tuples become lists,
  int keys strings), to compare with a subprocess's result;
* ``subprocess_env(jit)``: the environment alone, for a subprocess that is not a JSON workload.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
TESTS = REPO / "tests"

#: how much of a failed subprocess's stderr the assertion message shows
STDERR_TAIL = 3000

# one line before ``code`` (so line N of ``code`` is line N + 1 in a traceback); its name is deleted again
_PRELUDE = ("import memdesc._numba as _nojit_nb; assert _nojit_nb.JIT_DISABLED is {disabled}, "
            "'NUMBA_DISABLE_JIT={flag} did not take effect'; del _nojit_nb\n")


def _mode(jit: bool) -> str:
    return "compiled (NUMBA_DISABLE_JIT=0)" if jit else "plain Python (NUMBA_DISABLE_JIT=1)"


def subprocess_env(jit: bool, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ plus ``env``, NUMBA_DISABLE_JIT for the mode, and PYTHONPATH = src:tests:<inherited>."""
    e = {**os.environ, **(env or {})}
    e["NUMBA_DISABLE_JIT"] = "0" if jit else "1"
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), *filter(None, [e.get("PYTHONPATH")])])
    return e


def run_json(code: str, *, jit: bool, args: Iterable[object] = (), env: Mapping[str, str] | None = None,
             input: str | None = None, timeout: float | None = 900, warnings_as_errors: bool = False) -> object:
    """Run ``code`` in a fresh interpreter in the given mode; the JSON of its last stdout line.

    ``args`` become ``sys.argv[1:]``, ``input`` its stdin; ``warnings_as_errors`` runs it with
    ``-W error::RuntimeWarning`` (an overflow numpy only warns about in plain Python fails)."""
    flags = ["-W", "error::RuntimeWarning"] if warnings_as_errors else []
    prelude = _PRELUDE.format(disabled=not jit, flag="0" if jit else "1")
    cmd = [sys.executable, *flags, "-c", prelude + code, *map(str, args)]
    p = subprocess.run(cmd, env=subprocess_env(jit, env), input=input, capture_output=True, text=True,
                       timeout=timeout, check=False)
    assert p.returncode == 0, (f"the {_mode(jit)} subprocess exited with {p.returncode}; "
                               f"stderr ends:\n{p.stderr[-STDERR_TAIL:]}")
    lines = p.stdout.strip().splitlines()
    assert lines, f"the {_mode(jit)} subprocess printed nothing; stderr ends:\n{p.stderr[-STDERR_TAIL:]}"
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise AssertionError(f"the {_mode(jit)} subprocess's last line is not JSON ({e}): {lines[-1][:500]!r}") from e


def _call_code(module: str, func: str) -> str:
    return f"import json\nimport {module} as _t\nprint(json.dumps(_t.{func}()))\n"


def call_json(module: str, func: str, *, jit: bool, **kw) -> object:
    """``module.func()`` (a module on the tests' path, e.g. a test file) in a subprocess, as JSON."""
    return run_json(_call_code(module, func), jit=jit, **kw)


def both(code: str, *, nojit_kw: Mapping | None = None, **kw) -> tuple[object, object]:
    """(plain Python, compiled): ``code`` run once in each mode; ``nojit_kw`` adds options for the
    plain Python run alone (e.g. ``warnings_as_errors``)."""
    return run_json(code, jit=False, **{**kw, **(nojit_kw or {})}), run_json(code, jit=True, **kw)


def both_call(module: str, func: str, **kw) -> tuple[object, object]:
    """(plain Python, compiled) of ``module.func()``."""
    return both(_call_code(module, func), **kw)


def jsonable(x: object) -> object:
    """``x`` as it reads back from JSON, to compare an in-process result with a subprocess's."""
    return json.loads(json.dumps(x))
