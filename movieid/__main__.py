"""``python -m movieid``: the same command line as ``movieid``."""
from movieid.cli.main import main

main()
