"""An ``.npz`` archive read as an untrusted file: its directory first, then each member's
``.npy`` header, then exactly the bytes those announce (safetensors' header-first loading, for
NumPy's format). Nothing a file claims is allocated or read before it has been checked against
the file itself; what the caller expects (which members, shapes and dtypes) is checked by the
caller between :meth:`Archive.header` and :meth:`Archive.read`.

What :class:`Archive` refuses, each a ``ValueError`` naming the file and the member:

* a path that is not a regular file (``npctr._files.open_regular``);
* a zip directory of more than ``MAX_MEMBERS`` entries or ``MAX_DIRECTORY_BYTES`` bytes (checked
  on the end-of-directory record, before ``zipfile`` parses the entries);
* a member that is not a ``.npy`` name, a duplicate name, a compressed, encrypted or patched
  member, or members that overlap or run past the end of the file. Members must be stored
  (``np.savez`` writes them so): then reading a member costs exactly its size in the file,
  where a deflated one could inflate 1000-fold;
* an ``.npy`` header longer than ``MAX_HEADER_BYTES`` (its length is read and bounded before the
  header is), of a format other than 1.0 / 2.0, that NumPy cannot parse, with Python objects
  (a pickle) or a negative dimension, or whose shape and dtype do not account for the member's
  size exactly;
* data whose CRC-32 differs from the directory's.

Reading a checked member allocates one array of the announced size and reads the file into it
(no second copy), as ``np.load`` does. NumPy and the standard library only.
"""
import inspect
import io
import struct
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from . import _files

#: most entries an archive may list (a model with thousands of weights fits many times over)
MAX_MEMBERS = 10_000
#: most bytes of zip directory (an entry takes ~46 bytes plus its name)
MAX_DIRECTORY_BYTES = 2 * 2 ** 20
#: longest ``.npy`` header, in bytes after the length field (NumPy writes ~120 for a plain array)
MAX_HEADER_BYTES = 4096
#: bytes read per call into an array (the read goes straight into the array's memory)
READ_CHUNK = 1 << 24

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")      # the zip format's local file header, 30 bytes
_LOCAL_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
#: flag bits refused: encrypted (0), compressed patched data (5), strong encryption (6)
_REFUSED_FLAGS = 0x1 | 0x20 | 0x40
#: what zipfile and a damaged file may raise while the directory or a header is read
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
           struct.error, UnicodeDecodeError, OverflowError)


class Member(NamedTuple):
    """A member whose ``.npy`` header has been read and checked against its size."""
    name: str              # the entry's name without ``.npy``
    shape: tuple
    dtype: np.dtype
    fortran_order: bool
    nbytes: int            # bytes of array data
    data_offset: int       # where the array data starts in the file
    header_crc: int        # CRC-32 of the member's bytes before the array data
    crc: int               # the directory's CRC-32 of the whole member


