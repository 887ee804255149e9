/* GGUF reader: see gguf.h. All reads go through a bounds-checked cursor; every size that
 * comes from the file is checked against what is left of it before it is used. */
#include "gguf.h"
#include "filemap.h"
#include "quant.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NEST 8            /* arrays of arrays: depth limit */
#define GGUF_MAX_NAME 4096         /* tensor name length limit (ggml uses 63) */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

struct gguf_file {
    const uint8_t *base;
    size_t size;
    bool mapped;
    eng_map_info map_info; /* gguf_open: what the 2 MiB page probe found */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    size_t n_kv;
    gguf_kv *kv;
    size_t n_tensors;
    gguf_tensor *tensors;
    char *names;           /* NUL-terminated tensor names */
    uint32_t *kv_hash;     /* open addressing: index + 1, 0 = empty */
    size_t kv_hash_cap;    /* power of two */
    uint32_t *t_hash;
    size_t t_hash_cap;
    size_t bookkeeping;
};

/* ------------------------------------------------------------------ type tables */

static const char *const vtype_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *gguf_vtype_name(uint32_t vtype)
{
    return vtype < GGUF_TYPE_COUNT ? vtype_names[vtype] : "?";
}

size_t gguf_vtype_size(uint32_t vtype)
{
    switch (vtype) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Tensor type layouts come from quant.h (eng_type_info_get / eng_type_name): only the
 * types the engine has kernels for are accepted. */
static int type_layout(uint32_t type, uint32_t *blck, uint32_t *bytes)
{
    const eng_type_info *ti = eng_type_info_get(type);
    if (ti == NULL) return -EINVAL;
    *blck = ti->block_elems;
    *bytes = ti->block_bytes;
    return 0;
}

/* ------------------------------------------------------------------ cursor */

typedef struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
    eng_error *err;
} cursor;

/* Prints at most 64 bytes of a name, replacing what is not printable ASCII. */
static const char *printable(const char *p, uint64_t len, char buf[80])
{
    size_t n = len > 64 ? 64 : (size_t)len, o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > 64) { buf[o++] = '.'; buf[o++] = '.'; buf[o++] = '.'; }
    buf[o] = '\0';
    return buf;
}

static int truncated(cursor *c, size_t need, const char *what)
{
    return eng_error_set(c->err, -EINVAL,
                         "file truncated: %s needs %zu bytes at offset %zu, file has %zu",
                         what, need, c->pos, c->size);
}

static inline bool have(const cursor *c, uint64_t n)
{
    return n <= c->size - c->pos;
}

static int rd_bytes(cursor *c, void *dst, size_t n, const char *what)
{
    if (!have(c, n)) return truncated(c, n, what);
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) { return rd_bytes(c, v, 4, what); }
static int rd_u64(cursor *c, uint64_t *v, const char *what) { return rd_bytes(c, v, 8, what); }

/* A string: u64 length + bytes, length checked against the rest of the file. */
static int rd_str(cursor *c, gguf_str *s, const char *what)
{
    uint64_t len = 0;
    size_t at = c->pos;
    int rc = rd_u64(c, &len, what);
    if (rc) return rc;
    if (!have(c, len))
        return eng_error_set(c->err, -EINVAL,
                             "%s at offset %zu has length %llu, past end of file (%zu bytes)",
                             what, at, (unsigned long long)len, c->size);
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return 0;
}

/* ------------------------------------------------------------------ values */

/* Parses one value of type vtype at the cursor into v (not for ARRAY's header fields:
 * handles them too). key is for messages. */
static int parse_value(cursor *c, uint32_t vtype, gguf_value *v, gguf_str key, int depth);

