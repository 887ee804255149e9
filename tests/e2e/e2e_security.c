/* Security properties of the real llamad:
 *  - the socket is created 0660 (never world-writable) with the configured group;
 *  - peer credentials against allow-uids / allow-gids: excluded -> PERMISSION_DENIED (or the
 *    connection is closed), included -> served;
 *  - with its working directory in a read-only folder and the socket in a runtime folder, it
 *    creates no file besides the socket, and every file it holds open or mapped is read-only;
 *  - a model name taken from a request is never opened unless it names a configured model:
 *    "/etc/passwd", "../x.gguf" and the path of a real, unconfigured GGUF get UNKNOWN_MODEL and
 *    the file does not show up among its open files or mappings.
 * argv: LLAMAD. */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dh.h"
#include "testutil.h"

#define E(c) LLAMAD__V1__ERROR__CODE__##c

static const char *llamad;
static char model_arg[4200];

static void start(dh_daemon *d, const char *sock, const char *const *extra)
{
    const char *args[32] = {"--model", model_arg, "--threads", "1", "--kv-cache-mib", "4"};
    int n = 6;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    args[n] = NULL;
    snprintf(d->sock, sizeof d->sock, "%s", sock);
    dh_start(d, llamad, args);
}

/* Hello answered (true) or refused with PERMISSION_DENIED / closed (false). */
static bool served(const char *sock)
{
    dh_conn *c = malloc(sizeof *c);
    CHECK(c != NULL);
    dh_connect(c, sock);
    c->may_be_refused = true; /* refused and closed before the hello is sent */
    dh_send_hello(c, 1);
    c->may_be_refused = false;
    Llamad__V1__ServerMessage *m = dh_recv(c);
    bool ok = false;
    if (m != NULL) {
        if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO) {
            ok = true;
        } else {
            CHECK_MSG(m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR &&
                          m->error->code == E(PERMISSION_DENIED),
                      "expected Hello or PERMISSION_DENIED, got kind %d", (int)m->body_case);
            CHECK(dh_wait_closed(c));
        }
        proto_server_free(m);
    }
    dh_close(c);
    free(c);
    return ok;
}

static int count_entries(const char *dir, char *names, size_t cap)
{
    DIR *dp = opendir(dir);
    CHECK_MSG(dp != NULL, "opendir %s", dir);
    int n = 0;
    names[0] = '\0';
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n++;
        if (strlen(names) + strlen(e->d_name) + 2 < cap) {
            strcat(names, e->d_name);
            strcat(names, " ");
        }
    }
    closedir(dp);
    return n;
}

