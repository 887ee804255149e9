#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum key_type { K_INT, K_STR, K_MODEL, K_LEVEL, K_KVTYPE, K_UIDS, K_GIDS };

typedef struct key_def {
    const char *name;
    enum key_type type;
    size_t off;
    long long min, max;
    const char *arg;  /* for --help */
    const char *help;
} key_def;

#define OFF(f) offsetof(srv_config, f)

static const key_def keys[] = {
    {"socket", K_STR, OFF(socket_path), 0, 0, "PATH", "Unix socket to listen on (default " SRV_DEFAULT_SOCKET ")"},
    {"socket-group", K_STR, OFF(socket_group), 0, 0, "GROUP", "group that owns the socket (mode 0660)"},
    {"model", K_MODEL, 0, 0, 0, "[NAME=]PATH", "a GGUF model; repeatable, the first is the default"},
    {"models-dir", K_STR, OFF(models_dir), 0, 0, "DIR", "folder for relative model paths"},
    {"threads", K_INT, OFF(threads), 0, 1024, "N", "compute threads (0: one per CPU)"},
    {"kv-cache-mib", K_INT, OFF(kv_cache_mib), 1, 1048576, "N", "KV cache size in MiB (in memory from start-up)"},
    {"block-size", K_INT, OFF(block_size), 1, 1024, "N", "tokens per KV block"},
    {"kv-type", K_KVTYPE, OFF(kv_f32), 0, 0, "TYPE", "KV cache element type: f16 (default) or f32"},
    {"max-seqs", K_INT, OFF(max_seqs), 1, 4096, "N", "most sequences running at once"},
    {"max-batch-tokens", K_INT, OFF(max_batch_tokens), 1, 65536, "N", "token budget of one step"},
    {"max-queue", K_INT, OFF(max_queue), 1, 1000000, "N", "most jobs waiting (beyond: overloaded)"},
    {"max-connections", K_INT, OFF(max_connections), 1, 65536, "N", "most client connections"},
    {"max-frame-bytes", K_INT, OFF(max_frame_bytes), 64, 64 << 20, "N", "largest frame accepted"},
    {"max-prompt-tokens", K_INT, OFF(max_prompt_tokens), 1, 1 << 20, "N", "longest prompt in tokens"},
    {"max-tokens", K_INT, OFF(max_tokens), 1, 1 << 20, "N", "cap (and default) of a request's max_tokens"},
    {"max-requests-per-connection", K_INT, OFF(max_requests_per_connection), 1, 65536, "N",
     "most requests in flight on one connection"},
    {"timeout-s", K_INT, OFF(timeout_s), 0, 86400 * 7, "N", "request time limit in seconds (0: none)"},
    {"grace-s", K_INT, OFF(grace_s), 0, 3600, "N", "how long SIGTERM lets running jobs finish"},
    {"log-level", K_LEVEL, OFF(log_level), 0, 0, "LEVEL", "error, warn, info or debug"},
    {"log-file", K_STR, OFF(log_file), 0, 0, "FILE", "log to FILE instead of stderr"},
    {"allow-uids", K_UIDS, 0, 0, 0, "LIST", "comma-separated uids (or user names) allowed to connect"},
    {"allow-gids", K_GIDS, 0, 0, 0, "LIST", "comma-separated gids (or group names) allowed to connect"},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

const char *const srv_config_reloadable_keys[] = {
    "log-level", "log-file", "max-queue", "max-connections", "max-frame-bytes",
    "max-prompt-tokens", "max-tokens", "max-requests-per-connection", "timeout-s",
    "grace-s", "allow-uids", "allow-gids", NULL,
};

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

void srv_config_init(srv_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = SRV_LOG_INFO;
    cfg->threads = 0;
    cfg->kv_cache_mib = 256;
    cfg->block_size = 16;
    cfg->max_seqs = 64;
    cfg->max_batch_tokens = 512;
    cfg->max_queue = 256;
    cfg->max_connections = 256;
    cfg->max_frame_bytes = 1 << 20;
    cfg->max_prompt_tokens = 4096;
    cfg->max_tokens = 512;
    cfg->max_requests_per_connection = 64;
    cfg->timeout_s = 600;
    cfg->grace_s = 10;
}

static void clear_models(srv_config *cfg)
{
    for (int i = 0; i < cfg->n_models; i++) free(cfg->models[i].path);
    memset(cfg->models, 0, sizeof cfg->models);
    cfg->n_models = 0;
}

void srv_config_free(srv_config *cfg)
{
    if (cfg == NULL) return;
    clear_models(cfg);
    free(cfg->config_path);
    free(cfg->socket_path);
    free(cfg->socket_group);
    free(cfg->models_dir);
    free(cfg->log_file);
    memset(cfg, 0, sizeof *cfg);
}

static const key_def *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static int parse_ll(const char *s, long long *ret)
{
    if (s == NULL || *s == '\0') return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) return -ERANGE;
    if (end == s || *end != '\0') return -EINVAL;
    *ret = v;
    return 0;
}

