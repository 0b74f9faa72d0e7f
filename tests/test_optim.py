"""Optimizers and lr schedulers: trajectories equal PyTorch's (float64, several steps), parameter groups,
zero_grad, state_dict round trips, lazy parameters, and the flat-bucket and one-by-one paths agreeing."""
import math

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn, optim
from tinylazy.optim import lr_scheduler, optimizer as optimizer_mod
from tinylazy.serialization import load, save

torch = pytest.importorskip("torch")

BIG = optimizer_mod.SMALL + 7           # larger than the flat-bucket limit: updated one by one
SHAPES = [(3, 4), (4,), (), (0, 3), (2, 3, 2), (BIG,)]

CONFIGS = {
    "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum_dampening": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    "sgd_nesterov_wd": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    "sgd_maximize": (optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.5, maximize=True)),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=0.01)),
    "adam_wd": (optim.Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, eps=1e-6)),
    "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.05)),
    "amsgrad": (optim.Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    "adamw_amsgrad_low_beta": (optim.AdamW, torch.optim.AdamW, dict(lr=0.01, betas=(0.3, 0.9), amsgrad=True)),
    "adam_maximize": (optim.Adam, torch.optim.Adam, dict(lr=0.01, maximize=True)),
}


def _rng(seed):
    return np.random.default_rng(seed)


def make_pair(shapes=SHAPES, dtype=np.float64, device="cpu", seed=0):
    """The same initial values as tinylazy tensors and torch tensors."""
    rng = _rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [tl.tensor(x.copy(), device=device, requires_grad=True) for x in init]
    theirs = [torch.tensor(x.copy(), requires_grad=True) for x in init]
    return ours, theirs


def set_grads(ours, theirs, step, skip=(), device="cpu"):
    rng = _rng(100 + step)
    for i, (p, q) in enumerate(zip(ours, theirs)):
        g = rng.standard_normal(q.shape).astype(q.detach().numpy().dtype)
        if i in skip:
            p.grad, q.grad = None, None
        else:
            p.grad, q.grad = tl.tensor(g.copy(), device=device), torch.tensor(g.copy())


def assert_same(ours, theirs, rtol=1e-12, atol=1e-14):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.numpy() if not p.requires_grad else p.detach().numpy(),
                                   q.detach().numpy(), rtol=rtol, atol=atol, err_msg=f"parameter {i}")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_trajectory_equals_torch(name, device):
    ours_cls, theirs_cls, kw = CONFIGS[name]
    ours, theirs = make_pair(device=device)
    a, b = ours_cls(ours, **kw), theirs_cls(theirs, **kw)
    for step in range(6):
        set_grads(ours, theirs, step, device=device)
        a.step()
        b.step()
        assert_same(ours, theirs)


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adam", "adamw_amsgrad_low_beta"])
def test_float32_trajectory(name):
    ours_cls, theirs_cls, kw = CONFIGS[name]
    ours, theirs = make_pair(dtype=np.float32)
    a, b = ours_cls(ours, **kw), theirs_cls(theirs, **kw)
    for step in range(4):
        set_grads(ours, theirs, step)
        a.step()
        b.step()
    assert_same(ours, theirs, rtol=1e-5, atol=1e-6)
    assert all(p.dtype == np.float32 for p in ours)
    assert all(v.dtype == np.float32 for st in a.state.values() for k, v in st.items() if k != "step")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bucket_and_one_by_one_paths_agree_exactly(name, monkeypatch):
    """Small cpu parameters are updated in flat buckets; with SMALL = -1 every parameter goes one by one."""
    ours_cls, _, kw = CONFIGS[name]
    shapes = [(3, 4), (4,), (), (5, 5), (7,)]
    runs = []
    for small in (optimizer_mod.SMALL, -1):
        monkeypatch.setattr(optimizer_mod, "SMALL", small)
        ours, theirs = make_pair(shapes)
        opt = ours_cls(ours, **kw)
        for step in range(4):
            set_grads(ours, theirs, step)
            opt.step()
        runs.append([p.detach().numpy().copy() for p in ours])
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum_dampening", "sgd_nesterov_wd", "adam", "adam_wd", "adamw"])
def test_fused_cuda_entry_points_get_the_right_arguments(name):
    """cuda parameters go through tinylazy.cuda.sgd_step/adam_step; their NumPy reference branch lets the
    cpu check that the optimizer passes the arguments those functions expect (step counts, first step)."""
    ours_cls, theirs_cls, kw = CONFIGS[name]
    ours, theirs = make_pair([(3, 4), (5,)])
    opt, ref = ours_cls(ours, **kw), theirs_cls(theirs, **kw)
    group = opt.param_groups[0]
    names = opt._state_names(group)
    for step in range(4):
        set_grads(ours, theirs, step)
        states = [opt._state_for(p, group, names) for p in ours]
        assert opt._fused(group, [p.array for p in ours], [p.grad.array for p in ours], states, step)
        for st in states:
            st["step"] += 1
        ref.step()
        assert_same(ours, theirs)


