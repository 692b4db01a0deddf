"""The vocabulary as a Hugging Face tokenizer: tokenizer.json (the `tokenizers` library's
format) and tokenizer_config.json, written beside an exported model so that
`transformers.AutoTokenizer.from_pretrained(folder)`, and every tool built on it (the
evaluation harness's `tokenizer=folder`), count and number text exactly as charlstm does.

A character model is a BPE model with no merges: each character is its own token, its
id charlstm's; a byte model is the same over GPT-2's byte-level alphabet (one token per
UTF-8 byte, as charlstm's byte ids). Characters outside the vocabulary are dropped, as
`unknown: skip` drops them (a tokenizer cannot refuse a text). A document model's
reserved ids are special tokens: the document end (which also starts the next) as
END_TOKEN, each label as a LABEL_TOKEN; their text never occurs in a corpus by chance,
and the tokenizer is told not to look for it in text (split_special_tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

from charlstm.data.vocab import END, LABEL_BASE, Vocab

END_TOKEN = "<|end of document|>"
LABEL_TOKEN = "<|label {}|>"
TOKENIZER, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"


def byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in for each byte value (what the ByteLevel pre-tokenizer
    and decoder of `tokenizers` map bytes to and from)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shown, extra = {}, 0
    for b in range(256):
        if b in kept:
            shown[b] = chr(b)
        else:
            shown[b] = chr(256 + extra)
            extra += 1
    return [shown[b] for b in range(256)]


def special_tokens(vocab: Vocab) -> dict[int, str]:
    """Each reserved id's token text."""
    named = {}
    for i, symbol in enumerate(vocab.code_points):
        if symbol == END:
            named[i] = END_TOKEN
        elif symbol >= LABEL_BASE:
            named[i] = LABEL_TOKEN.format(vocab.labels[symbol - LABEL_BASE])
    return named


def tokenizer_json(vocab: Vocab) -> dict:
    specials = special_tokens(vocab)
    if vocab.mode == "byte":
        alphabet = byte_alphabet()
        pieces = {alphabet[b]: i for i, b in enumerate(vocab.code_points) if b < 256}
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                      "use_regex": False}  # fmt: skip
        pre, decoder = byte_level, byte_level
    else:
        # a lone surrogate cannot be written in the JSON the library reads: left out
        pieces = {
            chr(c): i
            for i, c in enumerate(vocab.code_points)
            if c < END and not 0xD800 <= c < 0xE000
        }
        pre, decoder = None, {"type": "Fuse"}
    added = [
        {"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, text in specials.items()
    ]  # fmt: skip
    model = {"type": "BPE", "dropout": None, "unk_token": None,
             "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
             "byte_fallback": False, "ignore_merges": False,
             "vocab": {**pieces, **{text: i for i, text in specials.items()}},
             "merges": []}  # fmt: skip
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": pre, "post_processor": None,
            "decoder": decoder, "model": model}  # fmt: skip


def tokenizer_config(vocab: Vocab) -> dict:
    """transformers' side: the fast tokenizer over tokenizer.json, no length limit of
    its own, and (document models) the document end as end and start of sequence."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1 << 40,
              "clean_up_tokenization_spaces": False, "split_special_tokens": True,
              "add_bos_token": False, "add_eos_token": False}  # fmt: skip
    if vocab.documents:
        config |= {"eos_token": END_TOKEN, "bos_token": END_TOKEN}
    return config


def write_tokenizer(folder: Path, vocab: Vocab) -> int:
    """tokenizer.json and tokenizer_config.json in `folder`; returns the bytes written."""
    written = 0
    for name, content in ((TOKENIZER, tokenizer_json(vocab)),
                          (TOKENIZER_CONFIG, tokenizer_config(vocab))):  # fmt: skip
        path = folder / name
        path.write_text(json.dumps(content, indent=1, ensure_ascii=True), encoding="utf-8")
        written += path.stat().st_size
    return written