static bool valid_model_name(const char *s, size_t n)
{
    if (n == 0 || n >= SRV_MODEL_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* "tiny=/path/x.gguf" or "/path/x.gguf" (the name is the file name without .gguf) */
static int add_model(srv_config *cfg, const char *value, char *err, size_t errlen)
{
    if (cfg->n_models >= SRV_MAX_MODELS)
        return errf(err, errlen, "model: more than %d models", SRV_MAX_MODELS);
    const char *eq = strchr(value, '=');
    const char *path = value;
    char name[SRV_MODEL_NAME_MAX];
    if (eq != NULL) {
        size_t n = (size_t)(eq - value);
        if (!valid_model_name(value, n))
            return errf(err, errlen, "model: bad name '%.*s' (use 1-%d of A-Z a-z 0-9 . _ -)", (int)n, value,
                        SRV_MODEL_NAME_MAX - 1);
        memcpy(name, value, n);
        name[n] = '\0';
        path = eq + 1;
    } else {
        const char *base = strrchr(value, '/');
        base = base ? base + 1 : value;
        size_t n = strlen(base);
        if (n > 5 && strcmp(base + n - 5, ".gguf") == 0) n -= 5;
        if (!valid_model_name(base, n))
            return errf(err, errlen, "model: cannot make a name from '%s'; write NAME=PATH", value);
        memcpy(name, base, n);
        name[n] = '\0';
    }
    if (*path == '\0') return errf(err, errlen, "model: empty path in '%s'", value);
    if (strlen(path) >= PATH_MAX) return errf(err, errlen, "model: path too long");
    for (int i = 0; i < cfg->n_models; i++)
        if (strcmp(cfg->models[i].name, name) == 0)
            return errf(err, errlen, "model: name '%s' given twice", name);
    char *p = strdup(path);
    if (p == NULL) return errf(err, errlen, "out of memory");
    srv_model_spec *m = &cfg->models[cfg->n_models++];
    memcpy(m->name, name, sizeof name);
    m->path = p;
    return 0;
}

static int parse_ids(const char *key, const char *value, bool gids, unsigned *out, int *ret_n, char *err,
                     size_t errlen)
{
    int n = 0;
    const char *p = value;
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) p++, len--;
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (len == 0 || len > 255) return errf(err, errlen, "%s: bad entry in '%s'", key, value);
        char item[256];
        memcpy(item, p, len);
        item[len] = '\0';
        long long v;
        if (parse_ll(item, &v) == 0) {
            if (v < 0 || v >= (long long)UINT32_MAX)
                return errf(err, errlen, "%s: %lld is out of range (0..%u)", key, v, UINT32_MAX - 1);
        } else if (gids) {
            struct group *g = getgrnam(item);
            if (g == NULL) return errf(err, errlen, "%s: no group '%s'", key, item);
            v = g->gr_gid;
        } else {
            struct passwd *pw = getpwnam(item);
            if (pw == NULL) return errf(err, errlen, "%s: no user '%s'", key, item);
            v = pw->pw_uid;
        }
        if (n >= SRV_MAX_IDS) return errf(err, errlen, "%s: more than %d entries", key, SRV_MAX_IDS);
        out[n++] = (unsigned)v;
        if (e == NULL) break;
        p = e + 1;
    }
    *ret_n = n;
    return 0;
}

