"""`hpsearch models` and `hpsearch datasets`: what can be trained, on what."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hpsearch.cli._common import add_command, add_format_arg, make_console, print_output

if TYPE_CHECKING:
    from hpsearch.cli._common import Subparsers


def register_models(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "models", cmd_models, "list the model builders and their search spaces",
        "  hpsearch models\n  hpsearch models cnn --format json\n  hpsearch models my_model.py:build\n\n"
        "--model takes a built-in name, your own builder as package.module:function or path/to/file.py:function\n"
        "(a build(hp) function or a keras_tuner.HyperModel), or a name an installed package registers in the\n"
        "'hpsearch.models' entry-point group (listed here).")
    p.add_argument("model", nargs="?", help="show only this model (a name or a reference)")
    add_format_arg(p, "table", "json")


def cmd_models(args: argparse.Namespace) -> int:
    from hpsearch.models import catalog, describe_model, format_range, search_space
    from hpsearch.models.training_params import DEFAULT_LR_PEAK

    names = [args.model] if args.model else list(catalog())
    spaces = {name: search_space(name) for name in names}  # an unknown name or a bad reference says what to do
    for entry in (e for space in spaces.values() for e in space if e["name"] == "lr_peak"):
        entry["new_study_default"] = DEFAULT_LR_PEAK  # "default" is the published training's (hpsearch train)
    if args.format == "json":
        print_output({n: {"description": describe_model(n), "space": s} for n, s in spaces.items()}, args.format)
        return 0
    from rich.table import Table

    console = make_console()
    for name, space in spaces.items():
        table = Table(title=f"[bold]{name}[/] - {describe_model(name)}", title_justify="left")
        for column in ("hyperparameter", "type", "range / values", "default", "condition"):
            table.add_column(column)
        for entry in space:
            default = str(entry["default"])
            if "new_study_default" in entry:
                default += f" ({entry['new_study_default']} in a new study)"
            table.add_row(entry["name"], entry["type"], format_range(entry), default, entry.get("condition", ""))
        print_output(table, args.format, console)
    return 0


def register_datasets(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "datasets", cmd_datasets, "list the datasets and where their files are found",
                    "  hpsearch datasets\n  hpsearch datasets --data-dir ../shared/datasets/mnist --format json")
    p.add_argument("--data-dir", help="directory searched first (default: $HPSEARCH_DATA_DIR)")
    add_format_arg(p, "table", "json")


def cmd_datasets(args: argparse.Namespace) -> int:
    from hpsearch.datasets import DATASETS, locate

    rows = [{"name": n, "description": i.description, "found": locate(n, args.data_dir)} for n, i in DATASETS.items()]
    if args.format == "json":
        print_output(rows, args.format)
        return 0
    from rich.table import Table

    table = Table(title="datasets (--data-dir / HPSEARCH_DATA_DIR is searched first)", title_justify="left")
    for column in ("name", "description", "files found at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        found = row["found"]
        table.add_row(row["name"], row["description"], f"[red]{found}[/]" if found.startswith("NOT") else found)
    print_output(table, args.format)
    return 0
