"""python -m cli: the same as the geojobs console script."""

from cli.main import main

main()
