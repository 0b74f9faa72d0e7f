"""tl.capture: a recorded training step equals the eager step bit for bit, and replays without the engine."""
import functools
import warnings

import numpy as np
import pytest

import tinylazy as tl
import tinylazy.nn.functional as F
from tinylazy import autograd, nn, optim
from tinylazy.capturing import CaptureWarning, hooks
from tinylazy.capturing import plan as memory_plan
from tinylazy.capturing.program import Program

STEPS = 20


def _model(kind, dropout, bn):
    if kind == "lenet":
        layers = [nn.LazyConv2d(6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
        layers += [nn.LazyBatchNorm2d()] if bn else []
        layers += [nn.LazyConv2d(16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.LazyLinear(32), nn.ReLU()]
    else:
        layers = [nn.Flatten(), nn.LazyLinear(32)] + ([nn.LazyBatchNorm1d()] if bn else []) + [nn.ReLU()]
    layers += [nn.Dropout(0.3)] if dropout else []
    return nn.Sequential(*layers, nn.LazyLinear(10))


def _optimizer(kind, params):
    if kind == "sgd":
        return optim.SGD(params, lr=0.05)
    if kind == "momentum":
        return optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)
    return optim.Adam(params, lr=1e-3)


def _setup(model_kind="mlp", opt_kind="sgd", dropout=False, bn=False):
    tl.manual_seed(0)
    model = _model(model_kind, dropout, bn)
    opt = _optimizer(opt_kind, model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return model, opt, step


def _batches(model_kind, n=STEPS, batch=8, seed=1):
    rs = np.random.default_rng(seed)
    shape = (batch, 1, 12, 12) if model_kind == "lenet" else (batch, 1, 6, 6)
    return [(tl.tensor(rs.standard_normal(shape).astype(np.float32)), tl.tensor(rs.integers(0, 10, batch)))
            for _ in range(n)]


def _train(captured, batches, **kw):
    model, opt, step = _setup(**kw)
    if captured:
        step = tl.capture(step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureWarning)
        losses = [step(x, y).item() for x, y in batches]
    return model, opt, step, losses


def _state(model, opt):
    """Every array of the model (parameters and buffers) and of the optimizer's state, with step counts."""
    arrays = {k: v.array.copy() for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            arrays[f"opt.{i}.{k}"] = v.array.copy() if isinstance(v, tl.Tensor) else np.array(v)
    return arrays


CASES = [dict(opt_kind="sgd"), dict(opt_kind="momentum"), dict(opt_kind="adam"),
         dict(opt_kind="adam", dropout=True), dict(opt_kind="momentum", bn=True),
         dict(model_kind="lenet", opt_kind="momentum"), dict(model_kind="lenet", opt_kind="adam", bn=True, dropout=True)]


@pytest.mark.parametrize("plan", ("plan", "no-plan"))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_captured_step_equals_eager_bit_for_bit(case, plan, monkeypatch):
    if plan == "no-plan":
        monkeypatch.setenv("TINYLAZY_CAPTURE_PLAN", "0")
    batches = _batches(case.get("model_kind", "mlp"))
    m_eager, o_eager, _, l_eager = _train(False, batches, **case)
    m_cap, o_cap, step, l_cap = _train(True, batches, **case)
    assert [type(p) for p in step.programs.values()] == [Program]      # recorded once, replayed 18 times
    program, = step.programs.values()
    assert (program.plan is not None) == (plan == "plan")              # the planned program passed its check
    assert l_cap == l_eager
    want, got = _state(m_eager, o_eager), _state(m_cap, o_cap)
    assert want.keys() == got.keys()
    for k in want:
        assert want[k].dtype == got[k].dtype and want[k].tobytes() == got[k].tobytes(), k
    for pe, pc in zip(m_eager.parameters(), m_cap.parameters()):
        assert pe.grad.array.tobytes() == pc.grad.array.tobytes()         # .grad holds the last step's gradient


def test_adam_step_count_advances_with_each_replay():
    _, opt, _, _ = _train(True, _batches("mlp", n=7), opt_kind="adam")
    assert {st["step"] for st in opt.state.values()} == {7}


def test_replay_runs_no_tensor_function_or_optimizer_code(monkeypatch):
    model, opt, step = _setup(opt_kind="adam", dropout=True)
    step = tl.capture(step)
    (x, y), = _batches("mlp", n=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureWarning)
        step(x, y)
        step(x, y)

    def forbidden(*args, **kwargs):
        raise AssertionError("the replay ran engine code")
    monkeypatch.setattr(autograd.Function, "apply", classmethod(forbidden))
    monkeypatch.setattr(optim.Optimizer, "step", forbidden)
    monkeypatch.setattr(nn.Module, "__call__", forbidden)
    before = model[1].weight.array.copy()
    step(x, y)
    assert not np.array_equal(before, model[1].weight.array)


def test_new_shape_records_a_second_program():
    model, opt, step = _setup()
    step = tl.capture(step)
    small, large = _batches("mlp", n=1, batch=4)[0], _batches("mlp", n=1, batch=6)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureWarning)
        for x, y in (small, small, large, small, large, large):
            step(x, y)
    assert len(step.programs) == 2 and all(type(p) is Program for p in step.programs.values())
    step.reset()
    assert step.programs == {}


def test_capture_off_runs_eagerly(monkeypatch):
    monkeypatch.setenv("TINYLAZY_CAPTURE", "0")
    batches = _batches("mlp", n=4)
    _, _, step, losses = _train(True, batches, opt_kind="momentum")
    assert step.programs == {}
    monkeypatch.delenv("TINYLAZY_CAPTURE")
    assert losses == _train(False, batches, opt_kind="momentum")[3]


def test_returned_tensors_hold_the_outputs_until_the_next_call():
    model, opt, step = _setup()

    def two(x, y):
        loss = step(x, y)
        return loss, loss * 2
    captured = tl.capture(two)
    batches = _batches("mlp", n=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureWarning)
        outs = [captured(x, y) for x, y in batches[:3]]
        held = outs[2][0].item()
        assert outs[2][1].item() == np.float32(held) * 2
        captured(*batches[3])
    assert outs[2][0].item() != held            # the same buffers, now the fourth step's


def test_value_reads_are_reported_as_frozen():
    _, _, step = _setup()
    step = tl.capture(step)
    (x, y), = _batches("mlp", n=1)
    step(x, y)
    with pytest.warns(CaptureWarning, match="frozen"):
        step(x, y)
    assert any("__int__" in r for r in next(iter(step.programs.values())).reads)


def test_stateful_random_draws_fall_back_to_eager_with_a_warning():
    def run(captured):
        model, opt, step = _setup()

        def noisy(x, y):
            return step(x + tl.randn(*x.shape) * 0.1, y)
        f = tl.capture(noisy) if captured else noisy
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = [f(x, y).item() for x, y in _batches("mlp", n=5)]
        return losses, [str(w.message) for w in caught if w.category is CaptureWarning]
    eager, _ = run(False)
    captured, messages = run(True)
    assert captured == eager
    assert len(messages) == 1 and "stateful random generator" in messages[0]


def test_rebinding_state_falls_back_to_eager():
    def run(captured):
        tl.manual_seed(0)
        w = nn.Parameter(tl.randn(3))
        avg = tl.zeros(3)

        def f(x):
            loss = (w * x).sum()
            loss.backward()
            with tl.no_grad():
                avg.data = avg.array * 0.5 + w.grad.array       # a new array, not an in-place update
            w.grad = None
            return loss
        g = tl.capture(f) if captured else f
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for k in range(4):
                g(tl.ones(3) * k)
        return avg.array.copy(), [str(m.message) for m in caught if m.category is CaptureWarning]
    eager, _ = run(False)
    captured, messages = run(True)
    assert captured.tobytes() == eager.tobytes()
    assert len(messages) == 1 and "replaces a state array" in messages[0]


def test_bad_steps_raise_clear_errors():
    with pytest.raises(TypeError, match="expected a function"):
        tl.capture(3)
    step = tl.capture(lambda x: float(x.sum().item()))
    with pytest.raises(TypeError, match="must return a Tensor or a tuple of Tensors, got float"):
        step(tl.ones(2))
    step = tl.capture(lambda x, k: x * k)
    with pytest.raises(TypeError, match="positional arguments only"):
        step(tl.ones(2), k=2)
    step(tl.ones(2), 2)
    with pytest.raises(TypeError, match="hashable value"):
        step(tl.ones(2), [2])


def test_hooks_pass_values_through_outside_recording():
    assert not hooks.recording()
    assert hooks.counter([{"step": 3}], 3) == 3
    assert hooks.scalars(lambda s, a: (s * a, s + a), 2, 0.5) == (1.0, 2.5)
    assert hooks.fresh(lambda n: np.arange(n), 3).tolist() == [0, 1, 2]
    c = hooks.Counter(4, ({"step": 9},)) + 1
    assert c == 5 and c.current() == 10 and type(c * 2) is int


def test_reset_records_again_after_a_hyperparameter_change():
    batches = _batches("mlp", n=8)

    def run(captured):
        model, opt, step = _setup(opt_kind="adam")
        if captured:
            step = tl.capture(step)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CaptureWarning)
            for k, (x, y) in enumerate(batches):
                if k == 4:
                    opt.param_groups[0]["lr"] = 1e-2          # the learning rate is frozen in a program:
                    if captured:
                        step.reset()                           # record again
                step(x, y)
        return [p.array.copy() for p in model.parameters()]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(run(False), run(True)))


def test_cuda_graph_recorder_refuses_per_step_host_values():
    """The host-side logic of the CUDA graph path (the graph itself needs a GPU: see capturing/graph.py)."""
    from tinylazy.capturing.graph import GraphRecorder
    from tinylazy.ops.class_loss import _check_targets
    rec, st = GraphRecorder(), {"step": 3}
    assert rec.counter([st], 3) == 3 and rec.refused is None          # counters advance on the host
    assert rec.scalars(lambda s: (s * 2.0,), (3,)) == (6.0,)
    assert "step count" in rec.refused
    rec = GraphRecorder()
    rec.fresh(np.zeros, (2,))
    assert "random" in rec.refused
    bad = np.array([0, 7])
    with pytest.raises(IndexError, match="out of range"):
        _check_targets("cross_entropy", bad, 5, -100)
    hooks.recorder = GraphRecorder()
    try:
        assert hooks.capturing_graph()
        assert _check_targets("cross_entropy", bad, 5, -100) is False  # no host sync inside a graph capture
    finally:
        hooks.recorder = None


# --- the memory plan (capturing/plan.py) --------------------------------------------------------------
def _program(step):
    program, = step.programs.values()
    assert type(program) is Program
    return program


def _state_arrays(model, opt):
    arrays = [p.array for p in model.parameters()] + [p.grad.array for p in model.parameters()]
    arrays += [b.array for b in model.buffers()]
    for st in opt.state.values():
        arrays += [v.array if isinstance(v, tl.Tensor) else v for v in st.values() if isinstance(v, (tl.Tensor, np.ndarray))]
    return arrays


@pytest.mark.parametrize("model_kind", ("mlp", "lenet"))
def test_memory_plan_shrinks_the_program(model_kind, monkeypatch):
    batches = _batches(model_kind, n=3, batch=32)
    monkeypatch.setenv("TINYLAZY_CAPTURE_PLAN", "0")
    unplanned = _program(_train(True, batches, model_kind=model_kind, opt_kind="momentum")[2])
    monkeypatch.delenv("TINYLAZY_CAPTURE_PLAN")
    planned = _program(_train(True, batches, model_kind=model_kind, opt_kind="momentum")[2])
    assert unplanned.plan is None and planned.plan is not None
    assert planned.plan.arena_bytes < 0.8 * planned.plan.before_bytes
    saved = planned.plan.before_bytes - planned.plan.arena_bytes
    slack = 64 * planned.plan.temporaries             # slots start at multiples of 64 bytes
    assert abs(unplanned.buffer_bytes() - planned.buffer_bytes() - saved) <= slack
    assert len(planned.ops) == len(unplanned.ops)


def test_memory_plan_shares_memory_and_rebuilds_views():
    """Direct: c lives after a, so it takes a's memory; views (a reversed slice) are rebuilt on the arena."""
    x, out = np.arange(100.0), np.empty(100)
    a, b, c = np.empty(100), np.empty(100), np.empty(100)
    ops = [functools.partial(np.multiply, x, 2.0, out=a), functools.partial(np.add, a, 1.0, out=b),
           functools.partial(np.negative, b[::-1], out=(c,)), functools.partial(np.copyto, out[:50], c[:50])]
    new_ops, arena, plan = memory_plan.plan(ops, [a, b, c], protected=[x, out])
    assert (plan.temporaries, plan.before_bytes, plan.arena_bytes) == (3, 2400, 2 * 832)
    assert arena.ctypes.data % 64 == 0
    assert not any(np.shares_memory(arg, arena) for arg in (x, out))
    reversed_b = new_ops[2].args[0]
    assert reversed_b.strides == (-8,) and np.shares_memory(reversed_b, arena)
    assert np.shares_memory(new_ops[0].keywords["out"], new_ops[2].keywords["out"][0])     # a's slot, then c's
    for op in new_ops:
        op()
    assert np.array_equal(out[:50], -(2 * x[::-1] + 1)[:50])
    assert memory_plan.bounds(reversed_b) == (arena.ctypes.data + 832, arena.ctypes.data + 832 + 800)


def test_views_into_shared_buffers_stay_correct():
    def run(captured):
        tl.manual_seed(0)
        w = nn.Parameter(tl.randn(6, 4))
        opt = optim.SGD([w], lr=0.01, momentum=0.9)

        def f(x):
            opt.zero_grad()
            h = x @ w                                       # temporaries, seen through views below
            t = (h.T * 2).reshape(2, 16)
            b = t[:, ::2] * t[:, 1::2]
            r = h[::-1][1:] * 3                             # a view with a negative stride
            loss = b.sum() + r.sum() + (x.reshape(4, 12)[1:3] * h.reshape(4, 8).sum()).sum()
            loss.backward()
            opt.step()
            return loss
        g = tl.capture(f) if captured else f
        rs = np.random.default_rng(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CaptureWarning)
            losses = [g(tl.tensor(rs.standard_normal((8, 6)).astype(np.float32))).item() for _ in range(6)]
        return losses, w.array.copy(), g
    l_eager, w_eager, _ = run(False)
    l_cap, w_cap, step = run(True)
    assert l_cap == l_eager and w_cap.tobytes() == w_eager.tobytes()
    program = _program(step)
    assert program.plan is not None and program.plan.arena_bytes < program.plan.before_bytes
    views = [a for op in program.ops for a in memory_plan.arrays_in(op)
             if np.shares_memory(a, program.buffers) and not a.flags.c_contiguous]
    assert views                                          # strided views of shared buffers were bound


def test_state_and_outputs_never_share_the_plans_memory():
    batches = _batches("mlp", n=5)

    def run(captured):
        model, opt, _ = _setup(opt_kind="adam", bn=True)

        def two(x, y):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss, logits                 # a temporary of the step, returned: an output
        f = tl.capture(two) if captured else two
        got = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CaptureWarning)
            for x, y in batches:
                loss, logits = f(x, y)
                got.append((loss.item(), logits.array.tobytes()))
        return got, f, model, opt
    eager = run(False)[0]
    got, step, model, opt = run(True)
    assert got == eager
    program = _program(step)
    assert program.plan is not None
    for a in _state_arrays(model, opt) + [t.array for t in program.outputs] + [b for _, b in program.inputs]:
        assert not np.shares_memory(a, program.buffers)


@pytest.mark.parametrize("breakage", ("wrong-numbers", "raises"))
def test_a_plan_that_fails_its_check_falls_back_to_the_unplanned_program(breakage, monkeypatch):
    real, planned = memory_plan.plan, []

    def broken_plan(ops, created, protected):           # the plan loses its first op (x @ W into a temporary)
        ops, arena, plan = real(ops, created, protected)
        planned.append(plan)

        def fail():
            raise IndexError("forced")
        return [(lambda: None) if breakage == "wrong-numbers" else fail] + ops[1:], arena, plan
    monkeypatch.setattr(memory_plan, "plan", broken_plan)
    batches = _batches("mlp", n=6)
    m_eager, o_eager, _, l_eager = _train(False, batches, opt_kind="adam", dropout=True)
    m_cap, o_cap, step, l_cap = _train(True, batches, opt_kind="adam", dropout=True)
    assert len(planned) == 1                 # a plan was made (and broken) once
    program = _program(step)                 # a program was kept: the step does not run eagerly
    assert program.plan is None              # the unplanned one, checked in its turn
    assert l_cap == l_eager
    want, got = _state(m_eager, o_eager), _state(m_cap, o_cap)
    assert all(want[k].tobytes() == got[k].tobytes() for k in want)
