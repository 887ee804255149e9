/* Read-only file mappings for model weights, with 2 MiB pages where the kernel gives them.
 *
 * The matrix kernels walk every weight once per step; with 4 KiB pages each 2 MiB of weights
 * costs 512 TLB misses, and single-stream decode of a small model ran ~15-20% slower that
 * way (bench/RESULTS.md). madvise(MADV_HUGEPAGE) on a file mapping lets the kernel map its
 * page cache with 2 MiB entries, but only where the cached folios are 2 MiB: the folios are
 * made when the file is read in. A file that was just written (a download, a conversion) or
 * read with read(2) is cached in 4 KiB pages, and stays so until they are evicted.
 * eng_map_file() maps at a 2 MiB boundary and probes one 2 MiB window: when the window is
 * mapped with 4 KiB entries it drops that window's cached pages and reads it again; if it then
 * comes back as a 2 MiB folio (the file system gives large folios), it drops the rest of the
 * file's cached pages that no process maps (POSIX_FADV_DONTNEED; pages not yet written back
 * are flushed first), so that the weights are read back from disk into 2 MiB folios as they
 * are first touched. That re-read happens once: the next start finds the large folios in the
 * cache. If the window stays in 4 KiB pages (tmpfs, a file system without large folios, pages
 * mapped by another process), nothing else is dropped. */
#ifndef LLAMAD_ENGINE_FILEMAP_H
#define LLAMAD_ENGINE_FILEMAP_H

#include <stdbool.h>
#include <stddef.h>

typedef enum eng_map_pages {
    ENG_MAP_PAGES_UNKNOWN = 0, /* not probed: file under 8 MiB, THP off, or no /proc */
    ENG_MAP_PAGES_HUGE,        /* the probe window is mapped with a 2 MiB entry */
    ENG_MAP_PAGES_SMALL,       /* 4 KiB pages (the file system, or the kernel, gives no more) */
} eng_map_pages;

typedef struct eng_map_info {
    eng_map_pages pages;
    bool recached;             /* the file's 4 KiB cached pages were dropped to be read again */
} eng_map_info;

/* Maps size (> 0) bytes of fd read-only and private. Returns the mapping, or NULL with errno
 * set (mmap's). info (may be NULL) tells what the probe found. fd may be closed afterwards. */
void *eng_map_file(int fd, size_t size, eng_map_info *info);

/* "2 MiB pages", "4 KiB pages", or "pages of a size not probed" */
const char *eng_map_pages_name(eng_map_pages p);

#endif
