"""``python -m npctr predict MODEL --input FILE --output FILE``: score a file with a saved model.

Input ``.npz``, ``.csv`` or ``.parquet`` with the model's feature names as columns (a history
as one list-valued column or as ``name_0 .. name_{T-1}``; see :mod:`npctr.tabular`). The file
is read ``--batch-size`` rows at a time (CSV and parquet chunk by chunk, each ``.npz`` member
streamed from the archive), each chunk scored with ``model.predict``, and the scores written
as they come, one ``score`` per input row in input order, to ``.csv``, ``.parquet`` or
``.npz`` (key ``score``, shape ``(rows,)``) by the output's extension. Memory is bounded by
the chunk, not the file. The output appears only when every row was scored (written to a
temporary file, renamed at the end).

A progress bar goes to stderr when it is a terminal (``--no-progress`` / ``--quiet`` turn it
off). Exit status: 0 done; 1 the data or the model file is bad (the message names the row,
0-based from the first data row, and the column); 2 the command line is wrong (an option, a
file or output directory that does not exist, an unknown extension); 130 interrupted (Ctrl-C;
no output is left behind). Parquet needs pyarrow (``npctr[parquet]``).
"""
import argparse
import csv
import io
import os
import sys
import tempfile
import time
import zipfile
import zlib
from itertools import islice

import numpy as np

from .tabular import FeatureDecoder, TableError, ragged_from_arrow

FORMATS = (".npz", ".csv", ".parquet")
SCORE = "score"


class UsageError(Exception):
    """The command line is wrong (exit status 2)."""


def file_format(path, what):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    ext = ".parquet" if ext == ".pq" else ext
    if ext not in FORMATS:
        raise UsageError(f"{what} {os.fspath(path)!r}: unknown format {ext or '(no extension)'!r}; "
                         f"expected one of {', '.join(FORMATS)}")
    return ext


def _pyarrow(what):
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise UsageError(f"{what} needs pyarrow: pip install 'npctr[parquet]'") from exc
    return pq


# -- readers: ``columns``, ``n_rows`` (None if unknown) and ``chunks(wanted, rows)`` --------------
_DAMAGE = (zipfile.BadZipFile, EOFError, zlib.error, ValueError)   # ValueError: a bad .npy header


class NpzReader:
    """Streams each wanted ``.npy`` member of the archive, ``rows`` rows at a time (no pickles)."""

    def __init__(self, path):
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise TableError(f"{os.fspath(path)!r} is not a readable .npz archive: {exc}") from exc
        self._members, self.n_rows = {}, None
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                continue
            try:
                with self._zip.open(info) as f:
                    shape, fortran, dtype = self._header(f, info.filename)
            except TableError:
                self._zip.close()
                raise
            except _DAMAGE as exc:
                self._zip.close()
                raise TableError(f"{os.fspath(path)!r}: the .npz archive is damaged: {type(exc).__name__}: "
                                 f"{exc}") from exc
            name = info.filename[:-4]
            if not shape:
                raise TableError(f"array {name!r} is a scalar, expected one row per sample", column=name)
            if self.n_rows is not None and shape[0] != self.n_rows:
                raise TableError(f"array {name!r} has {shape[0]} rows, the others {self.n_rows}", column=name)
            self.n_rows = shape[0]
            self._members[name] = (info, shape, fortran, dtype)
        self.columns = list(self._members)
        self.n_rows = self.n_rows or 0

    @staticmethod
    def _header(f, name):
        fmt = np.lib.format
        version = fmt.read_magic(f)
        shape, fortran, dtype = (fmt.read_array_header_1_0(f) if version == (1, 0)
                                 else fmt.read_array_header_2_0(f))
        if dtype.hasobject:
            raise TableError(f"array {name[:-4]!r} holds Python objects (pickled); refusing to load it: "
                             "store numbers (a history as a 2-D array)", column=name[:-4])
        return shape, fortran, dtype

    def chunks(self, wanted, rows):
        try:
            yield from self._chunks(wanted, rows)
        except TableError:
            raise
        except _DAMAGE as exc:
            raise TableError(f"the .npz archive is damaged: {type(exc).__name__}: {exc}") from exc

    def _chunks(self, wanted, rows):
        files, row_bytes = {}, {}
        try:
            for name in wanted:
                info, shape, fortran, dtype = self._members[name]
                f = self._zip.open(info)
                self._header(f, info.filename)
                if fortran and len(shape) > 1:
                    # column-major on disk: rows are not contiguous; read this member whole
                    files[name] = np.asfortranarray(np.frombuffer(f.read(), dtype=dtype).reshape(
                        shape[::-1]).T)
                    f.close()
                else:
                    files[name] = f
                row_bytes[name] = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
            for row0 in range(0, self.n_rows, rows):
                n = min(rows, self.n_rows - row0)
                table = {}
                for name in wanted:
                    info, shape, _, dtype = self._members[name]
                    source = files[name]
                    if isinstance(source, np.ndarray):
                        table[name] = source[row0:row0 + n]
                        continue
                    data = source.read(n * row_bytes[name])
                    if len(data) != n * row_bytes[name]:
                        raise TableError(f"array {name!r} is truncated at row {row0}", row0, name)
                    table[name] = np.frombuffer(data, dtype=dtype).reshape((n,) + tuple(shape[1:]))
                yield row0, table
        finally:
            for f in files.values():
                if not isinstance(f, np.ndarray):
                    f.close()

    def position(self, rows_done):
        return rows_done, self.n_rows

    def close(self):
        self._zip.close()


