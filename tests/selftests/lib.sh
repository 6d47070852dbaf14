# SPDX-License-Identifier: GPL-2.0
# Helpers for the kselftests, sourced by each test.  A test is a bash
# script that runs in the guest, exits 0 (pass), 4 (skip) or anything else
# (fail), and explains a failure on stderr.  The runner clears dmesg before
# each test and fails it if dmesg then shows a kernel splat.

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

: "${BCH_ROOT:?run through tests/selftests/run}"
RS_KO="$BCH_ROOT/bcachefs_rs.ko"
MNT=/tmp/bch-mnt
mkdir -p "$MNT"

fail() { echo "FAIL: $*" >&2; exit $KSFT_FAIL; }
skip() { echo "SKIP: $*" >&2; exit $KSFT_SKIP; }
note() { echo "$*"; }   # the runner prefixes "# "

# Modules the Rust module needs from the kernel (crc32c, crc64).
rs_deps() { modprobe -q -d "$BCH_MODROOT" -a libcrc32c crc64 2>/dev/null || true; }
rs_load() { rs_deps; insmod "$RS_KO" || fail "insmod $RS_KO failed"; }
rs_unload() { ! rs_loaded || rmmod bcachefs_rs || fail "rmmod bcachefs_rs failed"; }
rs_loaded() { [ -d /sys/module/bcachefs_rs ]; }
c_load() { modprobe -d "$BCH_MODROOT" bcachefs || fail "modprobe bcachefs (C) failed"; }
c_unload() { ! c_loaded || modprobe -r -d "$BCH_MODROOT" bcachefs || fail "removing the C bcachefs module failed"; }
c_loaded() { [ -d /sys/module/bcachefs ]; }

# mount(2) directly, printing the errno name ("OK" on success), so a test
# can assert the exact error rather than mount(8)'s paraphrase of it.
sys_mount() { # dev dir fstype [options]
	/usr/bin/python3 - "$@" <<'PY'
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
dev, mnt, fstype = (a.encode() for a in sys.argv[1:4])
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
r = libc.mount(dev, mnt, fstype, 0, data)
print("OK" if r == 0 else errno.errorcode[ctypes.get_errno()])
PY
}

dev_sha() { sha256sum "$1" | cut -d' ' -f1; }

# The lines dmesg gained since the runner cleared it.
dmesg_text() { dmesg --notime 2>/dev/null || dmesg; }

# ---- read-only mount tests (30-34) ---------------------------------------
# The module under test: bcachefs_rs ("rs", the default) or, to prove a test
# and its data against the reference, the C module (BCH_RO_IMPL=c).  A
# mount failing with EOPNOTSUPP is a failure; BCH_RO_REQUIRED=0 makes it a
# skip (for bisecting back to before the read path existed).
RO_IMPL=${BCH_RO_IMPL:-rs}
RO_TREE="$BCH_ROOT/tests/selftests/ro_tree.py"
TOOL="$BCH_ROOT/target/release/bcachefs"
RO_WORK=/tmp/bch-ro
mkdir -p "$RO_WORK"

# Load the module under test (and only it).
ro_load() {
	if [ "$RO_IMPL" = c ]; then rs_unload; c_loaded || c_load
	else c_unload; rs_loaded || rs_load; fi
}
ro_unload() { if [ "$RO_IMPL" = c ]; then c_unload; else rs_unload; fi; }
ro_name() { if [ "$RO_IMPL" = c ]; then echo "C bcachefs"; else echo bcachefs_rs; fi; }

# mount(2) with mount(8)'s handling of "ro"/"rw" (MS_RDONLY), the other
# options passed as data; prints the errno name or OK.
vfs_mount() { # dev dir options
	/usr/bin/python3 - "$@" <<'PY'
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
dev, mnt, opts = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
flags, data = 0, []
for o in filter(None, opts.split(",")):
    if o == "ro":
        flags |= 1
    elif o == "rw":
        flags &= ~1
    else:
        data.append(o)
d = ",".join(data).encode() if data else None
r = libc.mount(dev.encode(), mnt.encode(), b"bcachefs", flags, d)
print("OK" if r == 0 else errno.errorcode[ctypes.get_errno()])
PY
}

# Read-only mount by the module under test; fails the test on an error,
# skips it while bcachefs_rs answers EOPNOTSUPP (read path not merged).
# C replays the journal by going read-write even under "ro" (it writes the
# replayed keys and the superblock); "nochanges" keeps it from writing, so
# only with it can C stand in for a module that must not write.
RO_C_OPTS=nochanges
ro_opts() { # extra options: prints the options of a read-only mount
	local o="ro${1:+,$1}"
	[ "$RO_IMPL" = c ] && o+=",$RO_C_OPTS"
	echo "$o"
}
ro_mount() { # dev dir [extra options]
	local r opts
	opts=$(ro_opts "${3:-}")
	r=$(vfs_mount "$1" "$2" "$opts")
	[ "$r" = OK ] && return 0
	if { [ "$r" = EOPNOTSUPP ] || [ "$r" = ENOTSUP ]; } && [ "$RO_IMPL" = rs ] && [ "${BCH_RO_REQUIRED:-1}" != 1 ]; then
		skip "bcachefs_rs cannot mount yet (EOPNOTSUPP): the read path is not merged;" \
			"the C half of this test passed (run with BCH_RO_IMPL=c to see it all)"
	fi
	fail "$(ro_name) mount -o $opts $1 failed: $r; dmesg: $(dmesg_text | tail -n 5)"
}