@pytest.mark.parametrize("name", ["sgd_momentum_dampening", "adam", "amsgrad"])
def test_params_without_grad_are_skipped_like_torch(name):
    """A parameter whose grad is None is not touched, and its step count does not advance."""
    ours_cls, theirs_cls, kw = CONFIGS[name]
    ours, theirs = make_pair()
    a, b = ours_cls(ours, **kw), theirs_cls(theirs, **kw)
    skips = [(), (1, 5), (), (0,), (2, 3, 4), ()]
    for step, skip in enumerate(skips):
        set_grads(ours, theirs, step, skip=skip)
        a.step()
        b.step()
        assert_same(ours, theirs)


def test_param_groups_with_different_lr():
    ours, theirs = make_pair()
    kw = dict(betas=(0.8, 0.99))
    a = optim.Adam([{"params": ours[:3]}, {"params": ours[3:], "lr": 0.1, "weight_decay": 0.01}], lr=0.01, **kw)
    b = torch.optim.Adam([{"params": theirs[:3]}, {"params": theirs[3:], "lr": 0.1, "weight_decay": 0.01}],
                         lr=0.01, **kw)
    assert [g["lr"] for g in a.param_groups] == [0.01, 0.1]
    for step in range(4):
        set_grads(ours, theirs, step)
        a.step()
        b.step()
        assert_same(ours, theirs)
    extra_ours, extra_theirs = make_pair([(2, 2)], seed=5)
    a.add_param_group({"params": extra_ours, "lr": 0.5})
    b.add_param_group({"params": extra_theirs, "lr": 0.5})
    ours, theirs = ours + extra_ours, theirs + extra_theirs
    for step in range(4, 7):
        set_grads(ours, theirs, step)
        a.step()
        b.step()
        assert_same(ours, theirs)


def test_zero_grad_both_modes():
    ours, theirs = make_pair([(3,), (2, 2)])
    opt = optim.SGD(ours, lr=0.1)
    set_grads(ours, theirs, 0)
    grads = [p.grad for p in ours]
    opt.zero_grad(set_to_none=False)
    assert [p.grad is g for p, g in zip(ours, grads)] == [True, True]
    assert all(np.all(p.grad.numpy() == 0) for p in ours)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_updates_in_place_without_graph():
    base = np.arange(6.0).reshape(2, 3)
    shared = tl.from_numpy(base).requires_grad_()          # the optimizer must write into `base` itself
    others, _ = make_pair([(3,), (2,), (BIG,)])
    params = [shared] + others
    arrays = [p.array for p in params]
    opt = optim.Adam(params, lr=0.1)
    for step in range(3):
        loss = sum((p * p).sum() for p in params)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.array is a for p, a in zip(params, arrays))
    assert all(p.grad_fn is None and p.is_leaf for p in params)
    assert not np.array_equal(base, np.arange(6.0).reshape(2, 3))


