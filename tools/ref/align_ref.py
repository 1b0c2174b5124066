#!/usr/bin/python3
"""Alignment goldens for src/train/{sft,reward,rlhf}.c: chat-formatted ids and loss masks from SentencePiece,
the SFT masked loss and its gradients, the Bradley–Terry reward-model loss and gradients (head included),
and the REINFORCE (leave-one-out, KL folded into the reward) loss and gradients on a fixed batch of samples.
PyTorch autograd in float64 does every backward. The chat template, record conversion and masks are written
here from the published template (docs/DESIGN.md §4), not taken from the C code; the model is
tools/ref/train_ref.py's batched Gemma (imported), its final hidden state split out below and checked
against train_ref's own logits.

    /usr/bin/python3 tools/ref/align_ref.py [OUT_DIR]     # default: tests/golden/align

Deterministic (re-running gives byte-identical files). See tests/golden/align/README.md.
"""
import json, math, os, re, shutil, sys

import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_ref import gelu_tanh, loss_fn, rms_norm, rope, test_weights, write_model  # noqa: E402
from gemma_ref import st_decode, st_encode  # noqa: E402

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "align")
SPM = os.path.join(ROOT, "tests", "data", "tiny.model")

# tiny configs: the SFT one uses the tiny tokenizer's 1024 ids; the others need no tokenizer
SFT_CFG = dict(hidden_size=32, num_hidden_layers=2, head_dim=8, intermediate_size=64, vocab_size=1024,
               num_attention_heads=4, num_key_value_heads=2)
SMALL_CFG = dict(SFT_CFG, vocab_size=256)


# ---------------------------------------------------------------- chat template, records, masks
def gemma_format(msgs):
    """Gemma's chat template: '<bos>' + per turn '<start_of_turn>' + role + '\\n' + content.strip() +
    '<end_of_turn>\\n'; assistant is written model; a leading system message is put, unstripped, before the
    first user message's text with a blank line (Gemma 3's template)."""
    out, system = "<bos>", None
    if msgs[0]["role"] == "system":
        system, msgs = msgs[0]["content"], msgs[1:]
    spans = []                       # (start, end) of each model turn's content + <end_of_turn>
    for i, m in enumerate(msgs):
        role = "user" if m["role"] == "user" else "model"
        assert role == ("user" if i % 2 == 0 else "model"), "roles must alternate"
        text = m["content"].strip()
        if i == 0 and system is not None:
            text = system + "\n\n" + text
        out += "<start_of_turn>" + role + "\n"
        start = len(out)
        out += text + "<end_of_turn>"
        if role == "model":
            spans.append((start, len(out)))
        out += "\n"
    return out, spans


def hh_messages(text):
    parts = re.split(r"\n\n(Human|Assistant):", text)
    assert parts[0] == "", "HH text starts with a turn marker"
    return [{"role": "user" if parts[i] == "Human" else "model", "content": parts[i + 1]}
            for i in range(1, len(parts), 2)]


def record_conversations(r):
    if "messages" in r:
        return [r["messages"]]
    if "chosen" in r:
        return [hh_messages(r["chosen"])]
    if "instruction" in r:
        items = r["instances"] if "output" not in r and "instances" in r else [r]
        return [[{"role": "user", "content": r["instruction"] + ("\n\n" + it["input"] if it.get("input") else "")},
                 {"role": "model", "content": it["output"]}] for it in items]
    if "question" in r:
        return [[{"role": "user", "content": r["question"]}, {"role": "model", "content": r["answer"]}]]
    raise ValueError("unknown record")


def encode_with_mask(sp, msgs, final_newline=True):
    """ids = <bos> + SentencePiece(formatted text after '<bos>'); mask = 1 on the tokens inside each model
    turn's span, found from the token counts of the text before the span's ends (each must be a token
    boundary: the prefix's encoding is a prefix of the whole encoding)."""
    text, spans = gemma_format(msgs)
    body = text[len("<bos>"):]
    if not final_newline:
        assert body.endswith("<end_of_turn>\n")
        body = body[:-1]
    ids = [sp.bos_id()] + sp.encode(body)
    mask = [0] * len(ids)
    for s, e in spans:
        a, b = sp.encode(text[len("<bos>"):s]), sp.encode(text[len("<bos>"):e])
        assert ids[1:1 + len(a)] == a and ids[1:1 + len(b)] == b, "span ends are token boundaries"
        for i in range(1 + len(a), 1 + len(b)):
            mask[i] = 1
    return text, ids, mask


