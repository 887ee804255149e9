/* Sampler: picks the next token of one request from a row of logits.
 *
 * Pieces:
 *   smp_params   the request's sampling parameters (validated by smp_params_validate).
 *   smp_sampler  scratch shared by all requests of one engine thread, sized to n_vocab at
 *                creation (no malloc per token). Not thread-safe: one engine thread uses it.
 *   smp_seq      per-request state: parameters, its own PRNG (xoshiro256** seeded through
 *                splitmix64 from the request's seed) and the penalty window (the last
 *                penalty_last_n tokens the caller reported with smp_seq_accept). Allocated
 *                once per request.
 *   smp_stop     stop-string matcher over emitted text; holds back text that could still
 *                become a stop string and releases it once it cannot.
 *
 * Order of operations in smp_sample (fixed, documented so results can be reasoned about):
 *   1. logprobs (chosen token, top N) are computed from the RAW logits: natural-log softmax
 *      over the whole vocabulary, before penalties/temperature/truncation. They describe the
 *      model, like llama.cpp's n_probs with post_sampling_probs=false.
 *   2. penalties over the window (each distinct token t with count c in the window):
 *        repetition: logit > 0 ? logit / repeat_penalty : logit * repeat_penalty
 *        then logit -= c * frequency_penalty + (c > 0 ? presence_penalty : 0)
 *   3. temperature == 0: greedy argmax of the penalized logits (lowest id wins a tie). The
 *      PRNG is not advanced.
 *   4. otherwise candidates are sorted by penalized logit (descending, id ascending on ties),
 *      then truncated: top-k (k > 0), top-p (smallest prefix whose probability mass >= top_p,
 *      probabilities at temperature 1), min-p (keep p >= min_p * p_max, temperature 1). At
 *      least one candidate always survives.
 *   5. the survivors' logits are divided by temperature, softmaxed, and one uniform draw
 *      u in [0,1) from the request's PRNG picks the token by walking the cumulative sum
 *      (in rank order; when neither top-k nor top-p is active nothing is sorted and the walk
 *      goes in id order, O(n_vocab) per token).
 * The result depends only on the logits row, the parameters, the seed and the number of
 * tokens sampled so far by this request — never on other requests.
 */
#ifndef LLAMAD_SAMPLER_H
#define LLAMAD_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng_error.h"

#define SMP_MAX_STOP_TOKENS 16
#define SMP_MAX_LOGPROBS 20
#define SMP_MAX_PENALTY_WINDOW 8192
#define SMP_MAX_STOP_STRINGS 8
#define SMP_MAX_STOP_STRING_LEN 256

typedef struct smp_params {
    float temperature;        /* [0, 100]; 0 = greedy */
    int32_t top_k;            /* [0, n_vocab]; 0 = off */
    float top_p;              /* (0, 1]; 1 = off */
    float min_p;              /* [0, 1]; 0 = off */
    float repeat_penalty;     /* (0, 10]; 1 = off */
    float presence_penalty;   /* [-2, 2]; 0 = off */
    float frequency_penalty;  /* [-2, 2]; 0 = off */
    int32_t penalty_last_n;   /* [0, SMP_MAX_PENALTY_WINDOW]; window of accepted tokens */
    uint64_t seed;            /* any value */
    int32_t n_logprobs;       /* [0, SMP_MAX_LOGPROBS]: top-N logprobs to report */
    int32_t n_stop_tokens;    /* [0, SMP_MAX_STOP_TOKENS] */
    int32_t stop_tokens[SMP_MAX_STOP_TOKENS]; /* each in [0, n_vocab) */
} smp_params;

/* Defaults: greedy, no truncation, no penalties, penalty_last_n 64, seed 0, no logprobs. */
void smp_params_default(smp_params *p);

/* Checks every field against its range (n_vocab bounds top_k and the stop tokens).
 * Returns 0 or -EINVAL with a message naming the field, its value and the range.
 * NaN is rejected everywhere. */
int smp_params_validate(const smp_params *p, int32_t n_vocab, eng_error *err);

typedef struct smp_sampler smp_sampler;
typedef struct smp_seq smp_seq;

int smp_sampler_create(int32_t n_vocab, smp_sampler **ret, eng_error *err);
void smp_sampler_free(smp_sampler *s);

/* The greedy choice without penalties, as smp_sample makes it: the lowest index holding the
 * largest of x[0..n) (n >= 1), in one vectorized pass; -(1 + i) if x[i] is the first value
 * that is not finite. */
int32_t smp_argmax(const float *x, int32_t n);

/* Validates p (see smp_params_validate) and creates the request state. */
int smp_seq_create(const smp_params *p, int32_t n_vocab, smp_seq **ret, eng_error *err);
void smp_seq_free(smp_seq *q);

/* Adds a token to the penalty window (prompt tokens too, if they should count, then every
 * sampled token). Ids outside [0, n_vocab) are ignored and -EINVAL is returned. */
int smp_seq_accept(smp_seq *q, int32_t token);

/* true when token is one of the request's stop tokens. */
bool smp_seq_is_stop_token(const smp_seq *q, int32_t token);

typedef struct smp_logprob {
    int32_t id;
    float logprob;
} smp_logprob;

typedef struct smp_result {
    int32_t token;
    float logprob;            /* of the chosen token, raw model distribution; NaN when
                                 params.n_logprobs is 0 (not computed) */
    int32_t n_top;            /* == params.n_logprobs (or n_vocab if smaller) */
    smp_logprob top[SMP_MAX_LOGPROBS]; /* best first; ties: lower id first */
} smp_result;

/* Samples from one logits row (n_vocab floats, not modified). Does NOT add the token to
 * the penalty window: call smp_seq_accept with the token you keep. Non-finite logits are
 * rejected with -EINVAL. */
int smp_sample(smp_sampler *s, smp_seq *q, const float *logits, smp_result *ret,
               eng_error *err);

/* ---- the request's PRNG, exposed for tests: xoshiro256**, seeded via splitmix64. */
typedef struct smp_rng {
    uint64_t s[4];
} smp_rng;
void smp_rng_seed(smp_rng *r, uint64_t seed);
uint64_t smp_rng_next(smp_rng *r);
/* uniform in [0, 1) with 24 random bits */
float smp_rng_uniform(smp_rng *r);

/* ---- stop strings.
 * Feed the text of each emitted token (already whole UTF-8 characters); the matcher writes
 * the text that is safe to show to out. Text that is a prefix of some stop string stays
 * held until it either completes a stop string (then it is dropped, the text before the stop
 * string is released and *ret_stopped becomes true) or can no longer match (then released).
 * At the end of generation, smp_stop_flush releases what is held. The earliest stop string
 * in the text wins. Empty stop strings are rejected. */
typedef struct smp_stop smp_stop;

int smp_stop_create(const char *const *stops, int n_stops, smp_stop **ret, eng_error *err);
void smp_stop_free(smp_stop *m);
/* Bytes currently held back. */
size_t smp_stop_held(const smp_stop *m);
/* out must have room for smp_stop_held(m) + len bytes (-ENOSPC otherwise, nothing changes).
 * After a stop, further feeds return 0 bytes and keep *ret_stopped true. */
int smp_stop_feed(smp_stop *m, const char *text, size_t len, char *out, size_t out_cap,
                  size_t *ret_out_len, bool *ret_stopped);
/* Releases the held bytes (out needs smp_stop_held(m) bytes). */
int smp_stop_flush(smp_stop *m, char *out, size_t out_cap, size_t *ret_out_len);
/* Forgets held text and the stopped state (reuse for another request). */
void smp_stop_reset(smp_stop *m);

#endif
