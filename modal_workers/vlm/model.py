"""The VLM workload's model: which model to load, loading it once, and one generation call.

Resolution (:func:`resolve_model`): a job names a model (``VlmParams.model``) or ``None`` for the
deployment's default. The default (``GPURELAY_VLM_MODEL``: a hub id or a local directory, default
:data:`DEFAULT_MODEL`) is always allowed; others only if listed in ``GPURELAY_VLM_MODELS`` (a JSON
list of hub ids or directories). A name outside that list, or one shaped like a server path
(absolute, ``..``, ``~``, a backslash), fails with ``PermanentError("model_not_allowed")``: a client
can never make the worker open an arbitrary path.

Loading (:func:`load_model`, cached per process; :meth:`VlmModel.load`): ``AutoProcessor`` and
``AutoModelForImageTextToText`` from the hub id or directory (set ``HF_HUB_OFFLINE=1`` to forbid
downloads), in bfloat16 on CUDA and float32 on CPU; a failure is
``PermanentError("model_unavailable")``.

Generation (:meth:`VlmModel.generate`): ``messages`` are chat messages (``{"role", "content"}``,
content a string or a list of ``{"type": "image"}`` / ``{"type": "text", "text": ...}`` parts),
one image part per image in ``images`` (PIL images), in order. The prompt goes through the
processor's chat template when it has one, else a plain ``role: text`` format
(:meth:`VlmModel.prompt_text`); the answer is decoded without special tokens and returned with the
number of tokens generated. torch and transformers are imported only inside the functions here.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from contracts.specs.session_params import VLM_DEFAULT_MODEL, vlm_model_refusal
from modal_workers.runtime.worker_runtime import PermanentError

DEFAULT_MODEL = VLM_DEFAULT_MODEL
"""The model used when ``GPURELAY_VLM_MODEL`` is not set."""
MODEL_ENV, ALLOWED_ENV = "GPURELAY_VLM_MODEL", "GPURELAY_VLM_MODELS"
Message = Mapping[str, Any]


def model_settings(environ: Mapping[str, str] = os.environ) -> tuple[str, tuple[str, ...]]:
    """The deployment's default model and allowlist from the environment (see the module docstring)."""
    default = environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL
    raw = environ.get(ALLOWED_ENV, "").strip()
    try:
        allowed = json.loads(raw) if raw else []
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ALLOWED_ENV} must be a JSON list of model names: {exc}") from None
    if not isinstance(allowed, list) or not all(isinstance(name, str) and name for name in allowed):
        raise ValueError(f"{ALLOWED_ENV} must be a JSON list of model names")
    return default, tuple(allowed)


def resolve_model(requested: str | None, default: str, allowed: Sequence[str] = ()) -> str:
    """The model to load for a job that asked for ``requested`` (``None``: ``default``); the rule is
    :func:`contracts.specs.session_params.vlm_model_refusal`, the gateway's too."""
    if (refusal := vlm_model_refusal(requested, default, allowed)) is not None:
        raise PermanentError("model_not_allowed", refusal)
    return default if requested is None else requested


def device() -> str:
    """``cuda`` when a GPU is present, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class VlmModel:
    """A processor and an image-text-to-text model, ready to generate (see the module docstring)."""

    def __init__(self, processor: Any, model: Any, source: str) -> None:
        self.processor = processor
        self.model = model
        self.source = source
        self.device = model.device
        self.dtype = model.dtype
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.has_chat_template = bool(getattr(processor, "chat_template", None))
        self.image_placeholder: str = getattr(processor, "image_token", None) or "<image>"
        self.last_prompt = ""

    @classmethod
    def load(cls, source: str) -> VlmModel:
        """Load ``source`` (a hub id or a local directory): bf16 on CUDA, fp32 on CPU."""
        import torch

        transformers: Any = importlib.import_module("transformers")  # untyped loaders: the objects are Any
        where = device()
        dtype = torch.bfloat16 if where == "cuda" else torch.float32
        try:
            processor = transformers.AutoProcessor.from_pretrained(source)
            model = transformers.AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError, KeyError) as exc:  # missing, not cached offline, not a VLM
            raise PermanentError("model_unavailable", f"the model {source!r} cannot be loaded: {exc}") from exc
        return cls(processor, model.to(where).eval(), source)

    def prompt_text(self, messages: Sequence[Message]) -> str:
        """The prompt for ``messages``: the chat template's rendering, else ``role: text`` lines."""
        if self.has_chat_template:
            rendered = self.processor.apply_chat_template(
                [_as_parts(message) for message in messages], tokenize=False, add_generation_prompt=True
            )
            return str(rendered)
        lines = [f"{message['role']}: {self._plain_content(message['content'])}" for message in messages]
        return "\n".join([*lines, "assistant:"])

    def _plain_content(self, content: Any) -> str:
        if isinstance(content, str):
            return content
        parts = [self.image_placeholder if part["type"] == "image" else str(part.get("text", "")) for part in content]
        return " ".join(parts)

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is (no special tokens added)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, token_ids: Sequence[int]) -> str:
        """Generated ``token_ids`` as text, special tokens left out."""
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True)).strip()

    def generate(
        self, images: Sequence[Any], messages: Sequence[Message], max_new_tokens: int = 256, temperature: float = 0.0
    ) -> tuple[str, int]:
        """The answer to ``messages`` about ``images`` and the number of tokens generated."""
        import torch

        prompt = self.prompt_text(messages)
        self.last_prompt = prompt
        # A chat template writes its own BOS; the plain format needs the tokenizer's.
        inputs = self.processor(
            text=prompt, images=list(images) or None, return_tensors="pt", add_special_tokens=not self.has_chat_template
        ).to(self.device, dtype=self.dtype)
        sampling: dict[str, Any] = {"do_sample": True, "temperature": temperature} if temperature > 0 else {}
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **({"do_sample": False} | sampling))
        new_tokens = output[0, inputs["input_ids"].shape[1] :].tolist()
        return self.decode(new_tokens), len(new_tokens)


def _as_parts(message: Message) -> dict[str, Any]:
    """``message`` with string content as a single text part (the form multimodal chat templates expect)."""
    content = message["content"]
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    return {"role": message["role"], "content": parts}


@functools.lru_cache(maxsize=1)
def load_model(source: str) -> VlmModel:
    """:meth:`VlmModel.load`, once per process (one model is kept: a new source replaces it)."""
    return VlmModel.load(source)
