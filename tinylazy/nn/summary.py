"""`Module.summary(*examples)`: a table of layer path, type, output shape, parameter count and bytes.

It traces the forward on the meta device (see lazy.trace), so it costs no activation memory and no
FLOPs, works on a lazy model (the shapes come from the trace) and leaves the model exactly as it was.
"""
from ..tensor import Tensor
from . import lazy


class ModelSummary:
    """The result of `summary()`: `rows` of (path, type, output shape, params, bytes) and the totals.
    Printing it (or its repr in a REPL) shows the table."""

    def __init__(self, name, rows, total_params, trainable_params, total_bytes):
        self.name, self.rows = name, rows
        self.total_params, self.trainable_params, self.total_bytes = total_params, trainable_params, total_bytes

    def __str__(self):
        head = ("Layer (path)", "Type", "Output shape", "Params", "Bytes")
        body = [(p, t, s, f"{n:,}" if n else "--", f"{b:,}" if b else "--") for p, t, s, n, b in self.rows]
        widths = [max(len(r[i]) for r in [head] + body) for i in range(5)]

        def line(r):
            cells = [r[i].ljust(widths[i]) if i < 3 else r[i].rjust(widths[i]) for i in range(5)]
            return "  ".join(cells).rstrip()
        rule = "=" * len(line(head))
        out = [f"{self.name} summary", rule, line(head), "-" * len(rule)] + [line(r) for r in body]
        out += [rule, f"Total params: {self.total_params:,} ({self.trainable_params:,} trainable)",
                f"Params + buffers: {_human(self.total_bytes)}"]
        return "\n".join(out)

    __repr__ = __str__


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024


def _shape_of(out):
    if isinstance(out, Tensor):
        return str(list(out.shape))
    if isinstance(out, (tuple, list)):
        return ", ".join(_shape_of(o) for o in out)
    return type(out).__name__


def summary(module, examples, dtype=None):
    if not examples:
        raise TypeError("summary() needs an example input (a tensor, a meta tensor or a shape tuple), "
                        "e.g. net.summary((1, 1, 28, 28))")
    seen = {}          # id(module) -> (output shape, [(tensor id, numel, bytes, trainable)])

    def record(m, args, out):
        members = []
        for d in (m._parameters, m._buffers):
            for t in d.values():
                if t is not None:
                    array = t.array                        # real, or the meta array of the trace
                    members.append((id(t), array.size, array.size * array.dtype.itemsize,
                                    d is m._parameters and t.requires_grad, d is m._parameters))
        seen.setdefault(id(m), (_shape_of(out), members))

    modules = list(module.named_modules())
    lazy.trace(module, examples, dtype=dtype, keep=False, hooks=[(m, record) for _, m in modules])
    rows, counted, total, trainable, nbytes = [], set(), 0, 0, 0
    for path, m in modules:
        shape, members = seen.get(id(m), ("(not called)", []))
        params = sum(n for _, n, _, _, is_param in members if is_param)
        size = sum(b for _, _, b, _, _ in members)
        if path or params:
            rows.append(("  " * path.count(".") + (path or "(root)"), type(m).__name__, shape, params, size))
        for tid, n, b, train, is_param in members:
            if tid not in counted:
                counted.add(tid)
                nbytes += b
                if is_param:
                    total += n
                    trainable += n if train else 0
    return ModelSummary(type(module).__name__, rows, total, trainable, nbytes)