int srv_config_set(srv_config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    const key_def *k = find_key(key);
    if (k == NULL) return errf(err, errlen, "unknown key '%s'", key);
    if (value == NULL) return errf(err, errlen, "%s: needs a value", key);
    switch (k->type) {
    case K_INT: {
        long long v;
        int rc = parse_ll(value, &v);
        if (rc == -EINVAL) return errf(err, errlen, "%s: '%s' is not a number", key, value);
        if (rc == -ERANGE || v < k->min || v > k->max)
            return errf(err, errlen, "%s: %s is out of range (%lld..%lld)", key, value, k->min, k->max);
        *(int *)((char *)cfg + k->off) = (int)v;
        return 0;
    }
    case K_STR: {
        if (value[0] == '\0') return errf(err, errlen, "%s: empty value", key);
        if (strlen(value) >= PATH_MAX) return errf(err, errlen, "%s: value too long", key);
        if (strcmp(key, "socket") == 0 && strlen(value) >= 108)
            return errf(err, errlen, "socket: path longer than 107 bytes: %s", value);
        char *s = strdup(value);
        if (s == NULL) return errf(err, errlen, "out of memory");
        char **slot = (char **)((char *)cfg + k->off);
        free(*slot);
        *slot = s;
        return 0;
    }
    case K_MODEL:
        return add_model(cfg, value, err, errlen);
    case K_LEVEL: {
        enum srv_log_level l;
        if (srv_log_level_parse(value, &l) != 0)
            return errf(err, errlen, "log-level: '%s' is not one of error, warn, info, debug", value);
        cfg->log_level = l;
        return 0;
    }
    case K_KVTYPE:
        if (strcmp(value, "f16") == 0) cfg->kv_f32 = false;
        else if (strcmp(value, "f32") == 0) cfg->kv_f32 = true;
        else return errf(err, errlen, "kv-type: '%s' is not one of f16, f32", value);
        return 0;
    case K_UIDS: {
        unsigned ids[SRV_MAX_IDS];
        int n;
        int rc = parse_ids(key, value, false, ids, &n, err, errlen);
        if (rc) return rc;
        for (int i = 0; i < n; i++) cfg->allow_uids[i] = ids[i];
        cfg->n_allow_uids = n;
        return 0;
    }
    case K_GIDS: {
        unsigned ids[SRV_MAX_IDS];
        int n;
        int rc = parse_ids(key, value, true, ids, &n, err, errlen);
        if (rc) return rc;
        for (int i = 0; i < n; i++) cfg->allow_gids[i] = ids[i];
        cfg->n_allow_gids = n;
        return 0;
    }
    }
    return errf(err, errlen, "%s: internal error", key);
}

/* ---- INI file ---- */

typedef struct ini_ctx {
    srv_config *cfg;
    FILE *f;
    int line;         /* line number of the text inih is handling now */
    int long_line;    /* a line longer than the buffer was seen at this line number */
    int err_line;
    char msg[512];
    bool models_from_file;
} ini_ctx;

#define INI_LINE_MAX 4096

static char *ini_read_line(char *str, int num, void *stream)
{
    ini_ctx *c = stream;
    char *r = fgets(str, num, c->f);
    if (r == NULL) return NULL;
    c->line++;
    size_t n = strlen(r);
    if (n > 0 && r[n - 1] != '\n' && !feof(c->f)) {
        /* longer than the buffer: remember it, skip the rest of the line */
        if (c->long_line == 0) c->long_line = c->line;
        int ch;
        while ((ch = fgetc(c->f)) != EOF && ch != '\n') {}
    }
    return r;
}

