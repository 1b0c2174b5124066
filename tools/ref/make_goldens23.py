#!/usr/bin/python3
"""Deterministic golden-logit generator for the Gemma 2 / Gemma 3 forward pass.

    /usr/bin/python3 tools/ref/make_goldens23.py [OUT_DIR]      # default: tests/golden

Writes OUT_DIR/<case>/model/ (HF layout: config.json + safetensors [+ index]),
OUT_DIR/<case>/prompts.json and logits_K.f32 (float32 LE, [T, vocab], every prompt position),
computed by tools/ref/gemma23_ref.py in float64 from the stored (rounded) weights, written
as float32.
Same layout as the Gemma 1 cases (tools/ref/make_goldens.py); see tests/golden/README.md.
"""
import json, math, os, shutil, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemma_ref import st_encode  # noqa: E402
from gemma23_ref import Gemma23Ref  # noqa: E402

torch.set_num_threads(1)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# Shapes shared by the three cases (d 64, vocab 256, ffn 128, head_dim 16, window 8).
CASES = {
    # Gemma 2: 4 layers (0, 2 local; 1, 3 global), GQA 4/2, query_pre_attn_scalar 24 != head_dim,
    # both soft-caps biting (see SC / random_weights).
    "gemma2_tiny": dict(family="gemma2", seed=2024, layers=4, heads=4, kv_heads=2,
                        torch_dtype="bfloat16", qpas=24, shards=1),
    # Gemma 3 text (1B-style config): 7 layers, layer 5 global, 0-4 and 6 local; MQA 4/1;
    # global layers rope_theta 1e6 with linear rope_scaling x8, local layers 1e4 unscaled.
    "gemma3_tiny": dict(family="gemma3_text", seed=3030, layers=7, heads=4, kv_heads=1,
                        torch_dtype="float32", qpas=16, rope_factor=8.0, shards=1),
    # Gemma 3 multimodal wrapper (4B-style config): model_type gemma3, sparse text_config,
    # language_model.model.* tensor names, two dummy vision tensors, 2 shards + index, BF16,
    # no rope scaling (like 1B).
    "gemma3_mm_prefix": dict(family="gemma3", seed=3131, layers=7, heads=4, kv_heads=1,
                             torch_dtype="bfloat16", qpas=16, rope_factor=None, shards=2),
}
D, V, F, HD, WIN, MAX_POS = 64, 256, 128, 16, 8, 256
PROMPT_LENGTHS = [1, 5, 30, 100]          # 30 > 3 * window; 100 + 20 greedy < max_position 256
N_GREEDY = 20
MIN_MARGIN = 1e-3   # every greedy step: top1 - top2 >= MIN_MARGIN * max|logits| (10x test tol)

# Weight scales (see random_weights). Per-family: Gemma 2 needs large attention scores and
# logits so that both tanh caps are far outside their linear range.
SC = {
    "gemma2": {"emb": 0.02, "q_heads": (1.0, 2.0, 4.0, 8.0), "k": 2.0, "v": 1.0, "o": 3.0,
               "gate_up": 1.0, "down": 4.0, "final": 80.0, "qk_norm": None},
    "gemma3": {"emb": 0.02, "q_heads": (2.0, 2.0, 2.0, 2.0), "k": 2.0, "v": 1.0, "o": 3.0,
               "gate_up": 1.0, "down": 4.0, "final": 15.0, "qk_norm": (0.5, 0.3)},
}


