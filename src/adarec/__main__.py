"""`python -m adarec`: the same as the `adarec` command."""

from adarec.cli import main

main()
