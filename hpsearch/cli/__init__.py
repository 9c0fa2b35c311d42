"""The `hpsearch` command line: one entry point, one module per group of commands.

Each command's parser sits beside its handler: `catalog` (models, datasets), `train` (train, tune), `search` (run,
create, worker), `results` (best, trials, status, studies, leaderboard), `trial` (export, predict, retrain) and
`admin` (dashboard, delete). `_common` holds what several of them share, `_main` assembles the parser and runs a
command.

Exit codes: 0 ok, 1 failure, 2 usage error (unknown name, bad value), 130 interrupted.
"""

from __future__ import annotations

import os
import warnings

# Before anything can import TensorFlow: these only take effect if they are in place when it loads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output
# Heartbeats and artifacts are marked experimental by Optuna; users can do nothing about that warning.
warnings.filterwarnings("ignore", message=r".*(is experimental|is an experimental feature).*")

from hpsearch.cli._common import import_keras_quietly, parse_assignments  # noqa: E402
from hpsearch.cli._main import build_parser, main  # noqa: E402

__all__ = ["build_parser", "import_keras_quietly", "main", "parse_assignments"]
