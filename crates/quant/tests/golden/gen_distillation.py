"""Golden values for `quant::qat::soft_target_loss` / `Distillation::loss`, computed with PyTorch.

Regenerate with `python3 crates/quant/tests/golden/gen_distillation.py` (needs `pip install torch`);
the tests only read `distillation.json`. The reference is Hinton et al.'s soft-target loss as
PyTorch users write it: `kl_div(log_softmax(s / T), log_softmax(t / T), reduction="batchmean",
log_target=True) * T**2`, and for masked items (padding tokens) the per-item KL averaged over the
counted items only. Each case stores the student gradient for the mixed loss
`(1 - w) * task + w * soft`, with `task` the cross-entropy of the student logits.
"""
import json
import pathlib

import torch
import torch.nn.functional as F

torch.manual_seed(0)
OUT = pathlib.Path(__file__).with_name("distillation.json")


def flat(t):
    return t.detach().reshape(-1).tolist()


cases = []
for name, items, classes, temperature, weight, masked in [
    ("t1_w05", 6, 5, 1.0, 0.5, False),
    ("t2_w07", 8, 10, 2.0, 0.7, False),
    ("t4_w1", 4, 9, 4.0, 1.0, False),
    ("t2_masked_tokens", 12, 7, 2.0, 0.5, True),
]:
    student = (torch.randn(items, classes) * 2.0).requires_grad_()
    teacher = torch.randn(items, classes) * 3.0
    targets = torch.randint(0, classes, (items,))
    counted = (torch.rand(items) > 0.4).float() if masked else torch.ones(items)
    counted[0] = 1.0
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    per_item = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(dim=1)
    if masked:
        soft = (per_item * counted).sum() / counted.sum() * temperature**2
        task = (F.cross_entropy(student, targets, reduction="none") * counted).sum() / counted.sum()
    else:
        soft = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temperature**2
        task = F.cross_entropy(student, targets)
    loss = (1 - weight) * task + weight * soft
    (grad,) = torch.autograd.grad(loss, student)
    cases.append(dict(name=name, items=items, classes=classes, temperature=temperature,
                      weight=weight, student=flat(student), teacher=flat(teacher),
                      counted=flat(counted) if masked else None, task=task.item(),
                      soft=soft.item(), loss=loss.item(), student_grad=flat(grad),
                      targets=targets.tolist()))

OUT.write_text(json.dumps(dict(torch=torch.__version__, cases=cases), indent=1) + "\n")
print(f"wrote {len(cases)} cases to {OUT}")
