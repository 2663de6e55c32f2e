"""Text -> packed token blocks, cached; and a sampler whose batches depend only on (seed, step).

load_text_dataset   a HF dataset by name, or local txt/json/jsonl/parquet files -> one "text" column
build_token_cache   tokenize (ids + EOS per document), concatenate, cache as a flat memmap,
                    split into train/val PackedBlocks
batch_indices       the global batch of any step as a pure function of (seed, step, batch size)
StreamingBlocks     the same packing on the fly for streaming datasets, with an exact resume position

Cache layout: cache_dir/<key>/tokens.bin (flat uint16, or uint32 when the vocabulary is larger than
65536) and meta.json, where key hashes (data, tokenizer, seq_len). The folder is built under a
temporary name and renamed into place, so a killed run never leaves a cache that is taken as good.
"""

from __future__ import annotations

import codecs
import functools
import glob
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch

from dyt_llama.tokenizer import encode_documents

CACHE_VERSION = 1  # bump when the cache format or the packing changes
_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}  # anything else is plain text


# ----------------------------------------------------------------------------------------------
# loading


def load_text_dataset(
    dataset: str | None = None,
    dataset_config: str | None = None,
    split: str = "train",
    data_files: str | os.PathLike | list[str | os.PathLike] | None = None,
    text_column: str = "text",
    streaming: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a HF dataset by name or local files; return it with one column, "text".

    Local files go by extension: .json/.jsonl -> one document per record, .parquet -> one per row,
    anything else is UTF-8 text with one document per file. Globs and folders are expanded; local
    files form a single split. Bad input raises ValueError with a one-line message.
    """
    if (dataset is None) == (data_files is None):
        raise ValueError("give exactly one of `dataset` (a Hugging Face dataset name) or `data_files`")
    if data_files is not None:
        files = resolve_data_files(data_files)
        builder = _builder_for(files)
        for f in files:
            check_data_file(f, builder)
        source = str(files[0]) if len(files) == 1 else f"{len(files)} {builder} files ({files[0]}, ...)"
        args, kwargs = (builder,), dict(data_files=[str(f) for f in files], split="train")
        if builder == "text":
            kwargs["sample_by"] = "document"  # a text file is one document, ended by one EOS
    else:
        source = f"dataset {dataset}" + (f"/{dataset_config}" if dataset_config else "") + f" [{split}]"
        args, kwargs = (dataset, dataset_config), dict(split=split, revision=revision)
    try:
        ds = datasets.load_dataset(*args, streaming=streaming, cache_dir=cache_dir, **kwargs)
    except Exception as e:  # datasets raises many types; each means "cannot read this input"
        raise ValueError(f"cannot load {source}: {_first_line(e)}") from e
    return _text_only(ds, text_column, source)


def resolve_data_files(data_files) -> list[Path]:
    """Expand globs and folders (hidden files skipped) into a sorted, de-duplicated list of files."""
    patterns = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not patterns:
        raise ValueError("data_files is empty")
    files: list[Path] = []
    for pattern in map(str, patterns):
        pattern = os.path.expanduser(pattern)
        if glob.has_magic(pattern):
            found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(p)]
            if not found:
                raise ValueError(f"no data files match {pattern}")
        elif os.path.isdir(pattern):
            found = _files_in(Path(pattern))
            if not found:
                raise ValueError(f"no data files in folder {pattern}")
        elif os.path.isfile(pattern):
            found = [Path(pattern)]
        else:
            raise ValueError(f"data file not found: {pattern}")
        files += found
    return list(dict.fromkeys(files))


def _files_in(root: Path) -> list[Path]:
    """Files under root, skipping hidden files and folders (.git, .cache, ...): they are not data."""
    visible = (
        p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    return sorted(p for p in visible if p.is_file())


def check_data_file(path: Path, builder: str) -> None:
    """One clear error for an empty, binary or non-UTF-8 file, before datasets chokes on it."""
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"data file is empty: {path}")
    with open(path, "rb") as f:
        if builder == "parquet":
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            if head != b"PAR1" or f.read(4) != b"PAR1":
                raise ValueError(f"not a parquet file: {path}")
            return
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset, has_text = 0, False
        for chunk in itertools.chain(iter(lambda: f.read(1 << 20), b""), [b""]):  # b"": end of file
            if b"\0" in chunk:
                raise ValueError(f"data file looks binary (it has NUL bytes), not text: {path}")
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                where = offset + len(chunk) - len(e.object) + e.start  # e.object: pending bytes + chunk
                raise ValueError(
                    f"data file is not UTF-8 text: {path} (invalid byte at offset {where})"
                ) from None
            has_text = has_text or bool(chunk.strip())
            offset += len(chunk)
        if not has_text:
            raise ValueError(f"data file is empty (only whitespace): {path}")


def _builder_for(files: list[Path]) -> str:
    builders = {_BUILDERS.get(f.suffix.lower(), "text") for f in files}
    if len(builders) > 1:
        raise ValueError(f"data files mix formats ({', '.join(sorted(builders))}); use one format per run")
    return builders.pop()


def _text_only(ds, text_column: str, source: str):
    """Keep only the text column, renamed to "text"; check that it exists and holds strings."""
    columns = ds.column_names
    if columns is None:  # a streaming dataset whose features are only known once read
        first = next(iter(ds), None)
        if first is None:
            raise ValueError(f"no documents in {source}")
        columns = list(first)
    if text_column not in columns:
        raise ValueError(
            f"text column {text_column!r} not found in {source}; its columns are: {', '.join(columns)}"
        )
    feature = (ds.features or {}).get(text_column)
    if feature is not None and getattr(feature, "dtype", None) not in ("string", "large_string", "null"):
        raise ValueError(f"column {text_column!r} in {source} holds {feature}, not text")
    ds = ds.select_columns([text_column])
    if text_column != "text":
        ds = ds.rename_column(text_column, "text")
    if isinstance(ds, datasets.Dataset) and len(ds) == 0:
        raise ValueError(f"no documents in {source}")
    return ds


# ----------------------------------------------------------------------------------------------
# tokenize, pack and cache


class PackedBlocks(torch.utils.data.Dataset):
    """Blocks [start, stop) of seq_len consecutive tokens from a flat token array.

    Item i is {"input_ids": int64[seq_len], "labels": int64[seq_len]} with labels equal to input_ids:
    Hugging Face causal LMs shift the labels themselves. A memmap is reopened lazily after pickling,
    so DataLoader workers share the file instead of each receiving a copy.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, start: int = 0, stop: int | None = None):
        self.seq_len, self.start = seq_len, start
        self.stop = len(tokens) // seq_len if stop is None else stop
        self._tokens = tokens
        self._memmap = (
            (tokens.filename, tokens.dtype.str, tokens.shape) if isinstance(tokens, np.memmap) else None
        )

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(self.block(i).astype(np.int64))
        return {"input_ids": ids, "labels": ids.clone()}

    def block(self, i: int) -> np.ndarray:
        """The raw tokens of block i (a view, in the cache's dtype)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"block {i} out of range for {len(self)} blocks")
        first = (self.start + i % len(self)) * self.seq_len
        return self.tokens[first : first + self.seq_len]

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """A stacked batch of blocks, e.g. `blocks.batch(batch_indices(...))`."""
        ids = torch.from_numpy(np.stack([self.block(i) for i in indices]).astype(np.int64))
        return {"input_ids": ids, "labels": ids.clone()}

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            filename, dtype, shape = self._memmap
            self._tokens = np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=shape)
        return self._tokens

    def __getstate__(self):
        state = dict(self.__dict__)
        if self._memmap is not None:
            state["_tokens"] = None
        return state


def build_token_cache(
    texts_dataset: datasets.Dataset,
    tokenizer,
    seq_len: int,
    cache_dir: str | os.PathLike,
    val_fraction: float = 0.05,
    num_proc: int | None = None,
    data_id: str | None = None,
) -> tuple[PackedBlocks, PackedBlocks]:
    """Tokenize a "text" dataset into a cached flat token file; return (train, val) blocks.

    Each document becomes ids + [EOS]; documents are concatenated in dataset order and cut into
    seq_len blocks. The last `val_fraction` of the blocks (at least one) is the validation part;
    it is cut at load time, so changing val_fraction reuses the cache. The key hashes `data_id`
    (default: the dataset's fingerprint, which covers file paths and modification times or the
    hub name/config/split/revision), the tokenizer's full definition, and seq_len.
    With several processes, build on the main process first; concurrent builders are still safe.
    """
    if isinstance(texts_dataset, datasets.IterableDataset):
        raise TypeError("build_token_cache needs a map-style dataset; use StreamingBlocks for streaming")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token, which packing needs to separate documents")
    identity = {
        "version": CACHE_VERSION,
        "data": data_id or texts_dataset._fingerprint,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "seq_len": seq_len,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    cache_dir = Path(cache_dir)
    path = cache_dir / key
    if _read_meta(path) is None:
        _write_cache(texts_dataset, tokenizer, path, identity, num_proc)
    meta = _read_meta(path)
    tokens = np.memmap(
        path / "tokens.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["n_tokens"],)
    )
    return split_blocks(tokens, seq_len, val_fraction)


def split_blocks(tokens: np.ndarray, seq_len: int, val_fraction: float) -> tuple[PackedBlocks, PackedBlocks]:
    """Whole seq_len blocks; the last val_fraction of them (at least one if > 0) for validation."""
    n_blocks = len(tokens) // seq_len
    n_val = max(1, round(n_blocks * val_fraction)) if val_fraction > 0 else 0
    if n_blocks - n_val < 1:
        raise ValueError(
            f"not enough text: {len(tokens)} tokens make {n_blocks} block(s) of seq_len {seq_len}, "
            f"need at least {n_val + 1} ({n_val} for validation)"
        )
    n_train = n_blocks - n_val
    return PackedBlocks(tokens, seq_len, 0, n_train), PackedBlocks(tokens, seq_len, n_train, n_blocks)


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything that decides the ids: the whole tokenizer.json when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    spec += f"|{type(tokenizer).__name__}|{tokenizer.eos_token_id}|{len(tokenizer)}"
    return hashlib.sha256(spec.encode()).hexdigest()


def _tokenize_batch(batch, tokenizer):
    return {"input_ids": encode_documents(tokenizer, batch["text"])}


def _write_cache(ds: datasets.Dataset, tokenizer, path: Path, identity: dict, num_proc: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    try:
        t0 = time.time()
        num_proc = min(num_proc or os.cpu_count() or 1, len(ds))
        if num_proc > 1:  # forked workers are the parallelism; tokenizers' own threads would deadlock them
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        mapped = ds.map(
            _tokenize_batch,
            fn_kwargs={"tokenizer": tokenizer},
            batched=True,
            batch_size=64,
            num_proc=num_proc if num_proc > 1 else None,
            remove_columns=ds.column_names,
            features=datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))}),
            cache_file_name=str(tmp / "tokenized.arrow"),  # inside tmp: deleted with it
            new_fingerprint=path.name,
            desc="tokenizing",
        )
        dtype = np.uint16 if len(tokenizer) <= 1 << 16 else np.uint32
        n_tokens = n_docs = 0
        with open(tmp / "tokens.bin", "wb") as f:
            for table in mapped.with_format("arrow").iter(batch_size=1024):
                flat = pc.list_flatten(table["input_ids"]).to_numpy()
                f.write(flat.astype(dtype).tobytes())
                n_tokens, n_docs = n_tokens + len(flat), n_docs + table.num_rows
        del mapped
        if n_tokens == n_docs:
            raise ValueError("no text: every document is empty")
        meta = {
            **identity,
            "dtype": np.dtype(dtype).name,
            "n_tokens": n_tokens,
            "n_docs": n_docs,
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
            "seconds": round(time.time() - t0, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        for f in tmp.glob("tokenized*.arrow"):
            f.unlink()
        if path.exists() and _read_meta(path) is None:
            shutil.rmtree(path)  # a broken folder under the final name (not made by us): replace it
        try:
            os.replace(tmp, path)
        except OSError:
            if _read_meta(path) is None:  # anything but "another process finished it first"
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_meta(path: Path) -> dict | None:
    """The cache's meta, or None unless the folder is complete and consistent."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        size = (path / "tokens.bin").stat().st_size
    except (OSError, ValueError):
        return None
    return meta if size == meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize else None


