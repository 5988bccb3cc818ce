"""The OpenBLAS that NumPy loaded, through ctypes (standard library only; no threadpoolctl).

npctr's inference threads each run their own cache-sized GEMMs; if OpenBLAS also started
its own threads inside them, ``threads x BLAS threads`` would compete for the same cores
(and OpenBLAS's busy-waiting threads stall badly on a loaded machine: measured 4x slower,
docs/performance.md). So the Predictor runs its GEMMs with one BLAS thread and gets its
parallelism from its own thread pool, which also spreads the element-wise work.
"""
import ctypes
import threading

_LIB = None


def _openblas():
    """The loaded OpenBLAS library (a ``ctypes.CDLL``), or None if NumPy uses another BLAS."""
    global _LIB
    if _LIB is None:
        _LIB = False
        try:
            with open("/proc/self/maps") as f:
                paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
        except OSError:
            paths = ()
        for path in sorted(paths):
            try:
                _LIB = ctypes.CDLL(path)
                break
            except OSError:
                continue
    return _LIB or None


def _function(*names):
    lib = _openblas()
    for name in names:
        fn = getattr(lib, name, None) if lib is not None else None
        if fn is not None:
            return fn
    return None


def blas_threads():
    """Threads OpenBLAS currently uses (None if unknown)."""
    fn = _getter()
    return None if fn is None else fn()


class single_threaded_blas:
    """Context manager: OpenBLAS uses one thread inside, the previous count is restored after.

    OpenBLAS keeps one process-wide count in its pthreads builds (its
    ``openblas_set_num_threads_local`` changes that same count), so this is process-wide
    while any such block runs; nested and concurrent blocks share one count (the last to
    leave restores it). A no-op when NumPy's BLAS is not OpenBLAS.
    """
    _lock = threading.Lock()
    _depth = 0
    _saved = None

    def __enter__(self):
        cls = type(self)
        with cls._lock:
            if cls._depth == 0:
                get, set_ = _getter(), _setter()
                if get is not None and set_ is not None:
                    cls._saved = get()
                    if cls._saved != 1:
                        set_(1)
            cls._depth += 1
        return self

    def __exit__(self, *exc):
        cls = type(self)
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0 and cls._saved not in (None, 1):
                _setter()(cls._saved)
                cls._saved = None
        return False


def _getter():
    fn = _function("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                   "scipy_openblas_get_num_threads", "openblas_get_num_threads")
    if fn is not None:
        fn.restype = ctypes.c_int
    return fn


def _setter():
    fn = _function("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                   "scipy_openblas_set_num_threads", "openblas_set_num_threads")
    if fn is not None:
        fn.argtypes = [ctypes.c_int]
    return fn
