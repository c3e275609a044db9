# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Pixel kernels of the lossless coder: prediction, residual mapping, contexts, rANS.

One tile is a block of rows of an image of unsigned samples of ``bits`` bits,
given as planes (channels, rows, width) of uint16, the first plane being the
one the others lean on (green, for RGB).  Per sample:

1. predict it from its causal neighbours W, N, NW with the tile's predictor
   for that channel (MED, gradient, average, W or N);
2. the residual modulo 2**bits; on RGB-like tiles the first plane's
   residual is subtracted from the next two (a reversible colour transform done on
   residuals, so it never wraps the prediction);
3. centre and zigzag it into ``u`` in [0, 2**bits);
4. choose a context from the local activity (the ``u`` of W, N, NW, NE and of
   the same pixel in the first plane) in half-octave buckets;
5. split ``u`` into a token (0..63: small values exactly, larger ones as
   exponent plus two mantissa bits) coded with rANS under the context's table,
   and raw extra bits written to a separate bit stream.

Each row is coded as two lanes, its left and right halves, taken in turns
(left 0, right 0, left 1, ...); the right half starts as a row does (W is
N), so the decoder runs two independent dependency chains side by side, one
rANS state each.  Edge rules: at x = 0, W and NW are N; at the last column
NE is N; the first row of a tile predicts from W alone.

Encoding is two passes: ``model_tiles`` computes each tile's tokens, counts
and extra bits (the residuals, contexts and tokens of a whole row in loops
gcc vectorises, then a serial walk in coding order); once the raster's
tables are known, ``rans_jobs`` codes each tile's tokens backwards.  Both
run a raster's tiles on OpenMP threads.  ``decode_tile`` does it all in one
forward pass: per row, a vectorised pass sums the part of each column's
activity that does not depend on W, then the serial loop takes one table
load per sample (token, frequency and offset packed together) and
renormalises without branches.  The kernels are C in the block below (so the
lanes and predictors can be specialised at compile time), built twice (for
any x86-64 and for x86-64-v3, the loader picking the one the CPU runs) and
wrapped by Cython functions that check their arguments.  ``model_tiles`` and ``mark_bands`` read
samples straight from a file's bytes (1 or 2 bytes, either byte order), and
``decode_tile`` writes them back the same way; ``unpack_fields`` and
``pack_fields`` convert words holding several samples (filled DPX).

