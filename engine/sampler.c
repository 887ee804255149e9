/* Sampler: see sampler.h for the contract and the order of operations. */
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

typedef struct smp_cand {
    float logit;
    int32_t id;
} smp_cand;

struct smp_sampler {
    int32_t n_vocab;
    smp_cand *cand;      /* n_vocab */
    float *work;         /* n_vocab: penalized logits */
    int32_t *count;      /* n_vocab: window counts, kept all-zero between calls */
};

struct smp_seq {
    smp_params p;
    int32_t n_vocab;
    smp_rng rng;
    int32_t *window;     /* ring of penalty_last_n tokens */
    int32_t win_len;     /* tokens in the ring */
    int32_t win_pos;     /* next write position */
};

/* ------------------------------------------------------------------ PRNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void smp_rng_seed(smp_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t smp_rng_next(smp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

float smp_rng_uniform(smp_rng *r)
{
    return (float)(smp_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* ------------------------------------------------------------------ params */

void smp_params_default(smp_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 0.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->penalty_last_n = 64;
    p->seed = 0;
    p->n_logprobs = 0;
    p->n_stop_tokens = 0;
}

static int check_range(eng_error *err, const char *name, float v, float lo, bool lo_open,
                       float hi)
{
    if (isnan(v) || v > hi || v < lo || (lo_open && v == lo))
        return eng_error_set(err, -EINVAL, "sampling parameter %s = %g is out of range %s%g, %g]",
                             name, (double)v, lo_open ? "(" : "[", (double)lo, (double)hi);
    return 0;
}

int smp_params_validate(const smp_params *p, int32_t n_vocab, eng_error *err)
{
    int rc;
    if (!p) return eng_error_set(err, -EINVAL, "sampling parameters missing");
    if (n_vocab <= 0) return eng_error_set(err, -EINVAL, "n_vocab %d must be positive", n_vocab);
    if ((rc = check_range(err, "temperature", p->temperature, 0.0f, false, 100.0f))) return rc;
    if (p->top_k < 0 || p->top_k > n_vocab)
        return eng_error_set(err, -EINVAL, "sampling parameter top_k = %d is out of range [0, %d]",
                             p->top_k, n_vocab);
    if ((rc = check_range(err, "top_p", p->top_p, 0.0f, true, 1.0f))) return rc;
    if ((rc = check_range(err, "min_p", p->min_p, 0.0f, false, 1.0f))) return rc;
    if ((rc = check_range(err, "repeat_penalty", p->repeat_penalty, 0.0f, true, 10.0f))) return rc;
    if ((rc = check_range(err, "presence_penalty", p->presence_penalty, -2.0f, false, 2.0f)))
        return rc;
    if ((rc = check_range(err, "frequency_penalty", p->frequency_penalty, -2.0f, false, 2.0f)))
        return rc;
    if (p->penalty_last_n < 0 || p->penalty_last_n > SMP_MAX_PENALTY_WINDOW)
        return eng_error_set(err, -EINVAL,
                             "sampling parameter penalty_last_n = %d is out of range [0, %d]",
                             p->penalty_last_n, SMP_MAX_PENALTY_WINDOW);
    if (p->n_logprobs < 0 || p->n_logprobs > SMP_MAX_LOGPROBS)
        return eng_error_set(err, -EINVAL,
                             "sampling parameter n_logprobs = %d is out of range [0, %d]",
                             p->n_logprobs, SMP_MAX_LOGPROBS);
    if (p->n_stop_tokens < 0 || p->n_stop_tokens > SMP_MAX_STOP_TOKENS)
        return eng_error_set(err, -EINVAL, "number of stop tokens %d is out of range [0, %d]",
                             p->n_stop_tokens, SMP_MAX_STOP_TOKENS);
    for (int i = 0; i < p->n_stop_tokens; i++)
        if (p->stop_tokens[i] < 0 || p->stop_tokens[i] >= n_vocab)
            return eng_error_set(err, -EINVAL, "stop token %d is not a token id (vocab size %d)",
                                 p->stop_tokens[i], n_vocab);
    return 0;
}