# ----------------------------------------------------------------------------------------------
# deterministic sampling


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_blocks: int, seed: int, epoch: int) -> np.ndarray:
    perm = np.random.default_rng((seed, epoch)).permutation(num_blocks)
    perm.flags.writeable = False
    return perm


def batch_indices(
    num_blocks: int, seed: int, step: int, batch_size: int, rank: int = 0, world_size: int = 1
) -> list[int]:
    """Block indices of `rank`'s share of the global batch at `step`.

    Sample g = step * batch_size + j of the run is block permutation(seed, epoch)[g % num_blocks]
    with epoch = g // num_blocks, so any step's batch is a pure function of (seed, step, batch_size):
    a run resumed at step k sees exactly the batches of the uninterrupted run. batch_size is the
    global batch; rank r takes the r-th contiguous slice, so the union over ranks is the same set
    of samples for any world_size.
    """
    if num_blocks < 1:
        raise ValueError("no blocks to sample from")
    if batch_size % world_size:
        raise ValueError(f"global batch size {batch_size} does not split over {world_size} processes")
    per_rank = batch_size // world_size
    g = np.arange(per_rank) + step * batch_size + rank * per_rank
    epochs, pos = np.divmod(g, num_blocks)
    out = np.empty(per_rank, dtype=np.int64)
    for epoch in np.unique(epochs):
        sel = epochs == epoch
        out[sel] = _epoch_permutation(num_blocks, seed, int(epoch))[pos[sel]]
    return out.tolist()


