"""What the image codec saved a job: bytes, and the transfer and storage cost.

Cost saved is the bytes saved times the configured prices
(``TRANSFER_PRICE_PER_GB``, ``STORAGE_PRICE_PER_GB_MONTH``; a GB is 2**30
bytes, as AWS bills). A compress job saves both: the encoded bytes crossed the
regions and are what the destination stores. A decompress job decodes in the
destination region, so the encoded bytes still crossed the regions, but the
destination then stores the originals: it saves transfer only.
"""
from __future__ import annotations

GB = 1 << 30


def codec_summary(job, config: dict) -> dict | None:
    """The ``codec`` block of a job's representation; None for a job without the codec."""
    mode = job.codec_mode
    if mode == "none":
        return None
    gigabytes = job.bytes_saved / GB
    storage = gigabytes * config["STORAGE_PRICE_PER_GB_MONTH"] if mode == "compress" else 0.0
    return {"mode": mode,
            "objects_encoded": job.codec_objects if mode == "compress" else 0,
            "objects_decoded": job.codec_objects if mode == "decompress" else 0,
            "bytes_read": job.codec_bytes_read, "bytes_written": job.codec_bytes_written,
            "bytes_saved": job.bytes_saved,
            "transfer_cost_saved_usd": gigabytes * config["TRANSFER_PRICE_PER_GB"],
            "storage_cost_saved_per_month_usd": storage}