/* ------------------------------------------------------------------ objects */

int smp_sampler_create(int32_t n_vocab, smp_sampler **ret, eng_error *err)
{
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return eng_error_set(err, -EINVAL, "sampler: vocabulary size %d out of range", n_vocab);
    smp_sampler *s = calloc(1, sizeof *s);
    if (!s) return eng_error_set(err, -ENOMEM, "sampler: out of memory");
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    if (!s->cand || !s->work || !s->count) {
        smp_sampler_free(s);
        return eng_error_set(err, -ENOMEM, "sampler: out of memory for %d-token scratch", n_vocab);
    }
    *ret = s;
    return 0;
}

void smp_sampler_free(smp_sampler *s)
{
    if (!s) return;
    free(s->cand);
    free(s->work);
    free(s->count);
    free(s);
}

int smp_seq_create(const smp_params *p, int32_t n_vocab, smp_seq **ret, eng_error *err)
{
    int rc = smp_params_validate(p, n_vocab, err);
    if (rc) return rc;
    smp_seq *q = calloc(1, sizeof *q);
    if (!q) return eng_error_set(err, -ENOMEM, "sampler: out of memory");
    q->p = *p;
    q->n_vocab = n_vocab;
    smp_rng_seed(&q->rng, p->seed);
    if (p->penalty_last_n > 0) {
        q->window = malloc((size_t)p->penalty_last_n * sizeof *q->window);
        if (!q->window) {
            free(q);
            return eng_error_set(err, -ENOMEM, "sampler: out of memory");
        }
    }
    *ret = q;
    return 0;
}

void smp_seq_free(smp_seq *q)
{
    if (!q) return;
    free(q->window);
    free(q);
}

int smp_seq_accept(smp_seq *q, int32_t token)
{
    if (token < 0 || token >= q->n_vocab) return -EINVAL;
    int32_t n = q->p.penalty_last_n;
    if (n == 0) return 0;
    q->window[q->win_pos] = token;
    q->win_pos = (q->win_pos + 1) % n;
    if (q->win_len < n) q->win_len++;
    return 0;
}

bool smp_seq_is_stop_token(const smp_seq *q, int32_t token)
{
    for (int i = 0; i < q->p.n_stop_tokens; i++)
        if (q->p.stop_tokens[i] == token) return true;
    return false;
}

/* ------------------------------------------------------------------ sampling */

/* a ranks before b: higher logit, then lower id */
static inline bool cand_before(const smp_cand *a, const smp_cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    const smp_cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

/* min-heap on rank (root = worst kept) */
static void heap_sift_down(smp_cand *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_before(&h[m], &h[l])) m = l;
        if (r < n && cand_before(&h[m], &h[r])) m = r;
        if (m == i) return;
        smp_cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Puts the best k of cand[0..n) in cand[0..k), sorted best first. */
static void select_top(smp_cand *cand, int n, int k)
{
    if (k >= n || k <= 0) {
        qsort(cand, (size_t)n, sizeof *cand, cand_cmp);
        return;
    }
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(cand, k, i);
    for (int i = k; i < n; i++) {
        if (cand_before(&cand[i], &cand[0])) {
            cand[0] = cand[i];
            heap_sift_down(cand, k, 0);
        }
    }
    qsort(cand, (size_t)k, sizeof *cand, cand_cmp);
}

/* The largest of x[0..n) and the lowest index holding it, or -(1 + the index of the first
 * value that is not finite). n >= 1. */
static int32_t first_max(const float *x, int32_t n, float *ret_max)
{
    int32_t i = 0;
    float mx = -INFINITY;
#if defined(__AVX2__)
    /* 8 lanes: max, and whether any x - x is not 0 (inf - inf and NaN are NaN); then the first
     * index equal to the max. Same answer as the scalar loop below. */
    __m256 m = _mm256_set1_ps(-INFINITY), bad = _mm256_setzero_ps();
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v, v), zero, _CMP_NEQ_UQ));
        m = _mm256_max_ps(m, v);
    }
    if (_mm256_movemask_ps(bad) == 0) {
        float l[8];
        _mm256_storeu_ps(l, m);
        for (int k = 0; k < 8; k++)
            if (l[k] > mx) mx = l[k];
        for (int32_t k = i; k < n; k++) {
            if (!isfinite(x[k])) return -(1 + k);
            if (x[k] > mx) mx = x[k];
        }
        *ret_max = mx;
        const __m256 mv = _mm256_set1_ps(mx);
        int32_t j = 0;
        for (; j + 8 <= n; j += 8) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + j), mv, _CMP_EQ_OQ));
            if (hit) return j + __builtin_ctz((unsigned)hit);
        }
        for (; x[j] != mx; j++) {}
        return j;
    }
    i = 0; /* a value that is not finite: find the first one below */
