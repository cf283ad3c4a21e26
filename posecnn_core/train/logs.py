"""Training logs: CSV files (per iteration and per epoch) and optional TensorBoard scalars."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["CsvLog", "TensorBoardLog", "tensorboard_available"]


class CsvLog:
    """Appends rows with fixed columns to a CSV file; writes the header when the file is new or empty.

    An existing file with different columns is an error (a resumed run must not mix layouts)."""

    def __init__(self, path: str | Path, fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if header != self.fields:
                raise ValueError(f"{self.path}: existing columns {header} differ from {self.fields}; "
                                 "use another log_dir")
        else:
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)

    def write(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.fields)
        if unknown:
            raise ValueError(f"{self.path}: unknown columns {sorted(unknown)}")
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.fields])

    def drop_after(self, column: str, last: int) -> int:
        """Remove the rows whose integer ``column`` exceeds ``last`` (kept: rows where it does not parse); returns
        how many were removed. A resumed run calls it for the rows an interrupted run wrote after its checkpoint,
        which the resumed run writes again."""
        with self.path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = list(reader)
        index = header.index(column)

        def after(row: list[str]) -> bool:
            try:
                return int(float(row[index])) > last
            except (ValueError, IndexError):
                return False

        kept = [row for row in rows if not after(row)]
        if len(kept) != len(rows):
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("w", newline="") as f:
                csv.writer(f).writerows([header, *kept])
            tmp.replace(self.path)
        return len(rows) - len(kept)

    def rows(self) -> list[dict[str, str]]:
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:
        return False
    return True


class TensorBoardLog:
    """Scalars to TensorBoard under ``log_dir/tensorboard``; raises RuntimeError when the package is missing."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as exc:
            raise RuntimeError("tensorboard: true needs the 'tensorboard' package, which is not installed "
                               "(pip install tensorboard), or set tensorboard: false; CSV logs are always "
                               "written") from exc
        self.writer = SummaryWriter(str(Path(log_dir) / "tensorboard"))

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "train") -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", float(v), step)

    def close(self) -> None:
        self.writer.close()
