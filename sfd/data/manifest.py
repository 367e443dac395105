"""`Manifest`: who is in each raw file of a corpus and which split it belongs to, read from ``manifest.csv``.

A corpus such as ``talking-heads/`` lists one row per file (``file, kind, identity, ..., split``).
Preprocessed clips lose the path but keep the file's name (``clips#001_x.mp4/`` for
``clips/001_x.mp4``), so rows are found again by the file's stem (`media_stem`), which the
manifest must keep unique.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sfd.errors import SFDError

from .layout import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

REQUIRED_COLUMNS = ("file", "kind", "identity", "split")


def media_stem(name: str) -> str:
    """The raw file's stem behind a path, file name or preprocess folder name.

    ``clips/001_x.mp4``, ``001_x.mp4`` and ``clips#001_x.mp4`` all give ``001_x``; only known media
    extensions are stripped, so a name with dots in it stays whole.
    """
    last = PurePosixPath(str(name).replace("\\", "/")).name.split("#")[-1]
    suffix = PurePosixPath(last).suffix.lower()
    return last[: -len(suffix)] if suffix in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS else last


@dataclass(frozen=True)
class ManifestEntry:
    """One row: the file (relative to the corpus), ``video`` or ``still``, the person's label, the split."""

    file: str
    kind: str
    identity: str
    split: str
    duration_s: float | None = None

    @property
    def stem(self) -> str:
        return media_stem(self.file)


class Manifest:
    """Rows of one or more manifests, looked up by file stem."""

    def __init__(self, entries: list[ManifestEntry]):
        self.entries = list(entries)
        self._by_stem: dict[str, ManifestEntry] = {}
        for entry in self.entries:
            other = self._by_stem.setdefault(entry.stem, entry)
            if other is not entry:
                raise SFDError(f"manifest files {other.file} and {entry.file} share the stem {entry.stem!r}: "
                               "preprocessed folders could not be told apart")

    @classmethod
    def load(cls, paths: str | Path | list[str | Path] | tuple) -> "Manifest":
        """Read one manifest CSV, or several into one (their stems must not collide)."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return cls([entry for path in paths for entry in read_manifest(path)])

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, name: str) -> ManifestEntry | None:
        """The row of a file path, file name or preprocess folder name; None when not listed."""
        return self._by_stem.get(media_stem(name))

    def identities(self, split: str) -> set[str]:
        """Labels of the people with at least one file in `split`."""
        return {entry.identity for entry in self.entries if entry.split == split}


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """The rows of a ``manifest.csv``; a missing column or an empty label is an error."""
    path = Path(path)
    if not path.is_file():
        raise SFDError(f"no manifest at {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SFDError(f"{path} lacks the column(s) {', '.join(missing)}")
        entries = []
        for line, row in enumerate(reader, start=2):
            values = {c: (row[c] or "").strip() for c in REQUIRED_COLUMNS}
            if not all(values.values()):
                raise SFDError(f"{path} line {line}: empty {', '.join(c for c, v in values.items() if not v)}")
            duration = (row.get("duration_s") or "").strip()
            entries.append(ManifestEntry(**values, duration_s=float(duration) if duration else None))
    return entries
