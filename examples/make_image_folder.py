"""Writes a folder of PNG photos, one subfolder per class, from a dataset hpsearch knows: a stand-in for a folder
of your own pictures (the seed's hand-sign photos were 64x64 RGB, 6 classes).

    python examples/make_image_folder.py --dataset fashion-mnist --classes 6 --per-class 100 --size 64 \
        --out data/clothes
    hpsearch run --study clothes --model resnet50 --dataset images:data/clothes --trials 4 --epochs 3
    hpsearch predict --study clothes data/clothes-new/*.png --top 3

It also writes `<out>-new/`: a few photos per class that are not in the folder, to try `predict` on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from hpsearch.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist", help="a dataset hpsearch knows (hpsearch datasets)")
    parser.add_argument("--data-dir", help="where its files are (as for hpsearch --data-dir)")
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--new-per-class", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = load_dataset(args.dataset, args.data_dir)
    x = np.concatenate([data.x_train, data.x_val])[..., 0]
    y = np.concatenate([data.y_train, data.y_val])
    out, new = Path(args.out), Path(f"{args.out}-new")
    for label in range(min(args.classes, data.num_classes)):
        name = data.class_names[label].lower().replace(" ", "-")
        picks = np.flatnonzero(y == label)[:args.per_class + args.new_per_class]
        (out / name).mkdir(parents=True, exist_ok=True)
        new.mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(picks):
            grey = Image.fromarray((x[i] * 255).astype(np.uint8)).resize((args.size, args.size), Image.BILINEAR)
            target = out / name / f"{i}.png" if n < args.per_class else new / f"{name}-{i}.png"
            grey.convert("RGB").save(target)
    print(f"{out}: {min(args.classes, data.num_classes)} class folders of {args.per_class} {args.size}x{args.size} "
          f"RGB photos; {new}: photos to predict")


if __name__ == "__main__":
    main()
