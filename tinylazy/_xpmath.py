"""Array math that NumPy lacks, written once for NumPy and CuPy arrays (`xp` is either module).

- `erf(x, xp)`, `erfc(x, xp)`: the error function (to 1 ulp in float64) and its complement 1 - erf (to 2.5
  ulps, also where it is tiny); NumPy has neither. `normal_cdf(x, xp)` = Phi(x) through erfc: exact GELU is
  x Phi(x), and Phi's far negative tail would be lost in 1 + erf.
- `philox4x32_10(...)` and `dropout_randoms(n, seed, offset, xp)`: the counter-based generator of
  kernels/dropout.cu, bit for bit, so that cpu and cuda draw the same dropout mask from the same
  (seed, offset).
"""
import numpy as np

# ---- erf, erfc -----------------------------------------------------------------------------------------
# The piecewise rational approximations of fdlibm's s_erf.c, evaluated for every element and selected by
# |x|. Their coefficients carry this notice:
#   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
#   Developed at SunPro, a Sun Microsystems, Inc. business. Permission to use, copy, modify, and
#   distribute this software is freely granted, provided that this notice is preserved.
_ERX = 8.45062911510467529297e-01
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


_SQRT1_2 = 0.7071067811865476            # 1/sqrt(2)


def _poly(coeffs, s):
    """c0 + c1 s + c2 s^2 + ... by Horner's rule."""
    out = coeffs[-1] * s + coeffs[-2]
    for c in coeffs[-3::-1]:
        out *= s
        out += c
    return out


# The three approximations that erf and erfc share. Each takes its argument clipped to its own range, so
# every element can go through every branch (then `where` picks one) without inf/inf or overflow warnings.
def _small_ratio(x):
    """(xs, y): x clipped to [-0.84375, 0.84375] and y = PP(xs^2) / QQ(xs^2), so erf(xs) = xs + xs y."""
    xs = x.clip(-0.84375, 0.84375)
    z = xs * xs
    return xs, _poly(_PP, z) / _poly(_QQ, z)


def _mid_ratio(ax):
    """PA(s) / QA(s) with s = |x| - 1, |x| clipped to [0.84375, 1.25]: erf(|x|) = erx + this."""
    s = ax.clip(0.84375, 1.25) - 1.0
    return _poly(_PA, s) / _poly(_QA, s)


def _tail(ax, xp):
    """erfc(a) for a = |x| clipped to [1.25, 28]: exp(-a^2 - 0.5625 + R(1/a^2)) / a.

    exp(-a^2) is taken as exp(-h^2) exp((h - a)(h + a)), h = a with its low 32 bits zeroed, so that h^2
    is exact: a rounded a^2 (up to 784 here) would be off by up to 6e-14, a relative error of exp(-a^2)."""
    a = ax.clip(1.25, 28.0)
    s = 1.0 / (a * a)
    ratio = xp.where(a < 1.0 / 0.35, _poly(_RA, s) / _poly(_SA, s), _poly(_RB, s) / _poly(_SB, s))
    h = (a.view(xp.uint64) & xp.uint64(0xFFFFFFFF00000000)).view(xp.float64)
    return xp.exp(-h * h - 0.5625) * xp.exp((h - a) * (h + a) + ratio) / a


def _as_float64(x, xp):
    """(x as float64, the dtype to return): x's own floating dtype, float64 for integers."""
    x = xp.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    return x.astype(xp.float64, copy=False), dtype


def erf(x, xp=np):
    """erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise, in x's floating dtype.

    Computed in float64 (then rounded to x's dtype) from four rational approximations:
    |x| < 0.84375: x + x R(x^2);  < 1.25: erf(1) + P(|x| - 1);  < 6: 1 - erfc(|x|) (see `_tail`);
    otherwise 1; odd in x; erf(nan) = nan.
    """
    x64, dtype = _as_float64(x, xp)
    ax = xp.abs(x64)
    xs, y = _small_ratio(x64)
    positive = xp.where(ax < 1.25, _ERX + _mid_ratio(ax), xp.where(ax < 6.0, 1.0 - _tail(ax, xp), 1.0))
    out = xp.where(ax < 0.84375, xs + xs * y, xp.copysign(positive, x64))
    out = xp.where(xp.isnan(x64), x64, out)
    return out.astype(dtype, copy=False)


