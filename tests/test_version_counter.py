"""Version counters: a tensor that a node saved for backward and that changed in place before backward is
an error naming the op, never a silently wrong gradient. Every scenario runs on tinylazy and on PyTorch
(`lib` is either module): both must raise, or both must give the same gradients."""
import numpy as np
import pytest

import tinylazy as tl

torch = pytest.importorskip("torch")

INPLACE_ERROR = "modified by an inplace operation"


def _run(scenario):
    """(tinylazy's outcome, torch's outcome): the gradients as NumPy arrays, or the error raised."""
    outcomes = []
    for lib in (tl, torch):
        try:
            outcomes.append([np.asarray(g.detach().numpy()) for g in scenario(lib)])
        except RuntimeError as e:
            outcomes.append(e)
    return outcomes


def assert_both_raise(scenario):
    ours, theirs = _run(scenario)
    assert isinstance(theirs, RuntimeError) and INPLACE_ERROR in str(theirs), f"torch: {theirs!r}"
    assert isinstance(ours, RuntimeError), f"tinylazy gave gradients {ours} where torch raises"
    assert INPLACE_ERROR in str(ours)
    return ours


def assert_same_gradients(scenario):
    ours, theirs = _run(scenario)
    assert not isinstance(theirs, Exception), f"torch raised {theirs!r}"
    assert not isinstance(ours, Exception), f"tinylazy raised {ours!r} where torch does not"
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def _w_times_x(lib):
    w = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
    x = lib.tensor([3.0, 4.0], dtype=lib.float64)
    return w, x, (w * x).sum()


# --- the six cases: PyTorch raises in each ------------------------------------------------
def test_iadd_on_a_saved_input_raises_naming_the_op_the_shape_and_both_versions():
    def scenario(lib):
        w, x, y = _w_times_x(lib)
        x += 10
        y.backward()
        return [w.grad]

    err = assert_both_raise(scenario)
    msg = str(err)
    assert "Mul" in msg and "(2,)" in msg and "version 1" in msg and "expected version 0" in msg


def test_copy_into_a_saved_input_raises():
    def scenario(lib):
        w, x, y = _w_times_x(lib)
        x.copy_(lib.tensor([0.0, 0.0], dtype=lib.float64))
        y.backward()
        return [w.grad]

    assert_both_raise(scenario)


def test_setitem_on_a_saved_input_raises():
    def scenario(lib):
        w, x, y = _w_times_x(lib)
        x[0] = 7.0
        y.backward()
        return [w.grad]

    assert_both_raise(scenario)


def test_zero_under_no_grad_on_a_saved_output_raises():
    def scenario(lib):
        x = lib.tensor([0.5, -1.0], dtype=lib.float64, requires_grad=True)
        y = x.exp()
        with lib.no_grad():
            y.zero_()
        y.sum().backward()
        return [x.grad]

    err = assert_both_raise(scenario)
    assert "Exp" in str(err) and "output 0" in str(err)


def test_iadd_under_no_grad_on_a_saved_output_raises():
    def scenario(lib):
        x = lib.tensor([0.5, -1.0], dtype=lib.float64, requires_grad=True)
        y = x.sigmoid()
        with lib.no_grad():
            y += 1
        y.sum().backward()
        return [x.grad]

    err = assert_both_raise(scenario)
    assert "Sigmoid" in str(err)


def _mlp(lib):
    gen = np.random.default_rng(0)
    net = lib.nn.Sequential(lib.nn.Linear(3, 5), lib.nn.ReLU(), lib.nn.Linear(5, 2)).double()
    with lib.no_grad():
        for p in net.parameters():
            p.copy_(lib.tensor(gen.standard_normal(tuple(p.shape))))
    x = lib.tensor(gen.standard_normal((4, 3)))
    return net, x


def test_scaling_weights_under_no_grad_between_forward_and_backward_raises():
    def scenario(lib):                   # weight clipping / EMA done at the wrong place
        net, x = _mlp(lib)
        loss = net(x).square().sum()
        with lib.no_grad():
            for p in net.parameters():
                p *= 0.5
        loss.backward()
        return [p.grad for p in net.parameters()]

    assert_both_raise(scenario)


