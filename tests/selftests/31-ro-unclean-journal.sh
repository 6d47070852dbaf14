# SPDX-License-Identifier: GPL-2.0
# Read-only mount of an unclean volume (journal replay as an overlay): C
# writes a tree and syncs it, then writes 60 more files fsync'ing each and
# the directory, 40 more without fsync, and shuts down with
# FS_IOC_GOINGDOWN(NOLOGFLUSH): unsynced work is lost and the superblock
# is not marked clean.  Our `show-super` must say Clean: 0 and our
# `list --source` must show keys that only the journal holds.  Then the
# module under test mounts it -o ro: every synced and fsync'd file must
# read back with its sha256, the unsynced ones are read (any outcome but a
# splat), and the device must be bit-for-bit unchanged (no replay
# written back).
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
w=$RO_WORK/31
rm -rf "$w"; mkdir -p "$w"
img=$w/unclean.img loop= mounted=
trap ro_cleanup EXIT

t0=$SECONDS
rs_unload
c_unload
truncate -s 256M "$img"
"$TOOL" format --force --no_initialize "$img" >/dev/null || fail "our format failed"
loop=$(loop_attach "$img")
c_load
mount -t bcachefs "$loop" "$MNT" || fail "C did not mount our format"
mounted=1
python3 "$RO_TREE" generate "$MNT" small >/dev/null || fail "generating the tree under C failed"
sync
python3 "$RO_TREE" manifest "$MNT" "$w/synced.manifest" >/dev/null || fail "manifest under C failed"
python3 "$RO_TREE" fsync-write "$MNT" 60 >"$w/fsynced.json" || fail "fsync'd writes under C failed"
mkdir "$MNT/unsynced"
for i in $(seq 40); do head -c $((i * 1000)) /dev/urandom >"$MNT/unsynced/u$i"; done
python3 "$RO_TREE" goingdown "$MNT" 2 || fail "FS_IOC_GOINGDOWN(NOLOGFLUSH) failed under C"
dmesg_text | grep -q "shutdown by ioctl type 2" || fail "C did not log the shutdown"
umount "$MNT" || fail "umount after the shutdown failed"
mounted=
c_unload
note "C: wrote, synced, fsync'd and shut down in $((SECONDS - t0))s"

"$TOOL" show-super "$loop" >"$w/show-super.txt" || fail "our show-super failed"
grep -Eq '^Clean: +0' "$w/show-super.txt" ||
	fail "show-super after the shutdown: $(grep '^Clean' "$w/show-super.txt"), want Clean: 0"
"$TOOL" list --source -b inodes,dirents,extents "$loop" >"$w/keys.txt" 2>"$w/list.err" ||
	fail "our list --source failed: $(head -c 1000 "$w/list.err")"
nj=$(grep -c '^journal ' "$w/keys.txt")
[ "$nj" -gt 0 ] || fail "no key only in the journal: the volume is not unclean enough to test replay"
# the dirent of an fsync'd file must be among them
grep '^journal ' "$w/keys.txt" | grep -q ': s0059 -> ' ||
	fail "the dirent of the last fsync'd file (synced/s0059) is not a journal key"
note "$nj of $(wc -l <"$w/keys.txt") inode/dirent/extent keys are only in the journal"

before=$(dev_sha "$loop")
ro_load
ro_mount "$loop" "$MNT"
mounted=1
python3 - "$MNT" "$w/fsynced.json" <<'PY' || fail "fsync'd files under $(ro_name)"
import hashlib, json, sys
mnt, want = sys.argv[1], json.load(open(sys.argv[2]))
bad = []
for rel, h in sorted(want.items()):
    try:
        got = hashlib.sha256(open("%s/%s" % (mnt, rel), "rb").read()).hexdigest()
    except OSError as e:
        got = "error " + e.strerror
    if got != h:
        bad.append("%s: %s, want sha256 %s" % (rel, got, h))
for b in bad[:5]:
    print("FAIL: " + b, file=sys.stderr)
print("%d fsync'd files read back, %d differ" % (len(want), len(bad)))
sys.exit(1 if bad else 0)
PY
python3 "$RO_TREE" readall "$MNT" "$w/synced.manifest" "$w/readall.json" || fail "readall failed"
python3 - "$w/readall.json" <<'PY' || fail "synced files under $(ro_name) differ from what C had"
import json, sys
r = json.load(open(sys.argv[1]))
bad = sorted((p, v) for p, v in r.items() if v != "ok")
for p, v in bad[:5]:
    print("FAIL: %s: %s" % (p, v), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
n_unsynced=$(ls "$MNT/unsynced" 2>/dev/null | wc -l)
cat "$MNT"/unsynced/* >/dev/null 2>&1
note "unsynced/: $n_unsynced of 40 files survived (not asserted)"
umount "$MNT" || fail "umount under $(ro_name) failed"
mounted=
ro_unload
dev_unchanged "read-only mount of an unclean volume" "$loop" "$before"
note "total $((SECONDS - t0))s"
exit 0
