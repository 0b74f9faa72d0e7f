"""Hand-written NumPy references: the floor every benchmark compares tinylazy against.

No framework, no graph: each model's forward and backward are written out by hand, with the same BLAS that
tinylazy uses. They are written the way a careful NumPy programmer would (in-place updates where natural,
one BLAS call per product), not tuned beyond that. Each reference is also the oracle that the benchmarks
check tinylazy's and PyTorch's losses and gradients against.

All arrays are float32 unless said otherwise; `y` holds integer class indices.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


# --- softmax cross-entropy ------------------------------------------------------------------------
def xent_forward_backward(z, y):
    """Mean cross-entropy of logits z (N, C) against classes y (N,), and dL/dz = (softmax(z) - onehot) / N.
    Overwrites z (it becomes the gradient)."""
    n = z.shape[0]
    rows = np.arange(n)
    z -= z.max(axis=1, keepdims=True)
    picked = z[rows, y]
    np.exp(z, out=z)
    s = z.sum(axis=1)
    loss = float(np.mean(np.log(s) - picked))
    z /= s[:, None]                        # softmax
    z[rows, y] -= 1
    z *= np.float32(1.0 / n)
    return loss, z


# --- MLP 784-256-10 -------------------------------------------------------------------------------
class _SGDModel:
    """A model trained by SGD: float32 copies of `params`, updated in place by `step`; subclasses define
    loss_and_grads(x, y) -> (loss, grads in the order of params).

    With momentum mu (PyTorch's rule, no dampening): buf = g on the first step, buf = mu buf + g after;
    then p -= lr buf."""

    def __init__(self, params, lr, momentum=0.0):
        self.params = [np.array(p, np.float32) for p in params]
        self.lr = np.float32(lr)
        self.momentum = np.float32(momentum)
        self.bufs = None

    def step(self, x, y):
        loss, grads = self.loss_and_grads(x, y)
        if self.momentum:
            if self.bufs is None:
                self.bufs = [g.copy() for g in grads]
            else:
                for b, g in zip(self.bufs, grads):
                    b *= self.momentum
                    b += g
            for p, b, g in zip(self.params, self.bufs, grads):
                np.multiply(b, self.lr, out=g)         # the fresh gradient's array as scratch
                p -= g
            return loss
        for p, g in zip(self.params, grads):
            g *= self.lr
            p -= g
        return loss


class MLP(_SGDModel):
    """x -> relu(x W1^T + b1) W2^T + b2. `params` is [W1, b1, W2, b2] (PyTorch's Linear layout: weights are
    (out, in))."""

    def loss_and_grads(self, x, y):
        W1, b1, W2, b2 = self.params
        h = x @ W1.T
        h += b1
        np.maximum(h, 0, out=h)
        z = h @ W2.T
        z += b2
        loss, gz = xent_forward_backward(z, y)
        gW2 = gz.T @ h
        gb2 = gz.sum(axis=0)
        gh = gz @ W2
        gh *= h > 0                        # relu': h > 0 exactly where the pre-activation was
        gW1 = gh.T @ x
        gb1 = gh.sum(axis=0)
        return loss, [gW1, gb1, gW2, gb2]


# --- LeNet (d2l, ReLU + max-pooling) ---------------------------------------------------------------
def conv2d_forward(x, W, b, pad):
    """Stride-1 convolution by im2col: one copy of the windows into a (N*Ho*Wo, C*kh*kw) matrix, one BLAS
    product. Returns the output (N, O, Ho, Wo) as a transposed view and what backward needs."""
    n, c, h, w = x.shape
    o, _, kh, kw = W.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))           # (N, C, Ho, Wo, kh, kw), a view
    ho, wo = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    out = cols @ W.reshape(o, -1).T
    out += b
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), (cols, (n, c, h, w), pad)


def conv2d_backward(g, saved, W, need_x=True):
    """Gradients of conv2d_forward: dW = g2^T cols, db = sum g2, and (if need_x) dx by col2im, one
    vectorized add per kernel tap (kh*kw adds, no loop over pixels)."""
    cols, (n, c, h, w), pad = saved
    o, _, kh, kw = W.shape
    ho, wo = g.shape[2], g.shape[3]
    g2 = g.transpose(0, 2, 3, 1).reshape(-1, o)
    gW = (g2.T @ cols).reshape(W.shape)
    gb = g2.sum(axis=0)
    if not need_x:
        return None, gW, gb
    gcols = (g2 @ W.reshape(o, -1)).reshape(n, ho, wo, c, kh, kw)
    gxp = np.zeros((n, ho + kh - 1, wo + kw - 1, c), g.dtype)     # channels-last: contiguous taps
    for i in range(kh):
        for j in range(kw):
            gxp[:, i:i + ho, j:j + wo, :] += gcols[:, :, :, :, i, j]
    gx = gxp[:, pad:pad + h, pad:pad + w, :].transpose(0, 3, 1, 2)
    return gx, gW, gb


def relu_maxpool2_forward(a):
    """max_pool2d(relu(a), 2, 2) on (N, C, H, W) with even H, W. Returns the output and the mask of the
    window maxima. (A tie routes the gradient to every tied position; ties happen only at 0, where the
    ReLU's gradient is 0 anyway, so the gradient is exact.)"""
    n, c, h, w = a.shape
    r = np.maximum(a, 0).reshape(n, c, h // 2, 2, w // 2, 2)
    out = r.max(axis=(3, 5))
    mask = r == out[:, :, :, None, :, None]
    mask &= r > 0                          # the ReLU's gradient folded into the same mask
    return out, mask


def relu_maxpool2_backward(g, mask):
    n, c, h2, _, w2, _ = mask.shape
    return (mask * g[:, :, :, None, :, None]).reshape(n, c, 2 * h2, 2 * w2)


class LeNet(_SGDModel):
    """d2l's LeNet-5 with ReLU and max-pooling:
    conv(1->6, 5, pad 2) relu pool2 | conv(6->16, 5) relu pool2 | flatten | 400->120 relu | 120->84 relu |
    84->10, trained by plain SGD. `params`: [c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b]."""

    def loss_and_grads(self, x, y):
        c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b = self.params
        a1, s1 = conv2d_forward(x, c1w, c1b, 2)                 # (N, 6, 28, 28)
        p1, m1 = relu_maxpool2_forward(a1)                      # (N, 6, 14, 14)
        a2, s2 = conv2d_forward(p1, c2w, c2b, 0)                # (N, 16, 10, 10)
        p2, m2 = relu_maxpool2_forward(a2)                      # (N, 16, 5, 5)
        flat = p2.reshape(len(x), -1)
        h1 = flat @ f1w.T
        h1 += f1b
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ f2w.T
        h2 += f2b
        np.maximum(h2, 0, out=h2)
        z = h2 @ f3w.T
        z += f3b
        loss, gz = xent_forward_backward(z, y)
        g_f3w, g_f3b = gz.T @ h2, gz.sum(axis=0)
        gh2 = gz @ f3w
        gh2 *= h2 > 0
        g_f2w, g_f2b = gh2.T @ h1, gh2.sum(axis=0)
        gh1 = gh2 @ f2w
        gh1 *= h1 > 0
        g_f1w, g_f1b = gh1.T @ flat, gh1.sum(axis=0)
        gflat = gh1 @ f1w
        ga2 = relu_maxpool2_backward(gflat.reshape(p2.shape), m2)
        gp1, g_c2w, g_c2b = conv2d_backward(ga2, s2, c2w)
        ga1 = relu_maxpool2_backward(gp1, m1)
        _, g_c1w, g_c1b = conv2d_backward(ga1, s1, c1w, need_x=False)
        return loss, [g_c1w, g_c1b, g_c2w, g_c2b, g_f1w, g_f1b, g_f2w, g_f2b, g_f3w, g_f3b]


# --- Adam over many small parameters ---------------------------------------------------------------
class FlatAdam:
    """PyTorch's Adam (no weight decay) on parameters that live as views of ONE flat buffer, with their
    gradients in another: eleven NumPy calls per step whatever the number of parameters. This is the
    floor for a framework whose parameters are separate arrays (it must at least gather and scatter)."""

    def __init__(self, params, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        sizes = [p.size for p in params]
        self.flat = np.concatenate([p.ravel() for p in params]).astype(np.float32)
        self.gflat = np.concatenate([g.ravel() for g in grads]).astype(np.float32)
        bounds = np.cumsum([0] + sizes)
        self.views = [self.flat[a:b].reshape(p.shape) for a, b, p in zip(bounds[:-1], bounds[1:], params)]
        self.m = np.zeros_like(self.flat)
        self.v = np.zeros_like(self.flat)
        self.tmp = np.empty_like(self.flat)
        self.lr, self.b1, self.b2, self.eps, self.t = lr, betas[0], betas[1], eps, 0

    def step(self):
        self.t += 1
        g, m, v, tmp = self.gflat, self.m, self.v, self.tmp
        m *= self.b1                                   # m = b1 m + (1 - b1) g
        np.multiply(g, 1 - self.b1, out=tmp)
        m += tmp
        v *= self.b2                                   # v = b2 v + (1 - b2) g^2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - self.b2
        v += tmp
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        np.sqrt(v, out=tmp)                            # denom = sqrt(v) / sqrt(bc2) + eps
        tmp *= 1 / np.sqrt(bc2)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= -self.lr / bc1
        self.flat += tmp


# --- the 20-op chain ------------------------------------------------------------------------------
# (bench_chain.py holds it: `numpy_step` there is the hand-written forward and backward.)
