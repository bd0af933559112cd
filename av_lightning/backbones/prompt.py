"""Placeholder tokens in the prompt, and their replacement by audio tokens inside the text encoder.

A template such as ``"A video of <audio> playing drums"`` holds one placeholder. At start-up the
placeholder becomes K real tokenizer tokens (``<audio_0> ... <audio_{K-1}>``) whose ids come from
the tokenizer. At encode time a forward hook on the text encoder's token embedding writes the
frame's K audio tokens into those rows; everything else in the encoder (CLIP, umT5) runs
untouched. The embedding table stays frozen: gradients reach only the injected tokens.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import nn


class PromptInjector:
    """Tokenises templates with a placeholder and encodes them with injected token rows.

    Args:
        tokenizer: a transformers tokenizer (it gains K new tokens).
        text_encoder: a transformers text encoder, e.g. ``CLIPTextModel`` (its embedding table grows
            by K frozen rows when it has no spare rows).
        placeholder: the placeholder string used in templates.
        num_tokens: K, tokens injected per prompt.
        max_length: prompt length in tokens (default: the tokenizer's ``model_max_length``).
        embedding: ``text_encoder -> the embedding module its forward calls`` (default
            ``get_input_embeddings()``; T5-family encoders call their stack's ``embed_tokens``, a
            second module tied to the same weights).
    """

    def __init__(self, tokenizer, text_encoder: nn.Module, placeholder: str = "<audio>", num_tokens: int = 1,
                 max_length: Optional[int] = None,
                 embedding: Optional[Callable[[nn.Module], nn.Module]] = None):
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.placeholder = placeholder
        self.num_tokens = num_tokens
        self.max_length = int(max_length or tokenizer.model_max_length)
        self._embedding_of = embedding or (lambda model: model.get_input_embeddings())
        self.token_strings = [f"{placeholder[:-1]}_{k}>" if placeholder.endswith(">") else f"{placeholder}_{k}"
                              for k in range(num_tokens)]
        vocab = tokenizer.get_vocab()
        taken = [t for t in [placeholder, *self.token_strings] if t in vocab]
        if taken:
            raise ValueError(
                f"placeholder token(s) {taken} already exist in the tokenizer's vocabulary; "
                "choose another placeholder string (for example '<audio>' -> '<snd>')"
            )
        added = tokenizer.add_tokens(self.token_strings, special_tokens=False)
        if added != num_tokens:
            raise RuntimeError(f"tokenizer added {added} of {num_tokens} placeholder tokens")
        self.token_ids = tokenizer.convert_tokens_to_ids(self.token_strings)
        if len(set(self.token_ids)) != num_tokens or any(i is None or i < 0 for i in self.token_ids):
            raise RuntimeError(f"placeholder tokens got invalid ids {self.token_ids}")
        embedding = self._embedding_of(text_encoder)
        needed = max(self.token_ids) + 1
        if embedding.num_embeddings < needed:
            text_encoder.resize_token_embeddings(needed)
            embedding = self._embedding_of(text_encoder)
        embedding.weight.requires_grad_(False)
        self._pending: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._template_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handle = embedding.register_forward_hook(self._replace_rows)

    # -- tokenisation -------------------------------------------------------------------------
    def expand(self, template: str) -> str:
        """Replace the single placeholder by the K token strings."""
        count = template.count(self.placeholder)
        if count != 1:
            raise ValueError(
                f"prompt template {template!r} must contain the placeholder {self.placeholder!r} exactly once "
                f"(found {count}); for example 'A video of {self.placeholder}'"
            )
        return template.replace(self.placeholder, " ".join(self.token_strings))

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """``len(texts)`` prompts -> ``(N, L)`` input ids, padded to the model length."""
        out = self.tokenizer(
            list(texts), padding="max_length", max_length=self.max_length,
            truncation=True, return_tensors="pt",
        )
        return out.input_ids

    def placeholder_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(N, L)`` bool, True at placeholder positions; checks each prompt holds all K in order."""
        ids = torch.as_tensor(self.token_ids, device=input_ids.device)
        mask = (input_ids[..., None] == ids).any(-1)
        counts = mask.sum(-1)
        if (counts != self.num_tokens).any():
            raise ValueError(
                f"each prompt must hold the {self.num_tokens} placeholder tokens once, found counts "
                f"{counts.tolist()}; the prompt may be too long for the tokenizer's "
                f"{self.max_length} tokens"
            )
        order = input_ids[mask].view(-1, self.num_tokens)
        if not (order == ids).all():
            raise ValueError("placeholder tokens appear out of order in a prompt")
        return mask

    # -- encoding -----------------------------------------------------------------------------
    def _replace_rows(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if self._pending is None:
            return output
        mask, values = self._pending
        if mask.shape != output.shape[:2]:
            raise RuntimeError(f"placeholder mask {tuple(mask.shape)} does not match embeddings {tuple(output.shape)}")
        return output.masked_scatter(mask.unsqueeze(-1), values.to(output.dtype))

    @contextlib.contextmanager
    def injecting(self, mask: torch.Tensor, values: torch.Tensor) -> Iterator[None]:
        """Within the block, the token embedding writes ``values`` (N, K, d) at ``mask`` (N, L)."""
        self._pending = (mask, values)
        try:
            yield
        finally:
            self._pending = None

    def template_ids(self, template: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(L,)`` and placeholder mask ``(L,)`` of a template, tokenised and checked once.

        Training asks for the same few templates every step; caching them on the CPU keeps the
        tokenizer and the mask's consistency checks (a device sync each) out of the step.
        """
        cached = self._template_cache.get(template)
        if cached is None:
            ids = self.tokenize([self.expand(template)])
            cached = (ids[0], self.placeholder_mask(ids)[0])
            if len(self._template_cache) >= 4096:
                self._template_cache.clear()
            self._template_cache[template] = cached
        return cached

    def encode(self, input_ids: torch.Tensor, tokens: Optional[torch.Tensor] = None,
               mask: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Run the text encoder, injecting ``tokens`` at the placeholder positions.

        Args:
            input_ids: ``(N, L)`` from :meth:`tokenize`.
            tokens: ``(N, K, d)`` audio tokens, or None for a plain prompt.
            mask: ``(N, L)`` placeholder mask when already known (from :meth:`template_ids`).
            attention_mask: ``(N, L)`` padding mask for encoders that take one (umT5); None: none.

        Returns:
            ``(N, L, d)`` last hidden state.
        """
        kw = {} if attention_mask is None else {"attention_mask": attention_mask}
        if tokens is None:
            return self.text_encoder(input_ids=input_ids, **kw).last_hidden_state
        N, K, d = tokens.shape
        if K != self.num_tokens or N != input_ids.shape[0]:
            raise ValueError(
                f"expected tokens of shape ({input_ids.shape[0]}, {self.num_tokens}, d), got {tuple(tokens.shape)}"
            )
        if mask is None:
            mask = self.placeholder_mask(input_ids)
        with self.injecting(mask, tokens):
            return self.text_encoder(input_ids=input_ids, **kw).last_hidden_state

    def remove(self) -> None:
        self._handle.remove()
