"""tinylazy.utils.data (Dataset, TensorDataset, Subset, random_split, DataLoader, default_collate) and
tinylazy.datasets.FashionMNIST (the full set from root / $TINYLAZY_DATA / Debian, the bundled subset, and
clear errors on missing or damaged files)."""
import collections
import gzip
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinylazy as tl
import tinylazy.datasets as tds
from tinylazy.datasets import DatasetFileError, FashionMNIST, read_idx, write_idx
from tinylazy.utils.data import (DataLoader, Dataset, Subset, TensorDataset, default_collate,
                                 random_split)

REPO = Path(__file__).resolve().parent.parent


def arrays(batch):
    return [b.numpy() for b in batch]


def make_ds(n=10, device="cpu"):
    x = tl.tensor(np.arange(n * 3, dtype=np.float32).reshape(n, 3), device=device)
    y = tl.tensor(np.arange(n) % 4, device=device)
    return TensorDataset(x, y)


def epoch_order(loader):
    """The sample order of one epoch, read from a dataset whose first tensor is arange(n)."""
    return np.concatenate([batch[0].numpy() for batch in loader]).tolist()


# --- TensorDataset ----------------------------------------------------------------------------------
def test_tensor_dataset_items_and_len():
    ds = make_ds(10)
    assert len(ds) == 10
    x, y = ds[7]
    np.testing.assert_array_equal(x.numpy(), [21, 22, 23])
    assert int(y) == 3 and y.dtype == np.int64


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match=r"same size in the first dimension.*\[5, 4\].*\(5, 2\).*\(4,\)"):
        TensorDataset(tl.zeros(5, 2), tl.zeros(4))
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorDataset()
    with pytest.raises(TypeError, match="argument 1 is a ndarray.*as_tensor"):
        TensorDataset(tl.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="0-d"):
        TensorDataset(tl.tensor(1.0))


# --- DataLoader: batching ---------------------------------------------------------------------------
def test_batches_in_order_with_partial_last_batch():
    loader = DataLoader(make_ds(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    x, y = batches[2]
    assert isinstance(x, tl.Tensor) and x.dtype == np.float32 and x.shape == (2, 3)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x.numpy(), np.arange(24, 30).reshape(2, 3))
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), np.arange(10) % 4)


