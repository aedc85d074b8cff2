"""``python -m regtune.platform.cli``."""

from regtune.platform.cli import main

main()
