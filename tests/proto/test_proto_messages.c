/* Round trips of every llamad.proto message type through the frame codec: each field set to a
 * value that is not its default, encoded into a frame, decoded, unpacked and compared. At the
 * end every field of every message reachable from ClientMessage / ServerMessage must have
 * been set in some round trip. Also: presence of `optional` fields, enum values, and the
 * encoder's buffer checks. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"
#include "msgcheck.h"
#include "testutil.h"

/* Encodes a whole frame; checks the exact size, -ENOBUFS one byte short, and the header. */
static uint8_t *encode_client(const Llamad__V1__ClientMessage *m, size_t *ret_len)
{
    size_t size = proto_client_frame_size(m);
    size_t payload = protobuf_c_message_get_packed_size(&m->base);
    CHECK_EQ_INT(size, payload + PROTO_FRAME_HEADER);
    uint8_t *buf = malloc(size);
    CHECK(buf);
    memset(buf, 0xAA, size);
    size_t len = 12345;
    CHECK_EQ_INT(proto_client_encode(m, buf, size - 1, &len), -ENOBUFS);
    CHECK_EQ_INT(len, 12345);
    for (size_t i = 0; i < size; i++)
        CHECK_MSG(buf[i] == 0xAA, "encoder wrote byte %zu into a buffer that was too small", i);
    CHECK_EQ_INT(proto_client_encode(m, buf, size, &len), 0);
    CHECK_EQ_INT(len, size);
    uint32_t hdr = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
                   (uint32_t)buf[3] << 24;
    CHECK_EQ_INT(hdr, payload);
    *ret_len = len;
    return buf;
}

static uint8_t *encode_server(const Llamad__V1__ServerMessage *m, size_t *ret_len)
{
    size_t size = proto_server_frame_size(m);
    size_t payload = protobuf_c_message_get_packed_size(&m->base);
    CHECK_EQ_INT(size, payload + PROTO_FRAME_HEADER);
    uint8_t *buf = malloc(size);
    CHECK(buf);
    memset(buf, 0xAA, size);
    size_t len = 12345;
    CHECK_EQ_INT(proto_server_encode(m, buf, size - 1, &len), -ENOBUFS);
    CHECK_EQ_INT(len, 12345);
    CHECK_EQ_INT(proto_server_encode(m, buf, size, &len), 0);
    CHECK_EQ_INT(len, size);
    uint32_t hdr = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
                   (uint32_t)buf[3] << 24;
    CHECK_EQ_INT(hdr, payload);
    *ret_len = len;
    return buf;
}

/* Feeds one encoded frame to a fresh decoder: exactly one frame, all bytes used. */
static proto_frame decode_one(proto_decoder *d, const uint8_t *buf, size_t len)
{
    proto_decoder_init(d, 0);
    size_t used = 0;
    proto_frame fr = {0};
    CHECK_EQ_INT(proto_decoder_feed(d, buf, len, &used, &fr), 1);
    CHECK_EQ_INT(used, len);
    CHECK_EQ_INT(fr.len, len - PROTO_FRAME_HEADER);
    CHECK(memcmp(fr.data, buf + PROTO_FRAME_HEADER, fr.len) == 0);
    CHECK_EQ_INT(proto_decoder_finish(d), 0);
    return fr;
}

/* Round trip; returns the decoded message (caller frees). all_set: every field must be set. */
static Llamad__V1__ClientMessage *rt_client(const Llamad__V1__ClientMessage *m, bool all_set)
{
    if (all_set)
        mc_check_all_set(&m->base);
    size_t len;
    uint8_t *buf = encode_client(m, &len);
    proto_decoder d;
    proto_frame fr = decode_one(&d, buf, len);
    Llamad__V1__ClientMessage *out = NULL;
    CHECK_EQ_INT(proto_client_unpack(fr.data, fr.len, &out), 0);
    CHECK(out);
    CHECK_MSG(mc_equal(&m->base, &out->base), "client message changed in a round trip");
    proto_decoder_free(&d);
    free(buf);
    return out;
}

