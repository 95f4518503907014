"""`fastconv bench` end to end on the hidden tiny plan (batch 2, one repeat), and its errors."""
import json

import pytest

import fastconv
from fastconv.bench import ROW_FIELDS
from fastconv.cli import main


def test_quick_json_rows(tmp_path, capsys):
    path = tmp_path / "out.json"
    code = main(["bench", "--quick", "--no-torch", "--tiny", "--threads", "1",
                 "--cases", "conv2d-*-C3-*,k1s1,max_pool2d-*k2s2,NET-S", "--json", str(path)])
    assert code == 0
    report = json.loads(path.read_text())
    assert report["threads"] == 1 and report["torch"] is None
    assert report["gemm"]["gflops"] > 0
    assert report["autotune"] is False
    assert {choice["source"] for choice in report["conv_algorithms"]} == {"heuristic"}
    rows = report["rows"]
    assert [(row["case"], row["pass"]) for row in rows] == [
        ("conv2d-N2-C3-F32-32x32-k3s1p1", "forward"),
        ("conv2d-N2-C3-F32-32x32-k3s1p1", "forward+backward"),
        ("conv2d-N2-C128-F64-16x16-k1s1", "forward"),
        ("conv2d-N2-C128-F64-16x16-k1s1", "forward+backward"),
        ("max_pool2d-N2-C64-32x32-k2s2", "forward"),
        ("max_pool2d-N2-C64-32x32-k2s2", "forward+backward"),
        ("NET-S-N2", "train"),
        ("NET-S-N2", "inference"),
    ]
    for row in rows:
        assert set(row) == set(ROW_FIELDS)
        assert row["torch_ms"] is None and row["torch_ratio"] is None
        measured = [row[key] for key in ("fastconv_ms", "reference_ms", "images_per_s")
                    if row[key] is not None]
        assert all(value > 0 for value in measured)
        # Ops still being written elsewhere are skipped with a note saying which.
        assert row["fastconv_ms"] is not None or row["notes"]
    for row in rows[:4]:
        assert row["fastconv_ms"] > 0 and row["reference_ms"] > 0 and row["speedup"] > 0
        assert row["gflops"] > 0 and row["peak_percent"] > 0
    assert rows[1]["flops"] == 3 * rows[0]["flops"] == 3 * 2 * 2 * 32 * 32 * 32 * 3 * 3 * 3
    printed = capsys.readouterr().out
    assert "float32 GEMM 256^3" in printed and "conv2d-N2-C3-F32-32x32-k3s1p1" in printed


def test_autotune_times_the_algorithms_and_restores_the_setting(tmp_path, capsys):
    path = tmp_path / "out.json"
    previous = fastconv.set_conv_autotune(False)
    try:
        assert main(["bench", "--no-torch", "--tiny", "--threads", "1", "--autotune",
                     "--cases", "conv2d-*-C3-*", "--json", str(path)]) == 0
        assert fastconv.set_conv_autotune(False) == (False, None)
    finally:
        fastconv.set_conv_autotune(*previous)
    report = json.loads(path.read_text())
    assert report["autotune"] is True
    choices = report["conv_algorithms"]
    assert [choice["pass"] for choice in choices] == ["forward", "backward"]
    assert all(choice["source"] == "measured" and choice["input_shape"] == [2, 3, 32, 32]
               for choice in choices)
    assert "algorithms autotuned" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["bench", "--threads", "0"], "--threads: expected a positive integer, got '0'"),
    (["bench", "--threads", "two"], "--threads: expected a positive integer, got 'two'"),
    (["bench", "--cases", "no-such-case"], "matches no case"),
    (["bench", "--json", "/no/such/directory/out.json"], "does not exist"),
], ids=["threads-0", "threads-text", "cases", "json-directory"])
def test_bad_arguments_one_line_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith("fastconv bench: error:")
