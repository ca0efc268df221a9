"""A labeller that needs no server: a chat model loaded here through transformers.

``--labeller MODEL`` (a hub id, a local folder, or ``bundled``) writes the labels the
OpenAI-compatible endpoint would, with the same prompts, caching and scoring (``LLMLabeler``):
only the transport differs, a greedy ``generate`` on this machine (the GPU when there is one).
"""

from __future__ import annotations

from pathlib import Path

from ...models import LoadedModel, chat_generate, load_model
from .llm_client import LabelingError, LLMEndpoint
from .llm_labeller import LLMLabeler

# Enough for a short label list or twenty "n: yes" lines, and no more: a small model that does
# not stop would otherwise ramble for the whole budget on every call.
MAX_NEW_TOKENS = 128
EXAMPLE_CHARS = 400  # shorter quotes than for an endpoint: a small local model has a short context

# Twenty responses judged per call (an endpoint gets ten): a generate here costs about the same
# for a longer prompt, and every call saved is seconds on a CPU.
BATCH_SIZE = 20


class LocalLabeler(LLMLabeler):
    # One candidate label per concept, not three: every candidate costs a model call per ten
    # held-out responses to score, and here each call is a generate on this machine.
    candidates = 1

    def __init__(self, loaded: LoadedModel, cache_path: str | Path | None, *, batch_size: int = BATCH_SIZE):
        # The endpoint only names the model in the cache key and in messages.
        super().__init__(
            LLMEndpoint(base_url=f"local://{loaded.path}", model=str(loaded.spec)),
            cache_path,
            batch_size=batch_size,
            max_example_chars=EXAMPLE_CHARS,
        )
        self.loaded = loaded

    @classmethod
    def load(cls, spec: str, cache_path: str | Path | None, device: str | None = None) -> LocalLabeler:
        try:
            return cls(load_model(spec, device=device), cache_path)
        except Exception as exc:  # a missing model, no network for a hub id, a broken folder
            raise LabelingError(
                f"the local labeller {spec!r} could not be loaded: {type(exc).__name__}: {exc}"
            ) from None

    def _post(self, messages: list[dict[str, str]]) -> str:
        try:
            return chat_generate(self.loaded, messages, max_new_tokens=MAX_NEW_TOKENS)["text"]
        except Exception as exc:  # out of memory, a template the tokenizer lacks
            raise LabelingError(f"the local labeller {self.loaded.spec} failed: {type(exc).__name__}: {exc}") from None
