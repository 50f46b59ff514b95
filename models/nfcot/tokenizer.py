"""Word-level tokenizer: one token per integer, name, operator; written as an HF tokenizer.json.

The Python encoder below mirrors the pre-tokenizer rules of the JSON so training and the server
(which reads tokenizer.json through @huggingface/tokenizers) see the same ids; a test checks both.
"""
from __future__ import annotations

import json
import re

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<bot>", "<eot>",
            "<|user|>", "<|assistant|>", "<|none|>", "<|explicit|>", "<|latent|>"]
SYMBOLS = ["\n", "=", "+", "-", "*", "//", "%", "(", ")", "print"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
INT_RANGE = 99
INTEGERS = [str(i) for i in range(-INT_RANGE, INT_RANGE + 1)]
VOCAB = SPECIALS + SYMBOLS + LETTERS + INTEGERS
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}

PAD, UNK, BOS, EOS, BOT, EOT = (TOKEN_ID[t] for t in SPECIALS[:6])
USER, ASSISTANT = TOKEN_ID["<|user|>"], TOKEN_ID["<|assistant|>"]
MODE_TOKEN = {"none": TOKEN_ID["<|none|>"], "explicit": TOKEN_ID["<|explicit|>"],
              "latent": TOKEN_ID["<|latent|>"]}
NEWLINE = TOKEN_ID["\n"]

# Spaces and tabs separate words and vanish; newlines and parentheses are words of their own.
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIALS) + ")")
_SPLIT_RE = re.compile(r"\n|\(|\)|[^\s()]+")

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>\n{{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>\n{{ message['content'] | trim }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if reasoning_mode == 'latent' %}<|latent|><bot>"
    "{% elif reasoning_mode == 'explicit' %}<|explicit|>"
    "{% else %}<|none|>{% endif %}"
    "{% endif %}"
)


def encode(text: str) -> list[int]:
    ids: list[int] = []
    for part in _SPECIAL_RE.split(text):
        if not part:
            continue
        if part in TOKEN_ID and part in SPECIALS:
            ids.append(TOKEN_ID[part])
            continue
        ids.extend(TOKEN_ID.get(w, UNK) for w in _SPLIT_RE.findall(part))
    return ids


def decode(ids: list[int]) -> str:
    """Words joined by spaces, no space around newlines (what the server's detokenizer does)."""
    words = [VOCAB[i] for i in ids if VOCAB[i] not in SPECIALS]
    return " ".join(words).replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")


def prompt_ids(source: str, mode: str) -> list[int]:
    """What the chat template renders for one user message, tokenized."""
    ids = [BOS, USER, NEWLINE] + encode(source.strip()) + [NEWLINE, ASSISTANT, MODE_TOKEN[mode]]
    if mode == "latent":
        ids.append(BOT)
    return ids


def tokenizer_json() -> dict:
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": TOKEN_ID[t], "content": t, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for t in SPECIALS
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": r"\n|\(|\)|[^\s()]+"},
            "behavior": "Removed",
            "invert": True,
        },
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": TOKEN_ID, "unk_token": "<unk>"},
    }


def tokenizer_config() -> dict:
    return {
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "chat_template": CHAT_TEMPLATE, "model_max_length": 256,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def write(dirpath: str) -> None:
    with open(f"{dirpath}/tokenizer.json", "w") as f:
        json.dump(tokenizer_json(), f, ensure_ascii=False, indent=1)
    with open(f"{dirpath}/tokenizer_config.json", "w") as f:
        json.dump(tokenizer_config(), f, ensure_ascii=False, indent=1)
    with open(f"{dirpath}/chat_template.jinja", "w") as f:
        f.write(CHAT_TEMPLATE)