# ---------------------------------------------------------------- the model's final hidden state
def hidden_fn(W, c, inputs):
    """train_ref.loss_fn's batched Gemma up to the final RMSNorm: [B, T, d]."""
    d, H, K, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps, theta, scale = 1e-6, 10000.0, 1.0 / math.sqrt(hd)
    Bn, Tn = inputs.shape
    x = W["model.embed_tokens.weight"][inputs] * math.sqrt(d)
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
    return rms_norm(x, W["model.norm.weight"], eps)


def check_hidden(W, c, inputs):
    """hidden_fn · Eᵀ must be train_ref.loss_fn's logits (the copy above is that model, not another)."""
    with torch.no_grad():
        _, logits = loss_fn(W, c, inputs, torch.full(inputs.shape, -1, dtype=torch.long))
        mine = hidden_fn(W, c, inputs) @ W["model.embed_tokens.weight"].T
    err = ((mine - logits).abs().max() / logits.abs().max()).item()
    assert err < 1e-12, f"hidden_fn disagrees with train_ref.loss_fn ({err})"


def read_weights(model_dir):
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        return st_decode(f.read())                           # exactly what the C side reads


def leaf64(w):
    return {n: t.double().clone().requires_grad_(True) for n, t in w.items()}


def save_grads(path, W, extra=None):
    g = {n: t.grad.float().contiguous() for n, t in W.items()}
    g.update(extra or {})
    with open(path, "wb") as f:
        f.write(st_encode(g))


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
        f.write("\n")


