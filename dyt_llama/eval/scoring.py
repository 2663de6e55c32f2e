"""Batched log-likelihood of continuations: lm-eval HFLM's numbers with less work.

What is identical to HFLM (lm_eval/models/huggingface.py, api/model.py): the tokenization (the context and
context+continuation are encoded whole and split at the context's length, a trailing space moves to the
continuation, the tokenizer's own BOS handling), the left truncation to max_length, the empty-context prefix
token, and the rolling windows. What is faster:

- the choices of one question are packed into one row: their common token prefix (the question) is run once
  and each choice's tail attends to it and to itself through a block mask, with its own position ids. The
  prefix is the tokens the choices actually share, so a tokenization that merges across the context boundary
  just shares less; the arithmetic is the same as one row per choice;
- only the positions that score a continuation token go through the LM head and log-softmax (HFLM does the
  whole padded batch, which for a small model with a large vocabulary is most of the time);
- rows are sorted by length so a batch carries little padding.

Rolling windows (wikitext) score every position, so there is nothing to skip there: same speed as HFLM.
On CPU in float32 the per-request log-likelihoods come out equal to HFLM's, usually to the bit.
"""

import inspect

import numpy as np
import torch
from tqdm.auto import tqdm

from . import compat

TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' "no limit" model_max_length
DEFAULT_MAX_LENGTH = 2048  # HFLM's fallback


