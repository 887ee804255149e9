/* GGUF reader (versions 2 and 3, little-endian) over a read-only mmap or a caller's buffer.
 *
 * gguf_open() maps the file read-only and parses the header, every metadata key/value, the
 * tensor infos, the alignment (general.alignment, default 32, a power of two) and the start of
 * the tensor data. Every count, length and offset read from the file is checked against the
 * file size (overflow-safe) before it is used; an invalid or truncated file gives an
 * eng_error whose message names the problem, never a crash. GGUF v1 is rejected.
 *
 * Nothing is copied: metadata strings and arrays are read in place from the map, tensor data
 * pointers point into it. Bookkeeping is O(number of keys + number of tensors) (a few dozen
 * bytes each, plus a NUL-terminated copy of each tensor name), independent of array sizes.
 *
 * Metadata values in the file are not aligned: pointers to raw value bytes (gguf_value.data)
 * may be misaligned for their element type. Read elements with the accessors below (they
 * use memcpy), or memcpy yourself; never cast gguf_value.data to float* and dereference.
 *
 * A gguf_file is immutable after opening; all read functions may be called from any thread.
 * Everything returned (gguf_str, gguf_value, gguf_tensor pointers) stays valid until
 * gguf_close().
 */
#ifndef LLAMAD_GGUF_H
#define LLAMAD_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng_error.h"
#include "filemap.h"

/* A string inside the file: ptr/len, NOT NUL-terminated (except gguf_tensor.name, see below). */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

/* GGUF metadata value types (the numbers are the file format's). */
enum gguf_vtype {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT = 13,
};

/* Name of a value type ("u32", "string", "array", ...); "?" for an unknown one. */
const char *gguf_vtype_name(uint32_t vtype);

/* Size in bytes of one value of a fixed-size type (1, 2, 4 or 8); 0 for STRING, ARRAY and
 * unknown types. */
size_t gguf_vtype_size(uint32_t vtype);

/* One metadata value, in place in the file.
 *   scalar (fixed-size) types: data points to the value's bytes (little-endian), size = its size.
 *   STRING: data points to the characters, size = length in bytes (no NUL).
 *   ARRAY:  arr_type = element type, arr_n = element count, data points to the first element
 *           (its raw encoding), size = total bytes of all elements. For fixed-size element
 *           types element i is at data + i * gguf_vtype_size(arr_type); string and nested-array
 *           elements have variable size: walk them with gguf_iter.
 * Every value was validated at open (all lengths inside the file, nesting depth limited),
 * so reading it through these accessors cannot go out of bounds. */
typedef struct gguf_value {
    uint32_t type;       /* enum gguf_vtype */
    uint32_t arr_type;   /* element type when type == GGUF_TYPE_ARRAY, else 0 */
    uint64_t arr_n;      /* element count when type == GGUF_TYPE_ARRAY, else 0 */
    const uint8_t *data; /* raw bytes in the file (may be unaligned) */
    uint64_t size;       /* bytes at data */
} gguf_value;

/* One metadata key/value pair. */
typedef struct gguf_kv {
    gguf_str key; /* not NUL-terminated */
    gguf_value val;
} gguf_kv;

/* One tensor. ne[] is in ggml order: ne[0] is the contiguous (innermost) dimension, i.e. the
 * length of a row; entries past n_dims are 1. A row of ne[0] values takes
 * ne[0] / block_elems * block_bytes bytes (ne[0] is a multiple of the block size; see
 * eng_type_info_get() in quant.h). Every tensor has a type the engine supports: a file with
 * any other tensor type is rejected at open, with an error naming the type and the tensor.
 * name is NUL-terminated (a copy made at open; name.len excludes the NUL), so name.ptr can be
 * used as a C string. data = file data section + offset, aligned to gguf_alignment(). */
typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;   /* 1..4 */
    uint64_t ne[4];
    uint32_t type;     /* ggml type id (enum eng_type in quant.h) */
    uint64_t offset;   /* relative to the start of the tensor data section */
    uint64_t nbytes;   /* bytes of tensor data */
    const void *data;  /* into the map; nbytes readable */
    uint64_t n_elements; /* ne[0]*ne[1]*ne[2]*ne[3] */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and validates a GGUF file (mmap read-only). On success *ret is set; on failure it is
 * untouched and err (may be NULL) names the problem. Codes: -ENOENT/-EACCES/... from open,
 * -EINVAL for an invalid file, -ENOTSUP for an unsupported version, -ENOMEM. */
int gguf_open(const char *path, gguf_file **ret, eng_error *err);

/* Same over a buffer in memory. The buffer is not copied: the caller keeps it alive and
 * unchanged until gguf_close(). */
int gguf_open_mem(const void *data, size_t len, gguf_file **ret, eng_error *err);

/* Unmaps and frees; NULL is fine. */
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);     /* 2 or 3 */
uint32_t gguf_alignment(const gguf_file *f);   /* general.alignment or 32 */
uint64_t gguf_data_offset(const gguf_file *f); /* file offset of the tensor data section */
size_t gguf_file_size(const gguf_file *f);
const void *gguf_file_data(const gguf_file *f); /* start of the mapped file */
/* gguf_open: whether the weights are mapped with 2 MiB pages (filemap.h); gguf_open_mem: not
 * probed */
