"""Side-by-side bench tables with the anchors."""

from __future__ import annotations

import re

import pytest

from harness.compare import comparison_table, main, read_anchors, read_bench, read_lodo_method
from harness.dataset import atomic_write_json
from harness.errors import HarnessError
from portfolio.meta_db import new_db

ANCHORS = """# The bar
| task | ALC (T = 300 s) | first prediction (s) | final 2·AUC−1 |
|---|---:|---:|---:|
| alpha | 0.500 | 4.0 | 0.600 |
| beta | 0.300 | 3.1 | 0.400 |
| **mean** | **0.400** | | |
"""


def write_bench(directory, rows):
    directory.mkdir()
    lines = ["task,alc,final_score,first_prediction_s,n_predictions,status,wall_s,peak_rss_mb,resumed,error"]
    lines += [f"{task},{alc},{final},1.0,3,done,10,100,False," for task, alc, final in rows]
    lines.append("mean,0.0,,,,,,,,")
    (directory / "bench.csv").write_text("\n".join(lines) + "\n")


def test_comparison_table_means_cover_tasks_all_columns_have(tmp_path):
    (tmp_path / "ANCHORS.md").write_text(ANCHORS)
    write_bench(tmp_path / "full", [("alpha", 0.9, 0.95), ("beta", 0.7, 0.8), ("gamma", 0.1, 0.2)])
    write_bench(tmp_path / "lin", [("alpha", 0.8, 0.85), ("beta", 0.6, 0.7)])
    table = comparison_table(
        {"full": read_bench(tmp_path / "full"), "lin": read_bench(tmp_path / "lin")}, read_anchors(tmp_path / "ANCHORS.md")
    )
    assert list(table.index) == ["alpha", "beta", "gamma", "mean"]
    # gamma lacks anchor and lin values, so the means are over alpha and beta only.
    assert table.loc["mean", "full ALC"] == pytest.approx(0.8)
    assert table.loc["mean", "2019 winner ALC"] == pytest.approx(0.4)
    assert table.loc["gamma", "full final"] == pytest.approx(0.2)


def test_compare_cli_writes_markdown(tmp_path, capsys):
    write_bench(tmp_path / "full", [("alpha", 0.9, 0.95)])
    out = tmp_path / "cmp.md"
    assert main([f"full={tmp_path / 'full'}", "--out", str(out)]) == 0
    assert out.read_text().splitlines()[2] == "| alpha | 0.9000 | 0.9500 |"


def test_compare_missing_bench_is_a_clear_error(tmp_path, capsys):
    assert main([f"x={tmp_path / 'nope'}"]) == 2
    assert "bench.csv: missing" in capsys.readouterr().err
    with pytest.raises(HarnessError, match="no table rows"):
        (tmp_path / "empty.md").write_text("# nothing\n")
        read_anchors(tmp_path / "empty.md")


