/* A main() for the fuzz targets outside libFuzzer (meson -Dfuzz_engine=afl): AFL++ with
 * afl-clang-fast as CC, or any compiler to get a plain reproducer binary.
 *   target FILE...   runs each file once (a reproducer, or afl-fuzz's @@)
 *   target           reads one input from stdin (afl-fuzz without @@); built by afl-clang-fast
 *                    it runs in AFL++'s persistent mode with shared-memory test cases
 * LLVMFuzzerInitialize runs first when the target defines it. Arguments that start with '-'
 * (libFuzzer flags) are ignored. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define MAX_INPUT (1u << 20)

static size_t read_all(FILE *f, uint8_t *buf, size_t cap)
{
    size_t n = 0, r;
    while (n < cap && (r = fread(buf + n, 1, cap - n, f)) > 0) n += r;
    return n;
}

#ifdef __AFL_FUZZ_TESTCASE_LEN
__AFL_FUZZ_INIT();
#endif

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    static uint8_t buf[MAX_INPUT];
    int files = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            fprintf(stderr, "%s: cannot open %s\n", argv[0], argv[i]);
            return 2;
        }
        size_t n = read_all(f, buf, sizeof buf);
        fclose(f);
        /* a copy of exactly n bytes, so that ASan sees reads past the end */
        uint8_t *copy = malloc(n ? n : 1);
        if (copy == NULL) return 2;
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
        files++;
    }
    if (files > 0) {
        fprintf(stderr, "%s: ran %d input(s)\n", argv[0], files);
        return 0;
    }
#ifdef __AFL_FUZZ_TESTCASE_LEN
    __AFL_INIT();
    const uint8_t *shm = __AFL_FUZZ_TESTCASE_BUF;
    while (__AFL_LOOP(10000)) {
        size_t n = (size_t)__AFL_FUZZ_TESTCASE_LEN;
        uint8_t *copy = malloc(n ? n : 1);
        if (copy == NULL) return 2;
        memcpy(copy, shm, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
    }
#else
    size_t n = read_all(stdin, buf, sizeof buf);
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL) return 2;
    memcpy(copy, buf, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
#endif
    return 0;
}
