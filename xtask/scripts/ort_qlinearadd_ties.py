#!/usr/bin/env python3
"""Measures how often ONNX Runtime's fused QLinearAdd differs from the QDQ semantics it replaces.

A QDQ residual add — DequantizeLinear(a), DequantizeLinear(b), Add, QuantizeLinear — is what the
engine computes (`round((s_a·(a−z_a) + s_b·(b−z_b)) / s_c) + z_c`) and what ONNX Runtime runs with
graph optimizations off. With them on, ONNX Runtime fuses the group into QLinearAdd, whose x86
kernel requantizes with fixed-point multipliers: near a rounding tie it may land one code off.

For random u8 grids (scales, zero points) this runs every one of the 65,536 code pairs both ways
and prints, per grid, how many outputs differ, and one JSON line with the total.

usage: ort_qlinearadd_ties.py [GRIDS]    (default 40)
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def add_model(grids, n):
    """The QDQ add of two u8 tensors `[1, n]` onto a third grid."""
    inits, nodes = [], []
    for name, (scale, zero) in grids.items():
        inits += [
            helper.make_tensor(f"{name}_s", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor(f"{name}_z", TensorProto.UINT8, [], [zero]),
        ]
    for name in ["a", "b"]:
        args = [f"{name}_s", f"{name}_z"]
        nodes += [
            helper.make_node("QuantizeLinear", [name.upper(), *args], [f"{name}_q"]),
            helper.make_node("DequantizeLinear", [f"{name}_q", *args], [f"{name}_r"]),
        ]
    nodes += [
        helper.make_node("Add", ["a_r", "b_r"], ["sum"]),
        helper.make_node("QuantizeLinear", ["sum", "c_s", "c_z"], ["C"]),
    ]
    shape = [1, n]
    graph = helper.make_graph(
        nodes,
        "qdq_add",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape) for x in "AB"],
        [helper.make_tensor_value_info("C", TensorProto.UINT8, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def run(model, feed, level):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0].astype(np.int32)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rng = np.random.default_rng(0)
    codes = np.arange(256)
    a_codes, b_codes = (c.reshape(1, -1) for c in np.meshgrid(codes, codes))
    n = a_codes.size
    total, worst = 0, 0
    for trial in range(count):
        scales = [float(np.float32(s)) for s in rng.uniform(0.005, 0.1, 3)]
        zeros = [int(z) for z in rng.integers(0, 256, 3)]
        grids = dict(zip("abc", zip(scales, zeros)))
        feed = {
            "A": ((a_codes - zeros[0]) * np.float32(scales[0])).astype(np.float32),
            "B": ((b_codes - zeros[1]) * np.float32(scales[1])).astype(np.float32),
        }
        model = add_model(grids, n)
        fused = run(model, feed, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        as_written = run(model, feed, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        differ = int((fused != as_written).sum())
        worst = max(worst, int(np.abs(fused - as_written).max()))
        total += differ
        print(f"grid {trial}: scales {scales}, zero points {zeros}: {differ}/{n} codes differ")
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "grids": count,
        "code_pairs": count * n,
        "differ": total,
        "largest_difference": worst,
    }))


if __name__ == "__main__":
    main()
