"""One text at a time through a MiniLM sentence model, fast: a search query.

sentence-transformers spends more time in Python than in arithmetic on a query of a few
words: 8 ms a query here, where the same BERT traced and frozen by TorchScript takes 3 ms.
The traced graph is checked against the model on probe texts of several lengths when it is
made; where any vector differs (cosine below ``AGREEMENT``), or the model is not a BERT with
mean pooling, there is no fast path and the model's own ``encode`` answers.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Final

import numpy as np

log = logging.getLogger(__name__)

#: Texts the traced graph must encode as the model does: lengths from 1 to ~60 word pieces.
PROBES: Final = (
    "halo",
    "Gears of War 3 - Xbox 360",
    "cheap wireless headphones under $50 with noise cancelling for running and the gym "
    "that fit small ears, in black or dark blue, 2 pack, with a case and a spare cable",
)
#: Least cosine between a probe's traced and plain vectors.
AGREEMENT: Final = 0.99999


class SingleText:
    """A sentence model's BERT traced for one text at a time (``encode`` -> a unit vector)."""

    def __init__(self, model: Any) -> None:
        import torch  # noqa: PLC0415 (lazy: heavy)

        self._torch = torch
        self.tokenizer = model.tokenizer
        self.max_tokens = int(model.max_seq_length)
        bert = model[0].auto_model.eval()

        class States(torch.nn.Module):
            """The BERT's last hidden states, as a plain tensor."""

            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, ids: Any, mask: Any) -> Any:
                return self.bert(input_ids=ids, attention_mask=mask, return_dict=False)[0]

        example = self._tokens("gears of war")
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the tracer's notes on Python values it fixed
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                States().eval(), (example["input_ids"], example["attention_mask"])
            )
            self.graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    @classmethod
    def of(cls, model: Any) -> SingleText | None:
        """The fast path for ``model``, or None where it would not give the model's vectors."""
        modules = list(model)
        pooling = modules[1] if len(modules) > 1 else None
        mean = getattr(pooling, "pooling_mode_mean_tokens", None) or (
            getattr(pooling, "pooling_mode", None) == "mean"
        )
        if not mean or not hasattr(modules[0], "auto_model"):
            return None
        try:
            fast = cls(model)
            plain = model.encode(list(PROBES), normalize_embeddings=True, show_progress_bar=False)
            traced = np.stack([fast.encode(text) for text in PROBES])
        except Exception as error:  # any failure: the plain path stays
            log.info("no traced query encoder (%s): the model encodes queries itself", error)
            return None
        if float((np.asarray(plain) * traced).sum(axis=1).min()) < AGREEMENT:
            log.info("the traced query encoder disagrees with the model: not used")
            return None
        return fast

    def _tokens(self, text: str) -> Any:
        return self.tokenizer(
            [text], return_tensors="pt", truncation=True, max_length=self.max_tokens
        )

    def encode(self, text: str) -> np.ndarray:
        """The text's unit vector (mean of its token states), float32."""
        tokens = self._tokens(text)
        with self._torch.inference_mode():
            states = self.graph(tokens["input_ids"], tokens["attention_mask"])[0]
            vector = states.mean(dim=0).numpy().astype(np.float32)
        norm = float(np.linalg.norm(vector))
        return np.asarray(vector / norm if norm > 0 else vector, dtype=np.float32)
