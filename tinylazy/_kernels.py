"""Loading and launching the custom CUDA kernels of kernels/*.cu: the GPU branch of `tinylazy.cuda`.

Each .cu file is compiled once per process by `cupy.RawModule` (NVRTC; CuPy caches the result on disk)
the first time one of its kernels is needed, and each kernel function is looked up once and kept. The
functions here assume that `usable(...)` said yes: C-contiguous CuPy arrays of one float dtype on one
device. Launch shapes: 256 threads per block, grid-stride loops over at most 32 blocks per SM.
Every launch goes through `_launch`, which counts them in `LAUNCHES` (the tests check that an optimizer
step is one launch).
"""
import os
from pathlib import Path

import numpy as np

from . import backend

BLOCK = 256
OPTIM_CHUNK = 2048          # elements of one parameter updated by one block of the fused optimizer step
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_WIDTH = {np.dtype(np.float32): 4, np.dtype(np.float64): 2}      # elements per 128-bit vector

LAUNCHES = 0                # custom kernel launches so far in this process
_SOURCES = {}               # file name -> source text, common.cuh pasted in
_MODULES = {}               # file name -> cupy.RawModule
_FUNCTIONS = {}             # kernel name -> cupy.RawKernel (CuPy loads it on each device as needed)
_SM_COUNT = {}              # device id -> number of SMs
_TABLES = {}                # optimizer chunk tables, keyed by the parameters' and states' pointers and sizes


def enabled():
    """False when the environment variable TINYLAZY_KERNELS is "0": every function then takes its reference path."""
    return os.environ.get("TINYLAZY_KERNELS", "1") != "0"


def usable(*arrays):
    """True when the custom kernels can run on these arrays: kernels enabled, every array a C-contiguous
    CuPy array of the first one's dtype (float32 or float64) and on its device."""
    first = arrays[0]
    if type(first) is np.ndarray or first.dtype not in _SUFFIX or not enabled():
        return False
    cp = backend.cupy_module()
    if cp is None:
        return False
    for a in arrays:
        if not isinstance(a, cp.ndarray) or a.dtype != first.dtype or not a.flags.c_contiguous \
                or a.device != first.device:
            return False
    return True


# ---- loading -----------------------------------------------------------------------------------------------
def kernel_dir():
    """The folder of the .cu files: tinylazy/kernels/ in an installed package, else the repository's kernels/."""
    here = Path(__file__).resolve().parent
    for folder in (here / "kernels", here.parent / "kernels"):
        if (folder / "common.cuh").is_file():
            return folder
    raise FileNotFoundError(f"tinylazy: no CUDA kernel sources in {here / 'kernels'} or {here.parent / 'kernels'}")


def source(file):
    """The text of kernels/<file> with `#include "common.cuh"` replaced by that file's text, as NVRTC gets it."""
    text = _SOURCES.get(file)
    if text is None:
        folder = kernel_dir()
        common = (folder / "common.cuh").read_text()
        text = _SOURCES[file] = (folder / file).read_text().replace('#include "common.cuh"', common)
    return text


def _function(file, name):
    fn = _FUNCTIONS.get(name)
    if fn is None:
        module = _MODULES.get(file)
        if module is None:
            cp = backend.cupy_module()
            module = _MODULES[file] = cp.RawModule(code=source(file), options=("-std=c++17",))
        fn = _FUNCTIONS[name] = module.get_function(name)
    return fn


def _launch(file, name, grid, block, args):
    global LAUNCHES
    _function(file, name)(grid, block, args)
    LAUNCHES += 1