def test_mixed_dtypes_and_a_cast_after_steps():
    """float32 and float64 parameters of one group step side by side (one flat bucket per dtype); a
    parameter cast after some steps (model.double()) takes its state along."""
    ours32, theirs32 = make_pair([(3,), (2, 2)], dtype=np.float32)
    ours64, theirs64 = make_pair([(4,), (5,)], seed=1)
    ours, theirs = ours32 + ours64, theirs32 + theirs64
    a, b = optim.Adam(ours, lr=0.1), torch.optim.Adam(theirs, lr=0.1)
    for step in range(3):
        set_grads(ours, theirs, step)
        a.step()
        b.step()
    assert_same(ours, theirs, rtol=1e-6, atol=1e-7)
    for p in ours32:
        p.array = p.array.astype(np.float64)
    set_grads(ours, theirs, 3)
    for p in ours32:
        p.grad = p.grad.double()
    a.step()
    assert all(a.state[p]["exp_avg"].dtype == np.float64 and a.state[p]["step"] == 4 for p in ours)


def test_closure_returns_loss():
    w = tl.tensor([1.0, 2.0], dtype=tl.float64, requires_grad=True)
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss) == 5.0
    np.testing.assert_allclose(w.detach().numpy(), [0.8, 1.6])


# --- state_dict --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adam_wd", "adamw", "amsgrad"])
def test_state_dict_round_trip_continues_identically(name, tmp_path):
    ours_cls, _, kw = CONFIGS[name]
    ours, theirs = make_pair()
    a = ours_cls(ours, **kw)
    for step in range(3):
        set_grads(ours, theirs, step)
        a.step()
    save({"params": [p.detach() for p in ours], "opt": a.state_dict()}, tmp_path / "ckpt")
    ckpt = load(tmp_path / "ckpt")
    copies = [t.requires_grad_() for t in ckpt["params"]]
    b = ours_cls(copies, **{**kw, "lr": 123.0})
    b.load_state_dict(ckpt["opt"])
    assert b.param_groups[0]["lr"] == kw["lr"]                  # hyperparameters come from the checkpoint
    for step in range(3, 6):
        set_grads(ours, theirs, step)
        set_grads(copies, theirs, step)
        a.step()
        b.step()
        for p, q in zip(ours, copies):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


@pytest.mark.parametrize("name", ["sgd_momentum_dampening", "adam", "amsgrad"])
def test_state_dict_format_is_torchs(name):
    ours_cls, theirs_cls, kw = CONFIGS[name]
    ours, theirs = make_pair()
    a, b = ours_cls(ours, **kw), theirs_cls(theirs, **kw)
    for step in range(2):
        set_grads(ours, theirs, step, skip=(2,))
        a.step()
        b.step()
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa["state"]) == sorted(sb["state"])           # int keys; parameter 2 never had a grad
    for k in sb["state"]:
        assert sorted(sa["state"][k]) == sorted(sb["state"][k])
        for key, ref in sb["state"][k].items():
            ours_value = sa["state"][k][key]
            assert isinstance(ours_value, tl.Tensor)
            np.testing.assert_allclose(ours_value.numpy(), ref.numpy(), rtol=1e-12, atol=1e-14)
            assert ours_value.dtype == ref.numpy().dtype
    ga, gb = sa["param_groups"][0], sb["param_groups"][0]
    assert ga["params"] == gb["params"]
    for key, value in ga.items():
        assert gb[key] == value, key


def test_load_torch_state_dict_and_continue():
    """A PyTorch optimizer state (tensors converted) loads into ours, and both continue alike."""
    ours, theirs = make_pair()
    b = torch.optim.Adam(theirs, lr=0.02, weight_decay=0.1)
    for step in range(3):
        set_grads(ours, theirs, step)
        b.step()
    with torch.no_grad():
        for p, q in zip(ours, theirs):
            p.array[...] = q.numpy()
    sd = b.state_dict()
    converted = {"state": {k: {n: tl.tensor(v.numpy()) for n, v in st.items()} for k, st in sd["state"].items()},
                 "param_groups": [{k: v for k, v in g.items()} for g in sd["param_groups"]]}
    a = optim.Adam(ours)
    a.load_state_dict(converted)
    for step in range(3, 6):
        set_grads(ours, theirs, step)
        a.step()
        b.step()
        assert_same(ours, theirs)