static int on_ini_pair(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *c = user;
    if (c->err_line != 0) return 0;
    if (c->long_line != 0) {
        c->err_line = c->long_line;
        snprintf(c->msg, sizeof c->msg, "line longer than %d bytes", INI_LINE_MAX - 3);
        return 0;
    }
    if (section[0] != '\0' && strcmp(section, "llamad") != 0) {
        c->err_line = c->line;
        snprintf(c->msg, sizeof c->msg, "unknown section [%s] (keys go at the top or under [llamad])", section);
        return 0;
    }
    if (strcmp(name, "config") == 0) {
        c->err_line = c->line;
        snprintf(c->msg, sizeof c->msg, "'config' is a command-line flag only");
        return 0;
    }
    if (strcmp(name, "model") == 0 && !c->models_from_file) {
        /* a file's models replace any earlier list */
        clear_models(c->cfg);
        c->models_from_file = true;
    }
    if (srv_config_set(c->cfg, name, value, c->msg, sizeof c->msg) != 0) {
        c->err_line = c->line;
        return 0;
    }
    return 1;
}

int srv_config_load_file(srv_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        int e = errno;
        errf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    ini_ctx c = {.cfg = cfg, .f = f};
    ini_allow_multiline = false;
    ini_stop_on_first_error = true;
    ini_use_stack = false;
    ini_max_line = INI_LINE_MAX;
    int rc = ini_parse_stream(ini_read_line, &c, on_ini_pair, &c);
    bool read_error = ferror(f) != 0;
    fclose(f);
    if (rc < 0) return errf(err, errlen, "%s: cannot read (inih error %d)", path, rc);
    if (read_error) return errf(err, errlen, "%s: read error", path);
    if (rc == 0 && c.long_line != 0) {
        c.err_line = c.long_line;
        snprintf(c.msg, sizeof c.msg, "line longer than %d bytes", INI_LINE_MAX - 3);
    }
    if (rc > 0 || c.err_line != 0) {
        int line = c.err_line != 0 ? c.err_line : rc;
        if (c.err_line == 0 || (rc > 0 && rc < c.err_line))
            return errf(err, errlen, "%s:%d: syntax error (expected 'key = value')", path, rc);
        return errf(err, errlen, "%s:%d: %s", path, line, c.msg);
    }
    char *p = strdup(path);
    if (p == NULL) return errf(err, errlen, "out of memory");
    free(cfg->config_path);
    cfg->config_path = p;
    return 0;
}

/* ---- command line ---- */

enum { OPT_CONFIG = 1000, OPT_HELP, OPT_VERSION, OPT_CHECK, OPT_KEY0 = 2000 };

