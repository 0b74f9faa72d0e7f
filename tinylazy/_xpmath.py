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
# The piecewise rational approximations of fdlibm's s_erf.c, each evaluated on the elements in its range of
# |x| (see `_piecewise`). Their coefficients carry this notice:
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
_RA_END = 1.0 / 0.35                     # the tail uses RA/SA below this |x|, RB/SB from it on


def _poly(coeffs, s):
    """c0 + c1 s + c2 s^2 + ... by Horner's rule, updating one new array in place (no temporaries)."""
    out = coeffs[-1] * s + coeffs[-2]
    for c in coeffs[-3::-1]:
        out *= s
        out += c
    return out


def _ratio(num, den, s):
    """num(s) / den(s) for two coefficient tuples."""
    out = _poly(num, s)
    out /= _poly(den, s)
    return out


# The three approximations that erf and erfc share. Each expects its argument inside its own range of |x|
# (see `_piecewise`), where it neither overflows nor warns.
def _small_ratio(x):
    """y = PP(x^2) / QQ(x^2) for |x| < 0.84375, so that erf(x) = x + x y."""
    return _ratio(_PP, _QQ, x * x)


def _mid_ratio(ax):
    """PA(s) / QA(s) with s = |x| - 1 for 0.84375 <= |x| < 1.25: erf(|x|) = erx + this."""
    return _ratio(_PA, _QA, ax - 1.0)


def _tail(a, num, den, xp):
    """erfc(a) for 1.25 <= a < 28: exp(-a^2 - 0.5625 + R(1/a^2)) / a, R = num/den (RA/SA or RB/SB).

    exp(-a^2) is taken as exp(-h^2) exp((h - a)(h + a)), h = a with its low 32 bits zeroed, so that h^2
    is exact: a rounded a^2 (up to 784 here) would be off by up to 6e-14, a relative error of exp(-a^2)."""
    ratio = _ratio(num, den, 1.0 / (a * a))
    h = (a.view(xp.uint64) & xp.uint64(0xFFFFFFFF00000000)).view(xp.float64)
    big = -h * h                                          # exp(-h^2 - 0.5625), updated in place
    big -= 0.5625
    xp.exp(big, out=big)
    small = h - a                                         # exp((h - a)(h + a) + ratio), likewise
    small *= h + a
    small += ratio
    xp.exp(small, out=small)
    big *= small
    big /= a
    return big


# The pieces of erf and erfc, one function per range of |x|; each takes (x, xp), x float64 inside its range.
# Every piece keeps fdlibm's order of operations (in place or not), so the rounding is fdlibm's.
def _erf_small(x, xp):
    """erf(x) = x + x y for |x| < 0.84375."""
    return x + x * _small_ratio(x)


def _erf_mid(x, xp):
    """erf(x) = +-(erx + PA/QA) for 0.84375 <= |x| < 1.25."""
    return xp.copysign(_ERX + _mid_ratio(xp.abs(x)), x)


def _erf_tail(num, den):
    """The piece erf(x) = +-(1 - erfc(|x|)) of the tail, with ratio num/den."""
    def piece(x, xp):
        return xp.copysign(1.0 - _tail(xp.abs(x), num, den, xp), x)
    return piece


def _erf_rest(x, xp):
    """erf(x) = +-1 for |x| >= 6 (+-inf included), erf(nan) = nan."""
    return xp.where(xp.isnan(x), x, xp.copysign(1.0, x))


def _erfc_small(x, xp):
    """erfc(x) = 1 - erf(x) for |x| < 0.84375, arranged so that no bits are lost."""
    xy = x * _small_ratio(x)
    low = x + xy                                          # x < 1/4: 1 - (x + x y)
    xp.subtract(1.0, low, out=low)
    high = x - 0.5                                        # else 1/2 - (x y + (x - 1/2))
    high += xy
    xp.subtract(0.5, high, out=high)
    return xp.where(x < 0.25, low, high)


def _erfc_mid(x, xp):
    """erfc(x) for 0.84375 <= |x| < 1.25: (1 - erx) - P (1 - erx is exact) or 1 + (erx + P) for x < 0."""
    d = _mid_ratio(xp.abs(x))
    return xp.where(x > 0, (1.0 - _ERX) - d, 1.0 + (_ERX + d))


def _erfc_tail(num, den):
    """The piece erfc(x) = erfc(|x|) for x > 0, 2 - erfc(|x|) for x < 0, of the tail, with ratio num/den."""
    def piece(x, xp):
        t = _tail(xp.abs(x), num, den, xp)
        return xp.where(x > 0, t, 2.0 - t)
    return piece


def _erfc_rest(x, xp):
    """erfc(x) = 0 for x >= 28 (+inf included), 2 for x <= -28; erfc(nan) = nan."""
    return xp.where(xp.isnan(x), x, xp.where(x > 0, 0.0, 2.0))


# (upper bound of |x|, piece) in increasing order; the rest piece takes larger |x| and nan.
_ERF_PIECES = ((0.84375, _erf_small), (1.25, _erf_mid), (_RA_END, _erf_tail(_RA, _SA)),
               (6.0, _erf_tail(_RB, _SB)))
_ERFC_PIECES = ((0.84375, _erfc_small), (1.25, _erfc_mid), (_RA_END, _erfc_tail(_RA, _SA)),
                (28.0, _erfc_tail(_RB, _SB)))


