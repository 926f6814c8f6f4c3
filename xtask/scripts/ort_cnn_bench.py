#!/usr/bin/env python3
"""ONNX Runtime's side of the CNN deployment benchmark: times DIR/<model>.onnx (written by
`bench_deploy --onnx DIR`, the same W8A8 program the engine runs) on the inputs written beside it,
at batch 1 (latency) and 64 (throughput), CPU, all graph optimizations (QDQ fused into
QLinearConv/QGemm), `THREADS` intra-op threads (2, as the engine's bench). Prints the rows of
README's table: `| model | batch | ORT int8 |`, medians of ROUNDS rounds.

usage: ort_cnn_bench.py DIR [ROUNDS] [THREADS]
"""
import glob
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    folder = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    for model in sorted(glob.glob(os.path.join(folder, "*.onnx"))):
        name = os.path.basename(model)[: -len(".onnx")]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        for batch in (1, 64):
            x = np.fromfile(f"{folder}/{name}.batch{batch}.f32", dtype="<f4").reshape(batch, 1, 28, 28)
            feed = {session.get_inputs()[0].name: x}
            reps = 50 if batch == 1 else 4
            session.run(None, feed)
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(reps):
                    session.run(None, feed)
                times.append((time.perf_counter() - start) / reps)
            t = statistics.median(times)
            shown = f"{1e3 * t:.3f} ms" if batch == 1 else f"{batch / t:.0f} img/s"
            print(f"| {name} | {batch} | ORT {ort.__version__} int8 | {shown} |")


if __name__ == "__main__":
    main()
