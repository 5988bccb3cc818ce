"""Batch scoring on Dask: ``npctr.dask.predict(model_path, ddf)``.

Each partition is scored by a task that receives the model file's *path* (or an fsspec URL
such as ``s3://bucket/din.npz``), never a model object: the worker process loads the file
itself and keeps it, keyed by the path and the file's modification time and size, for the
partitions that follow (a rewritten file is reloaded). Columns are decoded as ``python -m npctr predict`` decodes them
(:mod:`npctr.tabular`: histories as list columns or ``name_0 .. name_{T-1}``). Needs the
optional extra ``dask`` (dask[dataframe], distributed, pyarrow); see ``docs/dask.md``.
"""
import os
import shutil
import tempfile
import threading

import numpy as np

from .tabular import FeatureDecoder, TableError, frame_table, check_columns, unread_inputs

SCORE = "score"
DEFAULT_BATCH_SIZE = 4096

_MODELS = {}                 # (path, mtime_ns, size) -> model, per worker process
_MODELS_LOCK = threading.Lock()
_MAX_MODELS = 4


def _is_url(path):
    return "://" in path


def _version(path):
    """What changes when the file is rewritten: (modification time or ETag, size)."""
    if not _is_url(path):
        stat = os.stat(path)
        return stat.st_mtime_ns, stat.st_size
    import fsspec
    fs, inner = fsspec.core.url_to_fs(path)
    info = fs.info(inner)
    stamp = next((info[k] for k in ("mtime", "LastModified", "ETag", "etag", "md5Hash", "created") if k in info),
                 None)
    return str(stamp), info.get("size")


def _load(path):
    from ..io import load_model
    if not _is_url(path):
        return load_model(path)
    import fsspec
    with fsspec.open(path, "rb") as src, tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    try:
        return load_model(dst.name)
    finally:
        os.unlink(dst.name)


def cached_model(path):
    """The model saved at ``path`` (a path or an fsspec URL), loaded once per process and file
    version (modification time or ETag, and size)."""
    key = (path,) + _version(path)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _load(path)
            for old in [k for k in _MODELS if k[0] == path] + list(_MODELS)[:max(len(_MODELS) + 1 - _MAX_MODELS, 0)]:
                _MODELS.pop(old, None)
            _MODELS[key] = model
    return model


def _score_partition(frame, path, batch_size, columns, partition_info=None):
    import pandas as pd
    model = cached_model(path)
    dtype = model.dtype or np.float64
    if not len(frame):
        return pd.Series(np.zeros(0, dtype=dtype), index=frame.index, name=SCORE)
    try:
        decoder = FeatureDecoder(model, columns)
        x = decoder.decode(frame_table(frame, decoder.columns))
    except TableError as exc:
        where = f"partition {(partition_info or {}).get('number', '?')}"
        if exc.row is not None:      # the decoder counts rows within the partition
            label = frame.index[exc.row]
            where += f", index label {getattr(label, 'item', lambda: label)()!r}"
        raise TableError(f"{where}: {exc}", exc.row, exc.column) from None
    return pd.Series(model.predict(x, batch_size=batch_size).reshape(-1), index=frame.index, name=SCORE)


def predict(model_path, ddf, batch_size=None):
    """Scores of every row of ``ddf`` with the model saved at ``model_path``, as a lazy dask Series.

    Parameters
    ----------
    model_path : str or path-like
        A model file (``model.save``) that every worker can read at this path (shared storage;
        relative paths are made absolute here), or an fsspec URL (``s3://...``, ``gs://...``,
        needs the filesystem's fsspec package on every worker). This process reads only the
        file's config, to check the columns and the score dtype now rather than on the workers.
    ddf : dask.dataframe.DataFrame
        The model's inputs as columns (extra columns are ignored; a DIEN's negative histories
        ``neg_hist_<x>`` may be left out, as scoring never reads them).
    batch_size : int, optional
        Rows per ``model.predict`` batch inside a partition (default 4096).

    Returns
    -------
    dask.dataframe.Series named ``score``, one value per row, with ``ddf``'s index, partitions
    and order, dtype the model's (float32 or float64). Nothing is computed until ``.compute()``.

    Raises ``TableError`` (a ValueError) now for a missing column, and when computed for a bad
    value, naming the partition, the row in it and its index label, and the column.
    """
    import pandas as pd
    import dask.dataframe as dd
    from .._validation import check_positive_int
    from ..feature_column import build_input_features, feature_columns_from_config
    from ..io import read_model_config
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"ddf must be a dask.dataframe.DataFrame, got {type(ddf).__name__}")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else check_positive_int(batch_size, "batch_size")
    path = os.fspath(model_path)
    if _is_url(path):
        import fsspec
        with fsspec.open(path, "rb") as f:          # np.load reads only the config's zip member
            cls_name, config = read_model_config(f)
    else:
        path = os.path.abspath(path)
        cls_name, config = read_model_config(path)
    if "dnn_feature_columns" not in config:
        raise TypeError(f"{path!r} holds a {cls_name}, which is not built from feature columns; "
                        "npctr.dask.predict scores DIN, DIEN and DNNModel files")
    inputs = build_input_features(feature_columns_from_config(config["dnn_feature_columns"]))
    check_columns(list(ddf.columns), "ddf")
    # a missing column fails here (a DIEN's negative histories may be left out: scoring never reads them)
    columns = FeatureDecoder(inputs, list(ddf.columns), unread_inputs(class_name=cls_name, config=config)).columns
    dtype = np.dtype(config.get("dtype") or "float64")
    meta = pd.Series(np.zeros(0, dtype=dtype), name=SCORE, index=ddf._meta.index)
    return ddf[columns].map_partitions(_score_partition, path, batch_size, columns, meta=meta,
                                       enforce_metadata=False, transform_divisions=False,
                                       align_dataframes=False)


__all__ = ["predict", "cached_model"]