/* Every regular file among the daemon's fds is open read-only; none is `forbidden`. */
static void check_fds(pid_t pid, const char *forbidden)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *dp = opendir(dir);
    CHECK(dp != NULL);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char link[400], target[4096];
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = '\0';
        if (forbidden) CHECK_MSG(strstr(target, forbidden) == NULL, "llamad has %s open", target);
        struct stat sb;
        if (target[0] != '/' || stat(target, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (strcmp(e->d_name, "1") == 0 || strcmp(e->d_name, "2") == 0) continue; /* inherited stdout/stderr */
        char info[400];
        snprintf(info, sizeof info, "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
        size_t len;
        char *fi = tu_read_file(info, &len);
        const char *fl = strstr(fi, "flags:");
        CHECK(fl != NULL);
        unsigned long flags = strtoul(fl + 6, NULL, 8);
        CHECK_MSG((flags & O_ACCMODE) == O_RDONLY, "llamad has %s open for writing (flags %lo)", target, flags);
        free(fi);
        files++;
    }
    closedir(dp);
    (void)files;
}

/* The weights are mapped (read-only, never copied); no file mapping is writable; none is
 * `forbidden`. */
static void check_maps(pid_t pid, const char *forbidden)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    size_t len;
    char *maps = tu_read_file(path, &len);
    char *save = NULL;
    int ggufs = 0;
    for (char *line = strtok_r(maps, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (forbidden) CHECK_MSG(strstr(line, forbidden) == NULL, "llamad mapped %s", line);
        if (strstr(line, ".gguf")) {
            ggufs++;
            char perms[8] = "";
            CHECK(sscanf(line, "%*s %7s", perms) == 1);
            CHECK_MSG(perms[1] != 'w', "a model is mapped writable: %s", line);
        }
    }
    free(maps);
    CHECK_MSG(ggufs >= 1, "llamad has no model file mapped (weights must be used in place)");
}

static void test_socket_and_files(void)
{
    char ro[600], rt[600], sock[700];
    snprintf(ro, sizeof ro, "%s/ro", tu_tmpdir());
    snprintf(rt, sizeof rt, "%s/rt", tu_tmpdir());
    CHECK(mkdir(ro, 0555) == 0 || access(ro, F_OK) == 0);
    CHECK(mkdir(rt, 0700) == 0 || access(rt, F_OK) == 0);
    snprintf(sock, sizeof sock, "%s/llamad.sock", rt);

    /* a group other than ours when there is one (we may be root), else our own */
    struct group *gr = getgrnam("daemon");
    if (gr == NULL || getuid() != 0) gr = getgrgid(getgid());
    CHECK(gr != NULL);
    char gname[128];
    snprintf(gname, sizeof gname, "%s", gr->gr_name);
    gid_t gid = gr->gr_gid;

    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(ro) == 0); /* the daemon inherits this as its working directory */
    dh_daemon d;
    const char *extra[] = {"--socket-group", gname, NULL};
    start(&d, sock, extra);
    CHECK(chdir(cwd) == 0);

    struct stat sb;
    CHECK(stat(sock, &sb) == 0);
    CHECK(S_ISSOCK(sb.st_mode));
    CHECK_MSG((sb.st_mode & 07777) == 0660, "socket mode %o", (unsigned)(sb.st_mode & 07777));
    CHECK((sb.st_mode & S_IWOTH) == 0);
    CHECK_MSG(sb.st_gid == gid, "socket group %u, configured %s (%u)", (unsigned)sb.st_gid, gname, (unsigned)gid);

    /* after some work, still: no new files, everything it holds is read-only */
    dh_conn *c = malloc(sizeof *c);
    CHECK(c != NULL);
    dh_connect(c, sock);
    uint32_t bos[] = {1};
    dh_gen g = {.ids = bos, .n_ids = 1, .max_tokens = 32};
    dh_send_generate(c, 1, &g);
    dh_result r = {.rid = 1};
    dh_collect(c, &r, 1);
    CHECK_EQ_INT(r.error, 0);
    CHECK_EQ_INT(r.n_ids, 32);
    check_fds(d.pid, NULL);
    check_maps(d.pid, NULL);
    char names[1024];
    CHECK_MSG(count_entries(ro, names, sizeof names) == 0, "llamad created files in its working directory: %s",
              names);
    CHECK_MSG(count_entries(rt, names, sizeof names) == 1, "the runtime folder holds more than the socket: %s",
              names);
    dh_close(c);
    free(c);
    CHECK_EQ_INT(dh_stop(&d), 0);
    CHECK_MSG(count_entries(rt, names, sizeof names) == 0, "left behind in the runtime folder: %s", names);
    CHECK(count_entries(ro, names, sizeof names) == 0);
}

/* From a child process running as uid/gid (root only): 0 served, 1 refused with
 * PERMISSION_DENIED or closed, 2 cannot connect at all. */
static int served_as(const char *sock, uid_t uid, gid_t gid)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(3);
        if (dh_try_connect(sock) != 0) _exit(2);
        _exit(served(sock) ? 0 : 1);
    }
    return dh_wait(pid);
}

/* Root and the daemon's own user are always served (they own it anyway); the lists apply to
 * everyone else. As root the test checks them from a child that runs as nobody; otherwise it
 * can only check that its own user is served. */
