/* Tokenizer throughput: encodes about 1 MiB of English-like text (generated from a fixed word
 * list with a fixed seed, so every run sees the same text) with the Llama 3 vocabulary
 * (byte-level BPE, "llama-bpe") and the Llama 2 vocabulary (SPM), and decodes the result.
 * Prints MB/s and writes the numbers as JSON.
 *
 *   bench_tokenizer [--shared DIR] [--json FILE] [--reps N]
 * DIR defaults to $LLAMAD_SHARED, then ../shared next to the source tree. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "tokenizer.h"

static const char *const words[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on",
    "are", "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or",
    "had", "by", "hot", "word", "but", "what", "some", "we", "can", "out", "other", "were",
    "all", "there", "when", "up", "use", "your", "how", "said", "an", "each", "she", "which",
    "do", "their", "time", "if", "will", "way", "about", "many", "then", "them", "write",
    "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has",
    "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most",
    "people", "my", "over", "know", "water", "than", "call", "first", "who", "may", "down",
    "side", "been", "now", "find", "any", "new", "work", "part", "take", "get", "place",
    "made", "live", "where", "after", "back", "little", "only", "round", "man", "year",
    "came", "show", "every", "good", "me", "give", "our", "under", "name", "very", "through",
    "just", "form", "sentence", "great", "think", "say", "help", "low", "line", "differ",
    "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old", "too", "same",
    "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small", "end",
    "put", "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here",
    "must", "big", "high", "such", "follow", "act", "why", "ask", "men", "change", "went",
    "light", "kind", "off", "need", "house", "picture", "try", "us", "again", "animal",
    "point", "mother", "world", "near", "build", "self", "earth", "father", "tokenization",
    "continuous", "batching", "scheduler", "throughput", "don't", "it's", "we'll",
    "they've", "naïve", "café", "résumé", "2024", "3.14", "100,000", "e-mail", "(see",
    "above)", "\"quoted\"", "well-known",
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static char *make_text(size_t target, size_t *ret_len)
{
    char *t = malloc(target + 64);
    size_t n = 0, nw = sizeof words / sizeof words[0];
    int in_sentence = 0, words_in = 0;
    while (n < target) {
        const char *w = words[next_rand() % nw];
        size_t wl = strlen(w);
        if (in_sentence)
            t[n++] = ' ';
        memcpy(t + n, w, wl);
        if (!in_sentence && t[n] >= 'a' && t[n] <= 'z')
            t[n] = (char)(t[n] - 32);
        n += wl;
        in_sentence = 1;
        words_in++;
        uint32_t r = next_rand() % 100;
        if (words_in > 4 && r < 8) {
            t[n++] = '.';
            if (next_rand() % 6 == 0)
                t[n++] = '\n';
            else
                t[n++] = ' ';
            in_sentence = 0;
            words_in = 0;
        } else if (r < 14) {
            t[n++] = ',';
        }
    }
    t[n] = '\0';
    *ret_len = n;
    return t;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct result {
    const char *name;
    double load_s, encode_mb_s, decode_mb_s;
    size_t n_tokens;
} result;

static int bench_vocab(const char *path, const char *name, const char *text, size_t len, int reps,
                       result *r)
{
    gguf_file *f = NULL;
    eng_error err = {0};
    double t0 = now_s();
    if (gguf_open(path, &f, &err) < 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return -1;
    }
    tok_vocab *v = NULL;
    if (tok_load_from_gguf(f, &v, &err) < 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        gguf_close(f);
        return -1;
    }
    gguf_close(f);
    r->name = name;
    r->load_s = now_s() - t0;
    size_t cap = tok_encode_bound(v, len), n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        t0 = now_s();
        if (tok_encode(v, text, len, TOK_ADD_BOS_NONE, ids, cap, &n) < 0) {
            fprintf(stderr, "encode failed\n");
            return -1;
        }
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    r->n_tokens = n;
    r->encode_mb_s = (double)len / best / 1e6;
    char *out = malloc(len + 16);
    size_t ol;
    best = 1e30;
    for (int i = 0; i < reps; i++) {
        t0 = now_s();
        if (tok_decode(v, ids, n, TOK_DETOK_STRIP_SPACE, out, len + 16, &ol) < 0) {
            fprintf(stderr, "decode failed\n");
            return -1;
        }
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    if (ol != len || memcmp(out, text, len) != 0)
        fprintf(stderr, "%s: warning: decode(encode(text)) differs from the text\n", name);
    r->decode_mb_s = (double)len / best / 1e6;
    printf("%-10s load %.3f s  encode %.2f MB/s (%zu tokens, %.3f s per MB)  decode %.1f MB/s\n",
           name, r->load_s, r->encode_mb_s, n, 1.0 / r->encode_mb_s, r->decode_mb_s);
    free(out);
    free(ids);
    tok_free(v);
    return 0;
}

int main(int argc, char **argv)
{
    const char *shared = getenv("LLAMAD_SHARED");
    const char *json = "bench_tokenizer.json";
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--shared") == 0 && i + 1 < argc)
            shared = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--shared DIR] [--json FILE] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    if (shared == NULL || shared[0] == '\0')
        shared = LLAMAD_DEFAULT_SHARED;
    if (reps < 1)
        reps = 1;
    size_t len;
    char *text = make_text(1u << 20, &len);
    char p1[4096], p2[4096];
    snprintf(p1, sizeof p1, "%s/models/llama.cpp-vocab/llama3-vocab.gguf", shared);
    snprintf(p2, sizeof p2, "%s/models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", shared);
    result r[2];
    if (bench_vocab(p1, "llama3-bpe", text, len, reps, &r[0]) < 0 ||
        bench_vocab(p2, "llama2-spm", text, len, reps, &r[1]) < 0)
        return 1;
    FILE *jf = fopen(json, "w");
    if (jf == NULL) {
        fprintf(stderr, "%s: %s\n", json, strerror(errno));
        return 1;
    }
    fprintf(jf, "{\n  \"bench\": \"tokenizer\",\n  \"text_bytes\": %zu,\n  \"reps\": %d,\n  \"results\": [\n",
            len, reps);
    for (int i = 0; i < 2; i++)
        fprintf(jf,
                "    {\"vocab\": \"%s\", \"load_s\": %.4f, \"encode_mb_s\": %.3f, "
                "\"encode_s_per_mb\": %.4f, \"tokens\": %zu, \"decode_mb_s\": %.2f}%s\n",
                r[i].name, r[i].load_s, r[i].encode_mb_s, 1.0 / r[i].encode_mb_s, r[i].n_tokens,
                r[i].decode_mb_s, i == 0 ? "," : "");
    fprintf(jf, "  ]\n}\n");
    fclose(jf);
    printf("wrote %s\n", json);
    free(text);
    return 0;
}
