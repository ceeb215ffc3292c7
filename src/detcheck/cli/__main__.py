"""`python -m detcheck.cli`: the same command line as `detcheck`."""

from detcheck.cli.main import main

main()
