#include "backend.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "engine.h"
#include "gguf.h"
#include "kvcache.h"
#include "model.h"
#include "quant.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct be_model {
    char name[SRV_MODEL_NAME_MAX];
    char path[PATH_MAX];
    char quant[32];
    eng_model *model;
    tok_vocab *vocab;
    int chat_tmpl; /* CHAT_TMPL_UNKNOWN: none */
    kv_cache *kv;
    eng_ctx *ctx;
    smp_sampler *sampler;
    float *logits; /* max_seqs rows of n_vocab */
    int n_vocab, n_ctx;
    int bos, eos;
    eng_batch_entry *batch;
    int *batch_index; /* batch position -> scheduler entry index */
} be_model;

typedef struct be_slot {
    bool live;
    int model;
    uint32_t kvseq;
} be_slot;

struct engine_backend {
    sched_backend iface;
    be_model *models;
    int n_models;
    be_slot *slots;
    int max_seqs;
    const float **entry_logits; /* scheduler entry -> its logits row (after step) */
};

static const char *ftype_name(uint32_t ft)
{
    switch (ft) {
    case 0: return "F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K_S";
    case 12: return "Q3_K_M";
    case 13: return "Q3_K_L";
    case 14: return "Q4_K_S";
    case 15: return "Q4_K_M";
    case 16: return "Q5_K_S";
    case 17: return "Q5_K_M";
    case 18: return "Q6_K";
    case 32: return "BF16";
    default: return NULL;
    }
}

/* ---- ops ---- */

static int op_n_models(void *be) { return ((engine_backend *)be)->n_models; }

static void op_model_info(void *be, int model, sched_model_info *ret)
{
    engine_backend *b = be;
    be_model *m = &b->models[model];
    const eng_hparams *hp = &m->model->hp;
    memset(ret, 0, sizeof *ret);
    ret->name = m->name;
    ret->path = m->path;
    ret->arch = m->model->arch;
    ret->quant = m->quant;
    ret->n_ctx = m->n_ctx;
    ret->n_vocab = m->n_vocab;
    ret->n_layer = (int)hp->n_layer;
    ret->n_embd = (int)hp->n_embd;
    ret->n_head = (int)hp->n_head;
    ret->n_head_kv = (int)hp->n_head_kv;
    ret->n_params = (int64_t)m->model->n_params;
    ret->file_bytes = (int64_t)gguf_file_size(m->model->gguf);
    ret->bos = m->bos;
    ret->eos = m->eos;
}

static int op_tokenize(void *be, int model, const char *text, size_t len, bool add_special, bool parse_special,
                       int32_t *out, int cap, int *ret_n)
{
    engine_backend *b = be;
    be_model *m = &b->models[model];
    unsigned flags = add_special ? TOK_ADD_BOS_AUTO : TOK_ADD_BOS_NONE;
    if (parse_special) flags |= TOK_PARSE_SPECIAL;
    size_t n = 0;
    int rc = tok_encode(m->vocab, text, len, flags, out, (size_t)cap, &n);
    if (rc == -ENOBUFS || rc == -E2BIG) return -ENOSPC;
    if (rc != 0) return rc;
    *ret_n = (int)n;
    return 0;
}

static int op_tokenize_chat(void *be, int model, const sched_chat_msg *msgs, int n_msgs, bool add_gen, int32_t *out,
                            int cap, int *ret_n)
{
    engine_backend *b = be;
    be_model *m = &b->models[model];
    if (m->chat_tmpl == CHAT_TMPL_UNKNOWN) return -ENOTSUP;
    chat_msg *msgv = malloc(sizeof *msgv * (size_t)(n_msgs > 0 ? n_msgs : 1));
    if (msgv == NULL) return -ENOMEM;
    for (int i = 0; i < n_msgs; i++) {
        msgv[i].role = msgs[i].role;
        msgv[i].content = msgs[i].content;
        msgv[i].content_len = strlen(msgs[i].content);
    }
    size_t n = 0;
    eng_error err;
    int rc = chat_build(m->vocab, m->chat_tmpl, msgv, (size_t)n_msgs, add_gen, out, (size_t)cap, &n, &err);
    free(msgv);
    if (rc == -ENOBUFS || rc == -E2BIG) return -ENOSPC;
    if (rc != 0) return rc;
    *ret_n = (int)n;
    return 0;
}

