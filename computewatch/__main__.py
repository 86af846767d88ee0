"""`python -m computewatch` runs the command line."""

from computewatch.cli import main

main()
