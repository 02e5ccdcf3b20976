"""`python -m wonderq` runs the `wonderq` command."""

from wonderq.cli import main

main()
