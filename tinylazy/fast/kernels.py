"""Loading and launching the custom CUDA kernels of kernels/*.cu: the kernel side of `tinylazy.fast`.

Each .cu file is compiled once per process by `cupy.RawModule` (NVRTC; CuPy caches the result on disk)
the first time one of its kernels is needed, and each kernel function is looked up once and kept. The
functions here assume that `tinylazy.fast.usable(...)` said yes: C-contiguous CuPy arrays of one float
dtype on one device. Launch shapes: 256 threads per block, grid-stride loops over at most 32 blocks per
SM. Every launch goes through `_launch`, which counts them in `LAUNCHES` (the tests check that an optimizer
step is one launch).

Every extern "C" entry point is named once, in full, in the tables below (per dtype), so that
`grep relu_fwd_f32` finds the line that launches it.
"""
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import backend

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
BLOCK = 256
OPTIM_CHUNK = 2048          # elements of one parameter updated by one block of the fused optimizer step
VECTOR = {F32: 4, F64: 2}   # elements per 128-bit load; also the dtypes the kernels take


# ---- the entry points of kernels/*.cu, by dtype ------------------------------------------------------------
class Act(NamedTuple):
    """The five kernels of one activation and dtype in elementwise.cu (see kernels/README.md)."""
    fwd: str
    bwd: str
    bias_fwd: str
    bias_bwd_cols: str          # bias gradient of a (rows, C) array
    bias_bwd_planes: str        # bias gradient of an (outer, C, inner) array, inner > 1


ACT = {   # elementwise.cu
    ("identity", F32): Act("identity_fwd_f32", "identity_bwd_f32", "bias_identity_fwd_f32",
                           "bias_identity_bwd_cols_f32", "bias_identity_bwd_planes_f32"),
    ("identity", F64): Act("identity_fwd_f64", "identity_bwd_f64", "bias_identity_fwd_f64",
                           "bias_identity_bwd_cols_f64", "bias_identity_bwd_planes_f64"),
    ("relu", F32): Act("relu_fwd_f32", "relu_bwd_f32", "bias_relu_fwd_f32",
                       "bias_relu_bwd_cols_f32", "bias_relu_bwd_planes_f32"),
    ("relu", F64): Act("relu_fwd_f64", "relu_bwd_f64", "bias_relu_fwd_f64",
                       "bias_relu_bwd_cols_f64", "bias_relu_bwd_planes_f64"),
    ("gelu", F32): Act("gelu_fwd_f32", "gelu_bwd_f32", "bias_gelu_fwd_f32",
                       "bias_gelu_bwd_cols_f32", "bias_gelu_bwd_planes_f32"),
    ("gelu", F64): Act("gelu_fwd_f64", "gelu_bwd_f64", "bias_gelu_fwd_f64",
                       "bias_gelu_bwd_cols_f64", "bias_gelu_bwd_planes_f64"),
    ("gelu_tanh", F32): Act("gelu_tanh_fwd_f32", "gelu_tanh_bwd_f32", "bias_gelu_tanh_fwd_f32",
                            "bias_gelu_tanh_bwd_cols_f32", "bias_gelu_tanh_bwd_planes_f32"),
    ("gelu_tanh", F64): Act("gelu_tanh_fwd_f64", "gelu_tanh_bwd_f64", "bias_gelu_tanh_fwd_f64",
                            "bias_gelu_tanh_bwd_cols_f64", "bias_gelu_tanh_bwd_planes_f64"),
    ("sigmoid", F32): Act("sigmoid_fwd_f32", "sigmoid_bwd_f32", "bias_sigmoid_fwd_f32",
                          "bias_sigmoid_bwd_cols_f32", "bias_sigmoid_bwd_planes_f32"),
    ("sigmoid", F64): Act("sigmoid_fwd_f64", "sigmoid_bwd_f64", "bias_sigmoid_fwd_f64",
                          "bias_sigmoid_bwd_cols_f64", "bias_sigmoid_bwd_planes_f64"),
    ("tanh", F32): Act("tanh_fwd_f32", "tanh_bwd_f32", "bias_tanh_fwd_f32",
                       "bias_tanh_bwd_cols_f32", "bias_tanh_bwd_planes_f32"),
    ("tanh", F64): Act("tanh_fwd_f64", "tanh_bwd_f64", "bias_tanh_fwd_f64",
                       "bias_tanh_bwd_cols_f64", "bias_tanh_bwd_planes_f64"),
}
COL_SUM = {F32: "col_sum_f32", F64: "col_sum_f64"}                                  # elementwise.cu
SOFTMAX_XENT_FWD = {F32: "softmax_xent_fwd_f32", F64: "softmax_xent_fwd_f64"}       # softmax_xent.cu
SOFTMAX_XENT_BWD = {F32: "softmax_xent_bwd_f32", F64: "softmax_xent_bwd_f64"}
DROPOUT = {F32: "dropout_f32", F64: "dropout_f64"}                                  # dropout.cu
DROPOUT_MASK = "dropout_mask"
SGD = {F32: "sgd_f32", F64: "sgd_f64"}                                              # optim.cu
ADAM = {F32: "adam_f32", F64: "adam_f64"}
CLASS_TARGETS = {F32: "class_targets_f32", F64: "class_targets_f64"}                # checks.cu
INDEX_RANGE = "index_range"

