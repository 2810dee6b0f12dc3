"""docs/adding-a-job.md's code, run as written: the job file, the handlers file and the test
it shows. If the guide and the engine drift apart, this fails."""

import re
import types
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "adding-a-job.md"
BLOCK = re.compile(r"<!-- (file: (?P<path>\S+)|test) -->\n```python\n(?P<code>.*?)```", re.S)


def guide_blocks():
    files, tests = {}, []
    for match in BLOCK.finditer(GUIDE.read_text()):
        (files.__setitem__(match["path"], match["code"]) if match["path"]
         else tests.append(match["code"]))
    return files, tests


def load(name, code):
    module = types.ModuleType(name)
    exec(compile(code, f"docs/adding-a-job.md:{name}", "exec"), module.__dict__)
    return module


def test_guide_has_a_job_its_handlers_and_a_test():
    files, tests = guide_blocks()
    assert set(files) == {"jobs/tile_areas.py", "services/service_tile_areas.py",
                          "jobs/table_profile.py", "services/service_table_profile.py"}
    assert len(tests) == 2


def test_guide_job_with_declarations_runs_end_to_end(engine, database):
    # Section 5: parameter types, submit checks, a builder with resources, a cleanup task.
    files, tests = guide_blocks()
    job_module = load("table_profile", files["jobs/table_profile.py"])
    handlers = load("service_table_profile", files["services/service_table_profile.py"])
    guide_engine = engine.with_jobs(
        {"table_profile": job_module.TableProfileJob},
        {"table_profile_column": handlers.profile_column,
         "table_profile_cleanup": handlers.profile_cleanup},
    )
    load("guide_test_declarations", tests[1]).test_table_profile(guide_engine, database)


def test_guide_job_runs_end_to_end(engine):
    files, tests = guide_blocks()
    job_module = load("tile_areas", files["jobs/tile_areas.py"])
    handlers = load("service_tile_areas", files["services/service_tile_areas.py"])
    guide_engine = engine.with_jobs(
        {"tile_areas": job_module.TileAreasJob},
        {"tile_areas_plan": handlers.plan_tiles, "tile_areas_measure": handlers.measure_tile},
    )
    test_module = load("guide_test", tests[0])
    test_module.test_tile_areas(guide_engine)


def test_guide_job_rejects_a_missing_required_parameter(engine):
    files, _ = guide_blocks()
    job = load("tile_areas", files["jobs/tile_areas.py"]).TileAreasJob
    from exceptions import JobValidationError

    with pytest.raises(JobValidationError, match="'max_y' is required"):
        job.validate_job_parameters({"min_x": 0, "min_y": 0, "max_x": 1})


@pytest.mark.parametrize("params, message", [
    ({"min_x": 2, "min_y": 0, "max_x": 0, "max_y": 1}, "min_x < max_x"),
    ({"min_x": -180, "min_y": -90, "max_x": 180, "max_y": 90, "tile_size": 0.1},
     "6480000 tiles; at most 10000"),
])
def test_guide_job_checks_rules_across_parameters(engine, params, message):
    files, _ = guide_blocks()
    job = load("tile_areas", files["jobs/tile_areas.py"]).TileAreasJob
    from exceptions import JobValidationError

    with pytest.raises(JobValidationError, match=message):
        job.validate_job_parameters(params)