Measured (bench/codec.py, 22 images, 2 shared cores, see bench/README.md):
134 MB/s encoding and 175 MB/s decoding on one core, 1.6x and 1.9x the
previous one-lane kernels under the same conditions, for an overall ratio
0.07% lower (the right lane's first sample of each row has no W).  The
x86-64-v3 build and the changes of 2026-11-27 took the medians of
alternating runs from 122 / 157 MB/s to 160 / 179, output unchanged.

Every kernel runs without the GIL; the decoder checks every read against its
input, so damaged input gives garbage pixels and an error flag, never a read
out of bounds (the container's checksum then refuses the result).
"""
import numpy as np
from libc.math cimport floor
from libc.string cimport memcpy
from cython.parallel cimport prange, threadid
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.stdlib cimport calloc, malloc, free

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    #include <stdlib.h>
    #define CM_INLINE static inline __attribute__((always_inline))
    CM_INLINE int cm_bitlen(unsigned int x) { return x ? 32 - __builtin_clz(x) : 0; }
    /* the streams are little-endian whatever the machine */
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define CM_LE64(v) __builtin_bswap64(v)
    #define CM_LE32(v) __builtin_bswap32(v)
    #define CM_LE16(v) __builtin_bswap16(v)
    #else
    #define CM_LE16(v) (v)
    #define CM_LE64(v) (v)
    #define CM_LE32(v) (v)
    #endif
    CM_INLINE uint64_t cm_load64le(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return CM_LE64(v); }
    /* clears a flag, saying whether it was set: one thread of several takes a job */
    static inline int cm_take(int* flag) { return __atomic_exchange_n(flag, 0, __ATOMIC_ACQ_REL); }
    CM_INLINE void cm_store64le(uint8_t* p, uint64_t v) { v = CM_LE64(v); memcpy(p, &v, 8); }
    CM_INLINE uint32_t cm_load32le(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return CM_LE32(v); }
    CM_INLINE void cm_store32le(uint8_t* p, uint32_t v) { v = CM_LE32(v); memcpy(p, &v, 4); }
    /* A 16-bit byte swap spelled on 32 bits: gcc compiles __builtin_bswap16
       of a load to movbe into a 16-bit register, whose merge with the
       register's old value chains every loop iteration to the last one */
    CM_INLINE uint32_t cm_swap16(uint16_t v) { return __builtin_bswap32((uint32_t)v) >> 16; }
    CM_INLINE uint64_t cm_mulhi64(uint64_t a, uint64_t b) {
        return (uint64_t)(((unsigned __int128)a * b) >> 64);
    }
    /* The kernels below are built twice, for any x86-64 and for x86-64-v3
       (AVX2 vectors twice as wide, BMI2 shifts), and the loader picks the
       one the CPU runs (an ifunc); both give the same output. */
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
    #define CM_KERNEL __attribute__((target_clones("default", "arch=x86-64-v3")))
    #else
    #define CM_KERNEL
    #endif

    /* Python builds extensions with -fwrapv, which keeps gcc from
       vectorising the int-to-float conversions below; nothing from here to
       the pop relies on signed wrap-around.  (The helpers above stay outside:
       the Cython code inlines them.) */
    #pragma GCC push_options
    #pragma GCC optimize ("no-wrapv")
    #define CM_PROB_BITS 10
    #define CM_SCALE 1024
    #define CM_NCTX 28
    #define CM_NCLASS 4
    #define CM_NSYMBOLS (112 * 64)
    #define CM_RANS_L (1ull << 31)
    #define CM_LUT_LAST 16383u     /* activities from here up all share the last context */
    /* activity -> context << CM_PROB_BITS: the row of the context's table
       (pre-shifted, to save a step on the decoder's critical path) */
    static uint16_t cm_context_lut[CM_LUT_LAST + 1];

    CM_INLINE int cm_predict(const int p, int W, int N, int NW, int NE, int maxv) {
        int g = W + N - NW;
        if (p == 0) {       /* MED (LOCO-I): the gradient, clamped between W and N */
            int lo = W < N ? W : N, hi = W < N ? N : W;
            g = g < lo ? lo : g;
            return g > hi ? hi : g;
        }
        if (p == 1) { g = g < 0 ? 0 : g; return g > maxv ? maxv : g; }
        if (p == 2) return (W + N + 1) >> 1;
        if (p == 3) return W;
        return N;
    }

    /* One row of one plane: padded buffers (index 0 is column -1, width + 1 is
       column width) of pixels and of zigzagged residuals u, this row's and the
       previous one's; the first plane's residuals v and u at this row (zeros
       when the plane does not lean on them), and where to keep this row's. */
    typedef struct {
        const uint16_t *prev, *uprev;
        uint16_t *cur, *ucur;
        const uint16_t *vf, *uf;
        uint16_t *vf_out, *uf_out;
    } cm_row;

    typedef struct {
        int channels, height, width, bits, decorrelate;
        const uint8_t* predictors;
        uint16_t* scratch;       /* (2 * height + 10) rows of width + 2: see scratch_for */
    } cm_tile;

    /* Point ``r`` at row y of plane k and set the padding the edge rules ask
       for: at x = 0, W and NW are N; at the last column NE is N; row 0 sees
       zeros above. */
    CM_INLINE void cm_start_row(cm_row* r, const cm_tile* t, int k, int y) {
        int padded = t->width + 2, width = t->width, h = t->height;
        uint16_t* buffers = t->scratch + (size_t)(2 * h) * padded;
        uint16_t* zeros = buffers + 4 * padded + 1;
        uint16_t* sink = buffers + 5 * padded;
        r->cur = buffers + (y & 1) * padded;
        r->ucur = buffers + (2 + (y & 1)) * padded;
        if (y == 0) {
            r->prev = r->uprev = zeros - 1;
            r->cur[0] = 0;
            r->ucur[0] = 0;
        } else {
            uint16_t* prev = buffers + ((y - 1) & 1) * padded;
            uint16_t* uprev = buffers + (2 + ((y - 1) & 1)) * padded;
            prev[0] = prev[1];
            prev[width + 1] = prev[width];
            uprev[0] = uprev[1];
            uprev[width + 1] = uprev[width];
            r->cur[0] = prev[1];
            r->ucur[0] = uprev[1];
            r->prev = prev;
            r->uprev = uprev;
        }
        r->vf_out = k == 0 ? t->scratch + (size_t)y * padded + 1 : sink;
        r->uf_out = k == 0 ? t->scratch + (size_t)(h + y) * padded + 1 : sink;
        r->vf = (t->decorrelate && k >= 1 && k <= 2) ? t->scratch + (size_t)y * padded + 1 : zeros;
        r->uf = k > 0 ? t->scratch + (size_t)(h + y) * padded + 1 : zeros;
    }

    CM_INLINE void cm_clear_zeros(const cm_tile* t) {
        int padded = t->width + 2;
        uint16_t* zeros = t->scratch + (size_t)(2 * t->height + 4) * padded;
        memset(zeros, 0, (size_t)padded * sizeof(uint16_t));
    }

    /* A row is coded as two lanes, its left columns [0, half) and right
       columns [half, width), half = ceil(width / 2), taken in turns: left 0,
       right 0, left 1, right 1, ... (the odd column out last).  The right
       lane starts as a row does (W is N), so the two lanes never wait on each
       other: their dependency chains overlap in the CPU. */
    #define CM_LANES_OF(width) int half = ((width) + 1) >> 1, pairs = (width) >> 1, odd = (width) & 1

    /* ---- encoder, pass one: tokens, extra bits, counts ---- */

    /* The encoder knows every pixel, so it models a row in passes over the
       whole row that the compiler vectorises (residuals; then contexts and
       tokens), fixes up the right lane's first column (whose W is N), and
       only then walks the samples in coding order for what is serial: the
       token list, the counts and the extra-bit writer. */
    typedef struct {
        uint16_t* symbols;
        int64_t s;
        uint8_t* out;
        int64_t pos;
        uint64_t acc;
        int count;
        uint32_t* hist[2];       /* one per lane: consecutive equal counts would stall one */
    } cm_model;

    static inline uint32_t cm_float_bits(uint32_t a) {
        float f = (float)(int32_t)a;
        uint32_t b;
        memcpy(&b, &f, 4);
        return b;
    }

    /* when ? a : b, as masks: a ternary next to a float conversion keeps
       gcc from vectorising (the conversion might trap) */
    static inline uint32_t cm_select(int when, uint32_t a, uint32_t b) {
        uint32_t m = 0 - (uint32_t)when;
        return (a & m) | (b & ~m);
    }

    /* bucket_of: 2 * bitlen(a) - 2 plus the bit below the top one, read off
       the float's exponent and first mantissa bit (a < 2**24 is exact) */
    static inline uint32_t cm_bucket(uint32_t a) {
        uint32_t c = cm_select(a < 2, a, (cm_float_bits(a) >> 22) - 254);
        return cm_select(c < CM_NCTX - 1, c, CM_NCTX - 1);
    }

    /* token of u: u below 16, else 16 + 4 (bitlen(u) - 5) + the two bits
       below the top one; and its number of extra bits (f: u's float bits) */
    static inline uint32_t cm_token(uint32_t u, uint32_t f) {
        return cm_select(u < 16, u, (f >> 21) - 508);
    }
    static inline uint32_t cm_extra_bits(uint32_t u, uint32_t f) {
        return cm_select(u < 16, 0, (f >> 23) - 129);
    }

    CM_INLINE uint32_t cm_residual(const int p, int X, int W, int N, int NW, int NE, uint32_t vf, uint32_t mask,
                                   int shift, uint32_t* v_first) {
        uint32_t v = (uint32_t)(X - cm_predict(p, W, N, NW, NE, (int)mask)) & mask;
        *v_first = v;
        v = (v - vf) & mask;
        int32_t sv = ((int32_t)(v << shift)) >> shift;
        return ((uint32_t)sv << 1) ^ (uint32_t)(sv >> 31);
    }

    /* every column's u, its W being its left neighbour */
    CM_INLINE void cm_residual_row(const int p, const int first, const uint16_t* __restrict cur,
                                   const uint16_t* __restrict prev, const uint16_t* __restrict vf,
                                   uint16_t* __restrict ucur, uint16_t* __restrict vf_out,
                                   uint16_t* __restrict uf_out, int width, uint32_t mask, int shift) {
        int x;
        uint32_t v0;
        for (x = 0; x < width; x++) {
            uint32_t u = cm_residual(p, cur[x + 1], cur[x], prev[x + 1], prev[x], prev[x + 2], vf[x], mask, shift, &v0);
            ucur[x + 1] = (uint16_t)u;
            if (first) { vf_out[x] = (uint16_t)v0; uf_out[x] = (uint16_t)u; }
        }
    }

    /* A column's record for the serial walk: its symbol (13 bits), its
       number of extra bits (4) and those bits (at most 13), in one word. */
    #define CM_SYMBOL_MASK 0x1fffu
    CM_INLINE uint32_t cm_record(uint32_t symbol, uint32_t u, uint32_t f) {
        uint32_t nb = cm_extra_bits(u, f);
        return symbol | nb << 13 | (u & ((1u << nb) - 1)) << 17;
    }

    /* every column's record, its W being its left neighbour */
    CM_INLINE void cm_record_row(const uint16_t* __restrict ucur, const uint16_t* __restrict up,
                                 const uint16_t* __restrict uf, uint32_t* __restrict rec, int width, uint32_t base) {
        int x;
        for (x = 0; x < width; x++) {
            uint32_t u = ucur[x + 1], f = cm_float_bits(u);
            uint32_t a = up[x + 1] + ucur[x] + ((up[x] + up[x + 2]) >> 1) + (uf[x] >> 1);
            rec[x] = cm_record(((base + cm_bucket(a)) << 6) | cm_token(u, f), u, f);
        }
    }

    /* The token list, in coding order (left 0, right 0, left 1, ...), in a
       loop gcc vectorises */
    CM_INLINE void cm_interleave_row(uint16_t* __restrict symbols, const uint32_t* __restrict left,
                                     const uint32_t* __restrict right, int pairs, int odd) {
        int j;
        for (j = 0; j < pairs; j++) {
            symbols[2 * j] = (uint16_t)(left[j] & CM_SYMBOL_MASK);
            symbols[2 * j + 1] = (uint16_t)(right[j] & CM_SYMBOL_MASK);
        }
        if (odd)
            symbols[2 * pairs] = (uint16_t)(left[pairs] & CM_SYMBOL_MASK);
    }

    /* The serial part, in coding order: the counts and the extra bits.  A
       function of its own, so that its few live values stay in registers. */
    CM_KERNEL __attribute__((noinline))
    static void cm_walk_row(cm_model* m, const uint32_t* __restrict left, const uint32_t* __restrict right, int pairs,
                            int odd) {
        uint32_t *h0 = m->hist[0], *h1 = m->hist[1];
        uint8_t* out = m->out;
        int64_t pos = m->pos;
        uint64_t acc = m->acc;
        int count = m->count, j;
        #define CM_EMIT(r, hist) { \
            hist[r & CM_SYMBOL_MASK]++; \
            acc |= (uint64_t)(r >> 17) << count; \
            count += (r >> 13) & 15; }
        #define CM_FLUSH() { \
            cm_store64le(out + pos, acc); \
            pos += count >> 3; \
            acc >>= count & ~7; \
            count &= 7; }
        for (j = 0; j < pairs; j++) {
            uint32_t l = left[j], r = right[j];
            CM_EMIT(l, h0)
            CM_EMIT(r, h1)
            CM_FLUSH()
        }
        if (odd) {
            uint32_t l = left[pairs];
            CM_EMIT(l, h0)
            CM_FLUSH()
        }
        m->pos = pos; m->acc = acc; m->count = count;
    }

    /* One row of plane k: ``first`` is plane 0, which keeps its v and u for
       the planes that lean on it. */
    CM_INLINE void cm_model_row(const int p, const int first, cm_model* m, const cm_row* r,
                                uint32_t* __restrict rec, int width, int bits, uint32_t base) {
        const uint16_t *prev = r->prev, *up = r->uprev, *vf = r->vf, *uf = r->uf, *cur = r->cur;
        uint16_t *ucur = r->ucur, *vf_out = r->vf_out, *uf_out = r->uf_out;
        int shift = 32 - bits;
        uint32_t mask = (1u << bits) - 1, v0;
        CM_LANES_OF(width);
        cm_residual_row(p, first, cur, prev, vf, ucur, vf_out, uf_out, width, mask, shift);
        /* ... but the right lane starts as a row does: W is N */
        if (pairs) {
            uint32_t u = cm_residual(p, cur[half + 1], prev[half + 1], prev[half + 1], prev[half], prev[half + 2],
                                     vf[half], mask, shift, &v0);
            ucur[half + 1] = (uint16_t)u;
            if (first) { vf_out[half] = (uint16_t)v0; uf_out[half] = (uint16_t)u; }
        }
        cm_record_row(ucur, up, uf, rec, width, base);
        if (pairs) {
            uint32_t u = ucur[half + 1], a = up[half + 1] + up[half + 1] + ((up[half] + up[half + 2]) >> 1)
                                            + (uf[half] >> 1);
            rec[half] = cm_record(((base + cm_bucket(a)) << 6) | cm_token(u, cm_float_bits(u)), u,
                                  cm_float_bits(u));
        }
        cm_interleave_row(m->symbols + m->s, rec, rec + half, pairs, odd);
        m->s += width;
        cm_walk_row(m, rec, rec + half, pairs, odd);
    }

    #define CM_MODEL_ROWS(first) switch (p) { \
        case 0: cm_model_row(0, first, &m, &r, rec, t->width, t->bits, base); break; \
        case 1: cm_model_row(1, first, &m, &r, rec, t->width, t->bits, base); break; \
        case 2: cm_model_row(2, first, &m, &r, rec, t->width, t->bits, base); break; \
        case 3: cm_model_row(3, first, &m, &r, rec, t->width, t->bits, base); break; \
        default: cm_model_row(4, first, &m, &r, rec, t->width, t->bits, base); break; }

    /* Returns the bytes of extra bits written, or -1 when out of memory. */
    CM_KERNEL
    static int64_t cm_model_tile(const cm_tile* t, const uint16_t* planes, uint16_t* symbols, uint8_t* extra,
                                 uint64_t* histogram) {
        int k, y, i, padded = t->width + 2;
        cm_model m;
        cm_row r;
        /* scratch after the row buffers: the row's records */
        uint32_t* rec = (uint32_t*)(t->scratch + (size_t)(2 * t->height + 6) * padded);
        uint32_t* counts = (uint32_t*)calloc(2 * CM_NSYMBOLS, sizeof(uint32_t));
        if (!counts) return -1;
        m.symbols = symbols; m.s = 0; m.out = extra; m.pos = 0; m.acc = 0; m.count = 0;
        m.hist[0] = counts;
        m.hist[1] = counts + CM_NSYMBOLS;
        cm_clear_zeros(t);
        for (k = 0; k < t->channels; k++) {
            uint32_t base = (uint32_t)(k < CM_NCLASS ? k : CM_NCLASS - 1) * CM_NCTX;
            for (y = 0; y < t->height; y++) {
                int p = y > 0 ? t->predictors[k] : 3;
                cm_start_row(&r, t, k, y);
                memcpy(r.cur + 1, planes + ((size_t)k * t->height + y) * t->width, (size_t)t->width * 2);
                if (k == 0) { CM_MODEL_ROWS(1) } else { CM_MODEL_ROWS(0) }
            }
        }
        for (i = 0; i < CM_NSYMBOLS; i++)
            histogram[i] += (uint64_t)counts[i] + counts[CM_NSYMBOLS + i];
        free(counts);
        return m.pos + (m.count > 0 ? 1 : 0);
    }

    /* ---- encoder, pass two: rANS (Giesen's rans64: 64-bit states, 32-bit
       words, division by the frequency as a multiplication by its reciprocal) ---- */

    /* One symbol's coding constants, in one half of a cache line (five
       separate arrays cost five lines a symbol): states from x_max up are
       renormalised first; division by the frequency is a multiplication by
       its reciprocal (Granlund and Montgomery, as rans64 does it). */
    typedef struct {
        uint64_t x_max, rcp;
        uint32_t bias, cmpl, shift, unused;
    } cm_encoder_entry;

    /* per frequency, its reciprocal for cm_encoder_fill: a 128-bit division
       each was most of the time the tables took to build (0.08 ms a raster) */
    static uint64_t cm_reciprocals[CM_SCALE + 1];
    static void cm_fill_reciprocals(void) {
        for (uint32_t freq = 2; freq <= CM_SCALE; freq++)
            cm_reciprocals[freq] = (uint64_t)((((unsigned __int128)1 << (cm_bitlen(freq - 1) + 63)) + freq - 1) / freq);
    }

    static void cm_encoder_fill(cm_encoder_entry* e, uint32_t freq, uint32_t start) {
        uint32_t shift = cm_bitlen(freq - 1);
        e->x_max = (uint64_t)freq << (63 - CM_PROB_BITS);
        e->cmpl = CM_SCALE - freq;
        e->unused = 0;
        if (freq < 2) {
            e->rcp = ~0ull;
            e->shift = 0;
            e->bias = start + CM_SCALE - 1;
        } else {
            e->rcp = cm_reciprocals[freq];
            e->shift = shift - 1;
            e->bias = start;
        }
    }

    /* Codes one symbol into state ``st``, its bytes going before out + pos.  The
       renormalisation has no branch: its low word is always stored and pos
       moves only when it is shed (a stray store lands in bytes that are
       overwritten or left out), because whether a state sheds a word is
       a coin toss to the branch predictor: 11% faster over the bench corpus. */
    #define CM_RANS_PUT(st, symbol, out, pos) { \
        const cm_encoder_entry* e_ = table + (symbol); \
        uint64_t shed_ = st >= e_->x_max; \
        cm_store32le(out + pos - 4, (uint32_t)st); \
        pos -= 4 * shed_; \
        st = shed_ ? st >> 32 : st; \
        st += e_->bias + (cm_mulhi64(st, e_->rcp) >> e_->shift) * e_->cmpl; }

    /* A tile's symbols[0..n) are coded backwards into the bytes before
       out + pos, the even samples with one state and the odd ones with
       another (the two lanes of a row), so their work overlaps. */
    typedef struct {
        const uint16_t* symbols;
        int64_t n;
        uint8_t* out;
        int64_t pos;            /* in: the end of the room; out: where the coded bytes start */
    } cm_rans_job;

    /* (the tile's position and output live in locals: a store through a
       uint8_t pointer might change the job's fields, so they would be
       read back from memory after every word) */
    #define CM_RANS_BEGIN(j, even, odd, i, o_, p_) \
        uint64_t even = CM_RANS_L, odd = CM_RANS_L; \
        uint8_t* const o_ = j->out; \
        const uint16_t* const symbols_##i = j->symbols; \
        int64_t p_ = j->pos, i = j->n - 1; \
        if (j->n & 1) { CM_RANS_PUT(even, symbols_##i[i], o_, p_) i--; }
    #define CM_RANS_PAIR(even, odd, i, o_, p_) { \
        CM_RANS_PUT(odd, symbols_##i[i], o_, p_) \
        CM_RANS_PUT(even, symbols_##i[i - 1], o_, p_) }
    /* the even state goes first */
    #define CM_RANS_END(j, even, odd, o_, p_) { \
        p_ -= 8; cm_store64le(o_ + p_, odd); \
        p_ -= 8; cm_store64le(o_ + p_, even); \
        j->pos = p_; }

    /* Codes two tiles, their steps taking turns: each state's update waits
       on its last (a multiplication, a shift, another multiplication), so
       one tile's two states leave the CPU idle much of the time, and a
       second tile's fill it.  Each tile's bytes are those it gets alone. */
    CM_KERNEL
    static void cm_rans_tiles(cm_rans_job* a, cm_rans_job* b, const cm_encoder_entry* table) {
        CM_RANS_BEGIN(a, a_even, a_odd, ia, a_out, a_pos)
        CM_RANS_BEGIN(b, b_even, b_odd, ib, b_out, b_pos)
        for (; ia > 0 && ib > 0; ia -= 2, ib -= 2) {
            CM_RANS_PAIR(a_even, a_odd, ia, a_out, a_pos)
            CM_RANS_PAIR(b_even, b_odd, ib, b_out, b_pos)
        }
        for (; ia > 0; ia -= 2) CM_RANS_PAIR(a_even, a_odd, ia, a_out, a_pos)
        for (; ib > 0; ib -= 2) CM_RANS_PAIR(b_even, b_odd, ib, b_out, b_pos)
        CM_RANS_END(a, a_even, a_odd, a_out, a_pos)
        CM_RANS_END(b, b_even, b_odd, b_out, b_pos)
    }

    CM_KERNEL
    static void cm_rans_tile(cm_rans_job* a, const cm_encoder_entry* table) {
        CM_RANS_BEGIN(a, even, odd, i, out, pos)
        for (; i > 0; i -= 2) CM_RANS_PAIR(even, odd, i, out, pos)
        CM_RANS_END(a, even, odd, out, pos)
    }

    /* ---- reading interleaved pixels (1- or 2-byte samples, 2-byte ones in
       either byte order and at any alignment: they may be a file's bytes) ---- */

    CM_INLINE uint32_t cm_sample(const uint8_t* p, int itemsize, int big_endian) {
        uint16_t v;
        if (itemsize == 1) return p[0];
        memcpy(&v, p, 2);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return big_endian ? v : cm_swap16(v);
    #else
        return big_endian ? cm_swap16(v) : v;
    #endif
    }

    /* ``body`` for each sample v (the i-th) of the channel at p; one or three
       channels, what files hold most, get loops of their own: a constant
       stride lets gcc vectorise them */
    #define CM_EACH_SAMPLE_OF(size, big, stride, body) \
        for (i = 0; i < count; i++) { uint32_t v = cm_sample(p + i * (stride), size, big); body }
    #define CM_EACH_SAMPLE_SIZED(size, big, body) { \
        if (channels == 1) CM_EACH_SAMPLE_OF(size, big, size, body) \
        else if (channels == 3) CM_EACH_SAMPLE_OF(size, big, 3 * size, body) \
        else CM_EACH_SAMPLE_OF(size, big, step, body) }
    #define CM_EACH_SAMPLE(body) { \
        if (itemsize == 1) CM_EACH_SAMPLE_SIZED(1, 0, body) \
        else if (big_endian) CM_EACH_SAMPLE_SIZED(2, 1, body) \
        else CM_EACH_SAMPLE_SIZED(2, 0, body) }

    /* Marks used[v] for each value v of channel ``chan``: ``used`` has a mark
       for every value a sample can hold, so no test is needed. */
    CM_KERNEL
    static void cm_mark_levels(const uint8_t* pixels, int itemsize, int big_endian, int64_t count, int channels,
                               int chan, uint8_t* used) {
        const uint8_t* p = pixels + (size_t)chan * itemsize;
        int64_t i, step = (int64_t)channels * itemsize;
        CM_EACH_SAMPLE(used[v] = 1;)
    }

    /* out[i] = channel ``chan`` of pixel i, as its rank when ``size`` */
    CM_KERNEL
    static void cm_gather(const uint8_t* pixels, int itemsize, int big_endian, int64_t count, int channels, int chan,
                          const uint16_t* ranks, int32_t size, uint16_t* out) {
        const uint8_t* p = pixels + (size_t)chan * itemsize;
        int64_t i, step = (int64_t)channels * itemsize;
        if (size > 0)
            CM_EACH_SAMPLE(out[i] = v < (uint32_t)size ? ranks[v] : 0;)
        else
            CM_EACH_SAMPLE(out[i] = (uint16_t)v;)
    }

    /* ---- one-word bitfield layouts (filled 10-bit DPX, 12-bit DPX): every
       word holds up to ``period`` whole samples of ``width`` bits at
       ``shifts``; rows of ``count`` samples, ``row_bytes`` apart ---- */

    CM_INLINE uint32_t cm_load_word(const uint8_t* p, int word_bytes, int big_endian) {
        if (word_bytes == 2) {
            uint16_t v;
            memcpy(&v, p, 2);
            v = CM_LE16(v);
            return big_endian ? cm_swap16(v) : v;
        } else {
            uint32_t v;
            memcpy(&v, p, 4);
            v = CM_LE32(v);
            return big_endian ? __builtin_bswap32(v) : v;
        }
    }

    CM_INLINE void cm_store_word(uint8_t* p, uint32_t v, int word_bytes, int big_endian) {
        if (word_bytes == 2) {
            uint16_t w = (uint16_t)v;
            w = big_endian ? __builtin_bswap16(w) : w;
            w = CM_LE16(w);
            memcpy(p, &w, 2);
        } else {
            v = big_endian ? __builtin_bswap32(v) : v;
            v = CM_LE32(v);
            memcpy(p, &v, 4);
        }
    }

    /* One row's samples out of its words; returns the bits set outside the
       fields in use (none, when packing them again gives the same bytes).
       Inlined with constant word size, byte order and period. */
    CM_INLINE uint32_t cm_unpack_row(const int word_bytes, const int big_endian, const int period,
                                     const uint8_t* row, int64_t count, const int* shifts, uint32_t field,
                                     const uint32_t* kept, uint16_t* o) {
        int64_t g, groups = count / period;
        int s, rest = (int)(count % period);
        uint32_t stray = 0;
        for (g = 0; g < groups; g++) {
            uint32_t w = cm_load_word(row + g * word_bytes, word_bytes, big_endian);
            for (s = 0; s < period; s++) o[g * period + s] = (uint16_t)((w >> shifts[s]) & field);
            stray |= w & ~kept[period];
        }
        if (rest) {
            uint32_t w = cm_load_word(row + groups * word_bytes, word_bytes, big_endian);
            for (s = 0; s < rest; s++) o[groups * period + s] = (uint16_t)((w >> shifts[s]) & field);
            stray |= w & ~kept[rest];
        }
        return stray;
    }

    #define CM_UNPACK_ROWS(wb, big, per) \
        for (y = 0; y < rows; y++) \
            stray |= cm_unpack_row(wb, big, per, data + y * row_bytes, count, shifts, field, kept, out + y * count);

    /* Samples out of the words; returns 1 when packing them again gives the
       same bytes (every bit outside the fields in use is zero). */
    CM_KERNEL
    static int cm_unpack_fields(const uint8_t* data, int64_t rows, int64_t count, int64_t row_bytes, int word_bytes,
                                int big_endian, int period, const int* shifts, int width, uint16_t* out) {
        uint32_t field = (1u << width) - 1, kept[5] = {0}, stray = 0;
        int64_t y;
        int s;
        for (s = 0; s < period; s++) kept[s + 1] = kept[s] | field << shifts[s];
        if (word_bytes == 4 && period == 3) {               /* filled 10-bit DPX */
            if (big_endian) { CM_UNPACK_ROWS(4, 1, 3) } else { CM_UNPACK_ROWS(4, 0, 3) }
        } else if (word_bytes == 2 && period == 1) {        /* 12-bit DPX */
            if (big_endian) { CM_UNPACK_ROWS(2, 1, 1) } else { CM_UNPACK_ROWS(2, 0, 1) }
        } else {
            for (y = 0; y < rows; y++)
                stray |= cm_unpack_row(word_bytes == 2 ? 2 : 4, big_endian, period, data + y * row_bytes, count,
                                       shifts, field, kept, out + y * count);
        }
        return stray == 0;
    }

    CM_INLINE void cm_pack_row(const int word_bytes, const int big_endian, const int period, const uint16_t* v,
                               int64_t count, const int* shifts, uint32_t field, uint8_t* row) {
        int64_t g, groups = count / period;
        int s, rest = (int)(count % period);
        for (g = 0; g < groups; g++) {
            uint32_t w = 0;
            for (s = 0; s < period; s++) w |= (v[g * period + s] & field) << shifts[s];
            cm_store_word(row + g * word_bytes, w, word_bytes, big_endian);
        }
        if (rest) {
            uint32_t w = 0;
            for (s = 0; s < rest; s++) w |= (v[groups * period + s] & field) << shifts[s];
            cm_store_word(row + groups * word_bytes, w, word_bytes, big_endian);
        }
    }

    #define CM_PACK_ROWS(wb, big, per) \
        for (y = 0; y < rows; y++) \
            cm_pack_row(wb, big, per, values + y * count, count, shifts, field, data + y * row_bytes);

    CM_KERNEL
    static void cm_pack_fields(const uint16_t* values, int64_t rows, int64_t count, int64_t row_bytes, int word_bytes,
                               int big_endian, int period, const int* shifts, int width, uint8_t* data) {
        uint32_t field = (1u << width) - 1;
        int64_t y;
        if (word_bytes == 4 && period == 3) {
            if (big_endian) { CM_PACK_ROWS(4, 1, 3) } else { CM_PACK_ROWS(4, 0, 3) }
        } else if (word_bytes == 2 && period == 1) {
            if (big_endian) { CM_PACK_ROWS(2, 1, 1) } else { CM_PACK_ROWS(2, 0, 1) }
        } else {
            for (y = 0; y < rows; y++)
                cm_pack_row(word_bytes == 2 ? 2 : 4, big_endian, period, values + y * count, count, shifts, field,
                            data + y * row_bytes);
        }
    }

    /* ---- choosing the predictors: estimated cost of each on sampled rows ---- */

    CM_INLINE uint32_t cm_bitlen_v(uint32_t u) {        /* bitlen, vectorisable */
        return cm_select(u != 0, (cm_float_bits(u) >> 23) - 126, 0);
    }

    CM_INLINE uint32_t cm_zigzag(uint32_t v, int shift) {
        int32_t s = ((int32_t)(v << shift)) >> shift;
        return ((uint32_t)s << 1) ^ (uint32_t)(s >> 31);
    }

    /* the residual at column x with the edge rules of a row: W and NW are N
       at x = 0, NE is N at the last column */
    CM_INLINE uint32_t cm_residual_at(int p, const uint16_t* row, const uint16_t* prow, int x, int width,
                                      uint32_t mask) {
        int N = prow[x];
        int W = x > 0 ? row[x - 1] : N, NW = x > 0 ? prow[x - 1] : N, NE = x < width - 1 ? prow[x + 1] : N;
        int P;
        switch (p) {
            case 0: P = cm_predict(0, W, N, NW, NE, (int)mask); break;
            case 1: P = cm_predict(1, W, N, NW, NE, (int)mask); break;
            case 2: P = cm_predict(2, W, N, NW, NE, (int)mask); break;
            case 3: P = cm_predict(3, W, N, NW, NE, (int)mask); break;
            default: P = cm_predict(4, W, N, NW, NE, (int)mask); break;
        }
        return (uint32_t)(row[x] - P) & mask;
    }

    /* Adds to cost[p] the bits of predictor p's residuals on one row, and to
       cost_dec[p] those of the residuals less v0 (the first plane's) when
       ``lean``; interior columns in a loop gcc vectorises. */
    CM_INLINE void cm_row_cost(const int p, const int lean, const uint16_t* __restrict row,
                               const uint16_t* __restrict prow, const uint32_t* __restrict v0, int width,
                               uint32_t mask, int shift, int64_t* cost, int64_t* cost_dec) {
        uint32_t c = 0, cd = 0, v;
        int x, ends[2] = {0, width - 1}, e;
        for (x = 1; x < width - 1; x++) {
            v = (uint32_t)(row[x] - cm_predict(p, row[x - 1], prow[x], prow[x - 1], prow[x + 1], (int)mask)) & mask;
            c += cm_bitlen_v(cm_zigzag(v, shift));
            if (lean) cd += cm_bitlen_v(cm_zigzag((v - v0[x]) & mask, shift));
        }
        for (e = 0; e < (width > 1 ? 2 : 1); e++) {
            v = cm_residual_at(p, row, prow, ends[e], width, mask);
            c += cm_bitlen_v(cm_zigzag(v, shift));
            if (lean) cd += cm_bitlen_v(cm_zigzag((v - v0[ends[e]]) & mask, shift));
        }
        cost[p] += c;
        if (lean) cost_dec[p] += cd;
    }

    /* Costs of the five predictors on rows 1, 1 + step, ... of ``plane``;
       with ``plane0`` (the first plane) also those of the residuals less
       plane 0's under its predictor p0.  Returns -1 when out of memory. */
    CM_KERNEL
    static int cm_choose_costs(const uint16_t* plane, const uint16_t* plane0, int p0, int height, int width,
                               int bits, int step, int64_t* cost, int64_t* cost_dec) {
        uint32_t mask = (1u << bits) - 1;
        int shift = 32 - bits, y, x;
        uint32_t* v0 = (uint32_t*)calloc((size_t)width + 1, sizeof(uint32_t));
        if (!v0) return -1;
        for (y = 1; y < height; y += step) {
            const uint16_t* row = plane + (size_t)y * width;
            const uint16_t* prow = row - width;
            if (plane0) {
                const uint16_t* row0 = plane0 + (size_t)y * width;
                for (x = 0; x < width; x++)
                    v0[x] = cm_residual_at(p0, row0, row0 - width, x, width, mask);
                cm_row_cost(0, 1, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(1, 1, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(2, 1, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(3, 1, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(4, 1, row, prow, v0, width, mask, shift, cost, cost_dec);
            } else {
                cm_row_cost(0, 0, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(1, 0, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(2, 0, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(3, 0, row, prow, v0, width, mask, shift, cost, cost_dec);
                cm_row_cost(4, 0, row, prow, v0, width, mask, shift, cost, cost_dec);
            }
        }
        free(v0);
        return 0;
    }

    /* ---- decoder: one forward pass ---- */

    /* The decoder keeps rows of records, pixel | u << 16, padded as the
       encoder's rows are (index 0 is column -1).  Before a row, a pass the
       compiler vectorises sums the part of each column's activity that is
       already known (u of N, NW, NE and of the first plane) and the first
       plane's residual, so the serial loop only adds W's. */
    typedef struct {
        const uint32_t* entries;    /* (table << 10 | slot) -> freq | (slot - start) << 11 | m << 21 | nb << 25 */
        const uint8_t *rptr, *rend;     /* rANS words, read forwards */
        const uint8_t* edata;           /* extra bits */
        uint64_t bp, blimit;            /* bits of extra consumed, and the most a sound stream has */
        uint64_t s0, s1;
        int overrun;
    } cm_decoder;

    CM_INLINE void cm_known_part(const uint32_t* __restrict prev, const uint16_t* __restrict uf, int lean,
                                 uint32_t vmask, uint32_t* __restrict known, uint32_t* __restrict vf, int width) {
        int x;
        if (lean) {
            for (x = 0; x < width; x++) {
                uint32_t f = uf[x];
                known[x] = (prev[x + 1] >> 16) + (((prev[x] >> 16) + (prev[x + 2] >> 16)) >> 1) + (f >> 1);
                vf[x] = ((f >> 1) ^ (0u - (f & 1))) & vmask;
            }
        } else {
            for (x = 0; x < width; x++) {
                known[x] = (prev[x + 1] >> 16) + (((prev[x] >> 16) + (prev[x + 2] >> 16)) >> 1);
                vf[x] = 0;
            }
        }
    }

    /* Renormalisation without a branch (it would be unpredictable): shift
       in a word when the state fell below L.  gcc turns a plain select into
       a branch, so on x86-64 the two selects are spelled as cmov (the test's
       immediate sign-extends to bits 31..63: zero when st < L).  The 4-byte
       load is safe within the padding. */
    #if defined(__x86_64__) && defined(__GNUC__)
    #define CM_RENORM(st) { \
        uint64_t wide_ = (st << 32) | cm_load32le(rptr); \
        const uint8_t* next_ = rptr + 4; \
        __asm__("testq $-2147483648, %[s]; cmovz %[w], %[s]; cmovz %[n], %[r]" \
                : [s] "+r" (st), [r] "+r" (rptr) : [w] "r" (wide_), [n] "r" (next_) : "cc"); }
    #else
    #define CM_RENORM(st) { \
        uint64_t more_ = st < CM_RANS_L; \
        uint64_t word_ = cm_load32le(rptr) & (0 - more_); \
        st = (st << (more_ << 5)) | word_; \
        rptr += more_ << 2; }
    #endif

    /* u = m << nb | nb raw bits; tokens below 16 are u itself (nb = 0).  The
       mask only matters to damaged streams: it keeps u, and so the activity,
       in range (``small`` indexes the context table unclamped). */
    #define CM_DECODE_ONE(x, W, uW, st, bits64) { \
        uint32_t a_ = known[(x)] + uW; \
        uint32_t e_ = entries[(uint32_t)lut[small || a_ < CM_LUT_LAST ? a_ : CM_LUT_LAST] \
                              | ((uint32_t)st & (CM_SCALE - 1))]; \
        st = (uint64_t)(e_ & 2047) * (st >> CM_PROB_BITS) + ((e_ >> 11) & 1023); \
        CM_RENORM(st) \
        uint32_t nb_ = e_ >> 25; \
        /* (1 << nb) - 1: one bzhi in the x86-64-v3 build, where a table cost a load */ \
        uint32_t u_ = ((((e_ >> 21) & 15) << nb_) | ((uint32_t)bits64 & ((1u << nb_) - 1))) & mask; \
        bits64 >>= nb_; \
        bp += nb_; \
        uint32_t n_ = prev[(x) + 1] & 0xffff; \
        uint32_t v_ = ((u_ >> 1) ^ (0u - (u_ & 1))) + vf[(x)]; \
        int X_ = (int)(((uint32_t)cm_predict(p, W, (int)n_, (int)(prev[(x)] & 0xffff), \
                                             (int)(prev[(x) + 2] & 0xffff), (int)mask) + v_) & mask); \
        cur[(x) + 1] = (uint32_t)X_ | (u_ << 16); \
        W = X_; uW = u_; }

    /* Each pair reads at most 8 rANS bytes and 26 extra bits, so checking
       once a pair keeps every read within the streams' padding. */
    #define CM_CHECK() { \
        if (rptr > rend || bp > blimit) { overrun = 1; rptr = rptr > rend ? rend : rptr; bp = blimit; } }

    /* ``small``: at most 12 bits, so the activity (at most 3.5 times the
       largest u) needs no clamping to the context table */
    CM_INLINE void cm_decode_row(const int p, const int small, cm_decoder* d, const uint32_t* __restrict prev, uint32_t* __restrict cur,
                                 const uint32_t* __restrict known, const uint32_t* __restrict vf,
                                 const uint16_t* __restrict lut, int width, uint32_t mask) {
        const uint32_t* entries = d->entries;
        const uint8_t *rptr = d->rptr, *rend = d->rend, *edata = d->edata;
        uint64_t bp = d->bp, blimit = d->blimit, s0 = d->s0, s1 = d->s1, swap, bits64;
        int overrun = d->overrun, j;
        CM_LANES_OF(width);
        int WA = (int)(cur[0] & 0xffff), WB = (int)(prev[half + 1] & 0xffff);
        uint32_t uWA = cur[0] >> 16, uWB = prev[half + 1] >> 16;
        for (j = 0; j < pairs; j++) {
            bits64 = cm_load64le(edata + (bp >> 3)) >> (bp & 7);
            CM_DECODE_ONE(j, WA, uWA, s0, bits64)
            CM_DECODE_ONE(half + j, WB, uWB, s1, bits64)
            CM_CHECK()
        }
        if (odd) {
            bits64 = cm_load64le(edata + (bp >> 3)) >> (bp & 7);
            CM_DECODE_ONE(half - 1, WA, uWA, s0, bits64)
            CM_CHECK()
            swap = s0; s0 = s1; s1 = swap;     /* the states take turns sample by sample */
        }
        d->rptr = rptr; d->bp = bp; d->s0 = s0; d->s1 = s1; d->overrun = overrun;
    }

    /* Each variant of the row loop is a function of its own: inlined into
       the tile's loops, the tile's state took registers the loop needed,
       and its pointers and counters went to the stack. */
    #define CM_DECODE_ROW_FN(p, small) \
        CM_KERNEL __attribute__((noinline)) static void cm_decode_row_##p##_##small( \
                cm_decoder* d, const uint32_t* prev, uint32_t* cur, const uint32_t* known, const uint32_t* vf, \
                int width, uint32_t mask) { \
            cm_decode_row(p, small, d, prev, cur, known, vf, cm_context_lut, width, mask); }
    CM_DECODE_ROW_FN(0, 0) CM_DECODE_ROW_FN(1, 0) CM_DECODE_ROW_FN(2, 0) CM_DECODE_ROW_FN(3, 0) CM_DECODE_ROW_FN(4, 0)
    CM_DECODE_ROW_FN(0, 1) CM_DECODE_ROW_FN(1, 1) CM_DECODE_ROW_FN(2, 1) CM_DECODE_ROW_FN(3, 1) CM_DECODE_ROW_FN(4, 1)

    #define CM_DECODE_ROW(p) { \
        if (t->bits <= 12) cm_decode_row_##p##_1(&d, prev, cur, known, vf, width, mask); \
        else cm_decode_row_##p##_0(&d, prev, cur, known, vf, width, mask); }

    /* Where decoded rows go: pixels (rows, width, channels) of 1- or 2-byte
       samples (2-byte ones in the byte order asked, at any alignment: they
       may be a file's bytes), plane k into channel chan[k], through plane
       k's palette (levels + k * stride, sizes[k] entries) when sizes[k] > 0. */
    typedef struct {
        uint8_t* pixels;
        int itemsize, big_endian;
        const uint16_t* chan;
        const uint16_t* levels;
        int64_t stride;
        const int32_t* sizes;
    } cm_output;

    CM_INLINE uint32_t cm_level(uint32_t v, const uint16_t* levels, uint32_t size, int* clean) {
        if (!size) return v;
        *clean &= v < size;
        return levels[v < size ? v : 0];
    }

    /* Returns 0 when a rank lies beyond its palette (damaged input). */
    CM_INLINE int cm_emit_row(const cm_output* o, const cm_tile* t, int k, int y, const uint32_t* cur) {
        int x, width = t->width, channels = t->channels, clean = 1;
        size_t at = (size_t)y * width * channels + o->chan[k];
        uint32_t size = o->sizes[k] > 0 ? (uint32_t)o->sizes[k] : 0;
        const uint16_t* levels = o->levels + (size_t)k * o->stride;
        if (o->itemsize == 1) {
            uint8_t* out = o->pixels + at;
            for (x = 0; x < width; x++)
                out[(size_t)x * channels] = (uint8_t)cm_level(cur[x + 1] & 0xffff, levels, size, &clean);
        } else {
            /* one 2-byte store a sample (two 1-byte ones cost twice the stores) */
            uint8_t* out = o->pixels + 2 * at;
            for (x = 0; x < width; x++) {
                uint32_t v = cm_level(cur[x + 1] & 0xffff, levels, size, &clean);
                uint16_t w = (uint16_t)(o->big_endian ? cm_swap16((uint16_t)v) : v);
                w = CM_LE16(w);
                memcpy(out + (size_t)x * 2 * channels, &w, 2);
            }
        }
        return clean;
    }

    /* Returns 1 when both streams were consumed exactly as the encoder left
       them (and every rank was in its palette).  ``rans`` and ``extra`` are
       followed by at least 16 readable bytes: reads go at most 8 past a
       stream's end, and what they bring from there is never used. */
    CM_KERNEL
    static int cm_decode_tile(const cm_tile* t, const cm_output* o, const uint32_t* entries,
                              const uint8_t* rans, int64_t rsize, const uint8_t* extra, int64_t esize) {
        int k, y, x, width = t->width, height = t->height, padded = width + 2, emitted = 1;
        uint32_t mask = (1u << t->bits) - 1;
        /* scratch: plane 0's u, one row each, then three rows of records (two
           taking turns, and zeros above row 0), then the known parts and vf */
        uint32_t* records = (uint32_t*)(t->scratch + (size_t)(2 * height) * padded);
        uint32_t* zeros = records + 2 * padded;
        uint32_t* known = records + 3 * padded;
        uint32_t* vf = records + 4 * padded;
        cm_decoder d;
        d.rptr = rans + 16; d.rend = rans + rsize;
        d.edata = extra; d.bp = 0; d.blimit = (uint64_t)esize * 8;
        d.s0 = cm_load64le(rans);
        d.s1 = cm_load64le(rans + 8);
        d.overrun = 0;
        memset(zeros, 0, (size_t)padded * sizeof(uint32_t));
        for (k = 0; k < t->channels; k++) {
            int class = k < CM_NCLASS ? k : CM_NCLASS - 1;
            uint32_t vmask = (t->decorrelate && k >= 1 && k <= 2) ? mask : 0;
            d.entries = entries + (size_t)class * CM_NCTX * CM_SCALE;
            for (y = 0; y < height; y++) {
                int p = y > 0 ? t->predictors[k] : 3;
                uint32_t* cur = records + (y & 1) * padded;
                uint32_t* prev = zeros;
                uint16_t* ufrow = t->scratch + (size_t)y * padded;
                if (y > 0) {
                    prev = records + ((y - 1) & 1) * padded;
                    prev[0] = prev[1];
                    prev[width + 1] = prev[width];
                }
                cur[0] = prev[1];
                cm_known_part(prev, ufrow, k > 0, vmask, known, vf, width);
                switch (p) {
                    case 0: CM_DECODE_ROW(0); break;
                    case 1: CM_DECODE_ROW(1); break;
                    case 2: CM_DECODE_ROW(2); break;
                    case 3: CM_DECODE_ROW(3); break;
                    default: CM_DECODE_ROW(4); break;
                }
                emitted &= cm_emit_row(o, t, k, y, cur);
                if (k == 0)
                    for (x = 0; x < width; x++)
                        ufrow[x] = (uint16_t)(cur[x + 1] >> 16);
            }
        }
        return emitted && !d.overrun && d.rptr == d.rend && d.s0 == CM_RANS_L && d.s1 == CM_RANS_L
               && (d.bp + 7) >> 3 == (uint64_t)esize;
    }
    #pragma GCC pop_options
    """
    int cm_bitlen(unsigned int x) nogil
    uint64_t cm_load64le(const uint8_t* p) nogil
    int cm_take(int* flag) nogil
    uint32_t cm_load32le(const uint8_t* p) nogil
    uint16_t cm_context_lut[16384]
    ctypedef struct cm_tile:
        int channels, height, width, bits, decorrelate
        const uint8_t* predictors
        uint16_t* scratch
    int64_t cm_model_tile(const cm_tile* t, const uint16_t* planes, uint16_t* symbols, uint8_t* extra,
                          uint64_t* histogram) nogil
    ctypedef struct cm_encoder_entry:
        pass
    void cm_encoder_fill(cm_encoder_entry* e, uint32_t freq, uint32_t start) nogil
    void cm_fill_reciprocals() nogil
    ctypedef struct cm_rans_job:
        const uint16_t* symbols
        int64_t n
        uint8_t* out
        int64_t pos
    void cm_rans_tile(cm_rans_job* a, const cm_encoder_entry* table) nogil
    void cm_rans_tiles(cm_rans_job* a, cm_rans_job* b, const cm_encoder_entry* table) nogil
    ctypedef struct cm_output:
        uint8_t* pixels
        int itemsize, big_endian
        const uint16_t* chan
        const uint16_t* levels
        int64_t stride
        const int32_t* sizes
    int cm_choose_costs(const uint16_t* plane, const uint16_t* plane0, int p0, int height, int width,
                        int bits, int step, int64_t* cost, int64_t* cost_dec) nogil
    void cm_mark_levels(const uint8_t* pixels, int itemsize, int big_endian, int64_t count, int channels,
                        int chan, uint8_t* used) nogil
    void cm_gather(const uint8_t* pixels, int itemsize, int big_endian, int64_t count, int channels, int chan,
                   const uint16_t* ranks, int32_t size, uint16_t* out) nogil
    int cm_unpack_fields(const uint8_t* data, int64_t rows, int64_t count, int64_t row_bytes, int word_bytes,
                         int big_endian, int period, const int* shifts, int width, uint16_t* out) nogil
    void cm_pack_fields(const uint16_t* values, int64_t rows, int64_t count, int64_t row_bytes, int word_bytes,
                        int big_endian, int period, const int* shifts, int width, uint8_t* data) nogil
    uint32_t cm_load_word(const uint8_t* p, int word_bytes, int big_endian) nogil
    void cm_store_word(uint8_t* p, uint32_t v, int word_bytes, int big_endian) nogil
    int cm_decode_tile(const cm_tile* t, const cm_output* o, const uint32_t* entries,
                       const uint8_t* rans, int64_t rsize, const uint8_t* extra, int64_t esize) nogil

cdef enum:
    PROB_BITS = 10
    PROB_SCALE = 1024
    NTOKENS = 64
    NCTX = 28
    NCLASS = 4
    NTABLES = 112          # NCLASS * NCTX
    NPREDICTORS = 5

cdef uint64_t RANS_L = 1ull << 31      # rANS state lives in [L, L << 32)

PREDICTORS = ("med", "gradient", "average", "west", "north")
TOKENS = NTOKENS
CONTEXTS = NCTX
CLASSES = NCLASS
TABLES = NTABLES
SCALE_BITS = PROB_BITS
PADDING = 16           # bytes the decoder may read (but never uses) after each stream


cdef int bucket_of(uint32_t a) noexcept nogil:
    # half-octave buckets of the local activity
    cdef int q = cm_bitlen(a)
    cdef int shift = q - 2 if q > 2 else 0
    cdef int c = 2 * q - 2 + <int>((a >> shift) & 1)
    c = <int>a if a < 4 else c
    return c if c < NCTX else NCTX - 1


cdef enum:
    LUT_SIZE = 16384       # bucket_of is NCTX - 1 from LUT_SIZE - 1 up
cdef int _a
for _a in range(LUT_SIZE):
    cm_context_lut[_a] = bucket_of(_a) << PROB_BITS
cm_fill_reciprocals()


cdef inline uint32_t token_m_nb(int token) noexcept nogil:
    # u = m << nb | nb raw bits: m is u itself below 16, else its top three bits
    if token < 16:
        return <uint32_t>token << 21
    cdef uint32_t nb = ((token - 16) >> 2) + 2
    return ((4u | (token & 3)) << 21) | (nb << 25)


cdef int choose_tile(const uint16_t* planes, int channels, int height, int width, int bits, int step,
                     uint8_t* predictors) noexcept nogil:
    # per plane the predictor with the smallest cost (the first of equals); planes 1 and 2 lean
    # on plane 0's residuals when that costs less.  Returns whether they do, or -1 out of memory.
    cdef int64_t cost[NPREDICTORS]
    cdef int64_t cost_dec[NPREDICTORS]
    cdef int64_t plain_cost = 0, lean_cost = 0
    cdef int lean[3]
    cdef int k, p, best, best_dec, first = 0
    cdef int64_t size = <int64_t>height * width
    for k in range(channels):
        for p in range(NPREDICTORS):
            cost[p] = 0
            cost_dec[p] = 0
        if height > 1 and width > 0:
            if cm_choose_costs(planes + k * size, planes if 1 <= k <= 2 else NULL, first, height, width, bits,
                               step, cost, cost_dec):
                return -1
        best = best_dec = 0
        for p in range(1, NPREDICTORS):
            if cost[p] < cost[best]:
                best = p
            if cost_dec[p] < cost_dec[best_dec]:
                best_dec = p
        predictors[k] = <uint8_t>best
        if k == 0:
            first = best
        elif k <= 2:
            plain_cost += cost[best]
            lean_cost += cost_dec[best_dec]
            lean[k] = best_dec
    if channels >= 3 and lean_cost < plain_cost:
        predictors[1] = <uint8_t>lean[1]
        predictors[2] = <uint8_t>lean[2]
        return 1
    return 0


def encoder_entries(const int64_t[:, ::1] freq, room=None):
    """The encoder's table from each table's token frequencies (every used
    row summing to PROB_SCALE): per symbol (table << 6 | token), the four
    words of a ``cm_encoder_entry``, 32-byte aligned so that no entry spans
    two cache lines, in ``room`` when given (uint64, TABLES * TOKENS * 4 + 4:
    a fresh 229 kB took page faults, a third of the time this took).  Unused
    tokens get frequency 1; so does every token of an unused table (no symbol
    names one), its entries copied from one."""
    cdef int table, bad = 0
    if freq.shape[0] != NTABLES or freq.shape[1] != NTOKENS:
        raise ValueError("frequencies have the wrong shape")
    entries = entries_room(room)
    cdef uint64_t[:, ::1] out = entries
    cdef uint64_t unused[4]
    cm_encoder_fill(<cm_encoder_entry*>unused, 1, 0)
    with nogil:
        for table in range(NTABLES):
            bad |= fill_entries(&freq[table, 0], &out[table * NTOKENS, 0], unused)
    if bad:
        raise ValueError("frequencies must be at least 0 and sum to at most PROB_SCALE")
    return entries


def entries_room(room):
    # the (TABLES * TOKENS, 4) entries, 32-byte aligned, in ``room`` (or a new array)
    if room is None:
        room = np.empty(NTABLES * NTOKENS * 4 + 4, dtype=np.uint64)
    elif room.dtype != np.uint64 or room.shape != (NTABLES * NTOKENS * 4 + 4,):
        raise ValueError("room for the table has the wrong size")
    skip = (-room.ctypes.data % 32) // 8
    return room[skip:skip + NTABLES * NTOKENS * 4].reshape(NTABLES * NTOKENS, 4)


cdef int fill_entries(const int64_t* freq, uint64_t* out, const uint64_t* unused) noexcept nogil:
    # one table of ``encoder_entries`` (its TOKENS entries of 4 words at ``out``); 1 if ``freq`` is bad
    cdef int token, used = 0
    cdef int64_t start = 0, f
    for token in range(NTOKENS):
        used |= freq[token] != 0
    if not used:
        # the divisions below were most of the time this took
        for token in range(NTOKENS):
            memcpy(&out[4 * token], unused, 4 * sizeof(uint64_t))
        return 0
    for token in range(NTOKENS):
        f = freq[token]
        if f < 0 or start + f > PROB_SCALE:
            return 1
        cm_encoder_fill(<cm_encoder_entry*>&out[4 * token], <uint32_t>(f if f > 0 else 1), <uint32_t>start)
        start += f
    return 0


cdef int rans_job(cm_rans_job* job, const uint16_t[::1] symbols, uint8_t[::1] out) except -1:
    job.n = symbols.shape[0]
    job.pos = out.shape[0]
    # each symbol costs at most PROB_BITS bits, and a state's update stores a
    # word just below pos whether or not it keeps it: this room keeps both in
    if job.pos < job.n * 2 + 24:
        raise ValueError("rANS buffer too small")
    job.symbols = &symbols[0] if job.n else NULL
    job.out = &out[0]
    return 0


cdef int check_entries(const uint64_t[:, ::1] entries) except -1:
    if entries.shape[0] != NTABLES * NTOKENS or entries.shape[1] != 4:
        raise ValueError("encoder table has the wrong shape")
    return 0


def rans_tile(const uint16_t[::1] symbols, const uint64_t[:, ::1] entries, uint8_t[::1] out):
    """Pass two: rANS-code ``symbols`` backwards into the end of ``out`` with
    ``encoder_entries``' table, two states taking turns (even and odd
    samples: the two lanes of a row) so their work overlaps.  Returns the
    offset in ``out`` where the coded bytes start."""
    cdef cm_rans_job job
    rans_job(&job, symbols, out)
    check_entries(entries)
    with nogil:
        cm_rans_tile(&job, <const cm_encoder_entry*>&entries[0, 0])
    return job.pos


def rans_tiles(const uint16_t[::1] symbols, const uint16_t[::1] more, const uint64_t[:, ::1] entries,
               uint8_t[::1] out, uint8_t[::1] out_more):
    """``rans_tile`` of two tiles at once, ``symbols`` into ``out`` and
    ``more`` into ``out_more``, in the time of about one and a half: their
    steps take turns.  Returns the two offsets; the bytes are those of two
    ``rans_tile`` calls."""
    cdef cm_rans_job job, other
    rans_job(&job, symbols, out)
    rans_job(&other, more, out_more)
    check_entries(entries)
    with nogil:
        cm_rans_tiles(&job, &other, <const cm_encoder_entry*>&entries[0, 0])
    return job.pos, other.pos


cdef void run_side(object side) noexcept with gil:
    side()      # (a side job catches its own errors: see codec.threads.Pending)


cdef int64_t model_one(const uint8_t* pixels, int itemsize, int big_endian, int width, int channels,
                       const uint16_t* channel_of, const uint16_t* ranks, int64_t rank_stride, const int32_t* sizes,
                       int rows, int bits, int step, uint8_t* predictors, uint8_t* decorrelate, uint16_t* planes,
                       uint16_t* scratch, uint16_t* symbols, uint8_t* extra, uint64_t* histogram) noexcept nogil:
    # one tile of ``model_tiles`` (a function of its own: its locals are its thread's)
    cdef int64_t count = <int64_t>rows * width
    cdef int k, chosen
    cdef cm_tile tile
    for k in range(channels):
        cm_gather(pixels, itemsize, big_endian, count, channels, channel_of[k], ranks + k * rank_stride, sizes[k],
                  planes + k * count)
    chosen = choose_tile(planes, channels, rows, width, bits, step, predictors)
    if chosen < 0:
        return -1
    decorrelate[0] = <uint8_t>chosen
    tile.channels, tile.height, tile.width, tile.bits, tile.decorrelate = channels, rows, width, bits, chosen
    tile.predictors = predictors
    tile.scratch = scratch
    return cm_model_tile(&tile, planes, symbols, extra, histogram)


def model_tiles(const uint8_t[::1] pixels, int itemsize, bint big_endian, int width, int channels,
                const uint16_t[::1] channel_of, const uint16_t[:, ::1] ranks, const int32_t[::1] sizes,
                int rows, int bits, int step, uint8_t[:, ::1] predictors, uint8_t[::1] decorrelate,
                uint16_t[::1] symbols, uint8_t[::1] extra, int64_t[::1] extra_used, uint64_t[:, :, ::1] histograms,
                uint16_t[:, ::1] planes, uint16_t[:, :, ::1] scratch, int threads, side=None):
    """Pass one of encoding on every tile of a raster, on ``threads`` threads:
    ``pixels`` (whole rows of ``width`` pixels of ``channels`` samples of
    ``itemsize`` bytes, 2-byte ones in the byte order asked) is cut into
    tiles of ``rows`` rows (the last may be shorter).  Per tile n: its planes
    in coding order (plane k is channel channel_of[k], as ranks[k] where
    sizes[k] > 0), its predictors[n] and decorrelate[n] (the cheapest on
    every ``step``-th row), its tokens (table << 6 | token) into ``symbols``
    from n * rows * width * channels, its extra bits into ``extra`` from
    n * (2 * r * width * channels + 16), extra_used[n] of them, where r is
    min(rows, height).  Thread t adds its tiles' token counts to
    histograms[t] and works in planes[t] (channels * r * width) and
    scratch[t] ((2 * r + 10, width + 2)).
    ``side``, when given, is called (with the GIL) by the first thread to
    start, before its first tile.  The threads are OpenMP's, which wait for
    work spinning: a Python thread pool's helpers slept between a raster's
    few steps, and waking one took 40-90 us on this kind of machine."""
    check_pixels(pixels, itemsize, width, channels, channel_of)
    cdef int64_t row_bytes = <int64_t>width * channels * itemsize
    cdef int64_t height = pixels.shape[0] // row_bytes, samples = height * width * channels
    cdef int64_t tiles = (height + rows - 1) // rows if rows >= 1 else 0     # (cdivision: no -(-a // b))
    cdef int64_t tallest = rows if rows < height else height
    cdef int64_t bound = tallest * width * channels * 2 + 16        # a tile's extra bits, at most
    cdef Py_ssize_t n
    cdef int64_t y, written
    cdef int k, t, failed = 0
    if rows < 1 or not 1 <= bits <= 16 or step < 1 or threads < 1:
        raise ValueError("rows, step and threads must be at least 1, bits 1..16")
    if ranks.shape[0] < channels or sizes.shape[0] < channels:
        raise ValueError("one rank table and size per plane")
    for k in range(channels):
        if sizes[k] > ranks.shape[1]:
            raise ValueError("rank table too short")
    if predictors.shape[0] < tiles or predictors.shape[1] != channels or decorrelate.shape[0] < tiles \
            or extra_used.shape[0] < tiles:
        raise ValueError("predictors, decorrelate and extra_used need a place per tile")
    if symbols.shape[0] < samples or extra.shape[0] < bound * tiles:
        raise ValueError("symbol or extra-bits buffer too small")
    if histograms.shape[0] < threads or histograms.shape[1] != NTABLES or histograms.shape[2] != NTOKENS:
        raise ValueError("one histogram per thread")
    if planes.shape[0] < threads or planes.shape[1] < channels * tallest * width or scratch.shape[0] < threads \
            or scratch.shape[1] < 2 * tallest + 10 or scratch.shape[2] != width + 2:
        raise ValueError("planes or scratch too small for a tile")
    if samples == 0:
        if side is not None:
            side()
        return
    cdef int pending = side is not None
    for n in prange(tiles, nogil=True, num_threads=threads, schedule="dynamic", chunksize=1):
        t = threadid()
        if pending and cm_take(&pending):       # only the first thread to look finds it
            run_side(side)
        y = n * rows
        written = model_one(&pixels[y * row_bytes], itemsize, big_endian, width, channels, &channel_of[0],
                            &ranks[0, 0], ranks.shape[1], &sizes[0], <int>(rows if height - y > rows else height - y),
                            bits, step, &predictors[n, 0], &decorrelate[n], &planes[t, 0], &scratch[t, 0, 0],
                            &symbols[y * width * channels], &extra[n * bound], &histograms[t, 0, 0])
        if written < 0:
            failed += 1         # (a sum over the threads: a plain assignment would keep only the last tile's)
            written = 0
        extra_used[n] = written
    if failed:
        raise MemoryError()


cdef void code_job(const uint16_t* symbols, const int64_t* starts, int64_t a, int64_t b,
                   const cm_encoder_entry* table, uint8_t* out, int64_t* begins) noexcept nogil:
    # one job of ``rans_jobs`` (a function of its own: its locals are its thread's)
    cdef cm_rans_job first, second
    first.n = starts[a + 1] - starts[a]
    first.symbols = symbols + starts[a]
    first.out = out + 2 * starts[a] + 24 * a
    first.pos = first.n * 2 + 24
    if b < 0:
        cm_rans_tile(&first, table)
    else:
        second.n = starts[b + 1] - starts[b]
        second.symbols = symbols + starts[b]
        second.out = out + 2 * starts[b] + 24 * b
        second.pos = second.n * 2 + 24
        cm_rans_tiles(&first, &second, table)
        begins[b] = 2 * starts[b] + 24 * b + second.pos
    begins[a] = 2 * starts[a] + 24 * a + first.pos


def rans_jobs(const uint16_t[::1] symbols, const int64_t[::1] starts, const int64_t[:, ::1] jobs,
              const uint64_t[:, ::1] entries, uint8_t[::1] out, int64_t[::1] begins, int threads, side=None):
    """Pass two on ``threads`` threads (OpenMP's, as ``model_tiles``): tile n's
    tokens are symbols[starts[n]:starts[n + 1]], rANS-coded backwards into its
    room out[2 * starts[n] + 24 * n : 2 * starts[n + 1] + 24 * (n + 1)], its bytes
    from begins[n] to the room's end.  Each row of ``jobs`` is a tile coded
    alone (the second -1) or two coded together (``rans_tiles``), taken in
    order.  ``side`` as for ``model_tiles``."""
    cdef int64_t tiles = starts.shape[0] - 1
    cdef Py_ssize_t j
    cdef const cm_encoder_entry* table
    check_entries(entries)
    if tiles < 0 or jobs.shape[1] != 2 or begins.shape[0] < tiles or threads < 1:
        raise ValueError("starts, jobs or begins have the wrong shape")
    for j in range(tiles):
        if not 0 <= starts[j] <= starts[j + 1] <= symbols.shape[0]:
            raise ValueError("tiles must lie in order inside the symbols")
    for j in range(jobs.shape[0]):
        if not (0 <= jobs[j, 0] < tiles and -1 <= jobs[j, 1] < tiles):
            raise ValueError("a job names a tile that is not there")
    if tiles and out.shape[0] < 2 * starts[tiles] + 24 * tiles:
        raise ValueError("rANS buffer too small")
    if jobs.shape[0] == 0:
        if side is not None:
            side()
        return
    table = <const cm_encoder_entry*>&entries[0, 0]
    cdef int pending = side is not None
    for j in prange(jobs.shape[0], nogil=True, num_threads=threads, schedule="dynamic", chunksize=1):
        if pending and cm_take(&pending):       # only the first thread to look finds it
            run_side(side)
        code_job(&symbols[0], &starts[0], jobs[j, 0], jobs[j, 1], table, &out[0], &begins[0])


def mark_bands(const uint8_t[::1] pixels, int itemsize, bint big_endian, int width, int channels,
               const uint16_t[::1] channel_of, const int64_t[:, ::1] bands, uint8_t[:, :, ::1] marks, int threads):
    """``mark_levels`` on ``bands`` of rows ((first row, rows) each) on
    ``threads`` threads (OpenMP's, as ``model_tiles``), thread t marking in
    marks[t]: threads marking one array fight over its cache lines."""
    check_pixels(pixels, itemsize, width, channels, channel_of)
    cdef int64_t row_bytes = <int64_t>width * channels * itemsize, height = pixels.shape[0] // row_bytes
    cdef Py_ssize_t n
    cdef int k, t
    if bands.shape[1] != 2 or threads < 1 or marks.shape[0] < threads or marks.shape[1] < channels \
            or marks.shape[2] < (1 << (8 * itemsize)):
        raise ValueError("bands are (first row, rows); one row of marks per plane and thread")
    for n in range(bands.shape[0]):
        if not (0 <= bands[n, 0] and 0 <= bands[n, 1] and bands[n, 0] + bands[n, 1] <= height):
            raise ValueError("a band lies outside the rows")
    for n in prange(bands.shape[0], nogil=True, num_threads=threads, schedule="dynamic", chunksize=1):
        t = threadid()
        for k in range(channels):
            cm_mark_levels(&pixels[bands[n, 0] * row_bytes], itemsize, big_endian, bands[n, 1] * width, channels,
                           channel_of[k], &marks[t, k, 0])


cdef extern from *:
    """
    /* XXH3-128, the container's checksum: xxHash 0.8.4, vendored (codec/pyx/xxhash,
       BSD-2-Clause), the version the xxhash package wraps */
    #define XXH_INLINE_ALL
    #include "xxhash/xxhash.h"
    /* Bytes hashed by the threads that write them, in pieces that become final in any
       order: each thread says when its piece is final, and one thread at a time hashes
       the run of final pieces after those already hashed. */
    typedef struct {
        XXH3_state_t* state;
        const uint8_t* base;
        int64_t piece, size, pieces;    /* piece n: bytes n * piece up to the next (or size) */
        uint8_t* done;                  /* done[n]: piece n is final */
        int64_t next;                   /* the first piece not hashed */
        int free;                       /* no thread is hashing */
    } cm_feeder;
    static void cm_feed(cm_feeder* f, int64_t n) {
        int64_t next;
        if (n >= 0)
            __atomic_store_n(&f->done[n], 1, __ATOMIC_SEQ_CST);
        for (;;) {
            if (!__atomic_exchange_n(&f->free, 0, __ATOMIC_SEQ_CST))
                return;                 /* the hashing thread takes this piece, or the check below does */
            next = __atomic_load_n(&f->next, __ATOMIC_RELAXED);
            while (next < f->pieces && __atomic_load_n(&f->done[next], __ATOMIC_SEQ_CST)) {
                int64_t start = next * f->piece;
                int64_t end = f->size - start > f->piece ? start + f->piece : f->size;
                XXH3_128bits_update(f->state, f->base + start, (size_t)(end - start));
                next++;
            }
            __atomic_store_n(&f->next, next, __ATOMIC_RELAXED);
            __atomic_store_n(&f->free, 1, __ATOMIC_SEQ_CST);
            /* a piece made final while this thread was hashing found it busy: take it now */
            if (next >= f->pieces || !__atomic_load_n(&f->done[next], __ATOMIC_SEQ_CST))
                return;
        }
    }
    """
    ctypedef struct XXH3_state_t:
        pass
    ctypedef struct XXH128_hash_t:
        pass
    ctypedef struct XXH128_canonical_t:
        unsigned char digest[16]
    XXH3_state_t* XXH3_createState() nogil
    int XXH3_freeState(XXH3_state_t* state) nogil
    int XXH3_128bits_reset(XXH3_state_t* state) nogil
    int XXH3_128bits_update(XXH3_state_t* state, const void* data, size_t length) nogil
    XXH128_hash_t XXH3_128bits_digest(const XXH3_state_t* state) nogil
    void XXH128_canonicalFromHash(XXH128_canonical_t* out, XXH128_hash_t hash) nogil
    ctypedef struct cm_feeder:
        XXH3_state_t* state
        const uint8_t* base
        int64_t piece, size, pieces, next
        uint8_t* done
        int free
    void cm_feed(cm_feeder* f, int64_t n) nogil


cdef class Checksum:
    """XXH3-128 of bytes fed in order (the ``xxhash`` package's ``xxh3_128``, its
    ``digest()`` alike), which the decoding kernels can feed from their threads,
    tile by tile as tiles come out (``decode_tiles``, ``pack_fields``)."""
    cdef XXH3_state_t* state

    def __cinit__(self):
        self.state = XXH3_createState()
        if self.state == NULL:
            raise MemoryError()
        XXH3_128bits_reset(self.state)

    def __dealloc__(self):
        if self.state != NULL:
            XXH3_freeState(self.state)

    def update(self, const uint8_t[::1] data) -> None:
        if data.shape[0]:
            with nogil:
                XXH3_128bits_update(self.state, &data[0], data.shape[0])

    def digest(self) -> bytes:
        cdef XXH128_canonical_t canonical
        XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(self.state))
        return PyBytes_FromStringAndSize(<char*>canonical.digest, 16)


cdef cm_feeder* start_feeding(Checksum running, uint8_t* base, int64_t piece, int64_t size,
                              int64_t pieces) except? NULL:
    # a feeder of ``running`` for ``pieces`` pieces of ``base`` (None: no feeder, NULL)
    cdef cm_feeder* f
    if running is None or pieces < 1:
        return NULL
    f = <cm_feeder*>malloc(sizeof(cm_feeder))
    if f == NULL:
        raise MemoryError()
    f.done = <uint8_t*>calloc(pieces, 1)
    if f.done == NULL:
        free(f)
        raise MemoryError()
    f.state, f.base, f.piece, f.size, f.pieces, f.next, f.free = running.state, base, piece, size, pieces, 0, 1
    return f


cdef void stop_feeding(cm_feeder* f) noexcept nogil:
    # every piece hashed (the threads have hashed all but what a race left), the feeder freed
    cdef int64_t n
    if f == NULL:
        return
    for n in range(f.pieces):
        f.done[n] = 1
    cm_feed(f, -1)
    free(f.done)
    free(f)


def decode_tiles(uint8_t[::1] pixels, int itemsize, bint big_endian, int width, int channels, int bits, int rows,
                 const uint8_t[:, ::1] predictors, const uint8_t[::1] decorrelate, const uint8_t[::1] data,
                 const int64_t[:, ::1] streams, const uint8_t[::1] last, const uint32_t[::1] entries,
                 uint16_t[:, :, ::1] scratch, const uint16_t[::1] channel_of, const uint16_t[:, ::1] levels,
                 const int32_t[::1] sizes, uint8_t[::1] clean, int threads, Checksum running=None):
    """Decode every tile of a raster into ``pixels`` on ``threads`` threads
    (OpenMP's, as ``model_tiles``): the bytes of its rows of ``width`` pixels
    of ``channels`` samples of ``itemsize`` (1 or 2) bytes, 2-byte ones in
    the byte order asked, in tiles of ``rows`` rows (the last may be
    shorter); plane k goes to channel ``channel_of[k]``, through ``levels[k]``
    (rank -> value) where ``sizes[k] > 0``.  Tile n's streams are
    streams[n] = (rANS start, length, extra-bits start, length) in ``data``
    (in ``last`` for the last tile when ``last`` is not empty: a copy of
    its streams where ``data`` ends too soon), each followed by PADDING
    bytes (any) the kernel may read; ``entries`` is ``decoder_entries``'
    table; thread t works in scratch[t] ((2 * rows + 10, width + 2)).
    clean[n] says whether both streams were consumed exactly as the encoder
    left them and every rank was within its palette.  With ``running``, the
    threads feed it ``pixels`` as their tiles come out (its bytes so far must
    end where ``pixels`` begins): a 6 MB frame's checksum was half a
    millisecond of serial work after the tiles."""
    cdef int64_t row_bytes = <int64_t>width * channels * itemsize
    cdef cm_feeder* feeder = NULL
    cdef int64_t height, tiles, tallest, y, r, size
    cdef Py_ssize_t n
    cdef int k, t
    cdef const uint8_t* base
    cdef cm_output o
    if itemsize not in (1, 2) or width < 1 or channels < 1 or rows < 1 or threads < 1 \
            or pixels.shape[0] % row_bytes or not 1 <= bits <= 16:
        raise ValueError("pixels do not hold whole rows")
    height = pixels.shape[0] // row_bytes
    tiles = (height + rows - 1) // rows
    tallest = rows if rows < height else height
    if predictors.shape[0] < tiles or predictors.shape[1] != channels or decorrelate.shape[0] < tiles \
            or streams.shape[0] < tiles or streams.shape[1] != 4 or clean.shape[0] < tiles:
        raise ValueError("predictors, decorrelate, streams and clean need a row per tile")
    if entries.shape[0] != NTABLES * PROB_SCALE:
        raise ValueError("tables have the wrong size")
    if channel_of.shape[0] != channels or sizes.shape[0] < channels or levels.shape[0] < channels:
        raise ValueError("one channel, palette and size per plane")
    for k in range(channels):
        if channel_of[k] >= channels or sizes[k] > levels.shape[1]:
            raise ValueError("channel or palette out of range")
    if scratch.shape[0] < threads or scratch.shape[1] < 2 * tallest + 10 or scratch.shape[2] != width + 2:
        raise ValueError("scratch too small for a tile")
    for n in range(tiles):
        size = last.shape[0] if n == tiles - 1 and last.shape[0] else data.shape[0]
        if not (0 <= streams[n, 0] and 0 <= streams[n, 1] and 0 <= streams[n, 2] and 0 <= streams[n, 3]
                and streams[n, 0] + streams[n, 1] + PADDING <= size
                and streams[n, 2] + streams[n, 3] + PADDING <= size):
            raise ValueError("a stream and its padding lie outside the data")
        # a tile that cannot be clean is not decoded
        clean[n] = streams[n, 1] >= 16
        for k in range(channels):
            clean[n] &= predictors[n, k] < NPREDICTORS
    if height == 0:
        return
    o.itemsize = itemsize
    o.big_endian = big_endian
    o.chan = &channel_of[0]
    o.levels = &levels[0, 0]
    o.stride = levels.shape[1]
    o.sizes = &sizes[0]
    feeder = start_feeding(running, &pixels[0], rows * row_bytes, pixels.shape[0], tiles)
    for n in prange(tiles, nogil=True, num_threads=threads, schedule="dynamic", chunksize=1):
        t = threadid()
        y = n * rows
        r = rows if height - y > rows else height - y
        base = &last[0] if n == tiles - 1 and last.shape[0] else &data[0]
        if clean[n]:
            clean[n] = decode_one(&pixels[y * row_bytes], &o, channels, <int>r, width, bits, &predictors[n, 0],
                                  decorrelate[n], &scratch[t, 0, 0], &entries[0], base + streams[n, 0],
                                  streams[n, 1], base + streams[n, 2], streams[n, 3])
        if feeder != NULL:
            cm_feed(feeder, n)
    stop_feeding(feeder)


cdef int decode_one(uint8_t* pixels, const cm_output* shared, int channels, int rows, int width, int bits,
                    const uint8_t* predictors, int decorrelate, uint16_t* scratch, const uint32_t* entries,
                    const uint8_t* rans, int64_t rsize, const uint8_t* extra, int64_t esize) noexcept nogil:
    # one tile of ``decode_tiles`` (a function of its own: its locals are its thread's)
    cdef cm_tile tile
    cdef cm_output o = shared[0]
    o.pixels = pixels
    tile.channels, tile.height, tile.width, tile.bits, tile.decorrelate = channels, rows, width, bits, decorrelate
    tile.predictors = predictors
    tile.scratch = scratch
    return cm_decode_tile(&tile, &o, entries, rans, rsize, extra, esize)


def decoder_entries(const int64_t[:, ::1] freq, room=None):
    """The decoder's table from each table's token frequencies (every row
    summing to PROB_SCALE): per (table << PROB_BITS | slot), the slot's token,
    its frequency and the slot's offset in the token's range, packed as
    freq | offset << 11 | m << 21 | nb << 25, where the token's u is m << nb
    plus nb raw bits: a sample costs one load.  Tables without frequencies
    are left as they are: zero in a new table, whose pages are then never
    touched, or in ``room`` (uint32, TABLES * PROB_SCALE: a table a thread
    keeps, zero at first) entries this function made for an earlier raster.
    A sound stream never reaches them, and a damaged one decodes garbage
    there, within bounds, either way."""
    cdef int table, token, slot, f
    cdef uint32_t packed
    cdef int64_t start
    if freq.shape[0] != NTABLES or freq.shape[1] != NTOKENS:
        raise ValueError("frequencies have the wrong shape")
    if room is None:
        entries = np.zeros(NTABLES * PROB_SCALE, dtype=np.uint32)
    elif room.dtype != np.uint32 or room.shape != (NTABLES * PROB_SCALE,):
        raise ValueError("room for the table has the wrong size")
    else:
        entries = room
    cdef uint32_t[::1] out = entries
    with nogil:
        for table in range(NTABLES):
            start = 0
            for token in range(NTOKENS):
                f = <int>freq[table, token]
                if f <= 0 or start + f > PROB_SCALE:
                    continue
                packed = <uint32_t>f | token_m_nb(token)
                for slot in range(f):
                    out[table * PROB_SCALE + start + slot] = packed | (<uint32_t>slot << 11)
                start += f
    return entries


# ---- the entropy tables' bookkeeping (see codec/tables.py): a few thousand
# numbers a raster, but numpy's per-call costs made it a fifth of a small
# image's encoding, all of it serial ----

cdef enum:
    REPEAT = 255           # a table's count byte when it repeats the table before it
POOLED = REPEAT


def pool_counts(const uint64_t[:, ::1] histogram):
    """Counts with each run of rare neighbouring contexts sharing their sum
    (``codec.tables.pool`` says when), as int64 (TABLES, TOKENS)."""
    if histogram.shape[0] != NTABLES or histogram.shape[1] != NTOKENS:
        raise ValueError("counts have the wrong shape")
    pooled = np.empty((NTABLES, NTOKENS), dtype=np.int64)
    cdef int64_t[:, ::1] out = pooled
    with nogil:
        pool_into(&histogram[0, 0], 1, 0, &out[0, 0])
    return pooled


cdef void pool_into(const uint64_t* histograms, int copies, int64_t stride, int64_t* out) noexcept nogil:
    # ``pool_counts`` of the sum of ``copies`` histograms ``stride`` counts apart, into ``out``
    cdef int64_t totals[NTABLES]
    cdef int group_of[NTABLES]
    cdef int sizes[NCTX + 1]
    cdef int64_t sums[NCTX + 1][NTOKENS]
    cdef int64_t grand = 0, least, count, s
    cdef int table, token, cls, first, groups, members, g, c
    for table in range(NTABLES):
        totals[table] = 0
        for token in range(NTOKENS):
            s = 0
            for c in range(copies):
                s += <int64_t>histograms[c * stride + table * NTOKENS + token]
            out[table * NTOKENS + token] = s
            totals[table] += s
        grand += totals[table]
        group_of[table] = -1
    least = grand // 256 if grand // 256 > 2048 else 2048
    for cls in range(NCLASS):
        first = cls * NCTX
        # runs of used contexts close once they reach the floor; a last
        # short run joins the group before it (or is the only group)
        groups = 0
        members = 0
        count = 0
        for table in range(first, first + NCTX):
            if totals[table] == 0:
                continue
            group_of[table] = groups
            members += 1
            count += totals[table]
            if count >= least:
                groups += 1
                members = 0
                count = 0
        if members and groups:
            for table in range(first, first + NCTX):
                if group_of[table] == groups:
                    group_of[table] = groups - 1
        # each group's sums in one pass over its tables (a pass per group and token
        # took 50 us a raster, serial)
        for g in range(groups + 1):
            sizes[g] = 0
            for token in range(NTOKENS):
                sums[g][token] = 0
        for table in range(first, first + NCTX):
            g = group_of[table]
            if g >= 0:
                sizes[g] += 1
                for token in range(NTOKENS):
                    sums[g][token] += out[table * NTOKENS + token]
        for table in range(first, first + NCTX):
            g = group_of[table]
            if g >= 0 and sizes[g] >= 2:       # a table alone keeps its own counts
                for token in range(NTOKENS):
                    out[table * NTOKENS + token] = sums[g][token]


def normalize_counts(const int64_t[:, ::1] counts):
    """Frequencies summing to PROB_SCALE per used table, every seen token at
    least 1 (``codec.tables.normalize``), as int64 (TABLES, TOKENS)."""
    if counts.shape[0] != NTABLES or counts.shape[1] != NTOKENS:
        raise ValueError("counts have the wrong shape")
    freq = np.empty((NTABLES, NTOKENS), dtype=np.int64)
    cdef int64_t[:, ::1] out = freq
    cdef int table
    with nogil:
        for table in range(NTABLES):
            normalize_table(&counts[table, 0], &out[table, 0])
    return freq


cdef void normalize_table(const int64_t* counts, int64_t* out) noexcept nogil:
    # one table of ``normalize_counts``
    cdef int64_t total = 0, surplus, change
    cdef int token, biggest
    for token in range(NTOKENS):
        total += counts[token]
    for token in range(NTOKENS):
        # the float steps numpy took: exact products, one rounded division
        out[token] = <int64_t>floor(<double>counts[token] * PROB_SCALE / <double>(total if total > 0 else 1))
        if counts[token] > 0 and out[token] == 0:
            out[token] = 1
    if total == 0:
        return
    # settle rounding on the most frequent token (the first, on a tie)
    surplus = -PROB_SCALE
    for token in range(NTOKENS):
        surplus += out[token]
    while surplus != 0:
        biggest = 0
        for token in range(1, NTOKENS):
            if out[token] > out[biggest]:
                biggest = token
        change = surplus if surplus < 0 or surplus <= out[biggest] - 1 else out[biggest] - 1
        out[biggest] -= change
        surplus -= change


def encoder_tables(const int64_t[:, ::1] counts, room, int threads=1):
    """``normalize_counts`` then ``encoder_entries`` (their results, the same),
    table by table on ``threads`` threads (OpenMP's): one after the other, on
    one thread between the passes, they were 0.19 ms of a 16-bit RGB frame's
    encoding and 0.08 ms of a small photo's.  Returns (freq, entries)."""
    if counts.shape[0] != NTABLES or counts.shape[1] != NTOKENS:
        raise ValueError("counts have the wrong shape")
    freq = np.empty((NTABLES, NTOKENS), dtype=np.int64)
    entries = entries_room(room)
    cdef int64_t[:, ::1] normalized = freq
    cdef uint64_t[:, ::1] out = entries
    cdef uint64_t unused[4]
    cdef Py_ssize_t table
    cm_encoder_fill(<cm_encoder_entry*>unused, 1, 0)
    for table in prange(NTABLES, nogil=True, num_threads=threads, schedule="static"):
        normalize_table(&counts[table, 0], &normalized[table, 0])
        fill_entries(&normalized[table, 0], &out[table * NTOKENS, 0], unused)    # (normalized: never bad)
    return freq, entries


def encoder_from_histograms(const uint64_t[:, :, ::1] histograms, room, int threads=1):
    """``encoder_tables`` of ``pool_counts`` of the sum of ``histograms`` (a copy per
    thread, as ``model_tiles`` leaves them), in one call: numpy's sum of them and the
    calls between the steps took 30-50 us of a raster's serial time.  Returns (freq,
    entries)."""
    if histograms.shape[0] < 1 or histograms.shape[1] != NTABLES or histograms.shape[2] != NTOKENS:
        raise ValueError("counts have the wrong shape")
    pooled = np.empty((NTABLES, NTOKENS), dtype=np.int64)
    cdef int64_t[:, ::1] counts = pooled
    with nogil:
        pool_into(&histograms[0, 0, 0], histograms.shape[0], histograms.strides[0] // 8, &counts[0, 0])
    return encoder_tables(pooled, room, threads)


def table_bytes(const int64_t[:, ::1] freq):
    """The tables' stored form before compression (see ``codec.tables``):
    per table its count byte, then (u8 token, u16le frequency) entries."""
    if freq.shape[0] != NTABLES or freq.shape[1] != NTOKENS:
        raise ValueError("frequencies have the wrong shape")
    cdef uint8_t counts[NTABLES]
    cdef int table, token, last = -1, own = 0, same
    for table in range(NTABLES):
        counts[table] = 0
        for token in range(NTOKENS):
            counts[table] += freq[table, token] > 0
        if counts[table] == 0:
            continue
        # a used table equal to the used table before it repeats it
        if last >= 0:
            same = 1
            for token in range(NTOKENS):
                if freq[table, token] != freq[last, token]:
                    same = 0
                    break
            last = table
            if same:
                counts[table] = REPEAT
                continue
        last = table
        own += counts[table]
    out = PyBytes_FromStringAndSize(NULL, NTABLES + 3 * own)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    cdef int64_t at = NTABLES
    for table in range(NTABLES):
        o[table] = counts[table]
        if counts[table] == REPEAT:
            continue
        for token in range(NTOKENS):
            if freq[table, token] > 0:
                o[at] = <uint8_t>token
                o[at + 1] = <uint8_t>(freq[table, token] & 255)
                o[at + 2] = <uint8_t>(freq[table, token] >> 8)
                at += 3
    return out


def tile_index(const uint8_t[::1] data, int64_t position, int64_t count, int channels):
    """A coded raster's tile index at ``position``, ``count`` entries of ``channels``
    predictor bytes, a decorrelation byte and two u32 stream lengths, each tile's
    streams following the index back to back to the end of ``data``, as
    (predictors (count, channels), decorrelate (count, 0 or 1), streams (count,
    4: rANS start and length, extra bits' start and length), last) for
    ``decode_tiles``: ``last`` holds the last tile's streams, each with PADDING
    zeros after it (nothing follows them in ``data``), and its row of streams
    points into it.  Returns (that, None), or (None, what is wrong): "truncated",
    "trailing" or "unclean" (a rANS stream shorter than its two final states).
    (numpy's dozen steps took 50-120 us a raster, serial, before any tile decodes.)"""
    cdef int64_t entry = channels + 9, size = data.shape[0], n, at, rans, extra
    cdef int k
    cdef bint unclean = False
    if position < 0:
        raise ValueError("the index lies inside the data")
    if count < 1 or channels < 1 or position + count * entry > size:
        return None, "truncated"
    predictors = np.empty((count, channels), dtype=np.uint8)
    decorrelate = np.empty(count, dtype=np.uint8)
    streams = np.empty((count, 4), dtype=np.int64)
    cdef uint8_t[:, ::1] chosen = predictors
    cdef uint8_t[::1] leaning = decorrelate
    cdef int64_t[:, ::1] where = streams
    with nogil:
        at = position + count * entry
        for n in range(count):
            for k in range(channels):
                chosen[n, k] = data[position + n * entry + k]
            leaning[n] = data[position + n * entry + channels] != 0
            rans = cm_load32le(&data[position + n * entry + channels + 1])
            extra = cm_load32le(&data[position + n * entry + channels + 5])
            unclean |= rans < 16
            where[n, 0] = at
            where[n, 1] = rans
            where[n, 2] = at + rans
            where[n, 3] = extra
            at += rans + extra
    if at > size:
        return None, "truncated"
    if at != size:
        return None, "trailing"
    if unclean:
        return None, "unclean"
    rans, extra = where[count - 1, 1], where[count - 1, 3]
    last = np.zeros(rans + extra + 2 * PADDING, dtype=np.uint8)
    cdef uint8_t[::1] tail = last
    if rans:
        memcpy(&tail[0], &data[where[count - 1, 0]], rans)
    if extra:
        memcpy(&tail[rans + PADDING], &data[where[count - 1, 2]], extra)
    where[count - 1, 0], where[count - 1, 1], where[count - 1, 2], where[count - 1, 3] = 0, rans, rans + PADDING, extra
    return (predictors, decorrelate, streams, last), None


def parse_table_bytes(const uint8_t[::1] raw):
    """``table_bytes`` back into frequencies: (freq, None), or (None, what is
    wrong) for the caller's error: "truncated", "corrupt", "twice" (a token
    twice in one table) or "orphan" (a repeat with no table before it)."""
    cdef int64_t n = raw.shape[0], entries = 0, at
    cdef int table, token, i, last = -1, bad_entry = 0, twice = 0, bad_sum = 0
    cdef int64_t f, total
    if n < NTABLES:
        return None, "truncated"
    for table in range(NTABLES):
        if raw[table] != REPEAT:
            if raw[table] > NTOKENS:
                return None, "corrupt"
            entries += raw[table]
    if n != NTABLES + 3 * entries:
        return None, "corrupt"
    for i in range(entries):
        at = NTABLES + 3 * i
        bad_entry |= raw[at] >= NTOKENS or (raw[at + 1] == 0 and raw[at + 2] == 0)
    if bad_entry:
        return None, "corrupt"
    freq = np.zeros((NTABLES, NTOKENS), dtype=np.int64)
    cdef int64_t[:, ::1] out = freq
    at = NTABLES
    for table in range(NTABLES):
        if raw[table] == REPEAT:
            continue
        total = 0
        for i in range(raw[table]):
            token = raw[at]
            f = raw[at + 1] | (<int64_t>raw[at + 2] << 8)
            twice |= out[table, token] != 0
            out[table, token] += f
            total += f
            at += 3
        bad_sum |= raw[table] > 0 and total != PROB_SCALE
    if twice:
        return None, "twice"
    if bad_sum:
        return None, "corrupt"
    for table in range(NTABLES):
        if raw[table] == REPEAT:
            if last < 0:
                return None, "orphan"
            for token in range(NTOKENS):
                out[table, token] = out[last, token]
        elif raw[table]:
            last = table
    return freq, None


cdef int check_pixels(const uint8_t[::1] pixels, int itemsize, int width, int channels,
                      const uint16_t[::1] channel_of) except -1:
    # checks shared by the kernels that read pixel bytes: (rows, width, channels) samples
    cdef int k
    if itemsize not in (1, 2) or width < 1 or channels < 1 or pixels.shape[0] % (<int64_t>width * channels * itemsize):
        raise ValueError("pixels do not hold whole rows")
    if channel_of.shape[0] != channels:
        raise ValueError("one channel per plane")
    for k in range(channels):
        if channel_of[k] >= channels:
            raise ValueError("channel out of range")
    return 0


cdef int field_spec(tuple shifts, int width, int word_bytes, int* out) except -1:
    # checks shared by unpack_fields and pack_fields
    cdef int s
    if word_bytes not in (2, 4) or not 1 <= len(shifts) <= 4 or not 1 <= width <= 16:
        raise ValueError("unsupported field layout")
    for s in range(len(shifts)):
        out[s] = shifts[s]
        if out[s] < 0 or out[s] + width > 8 * word_bytes:
            raise ValueError("a field lies outside its word")
    return 0


cdef _check_rows(int64_t rows, int64_t count, int64_t row_bytes, int word_bytes, int period,
                 int64_t data_bytes, int64_t samples):
    """Refuse a layout whose rows overrun the bytes or the samples given."""
    if row_bytes < -(-count // period) * word_bytes or data_bytes < rows * row_bytes or samples < rows * count:
        raise ValueError("rows do not fit")


def palette_values(const uint8_t[::1] deltas, int bits):
    """A stored palette's values from their deltas (little-endian u16, the
    first from 0), or None unless they rise strictly and stay below 2**bits.
    (numpy's running sum and its checks took 0.15 ms a 16-bit plane, serial
    work before a decode's tiles can start.)"""
    cdef Py_ssize_t n = deltas.shape[0] // 2, i
    cdef uint32_t value, step, flat = 0     # (a sum of at most 65,536 u16 cannot wrap a u32)
    if deltas.shape[0] % 2 or n == 0 or n > 1 << 16:
        return None
    values = np.empty(n, dtype=np.uint16)
    cdef uint16_t[::1] out = values
    with nogil:
        value = deltas[0] | (<uint32_t>deltas[1] << 8)
        out[0] = <uint16_t>value
        for i in range(1, n):
            step = deltas[2 * i] | (<uint32_t>deltas[2 * i + 1] << 8)
            flat |= step == 0
            value += step
            out[i] = <uint16_t>value
    # the values never fall, so the last is the largest
    return None if flat or value >= (1u << bits) else values


cdef extern from *:
    """
    /* One plane of ``palette_scans``: its marks are ``copies`` rows ``stride`` bytes apart. */
    CM_KERNEL
    static uint32_t cm_palette_scan(const uint8_t* marks, int copies, int64_t stride, int64_t levels,
                                    uint16_t* values, uint16_t* ranks, int64_t* gamma) {
        uint32_t count = 0, on, previous = 0;
        int64_t bits = 0;
        for (int64_t v = 0; v < levels; v++) {
            on = marks[v];
            for (int c = 1; c < copies; c++)
                on |= marks[c * stride + v];
            /* without a branch: the marks follow no pattern a predictor could learn */
            ranks[v] = (uint16_t)count;
            values[count] = (uint16_t)v;
            count += on != 0;
        }
        /* apart: in the loop above, its chain through the last marked level made the scan 1.6 times as slow */
        for (uint32_t i = 0; i < count; i++) {
            bits += 2 * cm_bitlen(((uint32_t)values[i] - previous) | 1) - 1;
            previous = values[i];
        }
        *gamma = bits;
        return count;
    }
    """
    uint32_t cm_palette_scan(const uint8_t* marks, int copies, int64_t stride, int64_t levels,
                             uint16_t* values, uint16_t* ranks, int64_t* gamma) nogil


def palette_scans(const uint8_t[:, :, ::1] marks, Py_ssize_t levels, uint16_t[:, ::1] values,
                  uint16_t[:, ::1] ranks, int64_t[::1] counts, int64_t[::1] gamma, int threads=1):
    """Per plane p, the levels below ``levels`` that marks[t, p] flags (nonzero) for
    any t (the copies ``rastercoder.mark_levels`` leaves, one a thread), rising, in
    values[p]; each flagged level's rank among them at its place in ranks[p] (the
    others get the next flagged level's rank: nothing looks them up); how many in
    counts[p]; and in gamma[p] the bits of their deltas (the first from 0) in Elias
    gamma code, which tells about how small they pack (``palette._likely_size``).
    The planes go side by side on ``threads`` threads.  (numpy's OR of the copies,
    flatnonzero and a fancy-indexed rank table took 0.15 ms a 16-bit plane, serial
    work holding the GIL before any tile.)"""
    cdef Py_ssize_t planes = marks.shape[1], p
    cdef int copies = marks.shape[0]
    cdef int64_t stride = marks.strides[0]
    cdef int workers = max(1, min(threads, planes))
    if copies < 1 or levels < 1 or levels > 1 << 16 or marks.shape[2] < levels \
            or values.shape[0] < planes or values.shape[1] < levels \
            or ranks.shape[0] < planes or ranks.shape[1] < levels \
            or counts.shape[0] < planes or gamma.shape[0] < planes:
        raise ValueError("1 to 65,536 levels, marked in at least one copy, with a place for each plane's")
    for p in prange(planes, nogil=True, num_threads=workers, schedule="dynamic", chunksize=1):
        counts[p] = cm_palette_scan(&marks[0, p, 0], copies, stride, levels, &values[p, 0], &ranks[p, 0],
                                    &gamma[p])


cdef enum:
    BAND_BYTES = 1 << 18        # rows a thread converts at a time, about this many bytes
    JOIN_PIECE = 1 << 18        # bytes a thread copies at a time in ``join``


def unpack_fields(const uint8_t[::1] data, int64_t rows, int64_t count, int64_t row_bytes, int word_bytes,
                  bint big_endian, tuple shifts, int width, uint16_t[::1] out, int threads=1):
    """Samples of a one-word bitfield layout (each ``word_bytes`` word holds
    samples of ``width`` bits at ``shifts``, first sample first): ``rows``
    rows of ``count`` samples, ``row_bytes`` apart in ``data``, into ``out``
    (rows * count), in bands of rows on ``threads`` threads (OpenMP's, as
    ``model_tiles``).  Returns True when packing them again gives the same
    bytes (every bit outside the fields in use zero)."""
    cdef cm_band_job job
    field_spec(shifts, width, word_bytes, job.spec)
    job.period = len(shifts)
    _check_rows(rows, count, row_bytes, word_bytes, job.period, data.shape[0], out.shape[0])
    if rows * count:
        job.samples, job.words = &out[0], <uint8_t*>&data[0]
    job.rows, job.count, job.row_bytes, job.word_bytes, job.big_endian = rows, count, row_bytes, word_bytes, big_endian
    job.width, job.run = width, 0
    return unpack_bands(&job, threads)


cdef struct cm_band_job:
    # rows converted band by band (``pack_bands``, ``unpack_bands``): one-word fields as
    # ``pack_fields``/``unpack_fields`` (``run`` 0), or runs of bits as ``pack_bit_runs``/
    # ``unpack_bit_runs`` (``run`` the width of a sample's run, ``width`` the bits kept)
    uint16_t* samples
    uint8_t* words
    int64_t rows, count, row_bytes, band
    int word_bytes, big_endian, period, width, run
    int spec[4]


cdef int64_t start_bands(cm_band_job* job, int threads) except -1:
    """The number of bands of ``job``'s rows (setting its band height); 0 when it has no samples."""
    if threads < 1:
        raise ValueError("threads must be at least 1")
    if job.rows * job.count == 0:
        return 0
    job.band = max(1, BAND_BYTES // max(1, job.row_bytes))
    return (job.rows + job.band - 1) // job.band


cdef int unpack_band(const cm_band_job* job, int64_t n) noexcept nogil:
    # 1 when packing the band's samples again gives its words back
    cdef int64_t first = n * job.band, rows = min(job.band, job.rows - first)
    if job.run:
        return bit_run_rows(job.words + first * job.row_bytes, rows, job.count, job.row_bytes, job.big_endian,
                            job.run, job.width, job.samples + first * job.count)
    return cm_unpack_fields(job.words + first * job.row_bytes, rows, job.count, job.row_bytes, job.word_bytes,
                            job.big_endian, job.period, job.spec, job.width, job.samples + first * job.count)


cdef unpack_bands(cm_band_job* job, int threads):
    """Unpack ``job``'s rows in bands on ``threads`` threads; True when every band packs back exactly."""
    cdef int64_t bands = start_bands(job, threads)
    cdef int dirty = 0
    cdef Py_ssize_t n
    for n in prange(bands, nogil=True, num_threads=threads, schedule="dynamic", chunksize=1):
        dirty += unpack_band(job, n) == 0
    return dirty == 0


cdef void pack_band(const cm_band_job* job, int64_t n) noexcept nogil:
    cdef int64_t first = n * job.band, rows = min(job.band, job.rows - first)
    if job.run:
        pack_bit_run_rows(job.samples + first * job.count, rows, job.count, job.row_bytes, job.big_endian, job.run,
                          job.width, job.words + first * job.row_bytes)
    else:
        cm_pack_fields(job.samples + first * job.count, rows, job.count, job.row_bytes, job.word_bytes,
                       job.big_endian, job.period, job.spec, job.width, job.words + first * job.row_bytes)


cdef pack_bands(cm_band_job* job, int threads, Checksum running):
    """Pack ``job``'s rows in bands on ``threads`` threads, feeding ``running`` (if any) band by band."""
    cdef cm_feeder* feeder = NULL
    cdef int64_t bands = start_bands(job, threads)
    cdef Py_ssize_t n
    if bands == 0:
        return
    feeder = start_feeding(running, job.words, job.band * job.row_bytes, job.rows * job.row_bytes, bands)
    for n in prange(bands, nogil=True, num_threads=threads, schedule="dynamic", chunksize=1):
        pack_band(job, n)
        if feeder != NULL:
            cm_feed(feeder, n)
    stop_feeding(feeder)


def pack_fields(const uint16_t[::1] values, int64_t rows, int64_t count, int64_t row_bytes, int word_bytes,
                bint big_endian, tuple shifts, int width, uint8_t[::1] data, int threads=1,
                Checksum running=None):
    """The inverse of ``unpack_fields`` (bytes between rows left as they are); with
    ``running``, the threads feed it ``data`` band by band, as ``decode_tiles`` does."""
    cdef cm_band_job job
    field_spec(shifts, width, word_bytes, job.spec)
    job.period = len(shifts)
    _check_rows(rows, count, row_bytes, word_bytes, job.period, data.shape[0], values.shape[0])
    if rows * count:
        job.samples, job.words = <uint16_t*>&values[0], &data[0]
    job.rows, job.count, job.row_bytes, job.word_bytes, job.big_endian = rows, count, row_bytes, word_bytes, big_endian
    job.width, job.run = width, 0
    pack_bands(&job, threads, running)


cdef int bit_run_rows(const uint8_t* data, int64_t rows, int64_t count, int64_t row_bytes, bint big_endian,
                      int width, int bits, uint16_t* out) noexcept nogil:
    # ``unpack_bit_runs`` on a band of rows: one pass through each row's words; 1 when packing the
    # samples again gives every word back
    cdef uint64_t bank, stray = 0
    cdef uint32_t field = (1u << width) - 1, keep = (1u << bits) - 1
    cdef int have
    cdef int64_t y, i, word
    cdef const uint8_t* row
    for y in range(rows):
        row = data + y * row_bytes
        bank, have, word = 0, 0, 0
        for i in range(count):
            if have < width:
                bank |= <uint64_t>cm_load_word(row + 4 * word, 4, big_endian) << have
                word += 1
                have += 32
            out[y * count + i] = <uint16_t>(bank & keep)
            stray |= (bank & field) >> bits        # bits of the field above ``bits``
            bank >>= width
            have -= width
        stray |= bank                              # the last word's padding
    return stray == 0


cdef void pack_bit_run_rows(const uint16_t* values, int64_t rows, int64_t count, int64_t row_bytes,
                            bint big_endian, int width, int bits, uint8_t* data) noexcept nogil:
    # ``pack_bit_runs`` on a band of rows
    cdef uint64_t bank
    cdef uint32_t keep = (1u << bits) - 1
    cdef int have
    cdef int64_t y, i, word
    cdef uint8_t* row
    for y in range(rows):
        row = data + y * row_bytes
        bank, have, word = 0, 0, 0
        for i in range(count):
            bank |= <uint64_t>(values[y * count + i] & keep) << have
            have += width
            if have >= 32:
                cm_store_word(row + 4 * word, <uint32_t>bank, 4, big_endian)
                word += 1
                bank >>= 32
                have -= 32
        if have > 0:
            cm_store_word(row + 4 * word, <uint32_t>bank, 4, big_endian)


cdef _check_bit_runs(int64_t rows, int64_t count, int64_t row_bytes, int width, int bits, int64_t data_bytes,
                     int64_t samples):
    """Refuse a width the kernels do not read, or rows that overrun the bytes or samples given."""
    if not 1 <= width <= 16 or not 1 <= bits <= width:
        raise ValueError("samples of 1 to 16 bits, at most the width of their run")
    if rows < 0 or count < 0 or row_bytes < (count * width + 31) // 32 * 4 or data_bytes < rows * row_bytes \
            or samples < rows * count:
        raise ValueError("rows do not fit")


def unpack_bit_runs(const uint8_t[::1] data, int64_t rows, int64_t count, int64_t row_bytes, bint big_endian,
                    int width, int bits, uint16_t[::1] out, int threads=1):
    """Samples of ``width`` bits that follow each other as one run of bits through 32-bit
    words, each word filled from its lowest bit up (packed 10- and 12-bit DPX:
    ``layouts.bit_run``), keeping their low ``bits``: ``rows`` rows of ``count`` samples,
    ``row_bytes`` apart in ``data``, into ``out``, in bands of rows on ``threads`` threads,
    one pass through each row's words.  (numpy converted such rows on the calling thread:
    OpenImageIO's 12-bit packed frames encoded at 180 MB/s on one thread and 238 on two,
    against 318 and 610 for filled 10-bit ones; now 305 and 586.)  Returns True when
    packing them again gives every word of the rows back."""
    cdef cm_band_job job
    _check_bit_runs(rows, count, row_bytes, width, bits, data.shape[0], out.shape[0])
    if rows * count:
        job.samples, job.words = &out[0], <uint8_t*>&data[0]
    job.rows, job.count, job.row_bytes, job.big_endian = rows, count, row_bytes, big_endian
    job.run, job.width = width, bits
    return unpack_bands(&job, threads)


def pack_bit_runs(const uint16_t[::1] values, int64_t rows, int64_t count, int64_t row_bytes, bint big_endian,
                  int width, int bits, uint8_t[::1] data, int threads=1, Checksum running=None):
    """The inverse of ``unpack_bit_runs`` (bytes between rows left as they are); with
    ``running``, the threads feed it ``data`` band by band, as ``pack_fields`` does."""
    cdef cm_band_job job
    _check_bit_runs(rows, count, row_bytes, width, bits, data.shape[0], values.shape[0])
    if rows * count:
        job.samples, job.words = <uint16_t*>&values[0], &data[0]
    job.rows, job.count, job.row_bytes, job.big_endian = rows, count, row_bytes, big_endian
    job.run, job.width = width, bits
    pack_bands(&job, threads, running)


def join(list parts, int threads=1):
    """``b"".join(parts)`` (bytes-like, contiguous), copied on ``threads`` threads
    (OpenMP's, as ``model_tiles``) in pieces of about JOIN_PIECE bytes: a
    container's bytes go into fresh memory, whose page faults made the join a
    serial 0.2-0.3 ms of a 6 MB frame's encoding."""
    cdef Py_ssize_t count = len(parts), i, acquired = 0
    cdef int64_t total = 0, pieces
    cdef Py_ssize_t p
    cdef Py_buffer* views = <Py_buffer*>malloc(max(1, count) * sizeof(Py_buffer))
    cdef int64_t* starts = <int64_t*>malloc((count + 1) * sizeof(int64_t))
    cdef char* target
    if views == NULL or starts == NULL:
        free(views)
        free(starts)
        raise MemoryError()
    try:
        for i in range(count):
            PyObject_GetBuffer(parts[i], &views[i], PyBUF_SIMPLE)
            acquired += 1
            starts[i] = total
            total += views[i].len
        starts[count] = total
        out = PyBytes_FromStringAndSize(NULL, total)
        target = PyBytes_AS_STRING(out)
        pieces = max(1, total // JOIN_PIECE)
        if threads < 2 or pieces < 2:
            with nogil:
                copy_span(views, starts, count, 0, total, target)
        else:
            for p in prange(pieces, nogil=True, num_threads=threads, schedule="static"):
                copy_span(views, starts, count, total * p // pieces, total * (p + 1) // pieces, target)
        return out
    finally:
        for i in range(acquired):
            PyBuffer_Release(&views[i])
        free(views)
        free(starts)


cdef void copy_span(const Py_buffer* views, const int64_t* starts, Py_ssize_t count, int64_t begin, int64_t end,
                    char* target) noexcept nogil:
    # bytes begin..end of the parts joined (starts[i]: where part i begins) into target
    cdef Py_ssize_t low = 0, high = count, middle
    cdef int64_t a, b
    while high - low > 1:               # the last part that begins at or before ``begin``
        middle = (low + high) // 2
        if starts[middle] <= begin:
            low = middle
        else:
            high = middle
    while low < count and starts[low] < end:
        a = starts[low] if starts[low] > begin else begin
        b = starts[low + 1] if starts[low + 1] < end else end
        if b > a:
            memcpy(target + a, <const char*>views[low].buf + (a - starts[low]), b - a)
        low += 1


def writable(bytes data):
    """A writable uint8 array over ``data``'s own buffer (it does not keep
    ``data`` alive).  Only for a bytes object its caller has just made
    (``uninitialized(n)``, large) and nobody else sees until it is filled: the decoder
    writes the original straight into the bytes it returns, instead of
    copying megabytes there, serially, at the end."""
    if len(data) < 2:
        raise ValueError("bytes this short may be shared")
    cdef uint8_t[::1] view = <uint8_t[:len(data)]> <uint8_t*> PyBytes_AS_STRING(data)
    return np.asarray(view)


def uninitialized(Py_ssize_t size):
    """New bytes of ``size`` holding whatever the allocator left there, for
    ``writable``: only for a caller that overwrites every byte before anyone
    sees them (zeroing megabytes first is a serial pass over them)."""
    if size < 2:
        raise ValueError("bytes this short may be shared")
    return PyBytes_FromStringAndSize(NULL, size)
