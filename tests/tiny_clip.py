"""A tiny, randomly initialised CLIP with a real (byte-level BPE) CLIP tokenizer, built offline.

No CLIP weights exist on these machines; the export and runtime path is the same code a user
runs on openai/clip-vit-base-patch32, only smaller.
"""

from __future__ import annotations

import json
from pathlib import Path


def build_tiny_clip(directory: Path, *, image_size: int = 32, crop: int = 32) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    directory.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab |= {f"{c}</w>": len(chars) + i for i, c in enumerate(chars)}
    merges = ["t h", "th e</w>", "r e", "d r", "e s", "s s</w>"]
    for merge in merges:
        token = merge.replace(" ", "")
        vocab.setdefault(token, len(vocab))
    bos, eos = len(vocab), len(vocab) + 1
    vocab |= {"<|startoftext|>": bos, "<|endoftext|>": eos}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    tokenizer = CLIPTokenizerFast(
        vocab_file=str(directory / "vocab.json"), merges_file=str(directory / "merges.txt")
    )
    tokenizer.save_pretrained(directory)

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": crop,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": crop, "width": crop}
    ).save_pretrained(directory)
    return directory
