r"""Row blocks over the cores: how the ops' large passes use both cores of a training step.

NumPy runs each ufunc, and each GEMM of a single-threaded OpenBLAS, on one core, and releases
the GIL inside it. A pass whose rows are independent (element-wise work, ``x W``) can therefore
be cut into blocks of rows computed by several threads into one output. This module holds that
device and nothing else: callers pass ``fn(lo, hi)`` computing rows ``lo:hi`` of their own
equation.

* :func:`rows`: element-wise passes, one block per thread. Every element gets the same value
  whatever the blocks, so the cut may depend on the threads.
* :func:`gemm_blocks`: products ``x W``. BLAS may round a row differently at another place in
  a GEMM (its kernels treat the last rows of a block apart), so the cut is a plan of the row
  count alone (:func:`gemm_plan`), the same with any number of threads.
* :func:`summed`: reductions over rows that are products (weight gradients ``x^T dy``): the
  plan's blocks' partial products, added in block order.
* :func:`each`: independent blocks given by the caller (Adam's cache-sized blocks).

So results never depend on the number of threads (``tests/test_blocks.py``: bit for bit with
1, 2 and 3). Handing a block to another thread costs ~50 us on a 2-core VM (waking it, then the
GIL), so a pass of less than ``MIN_ELEMENTS`` element-passes, or a GEMM of fewer than
``MIN_GEMM_ROWS`` rows, stays on the calling thread; so does every pass of a thread already
working in parallel (a pool worker, the Predictor's chunks: :func:`serial`), and every pass
while OpenBLAS runs several threads (its busy-waiting threads would compete for the cores; the
Trainer, the Predictor and ``single_threaded_blas`` run it with one). ``NPCTR_NUM_THREADS`` or
:func:`set_num_threads` sets the threads (default: the usable cores). Measurements:
``docs/performance.md``.
"""
import os
import threading

import numpy as np

from .._blas import blas_threads

#: element-wise work below this stays on the calling thread. Handing a block over costs ~45 us
#: on a 2-core VM (waking a thread, then the GIL), and a second core speeds memory-bound passes
#: little: measured (benchmarks/bench_blocks.py) one per-feature multiply over 10^6 float32
#: values 1.4x slower in two blocks, a sigmoid (four passes, one an exp) over 0.5 * 10^6 values
#: 1.15x slower and over 10^6 1.4x faster. ``work`` counts elements times passes (an exp or a
#: broadcast pass as one more), so this bound splits the latter alone
MIN_ELEMENTS = 3_000_000
#: a GEMM of fewer rows is one product; larger ones are cut into blocks of at most
#: ``GEMM_BLOCK_ROWS`` rows, their number a multiple of ``GEMM_BLOCKS_MULTIPLE`` (so that 2 or 4
#: threads get equal work): a plan of the row count alone (see the module docstring)
MIN_GEMM_ROWS = 1024
GEMM_BLOCK_ROWS = 4096
GEMM_BLOCKS_MULTIPLE = 4

_local = threading.local()


def usable_cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _threads_from_environment():
    value = os.environ.get("NPCTR_NUM_THREADS", "")
    try:
        n = int(value)
    except ValueError:
        n = 0
    return n if n > 0 else usable_cores()


_threads = _threads_from_environment()


def num_threads():
    """The threads the ops' large passes use (``NPCTR_NUM_THREADS``, default the usable cores)."""
    return _threads


def set_num_threads(n):
    """Use ``n`` threads (``n >= 1``) for the ops' large passes; 1: the calling thread only.
    Results do not depend on it."""
    global _threads
    if type(n) is not int or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    _threads = n


class serial:
    """Context manager: the ops called by this thread inside stay on it (a thread that is already
    one of several working in parallel, such as the Predictor's chunk workers)."""

    def __enter__(self):
        self._previous = getattr(_local, "serial", False)
        _local.serial = True
        return self

    def __exit__(self, *exc):
        _local.serial = self._previous
        return False


def _parallel():
    """Whether this thread's ops may fan out: more than one thread, not inside a parallel region,
    and OpenBLAS single-threaded (as the Trainer and the Predictor run it): OpenBLAS's own
    threads, which busy-wait after each product, would otherwise compete for the same cores."""
    return _threads > 1 and not getattr(_local, "serial", False) and blas_threads() == 1


def fans_out(work):
    """Whether an element-wise pass of ``work`` element-passes (see :func:`rows`) started on this
    thread now would be cut over the cores."""
    return work >= MIN_ELEMENTS and _parallel()


def _in_order(fn, bounds):
    for lo, hi in bounds:
        fn(lo, hi)


def _in_blocks(fn, bounds):
    """``fn`` on every block: on the pool when this thread may fan out, else in order (the same
    blocks either way: the plan does not depend on the threads)."""
    if _parallel():
        run(fn, bounds)
    else:
        _in_order(fn, bounds)


# -- the pool ---------------------------------------------------------------------------------
class _Job:
    """The blocks of one call: each thread taking part pulls the next block until none is left.
    ``errstate``: the caller's floating-point error handling, which the workers apply too (NumPy
    keeps it per thread: a worker would otherwise warn where the caller ignores, or go on where
    it raises)."""
    __slots__ = ("fn", "bounds", "next", "take", "error", "errstate")

    def __init__(self, fn, bounds):
        self.fn, self.bounds, self.next, self.error = fn, bounds, 0, None
        self.take = threading.Lock()
        self.errstate = np.geterr()

    def work(self):
        while True:
            with self.take:
                i = self.next
                self.next += 1
            if i >= len(self.bounds):
                return
            self.fn(*self.bounds[i])


