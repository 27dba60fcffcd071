#!/usr/bin/env python3
"""Table of scripts/measure-harness-faults.sh's results: the VM's cold lazy
major faults (all, and on the memory file) against the harness's lazy replay.
Usage: scripts/harness-faults-table.py DIR"""
import json
# replay --json prints an array (one report per policy); older runs an object.
def one(r): return r[0] if isinstance(r, list) else r
import statistics
import sys

d = sys.argv[1]
print("| function | VM major faults, 5 cold lazy restores | of them on the memory file "
      "| VM median: all / memory file | harness lazy, 5 replays | median "
      "| harness with late touches (median) | harness vs VM, memory file |")
print("|---|---|---|---|---|---:|---:|---:|")
for f in ["aes", "bert", "gzip", "image", "json", "linpack", "rnn", "alloc"]:
    vm_all, vm_mem, rp, rpl = [], [], [], []
    for i in range(1, 6):
        v = json.load(open(f"{d}/{f}.{i}.vm.json"))["vms"][0]
        vm_all.append(v["major_faults"])
        vm_mem.append(v["mem_file_major_faults"])
        rp.append(one(json.load(open(f"{d}/{f}.{i}.rp.json")))["major_faults"])
        rpl.append(one(json.load(open(f"{d}/{f}.{i}.rpl.json")))["major_faults"])
    ma, mm = statistics.median(vm_all), statistics.median(vm_mem)
    mr, mrl = statistics.median(rp), statistics.median(rpl)
    print(f"| {f} | {' '.join(map(str, vm_all))} | {' '.join(map(str, vm_mem))} | {ma:g} / {mm:g} "
          f"| {' '.join(f'{x:g}' for x in rp)} | {mr:g} | {mrl:g} | {100 * (mr - mm) / mm:+.1f}% |")