def test_load_state_dict_errors():
    ours, _ = make_pair([(3,), (2, 2)])
    opt = optim.Adam(ours)
    with pytest.raises(ValueError, match=r"has 0 parameter group\(s\), but this optimizer has 1"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match="has 1 parameter.*has 2"):
        opt.load_state_dict({"state": {}, "param_groups": [{**opt.param_groups[0], "params": [0]}]})
    good = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    bad = {"state": {1: {"step": tl.tensor(1.0), "exp_avg": tl.zeros(3, 3), "exp_avg_sq": tl.zeros(2, 2)}},
           "param_groups": [{**good, "params": [0, 1]}]}
    with pytest.raises(ValueError, match=r"exp_avg.*parameter 1.*\(3, 3\).*\(2, 2\)"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="index 7"):
        opt.load_state_dict({"state": {7: {}}, "param_groups": [{**good, "params": [0, 1]}]})
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"param_groups": []})


def test_constructor_errors():
    w = tl.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(w, lr=0.1)
    with pytest.raises(TypeError, match="only optimize Tensors"):
        optim.Adam([w, np.zeros(2)])
    with pytest.raises(ValueError, match="non-leaf"):
        optim.Adam([w * 2])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.Adam([{"params": [w]}, {"params": [w]}])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.SGD([w], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        optim.Adam([w], betas=(0.9, 1.0))
    assert "Parameter Group 0" in repr(optim.AdamW([w])) and "weight_decay: 0.01" in repr(optim.AdamW([w]))


# --- lazy parameters (rule 12) -------------------------------------------------------------------------------
def test_lazy_parameters_state_created_at_first_step_with_data():
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(3))
    opt = optim.Adam(net.parameters(), lr=0.01)
    opt.step()                                                    # nothing has data yet: a no-op
    opt.zero_grad()
    assert opt.state == {} and opt.state_dict()["state"] == {}
    x = tl.randn(5, 4, dtype=tl.float64)
    net(x)                                                        # materializes in place
    ref = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    with torch.no_grad():
        for q, p in zip(ref.parameters(), net.parameters()):
            q.copy_(torch.from_numpy(p.detach().numpy()))
    ropt = torch.optim.Adam(ref.parameters(), lr=0.01)
    xt = torch.from_numpy(x.numpy())
    for _ in range(4):
        opt.zero_grad()
        ropt.zero_grad()
        (net(x) ** 2).mean().backward()
        (ref(xt) ** 2).mean().backward()
        opt.step()
        ropt.step()
    assert [st["step"] for st in opt.state.values()] == [4] * 4
    assert_same(list(net.parameters()), list(ref.parameters()))


def test_lazy_parameter_materialized_later_joins_without_disturbing_others():
    Parameter = nn.Parameter
    eager, _ = make_pair([(3,), (2, 2)])
    lazy = Parameter.lazy((4, None))
    opt = optim.Adam(eager + [lazy], lr=0.1)
    ref_eager, ref_theirs = make_pair([(3,), (2, 2)])
    ref = torch.optim.Adam(ref_theirs, lr=0.1)
    for step in range(2):
        set_grads(eager, ref_theirs, step)
        opt.step()
        ref.step()
    assert lazy not in opt.state
    lazy.array = np.ones((4, 2))
    lazy.grad = tl.ones(4, 2, dtype=tl.float64)
    set_grads(eager, ref_theirs, 2)
    opt.step()
    ref.step()
    assert_same(eager, ref_theirs)
    assert opt.state[lazy]["step"] == 1
    np.testing.assert_allclose(lazy.detach().numpy(), 0.9)      # Adam's first step moves by lr


