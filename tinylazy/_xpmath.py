"""Array math that NumPy lacks, written once for NumPy and CuPy arrays (`xp` is either module).

- `erf(x, xp)`: the error function, to about one ulp in float64 (NumPy has no erf; GELU needs it).
- `philox4x32_10(...)` and `dropout_randoms(n, seed, offset, xp)`: the counter-based generator of
  kernels/dropout.cu, bit for bit, so that cpu and cuda draw the same dropout mask from the same
  (seed, offset).
"""
import numpy as np

# ---- erf ---------------------------------------------------------------------------------------------
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


def _poly(coeffs, s):
    """c0 + c1 s + c2 s^2 + ... by Horner's rule."""
    out = coeffs[-1] * s + coeffs[-2]
    for c in coeffs[-3::-1]:
        out *= s
        out += c
    return out


def erf(x, xp=np):
    """erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise, in x's floating dtype.

    Computed in float64 (then rounded to x's dtype) from four rational approximations:
    |x| < 0.84375: x + x R(x^2);  < 1.25: erf(1) + P(|x| - 1);  < 6: 1 - exp(-x^2 - 0.5625 + R(1/x^2)) / |x|;
    otherwise 1; odd in x; erf(nan) = nan.
    """
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x64 = xp.asarray(x, dtype=xp.float64)
    ax = xp.abs(x64)
    xs = xp.clip(x64, -0.84375, 0.84375)                                 # each branch sees only its own
    z = xs * xs                                                          # range, so no inf/inf warnings
    small = xs + xs * (_poly(_PP, z) / _poly(_QQ, z))                    # |x| < 0.84375, odd already
    s = xp.clip(ax, 0.84375, 1.25) - 1.0
    mid = _ERX + _poly(_PA, s) / _poly(_QA, s)                           # 0.84375 <= |x| < 1.25
    axb = xp.clip(ax, 1.25, 6.0)                                         # 1.25 <= |x| < 6 (clipped: no 1/0)
    s = 1.0 / (axb * axb)
    near = axb < 1.0 / 0.35
    ratio = xp.where(near, _poly(_RA, s) / _poly(_SA, s), _poly(_RB, s) / _poly(_SB, s))
    hi = (axb.view(xp.uint64) & xp.uint64(0xFFFFFFFF00000000)).view(xp.float64)   # axb with its low word zeroed
    big = 1.0 - xp.exp(-hi * hi - 0.5625) * xp.exp((hi - axb) * (hi + axb) + ratio) / axb
    positive = xp.where(ax < 1.25, mid, xp.where(ax < 6.0, big, 1.0))
    out = xp.where(ax < 0.84375, small, xp.copysign(positive, x64))
    out = xp.where(xp.isnan(x64), x64, out)
    return out.astype(dtype, copy=False)


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
