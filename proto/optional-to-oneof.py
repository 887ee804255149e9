#!/usr/bin/env python3
"""Rewrites llamad.proto for protoc-c 1.4, which refuses proto3 `optional` fields.

Each `optional T name = N;` becomes `oneof has_name { T name = N; }`: a one-field oneof,
which is exactly how proto3 represents `optional` (a synthetic oneof), so the bytes on the wire
are identical. In the generated C the presence test reads `msg->has_name_case != 0`
(the case is ..._HAS_NAME__NOT_SET = 0 when absent, the field number when present).

usage: optional-to-oneof.py INPUT OUTPUT
"""
import re
import sys

OPT = re.compile(r'^(\s*)optional\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;(.*)$')


def main():
    src, dst = sys.argv[1], sys.argv[2]
    out = []
    with open(src, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip('\n')
            m = OPT.match(line)
            if m:
                ind, typ, name, num, rest = m.groups()
                line = f'{ind}oneof has_{name} {{ {typ} {name} = {num}; }}{rest}'
            elif re.match(r'^\s*optional\b', line):
                sys.exit(f'{src}:{lineno}: cannot rewrite this optional field: {line.strip()}')
            out.append(line + '\n')
    with open(dst, 'w', encoding='utf-8') as f:
        f.writelines(out)


if __name__ == '__main__':
    main()
