"""tl.Size (API §2): the type of `shape` and `size()`, a tuple subclass that behaves as torch.Size."""
import copy
import pickle

import numpy as np
import pytest

import tinylazy as tl
from tinylazy import nn

from helpers import torch


def test_shape_and_size_are_sizes():
    t = tl.zeros(2, 3)
    assert type(t.shape) is tl.Size and type(t.size()) is tl.Size
    assert t.shape == (2, 3) == t.size() and t.size(1) == 3 and type(t.size(-1)) is int
    assert type(tl.tensor(1.0).shape) is tl.Size and tl.tensor(1.0).shape == ()
    assert type(tl.empty(4, 5, device="meta").shape) is tl.Size


def test_repr_numel_and_tuple_behaviour_match_torch():
    th = torch()
    for sizes in [[2, 3], [], [0, 4], [5], [2, 1, 3, 4]]:
        ours, theirs = tl.Size(sizes), th.Size(sizes)
        assert repr(ours) == repr(theirs).replace("torch.", "tl.") == str(ours)
        assert ours.numel() == theirs.numel()
        assert ours == theirs == tuple(sizes) and hash(ours) == hash(tuple(sizes))
    assert repr(tl.Size([2, 3])) == "tl.Size([2, 3])" and repr(tl.Size()) == "tl.Size([])"
    s, ts = tl.Size([2, 3, 4]), th.Size([2, 3, 4])
    for ours, theirs in [(s[1:], ts[1:]), (s[::-1], ts[::-1]), (s + (5,), ts + (5,)), ((5,) + s, (5,) + ts),
                         (s + s, ts + ts), (s * 2, ts * 2), (2 * s, 2 * ts)]:
        assert type(ours) is tl.Size and ours == theirs, (ours, theirs)
    assert s[0] == 2 and type(s[-1]) is int
    assert list(s) == [2, 3, 4] and s.index(3) == 1 and s.count(2) == 1
    a, b, c = s
    assert (a, b, c) == (2, 3, 4)


def test_bad_elements_raise_like_torch():
    with pytest.raises(TypeError, match=r"tl.Size\(\).*float"):
        tl.Size([2.5])
    with pytest.raises(TypeError):
        tl.Size([2, 3]) + [4]
    assert tl.Size([np.int64(3), tl.tensor(2)]) == (3, 2)        # anything with __index__


def test_pickle_and_copy_keep_the_type():
    s = tl.Size([2, 3])
    for other in [pickle.loads(pickle.dumps(s)), copy.deepcopy(s), copy.copy(s)]:
        assert type(other) is tl.Size and other == s


def test_accepted_wherever_sizes_are():
    x = tl.arange(6).float()
    s = tl.zeros(2, 3).shape
    assert tl.zeros(s).shape == s and tl.ones(size=s).shape == s and tl.full(s, 2.0).shape == s
    assert tl.empty(s).shape == s and tl.randn(s).shape == s and tl.rand(*s).shape == s
    assert x.reshape(s).shape == s and x.view(s).shape == s and x.reshape(s[::-1]).shape == (3, 2)
    assert tl.ones(3).expand(s).shape == s and tl.ones(3).broadcast_to(s).shape == s
    assert tl.ones(1, 3).repeat(s[:1] + (1,)).shape == (2, 3)
    assert x.reshape(s).permute(tl.Size([1, 0])).shape == (3, 2)
    assert tl.zeros(s + (4,)).shape == (2, 3, 4)
    assert tl.zeros(s, device="meta").shape == s
    assert np.zeros(s).shape == s                               # NumPy takes it as a tuple


def test_state_dict_and_save_round_trip_shapes(tmp_path):
    net = nn.Linear(3, 2)
    tl.save({"shape": net.weight.shape}, str(tmp_path / "s.tl"))
    assert tl.load(str(tmp_path / "s.tl"))["shape"] == (2, 3)


def test_lazy_partial_shape_stays_a_tuple():
    w = nn.LazyLinear(4).weight
    assert type(w.partial_shape) is tuple and w.partial_shape == (4, None)