def hf_config(name, c):
    """config.json with the keys the published checkpoints use (google/gemma-2-2b-it,
    google/gemma-3-1b-it, google/gemma-3-4b-it), values shrunk."""
    if c["family"] == "gemma2":   # gemma-2-2b-it key set
        return {
            "architectures": ["Gemma2ForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": 50.0,
            "bos_token_id": 2,
            "cache_implementation": "hybrid",
            "eos_token_id": [1, 107],
            "final_logit_softcapping": 30.0,
            "head_dim": HD,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": D,
            "initializer_range": 0.02,
            "intermediate_size": F,
            "max_position_embeddings": MAX_POS,
            "model_type": "gemma2",
            "num_attention_heads": c["heads"],
            "num_hidden_layers": c["layers"],
            "num_key_value_heads": c["kv_heads"],
            "pad_token_id": 0,
            "query_pre_attn_scalar": c["qpas"],
            "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0,
            "sliding_window": WIN,
            "torch_dtype": c["torch_dtype"],
            "transformers_version": "4.42.4",
            "use_cache": True,
            "vocab_size": V,
        }
    if c["family"] == "gemma3_text":   # gemma-3-1b-it key set (ints where it has ints)
        return {
            "architectures": ["Gemma3ForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": None,
            "bos_token_id": 2,
            "cache_implementation": "hybrid",
            "eos_token_id": [1, 106],
            "final_logit_softcapping": None,
            "head_dim": HD,
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": D,
            "initializer_range": 0.02,
            "intermediate_size": F,
            "max_position_embeddings": MAX_POS,
            "model_type": "gemma3_text",
            "num_attention_heads": c["heads"],
            "num_hidden_layers": c["layers"],
            "num_key_value_heads": c["kv_heads"],
            "pad_token_id": 0,
            "query_pre_attn_scalar": c["qpas"],
            "rms_norm_eps": 1e-06,
            "rope_local_base_freq": 10000,
            "rope_scaling": ({"factor": c["rope_factor"], "rope_type": "linear"}
                             if c["rope_factor"] else None),
            "rope_theta": 1000000,
            "sliding_window": WIN,
            "sliding_window_pattern": 6,
            "torch_dtype": c["torch_dtype"],
            "transformers_version": "4.50.0.dev0",
            "use_cache": True,
            "vocab_size": V,
        }
    # gemma-3-4b-it layout: the text_config lists only what differs from Gemma3TextConfig's
    # defaults (rope_theta 1e6, rope_local_base_freq 1e4, sliding_window_pattern 6, eps 1e-6,
    # no soft-caps, gelu_pytorch_tanh, rope_scaling null, ...); torch_dtype is top-level only.
    text = {
        "head_dim": HD,
        "hidden_size": D,
        "intermediate_size": F,
        "max_position_embeddings": MAX_POS,
        "model_type": "gemma3_text",
        "num_attention_heads": c["heads"],
        "num_hidden_layers": c["layers"],
        "num_key_value_heads": c["kv_heads"],
        "query_pre_attn_scalar": c["qpas"],
        "sliding_window": WIN,
        "vocab_size": V,
    }
    if c["rope_factor"]:
        text["rope_scaling"] = {"factor": c["rope_factor"], "rope_type": "linear"}
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "boi_token_index": 255999,
        "eoi_token_index": 256000,
        "eos_token_id": [1, 106],
        "image_token_index": 262144,
        "initializer_range": 0.02,
        "mm_tokens_per_image": 256,
        "model_type": "gemma3",
        "text_config": text,
        "torch_dtype": c["torch_dtype"],
        "transformers_version": "4.50.0.dev0",
        "vision_config": {   # a dummy SigLIP config sized like the two dummy vision tensors
            "hidden_size": 32,
            "image_size": 28,
            "intermediate_size": 64,
            "model_type": "siglip_vision_model",
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "patch_size": 14,
            "vision_use_head": False,
        },
    }


def eos_ids(cfg):
    e = cfg.get("eos_token_id", 1)
    return set(e if isinstance(e, list) else [e])


def random_weights(c, seed):
    """HF-named weights (text part named model.*), f32 draws rounded to the stored dtype.
    Projections ~ N(0, gain^2 / fan_in). The q gain differs per head (Gemma 2: 1, 2, 4, 8) so
    some heads have attention scores far beyond the 50 soft-cap and others stay in its linear
    range. Small embeddings (std 0.02: with tied embeddings a larger E makes greedy paths repeat
    their input token). Norm offsets N(0, 0.1) except the final norm (offset ~`final`, which sets
    the logit scale: Gemma 2 logits reach |z| ~ 30..55 before the 30 cap, Gemma 3 ~ 10) and
    Gemma 3 q_norm/k_norm (N(0.5, 0.3): 1 + w ~ 1.5, so QK-norm is far from identity)."""
    g = torch.Generator().manual_seed(seed)
    sc = SC["gemma2" if c["family"] == "gemma2" else "gemma3"]
    H, K = c["heads"], c["kv_heads"]
    dt = DTYPES[c["torch_dtype"]]

    def rnd(shape, std):
        return (torch.randn(*shape, generator=g) * std).to(dt)

    def rnd_f32(shape, std, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    w = {"model.embed_tokens.weight": rnd((V, D), sc["emb"])}
    qgain = torch.tensor(sc["q_heads"]).repeat_interleave(HD)[:, None]   # [H*hd, 1]
    for l in range(c["layers"]):
        p = f"model.layers.{l}."
        w[p + "self_attn.q_proj.weight"] = (rnd_f32((H * HD, D), 1 / math.sqrt(D)) * qgain).to(dt)
        w[p + "self_attn.k_proj.weight"] = rnd((K * HD, D), sc["k"] / math.sqrt(D))
        w[p + "self_attn.v_proj.weight"] = rnd((K * HD, D), sc["v"] / math.sqrt(D))
        w[p + "self_attn.o_proj.weight"] = rnd((D, H * HD), sc["o"] / math.sqrt(H * HD))
        if sc["qk_norm"]:
            w[p + "self_attn.q_norm.weight"] = rnd_f32((HD,), sc["qk_norm"][1], sc["qk_norm"][0]).to(dt)
            w[p + "self_attn.k_norm.weight"] = rnd_f32((HD,), sc["qk_norm"][1], sc["qk_norm"][0]).to(dt)
        w[p + "mlp.gate_proj.weight"] = rnd((F, D), sc["gate_up"] / math.sqrt(D))
        w[p + "mlp.up_proj.weight"] = rnd((F, D), sc["gate_up"] / math.sqrt(D))
        w[p + "mlp.down_proj.weight"] = rnd((D, F), sc["down"] / math.sqrt(F))
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"):
            w[p + n + ".weight"] = rnd((D,), 0.1)
    w["model.norm.weight"] = rnd_f32((D,), 0.1, sc["final"]).to(dt)
    return w


def stored_names(c, w):
    """Rename to the checkpoint's tensor names (and add the multimodal dummies), in the order
    the tensors are saved: for the wrapper, vision tower, projector, then language model."""
    if c["family"] != "gemma3":
        return w
    g = torch.Generator().manual_seed(c["seed"] + 1)
    dt = DTYPES[c["torch_dtype"]]
    out = {
        # dummies named like the real SigLIP tower / projector tensors: a text loader ignores them
        "vision_tower.vision_model.post_layernorm.weight": (torch.randn(32, generator=g)).to(dt),
        "multi_modal_projector.mm_input_projection_weight":
            (torch.randn(32, D, generator=g) * 0.02).to(dt),
    }
    for k, v in w.items():
        out["language_model." + k] = v
    return out


def write_model(model_dir, cfg, w, shards):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if shards == 1:
        with open(os.path.join(model_dir, "model.safetensors"), "wb") as f:
            f.write(st_encode(w))
        return
    nbytes = {k: v.numel() * v.element_size() for k, v in w.items()}
    total = sum(nbytes.values())
    groups, acc = [[] for _ in range(shards)], 0
    for k in w:   # split in save order by bytes
        groups[min(int(acc * shards // total), shards - 1)].append(k)
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
    """min over greedy steps of (top1 - top2) / max|logits| (one forward over the whole path)."""
    with torch.no_grad():
        lg = ref.forward(ids + greedy[:-1])[len(ids) - 1:]
    top2 = lg.topk(2, dim=-1).values
    return ((top2[:, 0] - top2[:, 1]) / lg.abs().max()).min().item()


def pick_prompts(ref, eos, seed):
    """[<bos>, random ids...] per length whose greedy path has no eos id and no near-tie
    (deterministic re-draws); None if some length has no such prompt."""
    g = torch.Generator().manual_seed(seed + 7)
    prompts = []
    for T in PROMPT_LENGTHS:
        for _ in range(30 if T > 1 else 1):
            ids = [2] + torch.randint(0, V, (T - 1,), generator=g).tolist()
            greedy = ref.greedy(ids, N_GREEDY)
            if not eos & set(greedy) and greedy_margin(ref, ids, greedy) >= MIN_MARGIN:
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
    cfg = hf_config(name, c)
    for seed in range(c["seed"], c["seed"] + 20000, 1000):   # next weight seed if no robust T=1
        shutil.rmtree(model_dir, ignore_errors=True)
        write_model(model_dir, cfg, stored_names(c, random_weights(c, seed)), c["shards"])
        ref = Gemma23Ref(model_dir)   # reads back exactly what was written
        picked = pick_prompts(ref, eos_ids(cfg), seed)
        if picked:
            break
    else:
        raise SystemExit(f"{name}: no weight seed gives robust greedy paths")
    prompts, stats = [], []
    for k, (ids, greedy) in enumerate(picked):
        with torch.no_grad():
            logits, smax, lmax = ref.forward(ids, return_stats=True)
        stats.append((smax, lmax))
        fname = f"logits_{k}.f32"
        with open(os.path.join(case_dir, fname), "wb") as f:
            f.write(logits.float().contiguous().numpy().astype("<f4").tobytes())
        prompts.append({"ids": ids, "logits_file": fname, "greedy": greedy})
    with open(os.path.join(case_dir, "prompts.json"), "w") as f:
        json.dump(prompts, f)
        f.write("\n")
    return ref, prompts, seed, stats


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "golden")
    for name, c in CASES.items():
        _, prompts, seed, stats = make_case(out, name, c)
        for p, (smax, lmax) in zip(prompts, stats):
            print(f"{name} (weight seed {seed}): T={len(p['ids'])} max|score| {smax:.1f}"
                  f" max|logit| before cap {lmax:.1f} greedy={p['greedy']}")


if __name__ == "__main__":
    main()
