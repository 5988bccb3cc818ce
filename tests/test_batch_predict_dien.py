"""A saved DIEN scored from files: ``python -m npctr predict`` (``.npz``, ``.csv``, ``.parquet``; histories as
list columns or ``name_0 .. name_{T-1}``) and ``npctr.dask.predict`` equal ``model.predict``. The negative
histories, inputs DeepCTR's DIEN declares but inference never reads, may be left out of a table (then
zeros); when present they are read and checked like any input."""
import numpy as np
import pytest

from npctr.serving.batch_predict import main, score_file
from npctr.serving.tabular import FeatureDecoder, TableError, unread_inputs
from npctr.io import read_model_config
from test_batch_predict import WRITE, read_scores
from test_inference_dien import T, dien, features, lengths_of

N = 41
NEGATIVES = ("neg_hist_item_id", "neg_hist_cate_id")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("dien") / "dien.npz"
    model, cols = dien("AUGRU", "tf_keras", dtype="float32")        # pooled sequences, dense features, negatives
    model.save(path)
    rng = np.random.default_rng(1)
    return model, path, features(cols, N, rng, lengths_of(N, rng))


def without_negatives(x):
    return {k: v for k, v in x.items() if k not in NEGATIVES}


@pytest.mark.parametrize("negatives", [True, False])
@pytest.mark.parametrize("src,split", [(".npz", False), (".npz", True), (".csv", True), (".csv", False),
                                       (".parquet", False), (".parquet", True)])
def test_every_format_equals_predict(src, split, negatives, saved, tmp_path):
    if src == ".parquet":
        pytest.importorskip("pyarrow")
    model, path, x = saved
    data = tmp_path / f"in{src}"
    WRITE[src](data, x if negatives else without_negatives(x), split=split)
    assert main([str(path), "-i", str(data), "-o", str(tmp_path / "out.npz"), "-q", "--batch-size", "16"]) == 0
    np.testing.assert_array_equal(read_scores(tmp_path / "out.npz"), model.predict(x, batch_size=16).reshape(-1))


def test_negatives_are_optional_but_checked_when_given(saved, tmp_path):
    model, path, x = saved
    assert unread_inputs(model) == list(NEGATIVES)
    assert unread_inputs(class_name="DIEN", config=read_model_config(path)[1]) == list(NEGATIVES)
    assert unread_inputs(class_name="DIN", config={"history_feature_list": ["item_id"]}) == []
    decoder = FeatureDecoder(model, list(without_negatives(x)))
    assert not set(NEGATIVES) & set(decoder.columns)
    decoded = decoder.decode({k: np.asarray(v) for k, v in without_negatives(x).items()})
    assert list(decoded) == model.feature_names and decoded["neg_hist_item_id"].shape == (N, T)
    assert not decoded["neg_hist_item_id"].any()
    bad = dict(x, neg_hist_cate_id=x["neg_hist_cate_id"] + 100)         # given: read and checked
    with pytest.raises(TableError, match="neg_hist_cate_id"):
        FeatureDecoder(model, list(bad)).decode(bad)
    assert score_file(model, _write(tmp_path, without_negatives(x)), tmp_path / "s.npz") == N
    with pytest.raises(TableError, match="missing column 'hist_item_id'"):      # a history is not optional
        FeatureDecoder(model, [k for k in x if k != "hist_item_id"])


def _write(tmp_path, x):
    WRITE[".npz"](tmp_path / "x.npz", x)
    return tmp_path / "x.npz"


def test_dask_scores_a_dien(saved, tmp_path):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    pytest.importorskip("pyarrow")
    import npctr.dask as npctr_dask
    model, path, x = saved
    frame = pd.DataFrame({k: (list(v) if np.ndim(v) == 2 and np.shape(v)[1] > 1 else np.reshape(v, -1))
                          for k, v in without_negatives(x).items()})
    frame = frame.drop(columns="vec").assign(vec_0=x["vec"][:, 0], vec_1=x["vec"][:, 1])
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    scores = npctr_dask.predict(path, ddf, batch_size=7)
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores.compute(scheduler="sync").to_numpy(),
                                  model.predict(x, batch_size=7).reshape(-1))