static void test_allow_lists(void)
{
    char rtdir[600], sock[700], id[64], other[24];
    snprintf(rtdir, sizeof rtdir, "%s/allow", tu_tmpdir());
    CHECK(mkdir(rtdir, 0711) == 0 || access(rtdir, F_OK) == 0);
    CHECK(chmod(tu_tmpdir(), 0711) == 0 || getuid() != 0);
    snprintf(sock, sizeof sock, "%s/allow.sock", rtdir);
    dh_daemon d;
    if (getuid() != 0) {
        snprintf(other, sizeof other, "%u", (unsigned)getuid() + 4242u);
        const char *ex[] = {"--allow-uids", other, NULL};
        start(&d, sock, ex);
        CHECK(served(sock));
        CHECK_EQ_INT(dh_stop(&d), 0);
        printf("e2e_security: not root: refusals by allow-uids/allow-gids are not checked\n");
        return;
    }
    uid_t nob = 65534;
    gid_t nog = 65534;
    struct group *gr = getgrgid(nog); /* socket-group takes a name */
    CHECK_MSG(gr != NULL, "no group %u", (unsigned)nog);
    char nogs[128];
    snprintf(nogs, sizeof nogs, "%s", gr->gr_name);
    char nogid[24];
    snprintf(nogid, sizeof nogid, "%u", (unsigned)nog);

    /* no lists: nobody, in the socket's group, is served; outside the group the mode keeps it out */
    const char *ex0[] = {"--socket-group", nogs, NULL};
    start(&d, sock, ex0);
    CHECK_EQ_INT(served_as(sock, nob, nog), 0);
    CHECK_EQ_INT(served_as(sock, nob, nog + 1), 2);
    CHECK_EQ_INT(dh_stop(&d), 0);

    snprintf(other, sizeof other, "%u", 4242u);
    const char *ex1[] = {"--socket-group", nogs, "--allow-uids", other, NULL};
    start(&d, sock, ex1);
    CHECK_MSG(served_as(sock, nob, nog) == 1, "a uid outside allow-uids was served");
    CHECK(served(sock)); /* root */
    CHECK_EQ_INT(dh_stop(&d), 0);

    snprintf(id, sizeof id, "%s,%u", other, (unsigned)nob);
    const char *ex2[] = {"--socket-group", nogs, "--allow-uids", id, NULL};
    start(&d, sock, ex2);
    CHECK_EQ_INT(served_as(sock, nob, nog), 0);
    CHECK_EQ_INT(dh_stop(&d), 0);

    const char *ex3[] = {"--socket-group", nogs, "--allow-gids", other, NULL};
    start(&d, sock, ex3);
    CHECK_MSG(served_as(sock, nob, nog) == 1, "a gid outside allow-gids was served");
    CHECK_EQ_INT(dh_stop(&d), 0);

    const char *ex4[] = {"--socket-group", nogs, "--allow-gids", nogid, "--allow-uids", other, NULL};
    start(&d, sock, ex4);
    CHECK_EQ_INT(served_as(sock, nob, nog), 0);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

static void test_model_paths(void)
{
    char sock[600];
    snprintf(sock, sizeof sock, "%s/paths.sock", tu_tmpdir());
    const char *other = tu_shared("models/TinyStories-656K-Q8_0.gguf");
    char rel[64];
    snprintf(rel, sizeof rel, "../x.gguf");
    dh_daemon d;
    start(&d, sock, NULL);
    dh_conn *c = malloc(sizeof *c);
    CHECK(c != NULL);
    dh_connect(c, sock);
    const char *names[] = {"/etc/passwd", rel, other, "TinyStories-656K-Q8_0.gguf", "stories260K.gguf",
                           "tiny/../tiny", "tiny\n"};
    uint32_t bos[] = {1};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        dh_gen g = {.model = names[i], .ids = bos, .n_ids = 1, .max_tokens = 4};
        dh_send_generate(c, (uint64_t)(i + 1), &g);
        dh_expect_error(c, (uint64_t)(i + 1), E(UNKNOWN_MODEL));
        /* Tokenize takes a model name too */
        Llamad__V1__ClientMessage cm = LLAMAD__V1__CLIENT_MESSAGE__INIT;
        Llamad__V1__TokenizeRequest tr = LLAMAD__V1__TOKENIZE_REQUEST__INIT;
        tr.model = (char *)names[i];
        tr.text = "hello";
        cm.request_id = (uint64_t)(100 + i);
        cm.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE;
        cm.tokenize = &tr;
        dh_send(c, &cm);
        dh_expect_error(c, (uint64_t)(100 + i), E(UNKNOWN_MODEL));
        check_fds(d.pid, "TinyStories-656K");
        check_fds(d.pid, "passwd");
    }
    check_maps(d.pid, "TinyStories-656K");
    dh_close(c);
    free(c);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 2, "usage: e2e_security LLAMAD");
    llamad = argv[1];
    signal(SIGPIPE, SIG_IGN);
    snprintf(model_arg, sizeof model_arg, "tiny=%s", tu_shared("models/stories260K.gguf"));
    test_socket_and_files();
    test_allow_lists();
    test_model_paths();
    printf("e2e_security: ok\n");
    return 0;
}
