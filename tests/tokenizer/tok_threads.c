/* One vocab shared by several threads: concurrent encodes and decodes give the same results
 * as one thread (the vocab is read-only after loading; scratch is per call). */
#include <pthread.h>

#include "tok_common.h"

#define N_THREADS 4
#define ROUNDS 20

static tok_vocab *vocab;
static const char *texts[] = {
    "Hello, y'all! How are you \xf0\x9f\x98\x81 ?\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple\xe5\xb7\xa5\xe4\xbd\x9c" "1314151\xe5\xa4\xa9",
    "   Hello\n\n world 3333 333 \t\t x",
    "<|eot_id|>The quick brown fox jumps over the lazy dog. " "caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9",
};
static int32_t *want[3];
static size_t want_n[3];

static void *worker(void *arg)
{
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < 3; i++) {
            size_t n;
            int32_t *ids = tt_encode(vocab, texts[i], strlen(texts[i]), TOK_ADD_BOS_AUTO | TOK_PARSE_SPECIAL, &n);
            CHECK_IDS(ids, n, want[i], want_n[i], "thread result differs (text %d)", i);
            char out[1024];
            size_t ol;
            CHECK_EQ_INT(tok_decode(vocab, ids, n, 0, out, sizeof out, &ol), 0);
            free(ids);
        }
    }
    return NULL;
}

int main(void)
{
    vocab = tt_load("models/llama.cpp-vocab/llama3-vocab.gguf");
    for (int i = 0; i < 3; i++)
        want[i] = tt_encode(vocab, texts[i], strlen(texts[i]), TOK_ADD_BOS_AUTO | TOK_PARSE_SPECIAL, &want_n[i]);
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        CHECK_EQ_INT(pthread_create(&th[t], NULL, worker, NULL), 0);
    for (int t = 0; t < N_THREADS; t++)
        CHECK_EQ_INT(pthread_join(th[t], NULL), 0);
    for (int i = 0; i < 3; i++)
        free(want[i]);
    tok_free(vocab);
    printf("ok\n");
    return 0;
}