static int copy_piece(const char *p, size_t pl, char *buf, size_t cap, size_t *ret_len)
{
    if (pl > cap) pl = cap;
    memcpy(buf, p, pl);
    *ret_len = pl;
    return 0;
}

static int op_token_text(void *be, int model, int32_t tok, char *buf, size_t cap, size_t *ret_len)
{
    engine_backend *b = be;
    const char *p;
    size_t pl;
    int rc = tok_piece(b->models[model].vocab, tok, TOK_PIECE_SPECIAL, &p, &pl);
    if (rc != 0) return rc;
    return copy_piece(p, pl, buf, cap, ret_len);
}

static int op_token_piece(void *be, int model, int32_t prev, int32_t tok, char *buf, size_t cap, size_t *ret_len)
{
    (void)prev;
    engine_backend *b = be;
    const char *p;
    size_t pl;
    int rc = tok_piece(b->models[model].vocab, tok, 0, &p, &pl);
    if (rc != 0) return rc;
    return copy_piece(p, pl, buf, cap, ret_len);
}

static bool op_is_eog(void *be, int model, int32_t tok)
{
    engine_backend *b = be;
    return tok_is_eog(b->models[model].vocab, tok);
}

static int op_kv_attach(void *be, int model, int slot, const int32_t *tokens, int n, int *ret_cached)
{
    engine_backend *b = be;
    be_model *m = &b->models[model];
    be_slot *sl = &b->slots[slot];
    if (sl->live) return -EBUSY;
    uint32_t seq;
    int rc = kv_seq_create(m->kv, &seq);
    if (rc != 0) return rc;
    uint32_t cached = 0;
    /* the last token is computed anyway: its logits are needed */
    rc = kv_seq_attach_prefix(m->kv, seq, tokens, (uint32_t)(n > 0 ? n - 1 : 0), &cached);
    if (rc != 0) {
        kv_seq_free(m->kv, seq);
        return rc;
    }
    sl->live = true;
    sl->model = model;
    sl->kvseq = seq;
    *ret_cached = (int)cached;
    return 0;
}

static int op_kv_reserve(void *be, int slot, const int32_t *tokens, int n_total)
{
    engine_backend *b = be;
    be_slot *sl = &b->slots[slot];
    be_model *m = &b->models[sl->model];
    uint32_t len = kv_seq_len(m->kv, sl->kvseq);
    if ((uint32_t)n_total <= len) return 0;
    int rc = kv_seq_append(m->kv, sl->kvseq, tokens + len, (uint32_t)n_total - len);
    return rc == -E2BIG ? -ENOSPC : rc;
}

static void op_kv_commit(void *be, int slot, const int32_t *tokens, int n_done)
{
    (void)tokens, (void)n_done;
    engine_backend *b = be;
    be_slot *sl = &b->slots[slot];
    kv_seq_commit(b->models[sl->model].kv, sl->kvseq); /* eng_step has committed already; harmless */
}

static void op_kv_release(void *be, int slot)
{
    engine_backend *b = be;
    be_slot *sl = &b->slots[slot];
    if (!sl->live) return;
    kv_seq_free(b->models[sl->model].kv, sl->kvseq);
    sl->live = false;
}

static bool op_kv_fits_ever(void *be, int model, int n)
{
    engine_backend *b = be;
    kv_stats st;
    kv_get_stats(b->models[model].kv, &st);
    uint64_t need = ((uint64_t)n + st.block_size - 1) / st.block_size;
    return need <= st.n_blocks && n <= b->models[model].n_ctx;
}