static int bad_key(cursor *c, gguf_str key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad_key(cursor *c, gguf_str key, const char *fmt, ...)
{
    char kb[80];
    char tail[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    return eng_error_set(c->err, -EINVAL, "key '%s': %s", printable(key.ptr, key.len, kb), tail);
}

static int parse_array(cursor *c, gguf_value *v, gguf_str key, int depth)
{
    uint32_t at = 0;
    uint64_t n = 0;
    int rc;
    if (depth >= GGUF_MAX_NEST)
        return bad_key(c, key, "arrays nested deeper than %d levels", GGUF_MAX_NEST);
    if ((rc = rd_u32(c, &at, "array element type")) || (rc = rd_u64(c, &n, "array length")))
        return rc;
    if (at >= GGUF_TYPE_COUNT)
        return bad_key(c, key, "unknown array element type %u", at);
    size_t start = c->pos;
    size_t esz = gguf_vtype_size(at);
    if (esz != 0) {
        if (n > (c->size - c->pos) / esz)
            return bad_key(c, key, "array of %llu elements of %zu bytes extends past end of file",
                           (unsigned long long)n, esz);
        c->pos += (size_t)(n * esz);
    } else {
        /* strings take at least 8 bytes each, nested arrays at least 12 */
        size_t minsz = at == GGUF_TYPE_STRING ? 8 : 12;
        if (n > (c->size - c->pos) / minsz)
            return bad_key(c, key, "array of %llu %ss extends past end of file",
                           (unsigned long long)n, gguf_vtype_name(at));
        for (uint64_t i = 0; i < n; i++) {
            if (at == GGUF_TYPE_STRING) {
                gguf_str s;
                if ((rc = rd_str(c, &s, "array string")))
                    return rc;
            } else {
                gguf_value sub;
                if ((rc = parse_array(c, &sub, key, depth + 1)))
                    return rc;
            }
        }
    }
    v->type = GGUF_TYPE_ARRAY;
    v->arr_type = at;
    v->arr_n = n;
    v->data = c->base + start;
    v->size = c->pos - start;
    return 0;
}

static int parse_value(cursor *c, uint32_t vtype, gguf_value *v, gguf_str key, int depth)
{
    memset(v, 0, sizeof *v);
    if (vtype == GGUF_TYPE_ARRAY)
        return parse_array(c, v, key, depth);
    if (vtype == GGUF_TYPE_STRING) {
        gguf_str s;
        int rc = rd_str(c, &s, "string value");
        if (rc) return rc;
        v->type = vtype;
        v->data = (const uint8_t *)s.ptr;
        v->size = s.len;
        return 0;
    }
    size_t sz = gguf_vtype_size(vtype);
    if (sz == 0)
        return bad_key(c, key, "unknown value type %u", vtype);
    if (!have(c, sz)) return truncated(c, sz, "value");
    v->type = vtype;
    v->data = c->base + c->pos;
    v->size = sz;
    c->pos += sz;
    return 0;
}

/* ------------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const char *p, uint64_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static size_t hash_cap(size_t n)
{
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    return cap;
}

static bool str_eq(gguf_str a, const char *p, uint64_t len)
{
    return a.len == len && memcmp(a.ptr, p, (size_t)len) == 0;
}

/* The open-addressing tables (kv_hash, t_hash): slots hold an entry index + 1, 0 = empty;
 * cap is a power of two; the string of entry i is the gguf_str at byte str_off of
 * entries[i] (esz bytes each). Looks up (p, len): returns the entry index + 1, or 0 with
 * *ret_slot the empty slot where it would go. */
static uint32_t table_probe(const uint32_t *slots, size_t cap, const void *entries, size_t esz,
                            size_t str_off, const char *p, uint64_t len, size_t *ret_slot)
{
    const size_t mask = cap - 1;
    size_t h = (size_t)hash_bytes(p, len) & mask;
    while (slots[h] != 0) {
        const gguf_str *e = (const gguf_str *)(const void *)((const char *)entries +
                                                              (size_t)(slots[h] - 1) * esz + str_off);
        if (str_eq(*e, p, len)) return slots[h];
        h = (h + 1) & mask;
    }
    if (ret_slot != NULL) *ret_slot = h;
    return 0;
}

#define KV_PROBE(f, p, len, slot) \
    table_probe((f)->kv_hash, (f)->kv_hash_cap, (f)->kv, sizeof *(f)->kv, offsetof(gguf_kv, key), p, len, slot)
#define TENSOR_PROBE(f, p, len, slot)                                                             \
    table_probe((f)->t_hash, (f)->t_hash_cap, (f)->tensors, sizeof *(f)->tensors,                \
                offsetof(gguf_tensor, name), p, len, slot)

/* ------------------------------------------------------------------ open */

static int set_oom(eng_error *err, const char *what)
{
    return eng_error_set(err, -ENOMEM, "out of memory for %s", what);
}

static int parse(gguf_file *f, eng_error *err)
{
    cursor c = {.base = f->base, .size = f->size, .pos = 0, .err = err};
    uint32_t magic = 0, version = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    int rc;

    if (f->size < 4 || memcmp(f->base, "GGUF", 4) != 0)
        return eng_error_set(err, -EINVAL, "not a GGUF file (bad magic)");
    (void)rd_u32(&c, &magic, "magic");
    if ((rc = rd_u32(&c, &version, "version"))) return rc;
    if (version == 1)
        return eng_error_set(err, -ENOTSUP, "GGUF v1 is unsupported (only versions 2 and 3)");
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version != 0)
            return eng_error_set(err, -ENOTSUP, "big-endian GGUF is unsupported");
        return eng_error_set(err, -ENOTSUP, "GGUF version %u is unsupported (only 2 and 3)",
                             version);
    }
    f->version = version;
    if ((rc = rd_u64(&c, &n_tensors, "tensor count")) || (rc = rd_u64(&c, &n_kv, "key count")))
        return rc;

    /* Each key/value takes at least 13 bytes, each tensor info at least 32: bound the
     * counts by the file size before allocating anything for them. */
    if (n_kv > (c.size - c.pos) / 13)
        return eng_error_set(err, -EINVAL, "key count %llu is too large for a file of %zu bytes",
                             (unsigned long long)n_kv, c.size);
    if (n_tensors > (c.size - c.pos) / 32)
        return eng_error_set(err, -EINVAL,
                             "tensor count %llu is too large for a file of %zu bytes",
                             (unsigned long long)n_tensors, c.size);
    if (n_kv >= UINT32_MAX || n_tensors >= UINT32_MAX)
        return eng_error_set(err, -EINVAL, "too many keys or tensors");

    f->n_kv = (size_t)n_kv;
    f->n_tensors = (size_t)n_tensors;
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->kv_hash_cap = hash_cap(f->n_kv);
    f->kv_hash = calloc(f->kv_hash_cap, sizeof *f->kv_hash);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    f->t_hash_cap = hash_cap(f->n_tensors);
    f->t_hash = calloc(f->t_hash_cap, sizeof *f->t_hash);
    if (!f->kv || !f->kv_hash || !f->tensors || !f->t_hash) return set_oom(err, "gguf tables");
    f->bookkeeping = sizeof *f + f->n_kv * sizeof *f->kv + f->kv_hash_cap * sizeof *f->kv_hash +
                     f->n_tensors * sizeof *f->tensors + f->t_hash_cap * sizeof *f->t_hash;

    /* metadata */
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        uint32_t vtype = 0;
        char what[64];
        snprintf(what, sizeof what, "key #%zu", i);
        if ((rc = rd_str(&c, &kv->key, what))) return rc;
        if ((rc = rd_u32(&c, &vtype, "value type"))) return rc;
        if (vtype >= GGUF_TYPE_COUNT) {
            char kb[80];
            return eng_error_set(err, -EINVAL, "key '%s' has unknown value type %u",
                                 printable(kv->key.ptr, kv->key.len, kb), vtype);
        }
        if ((rc = parse_value(&c, vtype, &kv->val, kv->key, 0))) return rc;

        /* unique keys */
        size_t h;
        if (KV_PROBE(f, kv->key.ptr, kv->key.len, &h) != 0) {
            char kb[80];
            return eng_error_set(err, -EINVAL, "duplicate key '%s'",
                                 printable(kv->key.ptr, kv->key.len, kb));
        }
        f->kv_hash[h] = (uint32_t)i + 1;
    }

    const gguf_value *al = gguf_find(f, "general.alignment");
    if (al != NULL) {
        uint64_t a;
        int arc = gguf_value_u64(al, &a);
        if (arc == -EINVAL)
            return eng_error_set(err, -EINVAL, "bad alignment: general.alignment has type %s, "
                                 "not an integer", gguf_vtype_name(al->type));
        if (arc != 0 || a == 0 || a > (1u << 30) || (a & (a - 1)) != 0)
            return eng_error_set(err, -EINVAL, "bad alignment: general.alignment %llu is not a "
                                 "power of two (1..2^30)", arc ? 0ull : (unsigned long long)a);
        f->alignment = (uint32_t)a;
    }

    /* tensor infos: names are copied (NUL-terminated) into one pool, so first record where
     * each is, then copy. Pool size is bounded by the file size. */
    size_t names_total = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char what[64];
        snprintf(what, sizeof what, "name of tensor #%zu", i);
        if ((rc = rd_str(&c, &t->name, what))) return rc;
        char nb[80];
        const char *nm = printable(t->name.ptr, t->name.len, nb);
        if (t->name.len == 0)
            return eng_error_set(err, -EINVAL, "tensor #%zu has an empty name", i);
        if (t->name.len > GGUF_MAX_NAME)
            return eng_error_set(err, -EINVAL, "tensor #%zu name is too long (%llu bytes)", i,
                                 (unsigned long long)t->name.len);
        if (memchr(t->name.ptr, '\0', (size_t)t->name.len) != NULL)
            return eng_error_set(err, -EINVAL, "tensor name '%s' contains a NUL byte", nm);
        names_total += (size_t)t->name.len + 1;

        if ((rc = rd_u32(&c, &t->n_dims, "tensor dimension count"))) return rc;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return eng_error_set(err, -EINVAL, "tensor %s has %u dimensions (1..%d allowed)", nm,
                                 t->n_dims, GGUF_MAX_DIMS);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((rc = rd_u64(&c, &t->ne[d], "tensor dimension"))) return rc;
        if ((rc = rd_u32(&c, &t->type, "tensor type")) ||
            (rc = rd_u64(&c, &t->offset, "tensor offset")))
            return rc;

        uint32_t blck, bsz;
        if (type_layout(t->type, &blck, &bsz) != 0)
            return eng_error_set(err, -EINVAL, "tensor %s has type %s (%u), which is not supported",
                                 nm, eng_type_name(t->type), t->type);
        /* element count and byte size, overflow-checked (ggml caps at INT64_MAX) */
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            if (t->ne[d] > INT64_MAX ||
                (t->ne[d] != 0 && nel > (uint64_t)INT64_MAX / t->ne[d]))
                return eng_error_set(err, -EINVAL,
                                     "tensor %s dimensions overflow (element count too large)",
                                     nm);
            nel *= t->ne[d];
        }
        if (t->ne[0] % blck != 0)
            return eng_error_set(err, -EINVAL,
                                 "tensor %s: row length %llu is not a multiple of the %s block "
                                 "size %u", nm, (unsigned long long)t->ne[0],
                                 eng_type_name(t->type), blck);
        uint64_t nblocks = nel / blck;
        if (nblocks != 0 && bsz > UINT64_MAX / nblocks)
            return eng_error_set(err, -EINVAL, "tensor %s dimensions overflow (byte size)", nm);
        t->n_elements = nel;
        t->nbytes = nblocks * bsz;
    }

    /* data section */
    uint64_t data_off = c.pos;
    uint64_t pad = (f->alignment - data_off % f->alignment) % f->alignment;
    data_off += pad;
    f->data_offset = data_off;
    if (f->n_tensors > 0 && data_off > f->size)
        return eng_error_set(err, -EINVAL,
                             "tensor data section starts at %llu, past end of file (%zu bytes)",
                             (unsigned long long)data_off, f->size);
    uint64_t data_size = data_off <= f->size ? f->size - data_off : 0;

    for (size_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char nb[80];
        const char *nm = printable(t->name.ptr, t->name.len, nb);
        if (t->offset % f->alignment != 0)
            return eng_error_set(err, -EINVAL,
                                 "tensor %s offset %llu is not a multiple of the alignment %u", nm,
                                 (unsigned long long)t->offset, f->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return eng_error_set(err, -EINVAL, "tensor %s extends past end of file", nm);
        t->data = f->base + data_off + t->offset;
    }

    /* names pool, and unique names */
    f->names = malloc(names_total ? names_total : 1);
    if (!f->names) return set_oom(err, "tensor names");
    f->bookkeeping += names_total;
    char *np = f->names;
    for (size_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        memcpy(np, t->name.ptr, (size_t)t->name.len);
        np[t->name.len] = '\0';
        t->name.ptr = np;
        np += t->name.len + 1;
        size_t h;
        if (TENSOR_PROBE(f, t->name.ptr, t->name.len, &h) != 0) {
            char nb[80];
            return eng_error_set(err, -EINVAL, "duplicate tensor name %s",
                                 printable(t->name.ptr, t->name.len, nb));
        }
        f->t_hash[h] = (uint32_t)i + 1;
    }
    return 0;
}

