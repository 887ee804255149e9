/* llamactl status, models, tokenize and detokenize. */
#include "cli.h"
#include "jsonw.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- status, models, tokenize, detokenize --------------------------------------------- */

static int simple_opts(int argc, char **argv, const char *cmd, const char *usage, bool *json,
                       const char **model, bool *no_special)
{
    static const struct option lo[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"model", required_argument, NULL, 'm'},
        {"no-special", no_argument, NULL, OPT_NO_SPECIAL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "m:h", lo, NULL)) != -1) {
        switch (ch) {
        case OPT_JSON:
            *json = true;
            break;
        case 'm':
            if (model == NULL) goto bad;
            *model = optarg;
            break;
        case OPT_NO_SPECIAL:
            if (no_special == NULL) goto bad;
            *no_special = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_OK;
        default:
            fprintf(stderr, "Try 'llamactl %s --help'.\n", cmd);
            return EXIT_USAGE;
        }
        continue;
    bad:
        cli_err("%s: option '%s' is not for this command", cmd, argv[optind - 1]);
        return EXIT_USAGE;
    }
    return -1;
}

static void print_status_text(const lc_status *s)
{
    printf("default model:      %s\n", s->default_model);
    printf("loaded models:     ");
    for (size_t i = 0; i < s->n_loaded_models; i++)
        printf(" %s", s->loaded_models[i]);
    printf("\n");
    printf("uptime:             %llu s\n", (unsigned long long)s->uptime_seconds);
    printf("connections:        %u\n", s->connections);
    printf("running sequences:  %u\n", s->running_sequences);
    printf("queued requests:    %u\n", s->queue_depth);
    printf("kv blocks:          %llu used, %llu cached, %llu total (%u tokens each)\n",
           (unsigned long long)s->kv_blocks_used, (unsigned long long)s->kv_blocks_cached,
           (unsigned long long)s->kv_blocks_total, s->kv_block_size);
    printf("prefix cache hits:  %.1f%%\n", s->prefix_cache_hit_rate * 100.0);
    printf("tokens/s (60 s):    %.1f\n", s->tokens_per_second);
    printf("memory:             %llu bytes allocated, %llu resident\n",
           (unsigned long long)s->mem_allocated_bytes, (unsigned long long)s->mem_resident_bytes);
}

static void print_status_json(const lc_status *s)
{
    jw w;
    jw_init(&w, stdout);
    jw_obj_begin(&w);
    jw_key(&w, "default_model");
    jw_cstr(&w, s->default_model);
    jw_key(&w, "loaded_models");
    jw_arr_begin(&w);
    for (size_t i = 0; i < s->n_loaded_models; i++)
        jw_cstr(&w, s->loaded_models[i]);
    jw_arr_end(&w);
    jw_key(&w, "queue_depth");
    jw_uint(&w, s->queue_depth);
    jw_key(&w, "running_sequences");
    jw_uint(&w, s->running_sequences);
    jw_key(&w, "kv_blocks_total");
    jw_uint(&w, s->kv_blocks_total);
    jw_key(&w, "kv_blocks_used");
    jw_uint(&w, s->kv_blocks_used);
    jw_key(&w, "kv_blocks_cached");
    jw_uint(&w, s->kv_blocks_cached);
    jw_key(&w, "kv_block_size");
    jw_uint(&w, s->kv_block_size);
    jw_key(&w, "prefix_cache_hit_rate");
    jw_double(&w, s->prefix_cache_hit_rate);
    jw_key(&w, "tokens_per_second");
    jw_double(&w, s->tokens_per_second);
    jw_key(&w, "uptime_seconds");
    jw_uint(&w, s->uptime_seconds);
    jw_key(&w, "connections");
    jw_uint(&w, s->connections);
    jw_key(&w, "jemalloc_allocated_bytes");
    jw_uint(&w, s->mem_allocated_bytes);
    jw_key(&w, "jemalloc_resident_bytes");
    jw_uint(&w, s->mem_resident_bytes);
    jw_obj_end(&w);
    jw_end_line(&w);
}

static int request_failed(lc_conn *c, int rc)
{
    (void)rc;
    cli_err("%s", lc_conn_error(c));
    return EXIT_REQUEST;
}

int cmd_status(int argc, char **argv)
{
    bool json = false;
    int rc = simple_opts(argc, argv, "status",
                         "Usage: llamactl status [--json]\n\nThe daemon's status: load, KV "
                         "cache, counters, memory.\n",
                         &json, NULL, NULL);
    if (rc >= 0) return rc;
    if (optind < argc) {
        cli_err("status takes no arguments");
        return EXIT_USAGE;
    }
    lc_conn *c = cli_connect();
    lc_status *s = NULL;
    rc = lc_get_status(c, &s);
    int ec = EXIT_OK;
    if (rc < 0) {
        ec = request_failed(c, rc);
    } else {
        if (json)
            print_status_json(s);
        else
            print_status_text(s);
        free(s);
    }
    lc_conn_free(c);
    return ec;
}

typedef struct models_state {
    bool json;
    bool done;
    int err;
} models_state;

