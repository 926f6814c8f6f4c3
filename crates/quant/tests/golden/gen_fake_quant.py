"""Golden values for crates/quant's fake-quantization math, computed with PyTorch.

Regenerate with `python3 crates/quant/tests/golden/gen_fake_quant.py` (needs `pip install torch`);
the tests only read `fake_quant.json`. Every case stores its inputs, the forward output and the
gradients for a fixed upstream gradient `dy`, so the Rust side reproduces the exact call.
"""
import json
import pathlib

import torch

torch.manual_seed(0)
OUT = pathlib.Path(__file__).with_name("fake_quant.json")


def tolist(t):
    return t.detach().reshape(-1).tolist()


def sample(shape, spread):
    x = torch.randn(shape) * spread
    flat = x.view(-1)
    # Exact ties at scale 0.25 (x / s = k + 0.5) to pin round-half-to-even.
    flat[:6] = torch.tensor([0.125, 0.375, -0.125, -0.375, 0.625, -0.625])
    return x


cases = []

# 1. torch.fake_quantize_per_tensor_affine: signed, unsigned with zero point, 4-bit.
for name, scale, zp, qmin, qmax in [
    ("per_tensor_int8", 0.25, 0, -128, 127),
    ("per_tensor_uint8_zp", 0.25, 100, 0, 255),
    ("per_tensor_int4", 0.25, 0, -8, 7),
    ("per_tensor_uint4_zp", 0.3, 5, 0, 15),
]:
    x = sample((8, 16), 3.0).requires_grad_()
    y = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    cases.append(dict(op="per_tensor_affine", name=name, shape=list(x.shape), x=tolist(x), scale=[scale],
                      zero_point=[zp], qmin=qmin, qmax=qmax, axis=None, dy=tolist(dy), y=tolist(y), dx=tolist(dx)))

# 2. torch.fake_quantize_per_channel_affine on axis 0 and 1.
for name, shape, axis, qmin, qmax in [
    ("per_channel_axis1_int8", (6, 5), 1, -128, 127),
    ("per_channel_axis0_uint4", (4, 3, 3, 3), 0, 0, 15),
]:
    x = sample(shape, 2.0).requires_grad_()
    c = shape[axis]
    scale = torch.rand(c) * 0.3 + 0.05
    zp = torch.randint(qmin, qmax + 1, (c,), dtype=torch.int32)
    y = torch.fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, qmax)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    cases.append(dict(op="per_channel_affine", name=name, shape=list(shape), x=tolist(x), scale=tolist(scale),
                      zero_point=[int(v) for v in zp], qmin=qmin, qmax=qmax, axis=axis, dy=tolist(dy),
                      y=tolist(y), dx=tolist(dx)))

# 3. torch._fake_quantize_learnable_per_tensor_affine (LSQ / LSQ+), grad factor 1 and LSQ's.
for name, scale, zp, qmin, qmax, lsq in [
    ("learnable_int8", 0.2, 0.0, -128, 127, False),
    ("learnable_uint4_zp", 0.35, 6.3, 0, 15, False),
    ("learnable_int4_lsq_factor", 0.3, 0.0, -8, 7, True),
]:
    x = sample((10, 12), 2.0).requires_grad_()
    s = torch.tensor([scale], requires_grad=True)
    z = torch.tensor([zp], requires_grad=True)
    factor = 1.0 / (x.numel() * qmax) ** 0.5 if lsq else 1.0
    y = torch._fake_quantize_learnable_per_tensor_affine(x, s, z, qmin, qmax, factor)
    dy = torch.randn_like(y)
    dx, ds, dz = torch.autograd.grad(y, (x, s, z), dy)
    cases.append(dict(op="learnable_per_tensor", name=name, shape=list(x.shape), x=tolist(x), scale=[scale],
                      zero_point=[zp], qmin=qmin, qmax=qmax, axis=None, grad_factor=factor, dy=tolist(dy),
                      y=tolist(y), dx=tolist(dx), dscale=tolist(ds), dzero_point=tolist(dz)))

# 4. torch._fake_quantize_learnable_per_channel_affine.
x = sample((5, 7), 1.5).requires_grad_()
s = (torch.rand(7) * 0.2 + 0.05).requires_grad_()
z = (torch.rand(7) * 4.0).requires_grad_()
y = torch._fake_quantize_learnable_per_channel_affine(x, s, z, 1, 0, 15, 1.0)
dy = torch.randn_like(y)
dx, ds, dz = torch.autograd.grad(y, (x, s, z), dy)
cases.append(dict(op="learnable_per_channel", name="learnable_per_channel_uint4", shape=[5, 7], x=tolist(x),
                  scale=tolist(s), zero_point=tolist(z), qmin=0, qmax=15, axis=1, grad_factor=1.0, dy=tolist(dy),
                  y=tolist(y), dx=tolist(dx), dscale=tolist(ds), dzero_point=tolist(dz)))


# 5. PACT (no PyTorch op): the paper's definition in autograd, y = clamp(x, 0, a) quantized with an STE.
def pact_ref(x, alpha, bits, signed):
    if signed:
        clipped = torch.minimum(torch.maximum(x, -alpha), alpha)
        levels = 2 ** (bits - 1) - 1
    else:
        clipped = torch.minimum(torch.relu(x), alpha)
        levels = 2 ** bits - 1
    step = alpha.detach() / levels
    q = torch.round(clipped.detach() / step) * step
    return clipped + (q - clipped.detach())


for name, alpha, bits, signed in [("pact_u4", 2.0, 4, False), ("pact_s3", 1.5, 3, True)]:
    x = (torch.randn(9, 11) * 1.5).requires_grad_()
    a = torch.tensor([alpha], requires_grad=True)
    y = pact_ref(x, a, bits, signed)
    dy = torch.randn_like(y)
    dx, da = torch.autograd.grad(y, (x, a), dy)
    cases.append(dict(op="pact", name=name, shape=list(x.shape), x=tolist(x), alpha=[alpha], bits=bits,
                      signed=signed, dy=tolist(dy), y=tolist(y), dx=tolist(dx), dalpha=tolist(da)))

# 6. Observer qparams: torch.ao.quantization MinMaxObserver / PerChannelMinMaxObserver.
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver  # noqa: E402

for name, obs, shape in [
    ("observer_affine_quint8", MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine), (50,)),
    ("observer_symmetric_qint8", MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric), (50,)),
    ("observer_symmetric_quint8", MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric), (50,)),
    ("observer_per_channel_symmetric_qint8",
     PerChannelMinMaxObserver(ch_axis=1, dtype=torch.qint8, qscheme=torch.per_channel_symmetric), (6, 4)),
    ("observer_per_channel_affine_quint8",
     PerChannelMinMaxObserver(ch_axis=1, dtype=torch.quint8, qscheme=torch.per_channel_affine), (6, 4)),
]:
    x = torch.randn(shape) * 2.0 + 0.5
    obs(x)
    scale, zp = obs.calculate_qparams()
    cases.append(dict(op="observer", name=name, shape=list(shape), x=tolist(x),
                      signed=obs.dtype == torch.qint8,
                      symmetric=obs.qscheme in (torch.per_tensor_symmetric, torch.per_channel_symmetric),
                      axis=getattr(obs, "ch_axis", None) if "per_channel" in name else None,
                      scale=tolist(scale.float()), zero_point=[int(v) for v in zp.reshape(-1)]))

OUT.write_text(json.dumps(dict(torch_version=torch.__version__, cases=cases), indent=None))
print(f"wrote {len(cases)} cases to {OUT} with torch {torch.__version__}")
