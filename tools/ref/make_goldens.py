#!/usr/bin/python3
"""Deterministic golden-logit generator for the C engine's tests.

    /usr/bin/python3 tools/ref/make_goldens.py [OUT_DIR]      # default: tests/golden

Per case writes OUT_DIR/<case>/model/ (HF layout: config.json + safetensors) and
OUT_DIR/<case>/prompts.json + logits_K.f32 (float32 LE, [T, vocab], every position),
all computed by tools/ref/gemma_ref.py in float32 from the stored (rounded) weights.
"""
import json, math, os, shutil, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemma_ref import GemmaRef, st_encode  # noqa: E402

torch.set_num_threads(1)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

CASES = {
    "mqa_bf16": dict(seed=101, hidden_size=96, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=1, head_dim=32, intermediate_size=192, vocab_size=384,
                     torch_dtype="bfloat16", act={"hidden_act": "gelu"}, shards=1),
    "mha_f32": dict(seed=202, hidden_size=80, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=4, head_dim=32, intermediate_size=160, vocab_size=320,
                    torch_dtype="float32",
                    act={"hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh"}, shards=2),
    "gqa_f16": dict(seed=303, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=256,
                    torch_dtype="float16",
                    act={"hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh"},
                    shards=1),
}
PROMPT_LENGTHS = [1, 2, 17, 130]
N_GREEDY = 20
# weight scales (see random_weights); chosen so logits have std ~2.5-3, mean top-1 prob ~0.3,
# and greedy continuations are mostly non-repeating
SC = {"emb": 0.05, "qk": 2.0, "v": 1.0, "o": 3.0, "gate_up": 1.0, "down": 4.0, "final": 5.0}
MIN_MARGIN = 1e-3   # greedy steps need top1 - top2 >= MIN_MARGIN * max|logits| (10x test tol)


