"""geojobs, the command line of the engine's HTTP API (pyproject.toml's console script):
cli.main holds the commands, cli.client the HTTP client, cli.render the tables and the
live progress."""