class CsvReader:
    """The stdlib CSV reader, ``rows`` rows at a time; the first line names the columns."""

    def __init__(self, path):
        self._raw = open(path, "rb")
        self._size = os.fstat(self._raw.fileno()).st_size
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")
        self._rows = csv.reader(self._text)
        try:
            self.columns = next(self._rows)
        except StopIteration:
            raise TableError(f"{os.fspath(path)!r} is empty: expected a header line naming the columns") from None
        self.n_rows = None

    def chunks(self, wanted, rows):
        index = {c: self.columns.index(c) for c in wanted}
        width = len(self.columns)
        row0 = 0
        while True:
            try:
                block = list(islice(self._rows, rows))
            except csv.Error as exc:
                raise TableError(f"line {self._rows.line_num}: not valid CSV: {exc}") from exc
            if not block:
                return
            for i, r in enumerate(block):
                if len(r) != width:
                    raise TableError(f"row {row0 + i} (line {self._rows.line_num - len(block) + i + 1}): "
                                     f"{len(r)} fields, the header has {width}", row0 + i)
            yield row0, {c: np.array([r[j] for r in block], dtype=object) for c, j in index.items()}
            row0 += len(block)

    def position(self, rows_done):
        # bytes, as the row count is unknown until the end
        return self._raw.tell(), self._size

    def close(self):
        self._text.close()


class ParquetReader:
    """``pyarrow.parquet.ParquetFile.iter_batches``: ``rows`` rows of the wanted columns at a time."""

    def __init__(self, path):
        pq = _pyarrow("reading parquet")
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:        # pyarrow raises ArrowInvalid, OSError, ...
            raise TableError(f"{os.fspath(path)!r} is not a readable parquet file: {exc}") from exc
        self.columns = list(self._file.schema_arrow.names)
        self.n_rows = self._file.metadata.num_rows

    def chunks(self, wanted, rows):
        row0 = 0
        for batch in self._file.iter_batches(batch_size=rows, columns=list(wanted)):
            yield row0, {c: ragged_from_arrow(batch.column(c), row0, c) for c in wanted}
            row0 += batch.num_rows

    def position(self, rows_done):
        return rows_done, self.n_rows

    def close(self):
        self._file.close()


READERS = {".npz": NpzReader, ".csv": CsvReader, ".parquet": ParquetReader}


# -- writers: ``write(scores)``, then ``commit()`` (rename into place) or ``abort()`` ---------------
class _Writer:
    def __init__(self, path):
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix="." + os.path.basename(self.path) + ".", suffix=".tmp",
                                         dir=directory)
        os.close(fd)

    def commit(self):
        self._close()
        os.replace(self._tmp, self.path)

    def abort(self):
        try:
            self._close()
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


class CsvWriter(_Writer):
    def __init__(self, path, dtype):
        super().__init__(path)
        self._f = open(self._tmp, "w", newline="")
        self._f.write(SCORE + "\n")
        self._fmt = "%.9g" if dtype == np.float32 else "%.17g"     # round-trips exactly

    def write(self, scores):
        np.savetxt(self._f, scores, fmt=self._fmt)

    def _close(self):
        self._f.close()


class ParquetWriter(_Writer):
    def __init__(self, path, dtype):
        pq = _pyarrow("writing parquet")          # before the temporary file exists
        import pyarrow as pa
        super().__init__(path)
        self._pa = pa
        self._schema = pa.schema([(SCORE, pa.from_numpy_dtype(dtype))])
        self._w = pq.ParquetWriter(self._tmp, self._schema)

    def write(self, scores):
        self._w.write_table(self._pa.table({SCORE: scores}, schema=self._schema))

    def _close(self):
        self._w.close()


