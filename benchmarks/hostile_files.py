"""Hostile and damaged model files, one builder per kind (issue 17, point 1).

Used by ``benchmarks/bench_hostile_files.py`` (full size: the 1 GiB junk member, the 1e10 claims)
and by ``tests/test_safe_loading.py`` (``scale`` shrinks what is actually written, never what
is claimed). Each builder ``build(directory, base, scale)`` writes one file (or FIFO, link,
directory) from the legitimate model file ``base`` and returns its path; ``KINDS`` maps a kind's
name to ``(builder, what it is)``. Every kind must be refused by ``npctr.load_model`` with a
``ValueError``.
"""
import io
import json
import os
import struct
import warnings
import zipfile

import numpy as np

GiB = 2 ** 30


def base_model(path):
    """A small DIN with BN (moving statistics) saved at ``path``; returns the path."""
    from npctr.datasets import make_din_data
    from npctr.models import DIN
    _, _, columns, history = make_din_data(64, n_users=10, n_items=30, n_cates=6, maxlen=5, seed=3)
    DIN(columns, history, dnn_hidden_units=(8, 4), att_hidden_size=(6, 4), dnn_use_bn=True).save(path)
    return path


def _arrays(path):
    with np.load(path, allow_pickle=False) as data:      # our own file: trusted
        return {k: data[k] for k in data.files}


def _npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    return buf.getvalue()


def _header_bytes(shape, descr="<f8", version=(1, 0), pad_to=None):
    """The bytes of an ``.npy`` header announcing ``shape`` (nothing else)."""
    d = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    text = repr(d).encode("latin1")
    if pad_to is not None:
        text = text + b" " * (pad_to - len(text) - 1)
    text += b"\n"
    length = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text


