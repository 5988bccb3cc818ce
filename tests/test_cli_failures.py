"""Issue 17, points 6, 7 and 9: the command line loses nothing, says every failure in one line, and
messages name the values a user wrote.

6. ``predict`` never writes over its input or model (links included), creates its output as
   ``open`` would (the umask; a replaced file keeps its mode), and cleans up after a killed run;
7. every failure of ``predict``, ``export-onnx``, ``demo --plot`` and the loaders is one line on
   stderr with exit status 1 (bad data) or 2 (bad usage); ``python -m npctr --version``;
9. the smaller message defects.
"""
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from npctr import __main__ as cli
from npctr._version import __version__
from npctr.serving import batch_predict
from npctr.serving.batch_predict import main as predict_main

from test_batch_predict import _data, _model, _run, read_scores, write_csv, write_npz, ROOT

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import hostile_files  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def setup(tmp_path):
    model = _model()
    model.save(tmp_path / "model.npz")
    write_csv(tmp_path / "in.csv", _data())
    return tmp_path, str(tmp_path / "model.npz"), str(tmp_path / "in.csv")


def one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 6. the output is never the input, follows the umask, and leaves no temp file ------------------------------
def test_output_that_is_the_input_or_the_model_is_refused(setup):
    tmp, model, inp = setup
    before = open(inp, "rb").read()
    os.symlink(inp, tmp / "link.csv")
    os.link(inp, tmp / "hard.csv")
    for args, what in [([model, "-i", inp, "-o", inp], "input"),
                       ([model, "-i", inp, "-o", tmp / "link.csv"], "input"),
                       ([model, "-i", tmp / "hard.csv", "-o", inp], "input"),
                       ([model, "-i", inp, "-o", tmp / "sub" / ".." / "in.csv"], "input"),
                       ([model, "-i", inp, "-o", model], "model")]:
        (tmp / "sub").mkdir(exist_ok=True)
        code, err = _run(args, tmp)
        assert code == 2 and f"is the {what} file" in one_line(err), err
    assert open(inp, "rb").read() == before
    assert os.path.islink(tmp / "link.csv")


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_output_mode_follows_the_umask_or_the_replaced_file(setup):
    tmp, model, inp = setup
    old = os.umask(0o022)
    try:
        assert predict_main([model, "-i", inp, "-o", str(tmp / "a.csv"), "-q"]) == 0
        assert (tmp / "a.csv").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp / "a.csv", 0o640)
        assert predict_main([model, "-i", inp, "-o", str(tmp / "a.csv"), "-q"]) == 0      # replaced: keeps 0640
        assert (tmp / "a.csv").stat().st_mode & 0o777 == 0o640
        os.umask(0o077)
        for ext in (".csv", ".npz"):
            assert predict_main([model, "-i", inp, "-o", str(tmp / f"b{ext}"), "-q"]) == 0
            assert (tmp / f"b{ext}").stat().st_mode & 0o777 == 0o600
        os.umask(0o002)
        assert predict_main([model, "-i", inp, "-o", str(tmp / "c.npz"), "-q"]) == 0
        assert (tmp / "c.npz").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


