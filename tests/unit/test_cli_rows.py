"""``worker.cli.rows``: reading ``submit --file`` rows (JSONL and CSV), line numbers, every row checked."""

import json

import pytest

from worker.cli.failures import BadRows
from worker.cli.rows import read_specs


def _read(tmp_path, name, text, **kw):
    path = tmp_path / name
    path.write_text(text)
    opts = {"model": "google/nano-banana", "timeout": None, "allow_unknown_model": False, "defaults": {}, **kw}
    return read_specs(path, **opts)


def test_jsonl_rows_take_job_id_out_of_the_input_and_keep_their_line(tmp_path):
    text = json.dumps({"prompt": "a", "job_id": "j-1"}) + "\n\n" + json.dumps({"prompt": "b", "image_size": "1:1"})
    specs = _read(tmp_path, "x.jsonl", text, defaults={"output_format": "jpeg"}, timeout=60.0)
    assert [(s.line, s.job_id, s.input) for s in specs] == [
        (1, "j-1", {"prompt": "a", "output_format": "jpeg"}),
        (3, None, {"prompt": "b", "image_size": "1:1", "output_format": "jpeg"})]
    assert {s.timeout for s in specs} == {60.0}


def test_a_row_value_wins_over_the_option_default(tmp_path):
    [spec] = _read(tmp_path, "x.csv", "prompt,image_size\na,16:9\n", defaults={"image_size": "1:1"})
    assert spec.input == {"prompt": "a", "image_size": "16:9"}


def test_csv_lines_count_quoted_newlines_and_empty_cells_are_left_out(tmp_path):
    specs = _read(tmp_path, "x.csv", 'prompt,image_size,job_id\n"two\nlines",,a\nb,4:3,\n')
    assert [(s.line, s.job_id, s.input) for s in specs] == [(2, "a", {"prompt": "two\nlines"}),
                                                            (4, None, {"prompt": "b", "image_size": "4:3"})]


def test_the_format_is_sniffed_without_a_known_suffix(tmp_path):
    assert _read(tmp_path, "rows.txt", '{"prompt": "a"}\n')[0].input == {"prompt": "a"}
    assert _read(tmp_path, "rows.txt", "prompt\na\n")[0].input == {"prompt": "a"}


@pytest.mark.parametrize("name, text, problems", [
    ("x.csv", "prompt,image_size\na,1:1\nb,7:5\nc,9:9\n", [3, 4]),
    ("x.jsonl", '{"prompt": "a", "job_id": "k"}\n{"prompt": "b", "job_id": "k"}\n', [2]),
    ("x.jsonl", '{"prompt": "a"}\nnot json\n[1]\n', [2, 3]),
    ("x.jsonl", '{"prompt": ""}\n', [1]),
    ("x.csv", "title\na\n", [1]),
    ("x.jsonl", "", [0]),
])
def test_bad_rows_are_all_reported_by_line(tmp_path, name, text, problems):
    with pytest.raises(BadRows) as info:
        _read(tmp_path, name, text)
    assert [line for line, _ in info.value.problems] == problems
    assert info.value.lines()[-1].endswith("nothing was enqueued")


def test_a_bad_row_message_names_the_field(tmp_path):
    with pytest.raises(BadRows) as info:
        _read(tmp_path, "x.jsonl", '{"prompt": "a", "image_size": "7:5"}\n{"prompt": "a", "job_id": "a/b"}\n')
    [(line1, first), (line2, second)] = info.value.problems
    assert (line1, line2) == (1, 2)
    assert "image_size" in first and "'7:5'" in first
    assert "job_id" in second and "'a/b'" in second


def test_an_unknown_model_needs_the_flag(tmp_path):
    with pytest.raises(BadRows) as info:
        _read(tmp_path, "x.jsonl", '{"anything": 1}\n', model="acme/x")
    assert "--allow-unknown-model" in info.value.problems[0][1]
    [spec] = _read(tmp_path, "x.jsonl", '{"anything": 1}\n', model="acme/x", allow_unknown_model=True)
    assert spec.task_kwargs()["allow_unknown_model"] is True


def test_many_bad_rows_are_capped_in_the_report(tmp_path):
    text = "".join(json.dumps({"prompt": "p", "image_size": "bad"}) + "\n" for _ in range(30))
    with pytest.raises(BadRows) as info:
        _read(tmp_path, "x.jsonl", text)
    lines = info.value.lines()
    assert len(lines) == 22 and "and 10 more bad rows" in lines[-2]


def test_a_job_spec_carries_tenant_and_priority_and_checks_them():
    from worker.cli.enqueue import JobSpec
    from worker.errors import InvalidInput
    spec = JobSpec({"prompt": "a fox"}, tenant="search", priority=9)
    spec.check()
    assert spec.task_kwargs()["tenant"] == "search" and spec.task_kwargs()["priority"] == 9
    assert "tenant" not in JobSpec({"prompt": "a fox"}).task_kwargs()
    with pytest.raises(InvalidInput) as info:
        JobSpec({"prompt": "a fox"}, tenant="no spaces", priority=10).check()
    assert set(info.value.errors) == {"tenant", "priority"}
