"""Perplexity: of a token stream in (sliding) windows, and of WikiText documents as lm-eval's `wikitext` task.

Both run on the batched scorer (scoring.py). The signatures are a stable API: ablation code calls them.
"""

import math

import torch

from . import compat
from .scoring import Scorer


def token_perplexity(
    model, input_ids, max_length: int, stride: int | None = None, batch_size: int = 8, progress: bool = False
) -> dict:
    """Token-level loss and perplexity of a whole corpus `input_ids` (1-D), nothing added to it.

    Windows hold at most max_length tokens. stride=None: disjoint windows, each token predicted from the
    earlier tokens of its own window (the first token of a window is context only). stride=s < max_length:
    windows start every s tokens and score only the tokens the previous window did not, so each token is
    predicted once from up to max_length - 1 tokens of context (slower, lower perplexity).
    Returns {loss (nats/token), perplexity, tokens (number scored), windows}.
    """
    ids = torch.as_tensor(input_ids).tolist() if not isinstance(input_ids, list) else list(input_ids)
    if not ids or isinstance(ids[0], list):
        raise ValueError("input_ids must be a non-empty 1-D sequence of token ids — flatten the corpus first")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    stride = max_length if stride is None else int(stride)
    if not 1 <= stride <= max_length:
        raise ValueError(f"stride must be in [1, max_length={max_length}], got {stride}")
    windows, done = [], 1  # tokens [0, done) are scored or pure context; token 0 never has context
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        first = max(done, begin + 1)
        if first < end:
            windows.append([(ids[begin:first], ids[first:end])])
            done = end
        if end == len(ids):
            break
    if not windows:
        raise ValueError("input_ids needs at least 2 tokens to score")
    scorer = Scorer(model, None, batch_size=batch_size, max_length=max_length, progress=progress)
    scores = scorer.loglikelihood_tokens(windows, desc="perplexity")
    total = sum(ll for [(ll, _)] in scores)
    tokens = sum(len(cont) for [(_, cont)] in windows)
    loss = -total / tokens
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens, "windows": len(windows)}


def wikitext_perplexity(
    model,
    tokenizer,
    documents: list[str],
    max_length: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """lm-eval's `wikitext` metrics for raw WikiText pages (EleutherAI/wikitext_document_level `page`s).

    As the harness: each page is detokenized, encoded with the tokenizer's BOS, and scored in disjoint
    max_length windows (the first predicted from the BOS/EOS prefix token); words and bytes are counted on
    the page before detokenization. max_length=None takes the model's context length, as HFLM does.
    Returns {word_perplexity, byte_perplexity, bits_per_byte, token_perplexity, loglikelihood, words, bytes,
    tokens, documents}.
    """
    scorer = Scorer(model, tokenizer, batch_size=batch_size, max_length=max_length, progress=progress)
    return wikitext_metrics(scorer, documents)


def wikitext_metrics(scorer: Scorer, documents: list[str], desc: str = "wikitext") -> dict:
    if not documents:
        raise ValueError("no documents to score")
    scores = scorer.loglikelihood_rolling([compat.wikitext_detokenizer(d) for d in documents], desc=desc)
    lls = [ll for ll, _ in scores]
    words = [compat.count_words(d) for d in documents]
    nbytes = [compat.count_bytes(d) for d in documents]
    tokens = sum(n for _, n in scores)
    return {
        "word_perplexity": compat.weighted_perplexity(list(zip(lls, words))),
        "byte_perplexity": compat.weighted_perplexity(list(zip(lls, nbytes))),
        "bits_per_byte": compat.bits_per_byte(list(zip(lls, nbytes))),
        "token_perplexity": math.exp(-sum(lls) / tokens),
        "loglikelihood": sum(lls),
        "words": sum(words),
        "bytes": sum(nbytes),
        "tokens": tokens,
        "documents": len(documents),
        "per_document": lls,
    }
