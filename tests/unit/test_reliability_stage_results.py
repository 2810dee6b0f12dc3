"""StageResultExtractor.extract: a value out of the previous stage's results, or an error
that names the path, the keys that were there and the stage whose handler to check."""

from __future__ import annotations

import pytest

from core.utils import StageResultError, StageResultExtractor

extract = StageResultExtractor.extract


def previous(*results) -> list[dict]:
    """The shape CoreMachine hands create_tasks_for_stage: one entry per task, in order."""
    return [{"task_id": f"t{i}", "task_index": i, "status": "completed", "result": r}
            for i, r in enumerate(results)]


RESULTS = previous({"files": ["a.tif", "b.tif"], "meta": {"crs": "EPSG:4326"}},
                   {"files": ["c.tif"], "meta": {"crs": None}})


@pytest.mark.parametrize("path, index, expected", [
    ("result.files", 0, ["a.tif", "b.tif"]),
    ("result.files", 1, ["c.tif"]),
    ("result.meta.crs", 0, "EPSG:4326"),
    ("result.meta.crs", 1, None),  # present but null: the value, not the default
    ("status", 1, "completed"),
    (None, 1, RESULTS[1]),  # no path: the whole entry
])
def test_a_path_is_followed_in_the_chosen_tasks_entry(path, index, expected):
    assert extract(RESULTS, path, task_index=index, stage=1, default="unused") == expected


def test_a_missing_key_names_the_path_the_keys_there_and_the_stage():
    # Given stage 1 results without "files",
    results = previous({"paths": ["a.tif"], "count": 1})
    # When stage 2 asks for result.files,
    with pytest.raises(StageResultError) as caught:
        extract(results, "result.files", stage=1)
    message = str(caught.value)
    # Then the message says where it looked, what was there, and whose handler to check.
    assert message == (
        "Result path 'result.files' not found in stage 1's task 0: "
        "previous_results[0]['result'] has no 'files' (keys there: ['count', 'paths']). "
        "Check what the stage 1 handler returns.")
    # And it is a ValueError, which a job's own code may catch.
    assert isinstance(caught.value, ValueError)


def test_a_missing_top_level_key_lists_the_entrys_keys():
    with pytest.raises(StageResultError, match=r"previous_results\[0\] has no 'output' "
                                               r"\(keys there: \['result', 'status', "
                                               r"'task_id', 'task_index'\]\)"):
        extract(previous({}), "output.files", stage=3)


@pytest.mark.parametrize("result, what", [
    (["a.tif"], "it is list, not an object"),
    (None, "it is NoneType, not an object"),
    ("a.tif", "it is str, not an object"),
])
def test_a_path_through_something_that_is_not_an_object_says_what_it_is(result, what):
    with pytest.raises(StageResultError) as caught:
        extract(previous(result), "result.files", stage=1)
    assert f"previous_results[0]['result'] has no 'files' ({what})" in str(caught.value)
    assert "stage 1" in str(caught.value)


def test_without_a_stage_the_message_speaks_of_the_previous_stage():
    with pytest.raises(StageResultError, match="not found in the previous stage's task 0"):
        extract(previous({}), "result.files")


def test_without_a_stage_the_advice_reads_correctly():
    with pytest.raises(StageResultError) as caught:
        extract(previous({}), "result.files")
    assert str(caught.value).endswith("Check what the previous stage handler returns.")
    assert "the the" not in str(caught.value)


@pytest.mark.parametrize("results", [None, []], ids=["none", "empty"])
def test_no_results_at_all_is_an_error_unless_optional(results):
    with pytest.raises(StageResultError, match="No results from stage 1: it produced no tasks"):
        extract(results, "result.files", stage=1)
    assert extract(results, "result.files", stage=1, required=False, default=[]) == []


@pytest.mark.parametrize("index", [2, -1])
def test_a_task_index_outside_the_results_is_an_error_unless_optional(index):
    with pytest.raises(StageResultError,
                       match=f"No task {index} in stage 1: it has 2 task\\(s\\)"):
        extract(RESULTS, "result.files", task_index=index, stage=1)
    assert extract(RESULTS, "result.files", task_index=index, stage=1, required=False,
                   default="none") == "none"


def test_a_missing_optional_value_is_the_default():
    assert extract(RESULTS, "result.tiles", stage=1, required=False, default=[]) == []
    assert extract(RESULTS, "result.files.first", stage=1, required=False) is None