static int open_common(const uint8_t *base, size_t size, bool mapped, gguf_file **ret,
                       eng_error *err)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return set_oom(err, "gguf file");
    f->base = base;
    f->size = size;
    f->mapped = mapped;
    eng_error_clear(err);
    int rc = parse(f, err);
    if (rc != 0) {
        f->mapped = false; /* the caller unmaps on failure */
        gguf_close(f);
        return rc;
    }
    *ret = f;
    return 0;
}

int gguf_open_mem(const void *data, size_t len, gguf_file **ret, eng_error *err)
{
    if (data == NULL && len != 0)
        return eng_error_set(err, -EINVAL, "NULL buffer");
    if (len == 0)
        return eng_error_set(err, -EINVAL, "not a GGUF file (empty)");
    return open_common(data, len, false, ret, err);
}

int gguf_open(const char *path, gguf_file **ret, eng_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return eng_error_set(err, -e, "cannot open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return eng_error_set(err, -e, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return eng_error_set(err, -EINVAL, "%s is not a regular file", path);
    }
    if (st.st_size <= 0) {
        close(fd);
        return eng_error_set(err, -EINVAL, "%s: not a GGUF file (empty)", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return eng_error_set(err, -EFBIG, "%s is too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    eng_map_info mi;
    void *map = eng_map_file(fd, size, &mi);
    int e = errno;
    close(fd);
    if (map == NULL)
        return eng_error_set(err, -e, "cannot map %s: %s", path, strerror(e));
    int rc = open_common(map, size, true, ret, err);
    if (rc == 0) (*ret)->map_info = mi;
    if (rc != 0) {
        munmap(map, size);
        /* prefix the message with the path */
        if (err != NULL) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            eng_error_set(err, rc, "%s: %s", path, msg);
        }
    }
    return rc;
}

void gguf_close(gguf_file *f)
{
    if (f == NULL) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f->kv);
    free(f->kv_hash);
    free(f->tensors);
    free(f->t_hash);
    free(f->names);
    free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
eng_map_info gguf_map_info(const gguf_file *f) { return f->map_info; }

size_t gguf_file_size(const gguf_file *f) { return f->size; }
const void *gguf_file_data(const gguf_file *f) { return f->base; }
size_t gguf_bookkeeping_bytes(const gguf_file *f) { return f->bookkeeping; }

/* ------------------------------------------------------------------ metadata lookup */

size_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }

const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i)
{
    return i < f->n_kv ? &f->kv[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    const uint32_t i = KV_PROBE(f, key, strlen(key), NULL);
    return i ? &f->kv[i - 1] : NULL;
}

const gguf_value *gguf_find(const gguf_file *f, const char *key)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    return kv ? &kv->val : NULL;
}

