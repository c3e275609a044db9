# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Pixel kernels of the lossless coder: prediction, residual mapping, contexts, rANS.

One tile is a block of rows of an (height, width, channels) image of unsigned
samples of ``bits`` bits, stored as uint16.  Per sample:

1. predict it from its causal neighbours W, N, NW, NE with the tile's
   predictor for that channel (MED, gradient, average, W or N);
2. the residual modulo 2**bits; on RGB-like tiles the first coded channel's
   residual is subtracted from the others (a reversible colour transform done on
   residuals, so it never wraps the prediction);
3. centre and zigzag it into ``u`` in [0, 2**bits);
4. choose a context from the local activity (the ``u`` of W, N, NW, NE and of
   the pixel's first channel) in half-octave buckets;
5. split ``u`` into a token (0..63: small values exactly, larger ones as
   exponent plus two mantissa bits) coded with rANS under the context's table,
   and raw extra bits written to a separate bit stream.

Encoding is two passes: ``model_tile`` computes tokens, histograms and extra
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
    static inline uint64_t cm_load64le(const uint8_t* p) {
        uint64_t v; memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }
    static inline void cm_store64le(uint8_t* p, uint64_t v) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        memcpy(p, &v, 8);
    }
    static inline uint32_t cm_load32le(const uint8_t* p) {
        uint32_t v; memcpy(&v, p, 4);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
    #endif
        return v;
    }
    static inline void cm_store32le(uint8_t* p, uint32_t v) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
    #endif
        memcpy(p, &v, 4);
    }
    static inline uint64_t cm_mulhi64(uint64_t a, uint64_t b) {
        return (uint64_t)(((unsigned __int128)a * b) >> 64);
    }
    """
    int cm_bitlen(unsigned int x) nogil
    uint64_t cm_load64le(const uint8_t* p) nogil
    void cm_store64le(uint8_t* p, uint64_t v) nogil
    uint32_t cm_load32le(const uint8_t* p) nogil
    void cm_store32le(uint8_t* p, uint32_t v) nogil
    uint64_t cm_mulhi64(uint64_t a, uint64_t b) nogil

cdef enum:
    PROB_BITS = 12
    PROB_SCALE = 4096
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


cdef inline int context_of(uint32_t a) noexcept nogil:
    # half-octave buckets of the local activity
    cdef int q = cm_bitlen(a)
    cdef int shift = q - 2 if q > 2 else 0
    cdef int c = 2 * q - 2 + <int>((a >> shift) & 1)
    c = <int>a if a < 4 else c
    return c if c < NCTX else NCTX - 1


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


cdef void channel_order(int channels, int* order) noexcept nogil:
    # RGB-like pixels code the middle (green) channel first: the others lean on it.
    cdef int k
    for k in range(channels):
        order[k] = k
    if channels >= 3:
        order[0] = 1
        order[1] = 0


cdef inline void neighbours(const uint16_t* row, const uint16_t* prow, int i, int x, int y,
                            int width, int channels, int* W, int* N, int* NW, int* NE) noexcept nogil:
    if y > 0:
        N[0] = prow[i]
        W[0] = row[i - channels] if x > 0 else N[0]
        NW[0] = prow[i - channels] if x > 0 else N[0]
        NE[0] = prow[i + channels] if x < width - 1 else N[0]
    else:
        W[0] = row[i - channels] if x > 0 else 0
        N[0] = W[0]
        NW[0] = W[0]
        NE[0] = W[0]


cdef inline int table_of(const uint16_t* uprev, const uint16_t* ucur, int i, int x, int k,
                         int width, int channels, uint32_t ufirst) noexcept nogil:
    # the context: activity of the residuals around this sample
    cdef uint32_t uN = uprev[i], uW, uNW, uNE, a
    if x > 0:
        uW = ucur[i - channels]
        uNW = uprev[i - channels]
    else:
        uW = uN
        uNW = uN
    uNE = uprev[i + channels] if x < width - 1 else uN
    a = uN + uW + ((uNW + uNE) >> 1)
    if k > 0:
        a += ufirst
    return (k if k < NCLASS else NCLASS - 1) * NCTX + context_of(a)


def choose(const uint16_t[:, ::1] tile, int width, int channels, int bits, int step):
    """Per channel, the predictor with the smallest estimated cost on every
    ``step``-th row, and whether subtracting the first channel's residual
    pays on the others.  Returns (predictors by channel, decorrelate)."""
    cdef int height = tile.shape[0]
    cdef int order[MAX_CHANNELS]
    cdef double cost[NPREDICTORS][MAX_CHANNELS]
    cdef double cost_dec[NPREDICTORS][MAX_CHANNELS]
    cdef int y, x, k, ch, p, i, W, N, NW, NE, P
    cdef uint32_t mask = (1u << bits) - 1, v
    cdef uint32_t vfirst[NPREDICTORS]
    cdef int shift = 32 - bits
    cdef const uint16_t* row
    cdef const uint16_t* prow
    if channels > MAX_CHANNELS or channels < 1:
        raise ValueError("unsupported channel count")
    channel_order(channels, order)
    for p in range(NPREDICTORS):
        for k in range(channels):
            cost[p][k] = 0
            cost_dec[p][k] = 0
    with nogil:
        y = 1
        while y < height:
            row = &tile[y, 0]
            prow = &tile[y - 1, 0]
            for x in range(width):
                for k in range(channels):
                    ch = order[k]
                    i = x * channels + ch
                    neighbours(row, prow, i, x, y, width, channels, &W, &N, &NW, &NE)
                    for p in range(NPREDICTORS):
                        P = predict(p, W, N, NW, NE, <int>mask)
                        v = <uint32_t>(row[i] - P) & mask
                        cost[p][k] += cm_bitlen(zigzag(v, shift))
                        if k == 0:
                            vfirst[p] = v
                        elif k <= 2:
                            cost_dec[p][k] += cm_bitlen(zigzag((v - vfirst[p]) & mask, shift))
            y += step
    plain = [min(range(NPREDICTORS), key=lambda q: cost[q][k]) for k in range(channels)]
    decorrelated = list(plain)
    decorrelate = False
    if channels >= 3:
        for k in (1, 2):
            decorrelated[k] = min(range(NPREDICTORS), key=lambda q: cost_dec[q][k])
        decorrelate = (sum(cost_dec[decorrelated[k]][k] for k in (1, 2))
                       < sum(cost[plain[k]][k] for k in (1, 2)))
    chosen = decorrelated if decorrelate else plain
    by_channel = [0] * channels
    for k in range(channels):
        by_channel[order[k]] = chosen[k]
    return by_channel, decorrelate


def model_tile(const uint16_t[:, ::1] tile, int width, int channels, int bits,
               const uint8_t[::1] predictors, bint decorrelate,
               uint16_t[::1] symbols, uint8_t[::1] extra, uint32_t[:, ::1] histogram,
               uint16_t[::1] urow):
    """Pass one of encoding: tokens (as table << 6 | token) into ``symbols``,
    raw extra bits into ``extra``, counts into ``histogram``.  ``urow`` is
    scratch of 2 * width * channels.  Returns the length of ``extra`` used."""
    cdef int height = tile.shape[0]
    cdef int stride = width * channels
    cdef int order[MAX_CHANNELS]
    cdef int pred[MAX_CHANNELS]
    cdef int y, x, k, ch, i, W, N, NW, NE, P, n, nb, token, table, big
    cdef int shift = 32 - bits
    cdef uint32_t mask = (1u << bits) - 1
    cdef uint32_t v, vfirst = 0, u, ufirst = 0
    cdef const uint16_t* row
    cdef const uint16_t* prow
    cdef uint16_t* uprev
    cdef uint16_t* ucur
    cdef uint16_t* swap
    cdef int64_t s = 0, pos = 0
    cdef uint64_t acc = 0
    cdef int count = 0
    cdef uint8_t* out
    if channels > MAX_CHANNELS or channels < 1 or predictors.shape[0] != channels:
        raise ValueError("unsupported channel count")
    if tile.shape[1] != stride or symbols.shape[0] < <int64_t>height * stride or urow.shape[0] < 2 * stride:
        raise ValueError("scratch buffers too small")
    if extra.shape[0] < <int64_t>height * stride * 2 + 16:
        raise ValueError("extra-bits buffer too small")
    channel_order(channels, order)
    for k in range(channels):
        pred[k] = predictors[order[k]]
    out = &extra[0]
    uprev = &urow[0]
    ucur = &urow[stride]
    with nogil:
        for i in range(stride):
            uprev[i] = 0
        for y in range(height):
            row = &tile[y, 0]
            prow = &tile[y - 1, 0] if y > 0 else row
            for x in range(width):
                for k in range(channels):
                    ch = order[k]
                    i = x * channels + ch
                    neighbours(row, prow, i, x, y, width, channels, &W, &N, &NW, &NE)
                    P = predict(pred[k], W, N, NW, NE, <int>mask)
                    v = <uint32_t>(row[i] - P) & mask
                    if k == 0:
                        vfirst = v
                    elif decorrelate and k <= 2:
                        v = (v - vfirst) & mask
                    u = zigzag(v, shift)
                    table = table_of(uprev, ucur, i, x, k, width, channels, ufirst)
                    if k == 0:
                        ufirst = u
                    # token: small values exactly, larger ones as exponent and two mantissa bits
                    big = u >= 16
                    n = cm_bitlen(u) - 1
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
                    ucur[i] = <uint16_t>u
            swap = uprev
            uprev = ucur
            ucur = swap
    return pos + (1 if count > 0 else 0)


def rans_tile(const uint16_t[::1] symbols, const uint64_t[::1] x_max, const uint64_t[::1] rcp_freq,
              const uint32_t[::1] rcp_shift, const uint32_t[::1] bias, const uint32_t[::1] cmpl_freq,
              uint8_t[::1] out):
    """Pass two: rANS-code ``symbols`` backwards into the end of ``out``
    (64-bit state, 32-bit words; Giesen's rans64 with reciprocal division).
    The per-symbol tables are indexed by the symbol itself (table << 6 | token).
    Returns the offset in ``out`` where the coded bytes start."""
    cdef int64_t n = symbols.shape[0]
    cdef int64_t i
    cdef int64_t pos = out.shape[0]
    cdef uint64_t x = RANS_L, q
    cdef uint16_t sym
    if pos < n * 2 + 16:
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
            i -= 1
        pos -= 8
        cm_store64le(&out[pos], x)
    return pos


def decode_tile(uint16_t[:, ::1] tile, int width, int channels, int bits,
                const uint8_t[::1] predictors, bint decorrelate,
                const uint8_t[::1] rans, const uint8_t[::1] extra,
                const uint8_t[::1] slot_symbol, const uint16_t[::1] freq, const uint16_t[::1] start,
                uint16_t[::1] urow):
    """Decode one tile into ``tile``.  ``rans`` and ``extra`` end with PADDING
    zero bytes beyond their coded length.  ``slot_symbol`` maps (table, slot)
    to a token, ``freq``/``start`` (table << 6 | token) to its range.  Returns
    True when both streams were consumed exactly as the encoder left them."""
    cdef int height = tile.shape[0]
    cdef int stride = width * channels
    cdef int order[MAX_CHANNELS]
    cdef int pred[MAX_CHANNELS]
    cdef int y, x, k, ch, i, W, N, NW, NE, P, n, nb, token, table, big
    cdef uint32_t mask = (1u << bits) - 1
    cdef uint32_t v, vfirst = 0, u, ufirst = 0, slot, sym, need
    cdef uint16_t* row
    cdef uint16_t* prow
    cdef uint16_t* uprev
    cdef uint16_t* ucur
    cdef uint16_t* swap
    cdef uint64_t state, acc = 0
    cdef int count = 0
    cdef int64_t rpos = 8, rsize = rans.shape[0] - PADDING
    cdef int64_t epos = 0, esize = extra.shape[0] - PADDING, consumed = 0
    cdef bint overrun = False
    cdef const uint8_t* rdata
    cdef const uint8_t* edata
    if channels > MAX_CHANNELS or channels < 1 or predictors.shape[0] != channels:
        raise ValueError("unsupported channel count")
    if tile.shape[1] != stride or urow.shape[0] < 2 * stride:
        raise ValueError("tile shape does not match")
    if slot_symbol.shape[0] != NTABLES * PROB_SCALE or freq.shape[0] != NTABLES * NTOKENS \
            or start.shape[0] != NTABLES * NTOKENS:
        raise ValueError("tables have the wrong size")
    if rsize < 8 or esize < 0:
        return False
    channel_order(channels, order)
    for k in range(channels):
        pred[k] = predictors[order[k]]
        if pred[k] >= NPREDICTORS:
            return False
    rdata = &rans[0]
    edata = &extra[0]
    state = cm_load64le(rdata)
    uprev = &urow[0]
    ucur = &urow[stride]
    with nogil:
        for i in range(stride):
            uprev[i] = 0
        for y in range(height):
            row = &tile[y, 0]
            prow = &tile[y - 1, 0] if y > 0 else row
            for x in range(width):
                for k in range(channels):
                    ch = order[k]
                    i = x * channels + ch
                    table = table_of(uprev, ucur, i, x, k, width, channels, ufirst)
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
                    # raw extra bits (branch-free refill; the padding makes the 8-byte load safe)
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
                    ucur[i] = <uint16_t>u
                    if k == 0:
                        ufirst = u
                    v = unzigzag(u, mask)
                    if k == 0:
                        vfirst = v
                    elif decorrelate and k <= 2:
                        v = (v + vfirst) & mask
                    neighbours(row, prow, i, x, y, width, channels, &W, &N, &NW, &NE)
                    P = predict(pred[k], W, N, NW, NE, <int>mask)
                    row[i] = <uint16_t>((<uint32_t>P + v) & mask)
            swap = uprev
            uprev = ucur
            ucur = swap
    return (not overrun and rpos == rsize and state == RANS_L
            and (consumed + 7) >> 3 == esize)