static Llamad__V1__ServerMessage *rt_server(const Llamad__V1__ServerMessage *m, bool all_set)
{
    if (all_set)
        mc_check_all_set(&m->base);
    size_t len;
    uint8_t *buf = encode_server(m, &len);
    proto_decoder d;
    proto_frame fr = decode_one(&d, buf, len);
    Llamad__V1__ServerMessage *out = NULL;
    CHECK_EQ_INT(proto_server_unpack(fr.data, fr.len, &out), 0);
    CHECK(out);
    CHECK_MSG(mc_equal(&m->base, &out->base), "server message changed in a round trip");
    proto_decoder_free(&d);
    free(buf);
    return out;
}

/* ---- client messages ----------------------------------------------------------------- */

static void test_hello(void)
{
    Llamad__V1__Hello h = LLAMAD__V1__HELLO__INIT;
    h.protocol_version = PROTO_VERSION;
    h.client_name = "llamactl/0.1.0 (test)";
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 1;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &h;
    Llamad__V1__ClientMessage *o = rt_client(&m, true);
    CHECK_EQ_INT(o->request_id, 1);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO);
    CHECK_EQ_INT(o->hello->protocol_version, 1);
    CHECK(strcmp(o->hello->client_name, "llamactl/0.1.0 (test)") == 0);
    proto_client_free(o);
}

/* A GenerateRequest with every sampling and output field set. */
static void set_all_sampling(Llamad__V1__GenerateRequest *g)
{
    static char *stops[] = {"\n\n", "The End", "\xe2\x80\x9c"};
    g->model = "stories260K";
    g->has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
    g->max_tokens = 77;
    g->has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g->temperature = 0.7f;
    g->has_top_k_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_K_TOP_K;
    g->top_k = 13;
    g->has_top_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_P_TOP_P;
    g->top_p = 0.9f;
    g->has_min_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MIN_P_MIN_P;
    g->min_p = 0.125f;
    g->has_repeat_penalty_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_PENALTY_REPEAT_PENALTY;
    g->repeat_penalty = 1.1f;
    g->presence_penalty = -0.5f;
    g->frequency_penalty = 1.75f;
    g->has_repeat_last_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_LAST_N_REPEAT_LAST_N;
    g->repeat_last_n = -1;
    g->has_seed_case = LLAMAD__V1__GENERATE_REQUEST__HAS_SEED_SEED;
    g->seed = UINT64_C(0xFEDCBA9876543210);
    g->n_stop = 3;
    g->stop = stops;
    g->logprobs = 5;
    g->has_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_N_N;
    g->n = 4;
}

static void check_all_sampling(const Llamad__V1__GenerateRequest *g)
{
    CHECK(strcmp(g->model, "stories260K") == 0);
    CHECK(g->has_max_tokens_case && g->max_tokens == 77);
    CHECK(g->has_temperature_case && g->temperature == 0.7f);
    CHECK(g->has_top_k_case && g->top_k == 13);
    CHECK(g->has_top_p_case && g->top_p == 0.9f);
    CHECK(g->has_min_p_case && g->min_p == 0.125f);
    CHECK(g->has_repeat_penalty_case && g->repeat_penalty == 1.1f);
    CHECK(g->presence_penalty == -0.5f && g->frequency_penalty == 1.75f);
    CHECK(g->has_repeat_last_n_case && g->repeat_last_n == -1);
    CHECK(g->has_seed_case && g->seed == UINT64_C(0xFEDCBA9876543210));
    CHECK_EQ_INT(g->n_stop, 3);
    CHECK(strcmp(g->stop[0], "\n\n") == 0 && strcmp(g->stop[1], "The End") == 0 &&
          strcmp(g->stop[2], "\xe2\x80\x9c") == 0);
    CHECK_EQ_INT(g->logprobs, 5);
    CHECK(g->has_n_case && g->n == 4);
}

