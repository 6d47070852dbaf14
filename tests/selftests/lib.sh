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
