#!/usr/bin/python3
"""Write a random-weight Gemma checkpoint in Hugging Face layout (config.json + model.safetensors, bf16)
with a preset's exact shapes, for benchmarks that need a real file on disk (mmap vs read, llama.cpp's
converter). Usage: bench/make_random_checkpoint.py gemma-2b DIR   (Debian's python3-numpy)."""
import json, os, struct, sys
import numpy as np

PRESETS = {
    "gemma-2b": dict(vocab_size=256000, hidden_size=2048, num_hidden_layers=18, num_attention_heads=8,
                     num_key_value_heads=1, head_dim=256, intermediate_size=16384),
    "gemma-7b": dict(vocab_size=256000, hidden_size=3072, num_hidden_layers=28, num_attention_heads=16,
                     num_key_value_heads=16, head_dim=256, intermediate_size=24576),
}

def main():
    preset, out = sys.argv[1], sys.argv[2]
    c = PRESETS[preset]
    d, H, K, hd, F = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["intermediate_size"]
    shapes = [("model.embed_tokens.weight", (c["vocab_size"], d))]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes += [(p + "input_layernorm.weight", (d,)), (p + "self_attn.q_proj.weight", (H * hd, d)),
                   (p + "self_attn.k_proj.weight", (K * hd, d)), (p + "self_attn.v_proj.weight", (K * hd, d)),
                   (p + "self_attn.o_proj.weight", (d, H * hd)), (p + "post_attention_layernorm.weight", (d,)),
                   (p + "mlp.gate_proj.weight", (F, d)), (p + "mlp.up_proj.weight", (F, d)),
                   (p + "mlp.down_proj.weight", (d, F))]
    shapes.append(("model.norm.weight", (d,)))
    header, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, shape in shapes:
            n = int(np.prod(shape))
            scale = 1.7 / np.sqrt(shape[1]) if len(shape) == 2 else 0.1
            for start in range(0, n, 1 << 24):
                k = min(1 << 24, n - start)
                x = (rng.random(k, dtype=np.float32) * 2 - 1) * np.float32(scale)
                f.write((x.view(np.uint32) >> 16).astype("<u2").tobytes())
            print(f"\r{name:60s}", end="", file=sys.stderr)
    print(file=sys.stderr)
    cfg = dict(architectures=["GemmaForCausalLM"], model_type="gemma", max_position_embeddings=8192,
               rms_norm_eps=1e-6, rope_theta=10000.0, torch_dtype="bfloat16", bos_token_id=2, eos_token_id=1,
               pad_token_id=0, hidden_act="gelu", hidden_activation="gelu_pytorch_tanh", attention_bias=False,
               tie_word_embeddings=True, **c)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

if __name__ == "__main__":
    main()
