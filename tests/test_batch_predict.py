"""``python -m npctr predict``: every input and output format, chunking, bounded reads, progress,
and bad rows reported by row and column."""
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npctr.serving.batch_predict import main, score_file, NpzReader, CsvReader, ParquetReader, Progress
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat
from npctr.models import DIN, DNNModel
from npctr.serving.tabular import FeatureDecoder, TableError

ROOT = Path(__file__).resolve().parent.parent
T = 4
N = 53


def _model(kind="din"):
    columns = [SparseFeat("user", 9, embedding_dim=3), SparseFeat("item", 12, embedding_dim=4),
               DenseFeat("price", 1), DenseFeat("ctx", 2),
               VarLenSparseFeat(SparseFeat("hist_item", 12, embedding_dim=4, embedding_name="item"), T,
                                length_name="hist_len")]
    if kind == "din":
        return DIN(columns, ["item"], dnn_hidden_units=(6,), att_hidden_size=(5,), seed=3)
    return DNNModel(columns, dnn_hidden_units=(6,), seed=3)


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, n)
    hist = np.where(np.arange(T) < lengths[:, None], rng.integers(1, 12, (n, T)), 0)
    return {"user": rng.integers(0, 9, n), "item": rng.integers(1, 12, n), "price": rng.normal(size=n),
            "ctx": rng.normal(size=(n, 2)), "hist_item": hist, "hist_len": lengths.reshape(-1, 1)}


def _split(x):
    """Every multi-valued feature as columns name_0..name_{w-1}."""
    out = {}
    for k, v in x.items():
        v = np.asarray(v)
        if v.ndim == 2 and v.shape[1] > 1:
            out.update({f"{k}_{i}": v[:, i] for i in range(v.shape[1])})
        else:
            out[k] = v.reshape(len(v))
    return out


def write_npz(path, x, split=False):
    np.savez(path, **(_split(x) if split else x))


def write_csv(path, x, split=True):
    cols = _split(x) if split else {k: np.asarray(v).reshape(len(v), -1) for k, v in x.items()}
    cols = {k: (v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v) for k, v in cols.items()}
    names = list(cols)
    n = len(next(iter(cols.values())))

    def cell(v, i):
        v = v[i]
        if np.ndim(v):
            return "[" + ", ".join(repr(float(e)) if isinstance(e, np.floating) else str(e) for e in v) + "]"
        return repr(float(v)) if isinstance(v, np.floating) else str(v)
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for i in range(n):
            f.write(",".join(f'"{c}"' if "," in c else c for c in (cell(cols[k], i) for k in names)) + "\n")


def write_parquet(path, x, split=False):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    cols = _split(x) if split else x
    table = {}
    for k, v in cols.items():
        v = np.asarray(v)
        table[k] = pa.array(list(v)) if v.ndim == 2 and v.shape[1] > 1 else pa.array(v.reshape(len(v)))
    pq.write_table(pa.table(table), path, row_group_size=20)


WRITE = {".npz": write_npz, ".csv": write_csv, ".parquet": write_parquet}


def read_scores(path):
    path = str(path)
    if path.endswith(".csv"):
        with open(path) as f:
            assert f.readline() == "score\n"
        return np.loadtxt(path, skiprows=1, ndmin=1)
    if path.endswith(".npz"):
        with np.load(path) as z:
            assert z.files == ["score"]
            return z["score"]
    import pyarrow.parquet as pq
    return pq.read_table(path)["score"].to_numpy()


@pytest.fixture
def saved(tmp_path):
    model = _model()
    model.save(tmp_path / "model.npz")
    return model, tmp_path / "model.npz"


@pytest.mark.parametrize("src", [".npz", ".csv", ".parquet"])
@pytest.mark.parametrize("dst", [".csv", ".parquet", ".npz"])
def test_every_format_in_and_out_equals_predict(src, dst, saved, tmp_path):
    if ".parquet" in (src, dst):
        pytest.importorskip("pyarrow")
    model, path = saved
    x = _data()
    WRITE[src](tmp_path / f"in{src}", x)
    out = tmp_path / f"scores{dst}"
    assert main([str(path), "--input", str(tmp_path / f"in{src}"), "--output", str(out),
                 "--batch-size", "16", "--quiet"]) == 0
    scores = read_scores(out)
    assert scores.shape == (N,)
    np.testing.assert_array_equal(scores, model.predict(x, batch_size=16).reshape(-1))


