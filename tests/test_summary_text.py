"""The summary lines ``cloudmover cp`` prints: a quick job's time and rate, and a small saving, stay readable."""
import pytest

from headnode.progress import transfer_text


@pytest.mark.parametrize("nbytes, seconds, expected", [
    (3_000_008, 0.0872, "3,000,008 bytes in 0.09 s (34.4 MB/s)"),
    (6, 0.02, "6 bytes in 0.02 s (300 B/s)"),
    (131_072_000, 1.3, "131,072,000 bytes in 1.30 s (100.8 MB/s)"),
    (54_000, 0.5, "54,000 bytes in 0.50 s (108.0 kB/s)"),
    (5 * 10**11, 125.0, "500,000,000,000 bytes in 125.0 s (4.0 GB/s)"),
    (0, 0.0, "0 bytes in 0.00 s"),
    (0, 0.4, "0 bytes in 0.40 s (0 B/s)"),
])
def test_transfer_text(nbytes, seconds, expected):
    assert transfer_text(nbytes, seconds) == expected


@pytest.mark.parametrize("transfer, storage, expected", [
    (0.000045, 0.0000009, "(transfer under $0.0001, storage under $0.0001/month)"),
    (1.23456, 0.5, "(transfer $1.2346, storage $0.5000/month)"),
    (0.0, 0.0, "(transfer $0.0000, storage $0.0000/month)"),
])
def test_codec_savings_never_read_as_nothing_when_something_was_saved(transfer, storage, expected):
    from headnode.cli import _codec_line

    line = _codec_line({"mode": "compress", "objects_encoded": 6, "bytes_saved": 2_258_369,
                        "transfer_cost_saved_usd": transfer, "storage_cost_saved_per_month_usd": storage})
    assert line == f"image codec (compress): 6 image(s) encoded, 2,258,369 bytes saved {expected}"
