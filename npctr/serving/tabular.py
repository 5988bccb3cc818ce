"""Feature dicts from tables: the column decoding that ``python -m npctr predict`` and
``npctr.dask`` share.

A *table* is a mapping column name -> column, one entry per row, where a column is

* a 1-D array (numbers, or strings as a CSV holds them; a string cell of a list-valued
  feature may be ``"[1, 2, 3]"``, ``"1 2 3"`` or ``"1;2;3"``),
* a 2-D array ``(rows, width)`` (a history in an ``.npz``), or
* a :class:`Ragged` list column (Arrow/parquet lists, pandas object columns of lists).

Each model input is read from the column of its name or, for a history ``(batch, maxlen)``
or a ``DenseFeat`` of ``dimension > 1``, from either one list-valued column of that name
or the columns ``name_0 .. name_{w-1}``. A DIEN's negative histories (``neg_hist_<x>``, read only
by its auxiliary loss in training) may be left out of a table (:func:`unread_inputs`); when
present they are read and checked. :class:`FeatureDecoder` checks every value and
raises :class:`TableError` naming the row (0-based, counted from the first data row) and the
column: a missing column, a wrong history length, a non-integer id, an id out of the
vocabulary, a negative length, a missing value, NaN or infinity in a dense feature.
NumPy only (an Arrow array is converted by :func:`ragged_from_arrow`, which needs pyarrow
only when called with one).
"""
import re
from typing import NamedTuple

import numpy as np

from ..feature_column import DenseFeat, VarLenSparseFeat


class TableError(ValueError):
    """A table cannot be scored; ``row`` (0-based) and ``column`` say where, when known."""

    def __init__(self, message, row=None, column=None):
        super().__init__(message)
        self.row, self.column = row, column


class Ragged(NamedTuple):
    """A list column: row ``i`` holds ``values[offsets[i]:offsets[i + 1]]``."""
    values: np.ndarray
    offsets: np.ndarray      # (rows + 1,) int64, offsets[0] == 0

    def __len__(self):
        return len(self.offsets) - 1


class _Field(NamedTuple):
    name: str
    kind: str               # 'id', 'length', 'ids' (a history) or 'dense'
    width: int              # values per row
    vocabulary_size: object  # int for ids, else None


def check_columns(columns, where):
    """A TableError if a column name appears twice (which one would be read is anyone's guess)."""
    seen, twice = set(), []
    for c in columns:
        if c in seen and c not in twice:
            twice.append(c)
        seen.add(c)
    if twice:
        raise TableError(f"{where}: the column{'s' if len(twice) > 1 else ''} {_listing(twice)} appear"
                         f"{'' if len(twice) > 1 else 's'} more than once", column=twice[0])


def _listing(names, limit=20):
    """At most ``limit`` names for a message (a table may have 50,000 columns)."""
    names = list(names)
    if len(names) <= limit:
        return repr(names)
    return repr(names[:limit])[:-1] + f", ... and {len(names) - limit} more]"


def _show(value):
    """A cell's value as a user wrote it: ``474.5``, ``'abc'`` (not NumPy 2's ``np.float64(474.5)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _number(value):
    """A number as the table holds it: a CSV cell's own text (``99999999999999999999``, not the
    int64 it would wrap to), or a NumPy scalar's plain value."""
    if isinstance(value, str):
        return value.strip()
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))             # a list cell's id, parsed as a float: 7, not 7.0
    return str(value)


def _cell_values(cell):
    if isinstance(cell, str):
        return [v for v in re.split(r"[,;\s]+", cell.strip().strip("[]()")) if v]
    return cell


def ragged_from_cells(cells, row0, column):
    """A :class:`Ragged` from a 1-D object/str array whose cells are sequences or list strings."""
    if len(cells) and not isinstance(cells[0], str):
        try:      # lists or arrays of numbers (pandas, dask): one concatenate, no per-cell arrays
            lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
            offsets = np.zeros(len(cells) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            values = np.concatenate(list(cells)) if offsets[-1] else np.zeros(0, dtype=np.int64)
            if values.ndim == 1 and values.dtype.kind in "biuf":
                return Ragged(values, offsets)
        except (TypeError, ValueError):
            pass          # a missing or malformed cell: the loop below names its row
    lengths = np.empty(len(cells), dtype=np.int64)
    parts = []
    for i, cell in enumerate(cells):
        if cell is None or (isinstance(cell, float) and cell != cell):
            raise TableError(f"row {row0 + i}, column {column!r}: missing value (expected a list)",
                             row0 + i, column)
        values = _cell_values(cell)
        if not hasattr(values, "__len__"):
            raise TableError(f"row {row0 + i}, column {column!r}: expected a list of values, got {cell!r}",
                             row0 + i, column)
        lengths[i] = len(values)
        parts.append(np.asarray(values))
    offsets = np.zeros(len(cells) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    non_empty = [p.reshape(-1) for p in parts if len(p)]
    values = np.concatenate(non_empty) if non_empty else np.zeros(0, dtype=np.int64)
    return Ragged(values, offsets)


def _first_null(array):
    return int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])


