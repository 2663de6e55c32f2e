"""lm-evaluation-harness 0.4.13 helpers, copied so that scoring never imports lm-eval (MIT, EleutherAI).

Each function is the harness's own, with only the document plumbing removed; tests/test_eval_tasks.py checks
every one against the installed lm-eval, so a harness upgrade that changes them fails loudly.
Sources: lm_eval/utils.py, lm_eval/api/metrics.py, lm_eval/tasks/{hellaswag/utils.py,
wikitext/preprocess_wikitext.py}.
"""

import math
import random
import re

import numpy as np

LM_EVAL_VERSION = "0.4.13"  # the harness these copies (and the prompts in tasks.py) follow


# --- rolling windows (lm_eval/utils.py) ---


def get_rolling_token_windows(token_list, prefix_token, max_seq_len, context_len):
    """(input_tokens, pred_tokens) windows that predict every token of token_list exactly once."""
    assert 1 <= context_len <= max_seq_len
    if not token_list:
        return
    pred_len = max_seq_len - context_len + 1
    predicted = 0
    # the first window predicts from the prefix token; later ones carry up to max_seq_len tokens of context
    first_seq_len = min(max_seq_len, len(token_list))
    yield [prefix_token] + token_list[: first_seq_len - 1], token_list[:first_seq_len]
    predicted += first_seq_len
    while predicted < len(token_list):
        window_pred_len = min(len(token_list) - predicted, pred_len)
        window_end = predicted + window_pred_len
        yield (
            token_list[window_end - max_seq_len - 1 : window_end - 1],
            token_list[window_end - window_pred_len : window_end],
        )
        predicted += window_pred_len


def make_disjoint_window(pair):
    """Trim the context so it does not overlap the continuation."""
    a, b = pair
    return a[: len(a) - (len(b) - 1)], b


# --- task text processing ---


def hellaswag_preprocess(text: str) -> str:
    text = text.strip()
    # brackets are artifacts of the WikiHow part of HellaSwag
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def wikitext_detokenizer(string: str) -> str:
    # contractions
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    # number separators
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    # punctuation
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    # double brackets
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    # miscellaneous
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")
    return string


def count_words(text: str) -> int:
    """lm-eval's wikitext word count, taken on the page *before* detokenization."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


# --- aggregation and standard errors (lm_eval/api/metrics.py) ---


def mean(arr) -> float:
    return sum(arr) / len(arr)


def sample_stddev(arr) -> float:
    mu = mean(arr)
    return math.sqrt(sum([(x - mu) ** 2 for x in arr]) / (len(arr) - 1))


def mean_stderr(arr) -> float:
    return sample_stddev(arr) / math.sqrt(len(arr))


def perplexity(lls) -> float:
    return math.exp(-mean(lls))


def weighted_perplexity(items) -> float:
    a, b = zip(*items)
    return math.exp(-sum(a) / sum(b))


def bits_per_byte(items) -> float:
    a, b = zip(*items)
    return -(sum(a) / sum(b)) / math.log(2)


def bootstrap_stderr_perplexity(lls, iters: int = 100000) -> float:
    """lm-eval's bootstrap stderr of exp(-mean(ll)), draw for draw, vectorised.

    The harness resamples with random.Random(chunk).choices in chunks of 1000; numpy's MT19937 seeded with
    the same state gives the same uniforms, so the estimate is lm-eval's (to float summation order), in
    seconds rather than minutes.
    """
    xs = np.asarray(lls, dtype=np.float64)
    n = len(xs)
    chunk = min(1000, iters)
    stats = []
    for i in range(iters // chunk):
        state = random.Random(i).getstate()[1]
        rng = np.random.RandomState()
        rng.set_state(("MT19937", np.array(state[:-1], dtype=np.uint32), state[-1]))
        idx = np.floor(rng.random_sample((chunk, n)) * n).astype(np.int64)  # random.choices' own formula
        stats.append(np.exp(-xs[idx].mean(axis=1)))
    return sample_stddev(np.concatenate(stats).tolist())
