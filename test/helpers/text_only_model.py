"""Test fixture: a TEXT-ONLY model directory (manifest without `latent`) made from the shipped model
by ONNX graph surgery, so its answers are known: the same backbone with thought_inputs / is_thought
fed as zeros inside the graph and mu / log_sigma dropped. Optionally the logits get `--pad-vocab`
extra columns of a large constant (an embedding padded past the tokenizer, as Qwen's is: unmasked,
greedy decoding would pick them), and `--eos-ids` sets eos_token_ids.

  /usr/bin/python3 test/helpers/text_only_model.py SRC OUT [--pad-vocab N] [--eos-ids 3,12]
"""
import argparse
import json
import os
import shutil

import onnx
from onnx import TensorProto, helper

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("out")
ap.add_argument("--pad-vocab", type=int, default=0)
ap.add_argument("--pad-logit", type=float, default=50.0)
ap.add_argument("--eos-ids", default="")
args = ap.parse_args()

m = json.load(open(os.path.join(args.src, "manifest.json")))
D = m["latent"]["thought_dim"]
g_model = onnx.load(os.path.join(args.src, m["graphs"]["backbone"]["file"]))
g = g_model.graph

for name in ("thought_inputs", "is_thought"):
    g.input.remove(next(i for i in g.input if i.name == name))
for name in ("mu", "log_sigma"):
    g.output.remove(next(o for o in g.output if o.name == name))
nodes = [
    helper.make_node("Shape", ["input_ids"], ["_bs"]),
    helper.make_node("ConstantOfShape", ["_bs"], ["is_thought"],
                     value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
    helper.make_node("Constant", [], ["_d"], value=helper.make_tensor("d", TensorProto.INT64, [1], [D])),
    helper.make_node("Concat", ["_bs", "_d"], ["_bsd"], axis=0),
    helper.make_node("ConstantOfShape", ["_bsd"], ["thought_inputs"],
                     value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
]
for n in reversed(nodes):
    g.node.insert(0, n)

vocab = m["architecture"]["vocab_size"]
if args.pad_vocab > 0:
    for n in g.node:
        n.output[:] = ["_logits_core" if o == "logits" else o for o in n.output]
    g.node.extend([
        helper.make_node("Constant", [], ["_pads"],
                         value=helper.make_tensor("p", TensorProto.INT64, [4], [0, 0, 0, args.pad_vocab])),
        helper.make_node("Constant", [], ["_padv"],
                         value=helper.make_tensor("c", TensorProto.FLOAT, [], [args.pad_logit])),
        helper.make_node("Pad", ["_logits_core", "_pads", "_padv"], ["logits"], mode="constant"),
    ])
    out = next(o for o in g.output if o.name == "logits")
    out.type.tensor_type.shape.dim[1].dim_value = vocab + args.pad_vocab
    vocab += args.pad_vocab
onnx.checker.check_model(g_model)

os.makedirs(args.out, exist_ok=True)
onnx.save(g_model, os.path.join(args.out, "backbone.onnx"))
for f in (m["tokenizer"], m["tokenizer_config"], m["chat_template"]):
    shutil.copy(os.path.join(args.src, f), os.path.join(args.out, f))

bb = m["graphs"]["backbone"]
bb["inputs"] = [t for t in bb["inputs"] if t["name"] not in ("thought_inputs", "is_thought")]
bb["outputs"] = [t for t in bb["outputs"] if t["name"] not in ("mu", "log_sigma")]
st = m["special_tokens"]
del m["latent"], st["bot"], st["eot"]
for k in ("thought_dim", "num_thoughts", "positional_heads"):
    m["architecture"].pop(k, None)
m.pop("task", None)
m.update({
    "name": os.path.basename(os.path.normpath(args.out)),
    "graphs": {"backbone": bb},
    "reasoning_modes": ["none"],
    "default_reasoning_mode": "none",
})
m["architecture"]["vocab_size"] = vocab
if args.eos_ids:
    m["eos_token_ids"] = [int(x) for x in args.eos_ids.split(",")]
json.dump(m, open(os.path.join(args.out, "manifest.json"), "w"), indent=1)
print(f"wrote text-only {args.out} (vocab {vocab})")
