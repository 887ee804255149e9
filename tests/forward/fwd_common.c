#include "fwd_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "testutil.h"

void fwd_env_open(fwd_env *e, const char *model_rel, bool kv_f16, int block_size, int n_blocks,
                  int max_tokens, int max_seqs, int n_threads)
{
    memset(e, 0, sizeof *e);
    eng_error err = {0};
    int rc = eng_model_load(tu_shared(model_rel), &e->model, &err);
    CHECK_MSG(rc == 0, "load %s: %s", model_rel, err.msg);
    const eng_hparams *hp = &e->model->hp;
    e->n_vocab = (int)hp->n_vocab;
    kv_config kc = {0};
    kc.n_layer = hp->n_layer;
    kc.n_head_kv = hp->n_head_kv;
    kc.head_dim = hp->head_dim;
    kc.block_size = (uint32_t)block_size;
    kc.dtype = kv_f16 ? KV_F16 : KV_F32;
    kc.budget_bytes = (uint64_t)n_blocks * (uint64_t)block_size * 2u * hp->n_layer *
                      hp->n_head_kv * hp->head_dim * (kv_f16 ? 2u : 4u);
    kc.salt = 1;
    kc.max_seqs = 16;
    kc.max_seq_len = 512;
    rc = kv_create(&kc, &e->kv);
    CHECK_MSG(rc == 0, "kv_create: %d", rc);
    eng_ctx_config cc = {.n_threads = n_threads, .max_batch_tokens = max_tokens,
                         .max_batch_seqs = max_seqs, .n_ctx = 512};
    rc = eng_ctx_create(e->model, e->kv, &cc, &e->ctx, &err);
    CHECK_MSG(rc == 0, "eng_ctx_create: %s", err.msg);
}

void fwd_env_close(fwd_env *e)
{
    eng_ctx_free(e->ctx);
    kv_destroy(e->kv);
    eng_model_free(e->model);
    memset(e, 0, sizeof *e);
}

uint32_t fwd_seq_new(fwd_env *e)
{
    uint32_t s;
    int rc = kv_seq_create(e->kv, &s);
    CHECK_MSG(rc == 0, "kv_seq_create: %d", rc);
    return s;
}

void fwd_seq_free(fwd_env *e, uint32_t seq) { kv_seq_free(e->kv, seq); }

int fwd_seq_len(fwd_env *e, uint32_t seq) { return (int)kv_seq_len(e->kv, seq); }

void fwd_step(fwd_env *e, const eng_batch_entry *b, int n, float *logits)
{
    for (int i = 0; i < n; i++) {
        int rc = kv_seq_append(e->kv, b[i].seq, b[i].tokens, (uint32_t)b[i].n_tokens);
        CHECK_MSG(rc == 0, "kv_seq_append(seq %u, %d tokens): %d", b[i].seq, b[i].n_tokens, rc);
    }
    eng_error err = {0};
    int rc = eng_step(e->ctx, b, n, logits, &err);
    CHECK_MSG(rc == 0, "eng_step: %s", err.msg);
}

void fwd_run(fwd_env *e, uint32_t seq, const int32_t *toks, int n, int chunk, float *logits)
{
    for (int i = 0; i < n; i += chunk) {
        int m = n - i < chunk ? n - i : chunk;
        bool last = i + m == n;
        eng_batch_entry b = {.seq = seq, .tokens = toks + i, .n_tokens = m,
                             .pos0 = fwd_seq_len(e, seq), .want_logits = last && logits};
        fwd_step(e, &b, 1, last ? logits : NULL);
    }
}

int fwd_argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

double fwd_logprob(const float *x, int n, int id)
{
    double mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return (double)x[id] - mx - log(s);
}

char *fwd_detok(const eng_model *m, const int32_t *ids, int n, bool strip_first)
{
    gguf_value toks;
    CHECK(gguf_get_arr(m->gguf, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks) == 0);
    size_t nv = (size_t)toks.arr_n;
    gguf_str *pieces = calloc(nv, sizeof *pieces);
    CHECK(pieces);
    gguf_iter it;
    gguf_iter_init(&it, &toks);
    gguf_str s;
    size_t k = 0;
    while (k < nv && gguf_iter_next_str(&it, &s)) pieces[k++] = s;
    CHECK(k == nv);
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    CHECK(out);
    for (int i = 0; i < n; i++) {
        CHECK(ids[i] >= 0 && (size_t)ids[i] < nv);
        gguf_str p = pieces[ids[i]];
        char buf[512];
        size_t bl = 0;
        unsigned byte;
        if (p.len == 6 && memcmp(p.ptr, "<0x", 3) == 0 && p.ptr[5] == '>' &&
            sscanf(p.ptr + 3, "%2x", &byte) == 1) {
            buf[bl++] = (char)byte;
        } else {
            for (uint64_t j = 0; j < p.len && bl + 3 < sizeof buf; j++) {
                if (j + 2 < p.len && (unsigned char)p.ptr[j] == 0xE2 &&
                    (unsigned char)p.ptr[j + 1] == 0x96 && (unsigned char)p.ptr[j + 2] == 0x81) {
                    buf[bl++] = ' ';
                    j += 2;
                } else {
                    buf[bl++] = p.ptr[j];
                }
            }
        }
        const char *src = buf;
        if (i == 0 && strip_first && bl > 0 && buf[0] == ' ') {
            src++;
            bl--;
        }
        while (len + bl + 1 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            CHECK(out);
        }
        memcpy(out + len, src, bl);
        len += bl;
    }
    out[len] = 0;
    free(pieces);
    return out;
}
