"""Xet storage for `hfuv server`'s buckets: the CAS side of the Xet protocol (specification 1.1,
as published by Hugging Face), enough for the official client (`hf_xet`) to upload and download.

- `hashes`: chunk, xorb (Merkle), file and term-verification hashes; hash <-> hex string.
- `xorb`: a serialized xorb read back into its chunks, and its hash recomputed from them.
- `shard`: an uploaded shard's file reconstructions and xorb listings, parsed.
- `cas`: the store on disk (xorbs, their chunk index, file reconstructions) with every upload
  verified: a xorb whose chunks do not hash to its name, or a shard whose file hash, term
  ranges or verification hashes do not match stored xorbs, is refused with a 400.
- `routes`: the CAS HTTP API under `/cas` (`/v1/xorbs`, `/v1/shards`, `/v1/reconstructions`,
  signed transfer URLs), with short-lived Xet tokens (`tokens`).

Not offered, each refused with a 404 naming it (the client falls back): global chunk dedup
(`/v1/chunks`), xorb upload grants, `/v2/shards` and `/v2/reconstructions`.
"""
