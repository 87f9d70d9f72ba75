"""``python -m stages.warm SOCKET [IDLE_SECONDS]``: serve in the foreground."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stages.warm.protocol import WarmError
from stages.warm.server import serve


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m stages.warm SOCKET [IDLE_SECONDS]``: serve in the foreground."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        raise SystemExit("usage: python -m stages.warm SOCKET [IDLE_SECONDS]")
    try:
        serve(args[0], float(args[1]) if len(args) == 2 else 3600.0)
    except WarmError as error:
        raise SystemExit(f"tailbank: error: {error}") from None


if __name__ == "__main__":
    main()
