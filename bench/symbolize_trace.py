#!/usr/bin/env python3
"""Turn KEEL_MALLOC_TRACE backtraces into function names and source lines.

libkeel_malloc_count.so prints frames as backtrace_symbols_fd does: "binary(+0x1d7e6)[0x55ba...]" for
functions that are not exported (the keel binary is not linked with -rdynamic). This resolves those with
addr2line (binutils) and leaves other lines as they are.

  KEEL_MALLOC_TRACE=5 LD_PRELOAD=build/libkeel_malloc_count.so build/keel bench m.onnx 2> trace.txt
  python3 bench/symbolize_trace.py < trace.txt
"""
import re
import subprocess
import sys

FRAME = re.compile(r"^(?P<obj>[^(\s]+)\((?P<sym>[^)+]*)\+(?P<off>0x[0-9a-f]+)\)\[(?P<addr>0x[0-9a-f]+)\]$")


def resolve(obj, off, cache={}):
    key = (obj, off)
    if key not in cache:
        try:
            # a return address points after the call: look up the byte before it
            out = subprocess.run(["addr2line", "-f", "-C", "-i", "-p", "-e", obj, hex(max(int(off, 16) - 1, 0))],
                                 capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            out = ""
        cache[key] = out if out and not out.startswith("??") else None
    return cache[key]


def main():
    for line in sys.stdin:
        line = line.rstrip("\n")
        m = FRAME.match(line)
        if m and not m.group("sym"):
            where = resolve(m.group("obj"), m.group("off"))
            if where:
                print(f"    {where.replace(chr(10), ' | ')}   [{m.group('obj')}+{m.group('off')}]")
                continue
        print(line)


if __name__ == "__main__":
    main()
