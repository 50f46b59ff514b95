"""NF-CoT reference implementation: task, tokenizer, model, flow, training and ONNX export."""