ENTRY_POINTS = {     # file -> every name launched from it
    "elementwise.cu": {name for act in ACT.values() for name in act} | set(COL_SUM.values()),
    "softmax_xent.cu": set(SOFTMAX_XENT_FWD.values()) | set(SOFTMAX_XENT_BWD.values()),
    "dropout.cu": set(DROPOUT.values()) | {DROPOUT_MASK},
    "optim.cu": set(SGD.values()) | set(ADAM.values()),
    "checks.cu": set(CLASS_TARGETS.values()) | {INDEX_RANGE},
}
FILE_OF = {name: file for file, names in ENTRY_POINTS.items() for name in names}

LAUNCHES = 0                # custom kernel launches so far in this process
_SOURCES = {}               # file name -> source text, common.cuh pasted in
_MODULES = {}               # file name -> cupy.RawModule
_FUNCTIONS = {}             # kernel name -> cupy.RawKernel (CuPy loads it on each device as needed)
_SM_COUNT = {}              # device id -> number of SMs
_TABLES = {}                # optimizer chunk tables, keyed by the parameters' and states' pointers and sizes


# ---- loading and launching ---------------------------------------------------------------------------------
def kernel_dir():
    """The folder of the .cu files: tinylazy/kernels/ in an installed package, else the repository's kernels/."""
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "kernels", package.parent / "kernels"):
        if (folder / "common.cuh").is_file():
            return folder
    raise FileNotFoundError(f"tinylazy: no CUDA kernel sources in {package / 'kernels'} "
                            f"or {package.parent / 'kernels'}")


def source(file):
    """The text of kernels/<file> with `#include "common.cuh"` replaced by that file's text, as NVRTC gets it."""
    text = _SOURCES.get(file)
    if text is None:
        folder = kernel_dir()
        common = (folder / "common.cuh").read_text()
        text = _SOURCES[file] = (folder / file).read_text().replace('#include "common.cuh"', common)
    return text


def _function(name):
    """The kernel `name`, its file compiled on first use."""
    fn = _FUNCTIONS.get(name)
    if fn is None:
        file = FILE_OF[name]
        module = _MODULES.get(file)
        if module is None:
            module = _MODULES[file] = backend.cupy_module().RawModule(code=source(file), options=("-std=c++17",))
        fn = _FUNCTIONS[name] = module.get_function(name)
    return fn


def _launch(name, grid, block, args):
    global LAUNCHES
    _function(name)(grid, block, args)
    LAUNCHES += 1