@pytest.mark.parametrize("src, split", [(".npz", True), (".csv", False), (".parquet", True)])
def test_histories_as_lists_or_split_columns(src, split, saved, tmp_path):
    if src == ".parquet":
        pytest.importorskip("pyarrow")
    model, path = saved
    x = _data()
    WRITE[src](tmp_path / f"in{src}", x, split=split)
    assert main([str(path), "-i", str(tmp_path / f"in{src}"), "-o", str(tmp_path / "s.npz"), "-q"]) == 0
    np.testing.assert_array_equal(read_scores(tmp_path / "s.npz"), model.predict(x, batch_size=4096).reshape(-1))


@pytest.mark.parametrize("batch_size", [1, 2, 7, 53, 1000])
@pytest.mark.parametrize("kind", ["din", "dnn"])       # dnn: the length_name path, pooling by hist_len
def test_chunking_gives_one_shot_predict_exactly(kind, batch_size, tmp_path):
    model = _model(kind)
    x = _data()
    write_csv(tmp_path / "in.csv", x)
    assert score_file(model, tmp_path / "in.csv", tmp_path / "s.npz", batch_size=batch_size) == N
    scores = read_scores(tmp_path / "s.npz")
    np.testing.assert_array_equal(scores, model.predict(x, batch_size=batch_size).reshape(-1))
    # across batch sizes, only BLAS may differ: a one-row product is a gemv, and a GEMM kernel may round
    # edge rows of a block differently (an ulp); nothing else depends on the chunking
    np.testing.assert_allclose(scores, model.predict(x).reshape(-1), rtol=1e-14, atol=0)


@pytest.mark.parametrize("src", [".npz", ".csv", ".parquet"])
def test_readers_never_hold_more_than_a_chunk(src, tmp_path, monkeypatch):
    if src == ".parquet":
        pytest.importorskip("pyarrow")
    model = _model()
    x = _data()
    WRITE[src](tmp_path / f"in{src}", x)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("the npz reader must stream, not np.load"))
    reader = {".npz": NpzReader, ".csv": CsvReader, ".parquet": ParquetReader}[src](tmp_path / f"in{src}")
    decoder = FeatureDecoder(model, reader.columns)
    sizes, starts = [], []
    for row0, table in reader.chunks(decoder.columns, 10):
        sizes.append({len(v) for v in table.values()})
        starts.append(row0)
    reader.close()
    assert sizes == [{10}] * 5 + [{3}]
    assert starts == list(range(0, N, 10))
    # and the scorer hands predict one chunk at a time
    calls = []
    predict = model.predict
    monkeypatch.setattr(model, "predict", lambda xb, batch_size: calls.append(len(xb["user"])) or
                        predict(xb, batch_size=batch_size))
    score_file(model, tmp_path / f"in{src}", tmp_path / "s.csv", batch_size=10)
    assert calls == [10] * 5 + [3]


def _run(args, tmp_path):
    err = io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        code = main([str(a) for a in args])
    finally:
        sys.stderr = old
    return code, err.getvalue()


def _bad(tmp_path, saved, x, src=".csv", **kw):
    WRITE[src](tmp_path / f"bad{src}", x, **kw)
    out = tmp_path / "s.csv"
    code, err = _run([saved[1], "-i", tmp_path / f"bad{src}", "-o", out, "--batch-size", "10"], tmp_path)
    assert code == 1, err
    assert not out.exists() and not list(tmp_path.glob(".s.csv*"))      # nothing half-written
    return err


