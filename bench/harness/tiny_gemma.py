"""A tiny random Gemma 3 vision-language model, built offline and saved like a hub checkpoint.

:func:`build_tiny_gemma` writes a directory that ``AutoProcessor`` and
``AutoModelForImageTextToText`` load as they would ``google/gemma-3-4b-it``: a ``Gemma3Config``
with a 2-layer text model and a 1-layer SigLIP vision tower (hidden size 32, 32 px images in
8 px patches, 4 soft tokens per image), a byte-level BPE tokenizer (``tokenizers``, through
``GemmaTokenizer``: the special tokens, the 256 byte tokens, ``▁`` and the letters) with the
image tokens Gemma 3 needs, a Gemma-style chat template and a ``Gemma3Processor``. About 60k
parameters: building, saving and loading take a few seconds, generating a few milliseconds a token.

The output layer is untied and zero but for :data:`ANSWER_TOKENS` (letters, ``▁`` and a few
special tokens), so answers are readable letters with special tokens among them and never stop
early at ``<eos>``. Weights come from a fixed seed: the same build generates the same answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SEED = 0
SPECIAL_TOKENS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
LETTERS = "abcdefghijklmnopqrstuvwxyz"
ANSWER_TOKENS = (*LETTERS, "▁", "<start_of_turn>", "<start_of_image>", "<mask>")
"""The tokens the tiny model can generate."""
IMAGE_SIZE, PATCH_SIZE, IMAGE_TOKENS = 32, 8, 4
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
"""Gemma's turn format (``<start_of_turn>role\\n...<end_of_turn>``; the assistant is ``model``)."""


def vocabulary() -> dict[str, int]:
    """Special tokens, then ``<0x00>``..``<0xFF>`` (byte fallback), ``▁`` and the letters."""
    tokens = [*SPECIAL_TOKENS, *(f"<0x{byte:02X}>" for byte in range(256)), "▁", *LETTERS]
    return {token: index for index, token in enumerate(tokens)}


def build_processor(vocab: dict[str, int]) -> Any:
    """The tokenizer, a small image processor and the chat template as a ``Gemma3Processor``."""
    from transformers import Gemma3Processor, GemmaTokenizer
    from transformers.models.gemma3.image_processing_gemma3 import Gemma3ImageProcessor

    image_tokens = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[], extra_special_tokens=image_tokens)
    tokenizer.add_special_tokens(
        {"extra_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}, replace_extra_special_tokens=False
    )
    image_processor = Gemma3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE, image_seq_length=IMAGE_TOKENS
    )


def build_config(vocab: dict[str, int]) -> Any:
    """A ``Gemma3Config``: 2 text layers, 1 SigLIP layer, hidden size 32, untied output layer."""
    from transformers import Gemma3Config

    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "sliding_window": 512,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": False,
    }
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
    }
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=IMAGE_TOKENS,
        boi_token_index=vocab["<start_of_image>"],
        eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"],
        tie_word_embeddings=False,
    )


def build_tiny_gemma(folder: Path, seed: int = SEED) -> Path:
    """Build the tiny model and save it (model, processor, template) into ``folder``; returns ``folder``."""
    import torch
    from transformers import Gemma3ForConditionalGeneration

    vocab = vocabulary()
    torch.manual_seed(seed)
    model: Any = Gemma3ForConditionalGeneration(build_config(vocab))
    model.eval()
    with torch.no_grad():
        allowed = torch.tensor([vocab[token] for token in ANSWER_TOKENS])
        weight = model.lm_head.weight
        kept = weight[allowed].clone()
        weight.zero_()
        weight[allowed] = kept * 50  # large enough that one token never dominates every step
    model.generation_config.eos_token_id = [vocab["<eos>"], vocab["<end_of_turn>"]]
    model.save_pretrained(folder)
    build_processor(vocab).save_pretrained(folder)
    return folder