def _erfc64(x, xp):
    """erfc of a float64 array (fdlibm's branches, see `erfc`), as float64."""
    ax = xp.abs(x)
    xs, y = _small_ratio(x)
    small = xp.where(x < 0.25, 1.0 - (xs + xs * y), 0.5 - (xs * y + (xs - 0.5)))   # 1 - erf, no bits lost
    d = _mid_ratio(ax)
    mid = xp.where(x > 0, (1.0 - _ERX) - d, 1.0 + (_ERX + d))                      # 1 - erx is exact
    t = _tail(ax, xp)
    tail = xp.where(x > 0, t, 2.0 - t)
    beyond = xp.where(x > 0, 0.0, 2.0)                                              # |x| >= 28 and +-inf
    out = xp.where(ax < 0.84375, small, xp.where(ax < 1.25, mid, xp.where(ax < 28.0, tail, beyond)))
    return xp.where(xp.isnan(x), x, out)


def erfc(x, xp=np):
    """erfc(x) = 1 - erf(x), elementwise, in x's floating dtype, accurate in relative terms where it is tiny.

    1 - erf(x) loses digits as x grows (and is 0 from x = 6 on, where erfc(6) = 2e-17); this evaluates the
    approximations of `erf` (fdlibm's s_erf.c, in float64) so that nothing cancels:
      |x| < 0.84375:  1 - (x + x R(x^2)) for x < 1/4, else 1/2 - (x R(x^2) + (x - 1/2));
      |x| < 1.25:     (1 - erx) - P(x - 1) for x > 0, else 1 + (erx + P(|x| - 1));
      |x| < 28:       erfc(|x|) from `_tail` for x > 0, else 2 - that;
    beyond 0 (x >= 28) or 2 (x <= -28); erfc(nan) = nan.
    """
    x64, dtype = _as_float64(x, xp)
    return _erfc64(x64, xp).astype(dtype, copy=False)


def normal_cdf(x, xp=np):
    """Phi(x) = P(N(0, 1) <= x) = erfc(-x / sqrt2) / 2, elementwise, in x's floating dtype.

    Through erfc, not 1 + erf, so that the far negative tail keeps its relative precision
    (Phi(-10) = 7.6e-24, where 1 + erf(-10/sqrt2) rounds to 0). Computed in float64, rounded once."""
    x64, dtype = _as_float64(x, xp)
    return (0.5 * _erfc64(x64 * -_SQRT1_2, xp)).astype(dtype, copy=False)


# ---- Philox4x32-10 -------------------------------------------------------------------------------------
_M0, _M1 = 0xD2511F53, 0xCD9E8D57          # round multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85          # key increments (golden ratio, sqrt(3) - 1)
_MASK32 = 0xFFFFFFFF


def philox4x32_10(c0, c1, c2, c3, k0, k1, xp=np):
    """Philox4x32-10 (Salmon et al., SC 2011) on uint32 counter arrays c0..c3 with a 64-bit key (k0, k1
    as Python ints). Returns the 4 uint32 output arrays. Ten rounds of

        (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))

    with the key bumped by (W0, W1) between rounds; hi/lo are the halves of the 64-bit product.
    """
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint32) for c in (c0, c1, c2, c3))
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
        p0 = c0.astype(xp.uint64) * xp.uint64(_M0)
        p1 = c2.astype(xp.uint64) * xp.uint64(_M1)
        hi0, lo0 = (p0 >> xp.uint64(32)).astype(xp.uint32), p0.astype(xp.uint32)
        hi1, lo1 = (p1 >> xp.uint64(32)).astype(xp.uint32), p1.astype(xp.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ xp.uint32(k0), lo1, hi0 ^ c3 ^ xp.uint32(k1), lo0
    return c0, c1, c2, c3


def dropout_randoms(n, seed, offset, xp=np):
    """The n uint32 random numbers r_i, i < n, of a dropout call, exactly as kernels/dropout.cu draws them:
    counter g = offset + i; r_i = Philox4x32-10(key = seed, counter = (lo32(g/4), hi32(g/4), 0, 0))[g % 4].
    (seed and offset are taken modulo 2^64; offset + n must not wrap around 2^64.)"""
    seed, offset = int(seed) & 0xFFFFFFFFFFFFFFFF, int(offset) & 0xFFFFFFFFFFFFFFFF
    if n == 0:
        return xp.zeros(0, dtype=xp.uint32)
    first, last = offset >> 2, (offset + n - 1) >> 2                    # the Philox blocks that are needed
    q = xp.arange(last - first + 1, dtype=xp.uint64) + xp.uint64(first)
    outs = philox4x32_10(q.astype(xp.uint32), (q >> xp.uint64(32)).astype(xp.uint32), 0, 0,
                         seed & _MASK32, seed >> 32, xp)
    flat = xp.stack(outs, axis=1).reshape(-1)                            # r of counter 4 first + j is flat[j]
    start = offset & 3
    return flat[start:start + n]