bool gguf_str_eq(gguf_str s, const char *cstr)
{
    return str_eq(s, cstr, strlen(cstr));
}

/* Reads a scalar integer of any integer type (or bool) from raw bytes. is_signed tells how
 * to interpret the result: u holds the value for unsigned, s for signed. */
static bool read_int(uint32_t type, const uint8_t *p, bool *is_signed, uint64_t *u, int64_t *s)
{
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: { uint8_t v; memcpy(&v, p, 1); *u = v; *is_signed = false; return true; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *u = v; *is_signed = false; return true; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *u = v; *is_signed = false; return true; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); *u = v; *is_signed = false; return true; }
    case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); *s = v; *is_signed = true; return true; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *s = v; *is_signed = true; return true; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *s = v; *is_signed = true; return true; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *s = v; *is_signed = true; return true; }
    default: return false;
    }
}

int gguf_value_u64(const gguf_value *v, uint64_t *ret)
{
    bool sg;
    uint64_t u = 0;
    int64_t s = 0;
    if (!read_int(v->type, v->data, &sg, &u, &s)) return -EINVAL;
    if (sg) {
        if (s < 0) return -ERANGE;
        u = (uint64_t)s;
    }
    *ret = u;
    return 0;
}

int gguf_value_i64(const gguf_value *v, int64_t *ret)
{
    bool sg;
    uint64_t u = 0;
    int64_t s = 0;
    if (!read_int(v->type, v->data, &sg, &u, &s)) return -EINVAL;
    if (!sg) {
        if (u > INT64_MAX) return -ERANGE;
        s = (int64_t)u;
    }
    *ret = s;
    return 0;
}