def ragged_from_arrow(array, row0, column):
    """A table column from a pyarrow Array or ChunkedArray: a :class:`Ragged` for a list type,
    else a 1-D NumPy array. A null anywhere is a :class:`TableError` naming its row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        row = row0 + _first_null(array)
        raise TableError(f"row {row}, column {column!r}: missing value", row, column)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or \
            pa.types.is_fixed_size_list(array.type):
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
        values = array.flatten()
        if values.null_count:
            at = _first_null(values)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            row = int(np.searchsorted(offsets, at, side="right") - 1)
            raise TableError(f"row {row0 + row}, column {column!r}: missing value in the list "
                             f"(position {at - offsets[row]})", row0 + row, column)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Ragged(values.to_numpy(zero_copy_only=False), offsets)
    return array.to_numpy(zero_copy_only=False)


def _fields(model):
    inputs = model if isinstance(model, dict) else getattr(model, "input_features", None)
    if inputs is None:
        raise TypeError(f"scoring tables needs a model built from feature columns (DIN, DIEN, DNNModel), "
                        f"got {type(model).__name__}")
    fields = []
    for name, fc in inputs.items():
        if isinstance(fc, DenseFeat):
            fields.append(_Field(name, "dense", fc.dimension, None))
        elif isinstance(fc, VarLenSparseFeat) and name == fc.name:
            fields.append(_Field(name, "ids", fc.maxlen, fc.vocabulary_size))
        elif isinstance(fc, VarLenSparseFeat):
            fields.append(_Field(name, "length", 1, None))
        else:
            fields.append(_Field(name, "id", 1, fc.vocabulary_size))
    return fields


def unread_inputs(model=None, class_name=None, config=None):
    """The inputs a model declares but never reads when it scores: a DIEN's negative histories
    (``neg_hist_<x>``, used only by the auxiliary loss in training). From a model, or from a model
    file's ``class_name`` and ``config`` (``io.read_model_config``)."""
    if model is not None:
        return [fc.name for fc in getattr(model, "negative_columns", ())]
    if class_name != "DIEN":
        return []
    return [f"neg_hist_{name}" for name in config.get("history_feature_list", ())]


