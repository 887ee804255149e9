/* Invalid and truncated GGUF files, built in memory from real models: each must give an
 * error that names the problem, never a crash. Also: every metadata value type, nested
 * arrays, and the RoPE scaling description, on hand-built files. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "gguf.h"
#include "gguf_builder.h"
#include "model.h"
#include "quant.h"
#include "testutil.h"

static uint8_t *g_260k;   /* stories260K.gguf */
static size_t g_260k_len;
static gguf_file *g_260k_f;

/* Opens buf as gguf, then as a model; returns the first error (0 if both work). */
static int open_model(const uint8_t *buf, size_t len, eng_error *err, eng_model **ret_m)
{
    gguf_file *f = NULL;
    int rc = gguf_open_mem(buf, len, &f, err);
    if (rc != 0) {
        CHECK(f == NULL);
        CHECK(err->code == rc && err->msg[0] != '\0');
        return rc;
    }
    eng_model *m = NULL;
    rc = eng_model_from_gguf(f, &m, err);
    if (rc != 0) {
        CHECK(m == NULL);
        CHECK(err->code == rc && err->msg[0] != '\0');
        gguf_close(f);
        return rc;
    }
    if (ret_m) *ret_m = m;
    else eng_model_free(m);
    return 0;
}

/* Builds b, expects failure with a message containing every given substring. */
static void expect_fail_(const gb *b, const char *file, int line, const char *const *subs)
{
    size_t len;
    uint8_t *buf = gb_write(b, &len);
    eng_error err;
    eng_error_clear(&err);
    int rc = open_model(buf, len, &err, NULL);
    if (rc >= 0) tu_fail(file, line, "expected an error containing '%s', got success", subs[0]);
    for (size_t i = 0; subs[i]; i++)
        if (strstr(err.msg, subs[i]) == NULL)
            tu_fail(file, line, "error '%s' does not contain '%s'", err.msg, subs[i]);
    free(buf);
}
#define expect_fail(b, ...) \
    expect_fail_((b), __FILE__, __LINE__, (const char *const[]){__VA_ARGS__, NULL})

static eng_model *expect_ok_(const gb *b, uint8_t **ret_buf, const char *file, int line)
{
    size_t len;
    uint8_t *buf = gb_write(b, &len);
    eng_error err;
    eng_model *m = NULL;
    if (open_model(buf, len, &err, &m) != 0) tu_fail(file, line, "unexpected error: %s", err.msg);
    *ret_buf = buf;
    return m;
}
#define expect_ok(b, ret_buf) expect_ok_((b), (ret_buf), __FILE__, __LINE__)

static void base(gb *b) { gb_from_file(b, g_260k_f); }

/* ---------------------------------------------------------------- truncation */

static void check_prefixes(const uint8_t *buf, size_t len, size_t dense_until, size_t step)
{
    for (size_t n = 0; n < len; n += (n < dense_until ? 1 : step)) {
        eng_error err;
        eng_error_clear(&err);
        /* a fresh copy of exactly n bytes, so that ASan sees any read past the end */
        uint8_t *copy = malloc(n ? n : 1);
        CHECK(copy != NULL);
        memcpy(copy, buf, n);
        int rc = open_model(copy, n, &err, NULL);
        CHECK_MSG(rc < 0, "prefix of %zu bytes (of %zu) was accepted", n, len);
        CHECK(err.msg[0] != '\0');
        free(copy);
    }
}

static void test_truncation(void)
{
    /* every prefix over the header region of stories260K (metadata + tensor infos) */
    size_t hdr = (size_t)gguf_data_offset(g_260k_f) + 64;
    check_prefixes(g_260k, g_260k_len, hdr, 4093);
    /* the last bytes too */
    for (size_t n = g_260k_len - 40; n < g_260k_len; n++) {
        eng_error err;
        CHECK(open_model(g_260k, n, &err, NULL) < 0);
        CHECK_MSG(strstr(err.msg, "extends past end of file") != NULL, "%s", err.msg);
    }
    /* messages name the problem */
    eng_error err;
    CHECK(open_model(g_260k, 3, &err, NULL) == -EINVAL);
    CHECK_MSG(strstr(err.msg, "bad magic"), "%s", err.msg);
    CHECK(open_model(g_260k, 20, &err, NULL) == -EINVAL);
    CHECK_MSG(strstr(err.msg, "truncated") && strstr(err.msg, "key count"), "%s", err.msg);
    CHECK(open_model(g_260k, 2000, &err, NULL) == -EINVAL);
    CHECK_MSG(strstr(err.msg, "tokenizer.ggml.tokens") && strstr(err.msg, "past end of file"),
              "%s", err.msg);
    CHECK(open_model(g_260k, gguf_data_offset(g_260k_f) - 40, &err, NULL) == -EINVAL);
    CHECK_MSG(strstr(err.msg, "truncated"), "%s", err.msg);
    CHECK(open_model(g_260k, gguf_data_offset(g_260k_f) + 100, &err, NULL) == -EINVAL);
    CHECK_MSG(strstr(err.msg, "tensor token_embd.weight extends past end of file"), "%s",
              err.msg);

    /* a sample of prefixes of the other models (header region dense in steps) */
    const char *others[] = {"models/TinyStories-656K-Q8_0.gguf", "models/llama-2-tiny-random.gguf"};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        uint8_t *buf = tu_read_file(tu_shared(others[i]), &len);
        gguf_file *f;
        CHECK(gguf_open_mem(buf, len, &f, NULL) == 0);
        size_t data = (size_t)gguf_data_offset(f);
        gguf_close(f);
        size_t step = data / 1500 > 7 ? data / 1500 + 1 : 7;
        for (size_t n = 0; n < len; n += (n < data ? step : 9973)) {
            eng_error e2;
            CHECK(open_model(buf, n, &e2, NULL) < 0);
        }
        free(buf);
    }
}

