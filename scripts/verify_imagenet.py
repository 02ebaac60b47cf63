"""Check the ``imagenet_timm`` workload's inference on your ImageNet copy against timm's published
accuracy: the measured top-1 of a few pretrained models on a validation subset (listed,
preprocessed and batched exactly as a cascade stage runs them) next to timm's
``results-imagenet.csv`` at the same image size (timm evaluates at each model's test size, so
this does too unless ``--use-train-size``). Prints a table (measured, published, difference, the
subset's 95% sampling margin) and exits 1 when any model differs by more than ``--tolerance``
points, 2 on a usage error (a missing folder, a model not in the table).

    python scripts/verify_imagenet.py --data-dir /data/imagenet --per-class 10 --device cuda
    python scripts/verify_imagenet.py --data-dir /data/imagenet --val-labels \\
        /data/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt --models resnet50.a1_in1k

``--per-class 10`` traces 10,000 images: its sampling margin (about 1 point at 80% top-1) is of
the order of the default tolerance; ``--per-class 0`` uses all 50,000.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ttamer.errors import FieldError
from ttamer.workloads.vision.imagenet_timm.config import DEFAULT_DATA_ROOT, DEFAULT_MODELS, ImageNetTimmConfig


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--data-dir", required=True, help="ImageNet folder (val/<wnid>/* or a flat val/)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="timm names, comma-separated")
    p.add_argument("--per-class", type=int, default=10, help="val images per class (0: all)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    p.add_argument("--tolerance", type=float, default=1.0, help="allowed |measured - published|, points")
    p.add_argument("--tables-dir", default=f"{DEFAULT_DATA_ROOT}/timm-results", help="timm's results tables")
    p.add_argument("--accuracy-file", default=None, help="default: results/results-imagenet.csv")
    p.add_argument("--val-labels", default=None, help="labels of a flat val/ (see the workload's val_labels)")
    p.add_argument("--val-label-map", default=None, help="ILSVRC2012_ID -> wnid map (meta.mat or text)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    p.add_argument("--use-train-size", action="store_true", help="evaluate at the train input size")
    p.add_argument("--seed", type=int, default=0, help="the per-class subset")
    p.add_argument("--random-weights", action="store_true", help=argparse.SUPPRESS)  # tests only
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> ImageNetTimmConfig:
    """The workload config the check runs (a cascade of the models, no costs)."""
    return ImageNetTimmConfig(
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()), data_dir=args.data_dir,
        val_per_class=args.per_class or None, device=args.device, batch_size=args.batch_size,
        num_workers=args.num_workers, amp=args.amp, use_test_size=not args.use_train_size,
        pretrained=not args.random_weights, val_labels=args.val_labels, val_label_map=args.val_label_map,
        tables_dir=args.tables_dir, store_probs=False,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from ttamer.workloads.base import resolve_path
    from ttamer.workloads.vision.imagenet_timm.verify import measure_top1, report
    from ttamer.workloads.vision.timm_tables import read_accuracy, resolve_table

    try:
        cfg = config(args)
        path = resolve_table(resolve_path(args.tables_dir), args.accuracy_file, "accuracy_file")
        results = measure_top1(cfg, args.seed, read_accuracy(path))
    except FieldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = report(results, args.tolerance)
    print(f"published: {path}")
    print(table.to_string(index=False))
    print(
        f"margin95: the subset's 95% sampling margin of top-1 (points); tolerance {args.tolerance:g} points"
    )
    bad = table.loc[~table["within"], "model"].tolist()
    if any(table["margin95"] > args.tolerance):
        print("note: the sampling margin exceeds the tolerance: use more images (--per-class) to decide")
    print(f"FAIL: {', '.join(bad)} differ by more than {args.tolerance:g} points" if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