int gguf_value_f64(const gguf_value *v, double *ret)
{
    if (v->type == GGUF_TYPE_FLOAT32) {
        float x;
        memcpy(&x, v->data, 4);
        *ret = x;
        return 0;
    }
    if (v->type == GGUF_TYPE_FLOAT64) {
        double x;
        memcpy(&x, v->data, 8);
        *ret = x;
        return 0;
    }
    return -EINVAL;
}

int gguf_value_str(const gguf_value *v, gguf_str *ret)
{
    if (v->type != GGUF_TYPE_STRING) return -EINVAL;
    ret->ptr = (const char *)v->data;
    ret->len = v->size;
    return 0;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *ret)
{
    const gguf_value *v = gguf_find(f, key);
    return v ? gguf_value_u64(v, ret) : -ENOENT;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *ret)
{
    const gguf_value *v = gguf_find(f, key);
    return v ? gguf_value_i64(v, ret) : -ENOENT;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *ret)
{
    uint64_t u;
    int rc = gguf_get_u64(f, key, &u);
    if (rc) return rc;
    if (u > UINT32_MAX) return -ERANGE;
    *ret = (uint32_t)u;
    return 0;
}

int gguf_get_i32(const gguf_file *f, const char *key, int32_t *ret)
{
    int64_t s;
    int rc = gguf_get_i64(f, key, &s);
    if (rc) return rc;
    if (s < INT32_MIN || s > INT32_MAX) return -ERANGE;
    *ret = (int32_t)s;
    return 0;
}