class FeatureDecoder:
    """Turns table chunks into the feature dict ``model.predict`` takes, checking every value.

    Parameters
    ----------
    model : DIN, DIEN or DNNModel (anything with feature columns), or its inputs
        ``{input name: feature column}`` (``build_input_features(columns)``)
    columns : sequence of str
        The table's column names; which ones feed which input is resolved once, here
        (a missing column is a :class:`TableError`).
    optional : sequence of str, optional
        Inputs the table may leave out (default: :func:`unread_inputs` of ``model``, a DIEN's
        negative histories): absent, they are zeros, which scoring never reads; present, they
        are decoded and checked like any input.
    """

    def __init__(self, model, columns, optional=None):
        self.fields = _fields(model)
        available = list(columns)
        present = set(available)
        optional = set(unread_inputs(None if isinstance(model, dict) else model) if optional is None else optional)
        self.sources = {}                 # feature name -> list of source column names (empty: zeros)
        for f in self.fields:
            split = [f"{f.name}_{i}" for i in range(f.width)]
            if f.name in optional and f.name not in present and not any(c in present for c in split):
                self.sources[f.name] = []
            elif f.name in present:
                self.sources[f.name] = [f.name]
            elif f.width > 1 and all(c in present for c in split):
                if f"{f.name}_{f.width}" in present:
                    raise TableError(f"column {f.name + '_' + str(f.width)!r}: wrong history length: the "
                                     f"columns {f.name}_0.. run past {f.name}_{f.width - 1}, but feature "
                                     f"{f.name!r} has {f.width} values per row", column=f"{f.name}_{f.width}")
                self.sources[f.name] = split
            else:
                have = [c for c in split if c in present] if f.width > 1 else []
                what = (f"a column {f.name!r} of lists of {f.width} values or the columns "
                        f"{split[0]}..{split[-1]}" if f.width > 1 else f"a column {f.name!r}")
                also = f" (found {len(have)} of the {f.width} split columns)" if have else ""
                raise TableError(f"missing column {f.name!r}: the model's input {f.name!r} ({f.kind}) needs "
                                 f"{what}{also}; the table has columns {_listing(available)}", column=f.name)

    @property
    def columns(self):
        """Every table column the model reads, in input order."""
        return [c for f in self.fields for c in self.sources[f.name]]

    def decode(self, table, row0=0):
        """The feature dict of one chunk; ``row0`` is the chunk's first row in the whole table."""
        out, absent = {}, []
        for f in self.fields:
            names = self.sources[f.name]
            if not names:
                absent.append(f)
                continue
            if len(names) == 1:
                values, labels = self._one_column(table[names[0]], f, row0), [names[0]]
                if f.width > 1:
                    labels = [f"{names[0]}[{j}]" for j in range(f.width)]
            else:
                values = np.stack([self._scalar(table[c], c, row0) for c in names], axis=1)
                labels = names
            out[f.name] = (self._floats if f.kind == "dense" else self._ints)(values, f, labels, row0)
        n = {len(v) for v in out.values()}
        if len(n) > 1:
            raise TableError(f"the columns of a chunk have different lengths: "
                             f"{ {k: len(v) for k, v in out.items()} }")
        rows = next(iter(n), 0)
        for f in absent:                  # inputs scoring never reads, left out of the table
            out[f.name] = np.zeros((rows, f.width), np.int64)
        return {f.name: out[f.name] for f in self.fields}

    # -- shapes -----------------------------------------------------------------------------
    @staticmethod
    def _scalar(column, name, row0):
        if isinstance(column, Ragged) or np.ndim(column) != 1:
            raise TableError(f"column {name!r} must hold one value per row, got "
                             f"{'lists' if isinstance(column, Ragged) else f'shape {np.shape(column)}'}",
                             column=name)
        return np.asarray(column)

    def _one_column(self, column, f, row0):
        name = f.name
        if not isinstance(column, Ragged):
            column = np.asarray(column)
            if column.ndim == 2:
                if column.shape[1] != f.width:
                    raise TableError(f"column {name!r} has {column.shape[1]} values per row, feature {name!r} "
                                     f"needs {f.width}" + (" (wrong history length)" if f.kind == "ids" else ""),
                                     column=name)
                return column
            if column.ndim != 1:
                raise TableError(f"column {name!r} must be 1-D or 2-D, got shape {column.shape}", column=name)
            if f.width == 1 and column.dtype.kind != "O":
                return column.reshape(-1, 1)
            if column.dtype.kind not in "OUS":
                raise TableError(f"column {name!r} holds one number per row, but feature {name!r} needs "
                                 f"{f.width} values per row: give lists or columns {name}_0..{name}_{f.width - 1}",
                                 column=name)
            if f.width == 1 and not any(isinstance(c, (list, tuple, np.ndarray)) for c in column[:1]):
                return column.reshape(-1, 1)
            column = ragged_from_cells(column, row0, name)
        column = self._numbers(column, f, row0)
        lengths = np.diff(column.offsets)
        bad = np.flatnonzero(lengths != f.width)
        if bad.size:
            i = int(bad[0])
            what = "wrong history length" if f.kind == "ids" else "wrong number of values"
            raise TableError(f"row {row0 + i}, column {name!r}: {what}: {int(lengths[i])} values, feature "
                             f"{name!r} has {f.width}", row0 + i, name)
        return np.asarray(column.values).reshape(-1, f.width)

    @staticmethod
    def _numbers(column, f, row0):
        """The list column with text values parsed as numbers (once: ``_ints`` / ``_floats`` then
        check them); a value that is not a number is a TableError naming the row, the list
        position and the value, before any length is compared."""
        values = np.asarray(column.values)
        if values.dtype.kind not in "OUS" or not values.size:
            return column
        try:
            return Ragged(values.astype(np.float64), column.offsets)
        except (ValueError, TypeError):
            pass
        for k, v in enumerate(values):
            try:
                float(v)
            except (ValueError, TypeError):
                i = int(np.searchsorted(column.offsets, k, side="right") - 1)
                expected = "a number" if f.kind == "dense" else "an integer id"
                raise TableError(f"row {row0 + i}, column {f.name!r}: {_show(v)} (position {k - column.offsets[i]} "
                                 f"of the list) is not {expected}", row0 + i, f.name) from None
        return Ragged(np.array([float(v) for v in values], dtype=np.float64), column.offsets)

    # -- values -----------------------------------------------------------------------------
    @staticmethod
    def _where(mask, labels, row0):
        i, j = np.unravel_index(int(np.flatnonzero(mask.reshape(-1))[0]), mask.shape)
        return row0 + int(i), labels[int(j)], (int(i), int(j))

    def _ints(self, values, f, labels, row0):
        if values.dtype.kind in "iu":
            numbers = values
        else:
            numbers = self._as_float(values, labels, row0, "an integer id" if f.kind != "length" else "a length")
            bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
            if bad.any():
                row, col, at = self._where(bad, labels, row0)
                what = "missing value" if numbers[at] != numbers[at] else f"{_show(values[at])} is not an integer"
                raise TableError(f"row {row}, column {col!r}: {what} (feature {f.name!r} holds integer "
                                 f"{'ids' if f.kind != 'length' else 'lengths'})", row, col)
        # bounds on the values as given, before the cast to int64 (which would wrap 1e20 or a huge uint64)
        if f.kind == "length":
            bad = numbers < 0
            if not bad.any():
                bad = numbers > np.iinfo(np.int64).max
            if bad.any():
                row, col, at = self._where(bad, labels, row0)
                problem = "is negative" if numbers[at] < 0 else "is too large"
                raise TableError(f"row {row}, column {col!r}: length {_number(values[at])} {problem}", row, col)
        else:
            bad = (numbers < 0) | (numbers >= f.vocabulary_size)
            if bad.any():
                row, col, at = self._where(bad, labels, row0)
                raise TableError(f"row {row}, column {col!r}: id {_number(values[at])} is out of the vocabulary "
                                 f"[0, {f.vocabulary_size}) of feature {f.name!r}", row, col)
        return numbers.astype(np.int64, copy=False)

    def _floats(self, values, f, labels, row0):
        floats = self._as_float(values, labels, row0, "a number")
        bad = ~np.isfinite(floats)
        if bad.any():
            row, col, at = self._where(bad, labels, row0)
            what = "NaN (or a missing value)" if floats[at] != floats[at] else _show(floats[at])
            raise TableError(f"row {row}, column {col!r}: {what} in the dense feature {f.name!r}", row, col)
        return floats

    def _as_float(self, values, labels, row0, expected):
        if values.dtype.kind in "biuf":
            if values.dtype.kind == "b":
                raise TableError(f"column {labels[0]!r}: booleans, expected {expected}", column=labels[0])
            return values.astype(np.float64, copy=False)
        out = np.empty(values.shape, dtype=np.float64)
        flat, target = values.reshape(-1), out.reshape(-1)
        try:
            target[...] = flat.astype(np.float64)
        except (ValueError, TypeError):
            for k, v in enumerate(flat):         # only on failure: find the cell that is not a number
                try:
                    target[k] = float(v) if not (isinstance(v, str) and not v.strip()) else np.nan
                except (ValueError, TypeError):
                    i, j = np.unravel_index(k, values.shape)
                    row, col = row0 + int(i), labels[int(j)]
                    raise TableError(f"row {row}, column {col!r}: {_show(v)} is not {expected}", row, col) from None
        return out


def frame_table(frame, columns):
    """A table of the given ``columns`` of a pandas DataFrame: NumPy columns, list columns
    (object columns of lists/arrays, Arrow list dtypes) as :class:`Ragged`. pandas is not
    imported here: the frame brings it."""
    table = {}
    for c in columns:
        series = frame[c]
        if getattr(series.dtype, "pyarrow_dtype", None) is not None:      # pd.ArrowDtype
            import pyarrow as pa
            table[c] = ragged_from_arrow(pa.array(series), 0, c)
            continue
        if series.dtype.kind == "O":
            cells = series.to_numpy(dtype=object)
            first = next((v for v in cells if v is not None), None)
            if isinstance(first, (list, tuple, np.ndarray)):
                table[c] = ragged_from_cells(cells, 0, c)
                continue
            table[c] = cells
        elif series.dtype.kind in "biuf":
            table[c] = series.to_numpy()
        else:   # nullable extension dtypes (Int64, Float64, string): missing values become NaN / None
            try:
                table[c] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                table[c] = series.to_numpy(dtype=object)
    return table
