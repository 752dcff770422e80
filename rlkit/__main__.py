"""`python -m rlkit`."""

from rlkit.cli import main

main()
