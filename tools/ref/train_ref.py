#!/usr/bin/python3
"""Training goldens for the C trainer (src/train/): PyTorch autograd gradients and an AdamW trajectory
on tiny Gemma 1 models. Its own batched module (autograd does the backward), written from the published
semantics and cross-checked here against tools/ref/gemma_ref.py's single-sequence forward; it shares
nothing with the C code. Only the safetensors helpers come from gemma_ref.py.

    /usr/bin/python3 tools/ref/train_ref.py [OUT_DIR]      # default: tests/golden/train

Deterministic (re-running gives byte-identical files). See tests/golden/train/README.md.
"""
import json, math, os, shutil, sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemma_ref import GemmaRef, st_decode, st_encode  # noqa: E402

torch.set_num_threads(1)

BASE = dict(hidden_size=64, num_hidden_layers=2, head_dim=16, intermediate_size=128, vocab_size=256)
GRAD_CASES = {
    "mqa": dict(BASE, num_attention_heads=4, num_key_value_heads=1, seed=11, masked=0),
    # H·hd = 96 != d = 64, so a transposed o_proj or q_proj cannot pass by accident
    "mha": dict(BASE, num_attention_heads=6, num_key_value_heads=6, seed=22, masked=3),
    # 4 query heads on 2 kv heads: the h / (H/K) mapping (h % K would differ)
    "gqa": dict(BASE, num_attention_heads=4, num_key_value_heads=2, seed=33, masked=0),
}
B, T = 2, 16
TRAJ = dict(case="mqa", seed=44, steps=20, micro=2, lr=1e-2, lr_min=1e-3, warmup=5, betas=(0.9, 0.95),
            eps=1e-8, weight_decay=0.1, clip=1.0, init_std=0.02, symbols=64)


def hf_config(c):
    return {
        "architectures": ["GemmaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 2, "eos_token_id": 1, "head_dim": c["head_dim"],
        "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": c["hidden_size"], "initializer_range": 0.02,
        "intermediate_size": c["intermediate_size"], "max_position_embeddings": 256,
        "model_type": "gemma", "num_attention_heads": c["num_attention_heads"],
        "num_hidden_layers": c["num_hidden_layers"], "num_key_value_heads": c["num_key_value_heads"],
        "pad_token_id": 0, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 10000.0,
        "tie_word_embeddings": True, "torch_dtype": "float32", "transformers_version": "4.38.0",
        "use_cache": True, "vocab_size": c["vocab_size"],
    }


def names(c):
    out = ["model.embed_tokens.weight"]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight",
                p + "post_attention_layernorm.weight", p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight",
                p + "mlp.down_proj.weight"]
    return out + ["model.norm.weight"]


def shapes(c):
    d, H, K, hd, f, V = (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"],
                         c["intermediate_size"], c["vocab_size"])
    s = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        s.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                  p + "self_attn.q_proj.weight": (H * hd, d), p + "self_attn.k_proj.weight": (K * hd, d),
                  p + "self_attn.v_proj.weight": (K * hd, d), p + "self_attn.o_proj.weight": (d, H * hd),
                  p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
                  p + "mlp.down_proj.weight": (d, f)})
    return s


def test_weights(c, seed):
    """Weights for the gradient goldens: projections N(0, gain²/fan_in), embeddings std 0.2, norm offsets
    N(0, 0.2) (with zero offsets a backward that drops the w of 1 + w would pass). Logits have std ~1.7
    and a mean top-1 probability ~0.6 (the tied embedding favours repeating the input token; loss ~8):
    the softmax is neither uniform nor one-hot, so every term of every gradient carries weight."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for n, s in shapes(c).items():
        if len(s) == 1:
            w[n] = torch.randn(*s, generator=g) * 0.2
        elif "embed" in n:
            w[n] = torch.randn(*s, generator=g) * 0.2
        else:
            gain = {"q_proj": 2.0, "k_proj": 2.0, "o_proj": 1.5, "down_proj": 1.5}.get(n.split(".")[-2], 1.0)
            w[n] = torch.randn(*s, generator=g) * (gain / math.sqrt(s[1]))
    return w


def gemma_init(c, seed, std):
    """HF GemmaPreTrainedModel._init_weights: Linear and Embedding N(0, initializer_range²), the
    embedding's padding_idx (pad_token_id 0) row zero; GemmaRMSNorm weights zero (scale 1 + 0)."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for n, s in shapes(c).items():
        w[n] = torch.zeros(*s) if len(s) == 1 else torch.randn(*s, generator=g) * std
    w["model.embed_tokens.weight"][0].zero_()
    return w


