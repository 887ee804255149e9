#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_gguf (tests/fuzz/corpus/gguf/): tiny hand-built llama GGUFs
(valid, and with one thing broken each), a metadata-only file with every value type and nested
arrays, and the first 4 KiB of each shared model. Run by hand:
    python3 tests/gguf/make_seeds.py ../shared tests/fuzz/corpus/gguf
"""
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
       BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def val(t, v):
    if t == STR:
        return s(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(val(et, i) for i in items)
    return struct.pack(FMT[t], v)


def gguf(kvs, tensors, version=3, align=32, n_kv=None, n_t=None):
    """kvs: [(key, type, value)], tensors: [(name, ne, type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_t is None else n_t,
                                len(kvs) if n_kv is None else n_kv)
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", t) + val(t, v)
    off, offs = 0, []
    for name, ne, tt, data in tensors:
        off = (off + align - 1) // align * align
        offs.append(off)
        out += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", tt, off)
        off += len(data)
    out += b"\0" * ((align - len(out) % align) % align)
    base = len(out)
    for (name, ne, tt, data), o in zip(tensors, offs):
        out += b"\0" * (base + o - len(out)) + data
    return out


def f32s(n, k=1):
    return b"".join(struct.pack("<f", ((i * 7 + k) % 13 - 6) / 16.0) for i in range(n))


def q8_0(rows, cols):
    blk = struct.pack("<e", 0.01) + bytes((i * 5) % 256 for i in range(32))
    return blk * (rows * cols // 32)


def tiny_llama(embd=8, heads=2, kv_heads=1, ff=16, vocab=6, layers=1, quant=False, tied=False,
               extra_kv=(), extra_t=(), drop=()):
    hd = embd // heads
    toks = ["<unk>", "<s>", "</s>"] + ["\u2581" + chr(97 + i) for i in range(vocab - 3)]
    kvs = [("general.architecture", STR, "llama"), ("general.name", STR, "seed"),
           ("llama.block_count", U32, layers), ("llama.context_length", U32, 64),
           ("llama.embedding_length", U32, embd), ("llama.feed_forward_length", U32, ff),
           ("llama.attention.head_count", U32, heads),
           ("llama.attention.head_count_kv", U32, kv_heads),
           ("llama.rope.dimension_count", U32, hd),
           ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
           ("tokenizer.ggml.model", STR, "llama"),
           ("tokenizer.ggml.tokens", ARR, (STR, toks)),
           ("tokenizer.ggml.scores", ARR, (F32, [float(-i) for i in range(vocab)])),
           ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3] + [1] * (vocab - 3))),
           ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2)]
    kvs += list(extra_kv)

    def mat(name, cols, rows):
        if quant:
            return (name, [cols, rows], 8, q8_0(rows, cols))
        return (name, [cols, rows], 0, f32s(cols * rows, len(name)))

    def vec(name, n):
        return (name, [n], 0, f32s(n, 3))
    ts = [mat("token_embd.weight", embd, vocab), vec("output_norm.weight", embd)]
    if not tied:
        ts.append(mat("output.weight", embd, vocab))
    for l in range(layers):
        p = "blk.%d." % l
        ts += [vec(p + "attn_norm.weight", embd), mat(p + "attn_q.weight", embd, heads * hd),
               mat(p + "attn_k.weight", embd, kv_heads * hd),
               mat(p + "attn_v.weight", embd, kv_heads * hd),
               mat(p + "attn_output.weight", heads * hd, embd), vec(p + "ffn_norm.weight", embd),
               mat(p + "ffn_gate.weight", embd, ff), mat(p + "ffn_up.weight", embd, ff),
               mat(p + "ffn_down.weight", ff, embd)]
    ts += list(extra_t)
    ts = [t for t in ts if t[0] not in drop]
    return kvs, ts


