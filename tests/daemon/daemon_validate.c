/* Request validation table: every kind of bad request gets the right Error code, and good
 * requests become the right scheduler jobs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "validate.h"

#define E(c) LLAMAD__V1__ERROR__CODE__##c

static const srv_model_desc models[] = {{"tiny", 512, 2048}, {"q8", 2048, 512}};
static const srv_limits lim = {models, 2, 100, 256, 60};

typedef struct gen_case {
    const char *name;
    void (*mutate)(Llamad__V1__GenerateRequest *g);
    int code;
} gen_case;

static uint32_t ids_ok[] = {1, 2, 3};
static uint32_t ids_bad[] = {1, 512};
static uint32_t ids_long[101];
static uint32_t ids_ctx[600];
static Llamad__V1__TokenIds tok_ids;
static Llamad__V1__ChatPrompt chat;
static Llamad__V1__ChatMessage chat_msg, *chat_msgs[1] = {&chat_msg};
static char *stops[17];
static char long_stop[300];

static void m_none(Llamad__V1__GenerateRequest *g) { (void)g; }
static void m_unknown_model(Llamad__V1__GenerateRequest *g) { g->model = "nope"; }
static void m_no_prompt(Llamad__V1__GenerateRequest *g) { g->prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT__NOT_SET; }
static void m_empty_text(Llamad__V1__GenerateRequest *g)
{
    g->prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
    g->text = "";
}
static void m_bad_utf8(Llamad__V1__GenerateRequest *g)
{
    g->prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
    g->text = "abc\xff";
}
static void m_empty_tokens(Llamad__V1__GenerateRequest *g) { tok_ids.n_ids = 0; (void)g; }
static void m_bad_token(Llamad__V1__GenerateRequest *g) { tok_ids.ids = ids_bad; tok_ids.n_ids = 2; (void)g; }
static void m_too_long(Llamad__V1__GenerateRequest *g) { tok_ids.ids = ids_long; tok_ids.n_ids = 101; (void)g; }
static void m_ctx(Llamad__V1__GenerateRequest *g)
{
    g->model = "q8";
    tok_ids.ids = ids_ctx;
    tok_ids.n_ids = 512; /* = context: no room for a generated token */
}
static void m_chat_empty(Llamad__V1__GenerateRequest *g)
{
    g->prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT;
    g->chat = &chat;
    chat.n_messages = 0;
}
static void m_chat_norole(Llamad__V1__GenerateRequest *g)
{
    g->prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT;
    g->chat = &chat;
    chat.n_messages = 1;
    chat_msg.role = "";
}
static void m_max0(Llamad__V1__GenerateRequest *g)
{
    g->has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
    g->max_tokens = 0;
}
static void m_max_big(Llamad__V1__GenerateRequest *g)
{
    g->has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
    g->max_tokens = 257;
}
static void m_temp_neg(Llamad__V1__GenerateRequest *g)
{
    g->has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g->temperature = -0.1f;
}
static void m_temp_nan(Llamad__V1__GenerateRequest *g)
{
    g->has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g->temperature = NAN;
}
static void m_temp_big(Llamad__V1__GenerateRequest *g)
{
    g->has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g->temperature = 101.0f;
}
static void m_topk(Llamad__V1__GenerateRequest *g)
{
    g->has_top_k_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_K_TOP_K;
    g->top_k = 513;
}
static void m_topp0(Llamad__V1__GenerateRequest *g)
{
    g->has_top_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_P_TOP_P;
    g->top_p = 0.0f;
}
static void m_topp_big(Llamad__V1__GenerateRequest *g)
{
    g->has_top_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_P_TOP_P;
    g->top_p = 1.5f;
}
static void m_minp(Llamad__V1__GenerateRequest *g)
{
    g->has_min_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MIN_P_MIN_P;
    g->min_p = -0.5f;
}
static void m_rep0(Llamad__V1__GenerateRequest *g)
{
    g->has_repeat_penalty_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_PENALTY_REPEAT_PENALTY;
    g->repeat_penalty = 0.0f;
}
static void m_rep_big(Llamad__V1__GenerateRequest *g)
{
    g->has_repeat_penalty_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_PENALTY_REPEAT_PENALTY;
    g->repeat_penalty = 11.0f;
}
static void m_presence(Llamad__V1__GenerateRequest *g) { g->presence_penalty = 2.5f; }
static void m_frequency(Llamad__V1__GenerateRequest *g) { g->frequency_penalty = -3.0f; }
static void m_lastn(Llamad__V1__GenerateRequest *g)
{
    g->has_repeat_last_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_LAST_N_REPEAT_LAST_N;
    g->repeat_last_n = -2;
}
static void m_lastn_big(Llamad__V1__GenerateRequest *g)
{
    g->has_repeat_last_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_LAST_N_REPEAT_LAST_N;
    g->repeat_last_n = 2049;
}
static void m_logprobs(Llamad__V1__GenerateRequest *g) { g->logprobs = 21; }
static void m_n0(Llamad__V1__GenerateRequest *g)
{
    g->has_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_N_N;
    g->n = 0;
}
static void m_n17(Llamad__V1__GenerateRequest *g)
{
    g->has_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_N_N;
    g->n = 17;
}
static void m_stop_empty(Llamad__V1__GenerateRequest *g)
{
    stops[0] = "";
    g->n_stop = 1;
    g->stop = stops;
}
static void m_stop_many(Llamad__V1__GenerateRequest *g)
{
    for (int i = 0; i < 17; i++) stops[i] = "x";
    g->n_stop = 17;
    g->stop = stops;
}
static void m_stop_long(Llamad__V1__GenerateRequest *g)
{
    memset(long_stop, 'a', 257);
    long_stop[257] = '\0';
    stops[0] = long_stop;
    g->n_stop = 1;
    g->stop = stops;
}