class Archive:
    """A stored ``.npz`` archive opened for checked reading.

    Parameters
    ----------
    source : path or binary file object
        A path must name a regular file; an open file object (e.g. from fsspec) is read as is.
    label : str
        How messages name the file (default ``repr`` of the path).
    kind : str
        What messages call such a file (``"npctr model file"``, ``".npz archive"``).

    Attributes: ``names`` (member names without ``.npy``, in directory order), ``size``
    (bytes of the file). Use as a context manager, or call ``close()``.
    """

    def __init__(self, source, label=None, kind=".npz archive"):
        self.kind = kind
        self.label = label or (repr(source) if isinstance(source, str) else repr(getattr(source, "name", source)))
        if hasattr(source, "read"):
            self._f, self._owned = source, False
            self._f.seek(0, 2)
            self.size = self._f.tell()
            self._f.seek(0)
        else:
            self._f, self.size = _files.open_regular(source, "file")
            self._owned = True
        try:
            self._infos = self._directory()
        except BaseException:
            self.close()
            raise
        self.names = list(self._infos)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._owned and self._f is not None:
            self._f.close()
        self._f = None

    def error(self, message, member=None):
        where = f"{self.label}" + (f", member {member + '.npy'!r}" if member is not None else "")
        return ValueError(f"{where}: {message}")

    def head(self, n):
        """The file's first ``n`` bytes (what it looks like, for messages)."""
        self._f.seek(0)
        return self._f.read(n)

    # -- the directory --------------------------------------------------------------------
    def _directory(self):
        end = _end_record(self._f)
        if end is not None:
            entries, directory_bytes = end
            if entries > MAX_MEMBERS:
                raise self.error(f"the zip directory lists {entries} entries; an npctr file holds at most "
                                 f"{MAX_MEMBERS} (npctr._npz.MAX_MEMBERS)")
            if directory_bytes > MAX_DIRECTORY_BYTES:
                raise self.error(f"the zip directory takes {directory_bytes} bytes; at most "
                                 f"{MAX_DIRECTORY_BYTES} are read (npctr._npz.MAX_DIRECTORY_BYTES)")
        try:
            infos = zipfile.ZipFile(self._f).infolist()
        except (*_DAMAGE, ValueError, OSError) as exc:
            raise self.error(f"not a readable {self.kind} (truncated or corrupted?): {type(exc).__name__}: "
                             f"{exc}") from exc
        if len(infos) > MAX_MEMBERS:
            raise self.error(f"the zip directory lists {len(infos)} entries; at most {MAX_MEMBERS}")
        members = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                raise self.error(f"entry {name!r} is not a .npy array; npctr files hold only .npy members")
            if name[:-4] in members:
                raise self.error("the zip directory lists this member twice", name[:-4])
            if info.compress_type != zipfile.ZIP_STORED:
                raise self.error(f"the member is compressed (zip method {info.compress_type}); npctr files "
                                 "store arrays uncompressed, as np.savez writes them, so that reading one costs "
                                 "no more than its size in the file: re-save it with np.savez or model.save",
                                 name[:-4])
            if info.flag_bits & _REFUSED_FLAGS:
                raise self.error("the member is encrypted or patched; npctr files are plain zip archives",
                                 name[:-4])
            if info.compress_size != info.file_size:
                raise self.error(f"the directory gives a stored member two sizes ({info.compress_size} and "
                                 f"{info.file_size} bytes)", name[:-4])
            members[name[:-4]] = info
        # members may neither overlap nor run past the end: the file holds every byte it announces
        ordered = sorted(members.items(), key=lambda item: item[1].header_offset)
        for i, (name, info) in enumerate(ordered):
            end = info.header_offset + _LOCAL_HEADER.size + len(_raw_name(info)) + info.compress_size
            limit = ordered[i + 1][1].header_offset if i + 1 < len(ordered) else self.size
            if end > limit:
                raise self.error(f"the member's {info.compress_size} bytes at offset {info.header_offset} run "
                                 f"past {'the next member' if i + 1 < len(ordered) else 'the end of the file'} "
                                 f"(offset {limit}): the file is truncated or its directory is forged", name)
        return members

    # -- one member -----------------------------------------------------------------------------
    def header(self, name):
        """Read and check member ``name``'s local zip header and ``.npy`` header; returns a
        :class:`Member`. Reads at most ``MAX_HEADER_BYTES`` and a few dozen more bytes."""
        info = self._infos[name]
        try:
            return self._header(name, info)
        except ValueError:
            raise
        except (*_DAMAGE, OSError) as exc:
            raise self.error(f"unreadable (truncated or corrupted?): {type(exc).__name__}: {exc}", name) from exc

    def _header(self, name, info):
        f = self._f
        f.seek(info.header_offset)
        local = f.read(_LOCAL_HEADER.size)
        if len(local) != _LOCAL_HEADER.size or local[:4] != _LOCAL_MAGIC:
            raise self.error("its local zip header is missing or damaged", name)
        fields = _LOCAL_HEADER.unpack(local)
        flags, method, name_length, extra_length = fields[2], fields[3], fields[9], fields[10]
        if method != zipfile.ZIP_STORED or flags & _REFUSED_FLAGS:
            raise self.error("its local zip header says compressed or encrypted, its directory entry does not",
                             name)
        if f.read(name_length) != _raw_name(info):
            raise self.error("its local zip header names another member", name)
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        end = start + info.compress_size
        if end > self.size:
            raise self.error(f"its data runs past the end of the file ({end} > {self.size} bytes)", name)
        f.seek(start)
        shape, fortran_order, dtype, raw = read_npy_header(f.read, lambda m: self.error(m, name))
        data_offset = start + len(raw)
        if data_offset > end:
            raise self.error("its .npy header runs past the member's end", name)
        if dtype.hasobject:
            raise self.error("it holds Python objects, i.e. a pickle; npctr files never do, and loading one "
                             "would run code: refusing", name)
        if any(d < 0 for d in shape):
            raise self.error(f"its .npy header gives a negative dimension: shape {shape}", name)
        nbytes = dtype.itemsize
        for d in shape:
            nbytes *= d                      # Python ints: no overflow
        if data_offset + nbytes != end:
            raise self.error(f"its .npy header announces shape {shape} of {dtype} = {nbytes} bytes, the member "
                             f"holds {end - data_offset}: the sizes do not match", name)
        header_crc = zlib.crc32(raw)
        return Member(name, shape, dtype, fortran_order, nbytes, data_offset, header_crc, info.CRC)

    def read(self, member):
        """The array of a checked member: one allocation of ``member.nbytes``, filled straight
        from the file, its CRC-32 verified. Fortran-ordered members come back as Fortran arrays."""
        buffer = np.empty(member.nbytes, dtype=np.uint8)
        view = memoryview(buffer)
        crc = member.header_crc
        self._f.seek(member.data_offset)
        readinto = getattr(self._f, "readinto", None)
        pos = 0
        while pos < member.nbytes:
            stop = min(pos + READ_CHUNK, member.nbytes)
            if readinto is not None:
                n = readinto(view[pos:stop])
            else:
                data = self._f.read(stop - pos)
                n = len(data)
                view[pos:pos + n] = data
            if not n:
                raise self.error(f"truncated: {pos} of {member.nbytes} bytes of array data", member.name)
            crc = zlib.crc32(view[pos:pos + n], crc)
            pos += n
        if crc != member.crc:
            raise self.error("damaged: its CRC-32 does not match the zip directory's", member.name)
        array = buffer.view(member.dtype) if member.nbytes else np.empty(0, member.dtype)
        if member.fortran_order and len(member.shape) > 1:
            return array.reshape(member.shape[::-1]).T
        return array.reshape(member.shape)


