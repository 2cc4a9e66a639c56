#!/usr/bin/env python3
"""Writes the toy-world model's CLIP-format BPE tokenizer (vocab.json, merges.txt and the configs).

The vocabulary is CLIP's byte-level base (every byte alone and with the end-of-word mark "</w>", so any
text tokenizes) plus merges learned on the grammar's words until each word is one token, then
<|startoftext|> and <|endoftext|>, in the order OpenAI's CLIP vocabulary has them. Learning is plain
BPE (most frequent pair first, ties broken by the pair's text), so applying the merges by rank gives
every grammar word back as the single token it was learned as. Standard library only.

usage: make_tokenizer.py OUT_DIR
"""
import json
import sys
from collections import Counter
from pathlib import Path

# Every word the grammar uses (engine/toyworld/world.cpp), with how often a prompt holds it, roughly:
# merges of frequent words come first, as in a tokenizer learned on a corpus of such prompts.
WORDS = {
    "a": 6, "and": 3, "at": 6, "the": 6, "background": 3, "small": 1, "big": 1,
    "top": 3, "bottom": 3, "left": 3, "right": 3, "center": 1,
    "circle": 1, "square": 1, "triangle": 1, "star": 1, "heart": 1, "house": 1, "tree": 1, "boat": 1,
    "red": 1, "orange": 1, "yellow": 1, "green": 1, "blue": 1, "purple": 1, "pink": 1, "white": 1,
    "black": 1, "brown": 1,
    "grass": 1, "sand": 1, "sea": 1, "sky": 1, "snow": 1, "night": 1,
}


def bytes_to_unicode():
    """GPT-2's byte -> printable character table, which CLIP's BPE uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_merges(words):
    byte_char = bytes_to_unicode()
    # A word is a tuple of symbols; the last carries "</w>".
    corpus = {}
    for word, count in words.items():
        symbols = [byte_char[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        corpus[tuple(symbols)] = count
    merges = []
    while True:
        pairs = Counter()
        for symbols, count in corpus.items():
            for a, b in zip(symbols, symbols[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = {}
        for symbols, count in corpus.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = count
        corpus = merged
    assert all(len(s) == 1 for s in corpus), "every grammar word must end as one token"
    return merges


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    byte_chars = list(bytes_to_unicode().values())
    merges = learn_merges(WORDS)
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(tokens)) == len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(out / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = dict(special, model_max_length=77, tokenizer_class="CLIPTokenizer")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{out}: {len(vocab)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
