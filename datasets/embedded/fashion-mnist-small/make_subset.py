"""Cuts the embedded Fashion-MNIST subset from the full dataset fetched by `cargo xtask fetch fashion-mnist`.

The first 2,000 training and the first 500 test images (with their labels), unmodified, as gzip IDX
files: `python3 datasets/embedded/fashion-mnist-small/make_subset.py`.
"""
import gzip
import pathlib
import struct

HERE = pathlib.Path(__file__).parent
FULL = HERE.parent.parent / "fashion-mnist"
COUNTS = {"train": 2000, "t10k": 500}


def read_idx(path):
    data = gzip.open(path, "rb").read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4 : 4 + 4 * rank])
    return list(dims), data[4 + 4 * rank :]


def write_idx(path, dims, body):
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime=0: byte-identical reruns
        f.write(header + body)


for split, n in COUNTS.items():
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{split}-{kind}-ubyte.gz"
        dims, body = read_idx(FULL / name)
        per_item = len(body) // dims[0]
        write_idx(HERE / name, [n] + dims[1:], body[: n * per_item])
        print(f"{name}: {n} of {dims[0]}")