static void test_generate_text(void)
{
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    set_all_sampling(&g);
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = "Once upon a time, \xc3\xa9t\xc3\xa9 \xf0\x9f\x90\x89";
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = UINT64_MAX;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    Llamad__V1__ClientMessage *o = rt_client(&m, true);
    CHECK(o->request_id == UINT64_MAX);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    CHECK_EQ_INT(o->generate->prompt_case, LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT);
    CHECK(strcmp(o->generate->text, g.text) == 0);
    check_all_sampling(o->generate);
    proto_client_free(o);
}

static void test_generate_tokens(void)
{
    uint32_t ids[] = {1, 0x7f, 0x80, 31999, 128255, UINT32_MAX};
    Llamad__V1__TokenIds t = LLAMAD__V1__TOKEN_IDS__INIT;
    t.n_ids = 6;
    t.ids = ids;
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    set_all_sampling(&g);
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
    g.tokens = &t;
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 42;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    Llamad__V1__ClientMessage *o = rt_client(&m, true);
    CHECK_EQ_INT(o->generate->prompt_case, LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS);
    CHECK_EQ_INT(o->generate->tokens->n_ids, 6);
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(o->generate->tokens->ids[i], ids[i]);
    check_all_sampling(o->generate);
    proto_client_free(o);
}

static void test_generate_chat(void)
{
    Llamad__V1__ChatMessage sys = LLAMAD__V1__CHAT_MESSAGE__INIT;
    sys.role = "system";
    sys.content = "You are terse.";
    Llamad__V1__ChatMessage usr = LLAMAD__V1__CHAT_MESSAGE__INIT;
    usr.role = "user";
    usr.content = "Tell me a story.";
    Llamad__V1__ChatMessage *msgs[] = {&sys, &usr};
    Llamad__V1__ChatPrompt c = LLAMAD__V1__CHAT_PROMPT__INIT;
    c.n_messages = 2;
    c.messages = msgs;
    /* false, given explicitly (absent means true) */
    c.has_add_generation_prompt_case =
        LLAMAD__V1__CHAT_PROMPT__HAS_ADD_GENERATION_PROMPT_ADD_GENERATION_PROMPT;
    c.add_generation_prompt = 0;
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    set_all_sampling(&g);
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT;
    g.chat = &c;
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 7;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    Llamad__V1__ClientMessage *o = rt_client(&m, true);
    const Llamad__V1__ChatPrompt *oc = o->generate->chat;
    CHECK_EQ_INT(o->generate->prompt_case, LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT);
    CHECK_EQ_INT(oc->n_messages, 2);
    CHECK(strcmp(oc->messages[1]->role, "user") == 0);
    CHECK(strcmp(oc->messages[1]->content, "Tell me a story.") == 0);
    CHECK(oc->has_add_generation_prompt_case && !oc->add_generation_prompt);
    check_all_sampling(o->generate);
    proto_client_free(o);
}

/* `optional` fields: absent stays absent; present with the zero value stays present. */
static void test_generate_presence(void)
{
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = "hi";
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 3;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    Llamad__V1__ClientMessage *o = rt_client(&m, false);
    const Llamad__V1__GenerateRequest *og = o->generate;
    CHECK(!og->has_max_tokens_case && !og->has_temperature_case && !og->has_top_k_case &&
          !og->has_top_p_case && !og->has_min_p_case && !og->has_repeat_penalty_case &&
          !og->has_repeat_last_n_case && !og->has_seed_case && !og->has_n_case);
    CHECK(og->model && og->model[0] == '\0');
    CHECK_EQ_INT(og->n_stop, 0);
    proto_client_free(o);

    /* temperature 0 (greedy), seed 0, top_k 0, max_tokens 0: given, so present */
    g.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g.temperature = 0.0f;
    g.has_seed_case = LLAMAD__V1__GENERATE_REQUEST__HAS_SEED_SEED;
    g.seed = 0;
    g.has_top_k_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_K_TOP_K;
    g.top_k = 0;
    g.has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
    g.max_tokens = 0;
    o = rt_client(&m, false);
    og = o->generate;
    CHECK(og->has_temperature_case == LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE);
    CHECK(og->temperature == 0.0f && !signbit(og->temperature));
    CHECK(og->has_seed_case && og->seed == 0);
    CHECK(og->has_top_k_case && og->top_k == 0);
    CHECK(og->has_max_tokens_case && og->max_tokens == 0);
    CHECK(!og->has_top_p_case && !og->has_n_case);
    proto_client_free(o);
}