#endif
    int32_t best = 0;
    for (; i < n; i++) {
        if (!isfinite(x[i])) return -(1 + i);
        if (x[i] > mx) {
            mx = x[i];
            best = i;
        }
    }
    *ret_max = mx;
    return best;
}

int32_t smp_argmax(const float *x, int32_t n)
{
    float mx;
    return first_max(x, n, &mx);
}

int smp_sample(smp_sampler *s, smp_seq *q, const float *logits, smp_result *ret, eng_error *err)
{
    const int32_t V = s->n_vocab;
    if (q->n_vocab != V)
        return eng_error_set(err, -EINVAL, "sampler: request vocab %d != sampler vocab %d",
                             q->n_vocab, V);
    const smp_params *p = &q->p;

    /* 1. raw log-softmax pieces: max, and log-sum-exp in index order, which only the reported
     *    logprobs need (it is a full pass of exp() over the vocabulary) */
    float mx = -INFINITY;
    const int32_t top = first_max(logits, V, &mx); /* the lowest id with the largest logit */
    if (top < 0) return eng_error_set(err, -EINVAL, "sampler: logit %d is not finite", -(top + 1));
    float lse = NAN;
    if (p->n_logprobs > 0) {
        double sum = 0.0;
        for (int32_t i = 0; i < V; i++) sum += exp((double)(logits[i] - mx));
        lse = mx + (float)log(sum);
    }

    /* 2. penalties */
    float *w = s->work;
    bool penal = q->win_len > 0 && (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
                                    p->frequency_penalty != 0.0f);
    const bool greedy = p->temperature == 0.0f;
    if (!greedy || penal) memcpy(w, logits, (size_t)V * sizeof *w);
    if (penal) {
        for (int32_t i = 0; i < q->win_len; i++) s->count[q->window[i]]++;
        for (int32_t i = 0; i < q->win_len; i++) {
            int32_t t = q->window[i];
            int32_t c = s->count[t];
            if (c == 0) continue; /* already handled */
            float l = w[t];
            if (p->repeat_penalty != 1.0f) l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
            l -= (float)c * p->frequency_penalty + p->presence_penalty;
            w[t] = l;
            s->count[t] = 0;
        }
    }

    int32_t tok;
    if (greedy && !penal) {
        /* 3. greedy: the first of the largest logits, found in step 1 */
        tok = top;
    } else if (greedy) {
        tok = 0;
        for (int32_t i = 1; i < V; i++)
            if (w[i] > w[tok]) tok = i;
    } else if ((p->top_k == 0 || p->top_k >= V) && p->top_p >= 1.0f) {
        /* 4'. no rank-based truncation: no sort needed. min-p keeps l_i >= l_max + log(min_p);
         * the draw walks the survivors in id order. O(n_vocab). */
        float lmax = w[0];
        for (int32_t i = 1; i < V; i++)
            if (w[i] > lmax) lmax = w[i];
        const double inv_t = 1.0 / (double)p->temperature;
        double z = 0.0;
        for (int32_t i = 0; i < V; i++) {
            double r = exp((double)(w[i] - lmax));
            if (p->min_p > 0.0f && r < (double)p->min_p) continue;
            z += exp((double)(w[i] - lmax) * inv_t);
        }
        double u = (double)smp_rng_uniform(&q->rng) * z;
        double cum = 0.0;
        tok = -1;
        int32_t last = 0;
        for (int32_t i = 0; i < V; i++) {
            double r = exp((double)(w[i] - lmax));
            if (p->min_p > 0.0f && r < (double)p->min_p) continue;
            last = i;
            cum += exp((double)(w[i] - lmax) * inv_t);
            if (u < cum) {
                tok = i;
                break;
            }
        }
        if (tok < 0) tok = last;
    } else {
        /* 4. sort (best first) + truncate */
        smp_cand *c = s->cand;
        for (int32_t i = 0; i < V; i++) {
            c[i].logit = w[i];
            c[i].id = i;
        }
        int n = V;
        if (p->top_k > 0 && p->top_k < n) {
            select_top(c, n, p->top_k);
            n = p->top_k;
        } else {
            select_top(c, n, n);
        }
        /* probabilities at temperature 1 over the survivors */
        if (p->top_p < 1.0f || p->min_p > 0.0f) {
            double z = 0.0;
            for (int i = 0; i < n; i++) z += exp((double)(c[i].logit - c[0].logit));
            if (p->top_p < 1.0f) {
                double cum = 0.0;
                int keep = n;
                for (int i = 0; i < n; i++) {
                    cum += exp((double)(c[i].logit - c[0].logit)) / z;
                    if (cum >= (double)p->top_p) {
                        keep = i + 1;
                        break;
                    }
                }
                n = keep;
            }
            if (p->min_p > 0.0f) {
                /* p_i >= min_p * p_max  <=>  exp(l_i - l_max) >= min_p */
                int keep = 1;
                while (keep < n && exp((double)(c[keep].logit - c[0].logit)) >= (double)p->min_p)
                    keep++;
                n = keep;
            }
        }
        /* 5. temperature + draw */
        double z = 0.0;
        const double inv_t = 1.0 / (double)p->temperature;
        for (int i = 0; i < n; i++) z += exp((double)(c[i].logit - c[0].logit) * inv_t);
        double u = (double)smp_rng_uniform(&q->rng) * z;
        double cum = 0.0;
        tok = c[n - 1].id;
        for (int i = 0; i < n; i++) {
            cum += exp((double)(c[i].logit - c[0].logit) * inv_t);
            if (u < cum) {
                tok = c[i].id;
                break;
            }
        }
    }

    ret->token = tok;
    ret->logprob = logits[tok] - lse;
    int32_t nt = p->n_logprobs < V ? p->n_logprobs : V;
    ret->n_top = nt;
    if (nt > 0) {
        /* top-N of the raw logits: simple insertion into a small sorted list */
        smp_cand best[SMP_MAX_LOGPROBS];
        int nb = 0;
        for (int32_t i = 0; i < V; i++) {
            smp_cand x = {logits[i], i};
            if (nb == nt && !cand_before(&x, &best[nb - 1])) continue;
            int j = nb < nt ? nb++ : nt - 1;
            while (j > 0 && cand_before(&x, &best[j - 1])) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = x;
        }
        for (int i = 0; i < nt; i++) {
            ret->top[i].id = best[i].id;
            ret->top[i].logprob = best[i].logit - lse;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ stop strings */

struct smp_stop {
    int n;
    size_t len[SMP_MAX_STOP_STRINGS];
    char *str[SMP_MAX_STOP_STRINGS];
    size_t max_len;
    char *held;      /* max_len - 1 bytes at most */
    size_t n_held;
    bool stopped;
};

int smp_stop_create(const char *const *stops, int n_stops, smp_stop **ret, eng_error *err)
{
    if (n_stops < 0 || n_stops > SMP_MAX_STOP_STRINGS)
        return eng_error_set(err, -EINVAL, "number of stop strings %d is out of range [0, %d]",
                             n_stops, SMP_MAX_STOP_STRINGS);
    for (int i = 0; i < n_stops; i++) {
        if (!stops[i]) return eng_error_set(err, -EINVAL, "stop string %d is missing", i);
        size_t l = strlen(stops[i]);
        if (l == 0) return eng_error_set(err, -EINVAL, "stop string %d is empty", i);
        if (l > SMP_MAX_STOP_STRING_LEN)
            return eng_error_set(err, -EINVAL, "stop string %d is %zu bytes long (max %d)", i, l,
                                 SMP_MAX_STOP_STRING_LEN);
    }
    smp_stop *m = calloc(1, sizeof *m);
    if (!m) return eng_error_set(err, -ENOMEM, "stop strings: out of memory");
    m->n = n_stops;
    for (int i = 0; i < n_stops; i++) {
        m->len[i] = strlen(stops[i]);
        m->str[i] = malloc(m->len[i]);
        if (!m->str[i]) {
            smp_stop_free(m);
            return eng_error_set(err, -ENOMEM, "stop strings: out of memory");
        }
        memcpy(m->str[i], stops[i], m->len[i]);
        if (m->len[i] > m->max_len) m->max_len = m->len[i];
    }
    m->held = malloc(m->max_len ? m->max_len : 1);
    if (!m->held) {
        smp_stop_free(m);
        return eng_error_set(err, -ENOMEM, "stop strings: out of memory");
    }
    *ret = m;
    return 0;
}

void smp_stop_free(smp_stop *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->str[i]);
    free(m->held);
    free(m);
}

size_t smp_stop_held(const smp_stop *m) { return m->n_held; }

void smp_stop_reset(smp_stop *m)
{
    m->n_held = 0;
    m->stopped = false;
}

int smp_stop_feed(smp_stop *m, const char *text, size_t len, char *out, size_t out_cap,
                  size_t *ret_out_len, bool *ret_stopped)
{
    if (m->stopped) {
        *ret_out_len = 0;
        *ret_stopped = true;
        return 0;
    }
    if (len > SIZE_MAX - m->n_held || out_cap < m->n_held + len) return -ENOSPC;
    /* work in out: held text followed by the new text */
    size_t n = m->n_held + len;
    memcpy(out, m->held, m->n_held);
    if (len) memcpy(out + m->n_held, text, len);

    /* earliest complete stop string */
    size_t best = SIZE_MAX;
    for (int i = 0; i < m->n; i++) {
        if (m->len[i] > n) continue;
        const char *hit = memmem(out, n, m->str[i], m->len[i]);
        if (hit && (size_t)(hit - out) < best) best = (size_t)(hit - out);
    }
    if (best != SIZE_MAX) {
        m->stopped = true;
        m->n_held = 0;
        *ret_out_len = best;
        *ret_stopped = true;
        return 0;
    }
    /* longest suffix that is a proper prefix of some stop string */
    size_t hold = 0;
    size_t lim = m->max_len ? m->max_len - 1 : 0;
    if (lim > n) lim = n;
    for (size_t h = lim; h > 0 && hold == 0; h--) {
        for (int i = 0; i < m->n; i++) {
            if (m->len[i] > h && memcmp(out + n - h, m->str[i], h) == 0) {
                hold = h;
                break;
            }
        }
    }
    memcpy(m->held, out + n - hold, hold);
    m->n_held = hold;
    *ret_out_len = n - hold;
    *ret_stopped = false;
    return 0;
}

int smp_stop_flush(smp_stop *m, char *out, size_t out_cap, size_t *ret_out_len)
{
    if (out_cap < m->n_held) return -ENOSPC;
    memcpy(out, m->held, m->n_held);
    *ret_out_len = m->n_held;
    m->n_held = 0;
    return 0;
}