def test_scaling_the_weight_of_a_plain_matmul_chain_raises():
    def scenario(lib):
        gen = np.random.default_rng(1)
        w1 = lib.tensor(gen.standard_normal((3, 4)), requires_grad=True)
        w2 = lib.tensor(gen.standard_normal((4, 2)), requires_grad=True)
        x = lib.tensor(gen.standard_normal((5, 3)))
        loss = (lib.relu(x @ w1) @ w2).sum()
        with lib.no_grad():
            w2 *= 0.5
        loss.backward()
        return [w1.grad, w2.grad]

    assert_both_raise(scenario)


# --- what does not raise, in PyTorch either --------------------------------------------------------
def test_changing_an_input_that_no_node_saved_is_fine():
    def scenario(lib):
        w = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        x = lib.tensor([3.0, 4.0], dtype=lib.float64)
        y = ((w + x) * w).sum()          # Add saves nothing of x
        x += 10
        y.backward()
        return [w.grad]

    assert_same_gradients(scenario)


def test_an_operand_saved_only_for_a_gradient_nobody_needs_is_not_watched():
    def scenario(lib):                   # w * x with x not requiring grad: Mul needs x, not w
        w, x, y = _w_times_x(lib)
        with lib.no_grad():
            w *= 3
        y.backward()
        return [w.grad]

    assert_same_gradients(scenario)


def test_first_layer_weight_and_the_biases_may_change_before_backward():
    def scenario(lib):                   # the input needs no gradient, so no node needs W1; nor any bias
        net, x = _mlp(lib)
        loss = net(x).square().sum()
        with lib.no_grad():
            net[0].weight *= 0.5
            net[0].bias += 1
            net[2].bias += 1
        loss.backward()
        return [p.grad for p in net.parameters()]

    assert_same_gradients(scenario)


def test_data_is_the_escape_hatch_autograd_does_not_watch():
    def scenario(lib):
        w, x, y = _w_times_x(lib)
        x.data += 10                     # not seen: the gradient uses the new values (as in PyTorch)
        y.backward()
        return [w.grad]

    assert_same_gradients(scenario)
    w, x, y = _w_times_x(tl)
    x.data += 10
    y.backward()
    assert w.grad.tolist() == [13.0, 14.0] and x._version == 0


def test_optimizer_steps_after_backward_do_not_trip_the_check():
    def scenario(lib):
        net, x = _mlp(lib)
        opt = lib.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
        return [p.grad for p in net.parameters()] + [p.detach() for p in net.parameters()]

    assert_same_gradients(scenario)


def test_an_optimizer_step_between_two_backwards_of_a_retained_graph_raises():
    def scenario(lib):
        net, x = _mlp(lib)
        opt = lib.optim.Adam(net.parameters(), lr=0.1)
        loss = net(x).square().sum()
        loss.backward(retain_graph=True)
        opt.step()
        loss.backward()
        return [p.grad for p in net.parameters()]

    assert_both_raise(scenario)


# --- views share the counter, .data does not ----------------------------------------------------------
@pytest.mark.parametrize("change", [
    lambda base, lib: base.__setitem__((0, 1), 0.0),                       # the base of the saved view
    lambda base, lib: base.t().__setitem__((1, 0), 0.0),                    # another view of the base
    lambda base, lib: base.reshape(4)[1:].zero_(),                          # a view of a view
    lambda base, lib: base.detach().mul_(2) if lib is torch else base.detach().__imul__(2),
    lambda base, lib: base.unsqueeze(0).squeeze(0).permute(1, 0).fill_(1.0),
], ids=["base", "transpose", "view-of-view", "detach", "squeeze-permute"])
def test_a_change_through_any_view_counts(change):
    def scenario(lib):
        base = lib.tensor([[3.0, 4.0], [5.0, 6.0]], dtype=lib.float64)
        w = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        y = (w * base[0]).sum()
        change(base, lib)
        y.backward()
        return [w.grad]

    assert_both_raise(scenario)


def test_a_reshape_that_copies_has_its_own_counter():
    def scenario(lib):
        base = lib.tensor([[3.0, 4.0], [5.0, 6.0]], dtype=lib.float64)
        w = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        y = (w * base[0]).sum()
        flat = base.t().reshape(4)       # not contiguous: a copy
        flat += 1
        y.backward()
        return [w.grad]

    assert_same_gradients(scenario)


