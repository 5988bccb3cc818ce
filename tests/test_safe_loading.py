"""Issue 17, point 1: a model file's own claims never decide what loading it costs.

Every hostile kind of ``benchmarks/hostile_files.py`` (built here small: ``scale`` shrinks what is
written, never what is claimed) is refused with a ``ValueError`` that says why, and before the
refusal no more array data is read than the file holds. Time and memory are measured by
``benchmarks/bench_hostile_files.py``, not here.
"""
import os
import sys
import threading
import time

import numpy as np
import pytest

import npctr
from npctr import _npz, io as npio
from npctr.io import load_model, load_weights, read_model_config, save_weights

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import hostile_files  # noqa: E402

SCALE = 1024          # 1 MiB instead of 1 GiB of junk; claims stay full size

#: kind -> what the message must say
EXPECTED = {
    "extra_member_deflated": r"member 'junk.npy': the member is compressed",
    "extra_member_stored": r"unexpected arrays \['junk'\]",
    "lone_header_1e10": r"not an npctr model file: it lacks",
    "weight_header_1e10": r"member 'dnn/kernel0.npy': its .npy header announces shape \(10000000000,\)",
    "claim_2e9_values": r"member 'sparse_emb_item_id/embeddings.npy': the member's 16000000076 bytes .* run past",
    "config_vocabulary_2e9": r"sparse_emb_item_id/embeddings: shape \(31, 8\), expected \(2000000000, 8\)",
    "config_vocabulary_2e9_forged": r"128000000077 bytes .* run past",
    "config_hidden_units_1e7": r"dnn/kernel0: shape \(45, 8\), expected \(45, 10000000\)",
    "config_200k_layers": r"could not rebuild DIN .* more weights than the file's arrays",
    "config_too_long": r"the config is 8,3\d\d,\d\d\d characters long, more than npctr.io.MAX_CONFIG_CHARS",
    "config_header_claims_4gb": r"member '__config__.npy': its .npy header is not valid",
    "npy_header_length_4gb": r"its .npy header claims 4294967295 bytes",
    "duplicate_member": r"member 'dnn/kernel0.npy': the zip directory lists this member twice",
    "deflated_weight": r"member 'dnn/kernel0.npy': the member is compressed",
    "pickled_member": r"member 'dnn/bias0.npy': it holds Python objects, i.e. a pickle",
    "directory_1m_entries": r"lists this member twice",                # 1,000 entries at this scale
    "overlapping_members": r"run past the next member",
    "truncated": r"not a readable npctr model file \(truncated or corrupted\?\)",
    "crc_mismatch": r"member 'dnn/kernel0.npy': damaged: its CRC-32",
    "fifo": r"is a FIFO \(named pipe\), not a regular file",
    "char_device": r"is a character device, not a regular file",
    "directory": r"is a directory, not a regular file",
}


def test_every_kind_has_an_expectation():
    assert set(EXPECTED) == set(hostile_files.KINDS)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return hostile_files.base_model(str(tmp_path_factory.mktemp("base") / "base.npz"))


@pytest.fixture
def bytes_read(monkeypatch):
    """Every array ``_npz.Archive.read`` allocates, in bytes."""
    sizes = []
    real = _npz.Archive.read

    def spy(self, member):
        sizes.append(member.nbytes)
        return real(self, member)
    monkeypatch.setattr(_npz.Archive, "read", spy)
    return sizes


@pytest.mark.parametrize("kind", sorted(hostile_files.KINDS))
def test_hostile_file_is_refused_before_costing_more_than_it_weighs(kind, base, tmp_path, bytes_read):
    if kind in ("fifo", "char_device") and os.name != "posix":
        pytest.skip("POSIX special files")
    build, _ = hostile_files.KINDS[kind]
    path = build(str(tmp_path), base, SCALE)
    if kind == "fifo":
        valve = _fifo_valve(path)           # if the loader ever opened the FIFO, it would not hang
    with pytest.raises(ValueError, match=EXPECTED[kind]) as info:
        load_model(path)
    size = os.path.getsize(path) if os.path.isfile(path) and not os.path.islink(path) else 0
    assert sum(bytes_read) <= size, (kind, sum(bytes_read), size)
    assert len(str(info.value)) < 600 and "\n" not in str(info.value)      # one clear line
    if kind == "fifo":
        valve.set()
    # the Dask driver reads only the config, as safely
    if kind not in ("extra_member_stored", "weight_header_1e10", "config_vocabulary_2e9", "claim_2e9_values",
                    "config_vocabulary_2e9_forged", "config_hidden_units_1e7", "config_200k_layers",
                    "npy_header_length_4gb", "pickled_member", "crc_mismatch"):
        with pytest.raises(ValueError):
            read_model_config(path)


def _fifo_valve(path):
    """Write garbage into the FIFO if a reader ever opens it (the loader must not), for 2 s."""
    stop = threading.Event()

    def run():
        deadline = time.monotonic() + 2
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:                 # ENXIO: no reader, as it should be
                time.sleep(0.01)
                continue
            os.write(fd, b"garbage")
            os.close(fd)
            return
    threading.Thread(target=run, daemon=True).start()
    return stop


def test_a_legitimate_file_loads_and_reads_exactly_its_weights(base, bytes_read):
    model = load_model(base)
    weights = sum(model._lookup(n).nbytes for n in model.weight_names())
    meta = sum(hostile_files._arrays(base)[k].nbytes for k in ("__format__", "__config__"))
    assert sum(bytes_read) == weights + meta          # the weights, the format and the config, once each
    assert sum(bytes_read) <= os.path.getsize(base)


