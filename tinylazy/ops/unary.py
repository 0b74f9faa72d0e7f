"""Unary ops: math and activations (exp, log, log1p, sqrt, rsqrt, sin, cos, abs, tanh, sigmoid, relu) and
conversions (clone, cast to a dtype, copy to a device), all differentiable.

An integer input computes in the default float dtype (as PyTorch does). tanh, sigmoid and relu state their
formulas plainly and hand them to `tinylazy.fast`, which runs custom CUDA kernels on cuda tensors instead.
"""
from .. import fast
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
    """y = tanh(x);  dy/dx = 1 - y**2. Saves the output. (`formula` and `derivative` are also the epilogue
    of linear(..., activation="tanh"), ops/epilogue.py; on cuda the kernels tanh_fwd / tanh_bwd run them.)"""
    _saves = (("y", -1),)
    fresh_grads = True
    saves_output = True

    @staticmethod
    def formula(x, out=None):                   # out: None, or x when it may be written over
        xp = xp_of(x)
        return xp.tanh(x, out=out)

    @staticmethod
    def derivative(g, y, out=None):             # g * dy/dx, from the output y
        return g * (1 - y * y)

    def forward(self, x):
        self.y = fast.act_fwd("tanh", self.formula, x)
        return self.y

    def backward(self, g):
        return fast.act_bwd("tanh", self.derivative, g, self.y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x)), computed from exp(-|x|) so it never overflows;  dy/dx = y (1 - y).
    Saves the output. (Kernels sigmoid_fwd / sigmoid_bwd on cuda.)"""
    _saves = (("y", -1),)
    fresh_grads = True
    saves_output = True

    @staticmethod
    def formula(x, out=None):
        xp = xp_of(x)
        e = xp.exp(-xp.abs(x))                  # exp(-|x|) <= 1
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @staticmethod
    def derivative(g, y, out=None):
        return g * (1 - y) * y

    def forward(self, x):
        self.y = fast.act_fwd("sigmoid", self.formula, x)
        return self.y

    def backward(self, g):
        return fast.act_bwd("sigmoid", self.derivative, g, self.y)


class Relu(Function):
    """y = max(x, 0) (a NaN passes);  dx = g where y > 0, else +0. Saves the output. (Kernels relu_fwd /
    relu_bwd on cuda.) Backward masks the incoming gradient in place when the engine says it holds it alone."""
    _saves = (("y", -1),)
    fresh_grads = True
    overwrites_grad = True
    saves_output = True

    @staticmethod
    def formula(x, out=None):
        xp = xp_of(x)
        return xp.maximum(x, 0, out=out)

    @staticmethod
    def derivative(g, y, out=None):
        # g * (y > 0), but as PyTorch's threshold_backward: +0 even where g is NaN or inf (a measured trick)
        return fast.tricks.relu_grad(g, y, xp_of(g), in_place=out is g)

    def forward(self, x):
        self.y = fast.act_fwd("relu", self.formula, x)
        return self.y

    def backward(self, g):
        return fast.act_bwd("relu", self.derivative, g, self.y, out=g if self.grad_owned else None)


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
