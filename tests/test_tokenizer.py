"""SentencePiece BPE training, the HF conversion, caching and loading."""

import random
import string
from pathlib import Path

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

from dyt_llama import tokenizer as T

SHARED = Path(__file__).parents[2] / "shared" / "data"
SHAKESPEARE = SHARED / "tinyshakespeare" / "input.txt"
SAMPLES = [
    "Hello world",
    "  leading spaces,  double  spaces, trailing ",
    "line\nbreak\n\n\tindented\r\nwindows",
    "digits 1234567 and 3.14",
    "naïve café, 日本語 and 🙂",
    "a literal </s> and <s> in the text",
    " ",
    "",
]


@pytest.fixture(scope="module")
def corpus():
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is missing")
    return SHAKESPEARE


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    return T.train_sentencepiece_bpe(corpus, 1000, out), out


def test_trained_tokenizer_is_llama_style(trained):
    tok, _ = trained
    assert len(tok) == 1000
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, None)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<unk>", "<s>", "</s>"]
    assert (
        tok("hi there")["input_ids"] == tok("hi there", add_special_tokens=False)["input_ids"]
    )  # no BOS/EOS


def test_byte_fallback_round_trips_unseen_characters(trained):
    tok, _ = trained
    text = "naïve café, 日本語 and 🙂"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert any(t.startswith("<0x") for t in tok.convert_ids_to_tokens(ids))  # bytes, not <unk>
    assert tok.decode(ids) == text


def test_same_ids_as_sentencepiece_and_after_reload(trained, corpus, tmp_path):
    tok, out = trained
    (model,) = out.glob("spm-bpe-1000-*/spm.model")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    texts = SAMPLES + corpus.read_text().split("\n\n")[:300]
    tok.save_pretrained(tmp_path / "export")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "export")
    for text in texts:
        want = sp.encode(text)
        assert T.encode_documents(tok, [text])[0] == want + [2], text
        assert reloaded(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] == want, text


def test_encode_documents_ends_each_with_eos_only(trained):
    tok, _ = trained
    docs = T.encode_documents(tok, ["First doc.", "", None, "Ends with </s>"])
    assert [d[-1] for d in docs] == [2, 2, 2, 2]
    assert docs[1] == docs[2] == [2]
    assert all(1 not in d and d.count(2) == 1 for d in docs)  # no BOS; a literal "</s>" is text


def test_trained_tokenizer_is_cached(trained, corpus, monkeypatch):
    tok, out = trained
    monkeypatch.setattr(T, "_train_spm", lambda *a: pytest.fail("retrained a cached tokenizer"))
    again = T.train_sentencepiece_bpe(corpus, 1000, out)
    assert again.name_or_path == tok.name_or_path
    assert again("To be, or not")["input_ids"] == tok("To be, or not")["input_ids"]
    assert not list(out.glob(".tmp-*"))  # no temp folders left behind


def test_train_from_iterator_and_cache_key(tmp_path, monkeypatch):
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8))) for _ in range(300)]
    docs = [" ".join(rng.choices(words, k=100)) for _ in range(100)]
    tok = T.train_sentencepiece_bpe(iter(docs), 400, tmp_path)
    assert len(tok) == 400
    calls = []
    real = T._train_spm
    monkeypatch.setattr(T, "_train_spm", lambda *a: calls.append(1) or real(*a))
    T.train_sentencepiece_bpe(iter(docs), 400, tmp_path)
    assert calls == []  # same text, same vocab size: cached
    T.train_sentencepiece_bpe(iter(docs[:-1]), 400, tmp_path)
    assert calls == [1]  # different text: trained again
    assert len(list(tmp_path.glob("spm-bpe-400-*"))) == 2


def test_bad_training_input(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        T.train_sentencepiece_bpe(tmp_path / "missing.txt", 500, tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="no text"):
        T.train_sentencepiece_bpe(tmp_path / "empty.txt", 500, tmp_path)
    (tmp_path / "small.txt").write_text("just a few words\n" * 10)
    with pytest.raises(ValueError, match="SentencePiece training failed"):
        T.train_sentencepiece_bpe(tmp_path / "small.txt", 5000, tmp_path)


def test_load_tokenizer(trained, tmp_path):
    tok, _ = trained
    tok.save_pretrained(tmp_path / "export")
    assert T.load_tokenizer(tmp_path / "export")("hello")["input_ids"] == tok("hello")["input_ids"]
    with pytest.raises(ValueError, match="tokenizer not found"):
        T.load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot load tokenizer"):
        T.load_tokenizer(tmp_path / "empty")


def test_check_vocab_fits(trained):
    tok, _ = trained
    T.check_vocab_fits(tok, 1000)
    with pytest.raises(ValueError, match="tokenizer has 1000 tokens but the model's vocab_size is 512"):
        T.check_vocab_fits(tok, 512)
