"""`python -m aisle` runs the command line."""

from aisle.cli.main import run

run()