int gguf_get_f64(const gguf_file *f, const char *key, double *ret)
{
    const gguf_value *v = gguf_find(f, key);
    return v ? gguf_value_f64(v, ret) : -ENOENT;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *ret)
{
    double d;
    int rc = gguf_get_f64(f, key, &d);
    if (rc) return rc;
    *ret = (float)d;
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *ret)
{
    const gguf_value *v = gguf_find(f, key);
    if (!v) return -ENOENT;
    if (v->type != GGUF_TYPE_BOOL) return -EINVAL;
    *ret = v->data[0] != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *ret)
{
    const gguf_value *v = gguf_find(f, key);
    return v ? gguf_value_str(v, ret) : -ENOENT;
}

int gguf_get_arr(const gguf_file *f, const char *key, uint32_t elem_type, gguf_value *ret)
{
    const gguf_value *v = gguf_find(f, key);
    if (!v) return -ENOENT;
    if (v->type != GGUF_TYPE_ARRAY) return -EINVAL;
    if (elem_type != GGUF_TYPE_COUNT && v->arr_type != elem_type) return -EINVAL;
    *ret = *v;
    return 0;
}

/* ------------------------------------------------------------------ array elements */

static const uint8_t *elem_ptr(const gguf_value *arr, uint32_t type, uint64_t i)
{
    if (arr->type != GGUF_TYPE_ARRAY || arr->arr_type != type || i >= arr->arr_n) return NULL;
    return arr->data + i * gguf_vtype_size(type);
}

float gguf_arr_f32(const gguf_value *arr, uint64_t i)
{
    const uint8_t *p = elem_ptr(arr, GGUF_TYPE_FLOAT32, i);
    float v = 0.0f;
    if (p) memcpy(&v, p, 4);
    return v;
}

int32_t gguf_arr_i32(const gguf_value *arr, uint64_t i)
{
    const uint8_t *p = elem_ptr(arr, GGUF_TYPE_INT32, i);
    int32_t v = 0;
    if (p) memcpy(&v, p, 4);
    return v;
}

uint32_t gguf_arr_u32(const gguf_value *arr, uint64_t i)
{
    const uint8_t *p = elem_ptr(arr, GGUF_TYPE_UINT32, i);
    uint32_t v = 0;
    if (p) memcpy(&v, p, 4);
    return v;
}

int64_t gguf_arr_int(const gguf_value *arr, uint64_t i)
{
    if (arr->type != GGUF_TYPE_ARRAY || i >= arr->arr_n) return 0;
    size_t esz = gguf_vtype_size(arr->arr_type);
    bool sg;
    uint64_t u = 0;
    int64_t s = 0;
    if (esz == 0 || !read_int(arr->arr_type, arr->data + i * esz, &sg, &u, &s)) return 0;
    if (sg) return s;
    return u > INT64_MAX ? INT64_MAX : (int64_t)u;
}