def hf_config(c, max_pos=256):
    cfg = {
        "architectures": ["GemmaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "head_dim": c["head_dim"],
    }
    cfg.update(c["act"])
    cfg.update({
        "hidden_size": c["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": c["intermediate_size"],
        "max_position_embeddings": max_pos,
        "model_type": "gemma",
        "num_attention_heads": c["num_attention_heads"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_key_value_heads": c["num_key_value_heads"],
        "pad_token_id": 0,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": c["torch_dtype"],
        "transformers_version": "4.38.0",
        "use_cache": True,
        "vocab_size": c["vocab_size"],
    })
    return cfg


def random_weights(c, seed):
    """HF-named weights in HF state-dict order, f32 draws rounded to the stored dtype.
    Projections ~ N(0, gain^2 / fan_in). q/k gain 2: attention neither uniform nor one-hot.
    Small embeddings (std 0.05) and o/down gains 3/4 let the layers, not the current token's own
    embedding, dominate the residual (with tied embeddings a large E makes every greedy step
    repeat its input token). The final norm offset is ~5 (1 + w ~ 6, as in real Gemma checkpoints)
    to spread the logits; other norm offsets are N(0, 0.1) so the (1 + w) convention matters."""
    g = torch.Generator().manual_seed(seed)
    d, H, K, hd, F, V = (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"],
                         c["head_dim"], c["intermediate_size"], c["vocab_size"])
    dt = DTYPES[c["torch_dtype"]]

    def rnd(shape, std):
        return (torch.randn(*shape, generator=g) * std).to(dt)

    w = {"model.embed_tokens.weight": rnd((V, d), SC["emb"])}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "self_attn.q_proj.weight"] = rnd((H * hd, d), SC["qk"] / math.sqrt(d))
        w[p + "self_attn.k_proj.weight"] = rnd((K * hd, d), SC["qk"] / math.sqrt(d))
        w[p + "self_attn.v_proj.weight"] = rnd((K * hd, d), SC["v"] / math.sqrt(d))
        w[p + "self_attn.o_proj.weight"] = rnd((d, H * hd), SC["o"] / math.sqrt(H * hd))
        w[p + "mlp.gate_proj.weight"] = rnd((F, d), SC["gate_up"] / math.sqrt(d))
        w[p + "mlp.up_proj.weight"] = rnd((F, d), SC["gate_up"] / math.sqrt(d))
        w[p + "mlp.down_proj.weight"] = rnd((d, F), SC["down"] / math.sqrt(F))
        w[p + "input_layernorm.weight"] = rnd((d,), 0.1)
        w[p + "post_attention_layernorm.weight"] = rnd((d,), 0.1)
    w["model.norm.weight"] = (torch.randn(d, generator=g) * 0.1 + SC["final"]).to(dt)
    return w


def write_model(model_dir, cfg, w, shards):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if shards == 1:
        with open(os.path.join(model_dir, "model.safetensors"), "wb") as f:
            f.write(st_encode(w))
        return
    # split in state-dict order by bytes, as HF save_pretrained(max_shard_size=...) does
    nbytes = {k: v.numel() * v.element_size() for k, v in w.items()}
    total, cut = sum(nbytes.values()), sum(nbytes.values()) / shards
    groups, acc = [[] for _ in range(shards)], 0
    for k in w:
        groups[min(int(acc // cut), shards - 1)].append(k)
        acc += nbytes[k]
    weight_map = {}
    for i, names in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        with open(os.path.join(model_dir, fname), "wb") as f:
            f.write(st_encode({k: w[k] for k in names}))
        weight_map.update({k: fname for k in names})
    index = {"metadata": {"total_size": total},
             "weight_map": {k: weight_map[k] for k in sorted(weight_map)}}
    with open(os.path.join(model_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def greedy_margin(ref, ids, greedy):
    """min over the greedy steps of (top1 - top2) / max|logits| (one forward over the whole path)."""
    with torch.no_grad():
        lg = ref.forward(ids + greedy[:-1])[len(ids) - 1:]
    top2 = lg.topk(2, dim=-1).values
    return ((top2[:, 0] - top2[:, 1]) / lg.abs().max()).min().item()


def pick_prompts(ref, c, seed):
    """Prompts [<bos>, random ids...] of each length whose 20-step greedy path never emits <eos>
    and never has a near-tie (deterministic re-draws); None if some length has no such prompt."""
    g = torch.Generator().manual_seed(seed + 7)
    prompts = []
    for T in PROMPT_LENGTHS:
        for _ in range(30 if T > 1 else 1):
            ids = [2] + torch.randint(0, c["vocab_size"], (T - 1,), generator=g).tolist()
            greedy = ref.greedy(ids, N_GREEDY)
            if 1 not in greedy and greedy_margin(ref, ids, greedy) >= MIN_MARGIN:
                prompts.append((ids, greedy))
                break
        else:
            return None
    return prompts


def make_case(out, name, c):
    case_dir = os.path.join(out, name)
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    model_dir = os.path.join(case_dir, "model")
    for seed in range(c["seed"], c["seed"] + 20000, 1000):   # next weight seed if no robust T=1
        shutil.rmtree(model_dir, ignore_errors=True)
        write_model(model_dir, hf_config(c), random_weights(c, seed), c["shards"])
        ref = GemmaRef(model_dir)   # reads back exactly what was written
        picked = pick_prompts(ref, c, seed)
        if picked:
            break
    else:
        raise SystemExit(f"{name}: no weight seed gives robust greedy paths")
    prompts = []
    for k, (ids, greedy) in enumerate(picked):
        with torch.no_grad():
            logits = ref.forward(ids)
        fname = f"logits_{k}.f32"
        with open(os.path.join(case_dir, fname), "wb") as f:
            f.write(logits.contiguous().numpy().astype("<f4").tobytes())
        prompts.append({"ids": ids, "logits_file": fname, "greedy": greedy})
    with open(os.path.join(case_dir, "prompts.json"), "w") as f:
        json.dump(prompts, f)
        f.write("\n")
    return ref, prompts, seed


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "golden")
    for name, c in CASES.items():
        _, prompts, seed = make_case(out, name, c)
        for p in prompts:
            print(f"{name} (weight seed {seed}): T={len(p['ids'])} greedy={p['greedy']}")


if __name__ == "__main__":
    main()
