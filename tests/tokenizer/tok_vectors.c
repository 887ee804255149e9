/* llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf.inp/.out): every case must
 * match exactly, for SPM (llama-spm), Llama 3 (llama-bpe, with llama3-vocab.gguf), GPT-2,
 * deepseek-llm and deepseek-coder. Also the llama2.c encode cases, the greedy vectors'
 * prompt ids and the TinyStories-656K prompt. */
#include "tok_common.h"

#define SEP "\n__ggml_vocab_test__\n"

static int run_vocab_file(const char *gguf_rel, const char *name)
{
    char inp_rel[256], out_rel[256];
    snprintf(inp_rel, sizeof inp_rel, "models/llama.cpp-vocab/ggml-vocab-%s.gguf.inp", name);
    snprintf(out_rel, sizeof out_rel, "models/llama.cpp-vocab/ggml-vocab-%s.gguf.out", name);
    tok_vocab *v = tt_load(gguf_rel);
    size_t inp_len, out_len;
    char *inp = tu_read_file(tu_shared(inp_rel), &inp_len);
    char *outs = tu_read_file(tu_shared(out_rel), &out_len);
    char *ip = inp, *op = outs;
    int cases = 0, failed = 0;
    for (;;) {
        char *sep = strstr(ip, SEP);
        if (sep == NULL)
            break;
        char *nl = strchr(op, '\n');
        CHECK_MSG(nl != NULL, "%s: .out has fewer lines than .inp", name);
        *nl = '\0';
        int32_t want[1024];
        size_t nw = 0;
        for (char *t = strtok(op, " "); t; t = strtok(NULL, " "))
            want[nw++] = (int32_t)strtol(t, NULL, 10);
        size_t n;
        int32_t *ids = tt_encode(v, ip, (size_t)(sep - ip), TOK_ADD_BOS_NONE, &n);
        int ok = n == nw;
        for (size_t k = 0; ok && k < n; k++)
            ok = ids[k] == want[k];
        if (!ok) {
            fprintf(stderr, "%s case %d: '%.*s'\n", name, cases, (int)(sep - ip), ip);
            tt_print_ids("  got ", ids, n);
            tt_print_ids("  want", want, nw);
            failed++;
        }
        free(ids);
        cases++;
        ip = sep + strlen(SEP);
        op = nl + 1;
    }
    fprintf(stderr, "%s: %d cases, %d failed\n", name, cases, failed);
    CHECK_EQ_INT(cases, 46);
    free(inp);
    free(outs);
    tok_free(v);
    return failed;
}

static void test_llama2c_json(void)
{
    tok_vocab *v = tt_load("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    json_t *j = tu_load_json("testvectors/llama2_tokenizer_encode.json");
    json_t *cases = json_object_get(j, "cases");
    CHECK(json_array_size(cases) == 5);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *ids_j = json_object_get(c, "ids");
        int32_t want[256];
        size_t nw = json_array_size(ids_j);
        for (size_t k = 0; k < nw; k++)
            want[k] = (int32_t)json_integer_value(json_array_get(ids_j, k));
        size_t n;
        int32_t *ids = tt_encode(v, text, strlen(text), TOK_ADD_BOS_FORCE, &n);
        CHECK_IDS(ids, n, want, nw, "llama2.c case %zu", i);
        free(ids);
    }
    json_decref(j);
    tok_free(v);
}

static void test_greedy_prompts(const char *json_rel, const char *model_rel)
{
    tok_vocab *v = tt_load(model_rel);
    json_t *j = tu_load_json(json_rel);
    json_t *cases = json_object_get(j, "cases");
    CHECK(json_array_size(cases) == 7);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "prompt_text"));
        json_t *ids_j = json_object_get(c, "prompt_ids");
        int32_t want[256];
        size_t nw = json_array_size(ids_j);
        for (size_t k = 0; k < nw; k++)
            want[k] = (int32_t)json_integer_value(json_array_get(ids_j, k));
        size_t n;
        int32_t *ids = tt_encode(v, text, strlen(text), TOK_ADD_BOS_AUTO, &n);
        CHECK_IDS(ids, n, want, nw, "%s case %zu ('%s')", json_rel, i, text);
        free(ids);
    }
    json_decref(j);
    tok_free(v);
}

static void test_tinystories_once(void)
{
    tok_vocab *v = tt_load("models/TinyStories-656K-Q8_0.gguf");
    size_t n;
    int32_t *ids = tt_encode(v, "Once upon a time", 16, TOK_ADD_BOS_AUTO, &n);
    const int32_t want[] = {1, 80, 147, 201, 282, 57};
    CHECK_IDS(ids, n, want, 6, "TinyStories-656K 'Once upon a time'");
    free(ids);
    tok_free(v);
}

int main(void)
{
    int failed = 0;
    failed += run_vocab_file("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", "llama-spm");
    failed += run_vocab_file("models/llama.cpp-vocab/llama3-vocab.gguf", "llama-bpe");
    failed += run_vocab_file("models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf", "gpt-2");
    failed += run_vocab_file("models/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf", "deepseek-llm");
    failed += run_vocab_file("models/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf", "deepseek-coder");
    CHECK_MSG(failed == 0, "%d llama.cpp vocab cases failed", failed);
    test_llama2c_json();
    test_greedy_prompts("testvectors/greedy/greedy_stories260K.json", "models/stories260K.gguf");
    test_greedy_prompts("testvectors/greedy/greedy_TinyStories-656K-Q8_0.json",
                        "models/TinyStories-656K-Q8_0.gguf");
    test_tinystories_once();
    printf("ok\n");
    return 0;
}