def test_compare_reads_one_configuration_of_a_meta_database(tmp_path, capsys):
    db = new_db() | {"time_budget": 300.0}
    run = {"config_id": "x", "seed": 0, "status": "ok", "first_prediction_s": 1.0}
    db["runs"] = [
        run | {"dataset": "alpha", "config_name": "cnn", "time_budget": 300.0, "alc": 0.7, "final_score": 0.8},
        run | {"dataset": "alpha", "config_name": "cnn", "time_budget": 60.0, "alc": 0.1, "final_score": 0.2},
        run | {"dataset": "alpha", "config_name": "lstm", "time_budget": 300.0, "alc": 0.5, "final_score": 0.6},
    ]
    atomic_write_json(tmp_path / "meta_db.json", db)
    write_bench(tmp_path / "full", [("alpha", 0.9, 0.95)])
    assert main([f"full={tmp_path / 'full'}", f"cnn={tmp_path / 'meta_db.json'}:cnn"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| alpha | 0.9000 | 0.9500 | 0.7000 | 0.8000 |"
    assert main([f"svm={tmp_path / 'meta_db.json'}:svm"]) == 2
    assert "no run of configuration 'svm' at 300.0 s; it has ['cnn', 'lstm']" in capsys.readouterr().err


def test_compare_keeps_a_configurations_runs_since_a_date(tmp_path, capsys):
    db = new_db() | {"time_budget": 300.0}
    run = {"config_id": "x", "seed": 0, "status": "ok", "first_prediction_s": 1.0, "dataset": "alpha",
           "config_name": "cnn", "time_budget": 300.0}
    db["runs"] = [
        run | {"alc": 0.5, "final_score": 0.6, "finished": "2026-12-03T14:21:00+00:00"},
        run | {"alc": 0.7, "final_score": 0.8, "finished": "2026-12-06T04:41:00+00:00"},
        run | {"alc": 0.9, "final_score": 1.0, "finished": "2026-12-06T10:02:00+00:00"},
    ]
    atomic_write_json(tmp_path / "meta_db.json", db)
    assert main([f"cnn={tmp_path / 'meta_db.json'}:cnn@2026-12-06"]) == 0
    # The two runs of 12-06: mean 0.8, sd of 0.7 and 0.9; the run of 12-03 is left out.
    assert capsys.readouterr().out.splitlines()[2].startswith("| alpha | 0.8000 | 0.9000 | 2 | 0.1414")
    assert main([f"cnn={tmp_path / 'meta_db.json'}:cnn@2026-12-07"]) == 2
    assert "no run of configuration 'cnn' finished at or after '2026-12-07'" in capsys.readouterr().err


def test_compare_averages_repeated_runs_and_counts_wins(tmp_path, capsys):
    write_bench(tmp_path / "full1", [("alpha", 0.90, 0.95), ("beta", 0.70, 0.80), ("gamma", 0.50, 0.60)])
    write_bench(tmp_path / "full2", [("alpha", 0.80, 0.85), ("beta", 0.70, 0.80)])
    (tmp_path / "lodo.csv").write_text(
        "task,method,config,alc,final_score,first_prediction_s,rank,gap_to_oracle,how,status,note\n"
        "alpha,meta-selected,default,0.70,0.75,0.5,1,0,run,ok,\n"
        "alpha,oracle,default,0.99,0.99,0.5,1,0,recorded,ok,\n"
        "gamma,meta-selected,default,0.40,0.50,0.5,1,0,run,ok,\n"
        "mean,meta-selected,,0.55,,,,,,,\n"
    )
    write_bench(tmp_path / "lin", [("alpha", 0.85, 0.9), ("beta", 0.70, 0.8), ("gamma", 0.46, 0.5)])
    full = f"{tmp_path / 'full1'}+{tmp_path / 'full2'}+{tmp_path / 'lodo.csv'}:meta-selected"
    assert main([f"full={full}", f"lin={tmp_path / 'lin'}", "--versus", "full", "lin"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| task | full ALC | full final | full runs | full ALC sd | lin ALC | lin final | full - lin ALC |"
    # alpha: three runs (0.9, 0.8, 0.7) with mean 0.8 and sd 0.1; beta: two; gamma: full1 and the lodo row.
    assert lines[2] == "| alpha | 0.8000 | 0.8500 | 3 | 0.1000 | 0.8500 | 0.9000 | -0.0500 |"
    assert lines[3] == "| beta | 0.7000 | 0.8000 | 2 | 0.0000 | 0.7000 | 0.8000 | 0.0000 |"
    assert lines[4] == "| gamma | 0.4500 | 0.5500 | 2 | 0.0707 | 0.4600 | 0.5000 | -0.0100 |"
    assert lines[-1] == ("full - lin ALC over 3 tasks: above on 0, equal on 1, below on 2; "
                         "largest shortfall 0.0500 (alpha)")
    assert main([f"full={tmp_path / 'full1'}", f"lin={tmp_path / 'lin'}", "--versus", "full", "cnn"]) == 2
    assert "--versus: no label 'cnn'" in capsys.readouterr().err
    assert main([f"x={tmp_path / 'lodo.csv'}:random"]) == 2
    assert "no row of method 'random' with an ALC" in capsys.readouterr().err


def test_compare_missing_anchors_and_malformed_csv_name_the_file(tmp_path, capsys):
    write_bench(tmp_path / "full", [("alpha", 0.9, 0.95)])
    anchors = tmp_path / "ANCHORS.md"
    assert main([f"full={tmp_path / 'full'}", "--anchors", str(anchors)]) == 2
    assert f"{anchors}: anchors file missing" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bench.csv").write_text("name,alc,final_score\nalpha,0.9,0.95\n")
    assert main([f"bad={tmp_path / 'bad'}"]) == 2
    assert f"{tmp_path / 'bad' / 'bench.csv'}: lacks columns ['task']" in capsys.readouterr().err
    (tmp_path / "lodo.csv").write_text("task,method,alc,final_score,first_prediction_s\nalpha,m,high,0.9,1.0\n")
    with pytest.raises(HarnessError, match=re.escape(f"{tmp_path / 'lodo.csv'}: column 'alc' must hold numbers")):
        read_lodo_method(tmp_path / "lodo.csv", "m")


def test_compare_source_without_label_names_the_item_and_the_forms(tmp_path, capsys):
    assert main([str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err
    assert repr(str(tmp_path / "full")) in err
    assert "LABEL=DIR, LABEL=FILE.json:CONFIG[@SINCE] or LABEL=FILE.csv:METHOD" in err


def test_compare_first_prediction_is_the_median_of_runs_and_of_tasks(tmp_path, capsys):
    def bench(name, rows):  # (task, alc, first prediction s)
        (tmp_path / name).mkdir()
        lines = ["task,alc,final_score,first_prediction_s"] + [f"{t},{a},{a},{s}" for t, a, s in rows]
        (tmp_path / name / "bench.csv").write_text("\n".join(lines) + "\n")

    bench("r1", [("alpha", 0.9, 0.2), ("beta", 0.7, 5.0), ("gamma", 0.5, 0.4)])
    bench("r2", [("alpha", 0.8, 0.4), ("beta", 0.7, 7.0), ("gamma", 0.5, 0.6)])
    bench("r3", [("alpha", 0.8, 9.0), ("beta", 0.7, 6.0), ("gamma", 0.5, 0.5)])
    assert main([f"a={tmp_path / 'r1'}+{tmp_path / 'r2'}+{tmp_path / 'r3'}", "--first"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| task | a ALC | a final | a first s | a runs | a ALC sd |"
    # Per task the median over 3 runs (one slow start at 9 s does not move alpha's); the mean row holds the
    # median over tasks (0.4, 6.0, 0.5 -> 0.5), while ALC stays a mean.
    assert lines[2].startswith("| alpha | 0.8333 | 0.8333 | 0.40 | 3 |")
    assert lines[3].startswith("| beta | 0.7000 | 0.7000 | 6.00 | 3 |")
    assert lines[5].startswith("| **mean** | 0.6778 | 0.6778 | 0.50 |")
    assert lines[-1].startswith("first s: median")
    assert main([f"a={tmp_path / 'r1'}"]) == 0
    assert "first s" not in capsys.readouterr().out


def test_compare_keeps_only_the_named_tasks(tmp_path, capsys):
    write_bench(tmp_path / "full", [("alpha", 0.9, 0.95), ("beta", 0.7, 0.8), ("gamma", 0.1, 0.2)])
    write_bench(tmp_path / "lin", [("alpha", 0.8, 0.85), ("beta", 0.6, 0.7)])
    assert main([f"full={tmp_path / 'full'}", f"lin={tmp_path / 'lin'}", "--tasks", "alpha", "gamma"]) == 0
    rows = [line.split(" | ")[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == ["| alpha", "| gamma", "| **mean**"]
    assert main([f"full={tmp_path / 'full'}", f"lin={tmp_path / 'lin'}", "--tasks", "gamma"]) == 2
    assert "lin: none of the tasks ['gamma']" in capsys.readouterr().err