/* ---------------------------------------------------------------- header and metadata */

static void test_header(void)
{
    gb b;
    base(&b);
    b.version = 1;
    expect_fail(&b, "GGUF v1 is unsupported");
    b.version = 4;
    expect_fail(&b, "version 4 is unsupported");
    b.version = 3u << 24;
    expect_fail(&b, "big-endian");
    b.version = 2; /* v2 has the same layout: accepted */
    uint8_t *buf;
    eng_model *m = expect_ok(&b, &buf);
    CHECK_EQ_INT(gguf_version(m->gguf), 2);
    eng_model_free(m);
    free(buf);
    b.version = 3;

    b.n_kv_override = 1ull << 62;
    expect_fail(&b, "key count 4611686018427387904 is too large");
    b.n_kv_override = 0;
    b.n_tensors_override = UINT64_MAX;
    expect_fail(&b, "tensor count 18446744073709551615 is too large");
    b.n_tensors_override = 0;
    /* fewer keys than there are: the reader takes key bytes for tensor infos */
    b.n_kv_override = 3;
    {
        size_t len;
        uint8_t *w = gb_write(&b, &len);
        eng_error err;
        CHECK(open_model(w, len, &err, NULL) < 0);
        free(w);
    }
    b.n_kv_override = 0;
    gb_free(&b);
}

static void test_metadata_errors(void)
{
    gb b;
    base(&b);
    /* a huge string length */
    gb_buf w = {0};
    gb_put_u64(&w, 1ull << 60);
    gb_put(&w, "abc", 3);
    gb_set_raw(&b, "general.name", GGUF_TYPE_STRING, w.p, w.len);
    expect_fail(&b, "string value", "has length 1152921504606846976, past end of file");
    free(w.p);
    gb_set_str(&b, "general.name", "ok");

    /* a huge array length: fixed-size and string elements */
    w = (gb_buf){0};
    gb_put_u32(&w, GGUF_TYPE_FLOAT32);
    gb_put_u64(&w, 1ull << 61);
    gb_set_raw(&b, "tokenizer.ggml.scores", GGUF_TYPE_ARRAY, w.p, w.len);
    expect_fail(&b, "key 'tokenizer.ggml.scores'", "extends past end of file");
    w.len = 0;
    gb_put_u32(&w, GGUF_TYPE_STRING);
    gb_put_u64(&w, UINT64_MAX);
    gb_set_raw(&b, "tokenizer.ggml.scores", GGUF_TYPE_ARRAY, w.p, w.len);
    expect_fail(&b, "key 'tokenizer.ggml.scores'", "array of 18446744073709551615 strings");
    /* unknown array element type */
    w.len = 0;
    gb_put_u32(&w, 42);
    gb_put_u64(&w, 1);
    gb_set_raw(&b, "tokenizer.ggml.scores", GGUF_TYPE_ARRAY, w.p, w.len);
    expect_fail(&b, "key 'tokenizer.ggml.scores'", "unknown array element type 42");
    free(w.p);
    gb_del(&b, "tokenizer.ggml.scores");

    /* an unknown value type */
    uint32_t v = 7;
    gb_set_raw(&b, "general.weird", 13, &v, 4);
    expect_fail(&b, "key 'general.weird' has unknown value type 13");
    gb_set_raw(&b, "general.weird", 0xffffffffu, &v, 4);
    expect_fail(&b, "unknown value type 4294967295");
    gb_del(&b, "general.weird");

    /* a duplicate key */
    gb_set_u32(&b, "dup.key", 1);
    CHECK(b.n_kv < 95);
    b.kv[b.n_kv] = b.kv[b.n_kv - 1];
    b.kv[b.n_kv].payload = malloc(4);
    memcpy(b.kv[b.n_kv].payload, &v, 4);
    b.n_kv++;
    expect_fail(&b, "duplicate key 'dup.key'");
    gb_free(&b);

    /* bad alignment */
    base(&b);
    gb_set_u32(&b, "general.alignment", 48);
    expect_fail(&b, "bad alignment", "48 is not a power of two");
    gb_set_u32(&b, "general.alignment", 0);
    expect_fail(&b, "bad alignment");
    gb_set_str(&b, "general.alignment", "32");
    expect_fail(&b, "bad alignment", "type string");
    gb_set_i32(&b, "general.alignment", -32);
    expect_fail(&b, "bad alignment");
    /* a valid non-default alignment */
    gb_set_u32(&b, "general.alignment", 64);
    b.align = 64;
    uint8_t *buf;
    eng_model *m = expect_ok(&b, &buf);
    CHECK_EQ_INT(gguf_alignment(m->gguf), 64);
    CHECK_EQ_INT(gguf_data_offset(m->gguf) % 64, 0);
    eng_model_free(m);
    free(buf);
    /* alignment 64 declared, an offset that is only a multiple of 32 */
    b.keep_offsets = true;
    b.t[1].offset += 32;
    expect_fail(&b, "offset", "is not a multiple of the alignment 64");
    gb_free(&b);
}