static void build_options(struct option *opts)
{
    size_t i = 0;
    opts[i++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    opts[i++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    opts[i++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    opts[i++] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
    for (size_t k = 0; k < N_KEYS; k++)
        opts[i++] = (struct option){keys[k].name, required_argument, NULL, OPT_KEY0 + (int)k};
    opts[i] = (struct option){NULL, 0, NULL, 0};
}

int srv_config_from_args(srv_config *cfg, int argc, char **argv, enum srv_config_action *ret_action,
                         char *err, size_t errlen)
{
    struct option opts[N_KEYS + 5];
    build_options(opts);
    enum srv_config_action action = SRV_CONFIG_RUN;
    const char *config_file = NULL;

    /* pass 1: --config, --help, --version, --check-config, and any unknown flag */
    opterr = 0;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (ch == OPT_CONFIG) {
            config_file = optarg;
        } else if (ch == OPT_HELP || ch == 'h') {
            action = SRV_CONFIG_HELP;
        } else if (ch == OPT_VERSION) {
            if (action != SRV_CONFIG_HELP) action = SRV_CONFIG_VERSION;
        } else if (ch == OPT_CHECK) {
            if (action == SRV_CONFIG_RUN) action = SRV_CONFIG_CHECK;
        } else if (ch == ':') {
            return errf(err, errlen, "%s needs a value", argv[optind - 1]);
        } else if (ch == '?') {
            if (optopt != 0) return errf(err, errlen, "unknown option -%c", optopt);
            return errf(err, errlen, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return errf(err, errlen, "unexpected argument '%s'", argv[optind]);
    if (action == SRV_CONFIG_HELP || action == SRV_CONFIG_VERSION) {
        *ret_action = action;
        return 0;
    }

    if (config_file != NULL) {
        if (config_file[0] == '\0') return errf(err, errlen, "--config: empty path");
        int rc = srv_config_load_file(cfg, config_file, err, errlen);
        if (rc != 0) return -EINVAL;
    } else if (access(SRV_DEFAULT_CONFIG, F_OK) == 0) {
        int rc = srv_config_load_file(cfg, SRV_DEFAULT_CONFIG, err, errlen);
        if (rc != 0) return -EINVAL;
    }

    /* pass 2: the flags, over the file */
    bool flag_models = false;
    optind = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (ch < OPT_KEY0) continue;
        const key_def *k = &keys[ch - OPT_KEY0];
        if (k->type == K_MODEL && !flag_models) {
            clear_models(cfg); /* models on the command line replace the file's */
            flag_models = true;
        }
        char msg[512];
        if (srv_config_set(cfg, k->name, optarg, msg, sizeof msg) != 0)
            return errf(err, errlen, "--%s", msg);
    }
    *ret_action = action;
    return 0;
}

int srv_config_validate(const srv_config *cfg, char *err, size_t errlen)
{
    if (cfg->n_models == 0) return errf(err, errlen, "no model configured (--model [NAME=]PATH)");
    if (cfg->max_batch_tokens < cfg->max_seqs)
        return errf(err, errlen, "max-batch-tokens (%d) must be at least max-seqs (%d)", cfg->max_batch_tokens,
                    cfg->max_seqs);
    return 0;
}

void srv_config_apply_reload(srv_config *dst, const srv_config *src)
{
    dst->log_level = src->log_level;
    if (dst->log_file != src->log_file) {
        free(dst->log_file);
        dst->log_file = src->log_file ? strdup(src->log_file) : NULL;
    }
    dst->max_queue = src->max_queue;
    dst->max_connections = src->max_connections;
    dst->max_frame_bytes = src->max_frame_bytes;
    dst->max_prompt_tokens = src->max_prompt_tokens;
    dst->max_tokens = src->max_tokens;
    dst->max_requests_per_connection = src->max_requests_per_connection;
    dst->timeout_s = src->timeout_s;
    dst->grace_s = src->grace_s;
    memcpy(dst->allow_uids, src->allow_uids, sizeof dst->allow_uids);
    dst->n_allow_uids = src->n_allow_uids;
    memcpy(dst->allow_gids, src->allow_gids, sizeof dst->allow_gids);
    dst->n_allow_gids = src->n_allow_gids;
}

void srv_config_usage(FILE *out)
{
    fprintf(out,
            "Usage: llamad [OPTIONS]\n"
            "Runs Llama-family GGUF models on the CPU and serves clients on a Unix socket.\n"
            "Runs in the foreground (systemd supervises it). Every option below except --config,\n"
            "--help, --version and --check-config is also a key of the config file (" SRV_DEFAULT_CONFIG
            "),\n"
            "written without the dashes: 'kv-cache-mib = 512'. Flags override the file.\n\n"
            "  --config FILE          read FILE instead of " SRV_DEFAULT_CONFIG "\n"
            "  --check-config         check the configuration (and the model files) and exit\n"
            "  --help                 show this help\n"
            "  --version              show the version\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", keys[i].name, keys[i].arg);
        fprintf(out, "  %-33s %s", left, keys[i].help);
        if (keys[i].type == K_INT) fprintf(out, " [%lld..%lld]", keys[i].min, keys[i].max);
        fputc('\n', out);
    }
    fprintf(out, "\nSIGHUP reopens the log file and reloads these keys:");
    for (int i = 0; srv_config_reloadable_keys[i]; i++) fprintf(out, " %s", srv_config_reloadable_keys[i]);
    fputc('\n', out);
}
