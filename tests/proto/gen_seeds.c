/* Writes the seed corpus of the fuzz_frame target: a few small frame streams covering every
 * message type, plus an oversize header, a truncated frame and a garbage payload.
 * usage: proto_gen_seeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static uint8_t out[4096];
static size_t out_len;

static void add_client(const Llamad__V1__ClientMessage *m)
{
    size_t len = 0;
    if (proto_client_encode(m, out + out_len, sizeof out - out_len, &len) != 0) {
        fprintf(stderr, "seed too large\n");
        exit(1);
    }
    out_len += len;
}

static void add_server(const Llamad__V1__ServerMessage *m)
{
    size_t len = 0;
    if (proto_server_encode(m, out + out_len, sizeof out - out_len, &len) != 0) {
        fprintf(stderr, "seed too large\n");
        exit(1);
    }
    out_len += len;
}

static void add_raw(const void *p, size_t n)
{
    memcpy(out + out_len, p, n);
    out_len += n;
}

static void flush(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(out, 1, out_len, f) != out_len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    out_len = 0;
}

#define CLIENT(field, CASE, ptr, id)                                                     \
    do {                                                                                 \
        Llamad__V1__ClientMessage m_ = LLAMAD__V1__CLIENT_MESSAGE__INIT;                 \
        m_.request_id = (id);                                                            \
        m_.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_##CASE;                          \
        m_.field = (ptr);                                                                \
        add_client(&m_);                                                                 \
    } while (0)

#define SERVER(field, CASE, ptr, id)                                                     \
    do {                                                                                 \
        Llamad__V1__ServerMessage m_ = LLAMAD__V1__SERVER_MESSAGE__INIT;                 \
        m_.request_id = (id);                                                            \
        m_.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_##CASE;                          \
        m_.field = (ptr);                                                                \
        add_server(&m_);                                                                 \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];

    Llamad__V1__Hello hello = LLAMAD__V1__HELLO__INIT;
    hello.protocol_version = 1;
    hello.client_name = "seed";
    CLIENT(hello, HELLO, &hello, 1);
    flush(dir, "hello");

    static char *stops[] = {"\n\n", "END"};
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    g.model = "stories260K";
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = "Once upon a time";
    g.has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
    g.max_tokens = 32;
    g.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g.temperature = 0.8f;
    g.has_top_k_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_K_TOP_K;
    g.top_k = 40;
    g.has_top_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_P_TOP_P;
    g.top_p = 0.95f;
    g.has_min_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MIN_P_MIN_P;
    g.min_p = 0.05f;
    g.has_repeat_penalty_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_PENALTY_REPEAT_PENALTY;
    g.repeat_penalty = 1.1f;
    g.presence_penalty = 0.5f;
    g.frequency_penalty = 0.25f;
    g.has_repeat_last_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_LAST_N_REPEAT_LAST_N;
    g.repeat_last_n = 64;
    g.has_seed_case = LLAMAD__V1__GENERATE_REQUEST__HAS_SEED_SEED;
    g.seed = 42;
    g.n_stop = 2;
    g.stop = stops;
    g.logprobs = 3;
    g.has_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_N_N;
    g.n = 2;
    CLIENT(generate, GENERATE, &g, 2);
    flush(dir, "generate_text");

    uint32_t ids[] = {1, 450, 29871, 31999};
    Llamad__V1__TokenIds t = LLAMAD__V1__TOKEN_IDS__INIT;
    t.n_ids = 4;
    t.ids = ids;
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
    g.tokens = &t;
    CLIENT(generate, GENERATE, &g, 3);
    Llamad__V1__ChatMessage cm = LLAMAD__V1__CHAT_MESSAGE__INIT;
    cm.role = "user";
    cm.content = "Hi";
    Llamad__V1__ChatMessage *cms[] = {&cm};
    Llamad__V1__ChatPrompt cp = LLAMAD__V1__CHAT_PROMPT__INIT;
    cp.n_messages = 1;
    cp.messages = cms;
    cp.has_add_generation_prompt_case =
        LLAMAD__V1__CHAT_PROMPT__HAS_ADD_GENERATION_PROMPT_ADD_GENERATION_PROMPT;
    cp.add_generation_prompt = 1;
    Llamad__V1__GenerateRequest g2 = LLAMAD__V1__GENERATE_REQUEST__INIT;
    g2.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT;
    g2.chat = &cp;
    CLIENT(generate, GENERATE, &g2, 4);
    flush(dir, "generate_tokens_chat");

    Llamad__V1__CancelRequest cancel = LLAMAD__V1__CANCEL_REQUEST__INIT;
    cancel.target_request_id = 2;
    Llamad__V1__StatusRequest st = LLAMAD__V1__STATUS_REQUEST__INIT;
    Llamad__V1__ListModelsRequest lm = LLAMAD__V1__LIST_MODELS_REQUEST__INIT;
    Llamad__V1__TokenizeRequest tk = LLAMAD__V1__TOKENIZE_REQUEST__INIT;
    tk.text = "Hello world";
    tk.has_add_special_case = LLAMAD__V1__TOKENIZE_REQUEST__HAS_ADD_SPECIAL_ADD_SPECIAL;
    tk.add_special = 1;
    tk.parse_special = 1;
    Llamad__V1__DetokenizeRequest dt = LLAMAD__V1__DETOKENIZE_REQUEST__INIT;
    dt.n_token_ids = 4;
    dt.token_ids = ids;
    CLIENT(cancel, CANCEL, &cancel, 5);
    add_raw("\0\0\0\0", 4); /* zero-length frame */
    CLIENT(status, STATUS, &st, 6);
    CLIENT(list_models, LIST_MODELS, &lm, 7);
    CLIENT(tokenize, TOKENIZE, &tk, 8);
    CLIENT(detokenize, DETOKENIZE, &dt, 9);
    flush(dir, "client_stream");

    Llamad__V1__HelloReply hr = LLAMAD__V1__HELLO_REPLY__INIT;
    hr.protocol_version = 1;
    hr.server_name = "llamad";
    hr.server_version = "0.1.0";
    hr.default_model = "stories260K";
    hr.max_frame_bytes = PROTO_DEFAULT_MAX_FRAME;
    SERVER(hello, HELLO, &hr, 1);
    static uint8_t piece[] = {0xe2, 0x82};
    Llamad__V1__TopLogprob tl = LLAMAD__V1__TOP_LOGPROB__INIT;
    tl.id = 450;
    tl.text = (ProtobufCBinaryData){2, piece};
    tl.logprob = -0.5f;
    Llamad__V1__TopLogprob *tls[] = {&tl};
    Llamad__V1__TokenLogprob lp = LLAMAD__V1__TOKEN_LOGPROB__INIT;
    lp.logprob = -0.5f;
    lp.n_top = 1;
    lp.top = tls;
    Llamad__V1__TokenLogprob *lps[] = {&lp};
    Llamad__V1__TokenChunk tc = LLAMAD__V1__TOKEN_CHUNK__INIT;
    tc.n_token_ids = 1;
    tc.token_ids = ids + 1;
    tc.text = " The";
    tc.n_logprobs = 1;
    tc.logprobs = lps;
    tc.index = 1;
    SERVER(token_chunk, TOKEN_CHUNK, &tc, 2);
    Llamad__V1__GenerateDone gd = LLAMAD__V1__GENERATE_DONE__INIT;
    gd.finish_reason = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP;
    gd.prompt_tokens = 5;
    gd.generated_tokens = 1;
    gd.cached_prompt_tokens = 4;
    gd.queue_us = 10;
    gd.time_to_first_token_us = 100;
    gd.total_us = 1000;
    gd.index = 1;
    gd.seed = 43;
    SERVER(generate_done, GENERATE_DONE, &gd, 2);
    Llamad__V1__Error er = LLAMAD__V1__ERROR__INIT;
    er.code = LLAMAD__V1__ERROR__CODE__UNKNOWN_MODEL;
    er.message = "no model named x";
    SERVER(error, ERROR, &er, 3);
    flush(dir, "server_stream_generate");

    static char *loaded[] = {"stories260K"};
    Llamad__V1__StatusReply sr = LLAMAD__V1__STATUS_REPLY__INIT;
    sr.n_loaded_models = 1;
    sr.loaded_models = loaded;
    sr.default_model = "stories260K";
    sr.queue_depth = 1;
    sr.running_sequences = 2;
    sr.kv_blocks_total = 100;
    sr.kv_blocks_used = 10;
    sr.kv_blocks_cached = 5;
    sr.kv_block_size = 16;
    sr.prefix_cache_hit_rate = 0.5;
    sr.tokens_per_second = 99.5;
    sr.uptime_seconds = 60;
    sr.connections = 2;
    sr.jemalloc_allocated_bytes = 1 << 20;
    sr.jemalloc_resident_bytes = 2 << 20;
    SERVER(status, STATUS, &sr, 4);
    Llamad__V1__ModelInfo mi = LLAMAD__V1__MODEL_INFO__INIT;
    mi.name = "stories260K";
    mi.path = "/m/stories260K.gguf";
    mi.architecture = "llama";
    mi.parameter_count = 260000;
    mi.quantization = "F32";
    mi.context_length = 512;
    mi.vocab_size = 512;
    mi.is_default = 1;
    Llamad__V1__ModelInfo *mis[] = {&mi};
    Llamad__V1__ModelList ml = LLAMAD__V1__MODEL_LIST__INIT;
    ml.n_models = 1;
    ml.models = mis;
    SERVER(model_list, MODEL_LIST, &ml, 5);
    ProtobufCBinaryData pieces[] = {{2, piece}};
    Llamad__V1__TokenizeReply tr = LLAMAD__V1__TOKENIZE_REPLY__INIT;
    tr.n_token_ids = 1;
    tr.token_ids = ids;
    tr.n_pieces = 1;
    tr.pieces = pieces;
    SERVER(tokenize, TOKENIZE, &tr, 6);
    Llamad__V1__DetokenizeReply dr = LLAMAD__V1__DETOKENIZE_REPLY__INIT;
    dr.text = (ProtobufCBinaryData){2, piece};
    SERVER(detokenize, DETOKENIZE, &dr, 7);
    flush(dir, "server_stream_replies");

    /* a header announcing 2 MiB, then a few bytes */
    add_raw("\x00\x00\x20\x00" "abcdef", 10);
    flush(dir, "oversize");
    /* a frame announcing 100 bytes, cut after 10 */
    add_raw("\x64\x00\x00\x00" "\x08\x01\x5a\x10" "abcdef", 14);
    flush(dir, "truncated");
    /* framing fine, protobuf not */
    add_raw("\x05\x00\x00\x00" "\x5a\x10\xff\x0f\x00", 9);
    flush(dir, "garbage");
    return 0;
}
