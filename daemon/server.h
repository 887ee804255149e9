/* llamad's server: the libuv loop thread. It listens on the Unix socket (created with mode
 * 0660, or inherited through systemd socket activation), decodes frames per connection,
 * validates requests and hands jobs to the scheduler; scheduler events come back through a
 * uv_async_t and go out as frames. Also: signals (SIGTERM/SIGINT drain, SIGHUP reload),
 * sd_notify and the watchdog. */
#ifndef LLAMAD_SERVER_H
#define LLAMAD_SERVER_H

#include "config.h"
#include "sched_backend.h"

/* Runs the daemon until SIGTERM/SIGINT has drained it. cfg stays the caller's; argc/argv are
 * kept to reload the configuration on SIGHUP. Returns the exit status (0 after a clean
 * drain). */
int srv_run(srv_config *cfg, sched_backend *backend, int argc, char **argv);

#endif
