"""Grad mode belongs to a thread (as in PyTorch): no_grad in one thread never turns recording off in
another, and blocks in different threads restore what each thread had. Real threads, ordered by events so
that the interleavings below happen on every run."""
import sys
import threading

import numpy as np

import tinylazy as tl
from tinylazy import backend, nn


def _in_thread(fn):
    """Run fn in a new thread; return its result (re-raise its exception here)."""
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:          # noqa: BLE001 (handed to the test thread)
            out["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "the thread did not finish"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_thread_under_no_grad_does_not_turn_off_grad_in_the_training_thread():
    inside, leave = threading.Event(), threading.Event()

    def evaluator():
        with tl.no_grad():
            inside.set()
            assert leave.wait(30)
            return tl.is_grad_enabled()

    t = threading.Thread(target=lambda: result.append(evaluator()))
    result = []
    t.start()
    assert inside.wait(30)
    try:                                     # the evaluator sits inside its no_grad block now
        w = tl.ones(3, requires_grad=True)
        y = (w * 2).sum()
        assert tl.is_grad_enabled() and y.requires_grad and y.grad_fn is not None
        y.backward()
        assert w.grad.tolist() == [2.0, 2.0, 2.0]
    finally:
        leave.set()
        t.join(30)
    assert result == [False]


def test_overlapping_no_grad_blocks_in_two_threads_each_restore_their_own_mode():
    # A enters, B enters, A leaves, B leaves: with one process-wide switch B would restore A's False
    # and leave grad off for good.
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with tl.no_grad():
            a_in.set()
            assert b_in.wait(30)
        seen["a after"] = tl.is_grad_enabled()
        a_out.set()

    def b():
        assert a_in.wait(30)
        with tl.no_grad():
            b_in.set()
            assert a_out.wait(30)
            seen["b inside, after a left"] = tl.is_grad_enabled()
        seen["b after"] = tl.is_grad_enabled()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == {"a after": True, "b inside, after a left": False, "b after": True}
    assert tl.is_grad_enabled()


def test_a_new_thread_starts_with_grad_on_whatever_the_creating_thread_has():
    with tl.no_grad():
        assert _in_thread(tl.is_grad_enabled) is True
        assert not tl.is_grad_enabled()


def test_set_grad_enabled_as_a_plain_call_stays_in_its_thread():
    def off():
        tl.set_grad_enabled(False)
        x = tl.ones(2, requires_grad=True)
        return tl.is_grad_enabled(), (x * 2).requires_grad

    assert _in_thread(off) == (False, False)
    assert tl.is_grad_enabled()
    assert (tl.ones(2, requires_grad=True) * 2).requires_grad


def test_decorators_and_set_grad_enabled_restore_the_mode():
    @tl.no_grad()
    def f():
        return tl.is_grad_enabled()

    @tl.set_grad_enabled(False)
    def g():
        return tl.is_grad_enabled()

    assert tl.is_grad_enabled()              # decorating with set_grad_enabled(False) changes nothing yet
    assert f() is False and g() is False and tl.is_grad_enabled()
    with tl.set_grad_enabled(False):
        assert not tl.is_grad_enabled()
        with tl.enable_grad():
            assert tl.is_grad_enabled()
        assert not tl.is_grad_enabled()
    assert tl.is_grad_enabled()
    tl.set_grad_enabled(False)
    assert not tl.is_grad_enabled()
    tl.set_grad_enabled(True)
    assert tl.is_grad_enabled()


def test_training_beside_an_evaluating_thread_records_every_step():
    tl.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = tl.optim.SGD(net.parameters(), lr=0.01)
    x, y = tl.randn(32, 8), tl.randint(0, 2, (32,))
    evaluator_net = nn.Sequential(nn.Linear(8, 4))
    stop, evaluated = threading.Event(), []

    def evaluate():
        while not stop.is_set():
            with tl.no_grad():
                evaluated.append(evaluator_net(x).requires_grad)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)              # switch threads often, inside the blocks
    t = threading.Thread(target=evaluate)
    t.start()
    try:
        recorded = []
        for _ in range(100):
            opt.zero_grad()
            loss = tl.nn.functional.cross_entropy(net(x), y)
            recorded.append(loss.requires_grad)
            loss.backward()
            recorded.append(all(p.grad is not None for p in net.parameters()))
            opt.step()
    finally:
        stop.set()
        t.join(30)
        sys.setswitchinterval(old)
    assert all(recorded)
    assert evaluated and not any(evaluated)


def test_the_random_counter_hands_out_disjoint_ranges_to_threads():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    starts, n = [], 4

    def take():
        got = [backend.RNG.next_offset("cpu", n)[1] for _ in range(2000)]
        starts.extend(got)

    threads = [threading.Thread(target=take) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert len(starts) == 8000 and len(set(starts)) == 8000
    assert np.all(np.diff(np.sort(starts)) == n)