# Runs a command with the whole device hashed before and after: the module
# under test must not write to it.
dev_unchanged() { # label dev before-sha
	sync
	echo 3 > /proc/sys/vm/drop_caches
	local after
	after=$(dev_sha "$2")
	[ "$after" = "$3" ] || fail "$1: $(ro_name) modified $2 (sha256 $3 before, $after after)"
}

# The exit trap of tests 31-34: unmounts $MNT if $mounted is set,
# detaches $loop and removes $img (a test's private copy) if set.
ro_cleanup() {
	[ -z "${mounted:-}" ] || umount "$MNT" 2>/dev/null
	[ -z "${loop:-}" ] || losetup -d "$loop" 2>/dev/null
	[ -z "${img:-}" ] || rm -f "$img"
}

# A loop device over a file: prints /dev/loopN.
loop_attach() { losetup -f --show "$@" || fail "losetup $* failed"; }

# The small volume shared by tests 32-34, made once per boot: our format
# (32 KiB btree nodes: the extents btree has ~15 leaves) on a 192 MiB file,
# the "small" tree written by C, its manifest recorded under C.
# Sets SMALL_IMG and SMALL_MAN.
small_volume() {
	SMALL_IMG=$RO_WORK/small.img SMALL_MAN=$RO_WORK/small.manifest
	[ -f "$RO_WORK/small.done" ] && return 0
	local t0=$SECONDS loop
	rs_unload
	c_unload
	rm -f "$SMALL_IMG"
	truncate -s 192M "$SMALL_IMG"
	"$TOOL" format --force --no_initialize --btree_node_size 32k "$SMALL_IMG" >/dev/null ||
		fail "our format of $SMALL_IMG failed"
	loop=$(loop_attach "$SMALL_IMG")
	c_load
	mount -t bcachefs "$loop" "$MNT" || { losetup -d "$loop"; fail "C did not mount $SMALL_IMG"; }
	local err=
	python3 "$RO_TREE" generate "$MNT" small >/dev/null || err="generating the small tree under C failed"
	sync
	[ -n "$err" ] || python3 "$RO_TREE" manifest "$MNT" "$SMALL_MAN" >/dev/null ||
		err="manifest under C failed"
	[ -n "$err" ] || python3 "$RO_TREE" statfs "$MNT" >"$RO_WORK/small.statfs" ||
		err="statfs under C failed"
	umount "$MNT" || err="${err:+$err; }umount under C failed"
	if [ -n "$err" ]; then c_unload; losetup -d "$loop"; fail "small volume: $err"; fi
	c_unload
	losetup -d "$loop"
	touch "$RO_WORK/small.done"
	note "small volume: C wrote and recorded $(wc -l <"$SMALL_MAN") paths in $((SECONDS - t0))s"
}

# ---- read-write mount tests (50-53) ---------------------------------------
# The module under test: bcachefs_rs ("rs", the default) or the C module
# (BCH_RW_IMPL=c), which proves the tests.  While bcachefs_rs refuses a
# read-write mount with EROFS (before issue 10), the tests skip there;
# BCH_RW_REQUIRED=1 makes that a failure.  The C module is also the judge:
# its fsck (C_FSCK_OPTS, what `fsck -n` asks) must find nothing, and what it
# reads must equal what the module under test showed.  Both modules
# register "bcachefs", so only one is loaded at a time.
RW_IMPL=${BCH_RW_IMPL:-rs}
RW_WL="$BCH_ROOT/tests/selftests/rw_workload.py"
RW_WORK=/tmp/bch-rw
mkdir -p "$RW_WORK"
C_FSCK_OPTS=ro,nochanges,fsck,fix_errors=no,verbose

rw_load() {
	if [ "$RW_IMPL" = c ]; then rs_unload; c_loaded || c_load
	else c_unload; rs_loaded || rs_load; fi
}
rw_unload() { if [ "$RW_IMPL" = c ]; then c_unload; else rs_unload; fi; }
rw_name() { if [ "$RW_IMPL" = c ]; then echo "C bcachefs"; else echo bcachefs_rs; fi; }
rw_mod() { if [ "$RW_IMPL" = c ]; then echo bcachefs; else echo bcachefs_rs; fi; }
# A fresh volume of our format on $1 (a device or an image), with only
# the module under test loaded.
rw_format_load() {
	rw_unload
	c_unload
	"$TOOL" format --force "$1" >/dev/null || fail "our format of $1 failed"
	rw_load
}
# Only the C module loaded (the judge).
c_only() { rs_unload; c_loaded || c_load; }

