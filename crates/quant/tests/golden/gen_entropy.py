"""Golden values for `quant::entropy_threshold` / `entropy_amax` (ObserverKind::Entropy).

Regenerate with `python3 crates/quant/tests/golden/gen_entropy.py` (needs numpy and torch); the
tests only read `entropy.json`. The reference is the entropy calibration of NVIDIA's
pytorch-quantization (`pytorch_quantization/calib/histogram.py`, `_compute_amax_entropy`, stride
1, start bin 128), written out here with numpy's `digitize` / `linspace` as it uses them, and
`scipy.stats.entropy` as `sum(p * log(p / q))` over normalised distributions. Histograms come from
`torch.histc(|x|, bins, 0, max|x|)`, as its `HistogramCalibrator` collects them.
"""
import json
import pathlib

import numpy as np
import torch

torch.manual_seed(0)
OUT = pathlib.Path(__file__).with_name("entropy.json")


def kl(p, q):
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    if np.any(q[mask] == 0):
        return np.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def compute_amax_entropy_bin(hist, num_bits, unsigned, start_bin=128):
    """The index `i` of pytorch-quantization's chosen edge (amax = edges[i])."""
    bins = np.array(hist, dtype=np.float64)
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    starting = min(start_bin, len(bins))
    divergences, arguments = [], []
    for i in range(starting, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        valid = digitized != -1
        sums = np.bincount(digitized[valid], weights=bins[:i][valid], minlength=nbins)
        counts = np.bincount(digitized[valid], minlength=nbins)
        new_density = np.zeros(i, dtype=np.float64)
        new_density[valid] = sums[digitized[valid]] / counts[digitized[valid]]
        reference = np.array(bins[:i])
        reference[-1] += np.sum(bins[i:])
        divergences.append(kl(reference, new_density) if new_density.sum() > 0 else np.inf)
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return arguments[last_argmin]


def samples(name, n):
    if name == "relu_gaussian":
        return torch.relu(torch.randn(n))
    if name == "laplace":
        return torch.distributions.Laplace(0.0, 1.0).sample((n,))
    if name == "gaussian_outliers":
        x = torch.randn(n)
        x[:8] = torch.tensor([30.0, -25.0, 22.0, 40.0, -35.0, 28.0, 33.0, -31.0])
        return x
    if name == "uniform_unsigned":
        return torch.rand(n) * 3.0
    raise ValueError(name)


cases = []
# Histogram cases (the search alone, exactly): 50,000 samples, counts stored. Value cases (the
# whole path from values, binning included): 3,000 samples at 6 significant digits.
for name, n, bits, bins, keep_values in [
    ("relu_gaussian", 50000, 8, 2048, False),
    ("laplace", 50000, 8, 2048, False),
    ("gaussian_outliers", 50000, 4, 2048, False),
    ("relu_gaussian", 50000, 4, 2048, False),
    ("uniform_unsigned", 20000, 8, 512, False),
    ("gaussian_outliers", 3000, 8, 2048, True),
    ("relu_gaussian", 3000, 4, 2048, True),
]:
    x = samples(name, n)
    if keep_values:
        x = torch.tensor([float(f"{v:.6g}") for v in x.tolist()], dtype=torch.float32)
    unsigned = bool(x.min() >= 0)
    x_max = x.abs().max()
    hist = torch.histc(x.abs(), bins=bins, min=0, max=float(x_max))
    i = compute_amax_entropy_bin(hist.numpy(), bits, unsigned)
    edges = torch.linspace(0, float(x_max), bins + 1)
    case = dict(name=f"{name}_{bits}bit_{bins}{'_values' if keep_values else ''}", bits=bits,
                unsigned=unsigned, bins=bins, bin=int(i), amax=float(edges[i]))
    if keep_values:
        case["values"] = [float(f"{v:.6g}") for v in x.tolist()]
    else:
        case["histogram"] = [int(c) for c in hist.tolist()]
    cases.append(case)

OUT.write_text(json.dumps(dict(torch=torch.__version__, numpy=np.__version__, cases=cases)) + "\n")
print(f"wrote {len(cases)} cases to {OUT}: " + ", ".join(f"{c['name']}: bin {c['bin']}" for c in cases))
