import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained_vae():
    """A step VAE trained 150 steps from a fixed seed (about 10 s): decodes most steps right, so
    probe results through it are not all zero."""
    from nfcot import tokenizer as tk
    from nfcot.train import train_vae
    from nfcot.vae import StepVAE
    torch.manual_seed(0)
    vae = StepVAE(len(tk.VOCAB), 16)
    rec = train_vae(vae, 6, 20, 150, 0)
    return vae.eval(), rec


@pytest.fixture(scope="session")
def shipped():
    """The shipped model read back from its ONNX graphs (nfcot.onnx_weights)."""
    from nfcot.onnx_weights import load_model_dir
    return load_model_dir(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nfcot-trace-small"))
