"""Tokenizers: load one by name/path, or train a LLaMA-style SentencePiece BPE on the training text.

Either way the result is a Hugging Face fast tokenizer, so `tok.save_pretrained(export)` followed by
`AutoTokenizer.from_pretrained(export)` gives back the same ids.

Documents are packed as `ids + [EOS]` (no BOS): the EOS doubles as the document separator, so the
token stream is the same whichever tokenizer is used, and nothing is added behind our back (both
`add_bos_token` and `add_eos_token` are off; see `encode_documents`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

# Bump when the trainer options below change, so cached tokenizers are not reused by mistake.
_SPM_RECIPE = "spm-bpe-v1"
UNK, BOS, EOS = "<unk>", "<s>", "</s>"


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """AutoTokenizer.from_pretrained with one-line errors; the tokenizer must have an EOS token."""
    name = str(name_or_path)
    looks_local = os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name)
    if looks_local and not os.path.isdir(os.path.expanduser(name)):
        raise ValueError(f"tokenizer not found: {name} is not a directory")
    try:
        tok = AutoTokenizer.from_pretrained(os.path.expanduser(name) if looks_local else name)
    except Exception as e:  # OSError, ValueError, HTTP errors, ... all mean "cannot load it"
        raise ValueError(f"cannot load tokenizer {name!r}: {_first_line(e)}") from e
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {name!r} has no EOS token, which packing needs to separate documents")
    return tok


def check_vocab_fits(tokenizer: PreTrainedTokenizerBase, model_vocab_size: int) -> None:
    """A tokenizer id >= the model's vocab_size would index past the embedding table."""
    if len(tokenizer) > model_vocab_size:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {model_vocab_size}; "
            f"set the model's vocab_size to at least {len(tokenizer)}"
        )


def encode_documents(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids of each document followed by EOS.

    split_special_tokens: a literal "</s>" in the raw text is text, not an EOS.
    """
    texts = [t or "" for t in texts]  # None (a missing value in a column) counts as an empty document
    ids = tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return [x + [eos] for x in ids]


def train_sentencepiece_bpe(
    texts: str | os.PathLike | list[str | os.PathLike] | Iterable[str],
    vocab_size: int,
    out_dir: str | os.PathLike,
    max_sentences: int = 2_000_000,
    num_threads: int | None = None,
) -> PreTrainedTokenizerFast:
    """Train (or reuse) a LLaMA-style SentencePiece BPE and return it as a HF fast tokenizer.

    `texts` is a file path, a list of file paths, or any other iterable of document strings (e.g.
    `(row["text"] for row in ds)`); a list of str is always read as paths. The result is cached in
    `out_dir/spm-bpe-<vocab_size>-<hash>/`, keyed by the training text's content and vocab_size, so a
    second call returns at once. The folder is a `save_pretrained` folder plus the raw `spm.model`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".tmp-spm-") as tmp:
        files, content_hash = _training_files(texts, Path(tmp))
        key = hashlib.sha256(f"{_SPM_RECIPE}|{content_hash}|{vocab_size}".encode()).hexdigest()[:16]
        final = out_dir / f"spm-bpe-{vocab_size}-{key}"
        if not (final / "tokenizer.json").is_file():
            build = Path(tmp) / "build"
            build.mkdir()
            _train_spm(files, vocab_size, build / "spm", max_sentences, num_threads or os.cpu_count() or 1)
            spm_to_hf(build / "spm.model").save_pretrained(build)
            (build / "spm.vocab").unlink(missing_ok=True)  # spm.model stays, for sentencepiece users
            try:
                os.replace(build, final)  # atomic: a killed run leaves only a .tmp-spm-* folder
            except OSError:
                if not (final / "tokenizer.json").is_file():  # lost a race to another process: fine
                    raise
    return AutoTokenizer.from_pretrained(final)


def spm_to_hf(model_file: str | os.PathLike) -> PreTrainedTokenizerFast:
    """Convert a SentencePiece model to a fast tokenizer that encodes like SentencePieceProcessor.

    transformers' SpmConverter follows the model's own normalizer spec (dummy prefix, whitespace
    escaping, byte fallback); legacy=True prefixes every text exactly as SentencePiece does.
    """
    from sentencepiece import sentencepiece_model_pb2
    from transformers.convert_slow_tokenizer import SpmConverter

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(model_file).read_bytes())
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto=proto, vocab=vocab, legacy=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
    )


def _train_spm(files: list[Path], vocab_size: int, prefix: Path, max_sentences: int, threads: int) -> None:
    import sentencepiece as spm

    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_lines(files),
            model_prefix=str(prefix),
            model_type="bpe",
            vocab_size=vocab_size,
            # LLaMA's choices: raw text kept as is (newlines, runs of spaces), digits split,
            # unknown characters as UTF-8 bytes, ids unk=0 bos=1 eos=2 and no pad.
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            character_coverage=0.99995,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            unk_piece=UNK,
            bos_piece=BOS,
            eos_piece=EOS,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            max_sentence_length=16384,
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:  # e.g. "Vocabulary size too high (5000). Please set it to a value <= 1234."
        raise ValueError(f"SentencePiece training failed (vocab_size={vocab_size}): {_first_line(e)}") from e


def _training_files(texts, tmp: Path) -> tuple[list[Path], str]:
    """The files to train on and a hash of their content; an iterator of texts is spilled to a file."""
    if isinstance(texts, (str, os.PathLike)):
        texts = [texts]
    h = hashlib.sha256()
    if isinstance(texts, (list, tuple)):
        files = [Path(p) for p in texts]
        if not files:
            raise ValueError("no files to train the tokenizer on")
        for f in files:
            if not f.is_file():
                raise ValueError(f"tokenizer training file not found: {f}")
            with open(f, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")  # file boundary
    else:
        files = [tmp / "train.txt"]
        with open(files[0], "w", encoding="utf-8") as out:
            for doc in texts:
                data = (doc or "") + "\n"
                out.write(data)
                h.update(data.encode("utf-8"))
    if all(f.stat().st_size == 0 for f in files):
        raise ValueError("no text to train the tokenizer on")
    return files, h.hexdigest()


def _lines(files: list[Path]) -> Iterator[str]:
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.rstrip("\r\n")
                if line:
                    yield line


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