class NpzWriter(_Writer):
    """Scores go to a raw temporary file; ``commit`` writes ``score.npy`` (shape known then) into the
    archive, copying the raw bytes in blocks."""

    def __init__(self, path, dtype):
        super().__init__(path)
        self._dtype = np.dtype(dtype)
        self._raw = tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(self.path)))
        self._n = 0

    def write(self, scores):
        self._raw.write(np.ascontiguousarray(scores, dtype=self._dtype).tobytes())
        self._n += len(scores)

    def _close(self):
        raw, self._raw = self._raw, None
        if raw is None:
            return
        try:
            raw.seek(0)
            with zipfile.ZipFile(self._tmp, "w", allowZip64=True) as z, \
                    z.open(SCORE + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {
                    "descr": np.lib.format.dtype_to_descr(self._dtype), "fortran_order": False,
                    "shape": (self._n,)})
                for block in iter(lambda: raw.read(1 << 20), b""):
                    member.write(block)
        finally:
            raw.close()

    def abort(self):
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


WRITERS = {".npz": NpzWriter, ".csv": CsvWriter, ".parquet": ParquetWriter}


class Progress:
    """A one-line progress bar on a terminal stream (nothing otherwise)."""

    width = 30

    def __init__(self, stream, enabled=True, min_interval=0.2):
        isatty = getattr(stream, "isatty", None)
        self.stream, self.enabled = stream, bool(enabled and isatty and isatty())
        self.min_interval, self._last, self._start = min_interval, 0.0, time.perf_counter()

    def update(self, rows, done, total, final=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self._last < self.min_interval:
            return
        self._last = now
        rate = rows / max(now - self._start, 1e-9)
        fraction = min(done / total, 1.0) if total else 1.0
        filled = int(self.width * fraction)
        self.stream.write(f"\r[{'=' * filled}{'.' * (self.width - filled)}] {100 * fraction:5.1f}% "
                          f"{rows} rows, {rate:,.0f} rows/s\033[K" + ("\n" if final else ""))
        self.stream.flush()


def score_file(model, input_path, output_path, batch_size=4096, progress=None):
    """Score ``input_path`` with ``model`` into ``output_path``; return the number of rows.

    Raises :class:`npctr.tabular.TableError` (a ``ValueError``) naming the row and column of
    the first bad value; the output is then not written.
    """
    reader = READERS[file_format(input_path, "input")](input_path)
    writer = None
    try:
        decoder = FeatureDecoder(model, reader.columns)
        writer = WRITERS[file_format(output_path, "output")](output_path, model.dtype or np.float64)
        rows = 0
        for row0, table in reader.chunks(decoder.columns, batch_size):
            x = decoder.decode(table, row0)
            n = len(next(iter(x.values())))
            if n:
                writer.write(model.predict(x, batch_size=batch_size).reshape(-1))
            rows += n
            if progress is not None:
                progress.update(rows, *reader.position(rows))
        if progress is not None:
            progress.update(rows, *reader.position(rows), final=True)
        writer.commit()
        writer = None
        return rows
    finally:
        if writer is not None:
            writer.abort()
        reader.close()


def parser():
    p = argparse.ArgumentParser(prog="python -m npctr predict",
                                description="Score a table (.npz, .csv, .parquet) with a saved npctr model.")
    p.add_argument("model", help="model file written by model.save / npctr.save_model")
    p.add_argument("--input", "-i", required=True, help="rows to score: .npz, .csv or .parquet")
    p.add_argument("--output", "-o", required=True, help="where the scores go: .csv, .parquet or .npz")
    p.add_argument("--batch-size", type=int, default=4096, help="rows read and scored at a time (default 4096)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary line")
    return p


def main(argv=None):
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:          # argparse: --help (0) or a usage error (2)
        return exc.code
    err = sys.stderr
    try:
        if args.batch_size <= 0:
            raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}")
        for path, what in ((args.model, "model"), (args.input, "input")):
            if not os.path.isfile(path):
                raise UsageError(f"{what} file {path!r} does not exist")
        file_format(args.input, "input")
        file_format(args.output, "output")
        out_dir = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(out_dir):
            raise UsageError(f"the output's directory {out_dir!r} does not exist")
        from ..io import load_model
        model = load_model(args.model)
        start = time.perf_counter()
        progress = Progress(err, enabled=not (args.no_progress or args.quiet))
        rows = score_file(model, args.input, args.output, args.batch_size, progress)
    except UsageError as exc:
        print(f"npctr predict: {exc}", file=err)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"npctr predict: error: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print("\nnpctr predict: interrupted; no output written", file=err)
        return 130
    if not args.quiet:
        print(f"scored {rows} rows in {time.perf_counter() - start:.2f}s -> {args.output}", file=err)
    return 0
