/* llamactl — the command-line client of llamad, built on libllamactl.
 *
 * Exit codes: 0 ok; 1 the request failed (message on stderr); 2 usage error; 3 cannot
 * connect to the daemon; 130 interrupted (Ctrl-C: the request was cancelled cleanly). */
#include "cli.h"

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

static void usage_main(FILE *f)
{
    fprintf(f, "Usage: llamactl [--socket PATH] COMMAND [OPTIONS] [ARGS]\n"
               "\n"
               "Talks to the llamad daemon.\n"
               "\n"
               "Commands:\n"
               "  generate [PROMPT|-]   generate text from a prompt ('-': read it from stdin)\n"
               "  chat                  interactive multi-turn chat (reads lines from stdin)\n"
               "  status                the daemon's status\n"
               "  models                the models the daemon serves\n"
               "  tokenize TEXT|-       the token ids of a text\n"
               "  detokenize IDS        the text of comma-separated token ids\n"
               "\n"
               "Global options:\n"
               "  --socket PATH         the daemon's socket (default: $LLAMAD_SOCKET, then\n"
               "                        $XDG_RUNTIME_DIR/llamad.sock, then " LC_DEFAULT_SOCKET ")\n"
               "  -h, --help            this help ('llamactl COMMAND --help' for a command's)\n"
               "  -V, --version         the version\n"
               "\n"
               "Exit status: 0 ok, 1 request failed, 2 usage error, 3 cannot connect to llamad,\n"
               "130 interrupted (the request was cancelled).\n");
}

/* ---- main ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option global_long[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    /* '+': stop at the command; its options are parsed by the command. */
    while ((ch = getopt_long(argc, argv, "+hV", global_long, NULL)) != -1) {
        switch (ch) {
        case OPT_SOCKET:
            if (optarg[0] == '\0') {
                cli_err("--socket needs a path");
                return EXIT_USAGE;
            }
            cli_socket = optarg;
            break;
        case 'h':
            usage_main(stdout);
            return EXIT_OK;
        case 'V':
            printf("llamactl %s (libllamactl %s)\n", LC_VERSION_STRING, lc_version());
            return EXIT_OK;
        default:
            fprintf(stderr, "Try 'llamactl --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cli_err("no command given");
        usage_main(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    /* getopt's messages name the command: "llamactl generate: invalid option" */
    static char sub_name[64];
    snprintf(sub_name, sizeof sub_name, "llamactl %s", cmd);
    sub_argv[0] = sub_name;
    if (strcmp(cmd, "generate") == 0) return cmd_generate(sub_argc, sub_argv);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(sub_argc, sub_argv);
    if (strcmp(cmd, "status") == 0) return cmd_status(sub_argc, sub_argv);
    if (strcmp(cmd, "models") == 0) return cmd_models(sub_argc, sub_argv);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(sub_argc, sub_argv);
    if (strcmp(cmd, "detokenize") == 0) return cmd_detokenize(sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return EXIT_OK;
    }
    cli_err("unknown command '%s'", cmd);
    fprintf(stderr, "Try 'llamactl --help'.\n");
    return EXIT_USAGE;
}