# ---------------------------------------------------------------- the batched model (autograd does the rest)
def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rope(x, theta):
    """x [B, T, heads, hd]: rotate-half pairs (i, i + hd/2), positions 0..T-1."""
    Tn, hd = x.shape[1], x.shape[3]
    half = hd // 2
    inv = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / hd)
    ang = torch.arange(Tn, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype)[None, :, None, :], ang.sin().to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def loss_fn(W, c, inputs, targets):
    """Mean next-token cross-entropy over targets != -1; W: name -> tensor (requires_grad)."""
    d, H, K, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps, theta, scale = 1e-6, 10000.0, 1.0 / math.sqrt(hd)
    Bn, Tn = inputs.shape
    E = W["model.embed_tokens.weight"]
    x = E[inputs] * math.sqrt(d)                           # float32 config: sqrt(d) unrounded
    causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    kv_of = torch.arange(H) // (H // K)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        a = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = rope((a @ W[p + "self_attn.q_proj.weight"].T).view(Bn, Tn, H, hd), theta)
        k = rope((a @ W[p + "self_attn.k_proj.weight"].T).view(Bn, Tn, K, hd), theta)[:, :, kv_of]
        v = (a @ W[p + "self_attn.v_proj.weight"].T).view(Bn, Tn, K, hd)[:, :, kv_of]
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        pr = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
        o = torch.einsum("bhqk,bkhd->bqhd", pr, v).reshape(Bn, Tn, H * hd)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        m = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + (gelu_tanh(m @ W[p + "mlp.gate_proj.weight"].T) * (m @ W[p + "mlp.up_proj.weight"].T)) \
            @ W[p + "mlp.down_proj.weight"].T
    logits = rms_norm(x, W["model.norm.weight"], eps) @ E.T
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1), logits


def grads_of(w, c, inputs, targets, dtype):
    W = {n: t.to(dtype).clone().requires_grad_(True) for n, t in w.items()}
    loss, logits = loss_fn(W, c, inputs, targets)
    loss.backward()
    return loss.item(), {n: W[n].grad for n in W}, logits.detach()


def write_model(model_dir, c, w):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(hf_config(c), f, indent=2)
        f.write("\n")
    with open(os.path.join(model_dir, "model.safetensors"), "wb") as f:
        f.write(st_encode({n: t.float().contiguous() for n, t in w.items()}))


def max_rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def make_grad_case(out, name, c):
    case = os.path.join(out, name)
    shutil.rmtree(case, ignore_errors=True)
    write_model(os.path.join(case, "model"), c, test_weights(c, c["seed"]))
    with open(os.path.join(case, "model", "model.safetensors"), "rb") as f:
        w = st_decode(f.read())                             # exactly what the C side reads
    g = torch.Generator().manual_seed(c["seed"] + 1)
    tokens = torch.randint(0, c["vocab_size"], (B, T + 1), generator=g)
    tokens[:, 0] = 2                                        # <bos>
    inputs, targets = tokens[:, :T].clone(), tokens[:, 1:].clone()
    if c["masked"]:                                         # SFT-style ignored targets
        pos = torch.randperm(B * T, generator=g)[:c["masked"]]
        targets.view(-1)[pos] = -1
    # goldens in float64 (the exact gradient of these weights); float32 autograd is reported next to them
    loss64, g64, logits64 = grads_of(w, c, inputs, targets, torch.float64)
    loss32, g32, _ = grads_of(w, c, inputs, targets, torch.float32)
    # the batched module against gemma_ref's independent single-sequence forward
    ref = GemmaRef(os.path.join(case, "model"))
    with torch.no_grad():
        for b in range(B):
            lr = ref.forward(inputs[b].tolist()).double()
            assert max_rel(logits64[b], lr) < 1e-5, f"{name}: batched module disagrees with gemma_ref"
    # finite differences on the float64 loss at one element of every tensor
    fd_worst = 0.0
    for n in w:
        gi = g64[n].reshape(-1)
        i = int(gi.abs().argmax())
        W = {k: t.double() for k, t in w.items()}
        h = 1e-5
        W[n] = W[n].clone().reshape(-1); W[n][i] += h; W[n] = W[n].reshape(w[n].shape)
        lp = loss_fn(W, c, inputs, targets)[0].item()
        W[n] = W[n].reshape(-1); W[n][i] -= 2 * h; W[n] = W[n].reshape(w[n].shape)
        lm = loss_fn(W, c, inputs, targets)[0].item()
        fd_worst = max(fd_worst, abs((lp - lm) / (2 * h) - gi[i].item()) / abs(gi[i].item()))
    assert fd_worst < 1e-6, f"{name}: float64 autograd vs finite differences {fd_worst}"
    with open(os.path.join(case, "grads.safetensors"), "wb") as f:
        f.write(st_encode({n: g64[n].float().contiguous() for n in g64}))
    f32_err = max(max_rel(g32[n], g64[n]) for n in g64)
    meta = {"B": B, "T": T, "inputs": inputs.tolist(), "targets": targets.tolist(), "loss": loss64,
            "loss_f32_autograd": loss32, "f32_autograd_max_rel_grad_err": f32_err,
            "f64_fd_max_rel_err": fd_worst}
    with open(os.path.join(case, "batch.json"), "w") as f:
        json.dump(meta, f)
        f.write("\n")
    print(f"{name}: loss {loss64:.6f} (f32 autograd {loss32:.6f}); f32 autograd grads vs f64: max rel "
          f"{f32_err:.2e}; f64 FD spot check: {fd_worst:.1e}")