def test_drop_last():
    loader = DataLoader(make_ds(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [b[0].shape[0] for b in loader] == [4, 4]
    exact = DataLoader(make_ds(8), batch_size=4, drop_last=True)
    assert len(exact) == 2 and len(list(exact)) == 2
    assert len(DataLoader(make_ds(3), batch_size=4, drop_last=True)) == 0
    assert list(DataLoader(make_ds(3), batch_size=4, drop_last=True)) == []


def test_default_batch_size_is_one_and_empty_dataset():
    loader = DataLoader(make_ds(3))
    assert len(loader) == 3 and [b[0].shape for b in loader] == [(1, 3)] * 3
    empty = TensorDataset(tl.zeros(0, 2))
    assert len(DataLoader(empty, batch_size=4)) == 0 and list(DataLoader(empty, batch_size=4)) == []


def test_one_tensor_dataset_gives_a_list_of_one():
    (x,) = next(iter(DataLoader(TensorDataset(tl.arange(5)), batch_size=2)))
    np.testing.assert_array_equal(x.numpy(), [0, 1])


# --- DataLoader: shuffling ----------------------------------------------------------------------------
def test_shuffle_covers_every_index_once_and_changes_each_epoch():
    ds = TensorDataset(tl.arange(50))
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    first, second = epoch_order(loader), epoch_order(loader)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert first != list(range(50))
    assert first != second


def test_shuffle_is_repeatable_under_manual_seed():
    ds = TensorDataset(tl.arange(50))
    tl.manual_seed(123)
    a = [epoch_order(DataLoader(ds, batch_size=7, shuffle=True)) for _ in range(2)]
    tl.manual_seed(123)
    loader = DataLoader(ds, batch_size=7, shuffle=True)
    b = [epoch_order(loader), epoch_order(loader)]
    assert a == b
    tl.manual_seed(124)
    assert epoch_order(loader) != a[0]


def test_shuffle_uses_tinylazys_cpu_generator():
    tl.manual_seed(7)
    expected = tl.backend.RNG.generator("cpu").permutation(20).tolist()
    tl.manual_seed(7)
    assert epoch_order(DataLoader(TensorDataset(tl.arange(20)), batch_size=3, shuffle=True)) == expected


def test_shuffle_with_own_generator_and_drop_last():
    ds = TensorDataset(tl.arange(10))
    order = epoch_order(DataLoader(ds, batch_size=3, shuffle=True, drop_last=True,
                                   generator=np.random.default_rng(5)))
    assert order == np.random.default_rng(5).permutation(10)[:9].tolist()


def test_order_is_drawn_when_iteration_starts():
    ds = TensorDataset(tl.arange(30))
    tl.manual_seed(3)
    it = iter(DataLoader(ds, batch_size=30, shuffle=True))
    tl.rand(5)                               # other draws after iter() do not change this epoch's order
    got = next(it)[0].numpy().tolist()
    tl.manual_seed(3)
    assert got == epoch_order(DataLoader(ds, batch_size=30, shuffle=True))


# --- fast path and general path ------------------------------------------------------------------------
def test_fast_path_does_not_index_samples_one_by_one(monkeypatch):
    def per_sample(self, index):
        raise AssertionError("the TensorDataset fast path should not call __getitem__")
    monkeypatch.setattr(TensorDataset, "__getitem__", per_sample)
    assert len(list(DataLoader(make_ds(10), batch_size=3, shuffle=True))) == 4


def test_fast_path_equals_collating_samples():
    ds = make_ds(23)
    tl.manual_seed(1)
    fast = [arrays(b) for b in DataLoader(ds, batch_size=5, shuffle=True)]
    tl.manual_seed(1)
    slow = [arrays(b) for b in DataLoader(ds, batch_size=5, shuffle=True, collate_fn=default_collate)]
    assert len(fast) == len(slow) == 5
    for f, s in zip(fast, slow):
        for a, b in zip(f, s):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_batches_are_copies_not_views_of_the_dataset():
    ds = make_ds(6)
    x, _ = next(iter(DataLoader(ds, batch_size=3)))
    x.array[...] = -1
    assert ds.tensors[0].numpy().min() == 0


def test_custom_collate_fn_gets_the_samples():
    seen = []

    def collate(samples):
        seen.append(len(samples))
        return "batch"
    assert list(DataLoader(make_ds(5), batch_size=2, collate_fn=collate)) == ["batch"] * 3
    assert seen == [2, 2, 1]


def test_gradients_flow_back_through_batches():
    w = tl.ones(6, 2, requires_grad=True)
    ds = TensorDataset(w)
    for (xb,) in DataLoader(ds, batch_size=4, drop_last=True):
        (xb * 3).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[3, 3]] * 4 + [[0, 0]] * 2)


