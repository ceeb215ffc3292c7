"""Write a tiny LLaMA-architecture GGUF with seeded random weights, for llama.cpp's server.

No model can be downloaded here, so the interop tests make one: one block, 64-wide, a GPT-2
style byte-level BPE vocabulary (the 256 byte tokens plus merges for a few words, with and
without a leading space), ChatML control tokens and template. A constant residual dimension
feeding output.weight acts as a per-token bias, so Heads and Tails come out on top. A few
hundred KB; loads in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ["Heads", "Tails", "coin", "Flip", "Return", "only", "or", "a", "Head", "Tail"]
CONTROL = ["<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# per-token bias (through the constant residual dimension): Heads first, then Tails
BIAS = {"Heads": 6.0, "Tails": 4.5, "ĠHeads": 3.0, "Head": 2.5, "T": 2.0, "ĠTails": 1.5}


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def vocabulary() -> tuple[list[str], list[str]]:
    """Tokens (bytes first, then merge results) and the merges that build the words."""
    b2u = byte_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    merges: list[str] = []
    for word in WORDS:
        for text in (word, " " + word):
            pieces = [b2u[b] for b in text.encode()]
            current = pieces[0]
            for piece in pieces[1:]:
                merged = current + piece
                if merged not in tokens:
                    merges.append(f"{current} {piece}")
                    tokens.append(merged)
                current = merged
    return tokens, merges


def write_tiny_llama(
    path: Path,
    seed: int = 0,
    n_embd: int = 64,
    n_layer: int = 1,
    n_head: int = 4,
    n_ff: int = 128,
    context: int = 128,
    bias: bool = True,
    edit_output=None,
) -> Path:
    """`bias`: Heads and Tails on top (the coin flip). `edit_output(out, tokens)` may change
    output.weight (a row per token, float32) before it is written: an engineered near-tie."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, merges = vocabulary()
    tokens = tokens + CONTROL
    n_vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("detcheck-tiny-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    types = [gguf.TokenType.NORMAL] * (n_vocab - len(CONTROL)) + [gguf.TokenType.CONTROL] * len(
        CONTROL
    )
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def w(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    embd = w(n_vocab, n_embd)
    embd[:, 0] = 1.0  # the constant residual dimension
    out = w(n_vocab, n_embd, scale=0.02 if bias else 0.2)
    out[:, 0] = 0.0
    if bias:
        for token, value in BIAS.items():
            # rms-normed dim 0 is about sqrt(n_embd)
            out[tokens.index(token), 0] = value / np.sqrt(n_embd)
    if edit_output is not None:
        edit_output(out, tokens)
    tensors = {"token_embd.weight": embd}
    for i in range(n_layer):
        tensors.update(
            {
                f"blk.{i}.attn_norm.weight": np.ones(n_embd, np.float32),
                f"blk.{i}.attn_q.weight": w(n_embd, n_embd),
                f"blk.{i}.attn_k.weight": w(n_embd, n_embd),
                f"blk.{i}.attn_v.weight": w(n_embd, n_embd),
                f"blk.{i}.attn_output.weight": w(n_embd, n_embd),
                f"blk.{i}.ffn_norm.weight": np.ones(n_embd, np.float32),
                f"blk.{i}.ffn_gate.weight": w(n_ff, n_embd),
                f"blk.{i}.ffn_up.weight": w(n_ff, n_embd),
                f"blk.{i}.ffn_down.weight": w(n_embd, n_ff),
            }
        )
    tensors["output_norm.weight"] = np.ones(n_embd, np.float32)
    tensors["output.weight"] = out
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    import sys

    print(write_tiny_llama(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")))
