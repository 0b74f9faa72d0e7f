"""Unary ops: math and activations (exp, log, log1p, sqrt, rsqrt, sin, cos, abs, tanh, sigmoid, relu) and
conversions (clone, cast to a dtype, copy to a device), all differentiable.

An integer input computes in the default float dtype (as PyTorch does). tanh, sigmoid and relu run the
custom CUDA kernels on cuda tensors through `tinylazy.cuda` (whose other branch is the NumPy reference).
"""
from .. import cuda
from .. import dtypes as _dt
from ..autograd import Function
from ..backend import xp_of
from .elementwise import as_tensor_operand, float_input, mul


class Exp(Function):
    """y = exp(x);  dy/dx = y. Saves the output."""
    _saves = (("y", -1),)
    fresh_grads = True

    def forward(self, x):
        self.y = xp_of(x).exp(x)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    """y = log(x);  dy/dx = 1/x."""
    _saves = (("x", 0),)
    fresh_grads = True

    def forward(self, x):
        self.x = x
        return xp_of(x).log(x)

    def backward(self, g):
        return g / self.x


class Log1p(Function):
    """y = log(1 + x);  dy/dx = 1/(1 + x)."""
    _saves = (("x", 0),)
    fresh_grads = True

    def forward(self, x):
        self.x = x
        return xp_of(x).log1p(x)

    def backward(self, g):
        return g / (1 + self.x)


class Sqrt(Function):
    """y = sqrt(x);  dy/dx = 1/(2y). Saves the output."""
    _saves = (("y", -1),)
    fresh_grads = True

    def forward(self, x):
        self.y = xp_of(x).sqrt(x)
        return self.y

    def backward(self, g):
        return g / (2 * self.y)


class Rsqrt(Function):
    """y = 1/sqrt(x);  dy/dx = -y**3 / 2. Saves the output."""
    _saves = (("y", -1),)
    fresh_grads = True

    def forward(self, x):
        self.y = 1 / xp_of(x).sqrt(x)
        return self.y

    def backward(self, g):
        return -0.5 * g * self.y ** 3


class Sin(Function):
    """y = sin(x);  dy/dx = cos(x)."""
    _saves = (("x", 0),)
    fresh_grads = True

    def forward(self, x):
        self.x = x
        return xp_of(x).sin(x)

    def backward(self, g):
        return g * xp_of(g).cos(self.x)


class Cos(Function):
    """y = cos(x);  dy/dx = -sin(x)."""
    _saves = (("x", 0),)
    fresh_grads = True

    def forward(self, x):
        self.x = x
        return xp_of(x).cos(x)

    def backward(self, g):
        return -g * xp_of(g).sin(self.x)


class Abs(Function):
    """y = |x|;  dy/dx = sign(x) (0 at 0, as PyTorch)."""
    _saves = (("x", 0),)
    fresh_grads = True

    def forward(self, x):
        self.x = x
        return xp_of(x).abs(x)

    def backward(self, g):
        return g * xp_of(g).sign(self.x)


class Tanh(Function):
    """y = tanh(x);  dy/dx = 1 - y**2. Saves the output. (On cuda: a custom kernel, see kernels/elementwise.cu.)"""
    _saves = (("y", -1),)
    fresh_grads = True

    def forward(self, x):
        self.y = cuda.tanh_fwd(x)
        return self.y

    def backward(self, g):
        return cuda.tanh_bwd(g, self.y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x)), computed from exp(-|x|) so it never overflows;  dy/dx = y (1 - y).
    (On cuda: a custom kernel.)"""
    _saves = (("y", -1),)
    fresh_grads = True

    def forward(self, x):
        self.y = cuda.sigmoid_fwd(x)
        return self.y

    def backward(self, g):
        return cuda.sigmoid_bwd(g, self.y)


class Relu(Function):
    """y = max(x, 0);  dy/dx = 1 where x > 0, else 0. Saves the output. (On cuda: a custom kernel.)
    Backward masks the incoming gradient in place when the engine says it holds it alone."""
    _saves = (("y", -1),)
    fresh_grads = True
    overwrites_grad = True

    def forward(self, x):
        self.y = cuda.relu_fwd(x)
        return self.y

    def backward(self, g):
        return cuda.relu_bwd(g, self.y, overwrite_grad=self.grad_owned)


def _unary(cls, name):
    def op(x):
        return cls.apply(float_input(x, name))
    op.__name__ = name
    op.__doc__ = cls.__doc__
    return op


exp, log, log1p, sqrt, rsqrt = (_unary(c, n) for c, n in ((Exp, "exp"), (Log, "log"), (Log1p, "log1p"),
                                                         (Sqrt, "sqrt"), (Rsqrt, "rsqrt")))
sin, cos, tanh, sigmoid = (_unary(c, n) for c, n in ((Sin, "sin"), (Cos, "cos"), (Tanh, "tanh"),
                                                    (Sigmoid, "sigmoid")))


def abs(x):
    return Abs.apply(as_tensor_operand(x, None, "abs"))


def relu(x):
    return Relu.apply(as_tensor_operand(x, None, "relu"))


def square(x):
    return mul(x, x)


# --- copies and conversions ----------------------------------------------------------------------
class Clone(Function):
    """y = a copy of x;  dy/dx = 1."""
    _saves = ()
    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


class Cast(Function):
    """y = x as another dtype; the gradient is cast back to x's dtype."""
    _saves = ()
    fresh_grads = True

    def forward(self, x, dtype):
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return g.astype(self.dtype), None


class ToDevice(Function):
    """y = x copied to another device; the gradient is copied back."""
    _saves = ()
    fresh_grads = True

    def forward(self, x, dev):
        from .. import backend
        self.source = backend.device_of(x)
        return backend.to_device(x, dev)

    def backward(self, g):
        from .. import backend
        return backend.to_device(g, self.source, copy=True), None


def clone(x):
    return Clone.apply(x)


def cast(x, dtype):
    """`x` as `dtype` (differentiable between float dtypes); `x` itself when it already is."""
    dtype = _dt.to_dtype(dtype)
    if x.array.dtype == dtype:                   # .array: a lazy parameter raises its clear error here
        return x
    return Cast.apply(x, dtype)


def to_device(x, dev):
    """`x` on device `dev` (differentiable); `x` itself when it already is there."""
    from .. import backend
    dev = backend.device(dev)
    if x.device == dev:
        return x
    return ToDevice.apply(x, dev)


METHODS = ("clone", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "abs", "relu", "square")
__all__ = METHODS
