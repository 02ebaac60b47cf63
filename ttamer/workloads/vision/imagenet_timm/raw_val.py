"""ImageNet's validation images in their raw flat layout (README: workloads):
``<data_dir>/val/ILSVRC2012_val_00000001.JPEG ...`` (no class folders), labelled by a file named
in the config's ``val_labels``, one of

- the devkit's ``ILSVRC2012_validation_ground_truth.txt``: one 1-based ILSVRC2012_ID per line, line
  ``i`` for ``ILSVRC2012_val_<i>``; the IDs become WordNet ids through ``val_label_map`` (the
  devkit's ``meta.mat``, read with scipy, or a text file: ``<ILSVRC2012_ID> <wnid>`` per line, or
  one wnid per line in ILSVRC2012_ID order); with no map named, the ``meta.mat`` beside the
  ground-truth file (the devkit's ``data/`` folder holds both) is used;
- one WordNet id per line, line ``i`` for ``ILSVRC2012_val_<i>`` (e.g. TensorFlow's
  ``imagenet_2012_validation_synset_labels.txt``);
- Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first word of the
  prediction string is the image's wnid).

The ILSVRC2012_ID order is the devkit's, not the sorted wnid order of the classifiers' outputs (a
map in sorted order is refused). No torch here."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ttamer.errors import FieldError

VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)$")
WNID = re.compile(r"n\d{8}$")


@dataclass(frozen=True)
class ValLabels:
    """The label file of a flat val folder and, for the devkit's ground truth, the
    ILSVRC2012_ID -> wnid map (None: ``meta.mat`` beside ``labels_file``)."""

    labels_file: Path
    label_map: Path | None = None


def _lines(path: Path, field: str) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FieldError(field, f"cannot read {path} ({exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _mat_map(path: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid from the devkit's ``meta.mat`` (its ``synsets`` struct array)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise FieldError(
            "val_label_map", f"reading {path} needs scipy (pip install scipy), or name a text map instead"
        ) from None
    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        ids, wnids = synsets["ILSVRC2012_ID"], synsets["WNID"]
        return {int(i): str(w) for i, w in zip(ids.ravel(), wnids.ravel(), strict=True)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FieldError("val_label_map", f"{path} is not the devkit's meta.mat ({exc})") from None


def _text_map(path: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid from ``<id> <wnid>`` lines or one wnid per line (line i: ID i)."""
    from ttamer.workloads.vision.imagenet_timm.data import imagenet_wnids

    out: dict[int, str] = {}
    for i, line in enumerate(_lines(path, "val_label_map"), start=1):
        words = line.replace(",", " ").split()
        if words[0].isdigit() and len(words) > 1 and WNID.match(words[1]):
            out[int(words[0])] = words[1]
        elif WNID.match(words[0]):
            out[i] = words[0]
        else:
            raise FieldError("val_label_map", f"{path} line {i}: expected '<ILSVRC2012_ID> <wnid>' or a wnid")
    ordered = [out[i] for i in sorted(out)]
    if len(ordered) == 1000 and tuple(ordered) == imagenet_wnids():
        raise FieldError(
            "val_label_map",
            f"{path} lists the wnids in sorted order; the ground truth's ILSVRC2012_IDs follow the "
            "devkit's meta.mat order (ID 1 is not n01440764): use meta.mat or a map in that order",
        )
    return out


def id_map(spec: ValLabels) -> dict[int, str]:
    """The ILSVRC2012_ID -> wnid map for the devkit's ground truth (see the module docstring)."""
    path = spec.label_map or spec.labels_file.parent / "meta.mat"
    if not path.is_file():
        raise FieldError(
            "val_label_map",
            f"{spec.labels_file} holds ILSVRC2012_IDs; name the devkit's meta.mat (none at {path}) or a "
            "text file mapping ILSVRC2012_ID to wnid",
        )
    return _mat_map(path) if path.suffix.lower() == ".mat" else _text_map(path)


def _kaggle(path: Path) -> dict[str, str]:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FieldError("val_labels", f"cannot read {path} ({exc})") from None
    try:
        return {r["ImageId"].strip(): r["PredictionString"].split()[0] for r in rows}
    except (KeyError, IndexError, AttributeError):
        raise FieldError("val_labels", f"{path}: expected Kaggle's ImageId,PredictionString rows") from None


def _by_number(path: Path, lines: list[str], spec: ValLabels) -> list[str]:
    """Per-line wnids (line i: ``ILSVRC2012_val_<i>``) of a ground-truth or wnid list file."""
    if lines and all(WNID.match(v) for v in lines):
        return lines
    if not lines or not all(v.isdigit() for v in lines):
        raise FieldError(
            "val_labels",
            f"{path}: expected the devkit's ground truth (one ILSVRC2012_ID per line), one wnid per "
            "line, or Kaggle's LOC_val_solution.csv",
        )
    ids = id_map(spec)
    missing = sorted({int(v) for v in lines} - set(ids))
    if missing:
        raise FieldError("val_label_map", f"has no wnid for ILSVRC2012_ID(s) {missing[:5]}")
    return [ids[int(v)] for v in lines]


def flat_val_wnids(names: Sequence[str], spec: ValLabels) -> list[str]:
    """The wnid of each image file name in ``names`` (file names of the flat val folder)."""
    path = spec.labels_file
    if not path.is_file():
        raise FieldError("val_labels", f"{path} is not a file")
    stems = [Path(n).stem for n in names]
    lines = _lines(path, "val_labels")
    if lines and lines[0].startswith("ImageId"):
        table = _kaggle(path)
        missing = [s for s in stems if s not in table]
        if missing:
            raise FieldError("val_labels", f"{path} has no row for {missing[:3]}")
        return [table[s] for s in stems]
    per_line = _by_number(path, lines, spec)
    out = []
    for stem in stems:
        m = VAL_NAME.search(stem)
        if m is None or not 1 <= int(m.group(1)) <= len(per_line):
            raise FieldError(
                "val_labels",
                f"{path} labels ILSVRC2012_val_<n> files by line number; {stem!r} is not one of its "
                f"{len(per_line)} (n from 1)",
            )
        out.append(per_line[int(m.group(1)) - 1])
    return out
