# SPDX-License-Identifier: GPL-2.0
# Power cuts: BCH_RW_CUTS (default 50) cut points on one volume (our
# format on the scratch disk).  At each, with the module under test
# mounted rw, `rw_workload.py cut` runs two processes of the random
# workload as noise while it writes four files (in pieces, last piece
# first), fsyncs or fdatasyncs three of them and their directory, and then,
# the noise still running, after a seeded pause of up to 0.5 s, cuts the
# power: FS_IOC_GOINGDOWN with FSOP_GOING_FLAGS_NOLOGFLUSH, after which
# the filesystem writes nothing more (the journal entries not yet written,
# the dirty page cache, the noise's operations in flight are lost).  Then
# umount, mount again (journal replay by the module under test), and the
# files fsync'd at this cut point and a sample of 8 of the earlier ones
# must read back exactly.  Every 10 cuts, C's fsck of the volume as the
# cut left it must be clean, and after the remount every file fsync'd so
# far must read back; at the end, after a clean unmount, C's fsck again.
#
# C's behaviour, seen here: after the shutdown ioctl the umount works, and
# the next mount replays the journal; a file written without a sync
# before the cut comes back empty (its data was in the page cache), one
# fsync'd or fdatasync'd (and its directory fsync'd) comes back whole.
#
# Why not below the filesystem: the guest kernel has no device-mapper
# (CONFIG_MD=n: no dm-flakey, no dm-log-writes), nor nbd or ublk, so a
# write cannot be dropped or reordered under the filesystem; the shutdown
# ioctl cuts at the filesystem's edge instead (what C's
# bch2_fs_emergency_read_only does).  With a kernel that has
# dm-log-writes, a replay to each mark would add the device's reordering.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
dev=${BCH_DISK_SCRATCH:?}
cuts=${BCH_RW_CUTS:-50}
w=$RW_WORK/51
rm -rf "$w"; mkdir -p "$w"
mounted=
trap '[ -z "$mounted" ] || umount "$MNT" 2>/dev/null' EXIT
: >"$w/synced"

t0=$SECONDS
rw_format_load "$dev"
rw_mount "$dev" "$MNT"
mounted=1
# In batches of 10 cut points, each batch one python process (a python
# start is seconds under TCG): cut, umount, mount (the journal replay by
# the module under test), the check; after a batch's last cut, C's fsck
# of the volume as the cut left it (C replays the journal in memory:
# nochanges), the mount, and every file fsync'd so far must read back.
declare -A ms=([cut]=0 [umount]=0 [mount]=0 [check]=0)
tf=0
for first in $(seq 1 10 "$cuts"); do
	last=$((first + 9 > cuts ? cuts : first + 9))
	python3 "$RW_WL" cuts "$first" "$last" 4 "$dev" "$MNT" "$w/synced" >"$w/cuts.out" 2>&1 || {
		grep -q " $MNT " /proc/mounts || mounted=
		fail "$(grep -v -e '^cut [0-9]*: [0-9]* files synced$' -e 'synced files intact$' "$w/cuts.out" | tail -n 12)"
	}
	mounted=
	# the last line: {"cut": ms, "umount": ms, "mount": ms, "check": ms}
	read -r _ a _ b _ c _ d < <(tail -n 1 "$w/cuts.out" | tr -d '{}",')
	ms[cut]=$((ms[cut] + a)) ms[umount]=$((ms[umount] + b)) ms[mount]=$((ms[mount] + c)) ms[check]=$((ms[check] + d))
	t=$SECONDS
	c_fsck "cut $last" "$dev"
	tf=$((tf + SECONDS - t))
	rw_load
	n=$(dmesg_lines)
	mount -t bcachefs -o rw "$dev" "$MNT" 2>"$w/mount.err" ||
		fail "cut $last: mount -o rw after the cut failed: $(cat "$w/mount.err"); $(dmesg_since "$n" | tail -n 5)"
	mounted=1
	python3 "$RW_WL" check-synced "$MNT" "$w/synced" >"$w/check.out" 2>&1 ||
		fail "cut $last: $(cat "$w/check.out")"
done
note "time per cut (ms): workload to the cut $((ms[cut] / cuts)), umount $((ms[umount] / cuts)), mount $((ms[mount] / cuts)), check $((ms[check] / cuts)); C fsck $((tf / ((cuts + 9) / 10)))s each"
nsynced=$(wc -l <"$w/synced")
python3 "$RW_WL" manifest "$MNT" "$w/last.man" >/dev/null || fail "manifest after the last cut failed"
umount "$MNT" || fail "the last umount failed"
mounted=
sb_clean "after $cuts cuts" "$dev"
c_fsck "after the last cut's remount" "$dev"
c_unload
note "$cuts power cuts under $(rw_name): all $nsynced fsync'd files intact after each, $(wc -l <"$w/last.man") paths at the end; $((SECONDS - t0))s"
exit 0