static void test_cancel_status_list(void)
{
    Llamad__V1__CancelRequest c = LLAMAD__V1__CANCEL_REQUEST__INIT;
    c.target_request_id = UINT64_C(1) << 40;
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 99;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL;
    m.cancel = &c;
    Llamad__V1__ClientMessage *o = rt_client(&m, true);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL);
    CHECK(o->cancel->target_request_id == UINT64_C(1) << 40);
    proto_client_free(o);

    Llamad__V1__StatusRequest s = LLAMAD__V1__STATUS_REQUEST__INIT;
    m = (Llamad__V1__ClientMessage)LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 100;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS;
    m.status = &s;
    o = rt_client(&m, true);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS);
    CHECK(o->status != NULL && o->request_id == 100);
    proto_client_free(o);

    Llamad__V1__ListModelsRequest l = LLAMAD__V1__LIST_MODELS_REQUEST__INIT;
    m = (Llamad__V1__ClientMessage)LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 101;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS;
    m.list_models = &l;
    o = rt_client(&m, true);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS);
    CHECK(o->list_models != NULL);
    proto_client_free(o);
}

static void test_tokenize_detokenize(void)
{
    Llamad__V1__TokenizeRequest t = LLAMAD__V1__TOKENIZE_REQUEST__INIT;
    t.model = "TinyStories-656K";
    t.text = "<s>Hello world";
    t.has_add_special_case = LLAMAD__V1__TOKENIZE_REQUEST__HAS_ADD_SPECIAL_ADD_SPECIAL;
    t.add_special = 0;
    t.parse_special = 1;
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 5;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE;
    m.tokenize = &t;
    Llamad__V1__ClientMessage *o = rt_client(&m, true);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE);
    CHECK(strcmp(o->tokenize->model, "TinyStories-656K") == 0);
    CHECK(strcmp(o->tokenize->text, "<s>Hello world") == 0);
    CHECK(o->tokenize->has_add_special_case && !o->tokenize->add_special);
    CHECK(o->tokenize->parse_special);
    proto_client_free(o);

    uint32_t ids[] = {1, 15043, 3186, 2};
    Llamad__V1__DetokenizeRequest dt = LLAMAD__V1__DETOKENIZE_REQUEST__INIT;
    dt.model = "m";
    dt.n_token_ids = 4;
    dt.token_ids = ids;
    m = (Llamad__V1__ClientMessage)LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 6;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_DETOKENIZE;
    m.detokenize = &dt;
    o = rt_client(&m, true);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY_DETOKENIZE);
    CHECK_EQ_INT(o->detokenize->n_token_ids, 4);
    CHECK_EQ_INT(o->detokenize->token_ids[1], 15043);
    proto_client_free(o);
}

/* ---- server messages ------------------------------------------------------------------ */

static void test_hello_reply(void)
{
    Llamad__V1__HelloReply h = LLAMAD__V1__HELLO_REPLY__INIT;
    h.protocol_version = 1;
    h.server_name = "llamad";
    h.server_version = "0.1.0";
    h.default_model = "stories260K";
    h.max_frame_bytes = PROTO_DEFAULT_MAX_FRAME;
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 1;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO;
    m.hello = &h;
    Llamad__V1__ServerMessage *o = rt_server(&m, true);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO);
    CHECK(strcmp(o->hello->server_name, "llamad") == 0);
    CHECK(strcmp(o->hello->server_version, "0.1.0") == 0);
    CHECK(strcmp(o->hello->default_model, "stories260K") == 0);
    CHECK_EQ_INT(o->hello->max_frame_bytes, 1u << 20);
    proto_server_free(o);
}