def test_bad_rows_name_row_and_column(saved, tmp_path):
    x = _data()
    x["item"] = x["item"].astype(float)
    x["item"][17] = 2.5
    assert "row 17, column 'item': '2.5' is not an integer" in _bad(tmp_path, saved, x)
    x = _data()
    x["hist_item"][33, 2] = 12
    err = _bad(tmp_path, saved, x, ".npz")
    assert "row 33, column 'hist_item[2]': id 12 is out of the vocabulary [0, 12) of feature 'hist_item'" in err
    x = _data()
    x["user"][41] = -1
    assert "row 41, column 'user': id -1 is out of the vocabulary [0, 9)" in _bad(tmp_path, saved, x, ".npz",
                                                                                  split=True)
    x = _data()
    x["ctx"][25, 1] = np.nan
    assert "row 25, column 'ctx_1': NaN (or a missing value) in the dense feature 'ctx'" in \
        _bad(tmp_path, saved, x)
    x = _data()
    x["hist_len"][5] = -2
    assert "row 5, column 'hist_len': length -2 is negative" in _bad(tmp_path, saved, x)


def test_missing_columns_and_wrong_history_length(saved, tmp_path):
    x = _data()
    del x["price"]
    err = _bad(tmp_path, saved, x)
    assert "missing column 'price'" in err and "the table has columns" in err
    x = _data()
    x["hist_item"] = x["hist_item"][:, :3]
    err = _bad(tmp_path, saved, x)
    assert "missing column 'hist_item'" in err and "found 3 of the 4 split columns" in err
    x = _data()
    x["hist_item"] = np.concatenate([x["hist_item"], x["hist_item"][:, :1]], axis=1)
    assert "wrong history length" in _bad(tmp_path, saved, x)
    assert "column 'hist_item' has 5 values per row, feature 'hist_item' needs 4 (wrong history length)" in \
        _bad(tmp_path, saved, x, ".npz")