static const gen_case gen_cases[] = {
    {"valid", m_none, 0},
    {"unknown model", m_unknown_model, E(UNKNOWN_MODEL)},
    {"no prompt", m_no_prompt, E(INVALID_REQUEST)},
    {"empty text", m_empty_text, E(INVALID_PARAMETER)},
    {"text not UTF-8", m_bad_utf8, E(INVALID_PARAMETER)},
    {"no token ids", m_empty_tokens, E(INVALID_PARAMETER)},
    {"token id >= vocab", m_bad_token, E(INVALID_PARAMETER)},
    {"prompt over the limit", m_too_long, E(PROMPT_TOO_LONG)},
    {"prompt fills the context", m_ctx, E(PROMPT_TOO_LONG)},
    {"chat without messages", m_chat_empty, E(INVALID_PARAMETER)},
    {"chat message without role", m_chat_norole, E(INVALID_PARAMETER)},
    {"max_tokens 0", m_max0, E(INVALID_PARAMETER)},
    {"max_tokens over the cap", m_max_big, E(INVALID_PARAMETER)},
    {"temperature < 0", m_temp_neg, E(INVALID_PARAMETER)},
    {"temperature NaN", m_temp_nan, E(INVALID_PARAMETER)},
    {"temperature > 100", m_temp_big, E(INVALID_PARAMETER)},
    {"top_k > vocab", m_topk, E(INVALID_PARAMETER)},
    {"top_p 0", m_topp0, E(INVALID_PARAMETER)},
    {"top_p > 1", m_topp_big, E(INVALID_PARAMETER)},
    {"min_p < 0", m_minp, E(INVALID_PARAMETER)},
    {"repeat_penalty 0", m_rep0, E(INVALID_PARAMETER)},
    {"repeat_penalty > 10", m_rep_big, E(INVALID_PARAMETER)},
    {"presence_penalty > 2", m_presence, E(INVALID_PARAMETER)},
    {"frequency_penalty < -2", m_frequency, E(INVALID_PARAMETER)},
    {"repeat_last_n < -1", m_lastn, E(INVALID_PARAMETER)},
    {"repeat_last_n > context", m_lastn_big, E(INVALID_PARAMETER)},
    {"logprobs > 20", m_logprobs, E(INVALID_PARAMETER)},
    {"n 0", m_n0, E(INVALID_PARAMETER)},
    {"n 17", m_n17, E(INVALID_PARAMETER)},
    {"empty stop string", m_stop_empty, E(INVALID_PARAMETER)},
    {"17 stop strings", m_stop_many, E(INVALID_PARAMETER)},
    {"stop string of 257 bytes", m_stop_long, E(INVALID_PARAMETER)},
};

static int run_generate(void (*mutate)(Llamad__V1__GenerateRequest *), sched_job **ret_job, char *msg, size_t len)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    llamad__v1__token_ids__init(&tok_ids);
    tok_ids.ids = ids_ok;
    tok_ids.n_ids = 3;
    llamad__v1__chat_prompt__init(&chat);
    llamad__v1__chat_message__init(&chat_msg);
    chat.messages = chat_msgs;
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
    g.tokens = &tok_ids;
    mutate(&g);
    m.request_id = 1;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    msg[0] = '\0';
    return srv_validate_request(&m, &lim, ret_job, msg, len);
}

static void test_generate_table(void)
{
    for (size_t i = 0; i < sizeof gen_cases / sizeof gen_cases[0]; i++) {
        sched_job *job = NULL;
        char msg[512];
        int code = run_generate(gen_cases[i].mutate, &job, msg, sizeof msg);
        CHECK_MSG(code == gen_cases[i].code, "case '%s': code %d, want %d (%s)", gen_cases[i].name, code,
                  gen_cases[i].code, msg);
        if (code != 0) {
            CHECK_MSG(job == NULL, "case '%s': a job despite the error", gen_cases[i].name);
            CHECK_MSG(msg[0] != '\0', "case '%s': no message", gen_cases[i].name);
        } else {
            CHECK(job != NULL);
            sched_job_free(job);
        }
    }
}