static void test_token_chunk(void)
{
    /* pieces as raw bytes: a lone UTF-8 lead byte and an embedded NUL must survive */
    static uint8_t piece_a[] = {0xe2, 0x82};
    static uint8_t piece_b[] = {'a', 0, 'b'};
    Llamad__V1__TopLogprob t0 = LLAMAD__V1__TOP_LOGPROB__INIT;
    t0.id = 450;
    t0.text = (ProtobufCBinaryData){sizeof piece_a, piece_a};
    t0.logprob = -0.25f;
    Llamad__V1__TopLogprob t1 = LLAMAD__V1__TOP_LOGPROB__INIT;
    t1.id = 7;
    t1.text = (ProtobufCBinaryData){sizeof piece_b, piece_b};
    t1.logprob = -3.5f;
    Llamad__V1__TopLogprob *tops[] = {&t0, &t1};
    Llamad__V1__TokenLogprob l0 = LLAMAD__V1__TOKEN_LOGPROB__INIT;
    l0.logprob = -0.25f;
    l0.n_top = 2;
    l0.top = tops;
    Llamad__V1__TokenLogprob l1 = LLAMAD__V1__TOKEN_LOGPROB__INIT;
    l1.logprob = -1e-7f;
    l1.n_top = 1;
    l1.top = tops + 1;
    Llamad__V1__TokenLogprob *lps[] = {&l0, &l1};
    uint32_t ids[] = {450, 29871};
    Llamad__V1__TokenChunk c = LLAMAD__V1__TOKEN_CHUNK__INIT;
    c.n_token_ids = 2;
    c.token_ids = ids;
    c.text = " The \xe2\x82\xac";
    c.n_logprobs = 2;
    c.logprobs = lps;
    c.index = 3;
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 42;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK;
    m.token_chunk = &c;
    Llamad__V1__ServerMessage *o = rt_server(&m, true);
    const Llamad__V1__TokenChunk *oc = o->token_chunk;
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
    CHECK_EQ_INT(oc->n_token_ids, 2);
    CHECK_EQ_INT(oc->token_ids[1], 29871);
    CHECK(strcmp(oc->text, " The \xe2\x82\xac") == 0);
    CHECK_EQ_INT(oc->index, 3);
    CHECK_EQ_INT(oc->n_logprobs, 2);
    CHECK(oc->logprobs[0]->logprob == -0.25f && oc->logprobs[1]->logprob == -1e-7f);
    CHECK_EQ_INT(oc->logprobs[0]->n_top, 2);
    CHECK_EQ_INT(oc->logprobs[0]->top[1]->id, 7);
    CHECK(oc->logprobs[0]->top[1]->logprob == -3.5f);
    CHECK_EQ_INT(oc->logprobs[0]->top[1]->text.len, 3);
    CHECK(memcmp(oc->logprobs[0]->top[1]->text.data, piece_b, 3) == 0);
    CHECK_EQ_INT(oc->logprobs[0]->top[0]->text.len, 2);
    CHECK(memcmp(oc->logprobs[0]->top[0]->text.data, piece_a, 2) == 0);
    proto_server_free(o);
}

