"""The codec's kept scratch arrays (codec/buffers.py): lent for one call, kept after it,
never lent twice at once, and bounded however many threads borrow."""
import threading

import numpy as np

from codec.buffers import Buffers


def test_an_array_given_back_is_lent_again_and_a_smaller_loan_takes_the_best_fit():
    buffers = Buffers(limit=1 << 20, count=4)
    with buffers.lending() as lend:
        big, small = lend(5000), lend(3000)
        assert (big.size, small.size, big.dtype) == (5000, 3000, np.uint8)
        big_at, small_at = big.ctypes.data, small.ctypes.data
    assert buffers.kept_bytes == 8000
    with buffers.lending() as lend:
        assert lend(2000).ctypes.data == small_at       # the smallest that fits
        assert lend(4000).ctypes.data == big_at
        assert lend(4000).ctypes.data not in (big_at, small_at)    # both lent: a new one
    assert buffers.kept_bytes == 8000 + 4000


def test_what_is_kept_stays_within_the_limits():
    buffers = Buffers(limit=10_000, count=3)
    with buffers.lending() as lend:
        for size in (4000, 4000, 4000, 20_000, 1000):
            lend(size)
    assert buffers.kept_bytes <= 10_000 and len(buffers._kept) <= 3
    assert all(a.size != 20_000 for a in buffers._kept)     # larger than the limit: not kept
    with buffers.lending() as lend:
        lend(0)                                               # an empty loan is fine
    assert buffers.kept_bytes <= 10_000


def test_threads_never_share_a_lent_array():
    buffers = Buffers(limit=1 << 22, count=8)
    clashes, barrier = [], threading.Barrier(4)

    def borrow(mark: int) -> None:
        barrier.wait()
        for _ in range(200):
            with buffers.lending() as lend:
                array = lend(4096 + mark)
                array[:] = mark
                if not (array == mark).all():
                    clashes.append(mark)

    threads = [threading.Thread(target=borrow, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not clashes


def test_nothing_the_codec_returns_lies_in_a_kept_array():
    """Results are the callers' to keep: a later call, reusing the kept arrays, changes none."""
    import codec
    from codec.formats import samples
    rng = np.random.default_rng(11)
    frames = [samples.write_dpx((rng.integers(0, 1024, (120, 96, 3)) // (1 + n)).astype(np.uint16), bits=10,
                                packing=1, big_endian=True) for n in range(2)]
    first = codec.encode(frames[0], threads=2)
    kept = bytes(first)
    restored = codec.decode(first, threads=2)
    second = codec.encode(frames[1], threads=2)
    assert codec.decode(second, threads=2) == frames[1]
    assert first == kept and restored == frames[0] and codec.decode(first) == frames[0]