# --- default_collate -----------------------------------------------------------------------------
class DictDataset(Dataset):
    """Samples as dicts of a tensor, an int, a float, a string and a nested tuple."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": tl.full((2,), float(i)), "label": i, "weight": i / 2, "name": f"s{i}",
                "pair": (np.full(3, i, dtype=np.int32), i % 2 == 0)}


def test_collate_dicts_tuples_numbers_strings():
    batches = list(DataLoader(DictDataset(), batch_size=3))
    assert len(batches) == 2
    b = batches[0]
    assert set(b) == {"x", "label", "weight", "name", "pair"}
    assert b["x"].shape == (3, 2) and b["x"].dtype == np.float32
    assert b["label"].dtype == np.int64 and b["label"].tolist() == [0, 1, 2]
    assert b["weight"].dtype == np.float64 and b["weight"].tolist() == [0.0, 0.5, 1.0]   # as PyTorch
    assert b["name"] == ["s0", "s1", "s2"]
    arr, flag = b["pair"]
    assert arr.dtype == np.int32 and arr.shape == (3, 3)
    assert flag.dtype == np.bool_ and flag.tolist() == [True, False, True]
    assert batches[1]["x"].shape == (2, 2)


def test_collate_tuples_give_lists_and_namedtuples_keep_their_type():
    out = default_collate([(tl.zeros(2), 1), (tl.ones(2), 2)])
    assert isinstance(out, list) and out[0].shape == (2, 2) and out[1].tolist() == [1, 2]
    Point = collections.namedtuple("Point", "x y")
    p = default_collate([Point(1, 2.5), Point(3, 4.5)])
    assert isinstance(p, Point) and p.x.tolist() == [1, 3] and p.y.tolist() == [2.5, 4.5]
    assert default_collate([np.float32(1), np.float32(2)]).dtype == np.float32
    assert default_collate([1, 2.5]).dtype == np.float64


def test_plain_list_is_a_dataset():
    data = [(np.array([i, i], dtype=np.float32), i) for i in range(5)]
    x, y = next(iter(DataLoader(data, batch_size=4)))
    assert x.shape == (4, 2) and x.dtype == np.float32 and y.tolist() == [0, 1, 2, 3]


def test_collate_errors():
    with pytest.raises(ValueError, match=r"different shapes.*sample 0 has shape \(2,\), sample 1 has shape \(3,\)"):
        default_collate([tl.zeros(2), tl.zeros(3)])
    with pytest.raises(ValueError, match="different shapes"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match=r"same number of fields.*\[2, 3\]"):
        default_collate([(1, 2), (1, 2, 3)])
    with pytest.raises(ValueError, match="keys"):
        default_collate([{"a": 1}, {"b": 1}])
    with pytest.raises(TypeError, match="sample 0 is a Tensor but sample 1 is a int"):
        default_collate([tl.zeros(2), 3])
    with pytest.raises(TypeError, match="don't know how to batch a object.*collate_fn"):
        default_collate([object(), object()])
    with pytest.raises(ValueError, match="empty"):
        default_collate([])


# --- DataLoader: argument errors, repr, devices ------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        DataLoader(make_ds(4), batch_size=bad)


def test_bad_dataset_and_collate():
    with pytest.raises(TypeError, match="needs __len__ and __getitem__"):
        DataLoader(iter(range(3)))
    with pytest.raises(TypeError, match="collate_fn must be callable"):
        DataLoader(make_ds(3), collate_fn=3)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(make_ds(3), num_workers=-1)
    with pytest.raises(NotImplementedError, match="must implement"):
        len(Dataset())


def test_pytorch_only_arguments_are_accepted_and_repr():
    loader = DataLoader(make_ds(10), batch_size=4, shuffle=True, num_workers=4, pin_memory=True)
    assert len(list(loader)) == 3
    assert repr(loader) == "DataLoader(TensorDataset of 10, batch_size=4, shuffle=True)"


def test_device_moves_batches(device):
    for ds in (make_ds(10), DictDataset()):
        for batch in DataLoader(ds, batch_size=4, device=device):
            tensors = batch.values() if isinstance(batch, dict) else batch
            for t in tensors:
                if isinstance(t, tl.Tensor):
                    assert t.device == device


def test_dataset_on_device_is_gathered_there(device):
    ds = make_ds(9, device=device)
    batches = list(DataLoader(ds, batch_size=4, shuffle=True))
    assert all(t.device == device for b in batches for t in b)
    assert sorted(np.concatenate([b[1].numpy() for b in batches]).tolist()) == sorted((np.arange(9) % 4).tolist())


# --- Subset and random_split -------------------------------------------------------------------------
def test_subset_and_its_fast_path(monkeypatch):
    ds = TensorDataset(tl.arange(10) * 10)
    sub = Subset(ds, [9, 2, 4])
    assert len(sub) == 3 and int(sub[0][0]) == 90
    monkeypatch.setattr(TensorDataset, "__getitem__", lambda self, i: 1 / 0)
    (x,) = next(iter(DataLoader(sub, batch_size=3)))
    assert x.tolist() == [90, 20, 40]


def test_random_split():
    ds = TensorDataset(tl.arange(10))
    a, b = random_split(ds, [7, 3])
    assert (len(a), len(b)) == (7, 3)
    assert sorted(a.indices + b.indices) == list(range(10))
    c, d, e = random_split(ds, [0.5, 0.3, 0.2])
    assert (len(c), len(d), len(e)) == (5, 3, 2)
    tl.manual_seed(9)
    first = random_split(ds, [5, 5])[0].indices
    tl.manual_seed(9)
    assert random_split(ds, [5, 5])[0].indices == first
    with pytest.raises(ValueError, match="adding up to the dataset's length 10"):
        random_split(ds, [5, 6])


# --- FashionMNIST: the bundled subset ------------------------------------------------------------------
@pytest.fixture
def no_full_set(monkeypatch, tmp_path):
    """No root, no $TINYLAZY_DATA, and a Debian folder that is empty: only the bundled subset is left."""
    monkeypatch.delenv("TINYLAZY_DATA", raising=False)
    monkeypatch.setattr(tds, "DEBIAN_DIR", tmp_path / "no-such-folder")


@pytest.mark.parametrize("train, n", [(True, 2000), (False, 500)])
def test_bundled_subset(no_full_set, train, n, capsys):
    ds = FashionMNIST(train=train)
    assert capsys.readouterr().out == ""                  # silent unless verbose=True
    assert ds.source == "bundled" and ds.is_subset and len(ds) == n
    images, labels = ds.tensors
    assert images.shape == (n, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert ds.targets is labels
    x = images.numpy()
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x.reshape(n, 28, 28) * 255, ds.data.numpy())    # exactly k / 255
    assert ds.data.dtype == np.uint8 and ds.data.shape == (n, 28, 28)
    assert np.bincount(labels.numpy(), minlength=10).tolist() == [n // 10] * 10
    assert "bundled" in ds.describe() and f"{n:,} images" in ds.describe()
    assert ("train" if train else "test") in ds.describe()
    assert len(ds.classes) == 10 and ds.class_to_idx["Ankle boot"] == 9


def test_subset_true_ignores_the_full_set(monkeypatch, tmp_path):
    write_fake_set(tmp_path, n=12)
    monkeypatch.setenv("TINYLAZY_DATA", str(tmp_path))
    assert FashionMNIST(subset=True).source == "bundled"
    assert FashionMNIST(root=tmp_path, subset=True, train=False).source == "bundled"


def test_items_transforms_and_loader(no_full_set):
    ds = FashionMNIST(train=False)
    image, label = ds[3]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32 and type(label) is int
    assert label == int(ds.targets[3])
    shifted = FashionMNIST(train=False, transform=lambda im: im * 2 - 1,
                           target_transform=lambda y: y + 100)
    image2, label2 = shifted[3]
    np.testing.assert_allclose(image2.numpy(), image.numpy() * 2 - 1)
    assert label2 == label + 100
    xb, yb = next(iter(DataLoader(shifted, batch_size=16)))        # general path, collated samples
    assert xb.shape == (16, 1, 28, 28) and yb.dtype == np.int64 and yb.numpy().min() >= 100
    loader = DataLoader(ds, batch_size=64, shuffle=True)             # fast path
    seen = np.concatenate([yb.numpy() for _, yb in loader])
    assert len(loader) == 8 and np.bincount(seen).tolist() == [50] * 10


def test_verbose_prints_describe(no_full_set, capsys):
    ds = FashionMNIST(train=False, verbose=True)
    assert capsys.readouterr().out.strip() == ds.describe()
    assert "FashionMNIST" in repr(ds) and "Test" in repr(ds)


def test_importing_prints_nothing():
    out = subprocess.run([sys.executable, "-c", "import tinylazy, tinylazy.datasets, tinylazy.utils.data"],
                         capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout == "" and out.stderr == ""


def test_bundled_files_are_small_and_licensed():
    folder = REPO / "tinylazy" / "data"
    files = sorted(folder.glob("fashion-mnist-subset-*-ubyte.gz"))
    assert len(files) == 4
    assert sum(f.stat().st_size for f in files) < 1.5e6
    licence = (folder / "LICENSE-fashion-mnist.txt").read_text()
    assert "Copyright (c) 2017 Zalando SE" in licence and "MIT" in licence
    assert "Permission is hereby granted, free of charge" in licence


# --- FashionMNIST: the full set --------------------------------------------------------------------------
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(not (DEBIAN / "t10k-labels-idx1-ubyte.gz").is_file(),
                                  reason="the full Fashion-MNIST is not installed "
                                         "(apt-get install dataset-fashion-mnist)")


@needs_debian
def test_full_set_from_the_debian_folder(monkeypatch):
    monkeypatch.delenv("TINYLAZY_DATA", raising=False)
    test = FashionMNIST(train=False)
    assert test.source == "debian" and not test.is_subset and "Debian" in test.describe()
    assert test.tensors[0].shape == (10000, 1, 28, 28) and test.tensors[0].dtype == np.float32
    assert np.bincount(test.targets.numpy()).tolist() == [1000] * 10
    train = FashionMNIST(train=True, subset=False)
    assert len(train) == 60000 and np.bincount(train.targets.numpy()).tolist() == [6000] * 10
    assert "60,000 images" in train.describe()


@needs_debian
def test_bundled_subset_is_the_documented_selection_of_the_full_set():
    spec = importlib.util.spec_from_file_location("make_subset", REPO / "bench" / "make_fashion_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    full = read_idx(DEBIAN / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(DEBIAN / "t10k-labels-idx1-ubyte.gz")
    keep = script.choose(labels, 50, seed=0)
    sub = FashionMNIST(train=False, subset=True)
    np.testing.assert_array_equal(sub.data.numpy(), full[keep])
    np.testing.assert_array_equal(sub.targets.numpy(), labels[keep])


# --- FashionMNIST: root= and $TINYLAZY_DATA ----------------------------------------------------------
def write_fake_set(folder, n=12, train=True, gz=True, labels=None):
    """A tiny valid Fashion-MNIST split in `folder`; returns (images, labels) as uint8 arrays."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels
    split = "train" if train else "t10k"
    ext = ".gz" if gz else ""
    write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
    return images, labels


