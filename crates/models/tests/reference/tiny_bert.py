"""A tiny random BertForSequenceClassification saved by Hugging Face transformers in both formats
(`pytorch_model.bin` through torch.save, `model.safetensors`), with the logits transformers itself
computes for a fixed padded batch: the reference for loading `.bin` checkpoints and fine-tuned heads.

Run from the workspace root:  python3 crates/models/tests/reference/tiny_bert.py
Writes crates/models/tests/reference/tiny-bert-{bin,safetensors}/ and tiny_bert.json.
"""
import json
import os
import sys

import safetensors
import torch
import transformers
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification

HERE = "crates/models/tests/reference"
torch.manual_seed(3)
config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=32, num_labels=3,
                    initializer_range=0.3)  # large weights: a mis-loaded tensor shows in the logits
model = BertForSequenceClassification(config).eval()
state = {k: v.contiguous() for k, v in model.state_dict().items()}
for fmt in ["bin", "safetensors"]:
    out = f"{HERE}/tiny-bert-{fmt}"
    os.makedirs(out, exist_ok=True)
    config.to_json_file(f"{out}/config.json")
    if fmt == "bin":
        torch.save(state, f"{out}/pytorch_model.bin")
    else:
        save_file(state, f"{out}/model.safetensors")
input_ids = torch.tensor([[2, 7, 11, 13, 3, 0], [2, 5, 9, 17, 19, 3]])
mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
with torch.no_grad():
    logits = model(input_ids=input_ids, attention_mask=mask).logits
json.dump({
    "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                 "transformers": transformers.__version__, "safetensors": safetensors.__version__},
    "input_ids": input_ids.tolist(), "attention_mask": mask.tolist(),
    "num_labels": 3, "logits": logits.tolist(),
}, open(f"{HERE}/tiny_bert.json", "w"))
print(logits)
