"""Runs forked from one process that has done its imports once, measured as fresh processes would be.

Importing torch, transformers, peft and TRL takes 10-16 s of a 2-core machine (`python -X importtime`),
longer than a toy PPO run: a benchmark that starts a fresh process per run spends much of its time
importing. A child forked after the imports starts where a fresh process stands after them:

- its anonymous memory (the imported modules' objects, torch's allocations) is the parent's, counted
  in the child's resident set from the start, since fork copies those page tables;
- fork does not copy the page tables of file mappings (shared libraries' code and data), so the pages
  of them the parent had touched would be counted again, as new, when the run touches them.
  `populate` maps exactly those pages into the child first (madvise MADV_POPULATE_READ, Linux 5.14),
  so the child's resident memory, and so its floor and peak, are what a fresh process's would be.

The child's peak resident memory (`ru_maxrss`, from os.wait4) starts at its resident memory after
the fork, as a fresh process's starts at zero and passes its imports on the way.
Only fork before any torch computation: an OpenMP thread pool does not survive a fork.
A child's writes to the parent's pages (reference counts, its first full garbage collection) cost
copy-on-write faults that a fresh process does not pay, on both sides of a comparison alike;
`gc.freeze()` in the parent would save them, but it would also hide the imported objects from
`gc.collect()`, whose walk over them is what TRL 1.12's per-update collector costs.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
import sys
import tempfile
import traceback

PAGE = os.sysconf("SC_PAGE_SIZE")
MADV_POPULATE_READ = 22


def resident_file_pages() -> list[tuple[int, int]]:
    """(address, length) of every run of resident pages in this process's readable file mappings
    (/proc/self/pagemap: bit 63 of a page's entry says it is present)."""
    runs = []
    with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or not fields[5].startswith("/") or "r" not in fields[1]:
                continue  # anonymous, [heap], [stack], [vdso] ...: fork copies them or they are the kernel's
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // PAGE * 8)
            entries = pagemap.read((end - start) // PAGE * 8)
            first = None
            for i, (entry,) in enumerate(struct.iter_unpack("Q", entries)):
                if entry >> 63 and first is None:
                    first = i
                elif not entry >> 63 and first is not None:
                    runs.append((start + first * PAGE, (i - first) * PAGE))
                    first = None
            if first is not None:
                runs.append((start + first * PAGE, (len(entries) // 8 - first) * PAGE))
    return runs


def populate(runs: list[tuple[int, int]]) -> None:
    """Map the given pages into this process, as they were in the parent. A range the child no longer
    maps is skipped; a kernel without MADV_POPULATE_READ (before Linux 5.14) is an error, since the
    floor and peak would then leave the libraries' pages out without a word."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for address, length in runs:
        if libc.madvise(address, length, MADV_POPULATE_READ) != 0 and ctypes.get_errno() == errno.EINVAL:
            raise OSError(errno.EINVAL, "madvise(MADV_POPULATE_READ) is not supported by this kernel (Linux >= 5.14 "
                                        "has it): a forked run's memory would not be a fresh process's")


def run(fn, *args, quiet: bool = False) -> tuple[object, float]:
    """fn(*args) in a child forked from this process: its JSON-able result and the child's peak resident
    memory in MiB. The child's failure raises here with its traceback; `quiet`: the child's output goes
    to a file, whose end is shown only with a failure."""
    pages = resident_file_pages()
    sys.stdout.flush()  # what this process has buffered would otherwise be written twice
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: whatever happens, it ends here and never returns into the caller's code
        code = 1
        try:
            os.close(read)
            log = tempfile.TemporaryFile("w+") if quiet else None
            if log:  # the descriptors for what C code writes, the Python streams for what Python code does
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                sys.stdout = sys.stderr = log
            try:
                populate(pages)
                out, code = json.dumps({"result": fn(*args)}), 0
            except BaseException:  # noqa: BLE001 -- everything goes back to the parent
                out = traceback.format_exc()
                if log:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    log.seek(0)
                    out = f"{log.read()[-3000:]}\n{out}"
                out = json.dumps({"error": out})
            with os.fdopen(write, "w") as f:
                f.write(out)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        reply = f.read()
    _, status, usage = os.wait4(pid, 0)
    answer = json.loads(reply) if reply else {"error": f"the child ended with status {status} and no answer"}
    if "error" in answer:
        raise RuntimeError(f"forked run {getattr(fn, '__name__', fn)} failed:\n{answer['error']}")
    return answer["result"], usage.ru_maxrss / 1024  # kilobytes on Linux
