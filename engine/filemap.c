/* Read-only file mappings with 2 MiB pages: see filemap.h. */
#include "filemap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_SZ ((size_t)2 << 20)   /* x86-64 and arm64 (4 KiB granule) PMD size */
#define PROBE_MIN (4 * HUGE_SZ)     /* smaller files are not worth a probe */

const char *eng_map_pages_name(eng_map_pages p)
{
    switch (p) {
    case ENG_MAP_PAGES_HUGE: return "2 MiB pages";
    case ENG_MAP_PAGES_SMALL: return "4 KiB pages";
    default: return "pages of a size not probed";
    }
}

/* transparent huge pages not switched off ("[never]") */
static bool thp_allowed(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f) return false;
    char line[128];
    bool ok = fgets(line, sizeof line, f) != NULL && strstr(line, "[never]") == NULL;
    fclose(f);
    return ok;
}

/* kB of file pages this process maps with 2 MiB entries, or -1 */
static long pmd_mapped_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "re");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "FilePmdMapped: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* size bytes of fd at an address aligned to HUGE_SZ (file offset 0 and the address must agree
 * modulo 2 MiB for a 2 MiB entry): a reservation one huge page larger, the file mapped over it
 * at the first aligned address, the rest given back. NULL with errno on failure. */
static void *map_aligned(int fd, size_t size)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - 2 * HUGE_SZ) {
        errno = ENOMEM;
        return NULL;
    }
    const size_t span = (size + page - 1) / page * page;
    uint8_t *res = mmap(NULL, span + HUGE_SZ, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (res == MAP_FAILED) return NULL;
    uint8_t *at = (uint8_t *)(((uintptr_t)res + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    void *map = mmap(at, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        munmap(res, span + HUGE_SZ);
        errno = e;
        return NULL;
    }
    if (at > res) munmap(res, (size_t)(at - res));
    uint8_t *end = at + span, *res_end = res + span + HUGE_SZ;
    if (res_end > end) munmap(end, (size_t)(res_end - end));
    (void)madvise(map, size, MADV_HUGEPAGE); /* advice: the kernel may not support it */
    return map;
}

/* Touches the 2 MiB window at offset off of the mapping and tells whether that mapped it with a
 * 2 MiB entry. */
static eng_map_pages probe(const uint8_t *map, size_t off)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const long before = pmd_mapped_kb();
    if (before < 0) return ENG_MAP_PAGES_UNKNOWN;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < HUGE_SZ; i += page) sink ^= map[off + i];
    (void)sink;
    const long after = pmd_mapped_kb();
    if (after < 0) return ENG_MAP_PAGES_UNKNOWN;
    return after - before >= (long)(HUGE_SZ / 1024) ? ENG_MAP_PAGES_HUGE : ENG_MAP_PAGES_SMALL;
}

void *eng_map_file(int fd, size_t size, eng_map_info *info)
{
    eng_map_info tmp;
    if (!info) info = &tmp;
    *info = (eng_map_info){ENG_MAP_PAGES_UNKNOWN, false};
    if (size == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (size < PROBE_MIN || !thp_allowed()) {
        void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        return map == MAP_FAILED ? NULL : map;
    }
    uint8_t *map = map_aligned(fd, size);
    if (!map) return NULL;
    /* the probe window: the first whole 2 MiB from the middle of the file (weights) */
    const size_t off = (size / 2 + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
    if (off + HUGE_SZ > size) return map;
    info->pages = probe(map, off);
    if (info->pages != ENG_MAP_PAGES_SMALL) return map;
    /* 4 KiB pages: either the file is cached in 4 KiB folios, or the file system gives no
     * larger ones. Find out on the window alone: unmap it here, drop its cached pages (those
     * no other process maps) and read it again. */
    if (madvise(map + off, HUGE_SZ, MADV_DONTNEED) != 0) return map;
    /* pages not yet written back cannot be dropped: a file written moments ago (a download)
     * is flushed first */
    (void)sync_file_range(fd, (off_t)off, (off_t)HUGE_SZ,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    (void)posix_fadvise(fd, (off_t)off, (off_t)HUGE_SZ, POSIX_FADV_DONTNEED);
    info->pages = probe(map, off);
    if (info->pages != ENG_MAP_PAGES_HUGE) return map;
    /* large folios now: drop the rest of the file's 4 KiB cached pages the same way (nothing
     * else of this mapping has been touched); they are read again, as 2 MiB folios, when the
     * weights are first used */
    (void)fdatasync(fd);
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    info->recached = true;
    return map;
}