int gguf_arr_copy(const gguf_value *arr, uint32_t dst_type, uint64_t first, uint64_t n,
                  void *dst)
{
    if (arr->type != GGUF_TYPE_ARRAY) return -EINVAL;
    size_t esz = gguf_vtype_size(arr->arr_type);
    size_t dsz = gguf_vtype_size(dst_type);
    if (esz == 0 || dsz == 0) return -EINVAL;
    if (first > arr->arr_n || n > arr->arr_n - first) return -ERANGE;
    const uint8_t *src = arr->data + first * esz;
    if (arr->arr_type == dst_type) {
        memcpy(dst, src, (size_t)(n * esz));
        return 0;
    }
    if (dst_type == GGUF_TYPE_FLOAT32 && arr->arr_type == GGUF_TYPE_FLOAT64) {
        float *d = dst;
        for (uint64_t i = 0; i < n; i++) {
            double x;
            memcpy(&x, src + i * 8, 8);
            d[i] = (float)x;
        }
        return 0;
    }
    if (dst_type == GGUF_TYPE_INT32) {
        int32_t *d = dst;
        for (uint64_t i = 0; i < n; i++) {
            bool sg;
            uint64_t u = 0;
            int64_t s = 0;
            if (!read_int(arr->arr_type, src + i * esz, &sg, &u, &s)) return -EINVAL;
            if (!sg) {
                if (u > INT32_MAX) return -ERANGE;
                s = (int64_t)u;
            }
            if (s < INT32_MIN || s > INT32_MAX) return -ERANGE;
            d[i] = (int32_t)s;
        }
        return 0;
    }
    return -EINVAL;
}

/* ------------------------------------------------------------------ iteration */

void gguf_iter_init(gguf_iter *it, const gguf_value *arr)
{
    memset(it, 0, sizeof *it);
    if (arr->type != GGUF_TYPE_ARRAY) return;
    it->p = arr->data;
    it->end = arr->data + arr->size;
    it->elem_type = arr->arr_type;
    it->n = arr->arr_n;
}

/* Elements were validated at open; the checks here only keep a corrupted iterator (or one
 * built by hand) from reading outside [p, end). */
bool gguf_iter_next(gguf_iter *it, gguf_value *ret)
{
    if (it->index >= it->n || it->p == NULL) return false;
    size_t left = (size_t)(it->end - it->p);
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = it->elem_type;
    size_t esz = gguf_vtype_size(it->elem_type);
    if (esz != 0) {
        if (left < esz) return false;
        v.data = it->p;
        v.size = esz;
        it->p += esz;
    } else if (it->elem_type == GGUF_TYPE_STRING) {
        uint64_t len;
        if (left < 8) return false;
        memcpy(&len, it->p, 8);
        if (len > left - 8) return false;
        v.data = it->p + 8;
        v.size = len;
        it->p += 8 + len;
    } else if (it->elem_type == GGUF_TYPE_ARRAY) {
        /* nested: header then elements; find its end by walking it */
        uint32_t at;
        uint64_t n;
        if (left < 12) return false;
        memcpy(&at, it->p, 4);
        memcpy(&n, it->p + 4, 8);
        cursor c = {.base = it->p, .size = left, .pos = 0, .err = NULL};
        gguf_value sub;
        gguf_str nokey = {"", 0};
        if (parse_array(&c, &sub, nokey, 0) != 0) return false;
        (void)at;
        (void)n;
        v = sub;
        it->p += c.pos;
    } else {
        return false;
    }
    it->index++;
    *ret = v;
    return true;
}

bool gguf_iter_next_str(gguf_iter *it, gguf_str *ret)
{
    if (it->elem_type != GGUF_TYPE_STRING) return false;
    gguf_value v;
    if (!gguf_iter_next(it, &v)) return false;
    ret->ptr = (const char *)v.data;
    ret->len = v.size;
    return true;
}

/* ------------------------------------------------------------------ tensors */

size_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    const uint32_t i = TENSOR_PROBE(f, name, strlen(name), NULL);
    return i ? &f->tensors[i - 1] : NULL;
}