eng_map_info gguf_map_info(const gguf_file *f);
/* Bytes of heap bookkeeping this file holds (not counting the map). */
size_t gguf_bookkeeping_bytes(const gguf_file *f);

/* ---- metadata ---- */

size_t gguf_n_kv(const gguf_file *f);
/* i-th key/value in file order; NULL if i is out of range. */
const gguf_kv *gguf_kv_at(const gguf_file *f, size_t i);
/* Lookup by key (NUL-terminated); NULL when absent. Keys are unique (duplicates are rejected
 * at open). Constant time (hash). */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
/* Value of a key, or NULL. */
const gguf_value *gguf_find(const gguf_file *f, const char *key);

/* Typed getters by key. Return 0 and set *ret, -ENOENT when the key is absent, -EINVAL when
 * its type does not match, -ERANGE when an integer does not fit the requested type.
 * Integer getters accept every integer type (u8..i64) and also BOOL (0/1) whose value fits.
 * gguf_get_f32/f64 accept FLOAT32 and FLOAT64 (f64 rounded to float for gguf_get_f32). */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *ret);
int gguf_get_i32(const gguf_file *f, const char *key, int32_t *ret);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *ret);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *ret);
int gguf_get_f32(const gguf_file *f, const char *key, float *ret);
int gguf_get_f64(const gguf_file *f, const char *key, double *ret);
int gguf_get_bool(const gguf_file *f, const char *key, bool *ret); /* BOOL only */
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *ret); /* STRING only */
/* An array whose elements have type elem_type (pass GGUF_TYPE_COUNT to accept any element
 * type). -EINVAL if the value is not an array or has another element type. */
int gguf_get_arr(const gguf_file *f, const char *key, uint32_t elem_type, gguf_value *ret);

/* The same conversions on a value already in hand (a kv, or an element from gguf_iter). */
int gguf_value_u64(const gguf_value *v, uint64_t *ret);
int gguf_value_i64(const gguf_value *v, int64_t *ret);
int gguf_value_f64(const gguf_value *v, double *ret);
int gguf_value_str(const gguf_value *v, gguf_str *ret);

/* True when s equals the NUL-terminated string cstr. */
bool gguf_str_eq(gguf_str s, const char *cstr);

/* ---- array elements by index (fixed-size element types) ----
 * Element i of an array of the named type, read with memcpy (no alignment needed). They
 * return 0 when arr is not an array of that element type or i >= arr->arr_n; check the type
 * and count once up front (gguf_get_arr does) and loop. */
float gguf_arr_f32(const gguf_value *arr, uint64_t i);
int32_t gguf_arr_i32(const gguf_value *arr, uint64_t i);
uint32_t gguf_arr_u32(const gguf_value *arr, uint64_t i);
/* Any integer element type (u8..i64, BOOL), converted to int64 (u64 values > INT64_MAX clamp). */
int64_t gguf_arr_int(const gguf_value *arr, uint64_t i);

/* Copies elements [first, first + n) of a fixed-size-element array into dst, converting
 * to elem_type where it is exact: dst_type GGUF_TYPE_FLOAT32 accepts FLOAT32 (and FLOAT64,
 * rounded) arrays; GGUF_TYPE_INT32 accepts INT32 and any integer array whose values fit;
 * otherwise the array's element type must equal dst_type (plain copy). dst holds
 * n * gguf_vtype_size(dst_type) bytes. Returns 0, -EINVAL on a type mismatch, -ERANGE if
 * [first, first+n) is not inside the array or a value does not fit. */
int gguf_arr_copy(const gguf_value *arr, uint32_t dst_type, uint64_t first, uint64_t n,
                  void *dst);

/* ---- iterating any array (strings, nested arrays, scalars) ----
 *   gguf_value toks; gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks);
 *   gguf_iter it; gguf_iter_init(&it, &toks);
 *   gguf_str s;
 *   while (gguf_iter_next_str(&it, &s)) { ... it.index - 1 is the element's index ... }
 * Walking is sequential (each element O(1)); there is no random access to string elements:
 * callers that need it keep their own offsets. */
typedef struct gguf_iter {
    const uint8_t *p;   /* next element */
    const uint8_t *end; /* end of the array's bytes */
    uint32_t elem_type;
    uint64_t index;     /* elements returned so far */
    uint64_t n;         /* element count */
} gguf_iter;

/* Sets up iteration over arr; an arr that is not an array iterates nothing. */
void gguf_iter_init(gguf_iter *it, const gguf_value *arr);
/* Next element as a value (for nested arrays: a gguf_value of type ARRAY that can be
 * iterated in turn). Returns false at the end. */
bool gguf_iter_next(gguf_iter *it, gguf_value *ret);
/* Next element of a string array. Returns false at the end or if the elements are not
 * strings. */
bool gguf_iter_next_str(gguf_iter *it, gguf_str *ret);

/* ---- tensors ---- */

size_t gguf_n_tensors(const gguf_file *f);
/* i-th tensor in file order; NULL if out of range. */
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
/* Lookup by name (NUL-terminated); NULL when absent. Names are unique (duplicates are
 * rejected at open). Constant time (hash). */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

#endif
