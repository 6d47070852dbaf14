# SPDX-License-Identifier: GPL-2.0
# BCH_RW_CYCLES (default 100) read-write mount / write / umount cycles on
# our format: each cycle first checks what the previous mounts left (the
# number of files, the previous cycle's file by sha256, the last line of a
# file every cycle appends to), then writes a new file (64 KiB plus 100
# bytes per cycle) and appends a line.  Then the module's refcount is 0,
# rmmod works, and unreclaimable slab memory has not grown, with the
# limits of 33-ro-mount-cycles (SUnreclaim by at most 2 MiB; no slab cache
# by 100 objects or more while also growing by 256 KiB or more).  Last,
# C's fsck is clean and C reads every file as written.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
dev=${BCH_DISK_SCRATCH:?}
cycles=${BCH_RW_CYCLES:-100}
w=$RW_WORK/53
rm -rf "$w"; mkdir -p "$w"
mounted=
trap '[ -z "$mounted" ] || umount "$MNT" 2>/dev/null' EXIT
mod=$(rw_mod)

slab() { # prints "SUnreclaim-kB" then name active_objs objsize per cache
	sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1
	awk '/^SUnreclaim:/ {print $2}' /proc/meminfo
	[ -r /proc/slabinfo ] && awk 'NR > 2 {print $1, $2, $4}' /proc/slabinfo
}
content() { yes "cycle $1 of the rw mount cycles" | head -c $((65536 + 100 * $1)); }
# cycle I: mount(8) rather than a python mount(2) per cycle (seconds
# under TCG each); the checks of what the previous cycles wrote, the
# writes, the unmount.
cycle() {
	local i=$1 n last got
	mount -t bcachefs -o rw "$dev" "$MNT" 2>"$w/mount.err" ||
		fail "cycle $i: mount -o rw failed: $(cat "$w/mount.err"); $(dmesg_text | tail -n 2)"
	mounted=1
	n=$(find "$MNT/cycles" -type f | wc -l)
	[ "$n" = $((i - 1)) ] || fail "cycle $i: $n files in cycles/, want $((i - 1))"
	if [ "$i" -gt 1 ]; then
		got=$(sha256sum "$MNT/cycles/c$((i - 1))" | cut -d' ' -f1)
		[ "$got" = "${want[$((i - 1))]}" ] ||
			fail "cycle $i: cycles/c$((i - 1)) has sha256 $got, want ${want[$((i - 1))]}"
		last=$(tail -n 1 "$MNT/appended")
		[ "$last" = "cycle $((i - 1))" ] || fail "cycle $i: the last line of appended is '$last', want 'cycle $((i - 1))'"
	fi
	content "$i" >"$MNT/cycles/c$i" || fail "cycle $i: writing cycles/c$i failed"
	echo "cycle $i" >>"$MNT/appended" || fail "cycle $i: appending failed"
	umount "$MNT" || fail "cycle $i: umount failed"
	mounted=
}

t0=$SECONDS
rw_unload
c_unload
"$TOOL" format --force "$dev" >/dev/null || fail "our format of $dev failed"
rw_load
# a warm-up mount (caches a module creates on first use are not leaks)
rw_mount "$dev" "$MNT"
mounted=1
mkdir "$MNT/cycles"
: >"$MNT/appended"
umount "$MNT" || fail "umount of the warm-up mount failed"
mounted=
declare -a want
for i in $(seq "$cycles"); do
	want[$i]=$(content "$i" | sha256sum | cut -d' ' -f1)
done
slab >"$w/before"
t1=$SECONDS
for i in $(seq "$cycles"); do
	cycle "$i"
done
t2=$SECONDS
slab >"$w/after"
ref=$(cat /sys/module/$mod/refcnt)
[ "$ref" = 0 ] || fail "module $mod refcount $ref after $cycles cycles, want 0"
rw_unload
! [ -d /sys/module/$mod ] || fail "$mod still loaded after rmmod"
python3 - "$w/before" "$w/after" "$cycles" <<'PY' || fail "slab memory grew over $cycles cycles"
import sys
def load(p):
    lines = open(p).read().split("\n")
    caches = {}
    for l in lines[1:]:
        f = l.split()
        if len(f) == 3:
            caches[f[0]] = (int(f[1]), int(f[2]))
    return int(lines[0]), caches
(ua, ca), (ub, cb), n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
bad = []
d = ub - ua
if d > 2048:
    bad.append("SUnreclaim grew by %d kB (limit 2048 kB)" % d)
grow = sorted(((cb[k][0] - ca.get(k, (0, 0))[0]) * cb[k][1], cb[k][0] - ca.get(k, (0, 0))[0], k)
              for k in cb)[::-1]
for b, o, k in grow:
    if o >= n and b >= 256 * 1024:
        bad.append("slab cache %s grew by %d objects (%d kB)" % (k, o, b // 1024))
top = ", ".join("%s %+d" % (k, o) for b, o, k in grow[:3] if o)
print("SUnreclaim %+d kB over %d cycles; top slab growth: %s" % (d, n, top or "none"))
for m in bad:
    print("FAIL: " + m, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
sb_clean "after $cycles cycles" "$dev"
c_fsck "after $cycles cycles" "$dev" "$w/c.full"
bad=$(python3 - "$w/c.full" "$cycles" "${want[@]}" <<'PY'
import json, sys
man = {e["path"]: e for e in map(json.loads, open(sys.argv[1]))}
n = int(sys.argv[2])
bad = [i for i in range(1, n + 1)
       if man.get("cycles/c%d" % i, {}).get("sha256") != sys.argv[2 + i]]
lines = man.get("appended", {}).get("size")
want = sum(len("cycle %d\n" % i) for i in range(1, n + 1))
if lines != want:
    bad.append("appended: size %s, want %d" % (lines, want))
print(" ".join(map(str, bad)))
PY
)
[ -z "$bad" ] || fail "C reads other contents for cycles/c<N>, N in: $bad"
c_unload
note "$cycles rw cycles in $((t2 - t1))s under $(rw_name); module refcount 0, rmmod ok; C reads all $cycles files as written; total $((SECONDS - t0))s"
exit 0
