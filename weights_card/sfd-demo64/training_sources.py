"""Print one `NAME=TERMS` line per source of the training files, for `python -m sfd export --datasets`.

    python weights_card/sfd-demo64/training_sources.py CORPUS/manifest.csv [--split train]

Every train file of the corpus manifest is counted under its source repository and the terms of
its media (most are research use or not stated: the weights are a non-commercial research demo);
the 13 clips of the older example set (LIA's and LivePortrait's examples) are listed last.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict


def sources(manifest: str, split: str = "train") -> list[str]:
    groups: dict[tuple[str, str, str], dict] = defaultdict(lambda: {"video": 0, "still": 0, "people": set()})
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["split"] != split:
                continue
            group = groups[(row["source_repo"], row["repo_licence"], row["media_terms"])]
            group[row["kind"]] += 1
            group["people"].add(row["identity"])
    lines = []
    for (repo, licence, terms), group in sorted(groups.items()):
        counts = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in (("clip", group["video"]),
                                                                             ("still", group["still"])) if n)
        lines.append(f"{repo} examples ({counts}; {len(group['people'])} {'person' if len(group['people']) == 1 else 'people'})="
                     f"media: {terms}; repository licence: {licence}")
    lines.append("LIA example clips driving1, driving3 (VoxCeleb-style)=CC BY-NC 4.0, research use")
    lines.append("LivePortrait example clips (8 driving, 3 source videos)=MIT")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    print("\n".join(sources(args.manifest, args.split)))