def _piecewise(x, xp, pieces, rest):
    """piece(x) elementwise for a float64 array x, the piece chosen by |x|: pieces = ((b1, f1), (b2, f2),
    ...) gives f1 for |x| < b1, f2 for b1 <= |x| < b2, ..., and rest for |x| >= the last bound and for nan.

    On NumPy each piece runs only on its own elements (gathered, computed, scattered back): evaluating every
    piece everywhere costs several times as much. On CuPy, where gathering means a device sync per piece,
    every piece runs on all elements, with |x| clipped into its range (so nothing overflows), and `where`
    picks. Either way each element goes through the same float64 operations: the results are identical."""
    shape, x = x.shape, x.reshape(-1)              # flat: index arrays are flat, and no 0-d array becomes a
    ax = xp.abs(x)                                  # NumPy scalar (the pieces update their arrays in place)
    if xp is not np:
        out = rest(x, xp)
        bounds = [0.0] + [hi for hi, _ in pieces]                 # bounds[k]: the low end of pieces[k]
        for k in reversed(range(len(pieces))):                    # the first piece whose |x| < hi wins
            hi, piece = pieces[k]
            out = xp.where(ax < hi, piece(xp.copysign(ax.clip(bounds[k], hi), x), xp), out)
        return out.reshape(shape)
    out = np.empty_like(x)
    lo = 0.0
    for hi, piece in pieces:
        inside = ax < hi
        if lo > 0.0:
            inside &= ax >= lo
        _apply_at(piece, x, out, inside)
        lo = hi
    _apply_at(rest, x, out, ~(ax < lo))          # ~(|x| < lo), not |x| >= lo: nan fails every compare
    return out.reshape(shape)


def _apply_at(piece, x, out, mask):
    """out[mask] = piece(x[mask]) for 1-d NumPy arrays, through an index array (faster than a boolean mask)."""
    idx = np.flatnonzero(mask)
    if idx.size:
        out[idx] = piece(x.take(idx), np)


_BLOCK = 1 << 16       # elements per block on NumPy: the float64 temporaries of a block stay in the CPU cache


def _in_float64(f, x, xp):
    """f(x as float64, xp) rounded to x's floating dtype (float64 for integer x); f is elementwise.

    On NumPy, f runs block by block: each block's float64 copy and temporaries fit in the CPU cache, which
    makes it about 1.5x as fast as one pass over a large array (f is elementwise: same results)."""
    x = xp.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    if xp is not np:
        return f(x.astype(xp.float64, copy=False), xp).astype(dtype, copy=False)
    flat = x.reshape(-1)
    out = np.empty(flat.shape, dtype)
    for start in range(0, flat.size, _BLOCK):
        out[start:start + _BLOCK] = f(flat[start:start + _BLOCK].astype(np.float64), np)
    return out.reshape(x.shape)


def _erf64(x, xp):
    """erf of a float64 array (fdlibm's branches, see `erf`), as float64."""
    return _piecewise(x, xp, _ERF_PIECES, _erf_rest)


def _erfc64(x, xp):
    """erfc of a float64 array (fdlibm's branches, see `erfc`), as float64."""
    return _piecewise(x, xp, _ERFC_PIECES, _erfc_rest)


def _normal_cdf64(x, xp):
    """Phi of a float64 array (see `normal_cdf`), as float64."""
    out = _erfc64(x * -_SQRT1_2, xp)
    out *= 0.5                                            # out is a new array: halve it in place
    return out


def erf(x, xp=np):
    """erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise, in x's floating dtype.

    Computed in float64 (then rounded to x's dtype) from four rational approximations:
    |x| < 0.84375: x + x R(x^2);  < 1.25: erf(1) + P(|x| - 1);  < 6: 1 - erfc(|x|) (see `_tail`);
    otherwise 1; odd in x; erf(nan) = nan.
    """
    return _in_float64(_erf64, x, xp)


def erfc(x, xp=np):
    """erfc(x) = 1 - erf(x), elementwise, in x's floating dtype, accurate in relative terms where it is tiny.

    1 - erf(x) loses digits as x grows (and is 0 from x = 6 on, where erfc(6) = 2e-17); this evaluates the
    approximations of `erf` (fdlibm's s_erf.c, in float64) so that nothing cancels:
      |x| < 0.84375:  1 - (x + x R(x^2)) for x < 1/4, else 1/2 - (x R(x^2) + (x - 1/2));
      |x| < 1.25:     (1 - erx) - P(x - 1) for x > 0, else 1 + (erx + P(|x| - 1));
      |x| < 28:       erfc(|x|) from `_tail` for x > 0, else 2 - that;
    beyond 0 (x >= 28) or 2 (x <= -28); erfc(nan) = nan.
    """
    return _in_float64(_erfc64, x, xp)


def normal_cdf(x, xp=np):
    """Phi(x) = P(N(0, 1) <= x) = erfc(-x / sqrt2) / 2, elementwise, in x's floating dtype.

    Through erfc, not 1 + erf, so that the far negative tail keeps its relative precision
    (Phi(-10) = 7.6e-24, where 1 + erf(-10/sqrt2) rounds to 0). Computed in float64, rounded once."""
    return _in_float64(_normal_cdf64, x, xp)


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
