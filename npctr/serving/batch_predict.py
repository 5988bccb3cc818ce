"""``python -m npctr predict MODEL --input FILE --output FILE``: score a file with a saved model.

Input ``.npz``, ``.csv`` or ``.parquet`` with the model's feature names as columns (a history
as one list-valued column or as ``name_0 .. name_{T-1}``; a DIEN's negative histories may be left
out; see :mod:`npctr.tabular`). The file
is read ``--batch-size`` rows at a time (CSV and parquet chunk by chunk, each ``.npz`` member
streamed from the archive), each chunk scored with ``model.predict``, and the scores written
as they come, one ``score`` per input row in input order, to ``.csv``, ``.parquet`` or
``.npz`` (key ``score``, shape ``(rows,)``) by the output's extension. Memory is bounded by
the chunk, not the file. The output appears only when every row was scored (written to a
temporary file, renamed at the end).

The output is never the input or the model file (also through links: refused before anything
is read), and it is written as model files are (``npctr._files``): to a temp file next to it,
``.<name>.<pid>.<random>.tmp``, renamed over it when complete; a new file gets ``0o666`` minus the
umask, a replaced one keeps its mode, and a later run to the same output deletes the temp file a
killed run left behind.

A progress bar goes to stderr when it is a terminal (``--no-progress`` / ``--quiet`` turn it
off). Every failure is one line on stderr. Exit status: 0 done; 1 the data or the model file is
bad (the message names the row, 0-based from the first data row, and the column), or writing
failed (the message names the file); 2 the command line is wrong (an option, a file or output
directory that does not exist or is not a regular file, an output that is the input, an unknown
extension, a missing optional dependency); 130 interrupted (Ctrl-C; no output is left behind).
Parquet needs pyarrow (``npctr[parquet]``).
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

from .. import _files
from .._npz import read_npy_header
from .tabular import FeatureDecoder, TableError, ragged_from_arrow, check_columns

FORMATS = (".npz", ".csv", ".parquet")
SCORE = "score"
#: temp files of an output being written end so: ``.<name>.<pid>.<random>.tmp``
TEMP_SUFFIX = ".tmp"


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
        _files.check_regular(path, "input file")          # a FIFO would block zipfile forever
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise TableError(f"{os.fspath(path)!r} is not a readable .npz archive: {exc}") from exc
        self._members, self.n_rows = {}, None
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                continue
            if info.filename[:-4] in self._members:
                self._zip.close()
                raise TableError(f"{os.fspath(path)!r}: the archive lists array {info.filename[:-4]!r} twice",
                                 column=info.filename[:-4])
            try:
                self._check_sizes(info)
                with self._zip.open(info) as f:
                    shape, fortran, dtype, header_size = self._header(f, info.filename)
                nbytes = dtype.itemsize * int(np.prod(shape, dtype=object))
                if header_size + nbytes != info.file_size:
                    raise TableError(f"array {info.filename[:-4]!r}: its header announces shape {shape} of {dtype} "
                                     f"= {nbytes} bytes, the member holds {info.file_size - header_size}",
                                     column=info.filename[:-4])
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
    def _check_sizes(info):
        """Stored or deflated members only, whose sizes deflate could have produced (at most ~1032:1):
        what a member inflates to is then bounded by the file's own size."""
        name = info.filename[:-4]
        if info.compress_type == zipfile.ZIP_STORED:
            ok = info.compress_size == info.file_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            ok = info.file_size <= 1032 * info.compress_size + 1024
        else:
            raise TableError(f"array {name!r} is compressed with zip method {info.compress_type}; write the "
                             "archive with np.savez or np.savez_compressed", column=name)
        if not ok:
            raise TableError(f"array {name!r}: the archive's directory gives sizes ({info.compress_size} bytes "
                             f"stored, {info.file_size} unpacked) that no stored or deflated member has: the "
                             "archive is damaged or forged", column=name)

    @staticmethod
    def _header(f, name):
        def error(message):
            return TableError(f"array {name[:-4]!r}: {message}", column=name[:-4])
        shape, fortran, dtype, raw = read_npy_header(f.read, error)     # the header's length bounded first
        if dtype.hasobject:
            raise TableError(f"array {name[:-4]!r} holds Python objects (pickled); refusing to load it: "
                             "store numbers (a history as a 2-D array)", column=name[:-4])
        return shape, fortran, dtype, len(raw)

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
                    data = f.read(dtype.itemsize * int(np.prod(shape, dtype=object)))   # the checked size
                    if len(data) != dtype.itemsize * int(np.prod(shape, dtype=object)):
                        raise TableError(f"array {name!r} is truncated", column=name)
                    files[name] = np.asfortranarray(np.frombuffer(data, dtype=dtype).reshape(
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
        self.path = os.fspath(path)
        self._raw, self._size = _files.open_regular(path, "input file")
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark, which is not part of a name
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8-sig", newline="")
        self._rows = csv.reader(self._text)
        try:
            self.columns = self._next_rows(1)[0]
        except IndexError:
            self.close()
            raise TableError(f"{self.path!r} is empty: expected a header line naming the columns") from None
        except TableError:
            self.close()
            raise
        self.n_rows = None

    def _next_rows(self, n):
        """The next ``n`` records (fewer at the end); bad CSV or bad UTF-8 is a TableError saying where."""
        try:
            return list(islice(self._rows, n))
        except csv.Error as exc:
            raise TableError(f"line {self._rows.line_num}: not valid CSV: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise _not_utf8(self.path, getattr(self, "columns", None)) from exc

    def chunks(self, wanted, rows):
        index = {c: self.columns.index(c) for c in wanted}
        width = len(self.columns)
        row0 = 0
        while True:
            block = self._next_rows(rows)
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
        _files.check_regular(path, "input file")
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


def _not_utf8(path, columns=None):
    """A TableError naming the line, column and byte of the first byte sequence in ``path`` that
    is not UTF-8 (found by re-reading the file line by line: only on this error)."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                fields = next(csv.reader([line[:exc.start].decode("utf-8", "replace")]), None) or [""]
                column = columns[len(fields) - 1] if columns and len(fields) <= len(columns) else None
                where = f"line {number}" + (f", column {column!r}" if column is not None else "")
                return TableError(f"{path!r}, {where}: byte 0x{line[exc.start]:02x} is not UTF-8 (a Latin-1 or "
                                  "Windows-1252 file?): save the file as UTF-8 (Excel: 'CSV UTF-8')",
                                  column=column)
            if number == 1 and columns is None:
                columns = next(csv.reader([text]), None)
    return TableError(f"{path!r} is not valid UTF-8: save the file as UTF-8 (Excel: 'CSV UTF-8')")


READERS = {".npz": NpzReader, ".csv": CsvReader, ".parquet": ParquetReader}


# -- writers: ``write(scores)``, then ``commit()`` (rename into place) or ``abort()`` ---------------
class _Writer:
    """A temp file next to the output (``npctr._files.create_temp``: the umask's mode, or the
    replaced file's), renamed over it by ``commit``; ``abort`` deletes it."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fd, self._tmp = _files.create_temp(self.path, TEMP_SUFFIX)

    def commit(self):
        self._close()
        fd = os.open(self._tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _files.replace(self._tmp, self.path)

    def abort(self):
        try:
            self._close()
        finally:
            _files.unlink_quietly(self._tmp)

    def _release_fd(self):
        """For writers that open the temp file by path."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class CsvWriter(_Writer):
    def __init__(self, path, dtype):
        super().__init__(path)
        self._f, self._fd = os.fdopen(self._fd, "w", newline=""), None
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
        self._release_fd()
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
        self._release_fd()
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
        _files.unlink_quietly(self._tmp)


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
        check_columns(reader.columns, f"{os.fspath(input_path)!r}")
        decoder = FeatureDecoder(model, reader.columns)
        with _naming(output_path):
            writer = WRITERS[file_format(output_path, "output")](output_path, model.dtype or np.float64)
        rows = 0
        for row0, table in reader.chunks(decoder.columns, batch_size):
            x = decoder.decode(table, row0)
            n = len(next(iter(x.values())))
            if n:
                scores = model.predict(x, batch_size=batch_size).reshape(-1)
                with _naming(output_path):
                    writer.write(scores)
            rows += n
            if progress is not None:
                progress.update(rows, *reader.position(rows))
        if progress is not None:
            progress.update(rows, *reader.position(rows), final=True)
        with _naming(output_path):
            writer.commit()
        writer = None
        return rows
    finally:
        if writer is not None:
            writer.abort()
        reader.close()


class _naming:
    """An OSError without a file name raised inside (a full disk) names ``path``."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, OSError):
            named = _files.with_path(exc, self.path)
            if named is not exc:
                raise named from exc
        return False


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


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` are one file (links, hard links, ``..`` included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_paths(model, input, output):
    """The command line's files, before anything is read: a UsageError (exit 2) for a missing or
    special model or input file, an output that is the input or the model, or whose directory
    does not exist, or that exists and is not a regular file."""
    for path, what in ((model, "model"), (input, "input")):
        try:
            _files.check_regular(path, f"{what} file")
        except FileNotFoundError:
            raise UsageError(f"{what} file {path!r} does not exist") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    file_format(input, "input")
    file_format(output, "output")
    for path, what in ((input, "input"), (model, "model")):
        if _same_file(output, path):
            raise UsageError(f"the output {output!r} is the {what} file {path!r}: refusing to replace it with scores")
    if os.path.lexists(output):
        try:
            _files.check_regular(output, "the output")
        except FileNotFoundError:
            pass                              # a dangling link: the rename replaces the link
        except ValueError as exc:
            raise UsageError(f"{exc}; npctr predict writes the scores to a new regular file") from None
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise UsageError(f"the output's directory {out_dir!r} does not exist")


def main(argv=None):
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:          # argparse: --help (0) or a usage error (2)
        return exc.code
    err = sys.stderr
    try:
        if args.batch_size <= 0:
            raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}")
        check_paths(args.model, args.input, args.output)
        from ..io import load_model
        model = load_model(args.model)
        start = time.perf_counter()
        progress = Progress(err, enabled=not (args.no_progress or args.quiet))
        rows = score_file(model, args.input, args.output, args.batch_size, progress)
    except UsageError as exc:
        print(f"npctr predict: {exc}", file=err)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"npctr predict: error: {_one_line(exc)}", file=err)
        return 1
    except MemoryError:
        print("npctr predict: error: out of memory (try a smaller --batch-size)", file=err)
        return 1
    except KeyboardInterrupt:
        print("\nnpctr predict: interrupted; no output written", file=err)
        return 130
    if not args.quiet:
        print(f"scored {rows} rows in {time.perf_counter() - start:.2f}s -> {args.output}", file=err)
    return 0


def _one_line(exc, limit=1000):
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."