def _raw_name(info):
    """The entry's name as the zip stores it (UTF-8 when flagged so, else cp437)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def _end_record(f):
    """``(entries, directory bytes)`` from the zip's end-of-directory record (zip64 included), as
    ``zipfile`` itself finds it; None if there is none or zipfile has no such helper."""
    find = getattr(zipfile, "_EndRecData", None)
    if find is None:            # a future zipfile: the entry count is checked after parsing
        return None
    try:
        record = find(f)
    except (OSError, struct.error):
        return None
    if not record:
        return None
    return record[zipfile._ECD_ENTRIES_TOTAL], record[zipfile._ECD_SIZE]


def read_npy_header(read, error):
    """``(shape, fortran_order, dtype, raw header bytes)`` of the ``.npy`` stream whose
    ``read(n)`` is given, reading at most ``MAX_HEADER_BYTES`` + 12 bytes: the header's length
    field is bounded before the header is read (NumPy's own reader reads whatever length it
    claims, up to 4 GiB, before checking it). Problems are ``error(message)``; the dtype is
    returned as declared (the caller refuses objects)."""
    prefix = read(8)
    if len(prefix) != 8 or prefix[:6] != _NPY_MAGIC:
        raise error("not a .npy array (no NumPy magic string)")
    version = (prefix[6], prefix[7])
    if version not in ((1, 0), (2, 0)):
        raise error(f".npy format version {version[0]}.{version[1]}; npctr reads 1.0 and 2.0")
    width = 2 if version == (1, 0) else 4
    length_field = read(width)
    if len(length_field) != width:
        raise error("truncated inside its .npy header")
    header_length = int.from_bytes(length_field, "little")
    if header_length > MAX_HEADER_BYTES:
        raise error(f"its .npy header claims {header_length} bytes; npctr reads headers of at most "
                    f"{MAX_HEADER_BYTES} (npctr._npz.MAX_HEADER_BYTES)")
    text = read(header_length)
    if len(text) != header_length:
        raise error("truncated inside its .npy header")
    shape, fortran_order, dtype = _parse_npy_header(version, length_field + text, error)
    return shape, fortran_order, dtype, prefix + length_field + text


def _header_size_keyword():
    """NumPy >= 1.24 bounds the header it parses (``max_header_size``, default 10,000 bytes); older
    NumPy takes no such keyword. The length is bounded above in either case."""
    if "max_header_size" in inspect.signature(np.lib.format.read_array_header_1_0).parameters:
        return {"max_header_size": MAX_HEADER_BYTES + 1}
    return {}


_HEADER_SIZE_KEYWORD = _header_size_keyword()


def _parse_npy_header(version, raw, error):
    """``(shape, fortran_order, dtype)`` of a bounded ``.npy`` header (length field + text), by
    NumPy's own parser; anything NumPy refuses is ``error(message)``."""
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, fortran_order, dtype = read(io.BytesIO(raw), **_HEADER_SIZE_KEYWORD)
        if dtype.itemsize < 0:          # NumPy < 2 wraps a huge itemsize ('<U4294967296') around
            raise ValueError(f"dtype {dtype.str!r} has a negative size")
        return shape, fortran_order, dtype
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"its .npy header is not valid: {message[:200]}") from exc