class StepBatchSampler(torch.utils.data.Sampler):
    """batch_sampler for a DataLoader: yields batch_indices(...) for steps start_step, start_step+1, ...

    Give it this rank's rank/world_size and do not let accelerate re-shard it.
    """

    def __init__(self, num_blocks, seed, batch_size, rank=0, world_size=1, start_step=0, num_steps=None):
        self.args = (num_blocks, seed)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.start_step, self.num_steps = start_step, num_steps

    def __iter__(self) -> Iterator[list[int]]:
        steps = (
            itertools.count(self.start_step)
            if self.num_steps is None
            else range(self.start_step, self.num_steps)
        )
        for step in steps:
            yield batch_indices(*self.args, step, self.batch_size, self.rank, self.world_size)

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("an endless StepBatchSampler has no length")
        return max(0, self.num_steps - self.start_step)


# ----------------------------------------------------------------------------------------------
# streaming


class StreamingBlocks(torch.utils.data.IterableDataset):
    """Packs a streaming text dataset (or a list of str / {"text": str}) into blocks on the fly.

    `position` = {"doc": i, "offset": j}: the next token to pack is token j of document i's ids + EOS.
    Resuming from a saved position skips i documents without tokenizing them and drops j tokens, so
    the blocks are exactly those the uninterrupted run would have seen. Blocks come in stream order
    (shuffle the dataset itself, with a fixed seed, if wanted). Each rank reads the whole stream and
    keeps one block of every world_size, so a global step holds the same blocks for any world size,
    and after each group all ranks hold the same position. The first `val_blocks` blocks of the
    stream are held out as `self.val`; training starts after them. Iterate in the main process
    (num_workers=0), or the position of a worker would never reach the trainer.
    """

    def __init__(
        self,
        texts: Iterable,
        tokenizer,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        position: dict | None = None,
        val_blocks: int = 0,
        docs_per_batch: int = 64,
    ):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token, which packing needs to separate documents")
        if iter(texts) is texts:
            raise TypeError(
                "StreamingBlocks reads its source more than once: give a dataset or a list, not an iterator"
            )
        self.texts, self.tokenizer, self.seq_len = texts, tokenizer, seq_len
        self.rank, self.world_size, self.docs_per_batch = rank, world_size, docs_per_batch
        start, held_out = {"doc": 0, "offset": 0}, []
        for block, after in itertools.islice(self._blocks(start), val_blocks):
            held_out.append(block)
            start = after
        if len(held_out) < val_blocks:
            raise ValueError(f"not enough text: the stream holds fewer than {val_blocks} validation blocks")
        tokens = np.concatenate(held_out) if held_out else np.zeros(0, dtype=np.int64)
        self.val = PackedBlocks(tokens, seq_len)
        self.position = dict(position) if position is not None else dict(start)

    def state_dict(self) -> dict:
        return dict(self.position)

    def load_state_dict(self, state: dict) -> None:
        self.position = {"doc": int(state["doc"]), "offset": int(state["offset"])}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        blocks = self._blocks(self.position)
        while True:
            group = list(itertools.islice(blocks, self.world_size))
            if len(group) < self.world_size:
                return  # the stream ended; a partial group is dropped on every rank alike
            self.position = group[-1][1]
            ids = torch.from_numpy(group[self.rank][0].astype(np.int64))
            yield {"input_ids": ids, "labels": ids.clone()}

    def _blocks(self, position: dict) -> Iterator[tuple[np.ndarray, dict]]:
        """(block, position after it) from `position` on."""
        next_doc, drop = position["doc"], position["offset"]
        docs = self._docs_from(next_doc)
        segments: deque = deque()  # [doc index, offset of its first token, tokens]; never empty arrays
        buffered = 0
        while True:
            while buffered < self.seq_len:
                batch = list(itertools.islice(docs, self.docs_per_batch))
                if not batch:
                    return
                for ids in encode_documents(self.tokenizer, batch):
                    ids = np.asarray(ids[drop:], dtype=np.int64)
                    if len(ids):
                        segments.append([next_doc, drop, ids])
                        buffered += len(ids)
                    next_doc, drop = next_doc + 1, 0
            block, filled = np.empty(self.seq_len, dtype=np.int64), 0
            while filled < self.seq_len:
                seg = segments[0]
                take = min(len(seg[2]), self.seq_len - filled)
                block[filled : filled + take] = seg[2][:take]
                seg[1], seg[2], filled = seg[1] + take, seg[2][take:], filled + take
                if len(seg[2]) == 0:
                    segments.popleft()
            buffered -= self.seq_len
            after = (
                {"doc": segments[0][0], "offset": segments[0][1]}
                if segments
                else {"doc": next_doc, "offset": 0}
            )
            yield block, after

    def _docs_from(self, doc: int) -> Iterator[str]:
        if isinstance(self.texts, datasets.IterableDataset):
            rows = iter(self.texts.skip(doc)) if doc else iter(self.texts)
        else:
            rows = itertools.islice(iter(self.texts), doc, None)
        for row in rows:
            yield row["text"] if isinstance(row, dict) else row


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
