"""A recorded step on cuda: the step's kernels captured once as a CUDA graph, replayed by one launch.

UNMEASURED: written against CuPy 14's documented API (``Stream(non_blocking=True)``, ``begin_capture()``,
``end_capture() -> cupy.cuda.Graph``, ``Graph.launch(stream)``, ``cupy.cuda.using_allocator``) and never
run on a GPU in this project yet; tests/test_capture.py covers only the cpu replay.

How: the arguments are copied into static device buffers; the step runs once inside stream capture on a
non-blocking stream (nothing executes then: CuPy enqueues the kernels into the graph), with a private
memory pool, so that every array the step allocates keeps its address for the graph's life and no later
allocation outside the graph lands on it; the graph is then launched once to perform this call's step.
A replay copies the arguments into the static buffers and launches the graph on the current stream.

A CUDA graph freezes every host value handed to a kernel, and no host synchronization may happen inside
a capture. So a step is refused (it runs eagerly, with a CaptureWarning) when it
- synchronizes (``float(x)``, ``.item()``, a value check: cross_entropy skips its target-range check while
  a graph is captured when ignore_index cannot occur, as PyTorch's device-side assert would),
- computes per-step host scalars from an optimizer's step count (Adam, AdamW: their bias corrections are
  kernel arguments), or draws random numbers (dropout's Philox offset is a kernel argument too).
Optimizer step counts are advanced on the host at each replay (SGD with momentum reads them only on its
first step, which the eager first call takes).
"""
from .. import backend
from ..tensor import Tensor
from .. import _capture_hooks as hooks
from .program import NotCapturable, check_result


class GraphRecorder:
    """The hooks' recorder while a CUDA graph is captured: step counters advance at each replay;
    per-step scalars and random draws cannot be expressed in a graph."""
    graph = True

    def __init__(self):
        self.counters = {}            # id(state dict) -> (state dict, its step before the capture)
        self.refused = None

    def counter(self, states, step):
        for st in states:
            self.counters.setdefault(id(st), (st, step))
        return step

    def scalars(self, fn, args):
        if self.refused is None:
            self.refused = ("the step computes per-step host scalars from an optimizer's step count (Adam's bias "
                            "corrections), which a CUDA graph would freeze")
        return fn(*args)

    def fresh(self, fn, args):
        if self.refused is None:
            self.refused = "the step draws random numbers, whose offsets a CUDA graph would freeze"
        return fn(*args)


class GraphProgram:
    """A captured CUDA graph, its static input buffers, private memory pool and outputs."""

    def __init__(self, graph, pool, inputs, outputs, single, counter_states, keep):
        self.graph, self.pool, self.inputs, self.single = graph, pool, inputs, single
        self.outputs = outputs
        self.counter_states = counter_states
        self.keep = keep
        self.reads = []

    def replay(self, args):
        for i, buf in self.inputs:
            buf[...] = args[i].array
        self.graph.launch()
        for st in self.counter_states:
            st["step"] += 1
        return self.outputs[0] if self.single else self.outputs


def record_graph(fn, args):
    """Capture `fn(*args)` (cuda tensors) as a CUDA graph; see the module docstring."""
    cp = backend.cupy_module()
    if cp is None:
        raise RuntimeError("capture: cuda tensors but CuPy is not available")
    rng_before = dict(backend.RNG._counters)
    inputs, call_args = [], []
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            buf = a.array.copy()
            t = Tensor(buf)
            t.requires_grad = a.requires_grad
            inputs.append((i, buf))
            call_args.append(t)
        else:
            call_args.append(a)
    pool = cp.cuda.MemoryPool()
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.get_current_stream().synchronize()
    rec = GraphRecorder()
    hooks.recorder = rec
    graph, error, result = None, None, None
    try:
        with cp.cuda.using_allocator(pool.malloc), stream:
            stream.begin_capture()
            try:
                result = fn(*call_args)
            except Exception as e:            # e.g. a host sync, illegal while capturing
                error = e
            finally:
                try:
                    graph = stream.end_capture()
                except Exception as e:
                    error = error or e
    finally:
        hooks.recorder = None
    if error is None and rec.refused is None and backend.RNG._counters != rng_before:
        rec.refused = "the step draws random numbers, whose offsets a CUDA graph would freeze"
    if error is not None or rec.refused is not None:
        for st, step in rec.counters.values():     # nothing ran: the counters go back too
            st["step"] = step
        backend.RNG._counters.clear()
        backend.RNG._counters.update(rng_before)
        reason = rec.refused or f"the step cannot be captured as a CUDA graph ({type(error).__name__}: {error})"
        raise _eager_instead(fn, args, reason)
    check_result(result)
    single = isinstance(result, Tensor)
    outputs = tuple(Tensor(t.array) for t in ((result,) if single else result))
    graph.launch()                         # the capture executed nothing: this call's step runs now
    counter_states = [st for st, _ in rec.counters.values()]
    return GraphProgram(graph, pool, inputs, outputs, single, counter_states, keep=(call_args, result))


def _eager_instead(fn, args, reason):
    """NotCapturable carrying the result of the step run eagerly (the capture itself executed nothing)."""
    error = NotCapturable(reason)
    error.result = fn(*args)
    return error