def _grid(items, device):
    """Blocks for a grid-stride loop over `items` work items of one thread each (at least 1)."""
    return max(1, min(-(-items // BLOCK), 32 * _sms(device)))


def _sms(device):
    sms = _SM_COUNT.get(device.id)
    if sms is None:
        sms = _SM_COUNT[device.id] = backend.cupy_module().cuda.Device(device.id).attributes["MultiProcessorCount"]
    return sms


def _launch_1d(name, items, device, args):
    """A 1-D grid-stride launch over `items` work items on `device`; nothing when there are none (a grid
    of 0 blocks is invalid)."""
    if items:
        with device:
            _launch(name, (_grid(items, device),), (BLOCK,), args)


def _vectors(x):
    """Work items of an elementwise kernel over x: one 128-bit vector each."""
    return -(-x.size // VECTOR[x.dtype])


# ---- elementwise.cu ----------------------------------------------------------------------------------------
def act_fwd(act, x):
    y = backend.cupy_module().empty_like(x)
    _launch_1d(ACT[act, x.dtype].fwd, _vectors(x), x.device, (x, y, x.size))
    return y


def act_bwd(act, grad, saved):
    dx = backend.cupy_module().empty_like(grad)
    _launch_1d(ACT[act, grad.dtype].bwd, _vectors(grad), grad.device, (grad, saved, dx, grad.size))
    return dx


def bias_act_fwd(act, x, b, C, inner):
    y = backend.cupy_module().empty_like(x)
    _launch_1d(ACT[act, x.dtype].bias_fwd, _vectors(x), x.device, (x, b, y, x.size, C, inner))
    return y


def bias_act_bwd(act, grad, saved, b, outer, C, inner):
    """dx = act'(...) * grad, and db[c] = sum of dx over everything but the channel axis (two launches)."""
    cp = backend.cupy_module()
    dx = cp.empty_like(grad)
    if grad.size == 0:
        return dx, cp.zeros(C, dtype=grad.dtype)
    kernels, dev = ACT[act, grad.dtype], grad.device
    with dev:
        if inner == 1:          # (rows, C): blocks of 32 x W columns, the rows cut into chunks for parallelism
            tiles = -(-C // (32 * VECTOR[grad.dtype]))
            chunks = max(1, min(-(-outer // 8), -(-4 * _sms(dev) // tiles), 65535))
            rows_per_chunk = -(-outer // chunks)
            chunks = -(-outer // rows_per_chunk)
            partial = cp.empty((chunks, C), dtype=grad.dtype)
            _launch(kernels.bias_bwd_cols, (tiles, chunks), (32, 8),
                    (grad, saved, b, dx, partial, outer, C, rows_per_chunk))
        else:                   # (outer, C, inner): one warp per plane of `inner` elements
            partial = cp.empty((outer, C), dtype=grad.dtype)
            _launch(kernels.bias_bwd_planes, (_grid(outer * C * 32, dev),), (BLOCK,),
                    (grad, saved, b, dx, partial, outer * C, C, inner))
        db = cp.empty(C, dtype=grad.dtype)
        _launch(COL_SUM[grad.dtype], (-(-C // 32),), (32, 8), (partial, db, partial.shape[0], C))
    return dx, db


# ---- softmax_xent.cu ---------------------------------------------------------------------------------------
def softmax_xent_fwd(logits, target, smoothing, ignore_index):
    cp = backend.cupy_module()
    rows, C = logits.shape
    loss, stats = cp.empty(rows, dtype=logits.dtype), cp.empty((rows, 2), dtype=logits.dtype)
    if rows:
        with logits.device:
            target = cp.ascontiguousarray(target, dtype=cp.int64)
        _launch_1d(SOFTMAX_XENT_FWD[logits.dtype], 32 * rows, logits.device,
                   (logits, target, loss, stats, rows, C, float(smoothing), int(ignore_index)))
    return loss, stats


def softmax_xent_bwd(grad_rows, logits, target, stats, smoothing, ignore_index):
    cp = backend.cupy_module()
    rows, C = logits.shape
    dz = cp.empty_like(logits)
    if rows:
        with logits.device:
            target = cp.ascontiguousarray(target, dtype=cp.int64)
            grad_rows = cp.ascontiguousarray(cp.broadcast_to(cp.asarray(grad_rows, dtype=logits.dtype), (rows,)))
        _launch_1d(SOFTMAX_XENT_BWD[logits.dtype], 32 * rows, logits.device,
                   (grad_rows, logits, target, stats, dz, rows, C, float(smoothing), int(ignore_index)))
    return dz


# ---- checks.cu ---------------------------------------------------------------------------------------------
def index_range(idx, lo, hi, err, slot):
    """err[slot] = 1 (on the device) when some value of idx (an int64 CuPy array) lies outside [lo, hi)."""
    _launch_1d(INDEX_RANGE, idx.size, idx.device, (idx, idx.size, int(lo), int(hi), err, int(slot)))


def class_targets(target, C, ignore_index, dtype, err, slot):
    """err[slot] = 1 when a target other than ignore_index lies outside [0, C); returns the device array
    [kept, 1 / kept] (`dtype`; 1 / kept is 0 when kept == 0), kept = the number of targets != ignore_index."""
    cp = backend.cupy_module()
    with target.device:
        kept = cp.empty(2, dtype=dtype)
        _launch(CLASS_TARGETS[np.dtype(dtype)], (1,), (BLOCK,),
                (target, target.size, int(C), int(ignore_index), kept, err, int(slot)))
    return kept


# ---- dropout.cu --------------------------------------------------------------------------------------------
def _i64(value):
    """A 64-bit pattern as the signed long long CuPy passes (seeds and offsets are taken modulo 2^64)."""
    value = int(value) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def dropout(x, seed, offset, threshold, scale):
    y = backend.cupy_module().empty_like(x)
    _launch_1d(DROPOUT[x.dtype], -(-x.size // 4), x.device,
               (x, y, x.size, _i64(seed), _i64(offset), int(threshold), float(scale)))
    return y


def dropout_mask(shape, seed, offset, threshold):
    cp = backend.cupy_module()
    mask = cp.empty(shape, dtype=cp.bool_)
    _launch_1d(DROPOUT_MASK, -(-mask.size // 4), mask.device,
               (mask, mask.size, _i64(seed), _i64(offset), int(threshold)))
    return mask


# ---- optim.cu ----------------------------------------------------------------------------------------------
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
            _launch(SGD[params[0].dtype], (len(table.rows),), (BLOCK,),
                    (table.rows, table.grad_pointers(grads), float(lr), float(momentum), float(dampening),
                     float(weight_decay), int(bool(nesterov)), int(bool(first_step))))


def adam(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, beta2, eps, weight_decay, step_size,
         bias_correction2_sqrt, decoupled):
    with params[0].device:
        table = _chunk_table(params, exp_avgs, exp_avg_sqs)
        if len(table.rows):
            _launch(ADAM[params[0].dtype], (len(table.rows),), (BLOCK,),
                    (table.rows, table.grad_pointers(grads), float(lr), float(beta1), float(beta2), float(eps),
                     float(weight_decay), float(step_size), float(bias_correction2_sqrt), int(bool(decoupled))))
