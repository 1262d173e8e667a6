"""``python -m tipline``."""

from tipline.cli import main

main()
