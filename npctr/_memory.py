"""glibc's malloc, tuned so the layers' large temporaries are reused instead of page-faulted in.

A layer's forward and backward allocate arrays of a few MiB (``(B*T, H)`` activations, their
gradients). glibc serves such blocks with ``mmap`` and returns them to the kernel on ``free``,
so every call touches fresh pages: measured 2,000-3,700 minor page faults per
``LocalActivationUnit`` call at batch 256, T 50 (about half its time; a loop of identical
training steps is spared by glibc's own adaptive threshold). With the mmap threshold at
``MMAP_THRESHOLD`` and the heap trimmed only above ``TRIM_THRESHOLD``, those blocks come from
the heap and are reused: no faults per call (``docs/performance.md``, "Memory allocation").

The cost: up to ``TRIM_THRESHOLD`` bytes of freed memory may stay with the process instead of
returning to the kernel. ``configure()`` runs once when npctr is imported; it does nothing when
``NPCTR_MALLOC_TUNING=0``, when the process already chose its own thresholds (glibc's
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables), or when the C
library is not glibc. Standard library only.
"""
import ctypes
import ctypes.util
import os

#: blocks up to this size come from the heap (glibc's default: 128 KiB, adjusted upwards as it goes)
MMAP_THRESHOLD = 64 * 2 ** 20
#: freed memory at the top of the heap is returned to the kernel only above this
TRIM_THRESHOLD = 128 * 2 ** 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3       # glibc's mallopt parameters (malloc.h)

#: whether configure() changed the thresholds (for tests and reports)
configured = False


def configure():
    """Raise glibc's mmap and trim thresholds once (see the module docstring); returns whether it did."""
    global configured
    if configured:
        return True
    if os.environ.get("NPCTR_MALLOC_TUNING", "1") == "0":
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version         # glibc only: musl and others have no such tuning
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    configured = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return configured