static void op_kv_stats(void *be, sched_kv_stats *ret)
{
    engine_backend *b = be;
    memset(ret, 0, sizeof *ret);
    for (int i = 0; i < b->n_models; i++) {
        kv_stats st;
        kv_get_stats(b->models[i].kv, &st);
        ret->blocks_total += st.n_blocks;
        ret->blocks_used += st.used;
        ret->blocks_cached += st.cached;
        ret->block_size = (int)st.block_size;
        ret->lookup_tokens += (int64_t)st.lookup_tokens;
        ret->hit_tokens += (int64_t)st.hit_tokens;
    }
}

static int op_sampler_create(void *be, int model, const sched_sampling *p, const int32_t *prompt, int n_prompt,
                             void **ret_smp)
{
    engine_backend *b = be;
    be_model *m = &b->models[model];
    smp_params sp;
    smp_params_default(&sp);
    sp.temperature = p->temperature;
    sp.top_k = p->top_k;
    sp.top_p = p->top_p;
    sp.min_p = p->min_p;
    sp.repeat_penalty = p->repeat_penalty;
    sp.presence_penalty = p->presence_penalty;
    sp.frequency_penalty = p->frequency_penalty;
    int last_n = p->repeat_last_n < 0 ? m->n_ctx : p->repeat_last_n;
    if (last_n > SMP_MAX_PENALTY_WINDOW) last_n = SMP_MAX_PENALTY_WINDOW;
    sp.penalty_last_n = last_n;
    sp.seed = p->seed;
    sp.n_logprobs = p->logprobs;
    smp_seq *q = NULL;
    eng_error err;
    int rc = smp_seq_create(&sp, m->n_vocab, &q, &err);
    if (rc != 0) return rc;
    int first = n_prompt > last_n ? n_prompt - last_n : 0;
    for (int i = first; i < n_prompt; i++) smp_seq_accept(q, prompt[i]);
    *ret_smp = q;
    return 0;
}

static void op_sampler_free(void *be, void *smp)
{
    (void)be;
    smp_seq_free(smp);
}

static int op_step(void *be, const sched_batch_entry *entries, int n_entries, char *errbuf, size_t errlen)
{
    engine_backend *b = be;
    for (int mi = 0; mi < b->n_models; mi++) {
        be_model *m = &b->models[mi];
        int n = 0, n_logits = 0;
        for (int i = 0; i < n_entries; i++) {
            const sched_batch_entry *e = &entries[i];
            if (e->model != mi) continue;
            eng_batch_entry *be2 = &m->batch[n];
            be2->seq = b->slots[e->slot].kvseq;
            be2->tokens = e->tokens;
            be2->n_tokens = e->n;
            be2->pos0 = e->pos0;
            be2->want_logits = e->want_logits;
            m->batch_index[n++] = i;
            b->entry_logits[i] = NULL;
        }
        if (n == 0) continue;
        eng_error err;
        eng_error_clear(&err);
        int rc = eng_step(m->ctx, m->batch, n, m->logits, &err);
        if (rc != 0) {
            snprintf(errbuf, errlen, "model %s: %s", m->name, err.msg);
            return rc;
        }
        for (int k = 0; k < n; k++) {
            if (!m->batch[k].want_logits) continue;
            b->entry_logits[m->batch_index[k]] = m->logits + (size_t)n_logits * (size_t)m->n_vocab;
            n_logits++;
        }
    }
    return 0;
}

static int op_sample(void *be, int entry_index, int model, void *smp, int32_t *ret_tok, sched_token_lp *ret_lp)
{
    engine_backend *b = be;
    be_model *m = &b->models[model];
    const float *row = b->entry_logits[entry_index];
    if (row == NULL || smp == NULL) return -EINVAL;
    smp_result res;
    eng_error err;
    int rc = smp_sample(m->sampler, smp, row, &res, &err);
    if (rc != 0) return rc;
    smp_seq_accept(smp, res.token);
    if (ret_lp != NULL) {
        ret_lp->logprob = res.logprob;
        ret_lp->n_top = res.n_top < SCHED_MAX_LOGPROBS ? res.n_top : SCHED_MAX_LOGPROBS;
        for (int k = 0; k < ret_lp->n_top; k++) {
            ret_lp->top_id[k] = res.top[k].id;
            ret_lp->top_lp[k] = res.top[k].logprob;
        }
    }
    *ret_tok = res.token;
    return 0;
}

