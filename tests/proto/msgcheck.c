/* Descriptor-driven message checks for the proto tests. See msgcheck.h. */
#include "msgcheck.h"

#include <stdint.h>
#include <string.h>

#include "testutil.h"

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    tu_fail(__FILE__, __LINE__, "unknown protobuf-c type %d", (int)t);
}

static const void *field_ptr(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    return (const char *)m + f->offset;
}

static size_t repeated_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    size_t n;
    memcpy(&n, (const char *)m + f->quantifier_offset, sizeof n);
    return n;
}

/* For a oneof member: is it the selected one? */
static bool oneof_selected(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    uint32_t c;
    memcpy(&c, (const char *)m + f->quantifier_offset, sizeof c);
    return c == f->id;
}

static bool is_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

static bool value_equal(const ProtobufCFieldDescriptor *f, const void *pa, const void *pb)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *a = *(char *const *)pa, *b = *(char *const *)pb;
        if (!a || !b)
            return a == b;
        return strcmp(a, b) == 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *a = pa, *b = pb;
        return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *a = *(ProtobufCMessage *const *)pa;
        const ProtobufCMessage *b = *(ProtobufCMessage *const *)pb;
        if (!a || !b)
            return a == b;
        return mc_equal(a, b);
    }
    case PROTOBUF_C_TYPE_BOOL: /* any non-zero is true */
        return !*(const protobuf_c_boolean *)pa == !*(const protobuf_c_boolean *)pb;
    default:
        return memcmp(pa, pb, elem_size(f->type)) == 0; /* floats: bit-exact */
    }
}

bool mc_equal(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    if (a->descriptor != b->descriptor)
        return false;
    const ProtobufCMessageDescriptor *d = a->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = repeated_count(a, f);
            if (n != repeated_count(b, f))
                return false;
            const char *ea = *(char *const *)field_ptr(a, f);
            const char *eb = *(char *const *)field_ptr(b, f);
            size_t sz = elem_size(f->type);
            for (size_t k = 0; k < n; k++)
                if (!value_equal(f, ea + k * sz, eb + k * sz))
                    return false;
            continue;
        }
        if (is_oneof(f)) {
            bool sa = oneof_selected(a, f), sb = oneof_selected(b, f);
            if (sa != sb)
                return false;
            if (!sa)
                continue;
        }
        if (!value_equal(f, field_ptr(a, f), field_ptr(b, f)))
            return false;
    }
    return a->n_unknown_fields == b->n_unknown_fields;
}

/* ---- coverage ------------------------------------------------------------------------- */

#define MAX_SEEN 1024
static struct {
    const ProtobufCMessageDescriptor *d;
    unsigned field;
} seen[MAX_SEEN];
static int n_seen;

static void mark_seen(const ProtobufCMessageDescriptor *d, unsigned field)
{
    for (int i = 0; i < n_seen; i++)
        if (seen[i].d == d && seen[i].field == field)
            return;
    CHECK(n_seen < MAX_SEEN);
    seen[n_seen].d = d;
    seen[n_seen].field = field;
    n_seen++;
}

static bool was_seen(const ProtobufCMessageDescriptor *d, unsigned field)
{
    for (int i = 0; i < n_seen; i++)
        if (seen[i].d == d && seen[i].field == field)
            return true;
    return false;
}

static bool value_is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p == NULL;
    default: {
        static const uint8_t zero[16];
        return memcmp(p, zero, elem_size(f->type)) == 0;
    }
    }
}

void mc_check_all_set(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = repeated_count(m, f);
            CHECK_MSG(n > 0, "%s.%s: repeated field is empty", d->name, f->name);
            const char *e = *(char *const *)field_ptr(m, f);
            size_t sz = elem_size(f->type);
            for (size_t k = 0; k < n; k++) {
                CHECK_MSG(!value_is_default(f, e + k * sz), "%s.%s[%zu] has the default value",
                          d->name, f->name, k);
                if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                    mc_check_all_set(*(ProtobufCMessage *const *)(e + k * sz));
            }
        } else if (is_oneof(f)) {
            if (!oneof_selected(m, f))
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                const ProtobufCMessage *sub = *(ProtobufCMessage *const *)field_ptr(m, f);
                CHECK_MSG(sub, "%s.%s: selected but NULL", d->name, f->name);
                mc_check_all_set(sub);
            }
        } else {
            CHECK_MSG(!value_is_default(f, field_ptr(m, f)), "%s.%s has the default value",
                      d->name, f->name);
            if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                mc_check_all_set(*(ProtobufCMessage *const *)field_ptr(m, f));
        }
        mark_seen(d, i);
    }
}

static int coverage_walk(const ProtobufCMessageDescriptor *d,
                         const ProtobufCMessageDescriptor **visited, int *n_visited)
{
    for (int i = 0; i < *n_visited; i++)
        if (visited[i] == d)
            return 0;
    CHECK(*n_visited < 256);
    visited[(*n_visited)++] = d;
    int n = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        CHECK_MSG(was_seen(d, i), "field %s.%s was never set in a round trip", d->name,
                  f->name);
        n++;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            n += coverage_walk(f->descriptor, visited, n_visited);
    }
    return n;
}

int mc_check_coverage(const ProtobufCMessageDescriptor *root)
{
    const ProtobufCMessageDescriptor *visited[256];
    int n_visited = 0;
    return coverage_walk(root, visited, &n_visited);
}