# ---------------------------------------------------------------- 1 + 2: chat ids, masks, SFT gradients
def make_sft(out):
    sp = spm.SentencePieceProcessor(model_file=SPM)
    case = os.path.join(out, "sft")
    shutil.rmtree(case, ignore_errors=True)
    examples = []
    with open(os.path.join(DATA, "sft_tiny.jsonl"), encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            for msgs in record_conversations(json.loads(line)):
                text, ids, mask = encode_with_mask(sp, msgs)
                examples.append({"line": line_no, "formatted": text, "ids": ids, "mask": mask})
    c = dict(SFT_CFG, seed=55)
    write_model(os.path.join(case, "model"), c, test_weights(c, c["seed"]))
    w = read_weights(os.path.join(case, "model"))
    B, T = len(examples), max(len(e["ids"]) for e in examples) - 1
    inputs = torch.zeros(B, T, dtype=torch.long)            # each example's ids, then pad id 0
    targets = torch.full((B, T), -1, dtype=torch.long)
    for b, e in enumerate(examples):
        n = len(e["ids"])
        inputs[b, :min(n, T)] = torch.tensor(e["ids"][:min(n, T)])
        for t in range(n - 1):
            if e["mask"][t + 1]:
                targets[b, t] = e["ids"][t + 1]
    check_hidden({n: t.double() for n, t in w.items()}, c, inputs)
    W = leaf64(w)
    loss, _ = loss_fn(W, c, inputs, targets)
    loss.backward()
    save_grads(os.path.join(case, "grads.safetensors"), W)
    dump(os.path.join(case, "sft.json"), {"B": B, "T": T, "examples": examples, "inputs": inputs.tolist(),
                                          "targets": targets.tolist(), "loss": loss.item(),
                                          "counted": int((targets >= 0).sum())})
    print(f"sft: {B} examples from sft_tiny.jsonl, T {T}, {int((targets >= 0).sum())} trained targets, "
          f"loss {loss.item():.6f}")


# ---------------------------------------------------------------- 3: Bradley–Terry reward model
def pref_side(r, side):
    """A preference record's side as a whole conversation: prompt (text or messages) + the side's answer (text
    or messages), an HH dialogue, or a whole message list."""
    s = r[side]
    if "prompt" in r:
        p = r["prompt"]
        msgs = [{"role": "user", "content": p}] if isinstance(p, str) else list(p)
        return msgs + ([{"role": "model", "content": s}] if isinstance(s, str) else s)
    return hh_messages(s) if isinstance(s, str) else s


def make_reward(out):
    case = os.path.join(out, "reward")
    shutil.rmtree(case, ignore_errors=True)
    sp = spm.SentencePieceProcessor(model_file=SPM)
    pairs = []
    with open(os.path.join(DATA, "pairs_tiny.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            pairs.append({side: encode_with_mask(sp, pref_side(r, side), final_newline=False)[1]
                          for side in ("chosen", "rejected")})
    c = dict(SMALL_CFG, seed=66)
    write_model(os.path.join(case, "model"), c, test_weights(c, c["seed"]))
    w = read_weights(os.path.join(case, "model"))
    g = torch.Generator().manual_seed(67)
    P, lens = 3, [9, 14, 6, 12, 5, 14]                       # rows: chosen 0..2, rejected 3..5
    T = max(lens)
    inputs = torch.zeros(2 * P, T, dtype=torch.long)
    for r, n in enumerate(lens):
        inputs[r, 0] = 2
        inputs[r, 1:n] = torch.randint(3, c["vocab_size"], (n - 1,), generator=g)
    head = torch.randn(c["hidden_size"], generator=g) * 0.5   # r of order 1: σ is far from both 0 and 1
    check_hidden({n: t.double() for n, t in w.items()}, c, inputs)
    W, v = leaf64(w), head.double().clone().requires_grad_(True)
    h = hidden_fn(W, c, inputs)
    r = torch.stack([h[b, lens[b] - 1] @ v for b in range(2 * P)])
    loss = F.softplus(r[P:] - r[:P]).mean()                   # −log σ(r_c − r_r), mean over pairs
    loss.backward()
    save_grads(os.path.join(case, "grads.safetensors"), W, {"score.weight": v.grad.float().reshape(1, -1)})
    dump(os.path.join(case, "reward.json"), {"P": P, "T": T, "lens": lens, "inputs": inputs.tolist(),
                                             "head": head.tolist(), "rewards": r.tolist(), "loss": loss.item(),
                                             "pairs": pairs})
    print(f"reward: {P} pairs, rewards {[round(x, 4) for x in r.tolist()]}, loss {loss.item():.6f}")


# ---------------------------------------------------------------- 4: REINFORCE with leave-one-out and KL
def make_rlhf(out):
    case = os.path.join(out, "rlhf")
    shutil.rmtree(case, ignore_errors=True)
    c = dict(SMALL_CFG, seed=77)
    w = test_weights(c, c["seed"])
    g = torch.Generator().manual_seed(78)
    # the reference: the policy moved a little, so log π − log π_ref is small but nowhere zero
    w_ref = {n: t + 0.05 * t.abs().mean() * torch.randn(t.shape, generator=g) for n, t in w.items()}
    write_model(os.path.join(case, "policy"), c, w)
    write_model(os.path.join(case, "ref"), c, w_ref)
    w, w_ref = read_weights(os.path.join(case, "policy")), read_weights(os.path.join(case, "ref"))
    K, n_prompt, resp_lens = 4, 5, [3, 6, 1, 4]
    beta, len_penalty = 0.1, 0.01
    prompt = [2] + torch.randint(3, c["vocab_size"], (n_prompt - 1,), generator=g).tolist()
    resp = [torch.randint(3, c["vocab_size"], (n,), generator=g).tolist() for n in resp_lens]
    rewards = (torch.rand(K, generator=g) * 2 - 1).tolist()
    T = n_prompt + max(resp_lens) - 1
    inputs = torch.zeros(K, T, dtype=torch.long)
    targets = torch.full((K, T), -1, dtype=torch.long)
    for k in range(K):
        row = prompt + resp[k]
        inputs[k, :len(row) - 1] = torch.tensor(row[:-1])
        for t in range(n_prompt - 1, len(row) - 1):
            targets[k, t] = row[t + 1]
    mask = targets >= 0
    tg = targets.clamp(min=0)

    def token_logp(W):
        logits = hidden_fn(W, c, inputs) @ W["model.embed_tokens.weight"].T
        return torch.log_softmax(logits, -1).gather(-1, tg[..., None])[..., 0] * mask

    with torch.no_grad():
        logp_ref = token_logp({n: t.double() for n, t in w_ref.items()})
    W = leaf64(w)
    logp = token_logp(W)
    kl = (logp.detach() - logp_ref).sum(1)                    # per sample, summed over its response tokens
    score = torch.tensor(rewards, dtype=torch.float64) - beta * kl - len_penalty * torch.tensor(resp_lens)
    adv = score - (score.sum() - score) / (K - 1)             # leave-one-out baseline
    loss = -(adv.detach() * logp.sum(1)).sum() / K            # one prompt: scale 1 / (P·K) with P = 1
    loss.backward()
    save_grads(os.path.join(case, "grads.safetensors"), W)
    dump(os.path.join(case, "rlhf.json"), {
        "K": K, "prompt": prompt, "responses": resp, "rewards": rewards, "beta": beta, "len_penalty": len_penalty,
        "T": T, "logp": logp.detach().tolist(), "logp_ref": logp_ref.tolist(), "kl": kl.tolist(),
        "score": score.tolist(), "advantages": adv.tolist(), "loss": loss.item()})
    print(f"rlhf: K {K}, kl {[round(x, 5) for x in kl.tolist()]}, advantages {[round(x, 4) for x in adv.tolist()]}, "
          f"loss {loss.item():.6f}")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "golden", "align")
    os.makedirs(out, exist_ok=True)
    make_sft(out)
    make_reward(out)
    make_rlhf(out)


if __name__ == "__main__":
    main()