def test_root_is_honoured(monkeypatch, tmp_path):
    images, labels = write_fake_set(tmp_path / "a", n=12)
    write_fake_set(tmp_path / "b", n=7)
    monkeypatch.setenv("TINYLAZY_DATA", str(tmp_path / "b"))   # root wins over the variable
    ds = FashionMNIST(root=tmp_path / "a")
    assert ds.source == "root" and len(ds) == 12 and not ds.is_subset
    assert "root=" in ds.describe()
    np.testing.assert_array_equal(ds.data.numpy(), images)
    np.testing.assert_array_equal(ds.targets.numpy(), labels)
    np.testing.assert_array_equal(ds.tensors[0].numpy()[:, 0], images.astype(np.float32) / 255)


def test_environment_variable_is_honoured(monkeypatch, tmp_path):
    write_fake_set(tmp_path, n=7, train=False)
    monkeypatch.setenv("TINYLAZY_DATA", str(tmp_path))
    ds = FashionMNIST(train=False)
    assert ds.source == "TINYLAZY_DATA" and len(ds) == 7 and "$TINYLAZY_DATA" in ds.describe()


@pytest.mark.parametrize("layout", ["fashion-mnist", "FashionMNIST/raw"])
def test_uncompressed_files_and_torchvision_layout(tmp_path, layout):
    write_fake_set(tmp_path / layout, n=5, gz=False)
    ds = FashionMNIST(root=tmp_path)
    assert len(ds) == 5 and ds.files[0].endswith("train-images-idx3-ubyte")


