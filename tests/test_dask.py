"""``npctr.dask.predict``: a saved model scores a parquet data set on a 2-process LocalCluster and
gets exactly the local ``predict`` (with batches aligned to the partitions: BLAS may round a row
differently, by an ulp, in a batch of another size); errors name the partition, row, index label and column."""
import numpy as np
import pytest

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("pyarrow")

import npctr.dask as npctr_dask  # noqa: E402
from npctr.feature_column import SparseFeat, VarLenSparseFeat, DenseFeat  # noqa: E402
from npctr.models import DIN, DNNModel  # noqa: E402
from npctr.serving.tabular import TableError  # noqa: E402

T = 5
N = 240


def _model(dtype="float64"):
    columns = [SparseFeat("user", 9, embedding_dim=3), SparseFeat("item", 12, embedding_dim=4),
               DenseFeat("ctx", 2),
               VarLenSparseFeat(SparseFeat("hist_item", 12, embedding_dim=4, embedding_name="item"), T),
               VarLenSparseFeat(SparseFeat("tags", 7, embedding_dim=2), 3, combiner="max")]
    return DIN(columns, ["item"], dnn_hidden_units=(6,), att_hidden_size=(5,), dnn_use_bn=True, seed=5,
               dtype=dtype)


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, n)
    return {"user": rng.integers(0, 9, n), "item": rng.integers(1, 12, n), "ctx": rng.normal(size=(n, 2)),
            "hist_item": np.where(np.arange(T) < lengths[:, None], rng.integers(1, 12, (n, T)), 0),
            "tags": rng.integers(0, 7, (n, 3))}


def _frame(x, index=None):
    """Histories as list columns, ``ctx`` as ctx_0/ctx_1, plus a label column the model ignores."""
    frame = pd.DataFrame({"user": x["user"], "item": x["item"], "ctx_0": x["ctx"][:, 0], "ctx_1": x["ctx"][:, 1],
                          "hist_item": list(x["hist_item"]), "tags": list(x["tags"]),
                          "label": np.zeros(len(x["user"]))})
    frame.index = np.arange(len(frame)) * 3 + 1000 if index is None else index
    frame.index.name = "row_id"
    return frame


@pytest.fixture
def saved(tmp_path):
    model = _model()
    model.save(tmp_path / "model.npz")
    return model, str(tmp_path / "model.npz")


def test_local_cluster_two_processes_equals_local_predict(saved, tmp_path):
    distributed = pytest.importorskip("distributed")
    model, path = saved
    x = _data()
    _frame(x).to_parquet(tmp_path / "data.parquet", row_group_size=30)
    ddf = dd.read_parquet(tmp_path / "data.parquet", split_row_groups=True)
    assert ddf.npartitions == 8
    scores = npctr_dask.predict(path, ddf, batch_size=30)     # lazy: nothing computed yet
    assert scores.dtype == np.float64 and scores.name == "score"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        result = scores.compute()
        loaded = client.run(lambda: [key[0] for key in __import__("npctr.serving.dask").serving.dask._MODELS])
    assert len(loaded) == 2 and all(paths == [path] for paths in loaded.values())   # each worker loaded it once
    np.testing.assert_array_equal(result.index, _frame(x).index)
    np.testing.assert_array_equal(result.to_numpy(), model.predict(x, batch_size=30).reshape(-1))


def test_no_model_object_is_pickled(saved, tmp_path, monkeypatch):
    model, path = saved
    x = _data(50)
    ddf = dd.from_pandas(_frame(x), npartitions=5)
    assert ddf.map_partitions(len).compute(scheduler="sync").tolist() == [10] * 5

    def refuse(self, protocol):
        raise AssertionError("a model object was pickled")
    monkeypatch.setattr(DIN, "__reduce_ex__", refuse)
    import cloudpickle
    graph = npctr_dask.predict(path, ddf).__dask_graph__()
    cloudpickle.dumps(dict(graph))      # every task: a path and column names, no model
    result = npctr_dask.predict(path, ddf).compute(scheduler="sync")
    np.testing.assert_array_equal(result.to_numpy(), model.predict(x, batch_size=10).reshape(-1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_meta_dtype_order_and_arrow_lists(dtype, tmp_path):
    model = _model(dtype)
    model.save(tmp_path / "m.npz")
    x = _data(60)
    frame = _frame(x, index=np.random.default_rng(1).permutation(60))      # an unsorted index keeps its order
    frame["hist_item"] = frame["hist_item"].map(list).astype(pd.ArrowDtype(__import__("pyarrow").list_(
        __import__("pyarrow").int64())))
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    assert ddf.map_partitions(len).compute(scheduler="sync").tolist() == [15] * 4
    scores = npctr_dask.predict(tmp_path / "m.npz", ddf)
    assert scores.dtype == np.dtype(dtype)
    result = scores.compute(scheduler="sync")
    assert result.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(result.index, frame.index)
    np.testing.assert_array_equal(result.to_numpy(), model.predict(x, batch_size=15).reshape(-1))


def test_rewritten_model_file_is_reloaded(tmp_path):
    x = _data(20)
    path = tmp_path / "m.npz"
    first = _model()
    first.save(path)
    ddf = dd.from_pandas(_frame(x), npartitions=2)
    assert ddf.map_partitions(len).compute(scheduler="sync").tolist() == [10, 10]
    a = npctr_dask.predict(path, ddf).compute(scheduler="sync")
    second = DNNModel(first.dnn_feature_columns, dnn_hidden_units=(3,), seed=9)
    second.save(path)
    b = npctr_dask.predict(path, ddf).compute(scheduler="sync")
    np.testing.assert_array_equal(a.to_numpy(), first.predict(x, batch_size=10).reshape(-1))
    np.testing.assert_array_equal(b.to_numpy(), second.predict(x, batch_size=10).reshape(-1))


def test_errors(saved, tmp_path):
    _, path = saved
    x = _data(40)
    frame = _frame(x)
    with pytest.raises(TableError, match="missing column 'item'"):          # now, not at compute time
        npctr_dask.predict(path, dd.from_pandas(frame.drop(columns="item"), npartitions=2))
    x["tags"][27, 1] = 7
    ddf = dd.from_pandas(_frame(x), npartitions=4)                        # partitions of 10 rows
    with pytest.raises(TableError, match=r"partition 2, index label 1081: row 7, column 'tags\[1\]': "
                                         r"id 7 is out of the vocabulary \[0, 7\)"):
        npctr_dask.predict(path, ddf).compute(scheduler="sync")
    with pytest.raises(TypeError, match="must be a dask.dataframe.DataFrame"):
        npctr_dask.predict(path, frame)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        npctr_dask.predict(path, ddf, batch_size=0)


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_model_from_an_fsspec_url(scheme, saved, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    model, path = saved
    if scheme == "file":
        url = "file://" + path
    else:           # a filesystem that is not a local path (one process: the sync scheduler)
        url = "memory://models/din.npz"
        with open(path, "rb") as src, fsspec.open(url, "wb") as dst:
            dst.write(src.read())
    x = _data(20)
    ddf = dd.from_pandas(_frame(x), npartitions=2)
    result = npctr_dask.predict(url, ddf).compute(scheduler="sync")
    np.testing.assert_array_equal(result.to_numpy(), model.predict(x, batch_size=10).reshape(-1))
    assert any(key[0] == url for key in npctr_dask._MODELS)
