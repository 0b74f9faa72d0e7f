"""Regenerate the Fashion-MNIST subset bundled in tinylazy/data from the full files.

    python bench/make_fashion_subset.py                       # from /usr/share/datasets/fashion-mnist
    python bench/make_fashion_subset.py --src DIR --out DIR   # other folders
    python bench/make_fashion_subset.py --check               # verify the bundled files, write nothing

The full files come from Debian's `dataset-fashion-mnist` package (or
https://github.com/zalandoresearch/fashion-mnist). The selection is class-balanced and deterministic: for
each class c, NumPy's `default_rng(seed)` picks `per_class` of that class's indices without replacement;
the union is kept in the original order of the full file. Defaults: 200 per class from the training file
(2,000 images) and 50 per class from the test file (500 images), seed 0. The output is the same IDX format,
gzipped with a fixed timestamp (about 1.1 MB for the four files), named
`fashion-mnist-subset-{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`, next to the data's MIT licence
(`LICENSE-fashion-mnist.txt`, which must ship with it).
"""
import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tinylazy.datasets import (BUNDLED_DIR, BUNDLED_PREFIX, DEBIAN_DIR, _file_names,  # noqa: E402
                               load_fashion_mnist_arrays, write_idx)


def choose(labels, per_class, seed):
    """Sorted indices: `per_class` of each class, drawn without replacement by default_rng(seed)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(10):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise SystemExit(f"class {c} has only {len(pool)} images, fewer than --per-class {per_class}")
        picked.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def find(folder, name):
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"{folder}: missing {name}(.gz); install the Debian package dataset-fashion-mnist or "
                     "pass --src")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=DEBIAN_DIR, help="folder with the full IDX files")
    ap.add_argument("--out", type=Path, default=BUNDLED_DIR, help="where to write the subset")
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--test-per-class", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true",
                    help="rebuild in memory and compare with the files in --out instead of writing")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for train, per_class in ((True, args.train_per_class), (False, args.test_per_class)):
        image_name, label_name = _file_names(train)
        images, labels = load_fashion_mnist_arrays(find(args.src, image_name), find(args.src, label_name))
        keep = choose(labels, per_class, args.seed)
        for name, array in ((image_name, images[keep]), (label_name, labels[keep])):
            path = args.out / f"{BUNDLED_PREFIX}{name}.gz"
            if args.check:
                from tinylazy.datasets import read_idx
                same = path.is_file() and np.array_equal(read_idx(path), array)
                print(f"{'ok ' if same else 'DIFFERENT'} {path}")
                if not same:
                    raise SystemExit(1)
                continue
            write_idx(path, array)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            print(f"wrote {path} {array.shape} {path.stat().st_size:,} bytes sha256 {digest}...")
    if not args.check:
        total = sum(p.stat().st_size for p in args.out.glob(f"{BUNDLED_PREFIX}*.gz"))
        print(f"total {total:,} bytes; keep {args.out / 'LICENSE-fashion-mnist.txt'} next to the files")


if __name__ == "__main__":
    main()