def test_max_bytes_bounds_the_weights(base):
    model = load_model(base)
    weights = sum(model._lookup(n).nbytes for n in model.weight_names())
    assert load_model(base, max_bytes=weights).weight_names() == model.weight_names()
    with pytest.raises(ValueError, match=rf"has {weights:,} bytes of weights, more than max_bytes={weights - 1:,}"):
        load_model(base, max_bytes=weights - 1)
    assert npio.MAX_WEIGHT_BYTES == 16 * 2 ** 30


def test_the_directory_is_bounded_before_zipfile_parses_it(base, tmp_path, monkeypatch):
    path = hostile_files.directory_1m_entries(str(tmp_path), base, 1000)     # 1,000 forged entries
    monkeypatch.setattr(_npz, "MAX_MEMBERS", 999)
    with pytest.raises(ValueError, match="lists 1000 entries; an npctr file holds at most 999"):
        load_model(path)
    monkeypatch.setattr(_npz, "MAX_MEMBERS", 10_000)
    monkeypatch.setattr(_npz, "MAX_DIRECTORY_BYTES", 50_000)
    with pytest.raises(ValueError, match="the zip directory takes 51000 bytes; at most 50000"):
        load_model(path)


def _rewrite(base, path, **members):
    return hostile_files._write(str(path), hostile_files._members(base, **members))


def test_long_but_honest_header_loads_and_too_long_is_not_called_a_pickle(base, tmp_path):
    kernel = hostile_files._arrays(base)["dnn/kernel0"]
    honest = hostile_files._header_bytes(kernel.shape, pad_to=3000) + kernel.tobytes()
    model = load_model(_rewrite(base, tmp_path / "long.npz", **{"dnn/kernel0": honest}))
    np.testing.assert_array_equal(model._lookup("dnn/kernel0"), kernel)
    too_long = hostile_files._header_bytes(kernel.shape, pad_to=5000) + kernel.tobytes()
    with pytest.raises(ValueError, match="header claims 5000 bytes; npctr reads headers of at most 4096") as info:
        load_model(_rewrite(base, tmp_path / "longer.npz", **{"dnn/kernel0": too_long}))
    assert "pickle" not in str(info.value)


def test_fortran_ordered_and_big_endian_weights_are_refused(base, tmp_path):
    kernel = hostile_files._arrays(base)["dnn/kernel0"]
    with pytest.raises(ValueError, match="dnn/kernel0: stored in Fortran order"):
        load_model(_rewrite(base, tmp_path / "f.npz", **{"dnn/kernel0": np.asfortranarray(kernel)}))
    with pytest.raises(ValueError, match="dnn/kernel0: dtype >f8, expected float64"):
        load_model(_rewrite(base, tmp_path / "be.npz", **{"dnn/kernel0": kernel.astype(">f8")}))


def test_a_file_swapped_for_a_fifo_after_the_stat_is_refused_on_the_descriptor(base, tmp_path, monkeypatch):
    if os.name != "posix":
        pytest.skip("POSIX special files")
    from npctr import _files
    path = str(tmp_path / "model.npz")
    os.mkfifo(path)
    real_stat = os.stat
    monkeypatch.setattr(_files.os, "stat", lambda p, *a, **k: real_stat(base))       # the stat sees a file
    with pytest.raises(ValueError, match="is a FIFO"):
        load_model(path)


def test_load_weights_checks_the_format_version_and_reads_as_safely(base, tmp_path):
    model = load_model(base)
    save_weights(model, tmp_path / "w.npz")
    arrays = hostile_files._arrays(tmp_path / "w.npz")
    arrays[npio.WEIGHTS_MARK] = np.array(npio.FORMAT_VERSION + 1)
    hostile_files._write(str(tmp_path / "w2.npz"), list(arrays.items()))
    with pytest.raises(ValueError, match="weights file format version 2, this npctr .* reads version 1"):
        load_weights(model, tmp_path / "w2.npz")
    arrays[npio.WEIGHTS_MARK] = np.array(npio.FORMAT_VERSION)
    arrays["junk"] = np.zeros(3)
    hostile_files._write(str(tmp_path / "w3.npz"), list(arrays.items()))
    with pytest.raises(ValueError, match=r"does not hold the weights of this DIN: missing arrays \[\], "
                                         r"unexpected arrays \['junk'\]"):
        load_weights(model, tmp_path / "w3.npz")
    with pytest.raises(ValueError, match="is a directory"):
        load_weights(model, tmp_path)


def test_long_name_lists_are_cut_short(base, tmp_path):
    members = hostile_files._members(base) + [(f"junk{i}", np.zeros(1)) for i in range(500)]
    with pytest.raises(ValueError, match=r"'junk19', \.\.\. and 480 more\]") as info:
        load_model(hostile_files._write(str(tmp_path / "m.npz"), members))
    assert len(str(info.value)) < 600


def test_load_model_is_exported_and_numpy_only():
    assert npctr.load_model is load_model


def test_a_dask_worker_refuses_the_bomb_as_fast(base, tmp_path):
    from npctr.serving.dask import cached_model
    path = hostile_files.extra_member_deflated(str(tmp_path), base, SCALE)
    with pytest.raises(ValueError, match="is compressed"):
        cached_model(path)
