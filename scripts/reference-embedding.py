#!/usr/bin/env python3
"""An independent all-MiniLM-L6-v2 in numpy (BERT, mean pooling, L2 norm), to check the
engine's candle encoder against. Needs numpy, tokenizers and safetensors from PyPI.

    scripts/reference-embedding.py var/models/all-minilm-l6-v2 "fleet of trucks" "delivery vans"

Prints each text's vector's first values and the pairwise cosines.
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def gelu(x):
    # The exact GELU, with math.erf applied element by element.
    from math import erf, sqrt
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


def layer_norm(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def embed(model_dir, text):
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = load_file(f"{model_dir}/model.safetensors")
    p = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.no_truncation()
    ids = tok.encode(text).ids
    n, h, heads = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg.get("layer_norm_eps", 1e-12)
    x = w[p + "embeddings.word_embeddings.weight"][ids] + w[p + "embeddings.position_embeddings.weight"][:n] \
        + w[p + "embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w[p + "embeddings.LayerNorm.weight"], w[p + "embeddings.LayerNorm.bias"], eps)
    d = h // heads
    for i in range(cfg["num_hidden_layers"]):
        q = f"{p}encoder.layer.{i}."
        lin = lambda name, v: v @ w[q + name + ".weight"].T + w[q + name + ".bias"]
        Q = lin("attention.self.query", x).reshape(n, heads, d).transpose(1, 0, 2)
        K = lin("attention.self.key", x).reshape(n, heads, d).transpose(1, 0, 2)
        V = lin("attention.self.value", x).reshape(n, heads, d).transpose(1, 0, 2)
        s = Q @ K.transpose(0, 2, 1) / np.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ V).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(lin("attention.output.dense", a) + x, w[q + "attention.output.LayerNorm.weight"],
                       w[q + "attention.output.LayerNorm.bias"], eps)
        f = lin("output.dense", gelu(lin("intermediate.dense", x)))
        x = layer_norm(f + x, w[q + "output.LayerNorm.weight"], w[q + "output.LayerNorm.bias"], eps)
    v = x.mean(0)
    return v / np.linalg.norm(v)


if __name__ == "__main__":
    model_dir, texts = sys.argv[1], sys.argv[2:]
    vs = [embed(model_dir, t) for t in texts]
    for t, v in zip(texts, vs):
        print(f"{t!r}: {np.round(v[:4], 6).tolist()}")
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            print(f"cos({texts[i]!r}, {texts[j]!r}) = {float(vs[i] @ vs[j]):.6f}")
