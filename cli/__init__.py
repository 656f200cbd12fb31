"""The `edgekiln` command line."""