# Read-write mount by the module under test (loaded by rw_load); fails the
# test on an error, skips it while bcachefs_rs refuses with EROFS.
rw_mount() { # dev dir [extra options]
	local r opts="rw${3:+,$3}"
	r=$(vfs_mount "$1" "$2" "$opts")
	[ "$r" = OK ] && return 0
	if [ "$r" = EROFS ] && [ "$RW_IMPL" = rs ] && [ "${BCH_RW_REQUIRED:-0}" != 1 ]; then
		skip "bcachefs_rs refuses a read-write mount (EROFS): the rw mount (issue 10)" \
			"is not merged; BCH_RW_IMPL=c runs this test with the C module under test"
	fi
	fail "$(rw_name) mount -o $opts $1 failed: $r; dmesg: $(dmesg_text | tail -n 5)"
}

# dmesg lines after the first $1 (the runner clears dmesg before a test
# and checks it for splats after, so the tests never clear it themselves).
dmesg_lines() { dmesg_text | wc -l; }
dmesg_since() { dmesg_text | tail -n +"$(($1 + 1))"; }
# The lines of a C fsck's dmesg that report a problem (as in test 40).
fsck_errors_in() {
	grep -Ei 'error|inconsisten|incorrect|wrong|missing|mismatch|not fixing|fix\?|bad |invalid|unexpected' |
		grep -v 'fix_errors' || true
}

# C's fsck of a volume: mount -o $C_FSCK_OPTS by the C module (loaded
# alone), no dmesg line may report a problem; with OUT, C's full manifest
# of the volume goes there.  Leaves the C module loaded.
c_fsck() { # label dev [out]
	local n r errs
	c_only
	n=$(dmesg_lines)
	r=$(vfs_mount "$2" "$MNT" "$C_FSCK_OPTS")
	[ "$r" = OK ] || fail "$1: C's fsck mount (-o $C_FSCK_OPTS) failed: $r: $(dmesg_since "$n" | tail -n 8)"
	errs=$(dmesg_since "$n" | fsck_errors_in)
	if [ -z "$errs" ] && [ -n "${3:-}" ]; then
		python3 "$RW_WL" manifest --full "$MNT" "$3" >/dev/null || errs="manifest under C failed"
	fi
	umount "$MNT" || fail "$1: umount after C's fsck failed"
	[ -z "$errs" ] || fail "$1: C's fsck reports: $(echo "$errs" | head -n 8)"
	note "$1: C fsck (-o $C_FSCK_OPTS) clean ($(dmesg_since "$n" | wc -l) dmesg lines)"
}

# The volume must be marked clean after an unmount.
sb_clean() { # label dev
	"$TOOL" show-super "$2" | grep -Eq '^Clean: +1' ||
		fail "$1: show-super says the volume is not clean: $("$TOOL" show-super "$2" | grep -E '^Clean')"
}

# The ext4 reference filesystem of the workload comparisons (the guest
# kernel's tmpfs has no user xattrs, CONFIG_TMPFS_XATTR=n, and no
# ZERO_RANGE, COLLAPSE_RANGE or INSERT_RANGE; ext4 has all of them): a
# 512 MiB sparse image in /tmp, 4 KiB blocks (the alignment of COLLAPSE and
# INSERT), 256-byte inodes (ns timestamps).  Mounted at $1.
ref_mount() { # dir
	rm -f "$RW_WORK/ref.img"
	truncate -s 512M "$RW_WORK/ref.img"
	mkfs.ext4 -q -F -b 4096 -I 256 "$RW_WORK/ref.img" || fail "mkfs.ext4 of the reference failed"
	mkdir -p "$1"
	mount -o loop "$RW_WORK/ref.img" "$1" || fail "mounting the ext4 reference failed"
}
ref_umount() { # dir
	umount "$1" 2>/dev/null
	rm -f "$RW_WORK/ref.img"
}

# ---- slab leak checks (33 and 53) -------------------------------------------
# The unreclaimable slab memory, then "name active_objs objsize" per cache.
slab() { # prints "SUnreclaim-kB" then name active_objs objsize per cache
	sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1
	awk '/^SUnreclaim:/ {print $2}' /proc/meminfo
	[ -r /proc/slabinfo ] && awk 'NR > 2 {print $1, $2, $4}' /proc/slabinfo
}

# slab_check BEFORE AFTER CYCLES: fails unless SUnreclaim grew by at most
# 2 MiB and no cache grew by CYCLES objects or more while also growing by
# 256 KiB or more; prints the growth either way.
slab_check() {
	python3 - "$1" "$2" "$3" <<'PY' || fail "slab memory grew over $3 cycles"
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
}
