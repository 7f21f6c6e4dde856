"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from __future__ import annotations

from . import http_throughput


def main() -> None:
    http_throughput.run()


if __name__ == "__main__":
    main()
