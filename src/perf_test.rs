// SPDX-License-Identifier: GPL-2.0
//! The btree performance tests of C's `perf_test` sysfs file
//! (`fs/bcachefs/tests.c`, `bch2_btree_perf_test()`), run on our btree:
//! the same names, the same keys (`cookie`s in the xattrs btree at inode
//! 0, snapshot `U32_MAX`), one transaction per operation as C commits, and
//! the result line printed as C prints it.
//!
//! The core runs one thread's share ([`perf_test_run`]); the caller (the
//! kernel's sysfs file, the tool) starts the threads, times them from the
//! moment all are ready until the last finishes, and prints
//! [`PerfTestResult`].  Each operation that writes holds the mount's
//! [`BchFs::op_lock`], as every write of a mount does; the lookups
//! (`rand_lookup`, `seq_lookup`, three in four of `rand_mixed`'s
//! iterations, which update nothing) run without it.
//!
//! The keys are left behind as C leaves them: `seq_delete` removes them
//! (C's fsck would otherwise report xattrs of inode 0).

use core::fmt;

use crate::btree::{lockrestart_do, BtreeTrans};
use crate::errcode::{BchError, Errno};
use crate::format::bkey::{Bkey, BkeyI, BtreeId, KeyType};
use crate::format::bpos::Bpos;
use crate::fs_rw::BchFs;
use crate::opts::HumanReadable;
use crate::platform::{BlockDev, Vec};

/// The tests, by C's names (the perf tests of `bch2_btree_perf_test()`;
/// its unit tests, `test_*`, are not here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerfTest {
    /// `rand_insert`: one cookie at a random offset per commit.
    RandInsert,
    /// `rand_insert_multi`: eight random cookies per commit.
    RandInsertMulti,
    /// `rand_lookup`: a peek from a random offset.
    RandLookup,
    /// `rand_mixed`: a peek from a random offset; every fourth operation
    /// overwrites the key found, in the same transaction.
    RandMixed,
    /// `rand_delete`: deletes the first key at or after a random offset.
    RandDelete,
    /// `seq_insert`: cookies at offsets `0..nr`, one commit each.
    SeqInsert,
    /// `seq_lookup`: iterates over every key of inode 0.
    SeqLookup,
    /// `seq_overwrite`: rewrites every key of inode 0, one commit each.
    SeqOverwrite,
    /// `seq_delete`: deletes every key of inode 0
    /// (`bch2_btree_delete_range()`), one commit each.
    SeqDelete,
}

/// Every test with its C name.
pub const PERF_TESTS: [(&str, PerfTest); 9] = [
    ("rand_insert", PerfTest::RandInsert),
    ("rand_insert_multi", PerfTest::RandInsertMulti),
    ("rand_lookup", PerfTest::RandLookup),
    ("rand_mixed", PerfTest::RandMixed),
    ("rand_delete", PerfTest::RandDelete),
    ("seq_insert", PerfTest::SeqInsert),
    ("seq_lookup", PerfTest::SeqLookup),
    ("seq_overwrite", PerfTest::SeqOverwrite),
    ("seq_delete", PerfTest::SeqDelete),
];

impl PerfTest {
    /// The test named `name` (C's name), if any.
    pub fn from_name(name: &str) -> Option<PerfTest> {
        PERF_TESTS.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
    }

    /// C's name.
    pub fn name(self) -> &'static str {
        PERF_TESTS.iter().find(|(_, t)| *t == self).map_or("?", |(n, _)| n)
    }
}

/// The btree the tests use (`BTREE_ID_xattrs`).
const BTREE: BtreeId = BtreeId::Xattrs;

/// `SPOS(0, offset, U32_MAX)`.
fn pos(offset: u64) -> Bpos {
    Bpos::new(0, offset, u32::MAX)
}

/// `bkey_cookie_init()` at `p`: a cookie whose value (`mustbezero`) is 0.
fn cookie(p: Bpos) -> Result<BkeyI, Errno> {
    let mut v = Vec::new();
    v.extend_from_slice(&0u64.to_le_bytes())?;
    Ok(BkeyI { k: Bkey::new(KeyType::Cookie, p, 1), v })
}

/// splitmix64: the test's random offsets (C: `get_random_bytes()`).
fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first key of inode 0 at or after `from` (`peek_upto(POS(0,
/// U64_MAX))`).
fn peek_inode0(t: &mut BtreeTrans<'_>, from: Bpos) -> Result<Option<BkeyI>, BchError> {
    let it = t.iter(BTREE, from, true)?;
    Ok(t.iter_peek(it)?.filter(|k| k.k.p.inode == 0))
}

