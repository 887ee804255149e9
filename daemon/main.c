/* llamad: runs in the foreground (systemd supervises it; no self-daemonizing). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "server.h"

#ifndef LLAMAD_VERSION
#define LLAMAD_VERSION "0.0.0"
#endif

int main(int argc, char **argv)
{
    srv_config cfg;
    srv_config_init(&cfg);
    char err[1024];
    enum srv_config_action action;
    if (srv_config_from_args(&cfg, argc, argv, &action, err, sizeof err) != 0) {
        fprintf(stderr, "llamad: %s\n(see llamad --help)\n", err);
        srv_config_free(&cfg);
        return 2;
    }
    if (action == SRV_CONFIG_HELP) {
        srv_config_usage(stdout);
        srv_config_free(&cfg);
        return 0;
    }
    if (action == SRV_CONFIG_VERSION) {
        printf("llamad %s (protocol v1)\n", LLAMAD_VERSION);
        srv_config_free(&cfg);
        return 0;
    }
    if (cfg.socket_path == NULL) cfg.socket_path = strdup(SRV_DEFAULT_SOCKET);
    if (cfg.socket_path == NULL || srv_config_validate(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "llamad: %s\n", cfg.socket_path ? err : "out of memory");
        srv_config_free(&cfg);
        return 2;
    }
    int rc = srv_log_open(cfg.log_level, cfg.log_file);
    if (rc != 0) {
        fprintf(stderr, "llamad: cannot open log file %s: %s\n", cfg.log_file, strerror(-rc));
        srv_config_free(&cfg);
        return 2;
    }

    engine_backend *be = NULL;
    rc = engine_backend_create(&cfg, action != SRV_CONFIG_CHECK, &be, err, sizeof err);
    if (rc != 0) {
        if (action == SRV_CONFIG_CHECK) fprintf(stderr, "llamad: %s\n", err);
        else srv_log_error("%s", err);
        srv_config_free(&cfg);
        srv_log_close();
        return action == SRV_CONFIG_CHECK ? 2 : 1;
    }
    if (action == SRV_CONFIG_CHECK) {
        printf("configuration OK%s%s\n", cfg.config_path ? ": " : "", cfg.config_path ? cfg.config_path : "");
        for (int i = 0; i < cfg.n_models; i++) {
            engine_backend_describe(be, i, err, sizeof err);
            printf("%s\n", err);
        }
        engine_backend_free(be);
        srv_config_free(&cfg);
        return 0;
    }

    srv_log_info("llamad %s starting (pid %d)%s%s", LLAMAD_VERSION, (int)getpid(),
                 cfg.config_path ? ", config " : "", cfg.config_path ? cfg.config_path : "");
    for (int i = 0; i < cfg.n_models; i++) {
        engine_backend_describe(be, i, err, sizeof err);
        srv_log_info("%s%s", err, i == 0 ? " [default]" : "");
    }
    srv_log_info("limits: max-seqs %d, max-batch-tokens %d, max-queue %d, max-connections %d, max-frame-bytes %d, "
                 "max-prompt-tokens %d, max-tokens %d, max-requests-per-connection %d, timeout-s %d",
                 cfg.max_seqs, cfg.max_batch_tokens, cfg.max_queue, cfg.max_connections, cfg.max_frame_bytes,
                 cfg.max_prompt_tokens, cfg.max_tokens, cfg.max_requests_per_connection, cfg.timeout_s);

    int code = srv_run(&cfg, engine_backend_get(be), argc, argv);
    engine_backend_free(be);
    srv_config_free(&cfg);
    srv_log_close();
    return code;
}
