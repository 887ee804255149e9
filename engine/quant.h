/* Weight types of GGUF tensors: sizes, dequantization, and the dot/matrix kernels the
 * forward pass runs on them.
 *
 * Type ids are the GGUF (ggml) tensor type ids. Supported:
 *   F32=0  F16=1  Q4_0=2  Q4_1=3  Q5_0=6  Q5_1=7  Q8_0=8
 *   Q2_K=10  Q3_K=11  Q4_K=12  Q5_K=13  Q6_K=14  IQ4_NL=20  IQ4_XS=23  BF16=30
 * Anything else is unsupported: eng_type_info_get() returns NULL, and the caller reports
 * an error that names the type (eng_type_name) and the tensor.
 *
 * Block layouts follow the published GGUF format: a row of n elements is n / block_elems
 * consecutive blocks of block_bytes each (F32/F16/BF16: 1-element "blocks"). All
 * multi-byte fields are little-endian; rows need no alignment.
 *
 * Dequantization reproduces the reference dequantizer to the bit (same float operations
 * in the same order; no fused multiply-add).
 *
 * BATCH INVARIANCE: eng_dot_row and eng_matmul_rows compute every (row, token) result with
 * the same arithmetic whatever the batch, so eng_matmul_rows(..., nt = 1) gives the same bits
 * as the same row/token inside any larger call with any r0/r1, and the same bits as
 * eng_dot_row. (A -Dnative=false build and a -march=native build may differ from each other
 * in the last bits; each is deterministic.) Two schemes, chosen by type and n only:
 *
 *  - Q8_0, Q4_0, Q4_K, Q6_K (8-bit activations, quant_q8.c): each token's x is quantized per
 *    32-element block (scale amax/127 kept as binary16, round to nearest), integer dot
 *    products per block (exact), scaled in f32 and summed in a fixed order over the blocks
 *    (the exact order is described at the top of quant_q8.c). The result differs
 *    from the exact dot product of the dequantized row by at most about
 *    sum_k |w_k| * amax(block of k) / 254 (the activation rounding) plus f32 rounding.
 *  - every other type, and the f32-activation reference eng_matmul_rows_f32act: the weight
 *    row is dequantized to f32 exactly, then multiplied with x in 16 fixed lanes (element k
 *    goes to lane k % 16, k ascending, one fused multiply-add per element when the build has
 *    FMA, a separate multiply and add otherwise), the lanes are summed in a fixed tree order
 *    and the tail elements (k >= n rounded down to 16) are added last, in order.
 *
 * All functions are thread-safe (no shared state) and never allocate.
 */
#ifndef LLAMAD_QUANT_H
#define LLAMAD_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum eng_type {
    ENG_TYPE_F32 = 0,
    ENG_TYPE_F16 = 1,
    ENG_TYPE_Q4_0 = 2,
    ENG_TYPE_Q4_1 = 3,
    ENG_TYPE_Q5_0 = 6,
    ENG_TYPE_Q5_1 = 7,
    ENG_TYPE_Q8_0 = 8,
    ENG_TYPE_Q2_K = 10,
    ENG_TYPE_Q3_K = 11,
    ENG_TYPE_Q4_K = 12,
    ENG_TYPE_Q5_K = 13,
    ENG_TYPE_Q6_K = 14,
    ENG_TYPE_IQ4_NL = 20,
    ENG_TYPE_IQ4_XS = 23,
    ENG_TYPE_BF16 = 30,
};

typedef struct eng_type_info {
    const char *name;      /* "Q4_K" */
    uint32_t block_elems;  /* elements per block (1 for F32/F16/BF16, 32, or 256) */
    uint32_t block_bytes;  /* bytes per block */
} eng_type_info;

/* Size description of a supported type; NULL if the type is unsupported. */
const eng_type_info *eng_type_info_get(uint32_t type);

/* Name of any type id: "Q4_K" for supported ones, the ggml name for known but unsupported
 * ones ("Q8_K", "IQ2_XXS", ...), "unknown(42)" otherwise. The returned string is static
 * (names of unknown ids are formatted into a thread-local buffer, valid until the next
 * call on the same thread). */
const char *eng_type_name(uint32_t type);

/* Bytes in a row of n_elems elements of type. 0 and *ret_bytes set on success;
 * -EINVAL if the type is unsupported or n_elems is not a multiple of block_elems,
 * -EOVERFLOW if the size does not fit in size_t. n_elems = 0 gives 0 bytes. */
int eng_row_bytes(uint32_t type, uint64_t n_elems, size_t *ret_bytes);

/* eng_row_bytes with a message for the user, for loaders: on failure sets err (may be
 * NULL) to e.g. "tensor blk.0.attn_q.weight: unsupported weight type IQ2_XXS (16)" or
 * "tensor ...: row length 100 is not a multiple of the Q4_0 block size 32", and returns
 * the code. tensor may be NULL ("tensor ?"). */