def test_missing_files_are_named(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYLAZY_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"root=.*train-images-idx3-ubyte\(\.gz\).*apt-get install"):
        FashionMNIST(root=tmp_path)
    monkeypatch.setenv("TINYLAZY_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"\$TINYLAZY_DATA=.*nowhere.*t10k-labels-idx1-ubyte"):
        FashionMNIST(train=False)
    write_fake_set(tmp_path / "half", n=3)
    (tmp_path / "half" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"not .*half/train-labels-idx1-ubyte"):
        FashionMNIST(root=tmp_path / "half")


def test_download_true_falls_back_and_subset_false_requires_the_full_set(no_full_set, tmp_path):
    ds = FashionMNIST(root=tmp_path, train=False, download=True)    # tinylazy never downloads
    assert ds.source == "bundled"
    with pytest.raises(FileNotFoundError, match=r"subset=False.*apt-get install dataset-fashion-mnist"):
        FashionMNIST(subset=False)
    with pytest.raises(ValueError, match="subset must be None, True or False"):
        FashionMNIST(subset="yes")


# --- FashionMNIST: damaged files --------------------------------------------------------------------
def damage(folder, how):
    """Write a good split into `folder`, then damage it in one way; returns the damaged file's path."""
    write_fake_set(folder, n=20)
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    if how == "truncated gzip":
        data = images.read_bytes()
        images.write_bytes(data[: len(data) // 2])
        return images, "gzip data is corrupt or truncated"
    if how == "not gzip":
        images.write_bytes(b"<html>not found</html>")
        return images, "not a gzip file"
    if how == "truncated data":
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[:-100]))
        return images, r"truncated: the header says shape \(20, 28, 28\)"
    if how == "trailing data":
        raw = gzip.decompress(labels.read_bytes())
        labels.write_bytes(gzip.compress(raw + b"\0"))
        return labels, "longer than its header says"
    if how == "not idx":
        images.write_bytes(gzip.compress(b"PK\x03\x04" + bytes(100)))
        return images, "not an IDX file"
    if how == "swapped":
        images.write_bytes(labels.read_bytes())
        return images, "expected Fashion-MNIST images"
    if how == "wrong size":
        write_idx(images, np.zeros((20, 27, 27), np.uint8))
        return images, r"shape \(20, 27, 27\)"
    if how == "count mismatch":
        write_idx(labels, np.zeros(19, np.uint8))
        return images, "holds 20 images but .* holds 19 labels"
    if how == "bad label":
        write_idx(labels, np.full(20, 10, np.uint8))
        return labels, "labels must be 0..9, found 10"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated gzip", "not gzip", "truncated data", "trailing data", "not idx",
                                 "swapped", "wrong size", "count mismatch", "bad label"])
def test_damaged_files_give_a_clear_error(tmp_path, how):
    path, message = damage(tmp_path, how)
    with pytest.raises(DatasetFileError, match=message) as info:
        FashionMNIST(root=tmp_path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_idx_round_trip(tmp_path):
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        a = np.arange(24).reshape(2, 3, 4).astype(dtype)
        for name in ("a.idx", "a.idx.gz"):
            write_idx(tmp_path / name, a)
            b = read_idx(tmp_path / name)
            assert b.dtype == dtype and b.dtype.isnative and b.flags.writeable
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="cannot store"):
        write_idx(tmp_path / "b.idx", np.zeros(3, np.int64))
