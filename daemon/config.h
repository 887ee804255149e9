/* llamad's configuration: defaults, the INI file (/etc/llamad/llamad.conf, read with inih),
 * and command-line flags (getopt_long). Every file key is also a flag of the same name
 * ("kv-cache-mib = 512" in the file, --kv-cache-mib 512 on the command line); flags override
 * the file. Every number is range-checked; an unknown key is an error naming file:line. */
#ifndef LLAMAD_CONFIG_H
#define LLAMAD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "log.h"

#define SRV_DEFAULT_CONFIG "/etc/llamad/llamad.conf"
#define SRV_DEFAULT_SOCKET "/run/llamad/llamad.sock"
#define SRV_MAX_MODELS 16
#define SRV_MAX_IDS 64
#define SRV_MODEL_NAME_MAX 64

typedef struct srv_model_spec {
    char name[SRV_MODEL_NAME_MAX]; /* [A-Za-z0-9._-]+ */
    char *path;                    /* resolved against models-dir when relative */
} srv_model_spec;

typedef struct srv_config {
    char *config_path; /* the file that was read, or NULL */
    char *socket_path;
    char *socket_group; /* NULL: leave the group alone */
    srv_model_spec models[SRV_MAX_MODELS];
    int n_models; /* the first is the default */
    char *models_dir;
    char *log_file; /* NULL: stderr */
    enum srv_log_level log_level;

    int threads; /* 0: one per online CPU */
    int kv_cache_mib;
    int block_size;
    bool kv_f32; /* KV cache elements: f32 instead of the default f16 */
    int max_seqs;
    int max_batch_tokens;
    int max_queue;
    int max_connections;
    int max_frame_bytes;
    int max_prompt_tokens;
    int max_tokens; /* cap on a request's max_tokens, and the default when it sets none */
    int max_requests_per_connection;
    int timeout_s; /* 0: no timeout */
    int grace_s;   /* how long SIGTERM waits for running jobs */

    uid_t allow_uids[SRV_MAX_IDS];
    int n_allow_uids; /* 0: anyone who can open the socket */
    gid_t allow_gids[SRV_MAX_IDS];
    int n_allow_gids;
} srv_config;

enum srv_config_action {
    SRV_CONFIG_RUN = 0,
    SRV_CONFIG_HELP,
    SRV_CONFIG_VERSION,
    SRV_CONFIG_CHECK, /* --check-config: validate and exit */
};

void srv_config_init(srv_config *cfg); /* defaults */
void srv_config_free(srv_config *cfg);

/* Applies one key (file name, without dashes) with its value. Returns 0 or -EINVAL with a
 * message in err ("kv-cache-mib: 0 is out of range (1..1048576)"). */
int srv_config_set(srv_config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Reads an INI file into cfg. Errors name file:line. -ENOENT when the file does not exist. */
int srv_config_load_file(srv_config *cfg, const char *path, char *err, size_t errlen);

/* The whole thing: defaults, then the config file (--config FILE, else the default file
 * when it exists), then the flags. Returns 0 and sets *ret_action, or -EINVAL with a
 * message. The file named by --config must exist; the default one may be missing. */
int srv_config_from_args(srv_config *cfg, int argc, char **argv, enum srv_config_action *ret_action,
                         char *err, size_t errlen);

/* Checks that the result is usable as a whole (at least one model, ...). */
int srv_config_validate(const srv_config *cfg, char *err, size_t errlen);

/* Keys that SIGHUP may change on a running daemon. */
extern const char *const srv_config_reloadable_keys[];

/* Copies the reloadable keys from src into dst. */
void srv_config_apply_reload(srv_config *dst, const srv_config *src);

void srv_config_usage(FILE *out);

#endif