def test_ragged_lists_name_the_row(saved, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    x = _split(_data())
    table = {k: v for k, v in x.items() if not k.startswith("hist_item_")}
    hist = [list(r) for r in _data()["hist_item"]]
    hist[29] = hist[29][:2]
    table["hist_item"] = hist
    table["ctx"] = [list(r) for r in _data()["ctx"]]
    del table["ctx_0"], table["ctx_1"]
    pq.write_table(pa.table(table), tmp_path / "bad.parquet")
    code, err = _run([saved[1], "-i", tmp_path / "bad.parquet", "-o", tmp_path / "s.csv"], tmp_path)
    assert code == 1 and "row 29, column 'hist_item': wrong history length: 2 values, feature 'hist_item' has 4" \
        in err
    table["hist_item"] = [list(r) for r in _data()["hist_item"]]
    table["price"] = pa.array([None if i == 8 else 1.0 for i in range(N)])
    pq.write_table(pa.table(table), tmp_path / "bad.parquet")
    code, err = _run([saved[1], "-i", tmp_path / "bad.parquet", "-o", tmp_path / "s.csv"], tmp_path)
    assert code == 1 and "row 8, column 'price': missing value" in err


def test_usage_errors_exit_2(saved, tmp_path):
    write_npz(tmp_path / "in.npz", _data())
    model = saved[1]
    for args, message in [
            ([model, "-i", tmp_path / "in.npz", "-o", tmp_path / "s.txt"], "unknown format '.txt'"),
            ([model, "-i", tmp_path / "nope.csv", "-o", tmp_path / "s.csv"], "does not exist"),
            ([tmp_path / "nope.npz", "-i", tmp_path / "in.npz", "-o", tmp_path / "s.csv"], "model file"),
            ([model, "-i", tmp_path / "in.npz", "-o", tmp_path / "s.csv", "--batch-size", "0"], "--batch-size"),
            ([model, "-i", tmp_path / "in.npz", "-o", tmp_path / "no" / "s.csv"], "directory")]:
        code, err = _run(args, tmp_path)
        assert code == 2 and message in err, err
    assert _run([model, "-i", tmp_path / "in.npz"], tmp_path)[0] == 2          # argparse: -o missing
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    code, err = _run([tmp_path / "junk.npz", "-i", tmp_path / "in.npz", "-o", tmp_path / "s.csv"], tmp_path)
    assert code == 1 and err.startswith("npctr predict: error:") and "junk.npz" in err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(saved, tmp_path):
    model, _ = saved
    write_npz(tmp_path / "in.npz", _data())
    tty = _Terminal()
    score_file(model, tmp_path / "in.npz", tmp_path / "s.csv", batch_size=10, progress=Progress(tty))
    assert "100.0%" in tty.getvalue() and "53 rows" in tty.getvalue()
    pipe = io.StringIO()
    score_file(model, tmp_path / "in.npz", tmp_path / "s.csv", batch_size=10, progress=Progress(pipe))
    assert pipe.getvalue() == ""
    quiet = _Terminal()
    score_file(model, tmp_path / "in.npz", tmp_path / "s.csv", progress=Progress(quiet, enabled=False))
    assert quiet.getvalue() == ""


def test_empty_input_writes_empty_scores(saved, tmp_path):
    x = {k: v[:0] for k, v in _data().items()}
    write_csv(tmp_path / "in.csv", x)
    assert main([str(saved[1]), "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "s.npz"), "-q"]) == 0
    assert read_scores(tmp_path / "s.npz").shape == (0,)


def test_python_m_npctr_predict(saved, tmp_path):
    model, path = saved
    x = _data()
    write_npz(tmp_path / "in.npz", x)
    run = subprocess.run([sys.executable, "-m", "npctr", "predict", str(path), "--input", str(tmp_path / "in.npz"),
                          "--output", str(tmp_path / "s.csv")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "scored 53 rows" in run.stderr and "\r" not in run.stderr      # not a terminal: no bar
    np.testing.assert_array_equal(read_scores(tmp_path / "s.csv"), model.predict(x, batch_size=4096).reshape(-1))


def test_decoder_errors_directly():
    model = _model()
    with pytest.raises(TypeError, match="scoring tables needs a model built from feature columns"):
        FeatureDecoder(object(), [])
    decoder = FeatureDecoder(model, list(_split(_data())))
    table = _split(_data(5))
    table["user"] = np.array(["1", "x", "3", "4", "5"], dtype=object)
    with pytest.raises(TableError, match=r"row 101, column 'user': 'x' is not an integer id") as info:
        decoder.decode(table, row0=100)
    assert (info.value.row, info.value.column) == (101, "user")


def test_scoring_npz_imports_no_optional_package(saved, tmp_path):
    """npz in, csv out: NumPy only (pyarrow, pandas, dask, onnx are imported only by what needs them)."""
    write_npz(tmp_path / "in.npz", _data())
    code = ("import sys, npctr.dask, npctr.interop; from npctr.serving.batch_predict import main; "
            f"assert main([{str(saved[1])!r}, '-i', {str(tmp_path / 'in.npz')!r}, '-o', "
            f"{str(tmp_path / 's.csv')!r}, '-q']) == 0; "
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'pandas', 'dask', 'onnx', "
            "'onnxruntime', 'distributed'}); assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("dst", [".csv", ".parquet", ".npz"])
def test_float32_scores_round_trip_exactly(dst, tmp_path):
    if dst == ".parquet":
        pytest.importorskip("pyarrow")
    columns = _model().dnn_feature_columns
    model = DIN(columns, ["item"], dnn_hidden_units=(6,), att_hidden_size=(5,), dtype="float32")
    x = _data()
    write_npz(tmp_path / "in.npz", x)
    score_file(model, tmp_path / "in.npz", tmp_path / f"s{dst}", batch_size=20)
    scores = read_scores(tmp_path / f"s{dst}")
    expected = model.predict(x, batch_size=20).reshape(-1)
    assert scores.dtype == (np.float64 if dst == ".csv" else np.float32)
    np.testing.assert_array_equal(scores.astype(np.float32), expected)


from hypothesis import given, strategies as st  # noqa: E402


@given(st.integers(0, 30), st.integers(1, 12), st.booleans(), st.booleans(), st.integers(0, 2 ** 16))
def test_property_decoding_any_layout_and_chunking(n, rows, split, as_text, seed):
    """Split columns or lists, numbers or CSV text, any chunking: the decoded features are the arrays."""
    model = _model()
    x = _data(n, seed)
    if split:
        table = _split(x)
    else:
        from npctr.serving.tabular import ragged_from_cells
        # (the trailing None keeps NumPy from stacking the rows into a 2-D array: an object column of arrays)
        table = {k: (ragged_from_cells(np.array(list(v) + [None], dtype=object)[:-1], 0, k)
                     if np.ndim(v) == 2 and np.shape(v)[1] > 1 else np.asarray(v).reshape(len(v)))
                 for k, v in x.items()}
    if as_text:
        table = {k: (np.array([repr(float(e)) if np.asarray(v).dtype.kind == "f" else str(e) for e in v],
                              dtype=object) if not hasattr(v, "offsets") else v) for k, v in table.items()}
    decoder = FeatureDecoder(model, list(table))
    parts = []
    for row0 in range(0, n, rows):
        chunk = {k: (v[row0:row0 + rows] if not hasattr(v, "offsets") else
                     type(v)(v.values[v.offsets[row0]:v.offsets[min(row0 + rows, n)]],
                             v.offsets[row0:min(row0 + rows, n) + 1] - v.offsets[row0]))
                 for k, v in table.items()}
        parts.append(decoder.decode(chunk, row0))
    for name, expected in x.items():
        got = np.concatenate([p[name] for p in parts]) if parts else np.zeros((0,) + np.shape(expected)[1:])
        np.testing.assert_array_equal(got.reshape(np.shape(expected)), expected)


def test_interrupted_run_leaves_no_output(saved, tmp_path, monkeypatch):
    import npctr.io
    model, path = saved
    write_npz(tmp_path / "in.npz", _data())
    calls = []

    def interrupt(x, batch_size):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros((len(x["user"]), 1))
    monkeypatch.setattr(model, "predict", interrupt)
    monkeypatch.setattr(npctr.io, "load_model", lambda p: model)
    outputs = ["s.csv", "s.npz"]
    if importlib.util.find_spec("pyarrow") is not None:      # parquet output needs the extra
        outputs.append("s.parquet")
    for out in outputs:
        calls.clear()
        code, err = _run([path, "-i", tmp_path / "in.npz", "-o", tmp_path / out, "--batch-size", "10"], tmp_path)
        assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "model.npz"]


def test_npz_fortran_order_compressed_and_damaged(saved, tmp_path):
    model, path = saved
    x = _data()
    np.savez(tmp_path / "f.npz", **{k: np.asfortranarray(v) for k, v in x.items()})
    np.savez_compressed(tmp_path / "c.npz", **x)
    for name in ("f.npz", "c.npz"):
        assert main([str(path), "-i", str(tmp_path / name), "-o", str(tmp_path / "s.npz"), "-q"]) == 0
        np.testing.assert_array_equal(read_scores(tmp_path / "s.npz"), model.predict(x, batch_size=4096).ravel())
    data = bytearray((tmp_path / "c.npz").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)           # zero a stretch of compressed data
    (tmp_path / "d.npz").write_bytes(bytes(data))
    code, err = _run([path, "-i", tmp_path / "d.npz", "-o", tmp_path / "s2.npz"], tmp_path)
    assert code == 1 and "npctr predict: error:" in err and not (tmp_path / "s2.npz").exists()


def test_npz_with_pickled_objects_is_refused(saved, tmp_path):
    x = dict(_data())
    x["hist_item"] = np.array([list(r) for r in x["hist_item"]] + [None], dtype=object)[:-1]
    np.savez(tmp_path / "o.npz", **x)
    code, err = _run([saved[1], "-i", tmp_path / "o.npz", "-o", tmp_path / "s.csv"], tmp_path)
    assert code == 1 and "array 'hist_item' holds Python objects (pickled); refusing to load it" in err


def test_malformed_csv_is_a_clear_error(saved, tmp_path):
    write_csv(tmp_path / "in.csv", _data(5))
    with open(tmp_path / "in.csv", "a") as f:
        f.write('"' + "1" * 200_000 + '"\n')          # longer than the csv module's field size limit
    code, err = _run([saved[1], "-i", tmp_path / "in.csv", "-o", tmp_path / "s.csv"], tmp_path)
    assert code == 1 and "line 7: not valid CSV: field larger than field limit" in err, err
