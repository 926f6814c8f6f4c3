"""Independent reference for the BERT test: a NumPy (float64) forward pass of Hugging Face's
BertModel on the committed fixture checkpoint (models/fixtures/minilm-l1), written from the
architecture, not from our Rust code.

Run from the workspace root:  python3 crates/models/tests/reference/bert_reference.py
Writes crates/models/tests/reference/bert_reference.json (input ids, mask, last hidden states,
pooled output, and the logits of a sentence head with fixed, formula-given weights).
Versions used for the committed values are recorded in the JSON.
"""
import json
import math
import sys

import numpy as np
import safetensors
from safetensors.numpy import load_file

FIXTURE = "models/fixtures/minilm-l1"
OUT = "crates/models/tests/reference/bert_reference.json"
SENTENCES = ["a warm and funny film", "the plot makes no sense and the acting is wooden ."]
NUM_LABELS = 3

config = json.load(open(f"{FIXTURE}/config.json"))
w = {k: v.astype(np.float64) for k, v in load_file(f"{FIXTURE}/model.safetensors").items()}
vocab = {t: i for i, t in enumerate(open(f"{FIXTURE}/vocab.txt").read().split("\n")) if t}

def ids_of(sentence):
    # Every word of these sentences is a single word piece of the fixture vocabulary.
    return [vocab["[CLS]"]] + [vocab[word] for word in sentence.split()] + [vocab["[SEP]"]]

rows = [ids_of(s) for s in SENTENCES]
seq = max(len(r) for r in rows)
input_ids = np.array([r + [vocab["[PAD]"]] * (seq - len(r)) for r in rows])
mask = np.array([[1] * len(r) + [0] * (seq - len(r)) for r in rows])

erf = np.vectorize(math.erf)
def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))

def layer_norm(x, prefix):
    eps = config["layer_norm_eps"]
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]

def linear(x, prefix):
    # Hugging Face stores Linear weights as [out, in].
    return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]

def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)

heads = config["num_attention_heads"]
hidden = config["hidden_size"]
d = hidden // heads
batch = input_ids.shape[0]
x = (w["embeddings.word_embeddings.weight"][input_ids]
     + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
     + w["embeddings.token_type_embeddings.weight"][np.zeros_like(input_ids)])
x = layer_norm(x, "embeddings.LayerNorm")
additive = (1.0 - mask[:, None, None, :]) * -10000.0
for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}"
    split = lambda t: t.reshape(batch, seq, heads, d).transpose(0, 2, 1, 3)
    q = split(linear(x, f"{p}.attention.self.query"))
    k = split(linear(x, f"{p}.attention.self.key"))
    v = split(linear(x, f"{p}.attention.self.value"))
    probs = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + additive)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    x = layer_norm(linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
    inner = gelu(linear(x, f"{p}.intermediate.dense"))
    x = layer_norm(linear(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
# A sentence head with formula-given weights (Burn layout [in, out]), the same in the Rust test.
head_w = np.array([[math.sin(0.37 * r * (c + 1)) / 10.0 for c in range(NUM_LABELS)] for r in range(hidden)])
head_b = np.array([0.1 * c for c in range(NUM_LABELS)])
logits = pooled @ head_w + head_b

json.dump({
    "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "safetensors": safetensors.__version__},
    "sentences": SENTENCES,
    "input_ids": input_ids.tolist(),
    "attention_mask": mask.tolist(),
    "last_hidden_state": x.round(7).tolist(),
    "pooled": pooled.round(7).tolist(),
    "num_labels": NUM_LABELS,
    "logits": logits.round(7).tolist(),
}, open(OUT, "w"))
print(f"wrote {OUT}: ids {input_ids.tolist()}, logits {logits.round(5).tolist()}")
