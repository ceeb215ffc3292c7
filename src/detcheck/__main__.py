"""`python -m detcheck`: the same command line as `detcheck`."""

from detcheck.cli import main

main()
