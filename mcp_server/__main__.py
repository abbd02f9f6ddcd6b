"""``python -m mcp_server``: same as the ``videoseek-mcp`` console script."""

from .server import main

__all__: list[str] = []

main()
