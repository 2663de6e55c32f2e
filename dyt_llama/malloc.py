"""Keep freed host memory in the process, so CPU training does not fault its activations in at every step.

glibc hands blocks above its mmap threshold (128 KiB, raised on the fly up to 32 MiB) straight back to the
kernel when they are freed, and trims the heap's top. A training step frees and reallocates the same large
buffers (logits alone are batch x seq x vocab floats), so every step maps them again and the kernel zeroes
every page: on the tiny config that was 78,000 page faults and ~15% of a CPU step. Raising both thresholds
keeps the pages for reuse; the process's footprint stays at its peak, which the next step needs anyway.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; up to 2 GiB of free heap is kept


def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process. False where that is not glibc (or it refuses)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * KEEP_BYTES - 1))
