# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Pixel kernels of the lossless coder: prediction, residual mapping, contexts, rANS.

One tile is a block of rows of an image of unsigned samples of ``bits`` bits,
given as planes (channels, rows, width) of uint16, the first plane being the
one the others lean on (green, for RGB).  Per sample:

1. predict it from its causal neighbours W, N, NW, NE with the tile's
   predictor for that channel (MED, gradient, average, W or N);
2. the residual modulo 2**bits; on RGB-like tiles the first plane's
   residual is subtracted from the next two (a reversible colour transform done on
   residuals, so it never wraps the prediction);
3. centre and zigzag it into ``u`` in [0, 2**bits);
4. choose a context from the local activity (the ``u`` of W, N, NW, NE and of
   the same pixel in the first plane) in half-octave buckets;
5. split ``u`` into a token (0..63: small values exactly, larger ones as
   exponent plus two mantissa bits) coded with rANS under the context's table,
   and raw extra bits written to a separate bit stream.

Rows are walked through padded row buffers, so the inner loops have no edge
cases: at x = 0, W and NW are N; at the last column NE is N; the first row of
a tile predicts from W alone.  Encoding is two passes: ``model_tile`` computes tokens, histograms and extra
bits; once the raster's tables are known, ``rans_tile`` codes the tokens
backwards.  ``decode_tile`` does it all in one forward pass.  Every kernel runs
without the GIL; the decoder checks every read against its input, so damaged
input gives garbage pixels and an error flag, never a read out of bounds (the
container's checksum then refuses the result).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    static inline int cm_bitlen(unsigned int x) { return x ? 32 - __builtin_clz(x) : 0; }
    static inline int cm_bitlen1(unsigned int x) { return 32 - __builtin_clz(x | 1); }  /* 1 for 0 */
    /* the streams are little-endian whatever the machine */
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define CM_LE64(v) __builtin_bswap64(v)
    #define CM_LE32(v) __builtin_bswap32(v)
    #else
    #define CM_LE64(v) (v)
    #define CM_LE32(v) (v)
    #endif
    static inline uint64_t cm_load64le(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return CM_LE64(v); }
    static inline void cm_store64le(uint8_t* p, uint64_t v) { v = CM_LE64(v); memcpy(p, &v, 8); }
    static inline uint32_t cm_load32le(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return CM_LE32(v); }
    static inline void cm_store32le(uint8_t* p, uint32_t v) { v = CM_LE32(v); memcpy(p, &v, 4); }
    static inline uint64_t cm_mulhi64(uint64_t a, uint64_t b) {
        return (uint64_t)(((unsigned __int128)a * b) >> 64);
    }
    """
    int cm_bitlen(unsigned int x) nogil
    int cm_bitlen1(unsigned int x) nogil
    uint64_t cm_load64le(const uint8_t* p) nogil
    void cm_store64le(uint8_t* p, uint64_t v) nogil
    uint32_t cm_load32le(const uint8_t* p) nogil
    void cm_store32le(uint8_t* p, uint32_t v) nogil
    uint64_t cm_mulhi64(uint64_t a, uint64_t b) nogil

cdef enum:
    PROB_BITS = 10
    PROB_SCALE = 1024
    NTOKENS = 64
    NCTX = 28
    NCLASS = 4
    NTABLES = 112          # NCLASS * NCTX
    NPREDICTORS = 5
    MAX_CHANNELS = 256

cdef uint64_t RANS_L = 1ull << 31      # rANS state lives in [L, L << 32)

PREDICTORS = ("med", "gradient", "average", "west", "north")
TOKENS = NTOKENS
CONTEXTS = NCTX
CLASSES = NCLASS
TABLES = NTABLES
SCALE_BITS = PROB_BITS
PADDING = 8            # zero bytes the decoder needs after each stream


cdef int bucket_of(uint32_t a) noexcept nogil:
    # half-octave buckets of the local activity
    cdef int q = cm_bitlen(a)
    cdef int shift = q - 2 if q > 2 else 0
    cdef int c = 2 * q - 2 + <int>((a >> shift) & 1)
    c = <int>a if a < 4 else c
    return c if c < NCTX else NCTX - 1


cdef enum:
    LUT_SIZE = 16384
cdef uint8_t CONTEXT_LUT[LUT_SIZE]
cdef int _a
for _a in range(LUT_SIZE):
    CONTEXT_LUT[_a] = bucket_of(_a)


cdef inline int context_of(uint32_t a) noexcept nogil:
    return CONTEXT_LUT[a] if a < LUT_SIZE else bucket_of(a)


cdef inline int clamp(int v, int lo, int hi) noexcept nogil:
    v = lo if v < lo else v
    return hi if v > hi else v


cdef inline int predict(int p, int W, int N, int NW, int NE, int maxv) noexcept nogil:
    if p == 0:      # MED (LOCO-I): the gradient, clamped between W and N
        return clamp(W + N - NW, W if W < N else N, N if W < N else W)
    if p == 1:
        return clamp(W + N - NW, 0, maxv)
    if p == 2:
        return (W + N + 1) >> 1
    if p == 3:
        return W
    return N


cdef inline uint32_t zigzag(uint32_t v, int shift) noexcept nogil:
    # v is a residual modulo 2**bits: sign-extend it, then interleave signs
    cdef int32_t s = (<int32_t>(v << shift)) >> shift
    return ((<uint32_t>s) << 1) ^ (<uint32_t>(s >> 31))


cdef inline uint32_t unzigzag(uint32_t u, uint32_t mask) noexcept nogil:
    return ((u >> 1) ^ (0u - (u & 1))) & mask


cdef struct Rows:
    # padded row buffers: index 0 is column -1, index width + 1 is column width
    uint16_t* prev
    uint16_t* cur
    uint16_t* uprev
    uint16_t* ucur


cdef inline void start_row(Rows* r, uint16_t* buffers, int y, int width) noexcept nogil:
    """Point at this row's buffers and set the padding the edge rules ask for.
    ``buffers`` holds 5 padded rows: pixels A/B, residuals A/B, zeros."""
    cdef int padded = width + 2
    r.cur = buffers + (y & 1) * padded
    r.ucur = buffers + (2 + (y & 1)) * padded
    if y == 0:
        r.prev = buffers + 4 * padded
        r.uprev = r.prev
        r.cur[0] = 0
        r.ucur[0] = 0
        return
    r.prev = buffers + ((y - 1) & 1) * padded
    r.uprev = buffers + (2 + ((y - 1) & 1)) * padded
    r.prev[0] = r.prev[1]
    r.prev[width + 1] = r.prev[width]
    r.uprev[0] = r.uprev[1]
    r.uprev[width + 1] = r.uprev[width]
    r.cur[0] = r.prev[1]
    r.ucur[0] = r.uprev[1]


cdef inline int residual_at(const uint16_t* row, const uint16_t* prow, int x, int width, int p,
                            uint32_t mask) noexcept nogil:
    cdef int N = prow[x]
    cdef int W = row[x - 1] if x > 0 else N
    cdef int NW = prow[x - 1] if x > 0 else N
    cdef int NE = prow[x + 1] if x < width - 1 else N
    return <int>(<uint32_t>(row[x] - predict(p, W, N, NW, NE, <int>mask)) & mask)


def choose(const uint16_t[:, :, ::1] planes, int bits, int step):
    """Per plane, the predictor with the smallest estimated cost on every
    ``step``-th row, and whether subtracting the first plane's residual pays
    on planes 1 and 2.  Returns (predictors, decorrelate)."""
    cdef int channels = planes.shape[0], height = planes.shape[1], width = planes.shape[2]
    cdef double cost[NPREDICTORS]
    cdef double cost_dec[NPREDICTORS]
    cdef int y, x, k, p, first = 0
    cdef uint32_t mask = (1u << bits) - 1, v, v0
    cdef int shift = 32 - bits
    plain, leaning = [], []
    for k in range(channels):
        for p in range(NPREDICTORS):
            cost[p] = 0
            cost_dec[p] = 0
        with nogil:
            y = 1
            while y < height:
                for x in range(width):
                    if 1 <= k <= 2:
                        v0 = residual_at(&planes[0, y, 0], &planes[0, y - 1, 0], x, width, first, mask)
                    for p in range(NPREDICTORS):
                        v = residual_at(&planes[k, y, 0], &planes[k, y - 1, 0], x, width, p, mask)
                        cost[p] += cm_bitlen(zigzag(v, shift))
                        if 1 <= k <= 2:
                            cost_dec[p] += cm_bitlen(zigzag((v - v0) & mask, shift))
                y += step
        best = min(range(NPREDICTORS), key=lambda q: cost[q])
        best_dec = min(range(NPREDICTORS), key=lambda q: cost_dec[q])
        plain.append((best, cost[best]))
        leaning.append((best_dec, cost_dec[best_dec]))
        if k == 0:
            first = best
    decorrelate = channels >= 3 and leaning[1][1] + leaning[2][1] < plain[1][1] + plain[2][1]
    chosen = [(leaning if decorrelate and 1 <= k <= 2 else plain)[k][0] for k in range(channels)]
    return chosen, bool(decorrelate)


def model_tile(const uint16_t[:, :, ::1] planes, int bits, const uint8_t[::1] predictors, bint decorrelate,
               uint16_t[::1] symbols, uint8_t[::1] extra, uint32_t[:, ::1] histogram, uint16_t[:, ::1] scratch):
    """Pass one of encoding: tokens (as table << 6 | token) into ``symbols``,
    raw extra bits into ``extra``, counts into ``histogram``.  ``scratch`` is
    (2 * rows + 6, width + 2).  Returns the length of ``extra`` used."""
    cdef int channels = planes.shape[0], height = planes.shape[1], width = planes.shape[2]
    cdef int y, x, k, p, W, N, NW, NE, X, P, n, nb, token, table, base, big
    cdef int shift = 32 - bits
    cdef uint32_t mask = (1u << bits) - 1
    cdef uint32_t v, u, uW, a
    cdef const uint16_t* src
    cdef uint16_t* vf
    cdef uint16_t* uf
    cdef uint16_t* vf_out
    cdef uint16_t* uf_out
    cdef uint16_t* zeros
    cdef int64_t s = 0, pos = 0
    cdef uint64_t acc = 0
    cdef int count = 0
    cdef uint8_t* out
    cdef Rows r
    cdef uint16_t* buffers
    cdef uint16_t* sink
    cdef int padded = width + 2
    if predictors.shape[0] != channels or scratch.shape[0] < 2 * height + 6 or scratch.shape[1] != padded:
        raise ValueError("predictors or scratch do not match the tile")
    if symbols.shape[0] < <int64_t>channels * height * width:
        raise ValueError("symbol buffer too small")
    if extra.shape[0] < <int64_t>channels * height * width * 2 + 16:
        raise ValueError("extra-bits buffer too small")
    for k in range(channels):
        if predictors[k] >= NPREDICTORS:
            raise ValueError("unknown predictor")
    out = &extra[0]
    buffers = &scratch[2 * height, 0]
    zeros = buffers + 4 * padded + 1
    sink = buffers + 5 * padded
    with nogil:
        for x in range(padded):
            zeros[x - 1] = 0
        for k in range(channels):
            base = (k if k < NCLASS else NCLASS - 1) * NCTX
            for y in range(height):
                start_row(&r, buffers, y, width)
                src = &planes[k, y, 0]
                for x in range(width):
                    r.cur[x + 1] = src[x]
                # the first plane remembers its v and u: planes 1 and 2 lean on them
                vf_out = &scratch[y, 1] if k == 0 else sink
                uf_out = &scratch[height + y, 1] if k == 0 else sink
                vf = &scratch[y, 1] if (decorrelate and 1 <= k <= 2) else zeros
                uf = &scratch[height + y, 1] if k > 0 else zeros
                p = predictors[k] if y > 0 else 3
                W = r.cur[0]
                NW = r.prev[0]
                N = r.prev[1]
                uW = r.ucur[0]
                for x in range(width):
                    NE = r.prev[x + 2]
                    X = r.cur[x + 1]
                    P = predict(p, W, N, NW, NE, <int>mask)
                    v = <uint32_t>(X - P) & mask
                    vf_out[x] = <uint16_t>v
                    v = (v - vf[x]) & mask
                    u = zigzag(v, shift)
                    a = r.uprev[x + 1] + uW + ((r.uprev[x] + r.uprev[x + 2]) >> 1) + (uf[x] >> 1)
                    table = base + context_of(a)
                    big = u >= 16
                    n = cm_bitlen1(u) - 1
                    nb = n - 2 if big else 0
                    token = 16 + ((n - 4) << 2) + <int>((u >> nb) & 3) if big else <int>u
                    acc |= (<uint64_t>(u & ((1u << nb) - 1))) << count
                    count += nb
                    cm_store64le(out + pos, acc)
                    pos += count >> 3
                    acc >>= count & ~7
                    count &= 7
                    symbols[s] = <uint16_t>((table << 6) | token)
                    s += 1
                    histogram[table, token] += 1
                    r.ucur[x + 1] = <uint16_t>u
                    uf_out[x] = <uint16_t>u
                    uW = u
                    NW = N
                    N = NE
                    W = X
    return pos + (1 if count > 0 else 0)


def rans_tile(const uint16_t[::1] symbols, const uint64_t[::1] x_max, const uint64_t[::1] rcp_freq,
              const uint32_t[::1] rcp_shift, const uint32_t[::1] bias, const uint32_t[::1] cmpl_freq,
              uint8_t[::1] out):
    """Pass two: rANS-code ``symbols`` backwards into the end of ``out``
    (Giesen's rans64: 64-bit states, 32-bit words, reciprocal division), with
    two states taking turns (even and odd samples) so their work overlaps.
    The per-symbol tables are indexed by the symbol itself (table << 6 | token).
    Returns the offset in ``out`` where the coded bytes start."""
    cdef int64_t n = symbols.shape[0]
    cdef int64_t i
    cdef int64_t pos = out.shape[0]
    cdef uint64_t x = RANS_L, other = RANS_L, q, t
    cdef uint16_t sym
    if pos < n * 2 + 24:
        raise ValueError("rANS buffer too small")
    with nogil:
        i = n - 1
        while i >= 0:
            sym = symbols[i]
            if x >= x_max[sym]:
                pos -= 4
                cm_store32le(&out[pos], <uint32_t>x)
                x >>= 32
            q = cm_mulhi64(x, rcp_freq[sym]) >> rcp_shift[sym]
            x = x + bias[sym] + q * cmpl_freq[sym]
            t = x
            x = other
            other = t
            i -= 1
        # after sample 0, ``other`` holds the even state: it goes first
        pos -= 8
        cm_store64le(&out[pos], x)
        pos -= 8
        cm_store64le(&out[pos], other)
    return pos


def decode_tile(uint16_t[:, :, ::1] planes, int bits, const uint8_t[::1] predictors, bint decorrelate,
                const uint8_t[::1] rans, const uint8_t[::1] extra,
                const uint8_t[::1] slot_symbol, const uint16_t[::1] freq, const uint16_t[::1] start,
                uint16_t[:, ::1] scratch):
    """Decode one tile into ``planes``.  ``rans`` and ``extra`` end with PADDING
    zero bytes beyond their coded length.  ``slot_symbol`` maps (table, slot)
    to a token, ``freq``/``start`` (table << 6 | token) to its range.  Returns
    True when both streams were consumed exactly as the encoder left them."""
    cdef int channels = planes.shape[0], height = planes.shape[1], width = planes.shape[2]
    cdef int y, x, k, p, W, N, NW, NE, X, P, n, nb, token, table, base, big
    cdef uint32_t mask = (1u << bits) - 1
    cdef uint32_t v, u, uW, a, slot, sym, need
    cdef uint16_t* dst
    cdef uint16_t* vf
    cdef uint16_t* uf
    cdef uint16_t* vf_out
    cdef uint16_t* uf_out
    cdef uint16_t* zeros
    cdef uint16_t* buffers
    cdef uint16_t* sink
    cdef int padded = width + 2
    cdef Rows r
    cdef uint64_t state, other, swap, acc = 0
    cdef int count = 0
    cdef int64_t rpos = 16, rsize = rans.shape[0] - PADDING
    cdef int64_t epos = 0, esize = extra.shape[0] - PADDING, consumed = 0
    cdef bint overrun = False
    cdef const uint8_t* rdata
    cdef const uint8_t* edata
    if predictors.shape[0] != channels or scratch.shape[0] < 2 * height + 6 or scratch.shape[1] != padded:
        raise ValueError("predictors or scratch do not match the tile")
    if slot_symbol.shape[0] != NTABLES * PROB_SCALE or freq.shape[0] != NTABLES * NTOKENS \
            or start.shape[0] != NTABLES * NTOKENS:
        raise ValueError("tables have the wrong size")
    if rsize < 16 or esize < 0:
        return False
    for k in range(channels):
        if predictors[k] >= NPREDICTORS:
            return False
    rdata = &rans[0]
    edata = &extra[0]
    state = cm_load64le(rdata)
    other = cm_load64le(rdata + 8)
    buffers = &scratch[2 * height, 0]
    zeros = buffers + 4 * padded + 1
    sink = buffers + 5 * padded
    with nogil:
        for x in range(padded):
            zeros[x - 1] = 0
        for k in range(channels):
            base = (k if k < NCLASS else NCLASS - 1) * NCTX
            for y in range(height):
                start_row(&r, buffers, y, width)
                vf_out = &scratch[y, 1] if k == 0 else sink
                uf_out = &scratch[height + y, 1] if k == 0 else sink
                vf = &scratch[y, 1] if (decorrelate and 1 <= k <= 2) else zeros
                uf = &scratch[height + y, 1] if k > 0 else zeros
                p = predictors[k] if y > 0 else 3
                W = r.cur[0]
                NW = r.prev[0]
                N = r.prev[1]
                uW = r.ucur[0]
                for x in range(width):
                    a = r.uprev[x + 1] + uW + ((r.uprev[x] + r.uprev[x + 2]) >> 1) + (uf[x] >> 1)
                    table = base + context_of(a)
                    slot = <uint32_t>(state & (PROB_SCALE - 1))
                    token = slot_symbol[(table << PROB_BITS) | slot]
                    sym = (table << 6) | token
                    state = freq[sym] * (state >> PROB_BITS) + slot - start[sym]
                    need = state < RANS_L
                    state = ((state << 32) | cm_load32le(rdata + rpos)) if need else state
                    rpos += need << 2
                    if rpos > rsize:
                        overrun = True
                        rpos = rsize
                    swap = state
                    state = other
                    other = swap
                    # raw extra bits: a branch-free refill every fourth sample is enough, as a
                    # sample takes at most 13 bits (the padding makes the 8-byte load safe)
                    if (x & 3) == 0:
                        acc |= cm_load64le(edata + epos) << count
                        epos += (63 - count) >> 3
                        count |= 56
                        if epos > esize:
                            epos = esize
                    big = token >= 16
                    n = ((token - 16) >> 2) + 4
                    nb = n - 2 if big else 0
                    consumed += nb
                    u = ((4u | (token & 3)) << nb) | <uint32_t>(acc & ((1u << nb) - 1)) if big else <uint32_t>token
                    acc >>= nb
                    count -= nb
                    r.ucur[x + 1] = <uint16_t>u
                    uf_out[x] = <uint16_t>u
                    uW = u
                    v = unzigzag(u, mask)
                    vf_out[x] = <uint16_t>v
                    v = (v + vf[x]) & mask
                    NE = r.prev[x + 2]
                    P = predict(p, W, N, NW, NE, <int>mask)
                    X = <int>((<uint32_t>P + v) & mask)
                    r.cur[x + 1] = <uint16_t>X
                    NW = N
                    N = NE
                    W = X
                dst = &planes[k, y, 0]
                for x in range(width):
                    dst[x] = r.cur[x + 1]
    return (not overrun and rpos == rsize and state == RANS_L and other == RANS_L
            and (consumed + 7) >> 3 == esize)


def mark_levels(const uint16_t[:, :, ::1] planes, uint8_t[:, ::1] used):
    """Set used[k, v] for every value v that plane k holds (values below used.shape[1])."""
    cdef int channels = planes.shape[0], height = planes.shape[1], width = planes.shape[2]
    cdef int k, y, x
    cdef int64_t levels = used.shape[1]
    cdef const uint16_t* row
    cdef uint8_t* mark
    if used.shape[0] < channels:
        raise ValueError("one row of marks per plane")
    with nogil:
        for k in range(channels):
            mark = &used[k, 0]
            for y in range(height):
                row = &planes[k, y, 0]
                for x in range(width):
                    if row[x] < levels:
                        mark[row[x]] = 1
    return None


def remap(uint16_t[:, :, ::1] planes, const uint16_t[:, ::1] tables, const int32_t[::1] sizes):
    """Replace each value v of plane k by tables[k, v] where sizes[k] > 0.
    Returns False (leaving the planes part-mapped) when a value is at or
    beyond sizes[k]: ranks out of their palette mean damaged input."""
    cdef int channels = planes.shape[0], height = planes.shape[1], width = planes.shape[2]
    cdef int k, y, x
    cdef uint16_t* row
    cdef const uint16_t* table
    cdef uint32_t size
    cdef bint clean = True
    if tables.shape[0] < channels or sizes.shape[0] < channels:
        raise ValueError("one table per plane")
    with nogil:
        for k in range(channels):
            size = <uint32_t>sizes[k]
            if size == 0:
                continue
            if size > <uint32_t>tables.shape[1]:
                clean = False
                break
            table = &tables[k, 0]
            for y in range(height):
                row = &planes[k, y, 0]
                for x in range(width):
                    if row[x] < size:
                        row[x] = table[row[x]]
                    else:
                        clean = False
    return clean