static void m_full(Llamad__V1__GenerateRequest *g)
{
    g->model = "q8";
    g->has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
    g->max_tokens = 33;
    g->has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g->temperature = 0.0f;
    g->has_top_k_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_K_TOP_K;
    g->top_k = 5;
    g->has_seed_case = LLAMAD__V1__GENERATE_REQUEST__HAS_SEED_SEED;
    g->seed = 42;
    g->has_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_N_N;
    g->n = 4;
    stops[0] = "END";
    g->n_stop = 1;
    g->stop = stops;
}

static void test_generate_job(void)
{
    sched_job *job = NULL;
    char msg[512];
    CHECK_EQ_INT(run_generate(m_full, &job, msg, sizeof msg), 0);
    CHECK_EQ_INT(job->kind, SCHED_JOB_GENERATE);
    CHECK_EQ_INT(job->model, 1);
    CHECK_EQ_INT(job->max_tokens, 33);
    CHECK(job->sampling.temperature == 0.0f);
    CHECK_EQ_INT(job->sampling.top_k, 5);
    CHECK_EQ_INT(job->sampling.seed, 42);
    CHECK_EQ_INT(job->n_completions, 4);
    CHECK_EQ_INT(job->n_stop, 1);
    CHECK(strcmp(job->stop[0], "END") == 0);
    CHECK_EQ_INT(job->n_tokens_in, 3);
    CHECK_EQ_INT(job->tokens_in[2], 3);
    CHECK_EQ_INT(job->timeout_ns, 60000000000ull);
    sched_job_free(job);

    /* defaults per the protocol: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, ... */
    CHECK_EQ_INT(run_generate(m_none, &job, msg, sizeof msg), 0);
    CHECK_EQ_INT(job->model, 0);
    CHECK(fabsf(job->sampling.temperature - 0.8f) < 1e-6f);
    CHECK_EQ_INT(job->sampling.top_k, 40);
    CHECK(fabsf(job->sampling.top_p - 0.95f) < 1e-6f);
    CHECK(fabsf(job->sampling.min_p - 0.05f) < 1e-6f);
    CHECK_EQ_INT(job->sampling.repeat_last_n, 64);
    CHECK_EQ_INT(job->max_tokens, 256);
    CHECK_EQ_INT(job->n_completions, 1);
    sched_job_free(job);
}

static void test_other_kinds(void)
{
    char msg[512];
    sched_job *job = NULL;
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;

    /* envelope */
    m.request_id = 1;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(INVALID_REQUEST)); /* no body */
    Llamad__V1__StatusRequest st = LLAMAD__V1__STATUS_REQUEST__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS;
    m.status = &st;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), 0);
    CHECK(job == NULL);
    m.request_id = 0;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(INVALID_REQUEST));
    m.request_id = 1;

    /* hello */
    Llamad__V1__Hello h = LLAMAD__V1__HELLO__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &h;
    h.protocol_version = 1;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), 0);
    h.protocol_version = 2;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(UNSUPPORTED_VERSION));
    h.protocol_version = 1;
    char name[300];
    memset(name, 'n', 299);
    name[299] = '\0';
    h.client_name = name;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(INVALID_PARAMETER));

    /* cancel */
    Llamad__V1__CancelRequest c = LLAMAD__V1__CANCEL_REQUEST__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL;
    m.cancel = &c;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(INVALID_REQUEST));
    c.target_request_id = 5;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), 0);

    /* tokenize */
    Llamad__V1__TokenizeRequest t = LLAMAD__V1__TOKENIZE_REQUEST__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE;
    m.tokenize = &t;
    t.model = "x";
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(UNKNOWN_MODEL));
    t.model = "";
    t.text = "\xc3";
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(INVALID_PARAMETER));
    t.text = "héllo";
    t.parse_special = 1;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), 0);
    CHECK(job != NULL && job->kind == SCHED_JOB_TOKENIZE && job->add_special && job->parse_special);
    sched_job_free(job);

    /* detokenize */
    Llamad__V1__DetokenizeRequest d = LLAMAD__V1__DETOKENIZE_REQUEST__INIT;
    uint32_t ids[] = {1, 2048};
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_DETOKENIZE;
    m.detokenize = &d;
    d.model = "q8";
    d.token_ids = ids;
    d.n_token_ids = 2;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), E(INVALID_PARAMETER));
    d.n_token_ids = 1;
    CHECK_EQ_INT(srv_validate_request(&m, &lim, &job, msg, sizeof msg), 0);
    CHECK(job != NULL && job->kind == SCHED_JOB_DETOKENIZE && job->model == 1 && job->n_tokens_in == 1);
    sched_job_free(job);

    /* UTF-8 checker */
    CHECK(srv_utf8_valid("plain", 5));
    CHECK(srv_utf8_valid("\xe2\x82\xac", 3));
    CHECK(!srv_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    CHECK(!srv_utf8_valid("\xc0\xaf", 2));     /* overlong */
    CHECK(!srv_utf8_valid("\xf4\x90\x80\x80", 4));
}

int main(void)
{
    test_generate_table();
    test_generate_job();
    test_other_kinds();
    printf("daemon_validate: ok\n");
    return 0;
}