def test_optimizer_state_loaded_into_lazy_model_waits_for_data():
    src = nn.Sequential(nn.Linear(3, 2))
    opt = optim.SGD(src.parameters(), lr=0.1, momentum=0.9)
    src(tl.randn(4, 3)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    dst = nn.Sequential(nn.LazyLinear(2))
    opt2 = optim.SGD(dst.parameters(), lr=0.5, momentum=0.9)
    opt2.load_state_dict(sd)                                      # parameters still lazy: state is kept aside
    assert sorted(opt2.state_dict()["state"]) == [0, 1]
    dst.load_state_dict(src.state_dict())                         # materializes (rule 7)
    dst(tl.randn(4, 3)).sum().backward()
    opt2.step()
    assert set(opt2.state) == set(dst.parameters())


# --- learning-rate schedulers ----------------------------------------------------------------------------
def _lr_sequences(make_ours, make_theirs, epochs=25, lrs=(0.1, 0.03)):
    w, v = tl.zeros(1, requires_grad=True), tl.zeros(1, requires_grad=True)
    a = optim.SGD([{"params": [w]}, {"params": [v], "lr": lrs[1]}], lr=lrs[0])
    tw, tv = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    b = torch.optim.SGD([{"params": [tw]}, {"params": [tv], "lr": lrs[1]}], lr=lrs[0])
    sa, sb = make_ours(a), make_theirs(b)
    ours, theirs = [sa.get_last_lr()], [sb.get_last_lr()]
    for _ in range(epochs):
        a.step()
        b.step()
        sa.step()
        sb.step()
        ours.append(sa.get_last_lr())
        theirs.append(sb.get_last_lr())
        assert [g["lr"] for g in a.param_groups] == ours[-1]
    return np.array(ours), np.array(theirs), sa, a


@pytest.mark.parametrize("kind", ["StepLR", "CosineAnnealingLR", "CosineAnnealingLR_eta_min", "MultiStepLR",
                                  "ExponentialLR"])
def test_scheduler_sequence_equals_torch(kind):
    T = torch.optim.lr_scheduler
    makers = {
        "StepLR": (lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5), lambda o: T.StepLR(o, 3, gamma=0.5)),
        "CosineAnnealingLR": (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=10),
                              lambda o: T.CosineAnnealingLR(o, T_max=10)),
        "CosineAnnealingLR_eta_min": (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
                                      lambda o: T.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
        "MultiStepLR": (lambda o: lr_scheduler.MultiStepLR(o, [4, 9, 9, 15], gamma=0.3),
                        lambda o: T.MultiStepLR(o, [4, 9, 9, 15], gamma=0.3)),
        "ExponentialLR": (lambda o: lr_scheduler.ExponentialLR(o, 0.9), lambda o: T.ExponentialLR(o, 0.9)),
    }
    ours, theirs, _, _ = _lr_sequences(*makers[kind])
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-15)


def test_scheduler_state_dict_round_trip(tmp_path):
    ours, _, sched, opt = _lr_sequences(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=10),
                                        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10), epochs=4)
    save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s")
    ckpt = load(tmp_path / "s")
    w, v = tl.zeros(1, requires_grad=True), tl.zeros(1, requires_grad=True)
    opt2 = optim.SGD([{"params": [w]}, {"params": [v]}], lr=1.0)
    opt2.load_state_dict(ckpt["opt"])
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10, last_epoch=3)
    sched2.load_state_dict(ckpt["sched"])
    for _ in range(3):
        sched.step()
        sched2.step()
        assert sched.get_last_lr() == sched2.get_last_lr()
        assert [g["lr"] for g in opt2.param_groups] == sched.get_last_lr()
    assert sched2.last_epoch == 7 and math.isclose(sched2.base_lrs[1], 0.03)


def test_scheduler_errors():
    w = tl.zeros(1, requires_grad=True)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(optim.SGD([w], lr=0.1), step_size=2, last_epoch=5)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(optim.SGD([w], lr=0.1), step_size=0)
    with pytest.raises(TypeError, match="optimizer"):
        lr_scheduler.CosineAnnealingLR("sgd", T_max=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 1000, 200_704, "direct", "direct+1", "3 blocks+1"])
def test_add_scaled_in_blocks_equals_the_plain_update(dtype, n):
    from tinylazy._update import _BLOCK_BYTES, _DIRECT_BYTES, add_scaled
    itemsize = np.dtype(dtype).itemsize                            # the edges of the plain and the blocked path
    n = {"direct": _DIRECT_BYTES // itemsize, "direct+1": _DIRECT_BYTES // itemsize + 1,
         "3 blocks+1": 3 * _BLOCK_BYTES // itemsize + _DIRECT_BYTES // itemsize + 1}.get(n, n)
    rng = np.random.default_rng(n)
    p, d = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    want = p + d * -0.1
    add_scaled(p, d, -0.1)
    assert np.array_equal(p, want)
    q = rng.standard_normal((3, n)).astype(dtype)[:, ::2]          # non-contiguous: the plain path
    e = np.ones_like(q)
    want = q + e * 0.5
    add_scaled(q, e, 0.5)
    assert np.array_equal(q, want)
