"""What a comparison or frontier wrote, with the wall-clock columns left out (the only ones that differ between an
interrupted and an uninterrupted run, or between backends)."""

import csv
import io
from pathlib import Path

WALL = ("wall_seconds_per_sample", "reward_seconds_per_sample")


def _csv_without_wall(text: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in WALL} for row in csv.DictReader(io.StringIO(text))]


def without_wall(out: Path, kind: str) -> dict:
    if kind == "compare":
        table = [line.split("|")[:-2] for line in (out / "table.md").read_text().splitlines() if line.startswith("|")]
        assert (out / "table.md").read_text().count("wall s / sample") == 1  # the column left out is the last one
        return {"rewards.csv": (out / "rewards.csv").read_bytes(), "table.md": table,
                "table.csv": _csv_without_wall((out / "table.csv").read_text())}
    return {"frontier.csv": _csv_without_wall((out / "frontier.csv").read_text())}
