"""The VLM adapter on a tiny random Gemma 3 loaded offline, and the model resolution rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.harness.tiny_gemma import SPECIAL_TOKENS
from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.vlm.model import DEFAULT_MODEL, VlmModel, load_model, model_settings, resolve_model

pytestmark = pytest.mark.timeout(120)

IMAGES = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGB", (40, 40), (10, 90, 200))]
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What moves?"}]},
]


def test_loads_offline_in_fp32_on_cpu_and_generates_text_with_a_token_count(tiny_vlm: VlmModel) -> None:
    import torch

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert type(tiny_vlm.model).__name__ == "Gemma3ForConditionalGeneration"
    assert tiny_vlm.dtype == torch.float32
    assert tiny_vlm.device.type == "cpu"
    text, tokens = tiny_vlm.generate(IMAGES, MESSAGES, max_new_tokens=12, temperature=0.0)
    assert isinstance(text, str)
    assert text
    assert tokens == 12  # the tiny model cannot emit <eos>: it always runs to max_new_tokens
    assert tiny_vlm.generate(IMAGES, MESSAGES, max_new_tokens=12, temperature=0.0) == (text, tokens)  # greedy


def test_sampling_with_a_temperature_generates_too(tiny_vlm: VlmModel) -> None:
    text, tokens = tiny_vlm.generate(IMAGES[:1], [*MESSAGES[:1], _user(1)], max_new_tokens=6, temperature=1.0)
    assert isinstance(text, str)
    assert tokens == 6


def test_the_prompt_goes_through_the_chat_template(tiny_vlm: VlmModel) -> None:
    tiny_vlm.generate(IMAGES, MESSAGES, max_new_tokens=2)
    prompt = tiny_vlm.last_prompt
    assert tiny_vlm.has_chat_template
    assert prompt.startswith("<bos><start_of_turn>system\nAnswer briefly.<end_of_turn>\n<start_of_turn>user\n")
    assert prompt.count("<start_of_image>") == 2
    assert prompt.endswith("What moves?<end_of_turn>\n<start_of_turn>model\n")


def test_without_a_chat_template_the_prompt_is_plain_role_lines(tiny_vlm: VlmModel) -> None:
    import copy

    processor = copy.deepcopy(tiny_vlm.processor)
    processor.chat_template = None
    plain = VlmModel(processor, tiny_vlm.model, "plain")
    text, tokens = plain.generate(IMAGES, MESSAGES, max_new_tokens=4)
    assert not plain.has_chat_template
    assert plain.last_prompt == (
        "system: Answer briefly.\nuser: <start_of_image> <start_of_image> What moves?\nassistant:"
    )
    assert (isinstance(text, str), tokens) == (True, 4)


def test_special_tokens_are_left_out_of_the_answer(tiny_vlm: VlmModel) -> None:
    import torch

    generated_special = False
    for images, question in [(IMAGES, "What moves?"), (IMAGES[:1], "what"), (IMAGES[1:], "Where is it going?")]:
        content = [*[{"type": "image"}] * len(images), {"type": "text", "text": question}]
        messages = [{"role": "user", "content": content}]
        text, _ = tiny_vlm.generate(images, messages, max_new_tokens=32)
        assert not any(token in text for token in SPECIAL_TOKENS)
        prompt = tiny_vlm.last_prompt
        inputs = tiny_vlm.processor(text=prompt, images=images, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            raw = tiny_vlm.model.generate(**inputs, max_new_tokens=32, do_sample=False)
        raw_text = tiny_vlm.tokenizer.decode(raw[0, inputs["input_ids"].shape[1] :])
        generated_special |= any(token in raw_text for token in SPECIAL_TOKENS)
        assert tiny_vlm.decode(raw[0, inputs["input_ids"].shape[1] :].tolist()) == text
    assert generated_special, "the tiny model generated no special token: the check above proved nothing"
    vocab = tiny_vlm.tokenizer.get_vocab()
    ids = [vocab["a"], vocab["<start_of_turn>"], vocab["▁"], vocab["<end_of_turn>"], vocab["b"], vocab["<eos>"]]
    assert tiny_vlm.decode(ids) == "a b"


def test_count_tokens_uses_the_tokenizer(tiny_vlm: VlmModel) -> None:
    assert tiny_vlm.count_tokens("abc") == 3
    assert tiny_vlm.count_tokens("ab cd") == 5  # letters and ▁ are one token each
    assert tiny_vlm.count_tokens("") == 0


def test_load_model_is_cached_per_source(tiny_gemma_dir: Path) -> None:
    first = load_model(str(tiny_gemma_dir))
    assert load_model(str(tiny_gemma_dir)) is first


@pytest.mark.parametrize("source", ["/nonexistent/vlm-model", "google/not-cached-model"])
def test_a_model_that_cannot_be_loaded_is_a_permanent_error(source: str) -> None:
    with pytest.raises(PermanentError) as caught:
        VlmModel.load(source)
    assert caught.value.code == "model_unavailable"


def _user(images: int) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image"}] * images + [{"type": "text", "text": "go"}]}


# -- resolution -----------------------------------------------------------------------------------
def test_no_model_named_means_the_default() -> None:
    assert resolve_model(None, "org/default", ["org/other"]) == "org/default"
    assert resolve_model(None, "/models/local-dir") == "/models/local-dir"


def test_the_default_and_listed_models_are_allowed() -> None:
    assert resolve_model("org/default", "org/default") == "org/default"
    assert resolve_model("org/other", "org/default", ["org/other"]) == "org/other"


@pytest.mark.parametrize("requested", ["org/unlisted", "gemma", "org/default-2"])
def test_a_model_not_listed_is_refused(requested: str) -> None:
    with pytest.raises(PermanentError) as caught:
        resolve_model(requested, "org/default", ["org/other"])
    assert caught.value.code == "model_not_allowed"
    assert "org/other" in caught.value.message


@pytest.mark.parametrize(
    "requested", ["/etc/passwd", "../models/x", "org/../../etc", "~root/model", "C:\\models\\x", "/models/local-dir"]
)
def test_path_like_names_are_refused_even_if_listed(requested: str) -> None:
    with pytest.raises(PermanentError) as caught:
        resolve_model(requested, "org/default", [requested])
    assert caught.value.code == "model_not_allowed"


def test_refusals_do_not_reveal_server_paths() -> None:
    with pytest.raises(PermanentError) as caught:
        resolve_model("org/x", "/srv/models/secret", ["org/y"])
    assert "/srv/models/secret" not in caught.value.message


def test_settings_come_from_the_environment() -> None:
    assert model_settings({}) == (DEFAULT_MODEL, ())
    env = {"GPURELAY_VLM_MODEL": "/models/gemma", "GPURELAY_VLM_MODELS": '["org/a", "org/b"]'}
    assert model_settings(env) == ("/models/gemma", ("org/a", "org/b"))


@pytest.mark.parametrize("raw", ["org/a", '{"a": 1}', "[1]", '[""]'])
def test_a_malformed_allowlist_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ValueError, match="GPURELAY_VLM_MODELS"):
        model_settings({"GPURELAY_VLM_MODELS": raw})
