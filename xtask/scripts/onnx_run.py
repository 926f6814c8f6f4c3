#!/usr/bin/env python3
"""Runs an exported model.onnx on ONNX Runtime (CPU) — the check that the ONNX file is the
integer program burn-qat trained, read by another engine.

usage: onnx_run.py MODEL.onnx BATCH OUT_PREFIX INPUT.f32 [INPUT.f32 …]

Each INPUT.f32 holds one of the model's inputs, in the graph's order, batch first, as
little-endian f32 (the engine's layout).
Writes OUT_PREFIX.<level>.<k>.f32 (output k, little-endian f32) for two session settings:
  `optimized`  all graph optimizations: QDQ groups fused into ONNX Runtime's integer kernels
               (QLinearConv, QGemm, …), the way the model is deployed;
  `reference`  no optimization: every QuantizeLinear / DequantizeLinear run as written, float ops
               between them (the QDQ semantics themselves).
Also runs onnx.checker (full check, with shape inference) and prints one JSON line: the ops of the
optimized graph ONNX Runtime actually ran, the checker's verdict, ONNX Runtime's version and the
CPU's vector extensions (which pick its integer kernels).
"""
import json
import platform
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort


def cpu_features():
    """The x86 vector extensions that pick ONNX Runtime's integer kernels (its fused kernels round
    and saturate differently from one to the next), for a mismatch to say where it was seen."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return platform.machine()
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]
    return " ".join(flag for flag in wanted if flag in flags) or platform.machine()


def main():
    model_path, batch, prefix, input_paths = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    feed = {}
    for graph_input, path in zip(model.graph.input, input_paths, strict=True):
        dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:]]
        feed[graph_input.name] = np.fromfile(path, dtype="<f4").reshape([batch, *dims])
    report = {"checker": "ok"}
    levels = {
        "optimized": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "reference": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    for level, setting in levels.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = setting
        options.intra_op_num_threads = 1
        if level == "optimized":
            options.optimized_model_filepath = tempfile.mktemp(suffix=".onnx")
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        for k, y in enumerate(session.run(None, feed)):
            np.asarray(y, dtype="<f4").tofile(f"{prefix}.{level}.{k}.f32")
        if level == "optimized":
            ran = onnx.load(options.optimized_model_filepath)
            ops = sorted({n.op_type for n in ran.graph.node})
            report["optimized_ops"] = ops
    report["onnxruntime"] = ort.__version__
    report["cpu"] = cpu_features()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