# ---------------------------------------------------------------- AdamW trajectory
def lr_at(s, t):
    """Linear warmup (step s < warmup: lr·(s+1)/warmup), then cosine from lr to lr_min at step `steps`."""
    if s < t["warmup"]:
        return t["lr"] * (s + 1) / t["warmup"]
    p = (s - t["warmup"]) / (t["steps"] - t["warmup"])
    return t["lr_min"] + (t["lr"] - t["lr_min"]) * 0.5 * (1.0 + math.cos(math.pi * p))


def traj_batches(t, V):
    """Arithmetic progressions over `symbols` ids (3 .. 3+symbols-1), stride 1..3, after <bos>: learnable
    (the loss falls from ln V toward ln symbols and below within 20 steps), unlike uniform noise."""
    g = torch.Generator().manual_seed(t["seed"] + 1)
    out = []
    for _ in range(t["steps"] * t["micro"]):
        start = torch.randint(0, t["symbols"], (B, 1), generator=g)
        stride = torch.randint(1, 4, (B, 1), generator=g)
        seq = 3 + (start + stride * torch.arange(T)[None, :]) % t["symbols"]
        out.append(torch.cat([torch.full((B, 1), 2), seq], dim=1))   # [B, T+1]
    return out


def run_traj(w0, c, t, batches, dtype):
    W = {n: x.to(dtype).clone().requires_grad_(True) for n, x in w0.items()}
    no_decay = [n for n in W if W[n].dim() == 1 or "embed_tokens" in n]
    opt = torch.optim.AdamW([{"params": [W[n] for n in W if n not in no_decay], "weight_decay": t["weight_decay"]},
                             {"params": [W[n] for n in no_decay], "weight_decay": 0.0}],
                            lr=t["lr"], betas=t["betas"], eps=t["eps"])
    losses, norms, lrs = [], [], []
    for s in range(t["steps"]):
        lr = lr_at(s, t)
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.zero_grad()
        total = 0.0
        for k in range(t["micro"]):
            tok = batches[s * t["micro"] + k]
            loss, _ = loss_fn(W, c, tok[:, :T], tok[:, 1:])
            (loss / t["micro"]).backward()
            total += loss.item() / t["micro"]
        norm = torch.nn.utils.clip_grad_norm_(list(W.values()), t["clip"])
        opt.step()
        losses.append(total)
        norms.append(norm.item())
        lrs.append(lr)
    return losses, norms, lrs, W


def make_traj(out):
    t, c = TRAJ, GRAD_CASES[TRAJ["case"]]
    case = os.path.join(out, "traj")
    shutil.rmtree(case, ignore_errors=True)
    write_model(os.path.join(case, "model"), c, gemma_init(c, t["seed"], t["init_std"]))
    with open(os.path.join(case, "model", "model.safetensors"), "rb") as f:
        w0 = st_decode(f.read())
    batches = traj_batches(t, c["vocab_size"])
    losses, norms, lrs, W = run_traj(w0, c, t, batches, torch.float64)
    l32, n32, _, _ = run_traj(w0, c, t, batches, torch.float32)
    f32_err = max(abs(a - b) / abs(b) for a, b in zip(l32, losses))
    meta = {"B": B, "T": T, "steps": t["steps"], "micro_batches": t["micro"], "lr": t["lr"],
            "lr_min": t["lr_min"], "warmup": t["warmup"], "decay": "cosine", "beta1": t["betas"][0],
            "beta2": t["betas"][1], "eps": t["eps"], "weight_decay": t["weight_decay"],
            "no_decay": "1-D norm weights and model.embed_tokens.weight", "clip": t["clip"],
            "tokens": [b.tolist() for b in batches], "losses": losses, "grad_norms": norms, "lrs": lrs,
            "final_param_sum_abs": sum(x.detach().abs().sum().item() for x in W.values()),
            "f32_reference_max_rel_loss_err": f32_err}
    with open(os.path.join(case, "traj.json"), "w") as f:
        json.dump(meta, f)
        f.write("\n")
    clipped = sum(n > t["clip"] for n in norms)
    print(f"traj: loss {losses[0]:.4f} -> {losses[-1]:.4f}, grad norm {norms[0]:.3f} -> {norms[-1]:.3f} "
          f"(clipped {clipped}/{t['steps']} steps); f32 reference vs f64: max rel loss err {f32_err:.1e}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "golden", "train")
    os.makedirs(out, exist_ok=True)
    for name, c in GRAD_CASES.items():
        make_grad_case(out, name, c)
    make_traj(out)


if __name__ == "__main__":
    main()