static void models_callback(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)c;
    models_state *st = ud;
    st->done = true;
    if (ev->type != LC_EVENT_MODELS) {
        st->err = ev->type == LC_EVENT_ERROR ? ev->u.error.code : LC_ERR_PROTO;
        return;
    }
    const lc_model_info *m = ev->u.models.models;
    size_t n = ev->u.models.n_models;
    if (st->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "models");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++) {
            jw_obj_begin(&w);
            jw_key(&w, "name");
            jw_cstr(&w, m[i].name ? m[i].name : "");
            jw_key(&w, "path");
            jw_cstr(&w, m[i].path ? m[i].path : "");
            jw_key(&w, "default");
            jw_bool(&w, m[i].is_default);
            jw_key(&w, "architecture");
            jw_cstr(&w, m[i].architecture);
            jw_key(&w, "quantization");
            jw_cstr(&w, m[i].quantization);
            jw_key(&w, "parameter_count");
            jw_uint(&w, m[i].parameter_count);
            jw_key(&w, "context_length");
            jw_uint(&w, m[i].context_length);
            jw_key(&w, "vocab_size");
            jw_uint(&w, m[i].vocab_size);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_end_line(&w);
    } else {
        for (size_t i = 0; i < n; i++) {
            printf("%s%s\t%s", m[i].name, m[i].is_default ? " (default)" : "", m[i].path);
            if (m[i].architecture[0]) printf("\t%s", m[i].architecture);
            if (m[i].quantization[0]) printf("\t%s", m[i].quantization);
            if (m[i].context_length) printf("\tctx %u", m[i].context_length);
            if (m[i].vocab_size) printf("\tvocab %u", m[i].vocab_size);
            putchar('\n');
        }
    }
}

int cmd_models(int argc, char **argv)
{
    bool json = false;
    int rc = simple_opts(argc, argv, "models",
                         "Usage: llamactl models [--json]\n\nThe models the daemon serves (the "
                         "default one is marked).\n",
                         &json, NULL, NULL);
    if (rc >= 0) return rc;
    if (optind < argc) {
        cli_err("models takes no arguments");
        return EXIT_USAGE;
    }
    lc_conn *c = cli_connect();
    models_state st = {.json = json};
    uint64_t id;
    rc = lc_submit_models(c, models_callback, &st, &id);
    if (rc == 0) rc = lc_wait_request(c, id, -1);
    while (rc == LC_ERR_INTR)
        rc = lc_wait_request(c, id, -1);
    int ec = EXIT_OK;
    if (rc < 0 || st.err < 0) ec = request_failed(c, rc < 0 ? rc : st.err);
    lc_conn_free(c);
    return ec;
}

int cmd_tokenize(int argc, char **argv)
{
    bool json = false, no_special = false;
    const char *model = NULL;
    int rc = simple_opts(argc, argv, "tokenize",
                         "Usage: llamactl tokenize [-m MODEL] [--no-special] [--json] TEXT|-\n\n"
                         "Prints the token ids of TEXT ('-': read it from stdin), comma-"
                         "separated\n(usable with 'llamactl generate --ids').\n"
                         "  --no-special  do not add the model's special tokens (BOS)\n",
                         &json, &model, &no_special);
    if (rc >= 0) return rc;
    if (argc - optind != 1) {
        cli_err("tokenize takes one TEXT (quote it; '-' reads stdin)");
        return EXIT_USAGE;
    }
    const char *text = argv[optind];
    char *stdin_text = NULL;
    if (strcmp(text, "-") == 0) {
        size_t len;
        stdin_text = cli_read_stdin(&len);
        if (stdin_text == NULL) {
            cli_err("cannot read stdin: %s", strerror(errno));
            return EXIT_REQUEST;
        }
        text = stdin_text;
    }
    lc_conn *c = cli_connect();
    uint32_t *toks = NULL;
    size_t n = 0;
    rc = lc_tokenize(c, model, text, no_special ? LC_TOKENIZE_NO_SPECIAL : 0, &toks, &n);
    int ec = EXIT_OK;
    if (rc < 0) {
        ec = request_failed(c, rc);
    } else if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "tokens");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++)
            jw_uint(&w, toks[i]);
        jw_arr_end(&w);
        jw_key(&w, "count");
        jw_uint(&w, n);
        jw_obj_end(&w);
        jw_end_line(&w);
    } else {
        for (size_t i = 0; i < n; i++)
            printf(i ? ",%u" : "%u", (unsigned)toks[i]);
        putchar('\n');
    }
    free(toks);
    free(stdin_text);
    lc_conn_free(c);
    return ec;
}

int cmd_detokenize(int argc, char **argv)
{
    bool json = false;
    const char *model = NULL;
    int rc = simple_opts(argc, argv, "detokenize",
                         "Usage: llamactl detokenize [-m MODEL] [--json] ID,ID,...\n\n"
                         "Prints the text of the token ids.\n",
                         &json, &model, NULL);
    if (rc >= 0) return rc;
    if (argc - optind != 1) {
        cli_err("detokenize takes one comma-separated list of token ids");
        return EXIT_USAGE;
    }
    uint32_t *ids;
    size_t n;
    const char *bad = "";
    rc = cli_parse_ids(argv[optind], &ids, &n, &bad);
    if (rc == -ENOMEM) {
        cli_err("out of memory");
        return EXIT_REQUEST;
    }
    if (rc < 0) {
        cli_err("'%s' is not a token id (%s)", bad,
                rc == -ERANGE ? "too large" : "ids are non-negative integers, comma-separated");
        return EXIT_USAGE;
    }
    lc_conn *c = cli_connect();
    char *text = NULL;
    size_t text_len = 0;
    rc = lc_detokenize(c, model, ids, n, &text, &text_len);
    int ec = EXIT_OK;
    if (rc < 0) {
        ec = request_failed(c, rc);
    } else if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "text");
        jw_str(&w, text, text_len);
        jw_obj_end(&w);
        jw_end_line(&w);
    } else {
        fwrite(text, 1, text_len, stdout);
        if (text_len == 0 || text[text_len - 1] != '\n') putchar('\n');
    }
    free(text);
    free(ids);
    lc_conn_free(c);
    return ec;
}
