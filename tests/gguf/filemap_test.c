/* eng_map_file (engine/filemap.c): the mapping holds the file's bytes whatever the probe did
 * (drop the cache, map again), large files are mapped at a 2 MiB boundary, and what it reports
 * agrees with the kernel's own account (/proc/self/smaps_rollup) and with a second mapping. */
#include "filemap.h"
#include "gguf.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

static uint32_t word_at(size_t i) { return (uint32_t)(i * 2654435761u) ^ 0x5bd1e995u; }

/* a file of size bytes (a multiple of 4) with a known pattern, written with write(2) so that
 * it is cached in 4 KiB pages; flushed or left dirty (as a download that just finished) */
static void write_pattern(const char *path, size_t size, bool flush)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    uint32_t buf[16384];
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        for (size_t i = 0; i < n / 4; i++) buf[i] = word_at(done / 4 + i);
        CHECK(write(fd, buf, n) == (ssize_t)n);
        done += n;
    }
    if (flush) CHECK(fsync(fd) == 0);
    close(fd);
}

static bool pattern_ok(const uint8_t *map, size_t size)
{
    const uint32_t *w = (const uint32_t *)map;
    for (size_t i = 0; i < size / 4; i++)
        if (w[i] != word_at(i)) return false;
    return true;
}

static bool thp_allowed(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char line[128];
    bool ok = fgets(line, sizeof line, f) && !strstr(line, "[never]");
    fclose(f);
    return ok;
}

static long pmd_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    CHECK(f != NULL);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "FilePmdMapped: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void *map_path(const char *path, size_t size, eng_map_info *mi)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    void *map = eng_map_file(fd, size, mi);
    close(fd);
    CHECK_MSG(map != NULL, "eng_map_file: %s", strerror(errno));
    return map;
}

/* a 24 MiB file just written (its pages not yet written back) */
static void test_large_file(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/filemap-large.bin", tu_tmpdir());
    const size_t size = 24 * MIB + 4096 + 12; /* not a whole number of pages */
    write_pattern(path, size, false);

    eng_map_info a;
    const long pmd0 = pmd_kb();
    uint8_t *map = map_path(path, size, &a);
    CHECK_MSG(((uintptr_t)map & (2 * MIB - 1)) == 0, "large file mapped at %p", (void *)map);
    CHECK(pattern_ok(map, size));
    if (thp_allowed()) CHECK(a.pages != ENG_MAP_PAGES_UNKNOWN);
    /* reported 2 MiB pages: the kernel maps (at least) the whole file's 2 MiB-aligned part
     * with 2 MiB entries now that every page was touched */
    const long pmd1 = pmd_kb();
    if (a.pages == ENG_MAP_PAGES_HUGE)
        CHECK_MSG(pmd1 - pmd0 >= (long)(22 * MIB / 1024), "FilePmdMapped grew by %ld kB", pmd1 - pmd0);
    if (a.recached) CHECK(a.pages == ENG_MAP_PAGES_HUGE);
    CHECK(munmap(map, size) == 0);

    /* a second mapping finds what the first left: large folios are not dropped again */
    eng_map_info b;
    map = map_path(path, size, &b);
    CHECK(pattern_ok(map, size));
    CHECK_EQ_INT(b.pages, a.pages);
    CHECK(!b.recached);
    CHECK(munmap(map, size) == 0);
    if (a.pages == ENG_MAP_PAGES_SMALL) {
        /* "4 KiB pages" must mean the kernel gives no more for this file even when it is read
         * in afresh, not that a 4 KiB-cached file was left as it was */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0 && fsync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
        close(fd);
        map = map_path(path, size, &b);
        CHECK_EQ_INT(b.pages, ENG_MAP_PAGES_SMALL);
        CHECK(munmap(map, size) == 0);
    }
    unlink(path);
    printf("filemap: 24 MiB file in %s%s\n", eng_map_pages_name(a.pages),
           a.recached ? " after dropping its 4 KiB cached pages" : "");
}

static void test_small_file(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/filemap-small.bin", tu_tmpdir());
    const size_t size = 3 * MIB + 8;
    write_pattern(path, size, true);
    eng_map_info mi = {ENG_MAP_PAGES_HUGE, true};
    uint8_t *map = map_path(path, size, &mi);
    CHECK(pattern_ok(map, size));
    CHECK_EQ_INT(mi.pages, ENG_MAP_PAGES_UNKNOWN);
    CHECK(!mi.recached);
    CHECK(munmap(map, size) == 0);
    /* info may be NULL */
    map = map_path(path, size, NULL);
    CHECK(pattern_ok(map, size));
    CHECK(munmap(map, size) == 0);
    unlink(path);
}

static void test_errors(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/filemap-err.bin", tu_tmpdir());
    write_pattern(path, 16 * MIB, true);
    int fd = open(path, O_WRONLY | O_CLOEXEC); /* not readable: mmap fails with EACCES */
    CHECK(fd >= 0);
    eng_map_info mi;
    errno = 0;
    CHECK(eng_map_file(fd, 16 * MIB, &mi) == NULL && errno == EACCES);
    CHECK(eng_map_file(fd, 4096, &mi) == NULL && errno == EACCES);
    close(fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(eng_map_file(fd, 0, &mi) == NULL && errno == EINVAL);
    close(fd);
    unlink(path);
}

static void test_gguf_reports(void)
{
    gguf_file *f = NULL;
    CHECK(gguf_open(tu_shared("models/TinyStories-656K-Q8_0.gguf"), &f, NULL) == 0);
    CHECK_EQ_INT(gguf_map_info(f).pages, ENG_MAP_PAGES_UNKNOWN); /* under 8 MiB: not probed */
    gguf_close(f);
    CHECK(strcmp(eng_map_pages_name(ENG_MAP_PAGES_HUGE), "2 MiB pages") == 0);
    CHECK(strcmp(eng_map_pages_name(ENG_MAP_PAGES_SMALL), "4 KiB pages") == 0);
}

int main(void)
{
    test_large_file();
    test_small_file();
    test_errors();
    test_gguf_reports();
    puts("filemap: ok");
    return 0;
}