def test_version_numbers_match_pytorch():
    def versions(lib):
        x = lib.zeros(2, 3, dtype=lib.float64)
        v = x.view(6)
        d = x.data
        seen = [x._version]
        x += 1
        seen.append(x._version)
        v[0] = 2.0
        seen += [x._version, v._version]
        x.zero_()
        x.fill_(3.0)
        x.copy_(lib.ones(2, 3, dtype=lib.float64))
        x.uniform_()
        x.normal_()
        seen += [x._version, v._version]
        d += 1
        seen += [x._version, d._version]
        y = x.detach()
        y += 1
        seen.append(x._version)
        return seen

    assert versions(tl) == versions(torch)


def test_in_place_nn_init_counts():
    for init in (lambda t: tl.nn.init.trunc_normal_(t), lambda t: tl.nn.init.eye_(t),
                 lambda t: tl.nn.init.xavier_uniform_(t), lambda t: tl.nn.init.zeros_(t)):
        w = tl.ones(2, 2, dtype=tl.float64)
        before = w._version
        init(w)
        assert w._version > before


def test_batchnorm_running_stats_count_their_updates_like_pytorch():
    def versions(lib):
        bn = lib.nn.BatchNorm1d(3)
        bn(lib.randn(4, 3))
        bn(lib.randn(4, 3))
        return [bn.running_mean._version, bn.running_var._version, bn.num_batches_tracked._version]

    assert versions(tl) == versions(torch)


def test_load_state_dict_counts_as_a_change():
    net = tl.nn.Linear(2, 2).double()
    x = tl.ones(1, 2, dtype=tl.float64, requires_grad=True)
    loss = net(x).sum()
    net.load_state_dict({k: v * 2 for k, v in net.state_dict().items()})
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        loss.backward()


def test_custom_function_saving_its_input_is_watched():
    class Square(tl.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = tl.tensor([1.0, 2.0], dtype=tl.float64, requires_grad=True)
    y = Square.apply(x)
    with tl.no_grad():
        x += 1
    with pytest.raises(RuntimeError, match=r"Square \(its input 0\).*version 1; expected version 0"):
        y.sum().backward()


def test_the_check_passes_when_nothing_changed_and_keeps_gradients_exact():
    x = tl.tensor([0.5, -1.0], dtype=tl.float64, requires_grad=True)
    w = tl.tensor([2.0, 3.0], dtype=tl.float64, requires_grad=True)
    y = (x.exp() * w / (x * x + 1)).sum()
    y.backward()
    tx = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    tw = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)
    (tx.exp() * tw / (tx * tx + 1)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-12)


