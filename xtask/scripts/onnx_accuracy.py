#!/usr/bin/env python3
"""Test accuracy of an exported model.onnx on ONNX Runtime, from the file alone: the task, the
labels and the input normalisation are read from the model's metadata (`burn_qat.meta`, the
artifact's), as the trainer's `infer` reads them from model.qat.

usage: onnx_accuracy.py MODEL.onnx IMAGES.idx.gz LABELS.idx.gz   (image-classification)
       onnx_accuracy.py MODEL.onnx TEST.ts                       (sequence-classification)

Prints one JSON line: {"model", "task", "compared", "correct", "accuracy", "onnxruntime"}; the
trainer's `int-<scheme>/eval.json` holds the engine's accuracy on the same test set.
"""
import gzip
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def images(meta, images_path, labels_path):
    spec = meta["input"]
    x = read_idx(images_path).astype(np.float32)
    x = (x / 255.0 - spec["mean"]) / spec["std"]
    return [x[:, None, :, :].astype(np.float32)], read_idx(labels_path).astype(np.int64)


def sequences(meta, path):
    spec = meta["input"]
    time, dims = spec["time"], spec["dims"]
    stats = np.array(spec["normalization"], dtype=np.float32)
    rows, labels = [], []
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    data = lines[[l.lower() for l in lines].index("@data") + 1 :]
    for line in data:
        *features, label = line.split(":")
        columns = [[float(v) for v in d.split(",")] for d in features]
        rows.append(np.array(columns, dtype=np.float32).T)  # [len, dims]
        labels.append(meta["labels"].index(label))
    frames = np.zeros((len(rows), time, dims), dtype=np.float32)
    mask = np.zeros((len(rows), time), dtype=np.float32)
    for i, r in enumerate(rows):
        frames[i, : len(r)] = (r - stats[:, 0]) / stats[:, 1]
        mask[i, : len(r)] = 1.0
    return [frames, mask], np.array(labels)


def main():
    path = sys.argv[1]
    model = onnx.load(path)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["burn_qat.meta"])
    task = meta["task"]
    if task == "image-classification":
        inputs, labels = images(meta, sys.argv[2], sys.argv[3])
    elif task == "sequence-classification":
        inputs, labels = sequences(meta, sys.argv[2])
    else:
        sys.exit(f"{path}: task {task} has no reader here")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {i.name: x for i, x in zip(session.get_inputs(), inputs, strict=True)}
    (logits,) = session.run(None, feed)
    correct = int((logits.argmax(axis=1) == labels).sum())
    print(json.dumps({
        "model": path,
        "task": task,
        "compared": len(labels),
        "correct": correct,
        "accuracy": correct / len(labels),
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
