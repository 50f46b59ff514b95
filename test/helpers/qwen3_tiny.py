"""Test fixture: a tiny random-weight Qwen3-shaped checkpoint (2 layers, hidden 64, q/k norm, tied
embeddings) with Qwen3's real tokenizer and chat template and its full 151,936-row embedding, in
the Hugging Face layout, then exported with the project's exporter (`nfcot.export --hf`).

  /usr/bin/python3 test/helpers/qwen3_tiny.py QWEN3_TOKENIZER_DIR WORK
  -> WORK/hf (the checkpoint), WORK/out (the served model directory)
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from nfcot.hf_export import export_hf  # noqa: E402
from nfcot.hf_fixture import TINY, randomize  # noqa: E402
from nfcot.hf_write import write_hf  # noqa: E402
from nfcot.model import ModelConfig, NFCoTModel  # noqa: E402

QWEN3_VOCAB = 151936  # Qwen3's embedding rows; its tokenizer has 151,669 tokens
EOS_IDS = [151645, 151643]  # <|im_end|>, <|endoftext|> (Qwen3's generation_config.json)

tok_dir, work = sys.argv[1], sys.argv[2]
with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
    tok = json.load(f)
with open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8") as f:
    cfg = json.load(f)
model = NFCoTModel(ModelConfig(vocab_size=QWEN3_VOCAB, positional_heads=(), latent=False, **TINY["qwen3"]), init=False).eval()
randomize(model, 11)
hf = os.path.join(work, "hf")
write_hf(hf, model, tokenizer_json=tok, tokenizer_config=cfg, eos_ids=EOS_IDS, bos_id=151643, dtype=torch.float32)
export_hf(hf, os.path.join(work, "out"), name="qwen3-tiny-random")
print("ok")
