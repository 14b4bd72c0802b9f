"""One module per `specsift` subcommand; each keeps its logic in the library."""