# --- the declared `_saves` of the built-in ops never miss what forward really keeps ---------------------
def test_every_declaration_covers_what_forward_keeps(monkeypatch):
    """Each op that declares `_saves` also goes through the slow, declaration-free search (_watch_saved);
    the declared tensors must include every tensor the search finds."""
    from tinylazy import autograd
    import tinylazy.nn.functional as F
    declared_watch, problems, seen = autograd._watch_declared, [], set()

    def checking(ctx, saves, args, outs):
        declared_watch(ctx, saves, args, outs)
        declared = {(id(vc), pos) for vc, _, _, pos in ctx._saved_versions or ()}
        keep = ctx.__dict__.pop("_saved_versions", None)
        autograd._watch_saved(ctx, args, outs)
        found = {(id(vc), pos) for vc, _, _, pos in ctx.__dict__.pop("_saved_versions", None) or ()}
        if keep is not None:
            ctx._saved_versions = keep
        seen.add(type(ctx).__name__)
        if not found <= declared:
            problems.append((type(ctx).__name__, sorted(p for _, p in found - declared)))

    monkeypatch.setattr(autograd, "_watch_declared", checking)
    for cls in _function_classes(autograd.Function):          # "keeps nothing" is checked as well
        if cls.__dict__.get("_saves") == ():
            monkeypatch.setattr(cls, "_saves", (("-", 0),))    # no such attribute: nothing declared
    gen = np.random.default_rng(0)

    def t(*shape, grad=True, positive=False):
        a = gen.standard_normal(shape)
        return tl.tensor(np.abs(a) + 0.5 if positive else a, requires_grad=grad)

    a, b, p, q = t(3, 4), t(3, 4), t(3, 4, positive=True), t(3, 4, positive=True)
    data = t(3, 4, grad=False)
    w, bias, img, k = t(5, 4), t(5), t(2, 3, 6, 6), t(4, 3, 3, 3)
    for fn in (lambda: a * b, lambda: a * data, lambda: data * a, lambda: a * 2, lambda: 3 * a, lambda: a / b,
               lambda: data / a, lambda: a / 2, lambda: p ** q, lambda: p ** 2, lambda: 2 ** a, lambda: a % q,
               lambda: data % q, lambda: a + b, lambda: a - data, lambda: -a, lambda: a.clamp(-0.5, 0.5),
               lambda: tl.maximum(a, b), lambda: tl.minimum(a, data), lambda: tl.where(data > 0, a, b),
               lambda: a.exp(), lambda: p.log(), lambda: p.log1p(), lambda: p.sqrt(), lambda: p.rsqrt(),
               lambda: a.sin(), lambda: a.cos(), lambda: a.abs(), lambda: a.tanh(), lambda: a.sigmoid(),
               lambda: a.relu(), lambda: F.gelu(a), lambda: F.gelu(a, approximate="tanh"),
               lambda: F.softmax(a, 1), lambda: F.log_softmax(a, 0), lambda: a @ b.T, lambda: data @ b.T,
               lambda: a[0] @ b[1], lambda: a @ b[0], lambda: t(2, 3, 4) @ t(4, 2), lambda: F.linear(a, w),
               lambda: F.linear(data, w, bias), lambda: F.linear(t(2, 3, 4), w, bias, activation="relu"),
               lambda: F.linear(a, w, bias, activation="gelu"), lambda: F.linear(data, w, None, activation="tanh"),
               lambda: F.conv2d(img, k), lambda: F.conv2d(img, k, t(4), activation="relu"),
               lambda: F.conv2d(img, k, t(4), activation="gelu"),
               lambda: F.cross_entropy(a, tl.tensor([0, 3, 1])),
               lambda: F.cross_entropy(a, tl.tensor([0, 3, 1]), weight=t(4, grad=False), label_smoothing=0.1),
               lambda: F.embedding(tl.tensor([[0, 2], [4, 4]]), w),
               lambda: F.layer_norm(a, (4,), t(4), t(4)), lambda: F.layer_norm(a, (4,)),
               lambda: F.batch_norm(a, None, None, t(4), t(4), training=True),
               lambda: F.batch_norm(a, tl.zeros(4, dtype=tl.float64), tl.ones(4, dtype=tl.float64), t(4), t(4)),
               lambda: a.masked_fill(data > 0, 0.0), lambda: F.dropout(a, 0.5, True), lambda: tl.cat([a, b]),
               lambda: tl.stack([a, data]), lambda: a.reshape(4, 3), lambda: a.permute(1, 0), lambda: a[1:, ::2],
               lambda: a.expand(2, 3, 4), lambda: a.repeat(2, 1), lambda: a.flip(0), lambda: a.tril(),
               lambda: a.clone(), lambda: a.float()):
        assert fn().requires_grad
    assert problems == []
    for name in ("Mul", "Div", "Pow", "Remainder", "Clamp", "Maximum", "Minimum", "Where", "Exp", "Log", "Log1p",
                 "Sqrt", "Rsqrt", "Sin", "Cos", "Abs", "Tanh", "Sigmoid", "Relu", "Gelu", "GeluTanh", "Softmax",
                 "LogSoftmax", "MatMul", "Linear", "Conv2d", "CrossEntropy", "Embedding", "LayerNorm",
                 "BatchNorm", "MaskedFill", "Add", "Sub", "Neg", "Cat", "Stack", "Reshape", "Permute",
                 "BasicIndex", "Expand", "Repeat", "Flip", "Tril", "Clone", "Cast", "Dropout"):
        assert name in seen, name


def _function_classes(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _function_classes(sub)