/* Every value type, arrays of each, nested arrays, read back through the API. */
static void test_value_types(void)
{
    gb b;
    gb_init(&b);
    uint8_t u8 = 200;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint32_t u32 = 4000000000u;
    int32_t i32 = -2000000000;
    float f32 = 1.5f;
    uint8_t bl = 1;
    uint64_t u64 = 1ull << 40;
    int64_t i64 = -(1ll << 40);
    double f64 = 2.25;
    gb_set_raw(&b, "t.u8", GGUF_TYPE_UINT8, &u8, 1);
    gb_set_raw(&b, "t.i8", GGUF_TYPE_INT8, &i8, 1);
    gb_set_raw(&b, "t.u16", GGUF_TYPE_UINT16, &u16, 2);
    gb_set_raw(&b, "t.i16", GGUF_TYPE_INT16, &i16, 2);
    gb_set_raw(&b, "t.u32", GGUF_TYPE_UINT32, &u32, 4);
    gb_set_raw(&b, "t.i32", GGUF_TYPE_INT32, &i32, 4);
    gb_set_raw(&b, "t.f32", GGUF_TYPE_FLOAT32, &f32, 4);
    gb_set_raw(&b, "t.bool", GGUF_TYPE_BOOL, &bl, 1);
    gb_set_str(&b, "t.str", "hello");
    gb_set_raw(&b, "t.u64", GGUF_TYPE_UINT64, &u64, 8);
    gb_set_raw(&b, "t.i64", GGUF_TYPE_INT64, &i64, 8);
    gb_set_raw(&b, "t.f64", GGUF_TYPE_FLOAT64, &f64, 8);
    gb_set_str(&b, "t.empty", "");
    /* arrays of every fixed-size type: 3 elements each, values 1, 2, 3 */
    for (uint32_t t = 0; t < GGUF_TYPE_COUNT; t++) {
        size_t esz = gguf_vtype_size(t);
        if (esz == 0) continue;
        gb_buf w = {0};
        gb_put_u32(&w, t);
        gb_put_u64(&w, 3);
        for (int k = 1; k <= 3; k++) {
            uint8_t raw[8] = {0};
            if (t == GGUF_TYPE_FLOAT32) { float x = (float)k; memcpy(raw, &x, 4); }
            else if (t == GGUF_TYPE_FLOAT64) { double x = k; memcpy(raw, &x, 8); }
            else if (t == GGUF_TYPE_BOOL) raw[0] = (uint8_t)(k & 1);
            else raw[0] = (uint8_t)k;
            gb_put(&w, raw, esz);
        }
        char key[32];
        snprintf(key, sizeof key, "arr.%s", gguf_vtype_name(t));
        gb_set_raw(&b, key, GGUF_TYPE_ARRAY, w.p, w.len);
        free(w.p);
    }
    /* [[“a”, “bc”], [], [“d”]] and [[[1]], [[2, 3]]] (i32) */
    gb_buf w = {0};
    gb_put_u32(&w, GGUF_TYPE_ARRAY);
    gb_put_u64(&w, 3);
    gb_put_u32(&w, GGUF_TYPE_STRING); gb_put_u64(&w, 2); gb_put_str(&w, "a"); gb_put_str(&w, "bc");
    gb_put_u32(&w, GGUF_TYPE_STRING); gb_put_u64(&w, 0);
    gb_put_u32(&w, GGUF_TYPE_STRING); gb_put_u64(&w, 1); gb_put_str(&w, "d");
    gb_set_raw(&b, "nested.str", GGUF_TYPE_ARRAY, w.p, w.len);
    w.len = 0;
    int32_t one = 1, two = 2, three = 3;
    gb_put_u32(&w, GGUF_TYPE_ARRAY);
    gb_put_u64(&w, 2);
    gb_put_u32(&w, GGUF_TYPE_ARRAY); gb_put_u64(&w, 1);
    gb_put_u32(&w, GGUF_TYPE_INT32); gb_put_u64(&w, 1); gb_put(&w, &one, 4);
    gb_put_u32(&w, GGUF_TYPE_ARRAY); gb_put_u64(&w, 1);
    gb_put_u32(&w, GGUF_TYPE_INT32); gb_put_u64(&w, 2); gb_put(&w, &two, 4); gb_put(&w, &three, 4);
    gb_set_raw(&b, "nested.i32", GGUF_TYPE_ARRAY, w.p, w.len);
    free(w.p);

    size_t len;
    uint8_t *buf = gb_write(&b, &len);
    gguf_file *f = NULL;
    eng_error err;
    CHECK_MSG(gguf_open_mem(buf, len, &f, &err) == 0, "%s", err.msg);
    CHECK_EQ_INT(gguf_n_tensors(f), 0);
    uint32_t ru32;
    int32_t ri32;
    uint64_t ru64;
    int64_t ri64;
    float rf32;
    double rf64;
    bool rb;
    gguf_str s;
    CHECK(gguf_get_u32(f, "t.u8", &ru32) == 0 && ru32 == 200);
    CHECK(gguf_get_i32(f, "t.u8", &ri32) == 0 && ri32 == 200);
    CHECK(gguf_get_i32(f, "t.i8", &ri32) == 0 && ri32 == -5);
    CHECK(gguf_get_u32(f, "t.i8", &ru32) == -ERANGE);
    CHECK(gguf_get_u64(f, "t.i8", &ru64) == -ERANGE);
    CHECK(gguf_get_u32(f, "t.u16", &ru32) == 0 && ru32 == 60000);
    CHECK(gguf_get_i32(f, "t.i16", &ri32) == 0 && ri32 == -30000);
    CHECK(gguf_get_u32(f, "t.u32", &ru32) == 0 && ru32 == 4000000000u);
    CHECK(gguf_get_i32(f, "t.u32", &ri32) == -ERANGE);
    CHECK(gguf_get_i32(f, "t.i32", &ri32) == 0 && ri32 == -2000000000);
    CHECK(gguf_get_i64(f, "t.i32", &ri64) == 0 && ri64 == -2000000000);
    CHECK(gguf_get_f32(f, "t.f32", &rf32) == 0 && rf32 == 1.5f);
    CHECK(gguf_get_f64(f, "t.f32", &rf64) == 0 && rf64 == 1.5);
    CHECK(gguf_get_bool(f, "t.bool", &rb) == 0 && rb);
    CHECK(gguf_get_u32(f, "t.bool", &ru32) == 0 && ru32 == 1);
    CHECK(gguf_get_str(f, "t.str", &s) == 0 && gguf_str_eq(s, "hello"));
    CHECK(gguf_get_str(f, "t.empty", &s) == 0 && s.len == 0 && gguf_str_eq(s, ""));
    CHECK(gguf_get_u32(f, "t.u64", &ru32) == -ERANGE);
    CHECK(gguf_get_u64(f, "t.u64", &ru64) == 0 && ru64 == 1ull << 40);
    CHECK(gguf_get_i64(f, "t.i64", &ri64) == 0 && ri64 == -(1ll << 40));
    CHECK(gguf_get_f64(f, "t.f64", &rf64) == 0 && rf64 == 2.25);
    CHECK(gguf_get_f32(f, "t.f64", &rf32) == 0 && rf32 == 2.25f);
    CHECK(gguf_get_str(f, "t.u8", &s) == -EINVAL);
    CHECK(gguf_get_u32(f, "t.str", &ru32) == -EINVAL);
    CHECK(gguf_get_u32(f, "arr.u8", &ru32) == -EINVAL);
    const gguf_kv *kv = gguf_find_kv(f, "t.i16");
    CHECK(kv && kv->val.type == GGUF_TYPE_INT16 && kv->val.size == 2);
    CHECK(gguf_value_i64(&kv->val, &ri64) == 0 && ri64 == -30000);

    for (uint32_t t = 0; t < GGUF_TYPE_COUNT; t++) {
        size_t esz = gguf_vtype_size(t);
        if (esz == 0) continue;
        char key[32];
        snprintf(key, sizeof key, "arr.%s", gguf_vtype_name(t));
        gguf_value a;
        CHECK_MSG(gguf_get_arr(f, key, t, &a) == 0, "%s", key);
        CHECK(gguf_get_arr(f, key, t == 0 ? 1 : 0, &a) == -EINVAL);
        CHECK(gguf_get_arr(f, key, GGUF_TYPE_COUNT, &a) == 0);
        CHECK_EQ_INT(a.arr_n, 3);
        CHECK_EQ_INT(a.size, 3 * esz);
        gguf_iter it;
        gguf_value e;
        gguf_iter_init(&it, &a);
        for (int k = 1; k <= 3; k++) {
            CHECK(gguf_iter_next(&it, &e));
            CHECK_EQ_INT(e.type, t);
            double d;
            int64_t x;
            if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
                CHECK(gguf_value_f64(&e, &d) == 0 && d == k);
            } else {
                CHECK(gguf_value_i64(&e, &x) == 0);
                CHECK_EQ_INT(x, t == GGUF_TYPE_BOOL ? (k & 1) : k);
                CHECK_EQ_INT(gguf_arr_int(&a, (uint64_t)k - 1), x);
            }
        }
        CHECK(!gguf_iter_next(&it, &e));
        int32_t i3[3];
        if (t != GGUF_TYPE_FLOAT32 && t != GGUF_TYPE_FLOAT64) {
            CHECK(gguf_arr_copy(&a, GGUF_TYPE_INT32, 0, 3, i3) == 0);
            CHECK(i3[2] == (t == GGUF_TYPE_BOOL ? 1 : 3));
        }
    }
    gguf_value a;
    float f3[3];
    CHECK(gguf_get_arr(f, "arr.f64", GGUF_TYPE_FLOAT64, &a) == 0);
    CHECK(gguf_arr_copy(&a, GGUF_TYPE_FLOAT32, 1, 2, f3) == 0 && f3[0] == 2.0f && f3[1] == 3.0f);
    CHECK(gguf_get_arr(f, "arr.u32", GGUF_TYPE_UINT32, &a) == 0 && gguf_arr_u32(&a, 2) == 3);
    CHECK(gguf_arr_f32(&a, 0) == 0.0f); /* wrong element type: 0 */

    /* nested string arrays */
    CHECK(gguf_get_arr(f, "nested.str", GGUF_TYPE_ARRAY, &a) == 0);
    CHECK_EQ_INT(a.arr_n, 3);
    gguf_iter outer, inner;
    gguf_value sub;
    gguf_iter_init(&outer, &a);
    const char *want[3][2] = {{"a", "bc"}, {NULL, NULL}, {"d", NULL}};
    const uint64_t want_n[3] = {2, 0, 1};
    for (int i = 0; i < 3; i++) {
        CHECK(gguf_iter_next(&outer, &sub));
        CHECK(sub.type == GGUF_TYPE_ARRAY && sub.arr_type == GGUF_TYPE_STRING);
        CHECK_EQ_INT(sub.arr_n, want_n[i]);
        gguf_iter_init(&inner, &sub);
        for (uint64_t k = 0; k < want_n[i]; k++) {
            CHECK(gguf_iter_next_str(&inner, &s));
            CHECK(gguf_str_eq(s, want[i][k]));
        }
        CHECK(!gguf_iter_next_str(&inner, &s));
    }
    CHECK(!gguf_iter_next(&outer, &sub));
    /* nested i32 arrays, two levels */
    CHECK(gguf_get_arr(f, "nested.i32", GGUF_TYPE_ARRAY, &a) == 0);
    gguf_iter_init(&outer, &a);
    CHECK(gguf_iter_next(&outer, &sub) && sub.arr_type == GGUF_TYPE_ARRAY && sub.arr_n == 1);
    gguf_iter_init(&inner, &sub);
    gguf_value leaf;
    CHECK(gguf_iter_next(&inner, &leaf) && leaf.arr_type == GGUF_TYPE_INT32 && leaf.arr_n == 1);
    CHECK_EQ_INT(gguf_arr_i32(&leaf, 0), 1);
    CHECK(gguf_iter_next(&outer, &sub));
    gguf_iter_init(&inner, &sub);
    CHECK(gguf_iter_next(&inner, &leaf) && leaf.arr_n == 2);
    CHECK_EQ_INT(gguf_arr_i32(&leaf, 0), 2);
    CHECK_EQ_INT(gguf_arr_i32(&leaf, 1), 3);
    CHECK(!gguf_iter_next(&outer, &sub));
    /* string iteration over a non-string array yields nothing */
    gguf_iter_init(&outer, &a);
    CHECK(!gguf_iter_next_str(&outer, &s));

    /* not a model: no architecture */
    eng_model *m = NULL;
    CHECK(eng_model_from_gguf(f, &m, &err) == -EINVAL);
    CHECK_MSG(strstr(err.msg, "missing key general.architecture"), "%s", err.msg);
    gguf_close(f);
    free(buf);

    /* nesting too deep */
    w = (gb_buf){0};
    for (int d = 0; d < 12; d++) {
        gb_put_u32(&w, GGUF_TYPE_ARRAY);
        gb_put_u64(&w, 1);
    }
    gb_put_u32(&w, GGUF_TYPE_UINT8);
    gb_put_u64(&w, 0);
    gb_set_raw(&b, "deep", GGUF_TYPE_ARRAY, w.p, w.len);
    free(w.p);
    expect_fail(&b, "key 'deep'", "nested deeper than");
    gb_free(&b);
}