/// Runs one thread's share of `test`: `nr` operations (C divides the
/// total by the number of threads), random offsets drawn from `seed`.
/// `seq_lookup`, `seq_overwrite` and `seq_delete` walk every key of
/// inode 0 whatever `nr` is, as C's do.
///
/// Errors: those of the commits (`ENOSPC`, `EIO`, `ENOMEM`); C logs
/// `"<test>: error <err>"` and so does the caller.
pub fn perf_test_run<D: BlockDev + Send + Sync + 'static>(fs: &BchFs<D>, test: PerfTest, nr: u64, seed: u64) -> Result<(), Errno> {
    let mut rng = seed;
    match test {
        PerfTest::RandInsert => {
            for _ in 0..nr {
                let p = pos(next_rand(&mut rng));
                let _g = fs.op_lock();
                fs.commit_do(|t| t.update(BTREE, cookie(p)?))?;
            }
        }
        PerfTest::RandInsertMulti => {
            let mut i = 0;
            while i < nr {
                let mut ps = [Bpos::default(); 8];
                for p in ps.iter_mut() {
                    *p = pos(next_rand(&mut rng));
                }
                let _g = fs.op_lock();
                fs.commit_do(|t| {
                    for &p in ps.iter() {
                        t.update(BTREE, cookie(p)?)?;
                    }
                    Ok(())
                })?;
                i += 8;
            }
        }
        PerfTest::RandLookup => {
            for _ in 0..nr {
                let p = pos(next_rand(&mut rng));
                // Lookups take no operation lock: transactions that only
                // read are safe beside others (`BchFs::op_lock`).
                lockrestart_do(&fs.btree, |t| {
                    let it = t.iter(BTREE, p, false)?;
                    t.iter_peek(it).map(|_| ())
                })?;
            }
        }
        PerfTest::RandMixed => {
            for i in 0..nr {
                let p = pos(next_rand(&mut rng));
                if i & 3 == 0 {
                    let _g = fs.op_lock();
                    fs.commit_do(|t| {
                        let it = t.iter(BTREE, p, true)?;
                        if let Some(k) = t.iter_peek(it)? {
                            t.update(BTREE, cookie(k.k.p)?)?;
                        }
                        Ok(())
                    })?;
                } else {
                    // Three in four iterations only look up: as
                    // `rand_lookup`, without the operation lock.
                    lockrestart_do(&fs.btree, |t| {
                        let it = t.iter(BTREE, p, false)?;
                        t.iter_peek(it).map(|_| ())
                    })?;
                }
            }
        }
        PerfTest::RandDelete => {
            for _ in 0..nr {
                let p = pos(next_rand(&mut rng));
                let _g = fs.op_lock();
                fs.commit_do(|t| match peek_inode0(t, p)? {
                    Some(k) => t.delete(BTREE, k.k.p),
                    None => Ok(()),
                })?;
            }
        }
        PerfTest::SeqInsert => {
            for i in 0..nr {
                let _g = fs.op_lock();
                fs.commit_do(|t| t.update(BTREE, cookie(pos(i))?))?;
            }
        }
        PerfTest::SeqLookup => {
            lockrestart_do(&fs.btree, |t| {
                let it = t.iter(BTREE, pos(0), false)?;
                while let Some(k) = t.iter_peek(it)? {
                    if k.k.p.inode != 0 {
                        break;
                    }
                    t.iter_advance(it);
                }
                Ok(())
            })?;
        }
        PerfTest::SeqOverwrite | PerfTest::SeqDelete => {
            let mut from = pos(0);
            loop {
                let _g = fs.op_lock();
                let done = fs.commit_do(|t| {
                    let Some(k) = peek_inode0(t, from)? else { return Ok(None) };
                    let p = k.k.p;
                    if test == PerfTest::SeqDelete {
                        t.delete(BTREE, p)?;
                    } else {
                        t.update(BTREE, k)?;
                    }
                    Ok(Some(p))
                })?;
                match done.and_then(|p| p.successor()) {
                    Some(next) => from = next,
                    None => break,
                }
            }
        }
    }
    Ok(())
}

/// What a run took, printed as C's `bch2_btree_perf_test()` prints it:
/// `"<name>:      <nr> with <threads> threads in <s> sec, <ns> nsec per
/// iter, <rate> per sec"` (`nr` and the rate in `string_get_size()`'s
/// binary units, as `prt_human_readable_u64()` prints them).
#[derive(Clone, Copy, Debug)]
pub struct PerfTestResult {
    /// The test.
    pub test: PerfTest,
    /// Operations asked for, over all threads.
    pub nr: u64,
    /// Threads.
    pub threads: u32,
    /// Wall time from all threads ready to the last one done, ns.
    pub ns: u64,
}

impl fmt::Display for PerfTestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.ns.max(1);
        // No 128-bit division in the kernel: these fit in 64 bits for
        // any run shorter than 584 years.
        let per_sec = match self.nr.checked_mul(1_000_000_000) {
            Some(x) => x / ns,
            None => self.nr / (ns / 1_000_000_000).max(1),
        };
        let per_iter = ns.saturating_mul(u64::from(self.threads)) / self.nr.max(1);
        let mut name = ArrayStr::<20>::new();
        let _ = fmt::Write::write_fmt(&mut name, format_args!("{}:", self.test.name()));
        let mut nr = ArrayStr::<24>::new();
        let _ = fmt::Write::write_fmt(&mut nr, format_args!("{}", HumanReadable(self.nr)));
        let mut rate = ArrayStr::<24>::new();
        let _ = fmt::Write::write_fmt(&mut rate, format_args!("{}", HumanReadable(per_sec)));
        write!(
            f,
            "{:<12} {} with {} threads in {:>5} sec, {:>5} nsec per iter, {:>5} per sec",
            name.as_str(),
            nr.as_str(),
            self.threads,
            ns / 1_000_000_000,
            per_iter,
            rate.as_str()
        )
    }
}

/// A string in a fixed buffer, for padding what `Display` values print
/// (`{:<12}` pads only strings); longer text is cut.
struct ArrayStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> ArrayStr<N> {
    fn new() -> Self {
        ArrayStr { buf: [0; N], len: 0 }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for ArrayStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut b = [0u8; 4];
            let e = c.encode_utf8(&mut b).as_bytes();
            let Some(dst) = self.buf.get_mut(self.len..self.len + e.len()) else { return Ok(()) };
            for (d, x) in dst.iter_mut().zip(e) {
                *d = *x;
            }
            self.len += e.len();
        }
        Ok(())
    }
}
