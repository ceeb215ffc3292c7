"""What each CLI command does, as plain functions the CLI calls (and tests can call too), one
module per command: flip (and resume), generate, show, experiment (`run`), compare, probe,
sweep; options holds the measurement as asked for, costs the price lines."""

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
