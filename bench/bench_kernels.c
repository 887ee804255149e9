/* bench_kernels: eng_matmul_rows speed per weight type on one thread, for a rows x n matrix
 * (default 1536 x 576, SmolLM2's ffn_up) with nt tokens: GMAC/s and GB/s of weights; for the
 * quantized types also the f32-activation path (eng_matmul_rows_f32act, the old kernel).
 * Each figure is the fastest call of those made in 0.3 s (least disturbed by other jobs).
 * usage: bench_kernels [rows n] ; not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    size_t rows = argc > 2 ? (size_t)atol(argv[1]) : 1536, n = argc > 2 ? (size_t)atol(argv[2]) : 576;
    static const uint32_t types[] = {ENG_TYPE_F32, ENG_TYPE_F16, ENG_TYPE_Q8_0, ENG_TYPE_Q4_0, ENG_TYPE_Q4_K,
                                     ENG_TYPE_Q6_K};
    static const size_t nts[] = {1, 3, 4, 8, 16, 32, 48, 64, 128};
    float *wf = malloc(rows * n * sizeof(float)), *x = malloc(128 * n * sizeof(float));
    float *y = malloc(128 * rows * sizeof(float));
    uint8_t *w = malloc(rows * n * 4);
    if (!wf || !x || !y || !w) return 1;
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < rows * n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        wf[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.04f;
    }
    for (size_t i = 0; i < 128 * n; i++) x[i] = wf[(i * 7919) % (rows * n)] * 50.0f;
    printf("%-6s %5s %10s %10s %10s\n", "type", "nt", "ms/call", "GMAC/s", "GB/s(W)");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        size_t rb;
        if (eng_row_bytes(types[ti], n, &rb)) continue;
        for (size_t r = 0; r < rows; r++) eng_quantize_row(types[ti], wf + r * n, w + r * rb, n);
        for (size_t ni = 0; ni < sizeof nts / sizeof nts[0]; ni++) {
            size_t nt = nts[ni];
            for (int f32act = 0; f32act < 2; f32act++) {
                if (f32act && types[ti] <= ENG_TYPE_F16) continue; /* same path */
                /* the fastest of the calls made in 0.3 s: the least disturbed by other jobs */
                double t0 = now_s(), per = 1e30, t1;
                do {
                    t1 = now_s();
                    if (f32act)
                        eng_matmul_rows_f32act(types[ti], w, rb, n, x, n, nt, y, rows, 0, rows);
                    else
                        eng_matmul_rows(types[ti], w, rb, n, x, n, nt, y, rows, 0, rows);
                    double dt = now_s() - t1;
                    per = dt < per ? dt : per;
                } while (t1 - t0 < 0.3);
                printf("%-6s %5zu %10.3f %10.1f %10.1f%s\n", eng_type_name(types[ti]), nt,
                       per * 1e3, (double)rows * n * nt / per * 1e-9,
                       (double)rows * rb / per * 1e-9, f32act ? "  (f32 activations)" : "");
            }
        }
    }
    free(wf); free(x); free(y); free(w);
    return 0;
}