static void test_generate_done(void)
{
    Llamad__V1__GenerateDone d = LLAMAD__V1__GENERATE_DONE__INIT;
    d.finish_reason = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH;
    d.prompt_tokens = 1234;
    d.generated_tokens = 77;
    d.cached_prompt_tokens = 1024;
    d.queue_us = 1500;
    d.time_to_first_token_us = 25000;
    d.total_us = UINT64_C(12345678901);
    d.index = 2;
    d.seed = UINT64_MAX - 1;
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 42;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE;
    m.generate_done = &d;
    Llamad__V1__ServerMessage *o = rt_server(&m, true);
    const Llamad__V1__GenerateDone *od = o->generate_done;
    CHECK_EQ_INT(od->finish_reason, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH);
    CHECK_EQ_INT(od->prompt_tokens, 1234);
    CHECK_EQ_INT(od->generated_tokens, 77);
    CHECK_EQ_INT(od->cached_prompt_tokens, 1024);
    CHECK_EQ_INT(od->queue_us, 1500);
    CHECK_EQ_INT(od->time_to_first_token_us, 25000);
    CHECK(od->total_us == UINT64_C(12345678901));
    CHECK_EQ_INT(od->index, 2);
    CHECK(od->seed == UINT64_MAX - 1);
    proto_server_free(o);

    /* every finish reason survives */
    for (int r = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP;
         r <= LLAMAD__V1__GENERATE_DONE__FINISH_REASON__ERROR; r++) {
        d.finish_reason = (Llamad__V1__GenerateDone__FinishReason)r;
        o = rt_server(&m, true);
        CHECK_EQ_INT(o->generate_done->finish_reason, r);
        CHECK(protobuf_c_enum_descriptor_get_value(&llamad__v1__generate_done__finish_reason__descriptor, r));
        proto_server_free(o);
    }
}

static void test_error(void)
{
    Llamad__V1__Error e = LLAMAD__V1__ERROR__INIT;
    e.message = "temperature must be between 0 and 100 (got -1)";
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 9;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR;
    m.error = &e;
    const ProtobufCEnumDescriptor *codes = &llamad__v1__error__code__descriptor;
    CHECK_EQ_INT(codes->n_values, 15); /* UNSPECIFIED + 14 codes */
    for (unsigned i = 1; i < codes->n_values; i++) {
        e.code = (Llamad__V1__Error__Code)codes->values[i].value;
        Llamad__V1__ServerMessage *o = rt_server(&m, true);
        CHECK_EQ_INT(o->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR);
        CHECK_EQ_INT(o->error->code, codes->values[i].value);
        CHECK(strcmp(o->error->message, e.message) == 0);
        proto_server_free(o);
    }
    CHECK_EQ_INT(LLAMAD__V1__ERROR__CODE__INVALID_REQUEST, 1);
    CHECK_EQ_INT(LLAMAD__V1__ERROR__CODE__INTERNAL, 14);
}

static void test_status_reply(void)
{
    static char *loaded[] = {"stories260K", "TinyStories-656K"};
    Llamad__V1__StatusReply s = LLAMAD__V1__STATUS_REPLY__INIT;
    s.n_loaded_models = 2;
    s.loaded_models = loaded;
    s.default_model = "stories260K";
    s.queue_depth = 3;
    s.running_sequences = 64;
    s.kv_blocks_total = 4096;
    s.kv_blocks_used = 1000;
    s.kv_blocks_cached = 500;
    s.kv_block_size = 16;
    s.prefix_cache_hit_rate = 0.8125;
    s.tokens_per_second = 1234.5;
    s.uptime_seconds = 86400;
    s.connections = 17;
    s.jemalloc_allocated_bytes = UINT64_C(123456789012);
    s.jemalloc_resident_bytes = UINT64_C(223456789012);
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 11;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS;
    m.status = &s;
    Llamad__V1__ServerMessage *o = rt_server(&m, true);
    const Llamad__V1__StatusReply *os = o->status;
    CHECK_EQ_INT(os->n_loaded_models, 2);
    CHECK(strcmp(os->loaded_models[1], "TinyStories-656K") == 0);
    CHECK(strcmp(os->default_model, "stories260K") == 0);
    CHECK_EQ_INT(os->queue_depth, 3);
    CHECK_EQ_INT(os->running_sequences, 64);
    CHECK_EQ_INT(os->kv_blocks_total, 4096);
    CHECK_EQ_INT(os->kv_blocks_used, 1000);
    CHECK_EQ_INT(os->kv_blocks_cached, 500);
    CHECK_EQ_INT(os->kv_block_size, 16);
    CHECK(os->prefix_cache_hit_rate == 0.8125);
    CHECK(os->tokens_per_second == 1234.5);
    CHECK_EQ_INT(os->uptime_seconds, 86400);
    CHECK_EQ_INT(os->connections, 17);
    CHECK(os->jemalloc_allocated_bytes == UINT64_C(123456789012));
    CHECK(os->jemalloc_resident_bytes == UINT64_C(223456789012));
    proto_server_free(o);
}

