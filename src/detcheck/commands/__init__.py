"""What each CLI command does, as plain functions the CLI and the Python API call (and tests can
call too), one module per command: flip (and --resume), generate, show, experiment (`run`, read
by experiment_file.py), compare, report, probe, sweep, history. options.py holds the measurement
as asked for; endpoints.py checks where it is sent (the base URL, the model, a key's variable)
and explains a refusal of the first calls; planning.py resolves it, once, into a
detcheck.plan.Plan; costs.py the price lines.

May import every stage (send, store, analysis, render) and the vocabulary; never the edges
(detcheck.cli, api, testing, pytest_plugin)."""

from detcheck.commands.compare import compare_command
from detcheck.commands.experiment import run_experiment, summary_line
from detcheck.commands.flip import flip_command
from detcheck.commands.generate import generate_command
from detcheck.commands.options import FlipOptions, resolve_config
from detcheck.commands.probe import probe_command
from detcheck.commands.show import show_command
from detcheck.commands.sweep import sweep_command

__all__ = [
    "FlipOptions",
    "compare_command",
    "flip_command",
    "generate_command",
    "probe_command",
    "resolve_config",
    "run_experiment",
    "show_command",
    "summary_line",
    "sweep_command",
]
