#!/bin/bash
# Issue 19's kill -9 sweep: $KILLS kills at random moments of record,
# restore and snapshot create of one snapshot, each followed by one later
# command (snapshot inspect --fix, which also runs every command's startup
# repair), then a count of every kind of leftover: VMM processes, other
# snapbpf processes, a disk left with readahead off or journaled, temporary
# files and directories, run directories (under SNAPBPF_HOME: this
# binary makes none in /tmp), mounts. Run as root from the
# repository after make build. Prints one line per kill and a total.
set -uo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/kill-sweep}
KILLS=${KILLS:-30}
FN=${FN:-json}
export SNAPBPF_HOME=$R/home
mkdir -p $R/snaps $SNAPBPF_HOME
S=$R/snaps/$FN
DISK=$(findmnt -no SOURCE --target $R | sed 's|/dev/||; s|[0-9]*$||')
RA=/sys/block/$DISK/queue/read_ahead_kb
ra0=$(cat $RA)
[ -f $SNAPBPF_HOME/image/image.json ] || $B image build >/dev/null 2>&1 || { echo "image build failed"; exit 1; }
[ -d $S ] || $B snapshot create --function $FN --out $S >/dev/null 2>&1 || { echo "create $S failed"; exit 1; }
mounts0=$(grep -cE 'tracefs|debugfs|snapbpf' /proc/mounts)
total=0
for i in $(seq 1 $KILLS); do
  case $((i % 3)) in
    0) op=create;  cmd=($B snapshot create --function $FN --out $S --replace) ;;
    1) op=record;  cmd=($B record --snapshot $S --runs 2) ;;
    2) op=restore; cmd=($B restore --snapshot $S --policy nora --cold --concurrency 2) ;;
  esac
  "${cmd[@]}" >/dev/null 2>&1 &
  pid=$!
  # A random moment in the first 6 s: start-up, VMM start, state load,
  # the guest's run, publication.
  sleep $(awk -v s=$RANDOM 'BEGIN { srand(s); printf "%.2f", 0.2 + rand() * 6 }')
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  # What the kill left, before the later command repairs it.
  b_vmm=$(pgrep -fc "qemu-system.*$SNAPBPF_HOME" || true)
  b_ra=$([ "$(cat $RA)" = "$ra0" ] && echo 0 || echo 1)
  b_tmp=$(find $R/snaps -name '*.tmp-*' 2>/dev/null | wc -l)
  b_runs=$(find $SNAPBPF_HOME/run -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; true)
  $B snapshot inspect --fix $S >/dev/null 2>&1
  sleep 0.5
  vmm=$(pgrep -fc "qemu-system.*$SNAPBPF_HOME" || true)
  procs=$(pgrep -fc "^$B " || true)
  ra=$([ "$(cat $RA)" = "$ra0" ] && echo 0 || echo 1)
  journal=$(ls /run/snapbpf/readahead-*.json 2>/dev/null | wc -l)
  tmps=$(find $R/snaps -name '*.tmp-*' 2>/dev/null | wc -l)
  runs=$(find $SNAPBPF_HOME/run -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; true)
  mounts=$(( $(grep -cE 'tracefs|debugfs|snapbpf' /proc/mounts) - mounts0 ))
  left=$((vmm + procs + ra + journal + tmps + runs + mounts))
  total=$((total + left))
  echo -n "kill $i ($op) left: vmm $b_vmm readahead $b_ra tmp $b_tmp rundirs $b_runs; after the later command: "
  echo "vmm $vmm snapbpf $procs readahead $ra journal $journal tmp $tmps rundirs $runs mounts $mounts"
  # Clean by hand so the next kill starts from nothing (counted above).
  pkill -9 -f "qemu-system.*$SNAPBPF_HOME" 2>/dev/null; echo $ra0 > $RA
done
echo "leftovers after $KILLS kills: $total"
