"""The `detcheck` command line, the outermost edge: parse options, call one plain function of
detcheck.commands, print. Nothing else. main.py holds the app and the commands that send,
reading.py those that read stored runs (audit.py and imports.py one command each), options.py the
option types they share (made from detcheck.spec), help.py how --help reads, output.py printing
and exit codes. It may import every
package; none imports it. Heavy imports (openai, pyarrow, numpy) happen inside the commands, so
`--help` stays fast."""

from detcheck.cli.main import app, main

__all__ = ["app", "main"]
