"""How much code a reader must follow to answer "how does LazyLinear get its weight".

    PYTHONPATH=. python bench/reading_question.py          # per file: functions, lines; then the total

It runs ``lin = nn.LazyLinear(256)`` and ``lin(x)`` under `sys.settrace` and records every tinylazy function
that executes, from the constructor until the moment ``lin.weight`` holds an array (initialization and the
forward itself come after, so they are not counted). Each function counts with all its lines (``def`` to its
last line, docstring included), once however often it runs. Functions of the files a reader of the tour has
already read before the lazy machinery (backend, dtypes, tensor, autograd: where data lives and what a
tensor is) and module.py's plain registration and calling are listed apart, since the question is about
laziness, not about how an array is allocated or a module called. For the other files the module docstring
counts too: a reader opens a file there.
"""
import ast
import os
import sys
from collections import defaultdict

import numpy as np

import tinylazy as tl
from tinylazy import nn

ROOT = os.path.dirname(os.path.abspath(tl.__file__))
EARLIER = {"backend.py", "dtypes.py", "tensor.py", "autograd.py", "meta.py", "errors.py", "size.py",
           "nn/module.py"}


def _functions(path, cache={}):
    """[(first line, last line, name)] of every function in `path`."""
    if path not in cache:
        with open(path) as f:
            tree = ast.parse(f.read())
        cache[path] = [(min([n.lineno] + [d.lineno for d in n.decorator_list]), n.end_lineno, n.name)
                       for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return cache[path]


def _docstring_lines(path):
    with open(path) as f:
        tree = ast.parse(f.read())
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def _outermost_def(path, line):
    """The function a reader reads for code at `line`: the innermost def containing it, but a nested def or
    lambda counts as part of the function around it."""
    around = [f for f in _functions(path) if f[0] <= line <= f[1]]
    return min(around, key=lambda f: f[0]) if around else None


def reached():
    """{(file, (first, last, name))} of the tinylazy functions run until `lin.weight` has an array."""
    seen, box = set(), {}

    def tracer(frame, event, arg):
        if event != "call":
            return None
        lin = box.get("lin")
        if lin is not None and not lin.weight.is_lazy:
            sys.settrace(None)
            return None
        path = frame.f_code.co_filename
        if path.startswith(ROOT):
            fn = _outermost_def(path, frame.f_code.co_firstlineno)
            if fn is not None:
                seen.add((os.path.relpath(path, ROOT), fn))
        return None

    x = tl.tensor(np.ones((2, 20), np.float32))
    sys.settrace(tracer)
    try:
        box["lin"] = nn.LazyLinear(256)
        box["lin"](x)
    finally:
        sys.settrace(None)
    return seen


def main():
    by_file = defaultdict(list)
    for path, fn in reached():
        by_file[path].append(fn)
    totals = {"lazy": [0, 0], "earlier": [0, 0]}
    for path in sorted(by_file, key=lambda p: (p in EARLIER, p)):
        fns = sorted(by_file[path])
        lines = sum(last - first + 1 for first, last, _ in fns)
        kind = "earlier" if path in EARLIER else "lazy"
        if kind == "lazy":
            lines += _docstring_lines(os.path.join(ROOT, path))
        totals[kind][0] += 1
        totals[kind][1] += lines
        print(f"{path:22s} {lines:4d} lines  {', '.join(name for _, _, name in fns)}"
              + ("   (read earlier on the tour)" if kind == "earlier" else ""))
    (nf, nl), (ef, el) = totals["lazy"], totals["earlier"]
    print(f"to read for the question: {nl} lines in {nf} files (+ {el} lines in {ef} files read earlier on the tour)")


if __name__ == "__main__":
    main()