/* ---------------------------------------------------------------- tensor infos */

static void test_tensor_errors(void)
{
    gb b;
    base(&b);
    b.keep_offsets = true;
    gb_tensor *t = gb_tensor_named(&b, "blk.3.attn_q.weight");
    uint64_t saved = t->offset;
    t->offset = 1ull << 40;
    expect_fail(&b, "tensor blk.3.attn_q.weight extends past end of file");
    t->offset = UINT64_MAX - 31;
    expect_fail(&b, "tensor blk.3.attn_q.weight extends past end of file");
    t->offset = saved + 4;
    expect_fail(&b, "tensor blk.3.attn_q.weight offset", "not a multiple of the alignment 32");
    t->offset = saved;
    /* dims that overflow */
    uint64_t ne_saved[4];
    memcpy(ne_saved, t->ne, sizeof ne_saved);
    t->n_dims = 4;
    t->ne[0] = 1ull << 32; t->ne[1] = 1ull << 32; t->ne[2] = 1ull << 32; t->ne[3] = 1;
    expect_fail(&b, "tensor blk.3.attn_q.weight dimensions overflow");
    t->ne[0] = UINT64_MAX; t->ne[1] = 1; t->ne[2] = 1;
    expect_fail(&b, "tensor blk.3.attn_q.weight dimensions overflow");
    t->ne[0] = 1ull << 62; t->ne[1] = 1;
    expect_fail(&b, "tensor blk.3.attn_q.weight"); /* overflows the byte size or the file */
    t->n_dims = 5;
    expect_fail(&b, "tensor blk.3.attn_q.weight has 5 dimensions");
    t->n_dims = 0;
    expect_fail(&b, "tensor blk.3.attn_q.weight has 0 dimensions");
    t->n_dims = 2;
    memcpy(t->ne, ne_saved, sizeof ne_saved);

    /* types */
    t->type = 16;
    expect_fail(&b, "tensor blk.3.attn_q.weight has type IQ2_XXS (16), which is not supported");
    t->type = 99;
    expect_fail(&b, "tensor blk.3.attn_q.weight has type", "(99)");
    t->type = ENG_TYPE_Q8_0; /* 64 % 32 == 0 but the data size no longer matches: fine for */
    t->ne[0] = 48;           /* the reader; 48 is not a multiple of 32 */
    expect_fail(&b, "tensor blk.3.attn_q.weight: row length 48 is not a multiple of the Q8_0");
    t->type = ENG_TYPE_F32;
    t->ne[0] = ne_saved[0];

    /* duplicate tensor name */
    strcpy(b.t[5].name, b.t[4].name);
    expect_fail(&b, "duplicate tensor name", b.t[4].name);
    gb_free(&b);

    /* empty and NUL-containing names */
    base(&b);
    b.t[0].name[0] = '\0';
    expect_fail(&b, "tensor #0 has an empty name");
    gb_free(&b);
}

