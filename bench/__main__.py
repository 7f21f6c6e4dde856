"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from __future__ import annotations

import sys

from . import fanout, http_throughput, images, listing, relations, signing, uploads, variants

SECTIONS = {
    "http": http_throughput.run,
    "signing": signing.run,
    "listing": listing.run,
    "relations": relations.run,
    "fanout": fanout.run,
    "uploads": uploads.run,
    "images": images.run,
    "variants": variants.run,
}


def main() -> None:
    """All sections, or those named: python -m bench signing listing"""
    for name in sys.argv[1:] or SECTIONS:
        SECTIONS[name]()
        print()


if __name__ == "__main__":
    main()