static void test_model_list(void)
{
    Llamad__V1__ModelInfo a = LLAMAD__V1__MODEL_INFO__INIT;
    a.name = "stories260K";
    a.path = "/var/lib/llamad/models/stories260K.gguf";
    a.architecture = "llama";
    a.parameter_count = 260000;
    a.quantization = "F32";
    a.context_length = 512;
    a.vocab_size = 512;
    a.is_default = 1;
    Llamad__V1__ModelInfo b = a;
    b.name = "TinyStories-656K";
    b.path = "/models/TinyStories-656K-Q8_0.gguf";
    b.quantization = "Q8_0";
    b.parameter_count = UINT64_C(70000000000);
    b.context_length = 131072;
    b.vocab_size = 128256;
    Llamad__V1__ModelInfo *models[] = {&a, &b};
    Llamad__V1__ModelList l = LLAMAD__V1__MODEL_LIST__INIT;
    l.n_models = 2;
    l.models = models;
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 12;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_MODEL_LIST;
    m.model_list = &l;
    Llamad__V1__ServerMessage *o = rt_server(&m, true);
    const Llamad__V1__ModelList *ol = o->model_list;
    CHECK_EQ_INT(ol->n_models, 2);
    CHECK(strcmp(ol->models[0]->path, a.path) == 0);
    CHECK(strcmp(ol->models[0]->architecture, "llama") == 0);
    CHECK(ol->models[0]->is_default);
    CHECK(strcmp(ol->models[1]->quantization, "Q8_0") == 0);
    CHECK(ol->models[1]->parameter_count == UINT64_C(70000000000));
    CHECK_EQ_INT(ol->models[1]->context_length, 131072);
    CHECK_EQ_INT(ol->models[1]->vocab_size, 128256);
    proto_server_free(o);
}

static void test_tokenize_replies(void)
{
    uint32_t ids[] = {1, 15043, 3186};
    static uint8_t p0[] = "<s>", p1[] = "\xe2\x96\x81Hello", p2[] = {0xf0, 0x9f};
    ProtobufCBinaryData pieces[] = {{3, p0}, {8, p1}, {2, p2}};
    Llamad__V1__TokenizeReply t = LLAMAD__V1__TOKENIZE_REPLY__INIT;
    t.n_token_ids = 3;
    t.token_ids = ids;
    t.n_pieces = 3;
    t.pieces = pieces;
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 13;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_TOKENIZE;
    m.tokenize = &t;
    Llamad__V1__ServerMessage *o = rt_server(&m, true);
    CHECK_EQ_INT(o->tokenize->n_token_ids, 3);
    CHECK_EQ_INT(o->tokenize->token_ids[2], 3186);
    CHECK_EQ_INT(o->tokenize->n_pieces, 3);
    CHECK_EQ_INT(o->tokenize->pieces[1].len, 8);
    CHECK(memcmp(o->tokenize->pieces[1].data, p1, 8) == 0);
    CHECK(memcmp(o->tokenize->pieces[2].data, p2, 2) == 0);
    proto_server_free(o);

    static uint8_t text[] = {'H', 'i', 0, 0xe2, 0x82};
    Llamad__V1__DetokenizeReply d = LLAMAD__V1__DETOKENIZE_REPLY__INIT;
    d.text = (ProtobufCBinaryData){sizeof text, text};
    m = (Llamad__V1__ServerMessage)LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = 14;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_DETOKENIZE;
    m.detokenize = &d;
    o = rt_server(&m, true);
    CHECK_EQ_INT(o->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_DETOKENIZE);
    CHECK_EQ_INT(o->detokenize->text.len, 5);
    CHECK(memcmp(o->detokenize->text.data, text, 5) == 0);
    proto_server_free(o);
}

