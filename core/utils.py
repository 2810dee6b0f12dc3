"""StageResultExtractor: read a value out of the previous stage's results, or fail with a
message that says where to look.

    files = StageResultExtractor.extract(previous_results, "result.files", stage=1)

Raised from a job's create_tasks_for_stage, the error fails the job, and its message names
the path, the keys that were there, and the stage whose handler to check.
"""

from __future__ import annotations

from typing import Any, Optional

_MISSING = object()


class StageResultError(ValueError):
    """A previous stage's result does not have the shape the next stage expects."""


class StageResultExtractor:
    @staticmethod
    def extract(
        previous_results: Optional[list[dict[str, Any]]],
        result_path: Optional[str] = None,
        task_index: int = 0,
        stage: Optional[int] = None,
        default: Any = None,
        required: bool = True,
    ) -> Any:
        """previous_results[task_index] followed along result_path ("result.files";
        None: the whole entry). Missing and not required: default."""
        source = f"stage {stage}" if stage is not None else "the previous stage"
        advice = (f"Check what the stage {stage} handler returns." if stage is not None
                  else "Check what the previous stage handler returns.")
        if not previous_results:
            if required:
                raise StageResultError(f"No results from {source}: it produced no tasks. "
                                       f"{advice}")
            return default
        if not 0 <= task_index < len(previous_results):
            if required:
                raise StageResultError(
                    f"No task {task_index} in {source}: it has {len(previous_results)} "
                    f"task(s). {advice}")
            return default
        value: Any = previous_results[task_index]
        walked = f"previous_results[{task_index}]"
        for key in (result_path.split(".") if result_path else []):
            found = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
            if found is _MISSING:
                if not required:
                    return default
                there = (f"keys there: {sorted(value)}" if isinstance(value, dict)
                         else f"it is {type(value).__name__}, not an object")
                raise StageResultError(
                    f"Result path '{result_path}' not found in {source}'s task {task_index}: "
                    f"{walked} has no '{key}' ({there}). {advice}")
            value = found
            walked += f"[{key!r}]"
        return value