def main():
    shared, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    seeds = {}
    kvs, ts = tiny_llama()
    seeds["tiny-f32.gguf"] = gguf(kvs, ts)
    seeds["tiny-f32-v2.gguf"] = gguf(kvs, ts, version=2)
    kvs, ts = tiny_llama(embd=32, heads=4, kv_heads=2, ff=32, vocab=4, quant=True, tied=True)
    seeds["tiny-q8_0-tied.gguf"] = gguf(kvs, ts)
    kvs, ts = tiny_llama(layers=2, extra_kv=[("general.alignment", U32, 64)])
    seeds["tiny-align64.gguf"] = gguf(kvs, ts, align=64)
    kvs, ts = tiny_llama(extra_t=[("rope_freqs.weight", [2], 0, struct.pack("<2f", 1.0, 4.0))])
    seeds["tiny-rope-freqs.gguf"] = gguf(kvs, ts)
    kvs, ts = tiny_llama(extra_kv=[("llama.rope.scaling.type", STR, "llama3"),
                                   ("llama.rope.scaling.factor", F32, 8.0),
                                   ("llama.rope.freq_base", F32, 500000.0),
                                   ("llama.rope.scaling.original_context_length", U32, 32)])
    seeds["tiny-llama3-keys.gguf"] = gguf(kvs, ts)
    # broken ones
    kvs, ts = tiny_llama(drop=["blk.0.ffn_up.weight"])
    seeds["bad-missing-tensor.gguf"] = gguf(kvs, ts)
    kvs, ts = tiny_llama()
    ts = [("blk.0.attn_q.weight", [8, 4], 0, f32s(32)) if t[0] == "blk.0.attn_q.weight" else t
          for t in ts]
    seeds["bad-shape.gguf"] = gguf(kvs, ts)
    kvs, ts = tiny_llama()
    ts[4] = (ts[3][0],) + ts[4][1:]
    seeds["bad-dup-tensor.gguf"] = gguf(kvs, ts)
    kvs, ts = tiny_llama(extra_kv=[("general.alignment", U32, 48)])
    seeds["bad-alignment.gguf"] = gguf(kvs, ts)
    kvs, ts = tiny_llama()
    seeds["bad-huge-kv-count.gguf"] = gguf(kvs, ts, n_kv=1 << 62)
    seeds["bad-v1.gguf"] = gguf(kvs, ts, version=1)
    kvs, ts = tiny_llama(extra_kv=[("general.architecture", STR, "gpt2")])
    kvs = [kv for kv in kvs[1:]]
    seeds["bad-arch.gguf"] = gguf(kvs, ts)
    # every value type, nested arrays, no tensors
    kvs = [("general.architecture", STR, "llama"),
           ("t.u8", U8, 200), ("t.i8", I8, -5), ("t.u16", U16, 60000), ("t.i16", I16, -3),
           ("t.u32", U32, 7), ("t.i32", I32, -7), ("t.f32", F32, 1.5), ("t.bool", BOOL, True),
           ("t.str", STR, "hello"), ("t.u64", U64, 1 << 40), ("t.i64", I64, -(1 << 40)),
           ("t.f64", F64, 2.25),
           ("a.f32", ARR, (F32, [1.0, 2.0])), ("a.i8", ARR, (I8, [-1, 1])),
           ("a.u64", ARR, (U64, [1, 2])), ("a.bool", ARR, (BOOL, [True, False])),
           ("n.str", ARR, (ARR, [(STR, ["a", "bc"]), (STR, []), (STR, ["d"])])),
           ("n.n.i32", ARR, (ARR, [(ARR, [(I32, [1])]), (ARR, [(I32, [2, 3])])]))]
    seeds["meta-all-types.gguf"] = gguf(kvs, [])
    # the first 4 KiB of each shared model
    for rel in ["models/stories260K.gguf", "models/TinyStories-656K-Q8_0.gguf",
                "models/llama-2-tiny-random.gguf", "models/tinyllamas-stories-260k-f32.gguf",
                "models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf",
                "testvectors/dequant/vq-Q4_K.gguf"]:
        with open(os.path.join(shared, rel), "rb") as f:
            seeds["head4k-" + os.path.basename(rel)] = f.read(4096)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds, %d bytes" % (len(seeds), sum(len(d) for d in seeds.values())))


if __name__ == "__main__":
    main()
