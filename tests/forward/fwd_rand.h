/* Seeded random weights for the forward tests that build synthetic models in memory. */
#ifndef LLAMAD_FWD_RAND_H
#define LLAMAD_FWD_RAND_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* xorshift64: a uniform float in [-1, 1); *state must not be 0 */
float fwd_frand(uint64_t *state);

/* n values fwd_frand * scale + add, malloc'd (CHECKed) */
float *fwd_rnd(uint64_t *state, size_t n, float scale, float add);

/* an f32 weight matrix (rows x cols, row-major) over w, named "synthetic" */
eng_mat fwd_mat_f32(const float *w, int rows, int cols);

#endif
