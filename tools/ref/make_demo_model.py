#!/usr/bin/python3
"""Writes models/tiny-gemma/ (the model `make demo` runs): random BF16 Gemma-1-shaped weights in
HF layout plus tests/data/tiny.model as tokenizer.model. Deterministic.

    /usr/bin/python3 tools/ref/make_demo_model.py
"""
import os, shutil, sys

import sentencepiece as spm
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import make_goldens as mg  # noqa: E402
from gemma_ref import GemmaRef  # noqa: E402

SEED = 4242
OUT = os.path.join(ROOT, "models", "tiny-gemma")
SPM = os.path.join(ROOT, "tests", "data", "tiny.model")
PROMPT = "ROMEO:"

README = """# tiny-gemma (random weights)

A tiny Gemma-1-shaped model for `make demo` and smoke tests. **Its weights are random**, so it
produces gibberish; it will be replaced by the trained model from the training issue.

- Made by `/usr/bin/python3 tools/ref/make_demo_model.py` (deterministic, weight seed {seed}; the
  weight recipe is `random_weights` in `tools/ref/make_goldens.py`).
- HF layout: `config.json` (`GemmaForCausalLM`, legacy `"hidden_act": "gelu"` as in the real 2B
  config: the engine must use gelu-tanh regardless), `model.safetensors` (BF16, tied embeddings),
  `tokenizer.model` = copy of `tests/data/tiny.model` (SentencePiece BPE, byte fallback,
  pad 0 / eos 1 / bos 2 / unk 3, `<start_of_turn>` 4, `<end_of_turn>` 5).
- Shape: d {d}, {L} layers, {H} heads, {K} kv head (MQA like Gemma 2B), head_dim {hd},
  FFN {F}, vocab {V}, max_position_embeddings {ctx}, torch_dtype bfloat16.

Reference output (`tools/ref/gemma_ref.py`, float32, greedy, no EOS stop): prompt ids
`{ids}` (`<bos>` + "{prompt}") continue with

    {greedy}

which decodes to {text!r}.
"""


def main():
    sp = spm.SentencePieceProcessor(model_file=SPM)
    c = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
             head_dim=32, intermediate_size=256, vocab_size=sp.vocab_size(),
             torch_dtype="bfloat16", act={"hidden_act": "gelu"})
    assert (sp.pad_id(), sp.eos_id(), sp.bos_id(), sp.unk_id()) == (0, 1, 2, 3)
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    mg.write_model(OUT, mg.hf_config(c, max_pos=2048), mg.random_weights(c, SEED), shards=1)
    shutil.copyfile(SPM, os.path.join(OUT, "tokenizer.model"))
    ids = [2] + sp.encode(PROMPT)
    greedy = GemmaRef(OUT).greedy(ids, 20)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(README.format(seed=SEED, d=128, L=4, H=4, K=1, hd=32, F=256, V=c["vocab_size"],
                              ctx=2048, ids=ids, prompt=PROMPT, greedy=greedy,
                              text=sp.decode(greedy)))
    print(f"wrote {OUT}: vocab {c['vocab_size']}, greedy {greedy}")


if __name__ == "__main__":
    main()