static const sched_backend_ops engine_ops = {
    .n_models = op_n_models,
    .model_info = op_model_info,
    .tokenize = op_tokenize,
    .tokenize_chat = op_tokenize_chat,
    .token_text = op_token_text,
    .token_piece = op_token_piece,
    .is_eog = op_is_eog,
    .kv_attach = op_kv_attach,
    .kv_reserve = op_kv_reserve,
    .kv_commit = op_kv_commit,
    .kv_release = op_kv_release,
    .kv_fits_ever = op_kv_fits_ever,
    .kv_stats = op_kv_stats,
    .sampler_create = op_sampler_create,
    .sampler_free = op_sampler_free,
    .step = op_step,
    .sample = op_sample,
};

/* ---- set-up ---- */

static int resolve_path(const srv_config *cfg, const char *p, char *out, size_t len)
{
    int n;
    if (p[0] != '/' && cfg->models_dir != NULL) n = snprintf(out, len, "%s/%s", cfg->models_dir, p);
    else n = snprintf(out, len, "%s", p);
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int engine_backend_create(const srv_config *cfg, bool commit_kv, engine_backend **ret, char *errbuf,
                          size_t errlen)
{
    engine_backend *b = calloc(1, sizeof *b);
    if (b == NULL) return -ENOMEM;
    b->iface.ops = &engine_ops;
    b->iface.impl = b;
    b->max_seqs = cfg->max_seqs;
    b->models = calloc((size_t)cfg->n_models, sizeof *b->models);
    b->slots = calloc((size_t)cfg->max_seqs, sizeof *b->slots);
    b->entry_logits = calloc((size_t)cfg->max_seqs, sizeof *b->entry_logits);
    if (b->models == NULL || b->slots == NULL || b->entry_logits == NULL) {
        engine_backend_free(b);
        snprintf(errbuf, errlen, "out of memory");
        return -ENOMEM;
    }
    uint64_t budget = ((uint64_t)cfg->kv_cache_mib << 20) / (uint64_t)cfg->n_models;
    for (int i = 0; i < cfg->n_models; i++) {
        be_model *m = &b->models[i];
        b->n_models = i + 1;
        snprintf(m->name, sizeof m->name, "%s", cfg->models[i].name);
        if (resolve_path(cfg, cfg->models[i].path, m->path, sizeof m->path) != 0) {
            snprintf(errbuf, errlen, "model %s: path too long", m->name);
            engine_backend_free(b);
            return -ENAMETOOLONG;
        }
        eng_error err;
        eng_error_clear(&err);
        int rc = eng_model_load(m->path, &m->model, &err);
        if (rc != 0) {
            snprintf(errbuf, errlen, "model %s (%s): %s", m->name, m->path, err.msg);
            engine_backend_free(b);
            return rc;
        }
        const eng_hparams *hp = &m->model->hp;
        m->n_vocab = (int)hp->n_vocab;
        m->n_ctx = (int)hp->n_ctx_train;
        const char *q = ftype_name(m->model->file_type);
        snprintf(m->quant, sizeof m->quant, "%s", q ? q : eng_type_name(m->model->layers[0].wq.type));
        rc = tok_load_from_gguf(m->model->gguf, &m->vocab, &err);
        if (rc != 0) {
            snprintf(errbuf, errlen, "model %s (%s): tokenizer: %s", m->name, m->path, err.msg);
            engine_backend_free(b);
            return rc;
        }
        m->bos = tok_bos(m->vocab);
        m->eos = tok_eos(m->vocab);
        m->chat_tmpl = CHAT_TMPL_UNKNOWN;
        int tmpl;
        if (chat_resolve(m->vocab, CHAT_TMPL_UNKNOWN, &tmpl, &err) == 0) m->chat_tmpl = tmpl;

        kv_config kc = {
            .n_layer = hp->n_layer,
            .n_head_kv = hp->n_head_kv,
            .head_dim = hp->head_dim,
            .block_size = (uint32_t)cfg->block_size,
            .dtype = cfg->kv_f32 ? KV_F32 : KV_F16,
            .budget_bytes = budget,
            .salt = (uint64_t)i * 0x9E3779B97F4A7C15ull + 1,
            .max_seqs = (uint32_t)cfg->max_seqs,
            .max_seq_len = (uint32_t)m->n_ctx,
            .prefault = commit_kv, /* the arena is resident now, never faulted in mid-step */
        };
        rc = kv_create(&kc, &m->kv);
        if (rc != 0) {
            if (rc == -ENOMEM)
                snprintf(errbuf, errlen,
                         "model %s: cannot get memory for its KV cache (%llu MiB; lower kv-cache-mib)",
                         m->name, (unsigned long long)(budget >> 20));
            else
                snprintf(errbuf, errlen,
                         "model %s: cannot create its KV cache (%s; block-size must be a power of two, and "
                         "kv-cache-mib/models must hold one block)",
                         m->name, strerror(-rc));
            engine_backend_free(b);
            return rc;
        }
        eng_ctx_config ec = {
            .n_threads = cfg->threads,
            .max_batch_tokens = cfg->max_batch_tokens,
            .max_batch_seqs = cfg->max_seqs,
            .n_ctx = m->n_ctx,
        };
        rc = eng_ctx_create(m->model, m->kv, &ec, &m->ctx, &err);
        if (rc != 0) {
            snprintf(errbuf, errlen, "model %s: %s", m->name, err.msg);
            engine_backend_free(b);
            return rc;
        }
        rc = smp_sampler_create(m->n_vocab, &m->sampler, &err);
        m->logits = malloc(sizeof(float) * (size_t)m->n_vocab * (size_t)cfg->max_seqs);
        m->batch = calloc((size_t)cfg->max_seqs, sizeof *m->batch);
        m->batch_index = calloc((size_t)cfg->max_seqs, sizeof *m->batch_index);
        if (rc != 0 || m->logits == NULL || m->batch == NULL || m->batch_index == NULL) {
            snprintf(errbuf, errlen, "model %s: out of memory", m->name);
            engine_backend_free(b);
            return -ENOMEM;
        }
    }
    *ret = b;
    return 0;
}

void engine_backend_free(engine_backend *b)
{
    if (b == NULL) return;
    for (int i = 0; i < b->n_models; i++) {
        be_model *m = &b->models[i];
        eng_ctx_free(m->ctx);
        kv_destroy(m->kv);
        smp_sampler_free(m->sampler);
        tok_free(m->vocab);
        eng_model_free(m->model);
        free(m->logits);
        free(m->batch);
        free(m->batch_index);
    }
    free(b->models);
    free(b->slots);
    free(b->entry_logits);
    free(b);
}

sched_backend *engine_backend_get(engine_backend *b) { return &b->iface; }

void engine_backend_describe(engine_backend *b, int model, char *buf, size_t len)
{
    be_model *m = &b->models[model];
    const eng_hparams *hp = &m->model->hp;
    kv_stats st;
    kv_get_stats(m->kv, &st);
    const eng_map_info mi = gguf_map_info(m->model->gguf);
    snprintf(buf, len,
             "model %s: %s, %s, %.2fM params, %u layers, embd %u, ff %u, heads %u/%u (kv), vocab %d, context %d; "
             "KV cache %u blocks of %u tokens (%.1f MiB, %llu bytes/token): %u sequences fit at full context; "
             "chat template %s; %d threads; weights in %s%s",
             m->name, m->path, m->quant, (double)m->model->n_params / 1e6, hp->n_layer, hp->n_embd, hp->n_ff,
             hp->n_head, hp->n_head_kv, m->n_vocab, m->n_ctx, st.n_blocks, st.block_size,
             (double)st.n_blocks * (double)st.block_bytes / 1048576.0, (unsigned long long)st.bytes_per_token,
             st.max_seqs_full_ctx, chat_template_name(m->chat_tmpl), eng_ctx_n_threads(m->ctx),
             eng_map_pages_name(mi.pages), mi.recached ? " (their 4 KiB cached pages were dropped to be read again)" : "");
}