def resolve_max_length(config, tokenizer=None, default: int = DEFAULT_MAX_LENGTH) -> int:
    """HFLM's max_length: the config's context length, else the tokenizer's, else 2048."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != TOKENIZER_INFINITY:
        return int(limit)
    return default


class _Row:
    """One packed row: the sequences' common prefix, then each one's own tail.

    targets: (position in the row whose logit scores the token, token, sequence index) per scored token.
    """

    __slots__ = ("tokens", "positions", "segments", "targets", "n_seqs")

    def __init__(self, seqs: list[tuple[list[int], list[int]]], seq_offset: int):
        inputs = [inp for inp, _ in seqs]
        lcp = len(inputs[0])
        for inp in inputs[1:]:
            n, lcp = min(lcp, len(inp)), 0
            while lcp < n and inp[lcp] == inputs[0][lcp]:
                lcp += 1
        self.tokens = list(inputs[0][:lcp])
        self.positions = list(range(lcp))
        self.segments = [0] * lcp
        self.targets = []
        for j, (inp, cont) in enumerate(seqs):
            offset = len(self.tokens) - lcp
            self.tokens += inp[lcp:]
            self.positions += range(lcp, len(inp))
            self.segments += [j + 1] * (len(inp) - lcp)
            start = len(inp) - len(cont)  # the logit at position q scores token q + 1
            for q, tok in enumerate(cont, start):
                self.targets.append((q if q < lcp else offset + q, tok, seq_offset + j))
        self.n_seqs = len(seqs)


class Scorer:
    """Scores (context, continuation) requests for one model (put in eval mode) and tokenizer.

    batch_size counts requests (choices) per forward pass, as lm-eval's --batch_size does. max_length defaults
    to the model's context length, as HFLM's does.
    """

    def __init__(self, model, tokenizer, batch_size: int = 16, max_length: int | None = None, progress=True):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.max_length = int(max_length or resolve_max_length(model.config, tokenizer))
        self.progress = progress
        self.device = next(model.parameters()).device
        # HFLM's prefix token (BOS, else EOS): the stand-in context of an empty context and of rolling windows
        bos, eos = (tokenizer.bos_token_id, tokenizer.eos_token_id) if tokenizer is not None else (None, None)
        self.prefix_token_id = bos if bos is not None else eos
        self._bos_text = tokenizer.decode(self.prefix_token_id) if self.prefix_token_id is not None else None
        # Custom block masks need an attention that takes an arbitrary mask; flash kernels do not.
        impl = getattr(model.config, "_attn_implementation", None) or "eager"
        self.share_prefix = impl in ("sdpa", "eager")
        self._bool_mask = impl == "sdpa"  # eager adds the mask to the scores, so it wants 0 / -inf
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._logits_to_keep_checked = False

    # --- tokenization, exactly as HFLM ---

    def encode(self, texts: list[str], add_special_tokens: bool | None = None) -> list[list[int]]:
        """HFLM.tok_encode for many texts: the tokenizer's default special tokens, except for a text that
        already starts with the BOS string."""
        if add_special_tokens is not None:
            return self.tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"] if texts else []
        out: list = [None] * len(texts)
        plain = [i for i, t in enumerate(texts) if not (self._bos_text and t.startswith(self._bos_text))]
        has_bos = sorted(set(range(len(texts))) - set(plain))
        for idx, kwargs in ((plain, {}), (has_bos, {"add_special_tokens": False})):
            if idx:
                for i, ids in zip(idx, self.tokenizer([texts[i] for i in idx], **kwargs)["input_ids"]):
                    out[i] = ids
        return out

    def encode_requests(self, requests: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """HFLM.loglikelihood's (context_enc, continuation_enc) for each request."""
        pairs, empty = [], []
        for i, (context, continuation) in enumerate(requests):
            if context == "":
                empty.append(i)
                pairs.append(None)
                continue
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces:  # a trailing space belongs to the continuation's first token
                context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
            pairs.append((context, continuation))
        full = [p for p in pairs if p is not None]
        unique_ctx = list(dict.fromkeys(c for c, _ in full))
        ctx_ids = dict(zip(unique_ctx, self.encode(unique_ctx)))
        whole_ids = iter(self.encode([c + k for c, k in full]))
        out = []
        for p in pairs:
            if p is None:
                out.append(None)
                continue
            ctx, whole = ctx_ids[p[0]], next(whole_ids)
            out.append((ctx, whole[len(ctx) :]))
        conts = self.encode([requests[i][1] for i in empty], add_special_tokens=False)
        for i, cont in zip(empty, conts):  # no context: the prefix token stands in for it
            out[i] = (
                ([self.prefix_token_id], cont) if cont[:1] != [self.prefix_token_id] else (cont[:1], cont[1:])
            )
        return out

    # --- scoring ---

    def loglikelihood(
        self, groups: list[list[tuple[str, str]]], desc: str = "", greedy: bool = True
    ) -> list[list[tuple[float, bool | None]]]:
        """Per request (log P(continuation | context), is_greedy); a group is one question's choices.
        greedy=False skips the argmax over the vocabulary (multiple choice never uses it): is_greedy is None."""
        flat = [r for g in groups for r in g]
        encoded = iter(self.encode_requests(flat))
        return self.loglikelihood_tokens([[next(encoded) for _ in g] for g in groups], desc, greedy)

    def loglikelihood_rolling(self, texts: list[str], desc: str = "") -> list[tuple[float, int]]:
        """HFLM.loglikelihood_rolling: (log-likelihood, tokens scored) of each whole text, in disjoint windows
        of max_length that start from the prefix token."""
        windows, owner = [], []
        for i, tokens in enumerate(self.encode(texts)):
            for window in compat.get_rolling_token_windows(tokens, self.prefix_token_id, self.max_length, 1):
                windows.append([compat.make_disjoint_window(window)])
                owner.append(i)
        scores = self.loglikelihood_tokens(windows, desc, greedy=False)
        out = [[0.0, 0] for _ in texts]
        for i, [(ll, _)], [(_, cont)] in zip(owner, scores, windows):
            out[i][0] += ll
            out[i][1] += len(cont)
        return [tuple(x) for x in out]

    def loglikelihood_tokens(
        self, groups, desc: str = "", greedy: bool = True
    ) -> list[list[tuple[float, bool]]]:
        """The engine: groups of (context_ids, continuation_ids) in, (log-likelihood, is_greedy) out."""
        rows, seqs = [], 0
        for group in groups:
            inputs = []
            for ctx, cont in group:
                if not cont:
                    raise ValueError(
                        f"a continuation encodes to no tokens (context ends {ctx[-5:]}) — check the task"
                    )
                if len(cont) > self.max_length:
                    raise ValueError(
                        f"a continuation of {len(cont)} tokens exceeds max_length {self.max_length}"
                    )
                inputs.append(((ctx + cont)[-(self.max_length + 1) :][:-1], cont))  # HFLM's left truncation
            parts = [inputs] if self.share_prefix and len(inputs) > 1 else [[x] for x in inputs]
            for part in parts:
                rows.append(_Row(part, seqs))
                seqs += len(part)
        ll = torch.zeros(seqs, dtype=torch.float64)
        misses = torch.zeros(seqs, dtype=torch.long)
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r].tokens))  # longest first, as HFLM
        bar = tqdm(total=seqs, desc=desc or "scoring", disable=not self.progress, leave=False)
        start = 0
        while start < len(order):
            stop, n = start, 0
            while stop < len(order) and (n == 0 or n + rows[order[stop]].n_seqs <= self.batch_size):
                n += rows[order[stop]].n_seqs
                stop += 1
            self._score_batch([rows[r] for r in order[start:stop]], ll, misses if greedy else None)
            bar.update(n)
            start = stop
        bar.close()
        out, k = [], 0
        for group in groups:
            out.append(
                [(float(ll[k + j]), bool(misses[k + j] == 0) if greedy else None) for j in range(len(group))]
            )
            k += len(group)
        return out

    @torch.inference_mode()
    def _score_batch(self, rows: list[_Row], ll: torch.Tensor, misses: torch.Tensor | None) -> None:
        B, T = len(rows), max(len(r.tokens) for r in rows)
        ids = np.zeros((B, T), dtype=np.int64)
        pos = np.zeros((B, T), dtype=np.int64)
        seg = np.full((B, T), -1, dtype=np.int64)
        for b, r in enumerate(rows):
            n = len(r.tokens)
            ids[b, :n], pos[b, :n], seg[b, :n] = r.tokens, r.positions, r.segments
        tgt = np.array(
            [(b, q, tok, s) for b, r in enumerate(rows) for q, tok, s in r.targets], dtype=np.int64
        )
        keep = torch.zeros(B, T, dtype=torch.bool)
        keep[tgt[:, 0], tgt[:, 1]] = True
        kwargs = {"input_ids": torch.from_numpy(ids).to(self.device), "use_cache": False}
        if seg.max() > 0:  # some row is packed: block mask and per-tail positions (else plain causal)
            kwargs["attention_mask"] = self._block_mask(torch.from_numpy(seg))
            kwargs["position_ids"] = torch.from_numpy(pos).to(self.device)
        logits = self._forward(kwargs, keep)
        # the kept positions come out flattened in row-major order
        flat = (keep.view(-1).cumsum(0) - 1)[torch.from_numpy(tgt[:, 0] * T + tgt[:, 1])].to(self.device)
        tokens = torch.from_numpy(tgt[:, 2]).to(self.device)
        token_ll = torch.empty(len(tgt), dtype=torch.float32, device=self.device)
        hits = torch.empty(len(tgt), dtype=torch.bool, device=self.device)
        # log-softmax a slab of rows at a time: the same row-wise values, without a second (N, vocab) tensor
        step = max(1, 2**23 // logits.shape[-1])
        for a in range(0, logits.shape[0], step):
            logp = torch.log_softmax(logits[a : a + step].float(), dim=-1)
            sel = (flat >= a) & (flat < a + step)
            token_ll[sel] = logp[flat[sel] - a, tokens[sel]]
            if misses is not None:
                hits[sel] = logp.argmax(dim=-1)[flat[sel] - a] == tokens[sel]
        # Sum each sequence's tokens as HFLM does (one float32 .sum() per continuation), so that the only
        # difference left is the forward pass's rounding. A sequence's targets are contiguous in tgt.
        starts = np.flatnonzero(np.diff(tgt[:, 3], prepend=-1))
        seqs, counts = tgt[starts, 3].tolist(), np.diff(starts, append=len(tgt)).tolist()
        for s, part in zip(seqs, token_ll.cpu().split(counts)):
            ll[s] = float(part.sum())
        if misses is not None:
            for s, hit in zip(seqs, hits.cpu().split(counts)):
                misses[s] = int((~hit).sum())

    def _block_mask(self, seg: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, T): a token sees earlier tokens of the shared prefix (segment 0) and of its own segment."""
        T = seg.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        sq, sk = seg[:, :, None], seg[:, None, :]
        mask = (causal & ((sk == 0) | (sk == sq)))[:, None].to(self.device)
        if self._bool_mask:
            return mask
        dtype = self.model.dtype
        return torch.zeros(mask.shape, dtype=dtype, device=self.device).masked_fill(
            ~mask, torch.finfo(dtype).min
        )

    def _forward(self, kwargs: dict, keep: torch.Tensor) -> torch.Tensor:
        """Logits at the kept positions, (N, vocab); the LM head runs on those alone when the model allows."""
        keep = keep.to(self.device)
        if self._logits_to_keep and self._logits_to_keep_checked:
            return self.model(**kwargs, logits_to_keep=keep).logits
        if self._logits_to_keep:  # first batch: check the model takes a boolean (B, T) logits_to_keep
            try:
                logits = self.model(**kwargs, logits_to_keep=keep).logits
                if logits.dim() == 2 and logits.shape[0] == int(keep.sum()):
                    self._logits_to_keep_checked = True
                    return logits
            except (TypeError, IndexError, RuntimeError):
                pass
            self._logits_to_keep = False  # an older model: full logits from now on
        return self.model(**kwargs).logits[keep]