class _Pool:
    """Daemon workers taking jobs from one queue (``SimpleQueue``: a C queue, the cheapest
    hand-over the standard library has)."""

    def __init__(self):
        import queue
        self.queue = queue.SimpleQueue()
        self.workers = 0
        self.lock = threading.Lock()

    def ensure(self, n):
        with self.lock:
            while self.workers < n:
                threading.Thread(target=self._work, name=f"npctr-ops-{self.workers}", daemon=True).start()
                self.workers += 1

    def _work(self):
        _local.serial = True               # a worker's own ops never fan out again
        while True:
            job, done = self.queue.get()
            try:
                with np.errstate(**job.errstate):
                    job.work()
            except BaseException as error:   # noqa: B902 - re-raised in the caller
                job.error = error
            done.release()


_pool = _Pool()


def run(fn, bounds):
    """``fn(lo, hi)`` for every ``(lo, hi)`` of ``bounds``, on the calling thread and up to
    ``num_threads() - 1`` pool workers, each taking the next block when free; returns when all
    are done (re-raising a worker's error)."""
    helpers = min(len(bounds), _threads) - 1
    if helpers < 1:
        _in_order(fn, bounds)
        return
    _pool.ensure(helpers)
    job = _Job(fn, bounds)
    waits = []
    for _ in range(helpers):
        done = threading.Lock()
        done.acquire()
        _pool.queue.put((job, done))
        waits.append(done)
    try:
        with serial():                      # the caller's own blocks do not fan out again
            job.work()
    finally:
        for done in waits:
            done.acquire()
    if job.error is not None:
        raise job.error


def even_bounds(n, parts):
    """``parts`` contiguous ``(lo, hi)`` covering ``0..n``, as equal as can be."""
    step, extra = divmod(n, parts)
    bounds, lo = [], 0
    for i in range(parts):
        hi = lo + step + (i < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def rows(fn, n_rows, work):
    """``fn(lo, hi)`` over rows ``0..n_rows``: one block per thread when ``work`` (elements times
    the passes over them, an ``exp`` counting as about four) reaches ``MIN_ELEMENTS``, else
    ``fn(0, n_rows)`` on the calling thread."""
    if n_rows < 2 or not fans_out(work):
        fn(0, n_rows)
        return
    run(fn, even_bounds(n_rows, min(_threads, n_rows)))


def gemm_plan(n_rows):
    """The row blocks of a GEMM (or a reduction) over ``n_rows >= MIN_GEMM_ROWS`` rows: at most
    ``GEMM_BLOCK_ROWS`` rows each, their number a multiple of ``GEMM_BLOCKS_MULTIPLE``."""
    parts = -(-n_rows // GEMM_BLOCK_ROWS)                                   # ceil
    parts = -(-parts // GEMM_BLOCKS_MULTIPLE) * GEMM_BLOCKS_MULTIPLE        # rounded up
    return even_bounds(n_rows, parts)


def gemm_blocks(fn, n_rows):
    """``fn(lo, hi)`` over the row blocks of a GEMM of ``n_rows`` rows (the plan above, whatever
    the threads), run in parallel when threads allow."""
    if n_rows < MIN_GEMM_ROWS:
        fn(0, n_rows)
        return
    _in_blocks(fn, gemm_plan(n_rows))


def summed(fn, n_rows):
    """``sum_b fn(lo_b, hi_b)`` over the GEMM plan's row blocks of a reduction over ``n_rows`` rows
    (a weight gradient ``x^T dy``): the blocks' partial results in parallel, added
    in block order, so the sum does not depend on the threads. ``fn(0, n_rows)`` when small."""
    if n_rows < MIN_GEMM_ROWS:
        return fn(0, n_rows)
    bounds = gemm_plan(n_rows)
    partial = [None] * len(bounds)
    index = {lo: i for i, (lo, _) in enumerate(bounds)}

    def block(lo, hi):
        partial[index[lo]] = fn(lo, hi)

    _in_blocks(block, bounds)
    total = partial[0]
    for p in partial[1:]:
        total += p
    return total


def elementwise(fn, out, *inputs, passes=1):
    """``fn(out_part, *input_parts)`` (``passes`` passes over the elements) over blocks of rows of
    the arrays (all of ``out``'s shape and C-contiguous, viewed as ``(rows, last axis)``; else
    ``fn`` on the whole arrays): an element-wise expression written once, computed block by block
    over the cores. Returns ``out``."""
    if out.ndim < 2 or not (out.flags.c_contiguous and all(a.shape == out.shape and a.flags.c_contiguous
                                                            for a in inputs)):
        fn(out, *inputs)
        return out
    h = out.shape[-1]
    out2, in2 = out.reshape(-1, h), [a.reshape(-1, h) for a in inputs]
    rows(lambda lo, hi: fn(out2[lo:hi], *(a[lo:hi] for a in in2)), out2.shape[0], passes * out.size)
    return out


def each(fn, bounds, work):
    """``fn(lo, hi)`` for every ``(lo, hi)`` of ``bounds`` (independent blocks of an element-wise
    update): on the pool, each thread taking the next block, when ``work`` (as in :func:`rows`)
    reaches ``MIN_ELEMENTS``; else in order on this thread."""
    if len(bounds) > 1 and fans_out(work):
        run(fn, bounds)
    else:
        _in_order(fn, bounds)
