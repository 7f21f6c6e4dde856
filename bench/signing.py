"""Signed GET URLs: the local signer (through Files.signed_url) vs generate_presigned_url."""

from __future__ import annotations

import asyncio
import time

from graphql_files.adapters.s3 import open_files
from graphql_files.settings import Settings

ROUNDS = 5


async def _measure() -> tuple[float, float]:
    async with open_files(Settings()) as files:  # the embedded moto S3: no network per URL
        keys = [f"images/album-{n % 100}/{n:05}-photo {n}.png" for n in range(2000)]
        for key in keys[:50]:  # warm both paths
            files.signed_url(key, expires_in=900)
            await files.botocore_signed_url(key, expires_in=900)
        best_local = best_botocore = 0.0
        for _ in range(ROUNDS):  # alternate rounds: drift hits both alike
            start = time.perf_counter()
            for key in keys:
                files.signed_url(key, expires_in=900)
            best_local = max(best_local, len(keys) / (time.perf_counter() - start))
            start = time.perf_counter()
            for key in keys[:500]:
                await files.botocore_signed_url(key, expires_in=900)
            best_botocore = max(best_botocore, 500 / (time.perf_counter() - start))
        return best_local, best_botocore


def run() -> None:
    local, botocore = asyncio.run(_measure())
    print(f"Signed GET URLs per second (in process, best of {ROUNDS} rounds)")
    print(f"  Files.signed_url (local SigV4)       {local:>10,.0f} /s")
    print(f"  generate_presigned_url (botocore)    {botocore:>10,.0f} /s")
    print(f"  local / botocore                     {local / botocore:>10.1f}x   (aim: 20x)")
