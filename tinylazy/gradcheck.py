"""gradcheck: compare the gradients backward computes with central finite differences.

For every checked input element x_j, (f(x + eps e_j) - f(x - eps e_j)) / (2 eps) approximates column j of
the Jacobian; backward, seeded with each output element's unit vector in turn, gives its rows. Both must
agree within atol + rtol * |numeric|. Use float64 inputs: in float32 the differences drown in rounding.
"""
import numpy as np

from . import backend
from .autograd import backward
from .grad_mode import no_grad
from .tensor import Tensor


class GradcheckError(RuntimeError):
    pass


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Compare backward's Jacobian with central finite differences, element by element.

    `inputs` is a tensor or a tuple of them (those with requires_grad are checked; use float64). Returns
    True, or raises `GradcheckError` naming the input, the element, and both values.
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [(n, t) for n, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for n, t in checked:
        if t.dtype != np.float64:
            raise ValueError(f"gradcheck: input {n} is {t.dtype}; finite differences need float64 inputs")

    def run():
        out = fn(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    outs = run()
    analytic = _analytic_jacobians(outs, checked)
    for n, t in checked:
        host = backend.to_device(t.array, "cpu", copy=True)
        for j in range(host.size):
            columns = []
            for sign in (1, -1):
                shifted = host.copy()
                shifted.reshape(-1)[j] += sign * eps
                t.array[...] = backend.to_device(shifted, t.device)
                with no_grad():
                    columns.append([backend.to_device(o.array, "cpu").astype(np.float64).reshape(-1) for o in run()])
            t.array[...] = backend.to_device(host, t.device)
            for k in range(len(outs)):
                numeric = (columns[0][k] - columns[1][k]) / (2 * eps)
                exact = analytic[(n, k)][:, j]
                bad = ~(np.abs(exact - numeric) <= atol + rtol * np.abs(numeric))
                if bad.any():
                    m = int(np.argmax(bad))
                    where = tuple(int(i) for i in np.unravel_index(j, host.shape))
                    raise GradcheckError(
                        f"gradcheck: input {n}, element {where}, output {k} element {m}: analytic "
                        f"{exact[m]!r} != numeric {numeric[m]!r} (atol={atol}, rtol={rtol})")
    return True


def _analytic_jacobians(outs, checked):
    """{(input n, output k): Jacobian (out.size x input.size)}, one backward per output element."""
    jac = {(n, k): np.zeros((o.array.size, t.array.size)) for n, t in checked for k, o in enumerate(outs)}
    saved = [t.grad for _, t in checked]
    for k, o in enumerate(outs):
        if not o.requires_grad:
            continue
        xp = backend.xp_of(o.array)
        for m in range(o.array.size):
            for _, t in checked:
                t.grad = None
            seed = xp.zeros(o.array.size, o.array.dtype)
            seed[m] = 1
            backward(o, seed.reshape(o.array.shape), retain_graph=True)
            for n, t in checked:
                if t.grad is not None:
                    jac[(n, k)][m] = backend.to_device(t.grad.array, "cpu").reshape(-1)
    for (_, t), g in zip(checked, saved):
        t.grad = g
    return jac