/* mc_equal must notice a change, or the round trips above would prove nothing. */
static void test_compare_detects_changes(void)
{
    Llamad__V1__GenerateDone a = LLAMAD__V1__GENERATE_DONE__INIT, b;
    a.total_us = 5;
    b = a;
    CHECK(mc_equal(&a.base, &b.base));
    b.total_us = 6;
    CHECK(!mc_equal(&a.base, &b.base));

    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT, h;
    h = g;
    h.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    CHECK(!mc_equal(&g.base, &h.base)); /* presence differs, value both 0 */
    uint32_t x[] = {1, 2}, y[] = {1, 3};
    Llamad__V1__TokenIds ta = LLAMAD__V1__TOKEN_IDS__INIT, tb = LLAMAD__V1__TOKEN_IDS__INIT;
    ta.n_ids = tb.n_ids = 2;
    ta.ids = x;
    tb.ids = y;
    CHECK(!mc_equal(&ta.base, &tb.base));
}

/* A zero-length payload is an empty message: no body, request_id 0. */
static void test_empty_message(void)
{
    Llamad__V1__ClientMessage *c = NULL;
    CHECK_EQ_INT(proto_client_unpack("", 0, &c), 0);
    CHECK(c && c->request_id == 0);
    CHECK_EQ_INT(c->body_case, LLAMAD__V1__CLIENT_MESSAGE__BODY__NOT_SET);
    proto_client_free(c);
    Llamad__V1__ServerMessage *s = NULL;
    CHECK_EQ_INT(proto_server_unpack(NULL, 0, &s), 0);
    CHECK(s && s->request_id == 0);
    CHECK_EQ_INT(s->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY__NOT_SET);
    proto_server_free(s);
    /* and it encodes to a bare header */
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    uint8_t buf[8];
    size_t len = 0;
    CHECK_EQ_INT(proto_client_frame_size(&m), 4);
    CHECK_EQ_INT(proto_client_encode(&m, buf, sizeof buf, &len), 0);
    CHECK_EQ_INT(len, 4);
    CHECK(buf[0] == 0 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0);
}

static void test_bad_arguments(void)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    size_t len = 0;
    uint8_t buf[16];
    CHECK_EQ_INT(proto_client_encode(NULL, buf, sizeof buf, &len), -EINVAL);
    CHECK_EQ_INT(proto_client_encode(&m, buf, sizeof buf, NULL), -EINVAL);
    CHECK_EQ_INT(proto_client_encode(&m, NULL, 0, &len), -ENOBUFS);
    CHECK_EQ_INT(proto_server_encode(NULL, buf, sizeof buf, &len), -EINVAL);
    CHECK_EQ_INT(proto_client_frame_size(NULL), 0);
    CHECK_EQ_INT(proto_client_unpack(NULL, 3, &(Llamad__V1__ClientMessage *){NULL}), -EINVAL);
    CHECK_EQ_INT(proto_client_unpack(buf, 0, NULL), -EINVAL);
    proto_client_free(NULL);
    proto_server_free(NULL);
}

int main(void)
{
    test_hello();
    test_generate_text();
    test_generate_tokens();
    test_generate_chat();
    test_generate_presence();
    test_cancel_status_list();
    test_tokenize_detokenize();
    test_hello_reply();
    test_token_chunk();
    test_generate_done();
    test_error();
    test_status_reply();
    test_model_list();
    test_tokenize_replies();
    test_compare_detects_changes();
    test_empty_message();
    test_bad_arguments();

    int nc = mc_check_coverage(&llamad__v1__client_message__descriptor);
    int ns = mc_check_coverage(&llamad__v1__server_message__descriptor);
    printf("proto messages: every field set in a round trip (%d client, %d server fields)\n",
           nc, ns);
    return 0;
}
