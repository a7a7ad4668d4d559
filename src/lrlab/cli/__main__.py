"""``python -m lrlab.cli ...``: the same as the ``lrlab`` script."""

import sys

from lrlab.cli import main

main(sys.argv[1:])