/* ---------------------------------------------------------------- model checks */

static void test_model_errors(void)
{
    gb b;
    base(&b);
    gb_del_tensor(&b, "blk.2.ffn_up.weight");
    expect_fail(&b, "missing tensor blk.2.ffn_up.weight");
    gb_free(&b);

    base(&b);
    gb_del_tensor(&b, "output_norm.weight");
    expect_fail(&b, "missing tensor output_norm.weight");
    gb_free(&b);

    /* wrong shapes (offsets recomputed, so the file itself is valid) */
    base(&b);
    gb_tensor *t = gb_tensor_named(&b, "blk.1.attn_k.weight");
    t->ne[1] = 64;
    t->nbytes = 64 * 64 * 4;
    t->data = NULL;
    expect_fail(&b, "tensor blk.1.attn_k.weight has shape [64, 64], expected [64, 32]");
    t->ne[1] = 32;
    t->n_dims = 3;
    t->ne[2] = 1;
    {
        uint8_t *tb;
        eng_model *tm = expect_ok(&b, &tb); /* trailing 1-dims are fine */
        CHECK_EQ_INT(tm->layers[1].wk.rows, 32);
        eng_model_free(tm);
        free(tb);
    }
    t->n_dims = 2;
    gb_free(&b);

    base(&b);
    t = gb_tensor_named(&b, "blk.0.ffn_down.weight");
    t->ne[0] = 64; t->ne[1] = 172; /* transposed */
    expect_fail(&b, "tensor blk.0.ffn_down.weight has shape [64, 172], expected [172, 64]");
    gb_free(&b);

    base(&b);
    t = gb_tensor_named(&b, "token_embd.weight");
    t->ne[0] = 32;
    t->nbytes = 32 * 512 * 4;
    expect_fail(&b, "tensor token_embd.weight has shape [32, 512]");
    gb_free(&b);

    base(&b);
    t = gb_tensor_named(&b, "output.weight");
    t->ne[1] = 500;
    t->nbytes = 64 * 500 * 4;
    expect_fail(&b, "tensor output.weight has shape [64, 500], expected [64, 512]");
    gb_free(&b);

    /* norm weights must be 1-D F32 */
    base(&b);
    t = gb_tensor_named(&b, "blk.4.ffn_norm.weight");
    t->type = ENG_TYPE_F16;
    t->nbytes = 64 * 2;
    expect_fail(&b, "tensor blk.4.ffn_norm.weight must be 1-D F32", "has type F16");
    t->type = ENG_TYPE_F32;
    t->n_dims = 2;
    t->ne[0] = 32; t->ne[1] = 2;
    t->nbytes = 64 * 4;
    expect_fail(&b, "tensor blk.4.ffn_norm.weight must be 1-D F32", "shape [32, 2]");
    gb_free(&b);

    /* a quantized matrix is fine, with a consistent size */
    base(&b);
    t = gb_tensor_named(&b, "blk.0.attn_q.weight");
    t->type = ENG_TYPE_Q8_0;
    t->nbytes = 64 / 32 * 34 * 64;
    t->data = NULL;
    uint8_t *buf;
    eng_model *m = expect_ok(&b, &buf);
    CHECK_EQ_INT(m->layers[0].wq.type, ENG_TYPE_Q8_0);
    CHECK_EQ_INT(m->layers[0].wq.row_bytes, 68);
    eng_model_free(m);
    free(buf);
    gb_free(&b);

    /* tied output when output.weight is absent */
    base(&b);
    gb_del_tensor(&b, "output.weight");
    m = expect_ok(&b, &buf);
    CHECK(m->tied_output && m->output.data == m->tok_embd.data);
    eng_model_free(m);
    free(buf);
    gb_free(&b);

    /* architecture */
    base(&b);
    gb_set_str(&b, "general.architecture", "gpt2");
    expect_fail(&b, "unsupported architecture 'gpt2'");
    gb_set_u32(&b, "general.architecture", 1);
    expect_fail(&b, "general.architecture is not a string");
    gb_del(&b, "general.architecture");
    expect_fail(&b, "missing key general.architecture");
    gb_free(&b);

    /* vocabulary cross-check */
    base(&b);
    gb_buf w = {0};
    gb_put_u32(&w, GGUF_TYPE_STRING);
    gb_put_u64(&w, 2);
    gb_put_str(&w, "a");
    gb_put_str(&w, "b");
    gb_set_raw(&b, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY, w.p, w.len);
    free(w.p);
    expect_fail(&b, "tokenizer.ggml.tokens has 2 entries but token_embd.weight has 512 rows");
    gb_free(&b);
}

