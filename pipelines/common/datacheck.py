"""What every `recon check-data` task reports: problems named with the file they concern."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPLIT_KIND = "cannot-split"  # the problem kind of split_problem


def split_problem(count: int, items: str, unit: str) -> str | None:
    """Why a set whose items show count different units (3D models, parts, subjects) cannot be
    split into training and validation, which holds whole units out; None when it can."""
    if count >= 2:
        return None
    return (
        f"its {items} show {count} {unit}{'' if count == 1 else 's'}; validation holds whole "
        f"{unit}s out, so training needs at least 2"
    )


@dataclass(frozen=True)
class Problem:
    kind: str
    path: str  # the file (or entry) concerned
    detail: str


@dataclass
class CheckReport:
    task: str
    root: str
    items: int = 0  # entries, images or subjects, as the task counts them
    per_class: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, path, detail: str) -> None:
        self.problems.append(Problem(kind, str(path), detail))

    def kinds(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def as_dict(self) -> dict:
        return {
            "task": self.task,
            "root": str(Path(self.root).expanduser().absolute()),  # as other commands name paths
            "items": self.items,
            "per_class": self.per_class,
            "problem_count": len(self.problems),
            "problem_kinds": self.kinds(),
            "problems": [asdict(p) for p in self.problems],
        }
