"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; Zalando SE, MIT licence): 28x28 grey images of 10 kinds of
clothing, 60,000 for training and 10,000 for testing, in the IDX format of the original MNIST files.

`FashionMNIST` looks for the four files in this order and says which it loaded (`.source`, `.describe()`):

1. ``root=`` when given;
2. the folder named by ``$TINYLAZY_DATA``;
3. ``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` package puts them;
4. otherwise the small class-balanced subset bundled in ``tinylazy/data`` (2,000 training and 500 test
   images; made by ``bench/make_fashion_subset.py``), so that the demo and the tests run anywhere.

In each folder it accepts the original names (``train-images-idx3-ubyte.gz``, ...), gzipped or not, also
in the sub-folders ``fashion-mnist/`` and ``FashionMNIST/raw/`` (torchvision's layout). Missing files raise
`FileNotFoundError` and damaged ones `DatasetFileError`, both naming the file. tinylazy never downloads.
"""
import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .tensor import Tensor
from .utils.data import TensorDataset

__all__ = ["FashionMNIST", "DatasetFileError", "read_idx", "write_idx", "DEBIAN_DIR", "BUNDLED_DIR", "ENV_VAR"]

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
BUNDLED_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_PREFIX = "fashion-mnist-subset-"
ENV_VAR = "TINYLAZY_DATA"


class DatasetFileError(ValueError):
    """A data file exists but does not hold what it should: corrupt, truncated, or another kind of file."""


# --- the IDX format ---------------------------------------------------------------------------------
# A big-endian header: two zero bytes, a type code, the number of dimensions, then each dimension as a
# uint32; the values follow, row-major. Images are 0x00000803 (ubyte, 3-d), labels 0x00000801 (ubyte, 1-d).
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def _gunzip(raw):
    """Decompress gzip data: zlib directly (faster), `gzip` for what zlib alone does not handle
    (several members) and for its clearer errors."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw)
    except zlib.error:
        return gzip.decompress(raw)
    return out if inflater.eof and not inflater.unused_data else gzip.decompress(raw)


def read_idx(path):
    """The array stored in an IDX file (gzipped or not), with its header checked against its length.

    Raises `DatasetFileError` naming the file when it is not valid gzip, not IDX, truncated, or too long.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = _gunzip(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetFileError(f"{path}: the gzip data is corrupt or truncated ({exc}); replace the file "
                                   "with a good copy") from None
    elif path.suffix == ".gz":
        raise DatasetFileError(f"{path}: not a gzip file (it starts with bytes {raw[:4].hex()}); replace the "
                               "file with a good copy")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DatasetFileError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, expected "
                               "00 00 <type> <ndim>)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFileError(f"{path}: truncated IDX header ({len(raw)} bytes, the header needs {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DatasetFileError(f"{path}: the file is {what}: the header says shape {dims} ({expected:,} bytes "
                               f"of data) but it holds {got:,} bytes")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))          # native byte order, writable, owns its memory


def write_idx(path, array, compresslevel=9):
    """Write `array` as an IDX file, gzipped when `path` ends in ``.gz`` (with a fixed timestamp, so the
    same array always gives the same bytes)."""
    array = np.asarray(array)
    code = next((c for c, dt in _IDX_TYPES.items() if dt.newbyteorder("=") == array.dtype.newbyteorder("=")), None)
    if code is None or array.ndim == 0:
        raise TypeError(f"write_idx: cannot store a {array.ndim}-d {array.dtype} array in IDX")
    body = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body += np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        body = gzip.compress(body, compresslevel=compresslevel, mtime=0)
    path.write_bytes(body)


# --- finding the files ------------------------------------------------------------------------------
def _file_names(train):
    split = "train" if train else "t10k"
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


def _find_pair(folder, names):
    """(images path, labels path) in `folder` or its usual sub-folders, or None when neither is there.

    When only one of the two files is there, that is an error: the other one is missing."""
    folder = Path(folder).expanduser()
    for place in (folder, folder / "fashion-mnist", folder / "FashionMNIST" / "raw"):
        found = [next((place / (n + ext) for ext in (".gz", "") if (place / (n + ext)).is_file()), None)
                 for n in names]
        if all(found):
            return tuple(found)
        if any(found):
            missing = names[found.index(None)]
            raise FileNotFoundError(f"FashionMNIST: {place} has {found[0] or found[1]} but not "
                                    f"{place / missing}(.gz); copy the missing file there")
    return None


def _search_text(folder, names):
    return f"{' and '.join(n + '(.gz)' for n in names)} in {folder} (or its fashion-mnist/ or FashionMNIST/raw/)"


_HOW_TO_GET = ("get the full set with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or from "
               "https://github.com/zalandoresearch/fashion-mnist, then pass root= or set $TINYLAZY_DATA")


def _locate(root, train, subset, download):
    """(images path, labels path, source) for the request; see the module docstring for the order."""
    names = _file_names(train)
    if subset is not True:
        if root is not None:
            found = _find_pair(root, names)
            if found:
                return (*found, "root")
            if not download:
                raise FileNotFoundError(f"FashionMNIST: no Fashion-MNIST files in root={str(root)!r}: looked for "
                                        f"{_search_text(root, names)}; {_HOW_TO_GET}, or leave root=None to "
                                        "use the bundled subset")
            # download=True: tinylazy never downloads, so carry on with the other places.
        env = os.environ.get(ENV_VAR)
        if env:
            found = _find_pair(env, names)
            if found:
                return (*found, ENV_VAR)
            raise FileNotFoundError(f"FashionMNIST: ${ENV_VAR}={env!r} but there is no Fashion-MNIST there: "
                                    f"looked for {_search_text(env, names)}; fix or unset ${ENV_VAR}")
        found = _find_pair(DEBIAN_DIR, names)
        if found:
            return (*found, "debian")
        if subset is False:
            raise FileNotFoundError(f"FashionMNIST(subset=False): the full set was not found (looked in "
                                    f"{DEBIAN_DIR}, no root= and no ${ENV_VAR}); {_HOW_TO_GET}")
    images, labels = (BUNDLED_DIR / f"{BUNDLED_PREFIX}{n}.gz" for n in names)
    for path in (images, labels):
        if not path.is_file():
            raise FileNotFoundError(f"FashionMNIST: the bundled subset file {path} is missing from the "
                                    "installation; regenerate it with bench/make_fashion_subset.py, or "
                                    f"{_HOW_TO_GET}")
    return images, labels, "bundled"


def load_fashion_mnist_arrays(images_path, labels_path):
    """Read and check a Fashion-MNIST pair: (uint8 images (N, 28, 28), uint8 labels (N,))."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetFileError(f"{images_path}: expected Fashion-MNIST images (IDX 00000803: N x 28 x 28 "
                               f"unsigned bytes), got a {images.ndim}-d {images.dtype} array of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetFileError(f"{labels_path}: expected Fashion-MNIST labels (IDX 00000801: N unsigned bytes), "
                               f"got a {labels.ndim}-d {labels.dtype} array of shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetFileError(f"{images_path} holds {len(images):,} images but {labels_path} holds "
                               f"{len(labels):,} labels; the two files do not belong together")
    if labels.size and labels.max() >= len(FashionMNIST.classes):
        raise DatasetFileError(f"{labels_path}: labels must be 0..9, found {int(labels.max())}")
    return images, labels


# --- the dataset ------------------------------------------------------------------------------------
class FashionMNIST(TensorDataset):
    """Fashion-MNIST as a dataset of ``(image, label)``: images float32 in [0, 1] of shape (1, 28, 28).

    Args:
        root: a folder holding the IDX files; None searches ``$TINYLAZY_DATA``, then the Debian folder,
            then falls back to the bundled subset.
        train: the training split (True) or the test split (False).
        transform, target_transform: applied to each image tensor / integer label by ``dataset[i]``.
            Without them the DataLoader takes the fast path (one fancy index per batch).
        download: accepted for torchvision compatibility. tinylazy never downloads; with
            ``download=True`` a `root` without the files is not an error, the search goes on.
        subset: None (default) loads the full set when found, else the bundled subset; True always loads
            the bundled subset; False requires the full set (an error says where it looked).
        verbose: print `describe()` after loading.

    Attributes: ``tensors`` (images (N, 1, 28, 28) float32, labels (N,) int64), ``targets`` (the labels),
    ``data`` (the raw uint8 images (N, 28, 28), as in torchvision), ``classes``, ``class_to_idx``,
    ``source`` (``"root"``, ``"TINYLAZY_DATA"``, ``"debian"`` or ``"bundled"``), ``files``, ``is_subset``.
    """

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False,
                 subset=None, verbose=False):
        if subset not in (None, True, False):
            raise ValueError(f"FashionMNIST: subset must be None, True or False, got {subset!r}")
        images_path, labels_path, self.source = _locate(root, train, subset, download)
        raw, labels = load_fashion_mnist_arrays(images_path, labels_path)
        images = np.divide(raw.reshape(-1, 1, 28, 28), 255, dtype=np.float32)   # as torchvision's ToTensor
        super().__init__(Tensor(images), Tensor(labels.astype(np.int64)))
        self._raw = raw
        self.train = bool(train)
        self.transform, self.target_transform = transform, target_transform
        self.files = (str(images_path), str(labels_path))
        self.root = str(Path(images_path).parent)
        if verbose:
            print(self.describe())

    @property
    def data(self):
        """The images as stored: a uint8 tensor of shape (N, 28, 28), values 0..255."""
        return Tensor(self._raw)

    @property
    def targets(self):
        """The labels: an int64 tensor of shape (N,), values 0..9 (indices into `classes`)."""
        return self.tensors[1]

    @property
    def class_to_idx(self):
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def is_subset(self):
        """True when this is the small subset bundled with tinylazy rather than the full set."""
        return self.source == "bundled"

    def __getitem__(self, index):
        """``(image, label)``: a float32 tensor (1, 28, 28) and an int (after the transforms, if any)."""
        image = Tensor(self.tensors[0].array[index].copy())
        target = int(self.tensors[1].array[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def _get_batch(self, indices):
        if self.transform is not None or self.target_transform is not None:
            return None                       # transforms work per sample: let the DataLoader collate
        return super()._get_batch(indices)

    def describe(self):
        """One line: which split, how many images, and where they came from."""
        split = "train" if self.train else "test"
        where = {"root": f"from root={self.root}",
                 ENV_VAR: f"from ${ENV_VAR} ({self.root})",
                 "debian": f"from {self.root} (Debian package dataset-fashion-mnist)",
                 "bundled": f"from the subset bundled with tinylazy ({self.root})"}[self.source]
        full_size = 60000 if self.train else 10000
        if self.is_subset:
            kind = f"class-balanced subset; for the full set: apt-get install dataset-fashion-mnist or set ${ENV_VAR}"
        else:
            kind = "full set" if len(self) == full_size else f"not the full {full_size:,}"
        return f"Fashion-MNIST {split}: {len(self):,} images {where} [{kind}]"

    def __repr__(self):
        return (f"Dataset FashionMNIST\n    Number of datapoints: {len(self)}\n"
                f"    Split: {'Train' if self.train else 'Test'}\n    Source: {self.source} ({self.root})")