static void test_hparam_errors(void)
{
    struct { const char *key; uint32_t v; const char *msg; } cases[] = {
        {"llama.block_count", 0, "llama.block_count = 0 is out of range"},
        {"llama.block_count", 100000, "llama.block_count = 100000 is out of range"},
        {"llama.block_count", 6, "missing tensor blk.5.attn_norm.weight"},
        {"llama.embedding_length", 0, "llama.embedding_length = 0 is out of range"},
        {"llama.embedding_length", 65, "not a multiple of the head count"},
        {"llama.embedding_length", 128, "tensor token_embd.weight has shape [64, 512], expected [128,"},
        {"llama.feed_forward_length", 0, "llama.feed_forward_length = 0 is out of range"},
        {"llama.feed_forward_length", 171, "tensor blk.0.ffn_gate.weight has shape [64, 172], expected [64, 171]"},
        {"llama.attention.head_count", 0, "llama.attention.head_count = 0 is out of range"},
        {"llama.attention.head_count", 64, "head dimension"}, /* 64/64 = 1: too small */
        {"llama.attention.head_count_kv", 3, "not a multiple of the KV head count 3"},
        {"llama.attention.head_count_kv", 0, "llama.attention.head_count_kv = 0 is out of range"},
        {"llama.attention.head_count_kv", 16, "llama.attention.head_count_kv = 16 is out of range"},
        {"llama.attention.head_count_kv", 8, "tensor blk.0.attn_k.weight has shape [64, 32], expected [64, 64]"},
        {"llama.rope.dimension_count", 7, "rope dimension count 7 is odd"},
        {"llama.rope.dimension_count", 16, "llama.rope.dimension_count = 16 is out of range"},
        {"llama.context_length", 0, "llama.context_length = 0 is out of range"},
        {"llama.attention.key_length", 7, "head dimension 7 is odd"},
        {"llama.attention.key_length", 16, "tensor blk.0.attn_q.weight has shape [64, 64], expected [64, 128]"},
        {"llama.attention.value_length", 4, "value_length 4 differs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gb b;
        base(&b);
        gb_set_u32(&b, cases[i].key, cases[i].v);
        expect_fail(&b, cases[i].msg);
        gb_free(&b);
    }
    struct { const char *key; float v; const char *msg; } fcases[] = {
        {"llama.attention.layer_norm_rms_epsilon", -1.0f, "layer_norm_rms_epsilon = -1 is out of range"},
        {"llama.attention.layer_norm_rms_epsilon", 0.0f, "layer_norm_rms_epsilon = 0 is out of range"},
        {"llama.attention.layer_norm_rms_epsilon", NAN, "is out of range"},
        {"llama.rope.freq_base", 0.0f, "llama.rope.freq_base = 0 is out of range"},
        {"llama.rope.freq_base", INFINITY, "llama.rope.freq_base = inf is out of range"},
        {"llama.rope.scaling.factor", -2.0f, "llama.rope.scaling.factor = -2 is out of range"},
    };
    for (size_t i = 0; i < sizeof fcases / sizeof fcases[0]; i++) {
        gb b;
        base(&b);
        gb_set_f32(&b, fcases[i].key, fcases[i].v);
        expect_fail(&b, fcases[i].msg);
        gb_free(&b);
    }
    gb b;
    base(&b);
    gb_del(&b, "llama.embedding_length");
    expect_fail(&b, "missing key llama.embedding_length");
    gb_set_str(&b, "llama.embedding_length", "64");
    expect_fail(&b, "key llama.embedding_length has type string, expected an integer");
    gb_set_i32(&b, "llama.embedding_length", -64);
    expect_fail(&b, "key llama.embedding_length is out of range");
    gb_set_u32(&b, "llama.embedding_length", 64);
    gb_set_str(&b, "llama.rope.freq_base", "x");
    expect_fail(&b, "key llama.rope.freq_base has type string, expected a float");
    gb_set_f32(&b, "llama.rope.freq_base", 10000.0f);
    gb_set_str(&b, "llama.rope.scaling.type", "weird");
    expect_fail(&b, "unsupported rope scaling type 'weird'");
    gb_free(&b);

    /* defaults: head_count_kv = head_count, rms eps 1e-5, freq base 10000, rope dim */
    base(&b);
    gb_del(&b, "llama.attention.head_count_kv");
    gb_del(&b, "llama.attention.layer_norm_rms_epsilon");
    gb_del(&b, "llama.rope.dimension_count");
    for (int i = 0; i < 5; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", i);
        gb_tensor_named(&b, nm)->ne[1] = 64;
        gb_tensor_named(&b, nm)->nbytes = 64 * 64 * 4;
        gb_tensor_named(&b, nm)->data = NULL;
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", i);
        gb_tensor_named(&b, nm)->ne[1] = 64;
        gb_tensor_named(&b, nm)->nbytes = 64 * 64 * 4;
        gb_tensor_named(&b, nm)->data = NULL;
    }
    uint8_t *buf;
    eng_model *m = expect_ok(&b, &buf);
    CHECK_EQ_INT(m->hp.n_head_kv, 8);
    CHECK(m->hp.rms_eps == 1e-5f);
    CHECK(m->hp.rope_base == 10000.0f);
    CHECK_EQ_INT(m->hp.rope_dim, 8);
    CHECK_EQ_INT(m->hp.head_dim, 8);
    eng_model_free(m);
    free(buf);
    gb_free(&b);
}

/* ---------------------------------------------------------------- RoPE scaling */

static void test_rope_scaling(void)
{
    /* a rope_freqs tensor: rope_dim/2 = 4 F32 factors */
    float factors[4] = {1.0f, 1.5f, 4.0f, 8.0f};
    gb b;
    base(&b);
    uint64_t ne[1] = {4};
    gb_add_tensor(&b, "rope_freqs.weight", 1, ne, ENG_TYPE_F32, factors, sizeof factors);
    uint8_t *buf;
    eng_model *m = expect_ok(&b, &buf);
    CHECK(m->hp.rope_freqs != NULL);
    CHECK_EQ_INT(m->hp.rope_scaling_type, ENG_ROPE_SCALING_LLAMA3);
    for (int i = 0; i < 4; i++) CHECK(m->hp.rope_freqs[i] == factors[i]);
    CHECK(m->hp.rope_freqs == gguf_find_tensor(m->gguf, "rope_freqs.weight")->data);
    eng_model_free(m);
    free(buf);
    /* wrong length, wrong type, bad value */
    gb_tensor *t = gb_tensor_named(&b, "rope_freqs.weight");
    t->ne[0] = 3;
    t->nbytes = 12;
    expect_fail(&b, "tensor rope_freqs.weight must be 1-D F32 of rope_dim/2=4 values");
    t->ne[0] = 4;
    t->nbytes = 16;
    factors[2] = -1.0f;
    expect_fail(&b, "tensor rope_freqs.weight has a bad value -1");
    factors[2] = 4.0f;
    t->type = ENG_TYPE_F16;
    t->nbytes = 8;
    expect_fail(&b, "tensor rope_freqs.weight must be 1-D F32");
    gb_free(&b);

    /* llama3 keys without the tensor: factors computed */
    base(&b);
    gb_set_str(&b, "llama.rope.scaling.type", "llama3");
    gb_set_f32(&b, "llama.rope.freq_base", 500000.0f);
    gb_set_f32(&b, "llama.rope.scaling.factor", 8.0f);
    gb_set_u32(&b, "llama.rope.scaling.original_context_length", 8192);
    gb_set_f32(&b, "llama.rope.scaling.low_freq_factor", 1.0f);
    gb_set_f32(&b, "llama.rope.scaling.high_freq_factor", 4.0f);
    m = expect_ok(&b, &buf);
    const eng_hparams *hp = &m->hp;
    CHECK_EQ_INT(hp->rope_scaling_type, ENG_ROPE_SCALING_LLAMA3);
    CHECK(hp->rope_scale_factor == 8.0f && hp->rope_orig_ctx == 8192);
    CHECK(hp->rope_low_freq_factor == 1.0f && hp->rope_high_freq_factor == 4.0f);
    CHECK(hp->rope_freqs != NULL);
    /* pair 0: wavelength 2*pi, short: 1. pair 1: 500000^-0.25 -> wavelength ~167, short: 1.
     * pair 2: 500000^-0.5 -> wavelength ~4443, between 2048 and 8192: blended.
     * pair 3: wavelength ~118000 > 8192: the full factor 8. */
    CHECK(hp->rope_freqs[0] == 1.0f);
    CHECK(hp->rope_freqs[1] == 1.0f);
    double wl = 2.0 * M_PI * sqrt(500000.0);
    double smooth = (8192.0 / wl - 1.0) / 3.0;
    double expect = 1.0 / ((1.0 - smooth) / 8.0 + smooth);
    CHECK_MSG(fabs(hp->rope_freqs[2] - expect) < 1e-5 && hp->rope_freqs[2] > 1.0f &&
                  hp->rope_freqs[2] < 8.0f, "%g vs %g", (double)hp->rope_freqs[2], expect);
    CHECK(hp->rope_freqs[3] == 8.0f);
    eng_model_free(m);
    free(buf);
    gb_set_f32(&b, "llama.rope.scaling.high_freq_factor", 1.0f);
    expect_fail(&b, "llama.rope.scaling.high_freq_factor = 1 is out of range");
    gb_free(&b);

    /* linear: by type, by factor alone, by the old key */
    base(&b);
    gb_set_str(&b, "llama.rope.scaling.type", "linear");
    gb_set_f32(&b, "llama.rope.scaling.factor", 4.0f);
    m = expect_ok(&b, &buf);
    CHECK_EQ_INT(m->hp.rope_scaling_type, ENG_ROPE_SCALING_LINEAR);
    CHECK(m->hp.rope_scale_factor == 4.0f && m->hp.rope_freqs == NULL);
    eng_model_free(m);
    free(buf);
    gb_del(&b, "llama.rope.scaling.type");
    m = expect_ok(&b, &buf);
    CHECK_EQ_INT(m->hp.rope_scaling_type, ENG_ROPE_SCALING_LINEAR);
    eng_model_free(m);
    free(buf);
    gb_del(&b, "llama.rope.scaling.factor");
    gb_set_f32(&b, "llama.rope.scale_linear", 2.0f);
    m = expect_ok(&b, &buf);
    CHECK_EQ_INT(m->hp.rope_scaling_type, ENG_ROPE_SCALING_LINEAR);
    CHECK(m->hp.rope_scale_factor == 2.0f);
    CHECK_EQ_INT(m->hp.rope_orig_ctx, 2048);
    eng_model_free(m);
    free(buf);
    gb_set_str(&b, "llama.rope.scaling.type", "none");
    m = expect_ok(&b, &buf);
    CHECK_EQ_INT(m->hp.rope_scaling_type, ENG_ROPE_SCALING_NONE);
    eng_model_free(m);
    free(buf);
    gb_free(&b);
}

int main(void)
{
    g_260k = tu_read_file(tu_shared("models/stories260K.gguf"), &g_260k_len);
    eng_error err;
    CHECK_MSG(gguf_open_mem(g_260k, g_260k_len, &g_260k_f, &err) == 0, "%s", err.msg);

    test_header();
    test_metadata_errors();
    test_value_types();
    test_tensor_errors();
    test_model_errors();
    test_hparam_errors();
    test_rope_scaling();
    test_truncation();

    gguf_close(g_260k_f);
    free(g_260k);
    puts("gguf_corrupt: ok");
    return 0;
}