KILLED = """
import sys, time
from npctr.serving import batch_predict
real = batch_predict.CsvWriter.write
def slow(self, scores):
    real(self, scores)
    self._f.flush()
    print("writing", flush=True)
    time.sleep(60)
batch_predict.CsvWriter.write = slow
batch_predict.main(sys.argv[1:])
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_killed_predict_leaves_a_temp_file_that_the_next_run_removes(setup):
    tmp, model, inp = setup
    out = tmp / "s.csv"
    child = subprocess.Popen([sys.executable, "-c", KILLED, model, "-i", inp, "-o", str(out), "-q"],
                             stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert child.stdout.readline().strip() == "writing"
        temps = [p.name for p in tmp.iterdir() if p.name.startswith(".s.csv.")]
        assert len(temps) == 1 and temps[0].endswith(".tmp"), temps
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not out.exists() and (tmp / temps[0]).exists()           # killed: nothing could clean up
    assert predict_main([model, "-i", inp, "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".s.csv")) == []
    assert read_scores(out).shape == (len(_data()["user"]),)


def test_a_full_disk_names_the_output_and_leaves_nothing(setup, monkeypatch):
    tmp, model, inp = setup

    def full(self, scores):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(batch_predict.CsvWriter, "write", full)
    code, err = _run([model, "-i", inp, "-o", tmp / "s.csv"], tmp)
    line = one_line(err)
    assert code == 1 and "No space left on device" in line and str(tmp / "s.csv") in line
    assert not [p for p in tmp.iterdir() if p.name.startswith((".s.csv", "s.csv"))]


def test_special_inputs_and_outputs_are_usage_errors(setup):
    tmp, model, inp = setup
    (tmp / "dir.csv").mkdir()
    code, err = _run([model, "-i", tmp / "dir.csv", "-o", tmp / "s.csv"], tmp)
    assert code == 2 and "input file" in err and "is a directory, not a regular file" in one_line(err)
    if os.name == "posix":
        os.mkfifo(tmp / "fifo.csv")
        code, err = _run([model, "-i", inp, "-o", tmp / "fifo.csv"], tmp)
        assert code == 2 and "is a FIFO" in one_line(err)
        code, err = _run([model, "-i", tmp / "fifo.csv", "-o", tmp / "s.csv"], tmp)
        assert code == 2 and "is a FIFO" in one_line(err)


# -- 7. one line, exit 1 or 2 ------------------------------------------------------------------------------
def test_version():
    run = subprocess.run([sys.executable, "-m", "npctr", "--version"], capture_output=True, text=True, env=ENV)
    assert run.returncode == 0 and run.stdout == f"npctr {__version__}\n"
    assert "--version" in cli.usage()


@pytest.mark.parametrize("kind,status", [("weight_header_1e10", 1), ("extra_member_deflated", 1),
                                         ("config_vocabulary_2e9", 1), ("truncated", 1), ("directory", 2),
                                         ("fifo", 2)])
def test_hostile_model_files_are_one_line_in_every_command(kind, status, setup):
    if kind == "fifo" and os.name != "posix":
        pytest.skip("POSIX special files")
    tmp, _, inp = setup
    base = hostile_files.base_model(str(tmp / "base.npz"))
    (tmp / "hostile").mkdir()
    hostile = hostile_files.KINDS[kind][0](str(tmp / "hostile"), base, 1024)
    for command in (["predict", hostile, "-i", inp, "-o", str(tmp / "s.csv")],
                    ["export-onnx", hostile, str(tmp / "m.onnx")]):
        run = subprocess.run([sys.executable, "-m", "npctr", *command], capture_output=True, text=True, env=ENV,
                             timeout=60)
        assert run.returncode == status, (command, run.stderr)
        line = one_line(run.stderr)
        assert line.startswith(f"npctr {command[0]}: ") and len(line) < 1100
    assert not (tmp / "s.csv").exists() and not (tmp / "m.onnx").exists()


def test_export_onnx_usage_errors(setup):
    from npctr.interop.onnx import main
    tmp, model, _ = setup
    assert main([model, model]) == 2
    assert main([str(tmp / "nope.npz"), str(tmp / "m.onnx")]) == 2
    assert main([model, str(tmp / "m.onnx"), "--check", "-1"]) == 2


def test_demo_plot_without_matplotlib_is_one_line(monkeypatch, capsys, tmp_path):
    from npctr import demo
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib -> ImportError
    with pytest.raises(SystemExit) as info:
        demo.main(["--samples", "200", "--epochs", "1", "--plot", str(tmp_path / "figs")])
    assert info.value.code == 2
    line = one_line(capsys.readouterr().err.splitlines()[-1])
    assert "--plot" in line and "pip install" in line
    (tmp_path / "file").write_text("x")
    monkeypatch.delitem(sys.modules, "matplotlib")
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit) as info:
        demo.main(["--samples", "200", "--epochs", "1", "--plot", str(tmp_path / "file")])
    assert info.value.code == 2 and "is not a directory" in capsys.readouterr().err


def test_an_unexpected_exception_is_still_one_line(monkeypatch, capsys):
    def broken(argv):
        raise RuntimeError("something nobody expected\non two lines")
    monkeypatch.setattr(batch_predict, "main", broken)
    assert cli.main(["predict"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("npctr predict: error: RuntimeError: something nobody expected on two lines")
    monkeypatch.setenv("NPCTR_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli.main(["predict"])


# -- 9. messages that name what the user wrote -----------------------------------------------------------
def test_floating_point_error_names_non_finite_weights_not_float32():
    from test_reliability import small_din
    model, x, _ = small_din(dnn_use_bn=False, dnn_dropout=0)
    model.params["dnn/kernel0"][0, 0] = np.nan
    model.weights_changed()
    with pytest.raises(FloatingPointError, match=r"weights or moving statistics hold NaN or infinite values "
                                                 r"\(\['dnn/kernel0'\]\)") as info:
        model.predict(x)
    assert "dtype='float64'" not in str(info.value)


def test_excel_csv_with_a_byte_order_mark_is_read(setup):
    tmp, model, inp = setup
    text = open(inp, encoding="utf-8").read()
    with open(tmp / "excel.csv", "w", encoding="utf-8-sig") as f:
        f.write(text)
    assert predict_main([model, "-i", str(tmp / "excel.csv"), "-o", str(tmp / "a.csv"), "-q"]) == 0
    assert predict_main([model, "-i", inp, "-o", str(tmp / "b.csv"), "-q"]) == 0
    np.testing.assert_array_equal(read_scores(tmp / "a.csv"), read_scores(tmp / "b.csv"))


def _with_cell(inp, out, row, column, value):
    lines = open(inp).read().splitlines()
    header = lines[0].split(",")
    cells = lines[row + 1].split(",")
    cells[header.index(column)] = value
    lines[row + 1] = ",".join(cells)
    open(out, "w").write("\n".join(lines) + "\n")


@pytest.mark.parametrize("column,value,message", [
    ("item", "99999999999999999999", "row 4, column 'item': id 99999999999999999999 is out of the vocabulary"),
    ("hist_item_1", "x", "row 4, column 'hist_item_1': 'x' is not an integer"),
    ("item", "474.5", "row 4, column 'item': '474.5' is not an integer"),
])
def test_bad_cells_are_named_as_written(setup, column, value, message):
    tmp, model, inp = setup
    _with_cell(inp, tmp / "bad.csv", 4, column, value)
    code, err = _run([model, "-i", tmp / "bad.csv", "-o", tmp / "s.csv"], tmp)
    assert code == 1 and message in one_line(err), err


def test_a_history_cell_of_words_is_not_an_integer_rather_than_a_wrong_length(setup):
    tmp, model, _ = setup
    x = _data()
    write_csv(tmp / "lists.csv", x, split=False)
    import csv
    rows = list(csv.reader(open(tmp / "lists.csv", newline="")))
    rows[3][rows[0].index("hist_item")] = "[a, b]"          # data row 2; the feature has 4 values per row
    with open(tmp / "lists.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    code, err = _run([model, "-i", tmp / "lists.csv", "-o", tmp / "s.csv"], tmp)
    assert code == 1 and "row 2, column 'hist_item': 'a' (position 0 of the list) is not an integer id" in err


def test_float_ids_and_huge_unsigned_ids_are_printed_as_numbers(setup):
    tmp, model, _ = setup
    x = _data()
    x["item"] = x["item"].astype(np.float64)
    x["item"][6] = 474.5
    write_npz(tmp / "f.npz", x)
    code, err = _run([model, "-i", tmp / "f.npz", "-o", tmp / "s.csv"], tmp)
    assert code == 1 and "row 6, column 'item': 474.5 is not an integer" in err and "np.float64" not in err
    x = _data()
    x["item"] = x["item"].astype(np.uint64)
    x["item"][9] = 2 ** 64 - 1
    write_npz(tmp / "u.npz", x)
    code, err = _run([model, "-i", tmp / "u.npz", "-o", tmp / "s.csv"], tmp)
    assert code == 1 and f"row 9, column 'item': id {2 ** 64 - 1} is out of the vocabulary" in err


def test_a_latin1_csv_names_file_line_and_column(setup):
    tmp, model, inp = setup
    lines = open(inp, "rb").read().split(b"\n")
    header = lines[0].split(b",")
    cells = lines[7].split(b",")
    cells[header.index(b"price")] = b"caf\xe9"
    lines[7] = b",".join(cells)
    (tmp / "latin.csv").write_bytes(b"\n".join(lines))
    code, err = _run([model, "-i", tmp / "latin.csv", "-o", tmp / "s.csv"], tmp)
    line = one_line(err)
    assert code == 1 and "latin.csv', line 8, column 'price': byte 0xe9 is not UTF-8" in line, line


def test_duplicate_columns_and_members_are_refused(setup):
    tmp, model, inp = setup
    lines = open(inp).read().splitlines()
    lines[0] = lines[0].replace("price", "user")
    open(tmp / "dup.csv", "w").write("\n".join(lines) + "\n")
    code, err = _run([model, "-i", tmp / "dup.csv", "-o", tmp / "s.csv"], tmp)
    assert code == 1 and "the column ['user'] appears more than once" in one_line(err)
    x = _data()
    members = [(k, v) for k, v in x.items()] + [("user", x["user"][::-1].copy())]
    hostile_files._write(str(tmp / "dup.npz"), members)
    code, err = _run([model, "-i", tmp / "dup.npz", "-o", tmp / "s.csv"], tmp)
    assert code == 1 and "lists array 'user' twice" in one_line(err)


def test_a_table_of_50000_columns_gives_a_short_message(setup):
    tmp, model, _ = setup
    with open(tmp / "wide.csv", "w") as f:
        f.write(",".join(f"col{i}" for i in range(50_000)) + "\n" + ",".join("1" * 50_000) + "\n")
    code, err = _run([model, "-i", tmp / "wide.csv", "-o", tmp / "s.csv"], tmp)
    line = one_line(err)
    assert code == 1 and "missing column 'user'" in line and "... and 49980 more]" in line and len(line) < 1000


def test_a_ragged_list_is_a_clear_error():
    from npctr.layers import Dense, Embedding
    for layer in (Dense(2), Embedding(5, 2)):
        with pytest.raises(ValueError, match=r"inputs must be a rectangular array .* lengths \[1, 2\]"):
            layer.forward([[1, 2], [3]])
    model = _model()
    x = {k: v.tolist() for k, v in _data(3).items()}
    x["hist_item"][1] = x["hist_item"][1][:2]
    with pytest.raises(ValueError, match=r"x\['hist_item'\] must be a rectangular array"):
        model.predict(x)


def test_oversized_npy_header_in_an_input_file_is_refused_cheaply(setup):
    tmp, model, _ = setup
    x = _data()
    members = [(k, v) for k, v in x.items() if k != "price"]
    members.append(("price", b"\x93NUMPY\x02\x00" + (2 ** 32 - 1).to_bytes(4, "little") + b"{"))
    hostile_files._write(str(tmp / "bomb.npz"), members)
    code, err = _run([model, "-i", tmp / "bomb.npz", "-o", tmp / "s.csv"], tmp)
    assert code == 1 and "array 'price': its .npy header claims 4294967295 bytes" in one_line(err)


def test_predict_and_dask_wait_for_no_fifo(setup):
    if os.name != "posix":
        pytest.skip("POSIX special files")
    tmp, _, inp = setup
    os.mkfifo(tmp / "model.fifo.npz")
    start = time.monotonic()
    code, err = _run([tmp / "model.fifo.npz", "-i", inp, "-o", tmp / "s.csv"], tmp)
    assert code == 2 and "is a FIFO" in one_line(err) and time.monotonic() - start < 10
    from npctr.io import read_model_config
    with pytest.raises(ValueError, match="is a FIFO"):
        read_model_config(tmp / "model.fifo.npz")


def test_an_input_member_with_forged_sizes_is_refused_before_inflating(setup):
    import zipfile
    tmp, model, _ = setup
    x = _data()
    path = hostile_files._write(str(tmp / "forged.npz"), list(x.items()), compress={"price"})
    with zipfile.ZipFile(path, "a") as zf:
        zf.getinfo("price.npy").file_size = 10 ** 10          # the directory claims 10 GB unpacked
        zf._didModify = True
    code, err = _run([model, "-i", path, "-o", tmp / "s.csv"], tmp)
    assert code == 1 and "array 'price': the archive's directory gives sizes" in one_line(err)
    path = hostile_files._write(str(tmp / "lying.npz"), [(k, v) for k, v in x.items() if k != "price"]
                                + [("price", hostile_files._header_bytes((10 ** 9,)) + x["price"].tobytes())])
    code, err = _run([model, "-i", path, "-o", tmp / "s.csv"], tmp)
    assert code == 1 and "its header announces shape (1000000000,)" in one_line(err)