def _grid(items, device):
    """Blocks for a grid-stride loop over `items` work items of one thread each (at least 1)."""
    sms = _SM_COUNT.get(device.id)
    if sms is None:
        sms = _SM_COUNT[device.id] = backend.cupy_module().cuda.Device(device.id).attributes["MultiProcessorCount"]
    return max(1, min(-(-items // BLOCK), 32 * sms))


def _sms(device):
    _grid(1, device)
    return _SM_COUNT[device.id]


# ---- elementwise.cu ----------------------------------------------------------------------------------------
def act_fwd(x, act):
    cp = backend.cupy_module()
    y = cp.empty_like(x)
    if x.size:
        with x.device:
            _launch("elementwise.cu", f"{act}_fwd_{_SUFFIX[x.dtype]}",
                    (_grid(-(-x.size // _WIDTH[x.dtype]), x.device),), (BLOCK,), (x, y, x.size))
    return y


def act_bwd(grad, saved, act):
    cp = backend.cupy_module()
    dx = cp.empty_like(grad)
    if grad.size:
        with grad.device:
            _launch("elementwise.cu", f"{act}_bwd_{_SUFFIX[grad.dtype]}",
                    (_grid(-(-grad.size // _WIDTH[grad.dtype]), grad.device),), (BLOCK,), (grad, saved, dx, grad.size))
    return dx


def bias_act_fwd(x, b, act, C, inner):
    cp = backend.cupy_module()
    y = cp.empty_like(x)
    if x.size:
        with x.device:
            _launch("elementwise.cu", f"bias_{act}_fwd_{_SUFFIX[x.dtype]}",
                    (_grid(-(-x.size // _WIDTH[x.dtype]), x.device),), (BLOCK,), (x, b, y, x.size, C, inner))
    return y


def bias_act_bwd(grad, saved, b, act, outer, C, inner):
    """dx = act'(...) * grad, and db[c] = sum of dx over everything but the channel axis (two launches)."""
    cp = backend.cupy_module()
    dx = cp.empty_like(grad)
    if grad.size == 0:
        return dx, cp.zeros(C, dtype=grad.dtype)
    suffix, dev = _SUFFIX[grad.dtype], grad.device
    with dev:
        if inner == 1:          # (rows, C): blocks of 32 x W columns, the rows cut into chunks for parallelism
            tiles = -(-C // (32 * _WIDTH[grad.dtype]))
            chunks = max(1, min(-(-outer // 8), -(-4 * _sms(dev) // tiles), 65535))
            rows_per_chunk = -(-outer // chunks)
            chunks = -(-outer // rows_per_chunk)
            partial = cp.empty((chunks, C), dtype=grad.dtype)
            _launch("elementwise.cu", f"bias_{act}_bwd_cols_{suffix}", (tiles, chunks), (32, 8),
                    (grad, saved, b, dx, partial, outer, C, rows_per_chunk))
        else:                   # (outer, C, inner): one warp per plane of `inner` elements
            partial = cp.empty((outer, C), dtype=grad.dtype)
            _launch("elementwise.cu", f"bias_{act}_bwd_planes_{suffix}", (_grid(outer * C * 32, dev),), (BLOCK,),
                    (grad, saved, b, dx, partial, outer * C, C, inner))
        db = cp.empty(C, dtype=grad.dtype)
        _launch("elementwise.cu", f"col_sum_{suffix}", (-(-C // 32),), (32, 8), (partial, db, partial.shape[0], C))
    return dx, db


# ---- softmax_xent.cu ---------------------------------------------------------------------------------------
def softmax_xent_fwd(logits, target, smoothing, ignore_index):
    cp = backend.cupy_module()
    rows, C = logits.shape
    loss, stats = cp.empty(rows, dtype=logits.dtype), cp.empty((rows, 2), dtype=logits.dtype)
    if rows:
        with logits.device:
            target = cp.ascontiguousarray(target, dtype=cp.int64)
            _launch("softmax_xent.cu", f"softmax_xent_fwd_{_SUFFIX[logits.dtype]}", (_grid(32 * rows, logits.device),),
                    (BLOCK,), (logits, target, loss, stats, rows, C, float(smoothing), int(ignore_index)))
    return loss, stats


def softmax_xent_bwd(grad_rows, logits, target, stats, smoothing, ignore_index):
    cp = backend.cupy_module()
    rows, C = logits.shape
    dz = cp.empty_like(logits)
    if rows:
        with logits.device:
            target = cp.ascontiguousarray(target, dtype=cp.int64)
            grad_rows = cp.ascontiguousarray(cp.broadcast_to(cp.asarray(grad_rows, dtype=logits.dtype), (rows,)))
            _launch("softmax_xent.cu", f"softmax_xent_bwd_{_SUFFIX[logits.dtype]}", (_grid(32 * rows, logits.device),),
                    (BLOCK,), (grad_rows, logits, target, stats, dz, rows, C, float(smoothing), int(ignore_index)))
    return dz


# ---- checks.cu ---------------------------------------------------------------------------------------------
def index_range(idx, lo, hi, err, slot):
    """err[slot] = 1 (on the device) when some value of idx (an int64 CuPy array) lies outside [lo, hi)."""
    if idx.size:
        with idx.device:
            _launch("checks.cu", "index_range", (_grid(idx.size, idx.device),), (BLOCK,),
                    (idx, idx.size, int(lo), int(hi), err, int(slot)))


def class_targets(target, C, ignore_index, dtype, err, slot):
    """err[slot] = 1 when a target other than ignore_index lies outside [0, C); returns the device array
    [kept, 1 / kept] (`dtype`; 1 / kept is 0 when kept == 0), kept = the number of targets != ignore_index."""
    cp = backend.cupy_module()
    with target.device:
        kept = cp.empty(2, dtype=dtype)
        _launch("checks.cu", f"class_targets_{_SUFFIX[np.dtype(dtype)]}", (1,), (BLOCK,),
                (target, target.size, int(C), int(ignore_index), kept, err, int(slot)))
    return kept


# ---- dropout.cu --------------------------------------------------------------------------------------------
def _i64(value):
    """A 64-bit pattern as the signed long long CuPy passes (seeds and offsets are taken modulo 2^64)."""
    value = int(value) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def dropout(x, seed, offset, threshold, scale):
    cp = backend.cupy_module()
    y = cp.empty_like(x)
    if x.size:
        with x.device:
            _launch("dropout.cu", f"dropout_{_SUFFIX[x.dtype]}", (_grid(-(-x.size // 4), x.device),), (BLOCK,),
                    (x, y, x.size, _i64(seed), _i64(offset), int(threshold), float(scale)))
    return y


def dropout_mask(shape, seed, offset, threshold):
    cp = backend.cupy_module()
    mask = cp.empty(shape, dtype=cp.bool_)
    if mask.size:
        _launch("dropout.cu", "dropout_mask", (_grid(-(-mask.size // 4), mask.device),), (BLOCK,),
                (mask, mask.size, _i64(seed), _i64(offset), int(threshold)))
    return mask


# ---- optim.cu ----------------------------------------------------------------------------------------------
def usable_lists(*lists):
    """`usable` for the optimizer: lists of arrays (a list may be None: not used), element i of every list of
    one size, all arrays C-contiguous CuPy arrays of one float dtype on one device."""
    present = [lst for lst in lists if lst is not None]
    arrays = [a for lst in present for a in lst]
    if not arrays or any(len(lst) != len(present[0]) for lst in present) or not usable(*arrays):
        return False
    return all(lst[i].size == present[0][i].size for lst in present for i in range(len(lst)))


class _ChunkTable:
    """The device tables of optim.cu for one set of parameters and state arrays.

    `rows`: one row [param*, state1*, state2*, count, slot, start] per chunk of at most OPTIM_CHUNK elements
    (pointers at the chunk's first element, 0 for an absent state list; `slot` is the parameter's position,
    `start` the chunk's first element). `grads`: one pointer per parameter. Both are built when the table
    is made; `grad_pointers(grads)` re-uploads the pointer array only when a gradient moved, which fresh
    gradients (zero_grad to None) rarely do: CuPy's memory pool hands the same blocks back step after step.
    """

    def __init__(self, cp, key):
        itemsize, rows = np.dtype(key[0]).itemsize, []
        for slot, (p_ptr, s_ptr, v_ptr, n) in enumerate(key[2:]):
            for start in range(0, n, OPTIM_CHUNK):
                at = start * itemsize
                rows.append((p_ptr + at, s_ptr and s_ptr + at, v_ptr and v_ptr + at, min(OPTIM_CHUNK, n - start),
                             slot, start))
        self.cp = cp
        self.rows = cp.asarray(np.array(rows, dtype=np.int64).reshape(-1, 6))
        self.grads, self._grad_ptrs = None, None

    def grad_pointers(self, grads):
        """The device array of the gradients' pointers (uploaded again only when one of them changed)."""
        ptrs = tuple(g.data.ptr for g in grads)
        if ptrs != self._grad_ptrs:
            self.grads, self._grad_ptrs = self.cp.asarray(np.array(ptrs, dtype=np.int64)), ptrs
        return self.grads


def _chunk_table(params, state1, state2):
    """The `_ChunkTable` of these parameters and state lists (a list may be None: not used), built once for
    a given set of arrays and kept, so a training step copies nothing to the device. Keyed on the arrays'
    pointers and sizes, never on the gradients."""
    none = [None] * len(params)
    key = (params[0].dtype.char, params[0].device.id) + tuple(
        (p.data.ptr, 0 if s is None else s.data.ptr, 0 if v is None else v.data.ptr, p.size)
        for p, s, v in zip(params, state1 or none, state2 or none))
    table = _TABLES.get(key)
    if table is None:
        if len(_TABLES) >= 64:
            _TABLES.clear()
        table = _TABLES[key] = _ChunkTable(backend.cupy_module(), key)
    return table


def sgd(params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, first_step):
    with params[0].device:
        table = _chunk_table(params, bufs if momentum != 0 else None, None)
        if len(table.rows):
            _launch("optim.cu", f"sgd_{_SUFFIX[params[0].dtype]}", (len(table.rows),), (BLOCK,),
                    (table.rows, table.grad_pointers(grads), float(lr), float(momentum), float(dampening),
                     float(weight_decay), int(bool(nesterov)), int(bool(first_step))))


def adam(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, beta2, eps, weight_decay, step_size,
         bias_correction2_sqrt, decoupled):
    with params[0].device:
        table = _chunk_table(params, exp_avgs, exp_avg_sqs)
        if len(table.rows):
            _launch("optim.cu", f"adam_{_SUFFIX[params[0].dtype]}", (len(table.rows),), (BLOCK,),
                    (table.rows, table.grad_pointers(grads), float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
                     float(step_size), float(bias_correction2_sqrt), int(bool(decoupled))))