def _write(path, members, compress=()):
    """A zip at ``path`` of ``members`` (entry name without .npy -> bytes, an array, or a callable
    writing into the open member); names in ``compress`` are deflated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # zipfile warns on duplicate names
        with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
            for name, content in members:
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
                with zf.open(info, "w", force_zip64=True) as member:
                    if callable(content):
                        content(member)
                    else:
                        member.write(content if isinstance(content, bytes) else _npy_bytes(content))
    return path


def _members(base, **replace):
    arrays = _arrays(base)
    arrays.update(replace)
    return list(arrays.items())


def _config_edit(base, edit):
    arrays = _arrays(base)
    meta = json.loads(str(arrays["__config__"]))
    edit(meta["config"])
    arrays["__config__"] = np.array(json.dumps(meta))
    return arrays


def _tables(config):
    for fc in config["dnn_feature_columns"]:
        yield fc["config"].get("sparsefeat", {}).get("config", fc["config"])


def _zeros_writer(n):
    def write(member, block=np.zeros(1 << 20, np.uint8).tobytes()):
        left = n
        while left:
            member.write(block[:min(left, len(block))])
            left -= min(left, len(block))
    return write


def _stream(header, n):
    def write(member):
        member.write(header)
        _zeros_writer(n)(member)
    return write


# -- the kinds ----------------------------------------------------------------------------------
def extra_member_deflated(d, base, scale):
    """the issue's case: a model plus a deflated 1 GiB member of zeros (~1 MB on disk)"""
    n = max(GiB // scale, 1 << 20)
    return _write(os.path.join(d, "model.npz"), _members(base) + [("junk", _stream(_header_bytes((n // 8,)), n))],
                  compress={"junk"})


def extra_member_stored(d, base, scale):
    """a model plus a stored 1 GiB member nobody asked for"""
    n = max(GiB // scale, 1 << 20)
    return _write(os.path.join(d, "model.npz"), _members(base) + [("junk", _stream(_header_bytes((n // 8,)), n))])


def lone_header_1e10(d, base, scale):
    """the issue's 236-byte file: one array whose header claims 1e10 float64 values"""
    return _write(os.path.join(d, "model.npz"), [("w", _header_bytes((10 ** 10,)))])


def weight_header_1e10(d, base, scale):
    """a model whose kernel header claims 1e10 float64 values (80 GB)"""
    return _write(os.path.join(d, "model.npz"), _members(base, **{"dnn/kernel0": _header_bytes((10 ** 10,))}))


def _forged_table(d, base, rows):
    """config, array header and zip directory all claim a (rows, 8) float64 table; the file holds 8 bytes"""
    arrays = _config_edit(base, lambda c: [t.update(vocabulary_size=rows) for t in _tables(c)
                                           if t.get("embedding_name") == "item_id"])
    path = os.path.join(d, "model.npz")
    key = "sparse_emb_item_id/embeddings"
    claim = rows * 8 * 8
    arrays[key] = _header_bytes((rows, 8)) + b"\0" * 8
    with zipfile.ZipFile(_write(path, list(arrays.items())), "a") as zf:
        info = zf.getinfo(key + ".npy")
        info.file_size = info.compress_size = len(_header_bytes((rows, 8))) + claim   # the directory lies
        zf._didModify = True                                                           # rewrite it on close
    return path


def claim_2e9_values(d, base, scale):
    """config, header and directory all claim 2e9 float64 values (16 GB) in a small file"""
    return _forged_table(d, base, 2 * 10 ** 9 // 8)


def config_vocabulary_2e9(d, base, scale):
    """the config says vocabulary_size 2e9 (128 GB of float64); the arrays are the small ones"""
    arrays = _config_edit(base, lambda c: [t.update(vocabulary_size=2 * 10 ** 9) for t in _tables(c)
                                           if t.get("embedding_name") == "item_id"])
    return _write(os.path.join(d, "model.npz"), list(arrays.items()))


def config_vocabulary_2e9_forged(d, base, scale):
    """vocabulary 2e9 claimed by the config, the array header and the zip directory alike"""
    return _forged_table(d, base, 2 * 10 ** 9)


def config_hidden_units_1e7(d, base, scale):
    """the config says dnn_hidden_units (1e7, 1e7): 800 TB of kernel"""
    arrays = _config_edit(base, lambda c: c.update(dnn_hidden_units=[10 ** 7, 10 ** 7]))
    return _write(os.path.join(d, "model.npz"), list(arrays.items()))


def config_200k_layers(d, base, scale):
    """the config says 200,000 hidden layers (600 kB of JSON)"""
    arrays = _config_edit(base, lambda c: c.update(dnn_hidden_units=[1] * 200_000))
    return _write(os.path.join(d, "model.npz"), list(arrays.items()))


def config_too_long(d, base, scale):
    """a config of 8 Mi characters (a 32 MiB string array)"""
    arrays = _config_edit(base, lambda c: c.update(name="x" * (8 * 2 ** 20)))
    return _write(os.path.join(d, "model.npz"), list(arrays.items()))


def config_header_claims_4gb(d, base, scale):
    """the __config__ header claims a <U1000000000 string (4 GB)"""
    return _write(os.path.join(d, "model.npz"),
                  _members(base, __config__=_header_bytes((), descr="<U1000000000")))


def npy_header_length_4gb(d, base, scale):
    """a .npy 2.0 header whose length field claims 4 GiB"""
    return _write(os.path.join(d, "model.npz"),
                  _members(base, **{"dnn/kernel0": b"\x93NUMPY\x02\x00" + struct.pack("<I", 2 ** 32 - 1) + b"{"}))


def duplicate_member(d, base, scale):
    """dnn/kernel0.npy listed twice (the second a different array)"""
    members = _members(base)
    kernel = dict(members)["dnn/kernel0"]
    return _write(os.path.join(d, "model.npz"), members + [("dnn/kernel0", kernel * 0)])


def deflated_weight(d, base, scale):
    """a weight stored deflated (np.savez_compressed style)"""
    return _write(os.path.join(d, "model.npz"), _members(base), compress={"dnn/kernel0"})


def pickled_member(d, base, scale):
    """a weight that is a pickled object array"""
    return _write(os.path.join(d, "model.npz"),
                  _members(base, **{"dnn/bias0": np.array([{"x": 1}], dtype=object)}))


def directory_1m_entries(d, base, scale):
    """a zip directory of 1,000,000 entries (51 MB of directory records, forged)"""
    n = 1_000_000 // scale
    path = os.path.join(d, "model.npz")
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04" + b"\0" * 26)
        start = f.tell()
        f.write((record + b"x.npy") * n)
        size = f.tell() - start
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), size, start, 0))
    return path


def overlapping_members(d, base, scale):
    """two directory entries pointing at the same bytes (a second name for dnn/kernel0's data)"""
    path = _write(os.path.join(d, "model.npz"), _members(base))
    with zipfile.ZipFile(path, "a") as zf:
        twin = zf.getinfo("dnn/kernel0.npy")
        copy = zipfile.ZipInfo("dnn/kernel1.npy", date_time=twin.date_time)
        for attr in ("header_offset", "compress_size", "file_size", "CRC", "compress_type", "flag_bits",
                     "extract_version", "create_version"):
            setattr(copy, attr, getattr(twin, attr))
        zf.filelist = [i for i in zf.filelist if i.filename != "dnn/kernel1.npy"] + [copy]
        zf._didModify = True
    return path


def truncated(d, base, scale):
    """the model file cut in half"""
    data = open(base, "rb").read()
    path = os.path.join(d, "model.npz")
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    return path


def crc_mismatch(d, base, scale):
    """one byte of a weight flipped (the CRC catches it)"""
    data = bytearray(open(base, "rb").read())
    with zipfile.ZipFile(base) as zf:
        offset = zf.getinfo("dnn/kernel0.npy").header_offset
    name_length, extra_length = struct.unpack("<2H", data[offset + 26:offset + 30])
    data[offset + 30 + name_length + extra_length + 200] ^= 0xFF   # inside the array data
    path = os.path.join(d, "model.npz")
    with open(path, "wb") as f:
        f.write(bytes(data))
    return path


def fifo(d, base, scale):
    """a FIFO named model.npz (reading it would block forever)"""
    path = os.path.join(d, "model.npz")
    os.mkfifo(path)
    return path


def char_device(d, base, scale):
    """a link named model.npz to /dev/zero (endless zeros)"""
    path = os.path.join(d, "model.npz")
    os.symlink("/dev/zero", path)
    return path


def directory(d, base, scale):
    """a directory named model.npz"""
    path = os.path.join(d, "model.npz")
    os.mkdir(path)
    return path


KINDS = {f.__name__: (f, f.__doc__) for f in (
    extra_member_deflated, extra_member_stored, lone_header_1e10, weight_header_1e10, claim_2e9_values,
    config_vocabulary_2e9, config_vocabulary_2e9_forged, config_hidden_units_1e7, config_200k_layers,
    config_too_long, config_header_claims_4gb, npy_header_length_4gb, duplicate_member, deflated_weight,
    pickled_member, directory_1m_entries, overlapping_members, truncated, crc_mismatch, fifo, char_device,
    directory)}
