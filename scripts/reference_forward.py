#!/usr/bin/env python3
"""Independent reference for the backend's forward pass (inference mode).

Computes, in plain Python (no numpy, no strata code), the class probabilities of a fixed small
model with fixed weights, following Keras's semantics:
  bn (inference: moving statistics, eps 1e-3) -> conv3x2(3, pad=same) relu -> pool2
  -> flatten (channel, row, column order, as strata's checkpoints) -> dense4 tanh
  -> dense2 softmax
Writes tests/data/reference_forward.json with the spec, the weights in strata's checkpoint
layouts (conv [filters, c_in, k_h, k_w], dense [units, in]), the inputs (NHWC) and the expected
probabilities. Run: python3 scripts/reference_forward.py
"""
import json, math, os

H, W, C = 5, 4, 3
F, KH, KW = 3, 3, 2
SPEC = ("input: 5x4x3\nclasses: 2\n"
        "model: bn -> conv3x2(3, pad=same) relu -> pool2 -> flatten -> dense4 tanh -> dense2 softmax\n")

def values(n, a, b):
    return [round(math.sin(a * i + b) * 0.5, 6) for i in range(n)]

gamma, beta = [1.2, 0.8, 1.0], [0.1, -0.2, 0.0]
mean, var = [0.3, -0.1, 0.05], [0.5, 2.0, 1.5]
conv_w = values(F * C * KH * KW, 0.7, 0.3)            # [F, C, KH, KW]
conv_b = [0.05, -0.02, 0.01]
PH, PW = 2, 2                                          # after pool2 on 5x4: 2x2
dense1_w = values(4 * F * PH * PW, 0.37, 1.1)          # [4, 12]
dense1_b = [0.1, 0.0, -0.1, 0.05]
dense2_w = values(2 * 4, 1.3, 0.2)                    # [2, 4]
dense2_b = [0.02, -0.03]
images = [values(H * W * C, 0.11 * (k + 1), 0.5 * k) for k in range(3)]   # NHWC

def forward(x):
    at = lambda y, xx, c: x[(y * W + xx) * C + c]
    bn = [[[(at(y, xx, c) - mean[c]) / math.sqrt(var[c] + 1e-3) * gamma[c] + beta[c]
            for c in range(C)] for xx in range(W)] for y in range(H)]
    # Keras 'same': out = in; total pad = k - 1 at stride 1; before = total // 2.
    top, left = (KH - 1) // 2, (KW - 1) // 2
    conv = [[[0.0] * F for _ in range(W)] for _ in range(H)]
    for y in range(H):
        for xx in range(W):
            for f in range(F):
                s = conv_b[f]
                for i in range(KH):
                    for j in range(KW):
                        yy, xj = y + i - top, xx + j - left
                        if 0 <= yy < H and 0 <= xj < W:
                            for c in range(C):
                                s += bn[yy][xj][c] * conv_w[((f * C + c) * KH + i) * KW + j]
                conv[y][xx][f] = max(s, 0.0)
    pool = [[[max(conv[2 * y + a][2 * xx + b][f] for a in range(2) for b in range(2))
              for f in range(F)] for xx in range(PW)] for y in range(PH)]
    flat = [pool[y][xx][f] for f in range(F) for y in range(PH) for xx in range(PW)]
    hidden = [math.tanh(dense1_b[u] + sum(flat[k] * dense1_w[u * len(flat) + k] for k in range(len(flat))))
              for u in range(4)]
    logits = [dense2_b[u] + sum(hidden[k] * dense2_w[u * 4 + k] for k in range(4)) for u in range(2)]
    top_logit = max(logits)
    exps = [math.exp(l - top_logit) for l in logits]
    return [e / sum(exps) for e in exps]

out = {
    "spec": SPEC,
    "tensors": {
        "layers.0.gamma": [[C], gamma], "layers.0.beta": [[C], beta],
        "layers.0.moving_mean": [[C], mean], "layers.0.moving_variance": [[C], var],
        "layers.1.weight": [[F, C, KH, KW], conv_w], "layers.1.bias": [[F], conv_b],
        "layers.4.weight": [[4, F * PH * PW], dense1_w], "layers.4.bias": [[4], dense1_b],
        "layers.5.weight": [[2, 4], dense2_w], "layers.5.bias": [[2], dense2_b],
    },
    "images": images,
    "probabilities": [forward(x) for x in images],
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "reference_forward.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path), out["probabilities"])