struct eng_error;
int eng_tensor_row_bytes(uint32_t type, uint64_t n_elems, const char *tensor,
                         struct eng_error *err, size_t *ret_bytes);

/* Dequantizes one row (n elements, a multiple of block_elems) of a supported type into
 * dst. Precondition (asserted): supported type, n a multiple of the block size. */
void eng_dequant_row(uint32_t type, const void *src, float *dst, size_t n);

/* Dot product of one weight row (n elements of type) with the f32 vector x.
 * Same bits as eng_matmul_rows for that row and x. Preconditions as eng_dequant_row. */
float eng_dot_row(uint32_t type, const void *row, const float *x, size_t n);

/* eng_matmul_rows with f32 activations for every type (the dequantize-and-FMA scheme above);
 * the reference the tests compare the 8-bit-activation kernels with. Same contract. */
void eng_matmul_rows_f32act(uint32_t type, const void *w, size_t row_bytes, size_t n,
                            const float *x, size_t ldx, size_t nt, float *y, size_t ldy,
                            size_t r0, size_t r1);

/* Matrix kernel for the forward pass: for rows r in [r0, r1) and tokens t in [0, nt):
 *   y[t*ldy + r] = dot(W row r, x + t*ldx)
 * W row r starts at (const char *)w + r*row_bytes; rows have n elements. Weights are read
 * in place; each block of a group of rows is prepared once per group of up to 64 tokens.
 * Uses a few tens of KB of stack, per-thread buffers (about 600 KB, thread-local) and no
 * heap. Threads may call it concurrently on disjoint [r0, r1) ranges (or disjoint y).
 * Preconditions as eng_dequant_row; x rows need n readable floats, no alignment. */
void eng_matmul_rows(uint32_t type, const void *w, size_t row_bytes, size_t n,
                     const float *x, size_t ldx, size_t nt, float *y, size_t ldy,
                     size_t r0, size_t r1);

/* ---- Activations quantized once, for several calls
 * eng_matmul_rows quantizes x to 8 bits on every call (for the types that use 8-bit
 * activations). A caller that runs several matrices on the same x, or cuts one matrix into
 * many row ranges across threads, can quantize x once and share it:
 *   eng_act_supported(type, n)  true when eng_matmul_rows uses 8-bit activations for this
 *                               type and row length (Q8_0, Q4_0, Q4_K, Q6_K, n % 32 == 0)
 *   eng_act_bytes(n, nt)        buffer size for nt tokens of n elements (0: n not usable or
 *                               the size overflows); the buffer must be 64-byte aligned
 *   eng_act_quantize(x, ldx, n, nt, t0, t1, act)
 *                               quantizes tokens [t0, t1) of x (token t at x + t*ldx) into
 *                               their places in act (a buffer for nt tokens); threads may
 *                               fill disjoint ranges
 *   eng_matmul_rows_act(type, w, row_bytes, n, act, nt, y, ldy, r0, r1)
 *                               eng_matmul_rows on the quantized tokens [0, nt) of act (a
 *                               buffer for exactly nt tokens), for any type with
 *                               eng_act_supported(type, n): the same bits */
bool eng_act_supported(uint32_t type, size_t n);
size_t eng_act_bytes(size_t n, size_t nt);
void eng_act_quantize(const float *x, size_t ldx, size_t n, size_t nt, size_t t0, size_t t1,
                      void *act);
void eng_matmul_rows_act(uint32_t type, const void *w, size_t row_bytes, size_t n,
                         const void *act, size_t nt, float *y, size_t ldy, size_t r0, size_t r1);

/* Quantizes n f32 values (a multiple of the block size) into one row of type, round to
 * nearest per block: F32, F16, Q8_0 (d = amax/127), Q4_0 (d = -max/8, the signed value of
 * largest magnitude), Q4_K (per-sub-block min/range, 6-bit scales rounded to nearest).
 * 0 on success; -EINVAL for a bad n or unknown type, -ENOTSUP for a type without a quantizer.
 * For writing test and benchmark models; not a hot path. */
int eng_quantize_row(uint32_t type, const float *src, void *dst, size_t n);

/* IEEE 754 binary16 <-> binary32. f32 -> f16 rounds to nearest, ties to even; overflow
 * gives +-inf; results below the normal range become subnormals (or +-0); NaN stays NaN
 * (quiet, sign and the top payload bits kept). f16 -> f32 is exact. */
uint16_t eng_f32_to_f16(float f);
float eng_f16_to_f32(uint16_t h);
void eng_f16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void eng_f32_to_f16_row(const float *src, uint16_t *dst, size_t n);

/* bfloat16 -> f32 (exact). */
float eng_bf16_to_f32(uint16_t b);

#endif
