// SPDX-License-Identifier: GPL-2.0
//! Tests of the write operations over an in-memory transaction: every
//! key written is validated as a commit would (`bch2_bkey_validate()`),
//! restarts are injected at random into reads, updates and commits, and
//! everything is read back through the read side (lookup, readdir,
//! inode_get, readlink, read_data), which was checked against volumes C
//! wrote.  No C file: the behaviour checked is that of `fs-common.c`,
//! `inode.c`, `dirent.c`, `str_hash.h`, `xattr.c` and `io_write.c` as
//! each module's doc describes it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec as StdVec;

use proptest::prelude::*;

use super::fs_ops::*;
use super::io_write::*;
use super::trans::*;
use super::xattr::*;
use super::*;
use crate::errcode::{BchError, Restart};
use crate::format::bkey::{Bkey, BkeyI, KeyType};
use crate::format::str_hash::HashInfo;
use crate::format::val::inode::{InodeField, InodeUnpacked, INODE_UNLINKED};
use crate::format::val::misc::Subvolume;
use crate::format::val::{validate_val, DevInfo, FsCtx, ValidateFlags};

const SNAP: u32 = u32::MAX;
const ROOT: u64 = 4096;
const BUCKET: u32 = 256;
const NBUCKETS: u64 = 128;

type Keys = BTreeMap<(u8, Bpos), (Bkey, StdVec<u8>)>;

/// An in-memory btree transaction: committed keys per btree, the pending
/// updates over them, a memory device, and a random restart injector.
struct MemTrans {
    committed: Keys,
    pending: Keys,
    dev: Rc<RefCell<StdVec<u8>>>,
    facts: FsFacts,
    opts: WriteOpts,
    now: Cell<i64>,
    rng: u64,
    /// Chance of a restart per call, out of 1000.
    restart_permille: u64,
    restarts: u64,
    /// Set by an injected restart until `begin`: an operation that goes on
    /// after its restart is a bug.
    poisoned: bool,
    hints: HashMap<u64, u64>,
    devs: [Option<DevInfo>; 1],
}

impl MemTrans {
    fn new(block_bytes: u32) -> MemTrans {
        let dev = Rc::new(RefCell::new(vec![0xee; (u64::from(BUCKET) * NBUCKETS * 512) as usize]));
        let mut t = MemTrans {
            committed: BTreeMap::new(),
            pending: BTreeMap::new(),
            dev,
            facts: FsFacts {
                block_bytes,
                time_base_lo: 0,
                time_precision_ns: 1,
                capacity_sectors: u64::from(BUCKET) * NBUCKETS,
                bucket_sectors: BUCKET,
            },
            opts: WriteOpts::default(),
            now: Cell::new(1_700_000_000_000_000_000),
            rng: 0x1234_5678_9abc_def1,
            restart_permille: 0,
            restarts: 0,
            poisoned: false,
            hints: HashMap::new(),
            devs: [Some(DevInfo { bucket_size: BUCKET, first_bucket: 1, nbuckets: NBUCKETS, durability: 1, failed: false })],
        };
        // The root subvolume and directory, as format makes them.
        let s = Subvolume { snapshot: SNAP, inode: ROOT, ..Default::default() };
        t.put_committed(BtreeId::Subvolumes, new_key(KeyType::Subvolume, Bpos::pos(0, 1), &s.encode()).unwrap());
        let mut root = InodeUnpacked { inum: ROOT, snapshot: SNAP, mode: 0o40755, hash_seed: 0x5eed, ..Default::default() };
        root.flags = 3 << 20;
        let mut buf = [0u8; 272];
        let n = crate::format::val::inode::pack_v3(&root, &mut buf).unwrap();
        t.put_committed(BtreeId::Inodes, new_key(KeyType::InodeV3, Bpos::new(0, ROOT, SNAP), &buf[..n]).unwrap());
        t
    }

    fn put_committed(&mut self, b: BtreeId, k: BkeyI) {
        self.committed.insert((b as u8, k.k.p), (k.k, k.v.to_vec()));
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn maybe_restart(&mut self) -> Result<(), BchError> {
        assert!(!self.poisoned, "operation went on after a restart");
        if self.restart_permille > 0 && self.next_rand() % 1000 < self.restart_permille {
            self.restarts += 1;
            self.poisoned = true;
            return Err(BchError::Restart(Restart::FaultInject));
        }
        Ok(())
    }

    /// The effective key at `(b, p)`: pending over committed.
    fn effective(&self, b: u8, p: Bpos) -> Option<&(Bkey, StdVec<u8>)> {
        self.pending.get(&(b, p)).or_else(|| self.committed.get(&(b, p)))
    }

    fn first_in(map: &Keys, b: u8, from: Bpos, to: Bpos) -> Option<Bpos> {
        map.range((b, from)..=(b, to)).next().map(|((_, p), _)| *p)
    }

    fn peek(&self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool, pending: bool) -> Option<BkeyI> {
        let b = btree as u8;
        let mut from = from;
        while from <= to {
            let c = Self::first_in(&self.committed, b, from, to);
            let q = if pending { Self::first_in(&self.pending, b, from, to) } else { None };
            let p = match (c, q) {
                (Some(c), Some(q)) => c.min(q),
                (Some(c), None) => c,
                (None, Some(q)) => q,
                (None, None) => return None,
            };
            let (k, v) = if pending { self.effective(b, p).unwrap() } else { self.committed.get(&(b, p)).unwrap() };
            let t = KeyType::from_u8(k.key_type);
            let skip = t == Some(KeyType::Deleted)
                || (!whiteouts && matches!(t, Some(KeyType::Whiteout | KeyType::HashWhiteout)));
            if !skip {
                let mut val = crate::platform::Vec::new();
                val.extend_from_slice(v).unwrap();
                return Some(BkeyI { k: *k, v: val });
            }
            match p.successor() {
                Some(n) => from = n,
                None => return None,
            }
        }
        None
    }

    fn keys_of(&self, btree: BtreeId, inum: u64) -> StdVec<(Bkey, StdVec<u8>)> {
        let b = btree as u8;
        self.committed
            .range((b, Bpos::new(inum, 0, 0))..=(b, Bpos::new(inum, u64::MAX, u32::MAX)))
            .map(|(_, kv)| kv.clone())
            .collect()
    }

    fn tick(&self) {
        self.now.set(self.now.get() + 1_000_000_007);
    }
}

impl BtreeTransOps for MemTrans {
    fn peek_upto(&mut self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<BkeyI>, BchError> {
        self.maybe_restart()?;
        Ok(self.peek(btree, from, to, whiteouts, true))
    }

    fn update(&mut self, btree: BtreeId, k: BkeyI) -> Result<(), BchError> {
        self.maybe_restart()?;
        // Every key must be one a commit would accept.
        assert_eq!(k.k.val_bytes(), k.v.len(), "u64s and value disagree: {:?}", k.k);
        let ctx = FsCtx { devs: &self.devs, btree_node_sectors: 512, encoded_extent_max_sectors: 128 };
        k.k.validate(crate::format::bkey::NodeType::new(0, btree as u32), true)
            .unwrap_or_else(|e| panic!("invalid key {:?}: {e}", k.k));
        validate_val(&k.k, &k.v, &ctx, ValidateFlags { write: true, commit: true })
            .unwrap_or_else(|e| panic!("invalid value of {:?} in {}: {e}", k.k, btree.name()));
        self.pending.insert((btree as u8, k.k.p), (k.k, k.v.to_vec()));
        Ok(())
    }

    fn begin(&mut self) {
        self.pending.clear();
        self.poisoned = false;
    }

    fn commit(&mut self) -> Result<(), BchError> {
        self.maybe_restart()?;
        for (kp, (k, v)) in std::mem::take(&mut self.pending) {
            if k.key_type == KeyType::Deleted as u8 {
                self.committed.remove(&kp);
            } else {
                self.committed.insert(kp, (k, v));
            }
        }
        Ok(())
    }

    fn read_data(&mut self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        BtreeRead::read_data(&*self, dev, sector, buf)
    }

    fn dev_name(&self) -> &str {
        "memdev"
    }

    fn facts(&self) -> &FsFacts {
        &self.facts
    }

    fn opts(&self) -> &WriteOpts {
        &self.opts
    }

    fn now_ns(&self) -> i64 {
        self.now.get()
    }

    fn random_u64(&mut self) -> u64 {
        self.next_rand()
    }

    fn unused_inode_hint(&self, cpu: u64) -> u64 {
        self.hints.get(&cpu).copied().unwrap_or(0)
    }

    fn set_unused_inode_hint(&mut self, cpu: u64, v: u64) {
        self.hints.insert(cpu, v);
    }
}

/// The committed state, as the read side sees a volume.
impl BtreeRead for MemTrans {
    fn peek_upto(&self, btree: BtreeId, from: Bpos, to: Bpos, whiteouts: bool) -> Result<Option<OwnedKey>, Errno> {
        Ok(self.peek(btree, from, to, whiteouts, false))
    }

    fn read_data(&self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if dev != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let at = sector as usize * 512;
        let d = self.dev.borrow();
        buf.copy_from_slice(d.get(at..at + buf.len()).ok_or(Errno::EIO)?);
        Ok(())
    }

    fn dev_name(&self) -> &str {
        "memdev"
    }

    fn facts(&self) -> &FsFacts {
        &self.facts
    }
}

/// A bump allocator over the memory device: never crosses a bucket.
struct BumpAlloc {
    dev: Rc<RefCell<StdVec<u8>>>,
    next: u64,
    /// Data writes done, and the number of the one to fail with `EIO`.
    writes: u64,
    fail_write: Option<u64>,
}

impl BumpAlloc {
    fn new(t: &MemTrans) -> BumpAlloc {
        BumpAlloc { dev: t.dev.clone(), next: u64::from(BUCKET), writes: 0, fail_write: None }
    }
}

impl DataAlloc for BumpAlloc {
    fn alloc(&mut self, sectors: u32) -> Result<DataSpace, Errno> {
        let b = u64::from(BUCKET);
        let left = b - self.next % b;
        let got = u64::from(sectors).min(left);
        if self.next + got > b * NBUCKETS {
            return Err(Errno::ENOSPC);
        }
        let sp = DataSpace { dev: 0, offset: self.next, gen: 0, sectors: got as u32 };
        self.next += got;
        Ok(sp)
    }

    fn sectors_free(&self) -> u32 {
        let b = u64::from(BUCKET);
        (b - self.next % b) as u32
    }

    fn write(&mut self, dev: u8, sector: u64, data: &[u8]) -> Result<(), Errno> {
        assert_eq!(dev, 0);
        assert_eq!(data.len() % 512, 0);
        self.writes += 1;
        if self.fail_write == Some(self.writes - 1) {
            return Err(Errno::EIO);
        }
        let at = sector as usize * 512;
        self.dev.borrow_mut()[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
}

fn sv() -> Subvol {
    Subvol { id: 1, snapshot: SNAP, root_inum: ROOT }
}

fn attrs(t: &MemTrans, inum: u64) -> InodeAttrs {
    inode_get(t, &sv(), inum).unwrap()
}

fn lookup_name(t: &MemTrans, dir: u64, name: &[u8]) -> Option<(u64, u8)> {
    lookup(t, &sv(), &attrs(t, dir), name).unwrap()
}

fn list(t: &MemTrans, dir: u64) -> StdVec<(StdVec<u8>, u64, u8)> {
    let mut out = StdVec::new();
    readdir(t, &sv(), &attrs(t, dir), 0, &mut |e| {
        out.push((e.name.to_vec(), e.inum, e.d_type));
        true
    })
    .unwrap();
    out.sort();
    out
}

fn read_all(t: &MemTrans, inum: u64) -> StdVec<u8> {
    let a = attrs(t, inum);
    let mut buf = crate::platform::Vec::new();
    buf.resize((a.size.div_ceil(512) * 512) as usize, 0u8).unwrap();
    read_data(t, &sv(), &a, 0, &mut buf, &mut ExtentCache::default()).unwrap();
    buf[..a.size as usize].to_vec()
}

fn file(mode: u16) -> NewInode {
    NewInode { mode, uid: 1000, gid: 100, rdev: 0 }
}

fn mkfile(t: &mut MemTrans, dir: u64, name: &str) -> u64 {
    create(t, &sv(), dir, name.as_bytes(), &file(0o100644)).unwrap().inum
}

fn mkdir(t: &mut MemTrans, dir: u64, name: &str) -> u64 {
    create(t, &sv(), dir, name.as_bytes(), &file(0o40755)).unwrap().inum
}

/// The sum of the allocated sectors of `inum`'s extents.
fn sectors_of(t: &MemTrans, inum: u64) -> u64 {
    t.keys_of(BtreeId::Extents, inum).iter().filter(|(k, _)| is_allocation(k.key_type)).map(|(k, _)| u64::from(k.size)).sum()
}

fn pattern(len: usize, seed: u8) -> StdVec<u8> {
    // Not periodic: data read from the wrong sector never matches.
    (0..len as u64)
        .map(|i| ((i + u64::from(seed) * 1_000_003).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 | 1)
        .collect()
}

// ---------------------------------------------------------------------
// Namespace

#[test]
fn build_tree_and_read_it_back() {
    let mut t = MemTrans::new(4096);
    t.restart_permille = 50;
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let d1 = mkdir(&mut t, ROOT, "dir1");
    t.tick();
    let d2 = mkdir(&mut t, d1, "sub");
    let f1 = mkfile(&mut t, ROOT, "file");
    let fifo = create(&mut t, &s, d1, b"fifo", &file(0o10600)).unwrap().inum;
    let chr = create(&mut t, &s, d1, b"null", &NewInode { mode: 0o20666, uid: 0, gid: 0, rdev: (1 << 20) | 3 }).unwrap().inum;
    let sock = create(&mut t, &s, d2, b"sock", &file(0o140755)).unwrap().inum;
    let ln = symlink(&mut t, &mut a, &s, d1, b"link", b"../file", 0, 0).unwrap().inum;
    assert!(t.restarts > 0, "no restarts were injected");

    assert_eq!(list(&t, ROOT), vec![(b"dir1".to_vec(), d1, 4), (b"file".to_vec(), f1, 8)]);
    assert_eq!(
        list(&t, d1),
        vec![(b"fifo".to_vec(), fifo, 1), (b"link".to_vec(), ln, 10), (b"null".to_vec(), chr, 2), (b"sub".to_vec(), d2, 4)]
    );
    assert_eq!(list(&t, d2), vec![(b"sock".to_vec(), sock, 12)]);
    assert_eq!(lookup_name(&t, d1, b"null"), Some((chr, 2)));
    assert_eq!(lookup_name(&t, d1, b"nope"), None);

    // Link counts: the root has one subdirectory, dir1 one.
    assert_eq!(attrs(&t, ROOT).nlink, 3);
    assert_eq!(attrs(&t, d1).nlink, 3);
    assert_eq!(attrs(&t, d2).nlink, 2);
    assert_eq!(attrs(&t, f1).nlink, 1);
    let c = attrs(&t, chr);
    assert_eq!((c.mode, c.uid, c.gid, c.rdev), (0o20666, 0, 0, (1 << 20) | 3));
    let f = attrs(&t, f1);
    assert_eq!((f.mode, f.uid, f.gid, f.size, f.sectors), (0o100644, 1000, 100, 0, 0));
    // Times: what the clock said, all four alike on create; the parent's
    // mtime/ctime moved with the last create in it.
    let now = t.now.get();
    assert_eq!((f.atime_ns, f.mtime_ns, f.ctime_ns, f.otime_ns), (now, now, now, now));
    assert_eq!(attrs(&t, d1).mtime_ns, now);
    assert_ne!(attrs(&t, d1).otime_ns, now);
    // Backpointers and the hash seed.
    let u = inode_unpacked_get(&t, SNAP, d2).unwrap();
    assert_eq!(u.get(InodeField::Dir), d1);
    let info = HashInfo::new(3, attrs(&t, d1).hash_seed).unwrap();
    assert_eq!(u.get(InodeField::DirOffset), info.dirent_hash(b"sub"));
    assert_eq!(u.str_hash_type(), 3);
    assert_ne!(u.hash_seed, attrs(&t, f1).hash_seed);
    // Symlink: the target as (inline) data, i_size its length
    // (page_symlink() writes one byte less than it is given).
    let l = attrs(&t, ln);
    assert_eq!((l.mode, l.size), (0o120777, 7));
    let mut target = crate::platform::Vec::new();
    readlink(&t, &s, &l, &mut target).unwrap();
    assert_eq!(&target[..], b"../file");
    let ks = t.keys_of(BtreeId::Extents, ln);
    assert_eq!(ks.len(), 1);
    assert_eq!(ks[0].0.key_type, KeyType::InlineData as u8);
    assert_eq!(ks[0].0.size, 8);
    assert_eq!(l.sectors, 8);
    // Inode numbers: consecutive from the first free one.
    let mut nums = vec![d1, d2, f1, fifo, chr, sock, ln];
    nums.sort();
    assert_eq!(nums, (4097..4104).collect::<StdVec<_>>());
}

#[test]
fn create_errors() {
    let mut t = MemTrans::new(4096);
    let s = sv();
    let f = mkfile(&mut t, ROOT, "f");
    let e = |t: &mut MemTrans, dir, name: &[u8], mode| create(t, &s, dir, name, &file(mode)).unwrap_err();
    assert_eq!(e(&mut t, ROOT, b"f", 0o100644), Errno::EEXIST);
    assert_eq!(e(&mut t, ROOT, &[b'x'; 513], 0o100644), Errno::ENAMETOOLONG);
    assert_eq!(e(&mut t, ROOT, b"", 0o100644), Errno::ENOENT);
    assert_eq!(e(&mut t, ROOT, b"..", 0o40755), Errno::EEXIST);
    assert_eq!(e(&mut t, ROOT, b"a/b", 0o100644), Errno::EINVAL);
    assert_eq!(e(&mut t, ROOT, b"a", 0o644), Errno::EINVAL);
    assert_eq!(e(&mut t, f, b"a", 0o100644), Errno::ENOTDIR);
    assert_eq!(e(&mut t, 99999, b"a", 0o100644), Errno::ENOENT);
    // A 512-byte name is allowed.
    create(&mut t, &s, ROOT, &[b'y'; 512], &file(0o100644)).unwrap();
    assert!(lookup_name(&t, ROOT, &[b'y'; 512]).is_some());
    let mut a = BumpAlloc::new(&t);
    assert_eq!(symlink(&mut t, &mut a, &s, ROOT, b"l", &[b'z'; 4096], 0, 0).unwrap_err(), Errno::ENAMETOOLONG);
    assert_eq!(symlink(&mut t, &mut a, &s, ROOT, b"l", b"", 0, 0).unwrap_err(), Errno::ENOENT);
    // A long target goes to an extent, not inline.
    let l = symlink(&mut t, &mut a, &s, ROOT, b"l", &[b'z'; 4095], 0, 0).unwrap();
    let mut out = crate::platform::Vec::new();
    readlink(&t, &s, &attrs(&t, l.inum), &mut out).unwrap();
    assert_eq!(&out[..], &[b'z'; 4095][..]);
    assert_eq!(t.keys_of(BtreeId::Extents, l.inum)[0].0.key_type, KeyType::Extent as u8);
}

#[test]
fn links_and_unlink_of_the_last_link() {
    let mut t = MemTrans::new(4096);
    t.restart_permille = 30;
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let d = mkdir(&mut t, ROOT, "d");
    let f = mkfile(&mut t, ROOT, "f");
    write_data(&mut t, &mut a, &s, f, 0, &pattern(10000, 1)).unwrap();
    xattr_set(&mut t, &s, f, b"user.a", Some(b"1"), 0).unwrap();
    link(&mut t, &s, d, f, b"g").unwrap();
    assert_eq!(attrs(&t, f).nlink, 2);
    assert_eq!(lookup_name(&t, d, b"g"), Some((f, 8)));
    assert_eq!(link(&mut t, &s, d, d, b"x").unwrap_err(), EPERM);
    assert_eq!(link(&mut t, &s, d, f, b"g").unwrap_err(), Errno::EEXIST);
    // The backpointer follows the newest link.
    let u = inode_unpacked_get(&t, SNAP, f).unwrap();
    assert_eq!(u.get(InodeField::Dir), d);
    unlink(&mut t, &s, d, b"g", false).unwrap();
    let u = inode_unpacked_get(&t, SNAP, f).unwrap();
    assert_eq!((u.get(InodeField::Dir), u.get(InodeField::DirOffset)), (0, 0));
    assert_eq!(attrs(&t, f).nlink, 1);
    assert_eq!(read_all(&t, f), pattern(10000, 1));

    assert_eq!(unlink(&mut t, &s, ROOT, b"d", false).unwrap_err(), Errno::EISDIR);
    assert_eq!(unlink(&mut t, &s, ROOT, b"f", true).unwrap_err(), Errno::ENOTDIR);
    assert_eq!(unlink(&mut t, &s, ROOT, b"nope", false).unwrap_err(), Errno::ENOENT);
    mkfile(&mut t, d, "inner");
    assert_eq!(unlink(&mut t, &s, ROOT, b"d", true).unwrap_err(), Errno::ENOTEMPTY);
    unlink(&mut t, &s, d, b"inner", false).unwrap();
    unlink(&mut t, &s, ROOT, b"d", true).unwrap();
    assert_eq!(attrs(&t, ROOT).nlink, 2);

    // The last link: the inode, its extents and xattrs go; a generation
    // key stays.
    unlink(&mut t, &s, ROOT, b"f", false).unwrap();
    assert_eq!(inode_get(&t, &s, f), Err(Errno::ENOENT));
    assert!(t.keys_of(BtreeId::Extents, f).is_empty());
    assert!(t.keys_of(BtreeId::Xattrs, f).is_empty());
    let gk = t.committed.get(&(BtreeId::Inodes as u8, Bpos::new(0, f, SNAP))).unwrap();
    assert_eq!(gk.0.key_type, KeyType::InodeGeneration as u8);
    assert_eq!(&gk.1[..4], &1u32.to_le_bytes());
    assert!(list(&t, ROOT).is_empty());
}

/// `count` names whose crc32c dirent hashes (seed `seed`) are equal.
fn colliding_names(info: &HashInfo, count: usize, xattr: bool) -> StdVec<StdVec<u8>> {
    let mut seen: HashMap<u64, StdVec<StdVec<u8>>> = HashMap::new();
    for i in 0u64.. {
        let name = std::format!("n{i}").into_bytes();
        let h = if xattr { info.xattr_hash(0, &name) } else { info.dirent_hash(&name) };
        let e = seen.entry(h).or_default();
        e.push(name);
        if e.len() == count {
            return e.clone();
        }
    }
    unreachable!()
}

#[test]
fn dirent_hash_collisions_and_whiteouts() {
    let mut t = MemTrans::new(4096);
    t.opts.str_hash = 0; // crc32c: 32-bit hashes collide after ~2^16 names
    let s = sv();
    let d = mkdir(&mut t, ROOT, "d");
    let info = HashInfo::new(0, attrs(&t, d).hash_seed).unwrap();
    let names = colliding_names(&info, 2, false);
    let h = info.dirent_hash(&names[0]);
    let a = create(&mut t, &s, d, &names[0], &file(0o100644)).unwrap();
    let b = create(&mut t, &s, d, &names[1], &file(0o100644)).unwrap();
    // The second went to the next slot.
    assert_eq!(a.get(InodeField::DirOffset), h);
    assert_eq!(b.get(InodeField::DirOffset), h + 1);
    let slot = |t: &MemTrans, off| t.committed.get(&(BtreeId::Dirents as u8, Bpos::new(d, off, SNAP))).map(|e| e.0.key_type);
    // Deleting the first must leave a whiteout so the second stays
    // reachable.
    unlink(&mut t, &s, d, &names[0], false).unwrap();
    assert_eq!(slot(&t, h), Some(KeyType::HashWhiteout as u8));
    assert_eq!(lookup_name(&t, d, &names[1]), Some((b.inum, 8)));
    assert_eq!(list(&t, d).len(), 1);
    // A new name hashing there reuses the whiteout.
    let a2 = create(&mut t, &s, d, &names[0], &file(0o100644)).unwrap();
    assert_eq!(a2.get(InodeField::DirOffset), h);
    // Deleting the last of a chain needs no whiteout.
    unlink(&mut t, &s, d, &names[1], false).unwrap();
    assert_eq!(slot(&t, h + 1), None);
    // Rename within the chain: the entry between the hash and the hole
    // (BCH_RENAME's special case).
    let b2 = create(&mut t, &s, d, &names[1], &file(0o100644)).unwrap();
    rename(&mut t, &s, d, &names[0], d, b"other", 0).unwrap();
    assert_eq!(slot(&t, h), Some(KeyType::HashWhiteout as u8));
    assert_eq!(lookup_name(&t, d, &names[1]).map(|x| x.0), Some(b2.inum));
    rename(&mut t, &s, d, b"other", d, &names[0], 0).unwrap();
    assert_eq!(lookup_name(&t, d, &names[0]).map(|x| x.0), Some(a2.inum));
    assert_eq!(list(&t, d).len(), 2);
}

#[test]
fn rename_modes_and_errors() {
    let mut t = MemTrans::new(4096);
    t.restart_permille = 30;
    let s = sv();
    let d1 = mkdir(&mut t, ROOT, "d1");
    let d2 = mkdir(&mut t, ROOT, "d2");
    let sub = mkdir(&mut t, d1, "sub");
    let f = mkfile(&mut t, d1, "f");
    let g = mkfile(&mut t, d2, "g");
    let r = |t: &mut MemTrans, a, an: &str, b, bn: &str, fl| rename(t, &s, a, an.as_bytes(), b, bn.as_bytes(), fl);
    assert_eq!(r(&mut t, d1, "none", d2, "x", 0), Err(Errno::ENOENT));
    assert_eq!(r(&mut t, d1, "f", d2, "g", RENAME_NOREPLACE), Err(Errno::EEXIST));
    assert_eq!(r(&mut t, d1, "f", d2, "none", RENAME_EXCHANGE), Err(Errno::ENOENT));
    assert_eq!(r(&mut t, d1, "sub", d2, "g", 0), Err(Errno::ENOTDIR));
    assert_eq!(r(&mut t, d2, "g", d1, "sub", 0), Err(Errno::EISDIR));
    assert_eq!(r(&mut t, ROOT, "d1", sub, "x", 0), Err(Errno::EINVAL));
    assert_eq!(r(&mut t, d1, "f", d2, "g", 3), Err(Errno::EINVAL));
    mkfile(&mut t, sub, "inner");
    let e = mkdir(&mut t, d2, "e");
    assert_eq!(r(&mut t, d2, "e", d1, "sub", 0), Err(Errno::ENOTEMPTY));
    // Move a directory: link counts move with it.
    r(&mut t, d1, "sub", d2, "moved", 0).unwrap();
    assert_eq!((attrs(&t, d1).nlink, attrs(&t, d2).nlink), (2, 4));
    assert_eq!(inode_unpacked_get(&t, SNAP, sub).unwrap().get(InodeField::Dir), d2);
    // Overwrite an empty directory: it is gone and counted out.
    r(&mut t, d2, "moved", d2, "e", 0).unwrap();
    assert_eq!(inode_get(&t, &s, e), Err(Errno::ENOENT));
    assert_eq!(attrs(&t, d2).nlink, 3);
    assert_eq!(lookup_name(&t, d2, b"e"), Some((sub, 4)));
    // Exchange a file and a directory across directories.
    r(&mut t, d1, "f", d2, "e", RENAME_EXCHANGE).unwrap();
    assert_eq!(lookup_name(&t, d1, b"f"), Some((sub, 4)));
    assert_eq!(lookup_name(&t, d2, b"e"), Some((f, 8)));
    assert_eq!((attrs(&t, d1).nlink, attrs(&t, d2).nlink), (3, 2));
    let (us, uf) = (inode_unpacked_get(&t, SNAP, sub).unwrap(), inode_unpacked_get(&t, SNAP, f).unwrap());
    assert_eq!((us.get(InodeField::Dir), uf.get(InodeField::Dir)), (d1, d2));
    // Overwrite a file: the old one loses its last link and goes.
    r(&mut t, d2, "e", d2, "g", 0).unwrap();
    assert_eq!(inode_get(&t, &s, g), Err(Errno::ENOENT));
    assert_eq!(list(&t, d2), vec![(b"g".to_vec(), f, 8)]);
    // Onto another link of itself: nothing happens.
    link(&mut t, &s, d2, f, b"h").unwrap();
    r(&mut t, d2, "g", d2, "h", 0).unwrap();
    assert_eq!(list(&t, d2).len(), 2);
}

#[test]
fn rename_whiteout_in_one_transaction() {
    // What the VFS glue does for RENAME_WHITEOUT (`bch2_rename2()`): the
    // rename and a character device 0:0 at the source's name, one commit,
    // over and over in one directory (dirent hash slots and whiteouts
    // reused), in all three modes.
    let mut t = MemTrans::new(4096);
    t.restart_permille = 30;
    let s = sv();
    let d = mkdir(&mut t, ROOT, "d");
    let e = mkdir(&mut t, ROOT, "e");
    let whiteout = |t: &mut MemTrans, sd: u64, sn: &str, dd: u64, dn: &str, mode: RenameMode| {
        let w = inode_init_early(t, &NewInode { mode: 0o20000, uid: 3, gid: 4, rdev: 0 });
        commit_do(t, |t| {
            rename_trans(t, &s, sd, sn.as_bytes(), dd, dn.as_bytes(), mode)?;
            create_trans(t, &s, sd, sn.as_bytes(), &w, false).map(|_| ())
        })
    };
    let mut files = StdVec::new();
    for i in 0..40 {
        let n = std::format!("f{i}");
        let f = mkfile(&mut t, d, &n);
        files.push(f);
        whiteout(&mut t, d, &n, e, &n, RenameMode::Rename).unwrap();
        let (w, dt) = lookup_name(&t, d, n.as_bytes()).unwrap();
        assert_eq!(dt, 2, "a character device's d_type");
        let wa = attrs(&t, w);
        assert_eq!((wa.mode, wa.rdev, wa.uid, wa.gid, wa.nlink), (0o20000, 0, 3, 4, 1));
        assert_eq!(lookup_name(&t, e, n.as_bytes()), Some((f, 8)));
    }
    // Overwrite: the whiteout replaced by the file moved back, a new
    // whiteout where the file was.
    whiteout(&mut t, e, "f0", d, "f0", RenameMode::Overwrite).unwrap();
    assert_eq!(lookup_name(&t, d, b"f0"), Some((files[0], 8)));
    assert_eq!(lookup_name(&t, e, b"f0").map(|x| x.1), Some(2));
    // Exchange: the names swap, and the source's name (now holding the
    // other inode) cannot take a whiteout: EEXIST, nothing committed.
    assert_eq!(whiteout(&mut t, d, "f0", e, "f1", RenameMode::Exchange), Err(Errno::EEXIST));
    assert_eq!(lookup_name(&t, d, b"f0"), Some((files[0], 8)));
    assert_eq!(list(&t, d).len(), 40);
    assert_eq!(list(&t, e).len(), 40);
    assert_eq!(attrs(&t, d).nlink, 2);
}

#[test]
fn setattr_and_times() {
    let mut t = MemTrans::new(1024);
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let f = mkfile(&mut t, ROOT, "f");
    t.tick();
    let at = SetAttr {
        mode: Some(0o4755),
        uid: Some(7),
        gid: Some(8),
        atime_ns: Some(-1_500_000_000),
        mtime_ns: Some(1_000_000_123),
        otime_ns: Some(5),
        ..Default::default()
    };
    setattr(&mut t, &mut a, &s, f, &at).unwrap();
    let x = attrs(&t, f);
    assert_eq!((x.mode, x.uid, x.gid), (0o104755, 7, 8));
    assert_eq!((x.atime_ns, x.mtime_ns, x.otime_ns, x.ctime_ns), (-1_500_000_000, 1_000_000_123, 5, t.now.get()));
    let d = mkdir(&mut t, ROOT, "d");
    assert_eq!(setattr(&mut t, &mut a, &s, d, &SetAttr { size: Some(1), ..Default::default() }).unwrap_err(), Errno::EISDIR);
    // Time units: with 1 µs precision, times are rounded down to it.
    t.facts.time_precision_ns = 1000;
    setattr(&mut t, &mut a, &s, f, &SetAttr { mtime_ns: Some(1_999_999), ..Default::default() }).unwrap();
    assert_eq!(attrs(&t, f).mtime_ns, 1_999_000);
    assert_eq!(inode_unpacked_get(&t, SNAP, f).unwrap().get(InodeField::Mtime), 1999);
}

#[test]
fn setgid_directories_pass_on_their_group() {
    let mut t = MemTrans::new(4096);
    let s = sv();
    let d = create(&mut t, &s, ROOT, b"d", &NewInode { mode: 0o42775, uid: 1, gid: 50, rdev: 0 }).unwrap().inum;
    let sub = create(&mut t, &s, d, b"sub", &NewInode { mode: 0o40700, uid: 2, gid: 60, rdev: 0 }).unwrap().inum;
    let f = create(&mut t, &s, d, b"f", &NewInode { mode: 0o100600, uid: 2, gid: 60, rdev: 0 }).unwrap().inum;
    assert_eq!((attrs(&t, sub).gid, attrs(&t, sub).mode), (50, 0o42700));
    assert_eq!((attrs(&t, f).gid, attrs(&t, f).mode), (50, 0o100600));
}

// ---------------------------------------------------------------------
// Xattrs

fn xget(t: &mut MemTrans, inum: u64, name: &str) -> Result<StdVec<u8>, Errno> {
    let mut out = crate::platform::Vec::new();
    xattr_get(t, &sv(), inum, name.as_bytes(), &mut out).map(|()| out.to_vec())
}

#[test]
fn xattrs_set_replace_remove() {
    let mut t = MemTrans::new(4096);
    t.restart_permille = 30;
    let s = sv();
    let f = mkfile(&mut t, ROOT, "f");
    xattr_set(&mut t, &s, f, b"user.a", Some(b"one"), 0).unwrap();
    xattr_set(&mut t, &s, f, b"trusted.b", Some(b""), 0).unwrap();
    xattr_set(&mut t, &s, f, b"security.c", Some(&[7u8; 1000]), XATTR_CREATE).unwrap();
    assert_eq!(xget(&mut t, f, "user.a"), Ok(b"one".to_vec()));
    assert_eq!(xget(&mut t, f, "trusted.b"), Ok(vec![]));
    assert_eq!(xget(&mut t, f, "security.c"), Ok(vec![7u8; 1000]));
    assert_eq!(xget(&mut t, f, "user.none"), Err(Errno::ENODATA));
    assert_eq!(xget(&mut t, 99999, "user.none"), Err(Errno::ENOENT));
    assert_eq!(xattr_set(&mut t, &s, f, b"user.a", Some(b"x"), XATTR_CREATE), Err(Errno::EEXIST));
    assert_eq!(xattr_set(&mut t, &s, f, b"user.z", Some(b"x"), XATTR_REPLACE), Err(Errno::ENODATA));
    xattr_set(&mut t, &s, f, b"user.a", Some(b"two"), XATTR_REPLACE).unwrap();
    assert_eq!(xget(&mut t, f, "user.a"), Ok(b"two".to_vec()));
    // Removal.
    xattr_set(&mut t, &s, f, b"user.a", None, 0).unwrap();
    assert_eq!(xget(&mut t, f, "user.a"), Err(Errno::ENODATA));
    xattr_set(&mut t, &s, f, b"user.a", None, 0).unwrap();
    assert_eq!(xattr_set(&mut t, &s, f, b"user.a", None, XATTR_REPLACE), Err(Errno::ENODATA));
    let mut l = crate::platform::Vec::new();
    xattr_list(&mut t, &s, f, false, &mut l).unwrap();
    let mut names: StdVec<&[u8]> = l.split(|&b| b == 0).filter(|n| !n.is_empty()).collect();
    names.sort();
    assert_eq!(names, vec![&b"security.c"[..], b"trusted.b"]);
    // Bad inputs.
    assert_eq!(xattr_set(&mut t, &s, f, b"bogus.a", Some(b"x"), 0), Err(Errno::EOPNOTSUPP));
    assert_eq!(xattr_set(&mut t, &s, f, b"user.", Some(b"x"), 0), Err(Errno::EINVAL));
    assert_eq!(xattr_set(&mut t, &s, f, &[b'u'; 256], Some(b"x"), 0), Err(Errno::ERANGE));
    assert_eq!(xattr_set(&mut t, &s, f, b"user.big", Some(&[0u8; 2000]), 0), Err(Errno::ERANGE));
    assert_eq!(xattr_set(&mut t, &s, f, b"user.huge", Some(&vec![0u8; 70000]), 0), Err(E2BIG));
}

#[test]
fn xattr_hash_collisions() {
    let mut t = MemTrans::new(4096);
    t.opts.str_hash = 0;
    let s = sv();
    let f = mkfile(&mut t, ROOT, "f");
    let info = HashInfo::new(0, attrs(&t, f).hash_seed).unwrap();
    let names = colliding_names(&info, 2, true);
    let full = |n: &StdVec<u8>| [b"user.".as_slice(), n].concat();
    let h = info.xattr_hash(0, &names[0]);
    xattr_set(&mut t, &s, f, &full(&names[0]), Some(b"A"), 0).unwrap();
    xattr_set(&mut t, &s, f, &full(&names[1]), Some(b"B"), XATTR_CREATE).unwrap();
    let slot = |t: &MemTrans, off| t.committed.get(&(BtreeId::Xattrs as u8, Bpos::new(f, off, SNAP))).map(|e| e.0.key_type);
    assert_eq!((slot(&t, h), slot(&t, h + 1)), (Some(KeyType::Xattr as u8), Some(KeyType::Xattr as u8)));
    // Replace the second in place, through the first.
    xattr_set(&mut t, &s, f, &full(&names[1]), Some(b"BB"), XATTR_REPLACE).unwrap();
    assert_eq!(slot(&t, h + 2), None);
    xattr_set(&mut t, &s, f, &full(&names[0]), None, 0).unwrap();
    assert_eq!(slot(&t, h), Some(KeyType::HashWhiteout as u8));
    assert_eq!(xget(&mut t, f, std::str::from_utf8(&full(&names[1])).unwrap()), Ok(b"BB".to_vec()));
}

// ---------------------------------------------------------------------
// Data

#[test]
fn write_read_checksums_inline_and_holes() {
    for block in [1024u32, 4096] {
        for csum in 0..4u8 {
            let mut t = MemTrans::new(block);
            t.opts.data_checksum = csum;
            t.restart_permille = 20;
            let mut a = BumpAlloc::new(&t);
            let s = sv();
            let b = block as u64;
            // Small file: inline.
            let small = mkfile(&mut t, ROOT, "small");
            write_data(&mut t, &mut a, &s, small, 0, b"hello").unwrap();
            assert_eq!(read_all(&t, small), b"hello");
            let ks = t.keys_of(BtreeId::Extents, small);
            assert_eq!((ks.len(), ks[0].0.key_type, ks[0].0.size), (1, KeyType::InlineData as u8, block / 512));
            assert_eq!(attrs(&t, small).sectors, u64::from(block / 512));
            // Big file with a hole: extents of at most 64 KiB when
            // checksummed, none crossing a bucket.
            let big = mkfile(&mut t, ROOT, "big");
            let d1 = pattern(300_000, 3);
            write_data(&mut t, &mut a, &s, big, 0, &d1).unwrap();
            let off2 = 1_000_000 / b * b;
            let d2 = pattern(70_001, 9);
            write_data(&mut t, &mut a, &s, big, off2, &d2).unwrap();
            let mut model = d1.clone();
            model.resize(off2 as usize, 0);
            model.extend_from_slice(&d2);
            assert_eq!(read_all(&t, big), model, "block {block} csum {csum}");
            let at = attrs(&t, big);
            assert_eq!(at.size, off2 + 70_001);
            assert_eq!(at.sectors, sectors_of(&t, big));
            assert_eq!(at.sectors, (300_000u64.div_ceil(b) + 70_001u64.div_ceil(b)) * b / 512);
            for (k, v) in t.keys_of(BtreeId::Extents, big) {
                assert_eq!(k.key_type, KeyType::Extent as u8);
                let has_crc = crate::format::val::extent::ExtentEntries::new(&v)
                    .any(|e| matches!(e, Ok(crate::format::val::extent::ExtentEntry::Crc(_))));
                assert_eq!(has_crc, csum != 0);
                if csum != 0 {
                    assert!(k.size <= 128);
                }
            }
            // Overwrite the middle, unaligned length: the tail of its last
            // block reads as zeros (the bio is zero-filled).
            let off3 = 10 * b;
            let d3 = pattern(3 * b as usize + 100, 77);
            write_data(&mut t, &mut a, &s, big, off3, &d3).unwrap();
            let o = off3 as usize;
            model[o..o + d3.len()].copy_from_slice(&d3);
            model[o + d3.len()..o + 4 * b as usize].fill(0);
            assert_eq!(read_all(&t, big), model);
            assert_eq!(attrs(&t, big).sectors, sectors_of(&t, big));
            assert_eq!(write_data(&mut t, &mut a, &s, big, 100, b"x"), Err(Errno::EINVAL));
            assert_eq!(write_data(&mut t, &mut a, &s, ROOT, 0, b"x"), Err(Errno::EISDIR));
        }
    }
}

/// A write handed in as uneven segments (a writeback run's folios) reads
/// back as the same bytes written whole; a data write failing in the
/// middle of a write leaves the extents before it, and nothing after.
#[test]
fn segmented_writes_and_a_failed_data_write() {
    let mut t = MemTrans::new(4096);
    t.opts.data_checksum = 1;
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let d = pattern(600_000, 5);
    let f = mkfile(&mut t, ROOT, "segs");
    let mut segs: StdVec<&[u8]> = StdVec::new();
    let mut off = 0;
    for cut in [4096, 512, 66_560, 12_288, 1, 100_000, 4095] {
        segs.push(&d[off..off + cut]);
        off += cut;
    }
    segs.push(&d[off..]);
    write_data_segs(&mut t, &mut a, &s, f, 8192, &segs).unwrap();
    let mut model = vec![0u8; 8192];
    model.extend_from_slice(&d);
    assert_eq!(read_all(&t, f), model);
    assert_eq!(attrs(&t, f).sectors, sectors_of(&t, f));
    // The third extent's data write fails: the first two are in the
    // file, its size ends with them.
    let g = mkfile(&mut t, ROOT, "fails");
    a.fail_write = Some(a.writes + 2);
    assert_eq!(write_data(&mut t, &mut a, &s, g, 0, &d), Err(Errno::EIO));
    let ks = t.keys_of(BtreeId::Extents, g);
    assert_eq!(ks.len(), 2);
    let end = ks[1].0.p.offset as usize * 512;
    assert!(end > 65_536);
    assert_eq!(attrs(&t, g).size, end as u64);
    assert_eq!(read_all(&t, g), d[..end]);
    assert_eq!(attrs(&t, g).sectors, sectors_of(&t, g));
}

#[test]
fn a_corrupted_checksummed_extent_fails_to_read() {
    let mut t = MemTrans::new(4096);
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let f = mkfile(&mut t, ROOT, "f");
    write_data(&mut t, &mut a, &s, f, 0, &pattern(8192, 5)).unwrap();
    t.dev.borrow_mut()[(BUCKET as usize) * 512 + 10] ^= 1;
    let at = attrs(&t, f);
    let mut buf = crate::platform::Vec::new();
    buf.resize(8192, 0u8).unwrap();
    assert_eq!(read_data(&t, &s, &at, 0, &mut buf, &mut ExtentCache::default()), Err(Errno::EIO));
}

#[test]
fn truncate_down_and_up() {
    for block in [1024u32, 4096] {
        let mut t = MemTrans::new(block);
        t.restart_permille = 20;
        let mut a = BumpAlloc::new(&t);
        let s = sv();
        let f = mkfile(&mut t, ROOT, "f");
        let mut model = pattern(50_000, 11);
        write_data(&mut t, &mut a, &s, f, 0, &model).unwrap();
        for &sz in &[40_000u64, 40_000, 33_333, 100_000, 7, 0, 5000] {
            let before = attrs(&t, f);
            t.tick();
            setattr(&mut t, &mut a, &s, f, &SetAttr { size: Some(sz), ..Default::default() }).unwrap();
            model.resize(sz as usize, 0);
            let at = attrs(&t, f);
            assert_eq!(at.size, sz);
            // A changed size sets mtime; the same size leaves it.
            let mtime = if sz == before.size { before.mtime_ns } else { t.now.get() };
            assert_eq!(at.mtime_ns, mtime, "size {} -> {sz}", before.size);
            assert_eq!(read_all(&t, f), model, "block {block} size {sz}");
            assert_eq!(at.sectors, sectors_of(&t, f));
            // Nothing allocated past the last block.
            let last = sz.div_ceil(u64::from(block)) * u64::from(block) / 512;
            assert!(t.keys_of(BtreeId::Extents, f).iter().all(|(k, _)| k.p.offset <= last));
        }
        // Grow after shrinking into a block: the old bytes stay gone.
        let mut model = pattern(8000, 1);
        write_data(&mut t, &mut a, &s, f, 0, &model).unwrap();
        truncate(&mut t, &mut a, &s, f, 1500).unwrap();
        truncate(&mut t, &mut a, &s, f, 8000).unwrap();
        model[1500..].fill(0);
        assert_eq!(read_all(&t, f), model);
        // Growing keeps what a KEEP_SIZE fallocate reserved past the end.
        let reserved = |t: &MemTrans| t.keys_of(BtreeId::Extents, f).iter().any(|(k, _)| k.p.offset > 32_768 / 512);
        crate::fs_common::io_misc::fallocate(&mut t, &mut a, &s, f, crate::fs_common::io_misc::FALLOC_FL_KEEP_SIZE, 16_384, 32_768)
            .unwrap();
        assert!(reserved(&t));
        truncate(&mut t, &mut a, &s, f, 20_000).unwrap();
        assert!(reserved(&t), "growing to 20000 dropped the reservation past it");
        truncate(&mut t, &mut a, &s, f, 10_000).unwrap();
        assert!(!reserved(&t), "shrinking kept extents past the end");
    }
}

#[test]
fn cutting_extents_front_and_back() {
    // A checksummed extent punched in the middle leaves two keys whose
    // live data moved by crc offset; a plain one by pointer offset.
    for csum in [0u8, 1] {
        let mut t = MemTrans::new(4096);
        t.opts.data_checksum = csum;
        let mut a = BumpAlloc::new(&t);
        let s = sv();
        let f = mkfile(&mut t, ROOT, "f");
        let mut model = pattern(65536, 2);
        write_data(&mut t, &mut a, &s, f, 0, &model).unwrap();
        fpunch(&mut t, &s, f, 24, 48).unwrap();
        model[24 * 512..48 * 512].fill(0);
        assert_eq!(read_all(&t, f), model);
        assert_eq!(attrs(&t, f).sectors, 128 - 24);
        assert_eq!(t.keys_of(BtreeId::Extents, f).len(), 2);
    }
}

#[test]
fn inode_numbers_follow_the_hint_and_shards() {
    let mut t = MemTrans::new(4096);
    t.opts.inode_shard_bits = 2;
    struct Cpu<'a>(&'a mut MemTrans, u64);
    let s = sv();
    let a = mkfile(&mut t, ROOT, "a");
    assert_eq!(a, 4097);
    // Another CPU's range.
    impl BtreeTransOps for Cpu<'_> {
        fn peek_upto(&mut self, b: BtreeId, f: Bpos, to: Bpos, w: bool) -> Result<Option<BkeyI>, BchError> {
            BtreeTransOps::peek_upto(self.0, b, f, to, w)
        }
        fn update(&mut self, b: BtreeId, k: BkeyI) -> Result<(), BchError> {
            self.0.update(b, k)
        }
        fn begin(&mut self) {
            self.0.begin()
        }
        fn commit(&mut self) -> Result<(), BchError> {
            self.0.commit()
        }
        fn read_data(&mut self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
            BtreeTransOps::read_data(self.0, dev, sector, buf)
        }
        fn dev_name(&self) -> &str {
            "cpu"
        }
        fn facts(&self) -> &FsFacts {
            &self.0.facts
        }
        fn opts(&self) -> &WriteOpts {
            &self.0.opts
        }
        fn now_ns(&self) -> i64 {
            self.0.now_ns()
        }
        fn random_u64(&mut self) -> u64 {
            self.0.random_u64()
        }
        fn cpu(&self) -> u64 {
            self.1
        }
        fn unused_inode_hint(&self, cpu: u64) -> u64 {
            self.0.unused_inode_hint(cpu)
        }
        fn set_unused_inode_hint(&mut self, cpu: u64, v: u64) {
            self.0.set_unused_inode_hint(cpu, v)
        }
    }
    let u = create(&mut Cpu(&mut t, 2), &s, ROOT, b"b", &file(0o100644)).unwrap();
    assert_eq!(u.inum, 2 << 61);
    // A removed inode's number is not reused while its generation key is
    // there, and the hint moves on.
    unlink(&mut t, &s, ROOT, b"a", false).unwrap();
    assert_eq!(mkfile(&mut t, ROOT, "c"), 4098);
    t.hints.clear();
    assert_eq!(mkfile(&mut t, ROOT, "d"), 4099);
}

#[test]
fn restarts_are_retried_not_leaked() {
    // Nearly every call restarts: operations still complete, and the
    // poisoning check in MemTrans proves none went on after a restart.
    let mut t = MemTrans::new(4096);
    t.restart_permille = 400;
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let d = mkdir(&mut t, ROOT, "d");
    let f = mkfile(&mut t, d, "f");
    write_data(&mut t, &mut a, &s, f, 0, &pattern(20000, 4)).unwrap();
    rename(&mut t, &s, d, b"f", ROOT, b"g", 0).unwrap();
    xattr_set(&mut t, &s, f, b"user.x", Some(b"y"), 0).unwrap();
    truncate(&mut t, &mut a, &s, f, 3000).unwrap();
    t.restart_permille = 0;
    assert!(t.restarts > 50);
    assert_eq!(read_all(&t, f), pattern(3000, 4));
    assert_eq!(lookup_name(&t, ROOT, b"g"), Some((f, 8)));
    assert_eq!(xget(&mut t, f, "user.x"), Ok(b"y".to_vec()));
}

// ---------------------------------------------------------------------
// Random operation sequences against a model

#[derive(Clone, Debug)]
enum Op {
    Create { dir: usize, name: usize, dir_kind: bool },
    Unlink { dir: usize, name: usize, rmdir: bool },
    Link { file: usize, dir: usize, name: usize },
    Rename { sdir: usize, sname: usize, ddir: usize, dname: usize, flags: u32 },
    Write { file: usize, block: u64, len: usize, seed: u8 },
    Truncate { file: usize, size: u64 },
    Xattr { file: usize, name: usize, val: Option<u8>, flags: u32 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize, 0..6usize, any::<bool>()).prop_map(|(dir, name, dir_kind)| Op::Create { dir, name, dir_kind }),
        1 => (0..4usize, 0..6usize, any::<bool>()).prop_map(|(dir, name, rmdir)| Op::Unlink { dir, name, rmdir }),
        1 => (0..8usize, 0..4usize, 0..6usize).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        1 => (0..4usize, 0..6usize, 0..4usize, 0..6usize, 0..3u32)
            .prop_map(|(sdir, sname, ddir, dname, flags)| Op::Rename { sdir, sname, ddir, dname, flags }),
        4 => (0..8usize, 0..24u64, 1..9000usize, any::<u8>()).prop_map(|(file, block, len, seed)| Op::Write { file, block, len, seed }),
        1 => (0..8usize, 0..70000u64).prop_map(|(file, size)| Op::Truncate { file, size }),
        1 => (0..8usize, 0..3usize, proptest::option::of(any::<u8>()), 0..3u32)
            .prop_map(|(file, name, val, flags)| Op::Xattr { file, name, val, flags }),
    ]
}

#[derive(Clone, Debug, Default)]
struct MNode {
    dir: bool,
    children: BTreeMap<StdVec<u8>, u64>,
    data: StdVec<u8>,
    links: u32,
    xattrs: BTreeMap<StdVec<u8>, StdVec<u8>>,
}

struct Model {
    nodes: BTreeMap<u64, MNode>,
    block: usize,
}

const NAMES: [&str; 6] = ["a", "b", "c", "dd", "eee", "f"];

impl Model {
    fn dirs(&self) -> StdVec<u64> {
        self.nodes.iter().filter(|(_, n)| n.dir).map(|(i, _)| *i).collect()
    }
    fn files(&self) -> StdVec<u64> {
        self.nodes.iter().filter(|(_, n)| !n.dir).map(|(i, _)| *i).collect()
    }
    fn pick(v: &[u64], i: usize) -> Option<u64> {
        if v.is_empty() {
            None
        } else {
            Some(v[i % v.len()])
        }
    }
    fn parent_of(&self, d: u64) -> Option<u64> {
        self.nodes.iter().find(|(_, n)| n.dir && n.children.values().any(|&c| c == d && self.nodes[&c].dir)).map(|(i, _)| *i)
    }
    fn is_ancestor(&self, anc: u64, mut d: u64) -> bool {
        loop {
            if d == anc {
                return true;
            }
            match self.parent_of(d) {
                Some(p) => d = p,
                None => return false,
            }
        }
    }
    fn drop_link(&mut self, i: u64) {
        let n = self.nodes.get_mut(&i).unwrap();
        n.links -= 1;
        if n.links == 0 {
            self.nodes.remove(&i);
        }
    }

    /// Applies `op`, returning the result the filesystem must give and
    /// whether it touches anything.
    fn apply(&mut self, t: &mut MemTrans, a: &mut BumpAlloc, op: &Op) -> Result<(), Errno> {
        let s = sv();
        let dirs = self.dirs();
        let files = self.files();
        match *op {
            Op::Create { dir, name, dir_kind } => {
                let d = Self::pick(&dirs, dir).unwrap();
                let nm = NAMES[name].as_bytes();
                let mode = if dir_kind { 0o40755 } else { 0o100644 };
                let r = create(t, &s, d, nm, &file(mode)).map(|u| u.inum);
                let exp = if self.nodes[&d].children.contains_key(nm) { Err(Errno::EEXIST) } else { Ok(()) };
                assert_eq!(r.map(|_| ()), exp);
                if let Ok(i) = r {
                    self.nodes.insert(i, MNode { dir: dir_kind, links: 1, ..Default::default() });
                    self.nodes.get_mut(&d).unwrap().children.insert(nm.to_vec(), i);
                }
                r.map(|_| ())
            }
            Op::Unlink { dir, name, rmdir } => {
                let d = Self::pick(&dirs, dir).unwrap();
                let nm = NAMES[name].as_bytes();
                let exp = match self.nodes[&d].children.get(nm) {
                    None => Err(Errno::ENOENT),
                    Some(&c) => {
                        let n = &self.nodes[&c];
                        if rmdir && !n.dir {
                            Err(Errno::ENOTDIR)
                        } else if !rmdir && n.dir {
                            Err(Errno::EISDIR)
                        } else if n.dir && !n.children.is_empty() {
                            Err(Errno::ENOTEMPTY)
                        } else {
                            Ok(c)
                        }
                    }
                };
                let r = unlink(t, &s, d, nm, rmdir);
                assert_eq!(r, exp.map(|_| ()));
                if let Ok(c) = exp {
                    self.nodes.get_mut(&d).unwrap().children.remove(nm);
                    self.drop_link(c);
                }
                r
            }
            Op::Link { file: fi, dir, name } => {
                let Some(f) = Self::pick(&files, fi) else { return Ok(()) };
                let d = Self::pick(&dirs, dir).unwrap();
                let nm = NAMES[name].as_bytes();
                let exp = if self.nodes[&d].children.contains_key(nm) { Err(Errno::EEXIST) } else { Ok(()) };
                let r = link(t, &s, d, f, nm).map(|_| ());
                assert_eq!(r, exp);
                if r.is_ok() {
                    self.nodes.get_mut(&d).unwrap().children.insert(nm.to_vec(), f);
                    self.nodes.get_mut(&f).unwrap().links += 1;
                }
                r
            }
            Op::Rename { sdir, sname, ddir, dname, flags } => {
                let sd = Self::pick(&dirs, sdir).unwrap();
                let dd = Self::pick(&dirs, ddir).unwrap();
                let (sn, dn) = (NAMES[sname].as_bytes(), NAMES[dname].as_bytes());
                let src = self.nodes[&sd].children.get(sn).copied();
                let dst = self.nodes[&dd].children.get(dn).copied();
                let exp = match (src, dst) {
                    (None, _) => Err(Errno::ENOENT),
                    (Some(_), None) if flags == RENAME_EXCHANGE => Err(Errno::ENOENT),
                    (Some(_), Some(_)) if flags == RENAME_NOREPLACE => Err(Errno::EEXIST),
                    (Some(s_), Some(d_)) if s_ == d_ => Ok(()),
                    (Some(s_), d_) => {
                        let sdir_ = self.nodes[&s_].dir;
                        let ddir_ = d_.map(|d_| self.nodes[&d_].dir);
                        if flags != RENAME_EXCHANGE && sdir_ && ddir_ == Some(false) {
                            Err(Errno::ENOTDIR)
                        } else if flags != RENAME_EXCHANGE && !sdir_ && ddir_ == Some(true) {
                            Err(Errno::EISDIR)
                        } else if (sdir_ && sd != dd && self.is_ancestor(s_, dd))
                            || (flags == RENAME_EXCHANGE && ddir_ == Some(true) && sd != dd && self.is_ancestor(d_.unwrap(), sd))
                        {
                            Err(Errno::EINVAL)
                        } else if flags != RENAME_EXCHANGE && ddir_ == Some(true) && !self.nodes[&d_.unwrap()].children.is_empty() {
                            Err(Errno::ENOTEMPTY)
                        } else {
                            Ok(())
                        }
                    }
                };
                let r = rename(t, &s, sd, sn, dd, dn, flags);
                assert_eq!(r, exp, "{op:?}");
                if r.is_ok() && src != dst {
                    let s_ = src.unwrap();
                    if flags == RENAME_EXCHANGE {
                        let d_ = dst.unwrap();
                        self.nodes.get_mut(&sd).unwrap().children.insert(sn.to_vec(), d_);
                        self.nodes.get_mut(&dd).unwrap().children.insert(dn.to_vec(), s_);
                    } else {
                        self.nodes.get_mut(&sd).unwrap().children.remove(sn);
                        self.nodes.get_mut(&dd).unwrap().children.insert(dn.to_vec(), s_);
                        if let Some(d_) = dst {
                            self.drop_link(d_);
                        }
                    }
                }
                r
            }
            Op::Write { file: fi, block, len, seed } => {
                let Some(f) = Self::pick(&files, fi) else { return Ok(()) };
                let off = block as usize * self.block;
                let data = pattern(len, seed);
                let r = write_data(t, a, &s, f, off as u64, &data);
                assert_eq!(r, Ok(()));
                let n = self.nodes.get_mut(&f).unwrap();
                let end = off + len;
                let bend = end.div_ceil(self.block) * self.block;
                if n.data.len() < end {
                    n.data.resize(end, 0);
                }
                n.data[off..end].copy_from_slice(&data);
                let z = bend.min(n.data.len());
                n.data[end..z].fill(0);
                r
            }
            Op::Truncate { file: fi, size } => {
                let Some(f) = Self::pick(&files, fi) else { return Ok(()) };
                let r = truncate(t, a, &s, f, size);
                assert_eq!(r, Ok(()));
                self.nodes.get_mut(&f).unwrap().data.resize(size as usize, 0);
                r
            }
            Op::Xattr { file: fi, name, val, flags } => {
                let Some(f) = Self::pick(&files, fi) else { return Ok(()) };
                let nm = std::format!("user.x{name}").into_bytes();
                let v = val.map(|b| vec![b; b as usize % 50]);
                let have = self.nodes[&f].xattrs.contains_key(&nm);
                let exp = match (&v, flags) {
                    (Some(_), XATTR_CREATE) if have => Err(Errno::EEXIST),
                    (_, XATTR_REPLACE) if !have => Err(Errno::ENODATA),
                    _ => Ok(()),
                };
                let r = xattr_set(t, &s, f, &nm, v.as_deref(), flags);
                assert_eq!(r, exp);
                if r.is_ok() {
                    let x = &mut self.nodes.get_mut(&f).unwrap().xattrs;
                    match v {
                        Some(v) => x.insert(nm, v),
                        None => x.remove(&nm),
                    };
                }
                r
            }
        }
    }

    /// Everything the read side shows matches the model.
    fn check(&self, t: &mut MemTrans) {
        let s = sv();
        for (&i, n) in &self.nodes {
            let at = attrs(t, i);
            if n.dir {
                let subdirs = n.children.values().filter(|c| self.nodes[c].dir).count() as u32;
                assert_eq!(at.nlink, 2 + subdirs, "dir {i}");
                let mut want: StdVec<_> =
                    n.children.iter().map(|(k, &c)| (k.clone(), c, if self.nodes[&c].dir { 4 } else { 8 })).collect();
                want.sort();
                assert_eq!(list(t, i), want, "dir {i}");
                for (name, &c) in &n.children {
                    assert_eq!(lookup_name(t, i, name).map(|x| x.0), Some(c));
                }
            } else {
                assert_eq!(at.nlink, n.links, "file {i}");
                assert_eq!(at.size, n.data.len() as u64);
                assert_eq!(read_all(t, i), n.data, "file {i}");
                assert_eq!(at.sectors, sectors_of(t, i), "file {i} i_sectors");
                for k in 0..3 {
                    let nm = std::format!("user.x{k}");
                    let want = n.xattrs.get(nm.as_bytes()).cloned().ok_or(Errno::ENODATA);
                    assert_eq!(xget(t, i, &nm), want);
                }
            }
        }
        // Nothing is left of removed inodes.
        let live: StdVec<u64> = self.nodes.keys().copied().collect();
        for (&(b, p), (k, _)) in &t.committed {
            if b == BtreeId::Inodes as u8 && k.key_type == KeyType::InodeV3 as u8 {
                assert!(live.contains(&p.offset), "inode {} not in the model", p.offset);
                let u = inode_unpacked_get(&*t, SNAP, p.offset).unwrap();
                assert_eq!(u.flags & INODE_UNLINKED, 0);
            }
            if b == BtreeId::Extents as u8 || b == BtreeId::Xattrs as u8 {
                assert!(live.contains(&p.inode), "key {p} of a removed inode");
            }
        }
        let _ = s;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_a_model(ops in proptest::collection::vec(arb_op(), 1..60),
                                        block_4k in any::<bool>(), csum in 0..4u8, seed in any::<u64>()) {
        let block = if block_4k { 4096 } else { 1024 };
        let mut t = MemTrans::new(block);
        t.opts.data_checksum = csum;
        t.opts.str_hash = (seed % 2) as u8 * 3;
        t.opts.compression = [0, 1, 2, 3][(seed / 2 % 4) as usize];
        t.rng ^= seed;
        t.restart_permille = 30;
        let mut a = BumpAlloc::new(&t);
        let mut m = Model { nodes: BTreeMap::new(), block: block as usize };
        m.nodes.insert(ROOT, MNode { dir: true, links: 1, ..Default::default() });
        for op in &ops {
            t.tick();
            let _ = m.apply(&mut t, &mut a, op);
        }
        m.check(&mut t);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_names_never_panic(name in proptest::collection::vec(any::<u8>(), 0..600),
                                   xname in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut t = MemTrans::new(4096);
        let s = sv();
        let r = create(&mut t, &s, ROOT, &name, &file(0o100644));
        if let Ok(u) = r {
            prop_assert_eq!(lookup_name(&t, ROOT, &name).map(|x| x.0), Some(u.inum));
            let _ = xattr_set(&mut t, &s, u.inum, &xname, Some(b"v"), 0);
            let _ = rename(&mut t, &s, ROOT, &name, ROOT, &xname, 0);
        } else {
            prop_assert!(name.is_empty() || name.len() > 512 || name.contains(&b'/') || name.contains(&0)
                || name == b"." || name == b"..");
        }
        let _ = unlink(&mut t, &s, ROOT, &name, false);
    }
}

#[test]
fn text_of_written_keys() {
    // The printers show what was written (for failures and the tool).
    let mut t = MemTrans::new(4096);
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let f = mkfile(&mut t, ROOT, "file");
    write_data(&mut t, &mut a, &s, f, 0, &pattern(5000, 1)).unwrap();
    let mut out = String::new();
    for ((b, _), (k, v)) in &t.committed {
        let Some(id) = BtreeId::from_u32(u32::from(*b)) else { continue };
        use core::fmt::Write;
        writeln!(out, "{} {}", id.name(), crate::format::val::KeyDisplay { k, v, ctx: None }).unwrap();
    }
    assert!(out.contains("dirents"), "{out}");
    assert!(out.contains("file -> 4097 type reg"), "{out}");
    assert!(out.contains("crc32c"), "{out}");
    let o = std::format!("{}", WriteOpts::default());
    assert!(o.starts_with("str_hash=3 data_checksum=crc32c compression=0 "), "{o}");
    assert!(o.contains(" encoded_extent_max=65536 "), "{o}");
    assert_eq!(std::format!("{}", DataSpace { dev: 0, offset: 512, gen: 3, sectors: 8 }), "0:512 gen 3 (8 sectors)");
    assert_eq!(std::format!("{}", RenameMode::Exchange), "rename_exchange");
}

#[test]
fn unsupported_write_options_are_refused() {
    let mut t = MemTrans::new(4096);
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let f = mkfile(&mut t, ROOT, "f");
    t.opts.compression = 4; // no such compression option
    assert_eq!(write_data(&mut t, &mut a, &s, f, 0, &pattern(8192, 1)), Err(Errno::EINVAL));
    t.opts.compression = 0;
    t.opts.background_target = 1;
    assert_eq!(write_data(&mut t, &mut a, &s, f, 0, &pattern(8192, 1)), Err(Errno::EOPNOTSUPP));
    t.opts.background_target = 0;
    // An inode option overrides the filesystem's (stored as option + 1).
    commit_do(&mut t, |t| {
        let mut u = inode_write::inode_peek(t, SNAP, f)?;
        u.set(InodeField::Nocow, 2);
        inode_write::inode_write(t, &u)
    })
    .unwrap();
    assert_eq!(write_data(&mut t, &mut a, &s, f, 0, &pattern(8192, 1)), Err(Errno::EOPNOTSUPP));
    commit_do(&mut t, |t| {
        let mut u = inode_write::inode_peek(t, SNAP, f)?;
        u.set(InodeField::Nocow, 0);
        u.set(InodeField::DataChecksum, 3); // crc64
        inode_write::inode_write(t, &u)
    })
    .unwrap();
    write_data(&mut t, &mut a, &s, f, 0, &pattern(8192, 1)).unwrap();
    let (_, v) = &t.keys_of(BtreeId::Extents, f)[0];
    let crc = crate::format::val::extent::ExtentEntries::new(v).find_map(|e| match e {
        Ok(crate::format::val::extent::ExtentEntry::Crc(c)) => Some(c),
        _ => None,
    });
    assert_eq!(crc.map(|c| c.csum_type), Some(crate::checksum::CsumType::Crc64 as u8));
    assert_eq!(read_all(&t, f), pattern(8192, 1));
    // Nothing was written by the refused writes.
    assert_eq!(attrs(&t, f).sectors, 16);
}

/// Text-like data that compresses well.
fn text(len: usize, seed: u8) -> StdVec<u8> {
    let line = std::format!("line {seed} of some compressible text, the same every time\n");
    line.bytes().cycle().take(len).collect()
}

#[test]
fn compressed_writes_read_back() {
    use crate::format::val::extent::{ExtentEntries, ExtentEntry};
    for block in [1024u32, 4096] {
        for (opt, ty) in [(1u8, 3u8), (2, 2), (3, 4), (0x92, 2), (0x53, 4)] {
            for csum in [0u8, 1] {
                let mut t = MemTrans::new(block);
                t.opts.compression = opt;
                t.opts.data_checksum = csum;
                t.restart_permille = 20;
                let mut a = BumpAlloc::new(&t);
                // Start near a bucket's end: outputs must shrink to fit.
                a.next = u64::from(BUCKET) * 2 - 5;
                let s = sv();
                let f = mkfile(&mut t, ROOT, "f");
                let mut model = text(150_000, 1);
                write_data(&mut t, &mut a, &s, f, 0, &model).unwrap();
                // Random bytes do not compress: stored plain, marked so.
                let g = mkfile(&mut t, ROOT, "g");
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                let noise: StdVec<u8> = (0..50_000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x >> 24) as u8
                    })
                    .collect();
                write_data(&mut t, &mut a, &s, g, 0, &noise).unwrap();
                // Overwrite the middle of the compressed file: cut
                // compressed extents keep decoding.
                let mid = text(20_000, 2);
                write_data(&mut t, &mut a, &s, f, 20 * u64::from(block), &mid).unwrap();
                let o = 20 * block as usize;
                model[o..o + mid.len()].copy_from_slice(&mid);
                let pad = (o + mid.len()).div_ceil(block as usize) * block as usize;
                model[o + mid.len()..pad].fill(0);
                assert_eq!(read_all(&t, f), model, "block {block} opt {opt:#x} csum {csum}");
                assert_eq!(read_all(&t, g), noise);
                let (mut comp_sectors, mut live) = (0u64, 0u64);
                for (k, v) in t.keys_of(BtreeId::Extents, f) {
                    for e in ExtentEntries::new(&v) {
                        if let Ok(ExtentEntry::Crc(c)) = e {
                            assert!(c.compression_type == ty || c.compression_type == 5, "{c:?}");
                            if c.compression_type == ty {
                                assert!(c.compressed_size < c.uncompressed_size);
                                assert_eq!(c.compressed_size % (block / 512), 0);
                            }
                            comp_sectors += u64::from(c.compressed_size);
                        }
                    }
                    live += u64::from(k.size);
                }
                assert!(comp_sectors * 4 < live, "{comp_sectors} of {live}");
                assert_eq!(attrs(&t, f).sectors, sectors_of(&t, f));
                for (_, v) in t.keys_of(BtreeId::Extents, g) {
                    for e in ExtentEntries::new(&v) {
                        if let Ok(ExtentEntry::Crc(c)) = e {
                            assert_eq!(c.compression_type, 5);
                        }
                    }
                }
            }
        }
    }
}

/// `bcachefs.compression` on a directory (`inode_opt_set`): what is
/// created in it afterwards inherits the option (without setting it
/// itself) and its data is compressed; clearing the option stops that.
#[test]
fn directory_compression_option_is_inherited() {
    use crate::format::val::extent::{ExtentEntries, ExtentEntry};
    let mut t = MemTrans::new(4096);
    t.restart_permille = 20;
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    let d = mkdir(&mut t, ROOT, "comp");
    assert_eq!(inode_opt_set(&mut t, &s, d, "compression", Some("bogus")).unwrap_err(), Errno::EINVAL);
    assert_eq!(inode_opt_set(&mut t, &s, d, "no_such_option", Some("1")).unwrap_err(), Errno::EINVAL);
    let u = inode_opt_set(&mut t, &s, d, "compression", Some("lz4")).unwrap();
    // lz4 is option value 1, stored plus one; bit 1 of bi_fields_set.
    assert_eq!((u.get(InodeField::Compression), u.get(InodeField::FieldsSet)), (2, 1 << 1));
    let sub = mkdir(&mut t, d, "sub");
    let f = mkfile(&mut t, sub, "f");
    let uf = inode_unpacked_get(&t, SNAP, f).unwrap();
    assert_eq!((uf.get(InodeField::Compression), uf.get(InodeField::FieldsSet)), (2, 0));
    let data = text(100_000, 3);
    write_data(&mut t, &mut a, &s, f, 0, &data).unwrap();
    assert_eq!(read_all(&t, f), data);
    let lz4 = |t: &MemTrans, inum: u64| {
        t.keys_of(BtreeId::Extents, inum).iter().any(|(_, v)| {
            ExtentEntries::new(v).any(|e| matches!(e, Ok(ExtentEntry::Crc(c)) if c.compression_type == 3))
        })
    };
    assert!(lz4(&t, f), "data under a compression=lz4 directory is not lz4");
    let u = inode_opt_set(&mut t, &s, d, "compression", None).unwrap();
    assert_eq!((u.get(InodeField::Compression), u.get(InodeField::FieldsSet)), (0, 0));
    let g = mkfile(&mut t, d, "g");
    write_data(&mut t, &mut a, &s, g, 0, &data).unwrap();
    assert!(!lz4(&t, g), "the option was cleared");
}

#[test]
fn bio_compress_shrinks_its_input_to_fit() {
    use super::compress_write::{bio_compress, Compressed};
    // 8 KiB of text then 56 KiB of noise: all of it does not fit in 4
    // KiB, the text part does.
    let mut src = text(8192, 1);
    let mut x = 0x1234_5678u64;
    src.extend((0..57344).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }));
    for ty in [2u8, 3, 4] {
        let mut dst = vec![0u8; 4096];
        match bio_compress(ty, 0, 1024, &src, &mut dst).unwrap() {
            Compressed::Yes { src_len, dst_len } => {
                assert!(src_len < src.len() && src_len % 1024 == 0 && src_len >= 2048, "{src_len}");
                assert!(dst_len <= 4096 && dst_len % 1024 == 0 && dst_len < src_len);
                let mut back = vec![0u8; src_len];
                crate::compress::decompress(ty, &dst[..dst_len], &mut back).unwrap();
                assert_eq!(back, src[..src_len]);
            }
            Compressed::Incompressible => panic!("type {ty}: text should compress"),
        }
        // One block or less is never compressed.
        assert_eq!(bio_compress(ty, 0, 4096, &src[..4096], &mut dst).unwrap(), Compressed::Incompressible);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn lz4_blocks_decode(data in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..5000),
                         rep in 0usize..4) {
        use super::compress_write::lz4_compress;
        let mut src = data.clone();
        for _ in 0..rep {
            src.extend_from_slice(&data);
        }
        let mut dst = vec![0u8; src.len() + src.len() / 255 + 16];
        let n = lz4_compress(&src, &mut dst).unwrap().expect("worst case fits");
        let back = lz4_flex::block::decompress(&dst[..n], src.len()).unwrap();
        prop_assert_eq!(&back, &src);
        let mut ours = vec![0u8; src.len()];
        crate::compress::decompress(3, &dst[..n], &mut ours).unwrap();
        prop_assert_eq!(&ours, &src);
        // Too small an output buffer: refused, never overrun.
        if n > 1 {
            let mut small = vec![0u8; n - 1];
            prop_assert_eq!(lz4_compress(&src, &mut small).unwrap(), None);
        }
    }
}

/// Regression: `symlink` created the inode with its entry, then wrote the
/// target in later transactions, so a crash in between (after a journal
/// flush another thread asked for) left an empty symlink.  Now, as in C,
/// no committed state names the symlink before its target is written, and
/// a symlink whose name exists leaves no inode behind.
#[test]
fn symlink_appears_whole() {
    struct Watch<'a>(&'a mut MemTrans, u32);
    impl BtreeTransOps for Watch<'_> {
        fn peek_upto(&mut self, b: BtreeId, f: Bpos, to: Bpos, w: bool) -> Result<Option<BkeyI>, BchError> {
            BtreeTransOps::peek_upto(self.0, b, f, to, w)
        }
        fn update(&mut self, b: BtreeId, k: BkeyI) -> Result<(), BchError> {
            self.0.update(b, k)
        }
        fn begin(&mut self) {
            self.0.begin()
        }
        fn commit(&mut self) -> Result<(), BchError> {
            self.0.commit()?;
            // Every committed state: the name is absent or names the whole
            // symlink.
            if let Some((inum, _)) = lookup_name(self.0, ROOT, b"l") {
                let a = attrs(self.0, inum);
                let mut target = crate::platform::Vec::new();
                crate::fs_common::readlink(&*self.0, &sv(), &a, &mut target).unwrap();
                assert_eq!(&target[..], b"target/of/the/link", "after commit {}", self.1);
            }
            self.1 += 1;
            Ok(())
        }
        fn read_data(&mut self, dev: u8, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
            BtreeTransOps::read_data(self.0, dev, sector, buf)
        }
        fn dev_name(&self) -> &str {
            "watch"
        }
        fn facts(&self) -> &FsFacts {
            &self.0.facts
        }
        fn opts(&self) -> &WriteOpts {
            &self.0.opts
        }
        fn now_ns(&self) -> i64 {
            self.0.now_ns()
        }
        fn random_u64(&mut self) -> u64 {
            self.0.random_u64()
        }
        fn unused_inode_hint(&self, cpu: u64) -> u64 {
            self.0.unused_inode_hint(cpu)
        }
        fn set_unused_inode_hint(&mut self, cpu: u64, v: u64) {
            self.0.set_unused_inode_hint(cpu, v)
        }
    }
    let mut t = MemTrans::new(4096);
    let mut a = BumpAlloc::new(&t);
    let s = sv();
    // Live inodes (a removed one leaves an inode_generation key).
    let inodes = |t: &MemTrans| {
        t.committed.iter().filter(|((b, _), (k, _))| *b == BtreeId::Inodes as u8 && k.key_type != KeyType::InodeGeneration as u8).count()
    };
    let n0 = inodes(&t);
    let mut w = Watch(&mut t, 0);
    let l = symlink(&mut w, &mut a, &s, ROOT, b"l", b"target/of/the/link", 0, 0).unwrap();
    assert!(w.1 >= 3, "{} commits", w.1);
    assert_eq!(lookup_name(&t, ROOT, b"l"), Some((l.inum, 10)));
    assert_eq!(attrs(&t, l.inum).nlink, 1);
    assert_eq!(inodes(&t), n0 + 1);
    // The name exists: EEXIST, and the tmpfile is gone.
    assert_eq!(symlink(&mut t, &mut a, &s, ROOT, b"l", b"x", 0, 0).unwrap_err(), Errno::EEXIST);
    assert_eq!(inodes(&t), n0 + 1);
}

mod acls {
    //! POSIX ACLs (`acl.c`): the on-disk format, get and set, chmod,
    //! inheritance on create.

    use super::*;
    use crate::fs_common::acl::*;

    /// `user::rw-, user:1000:r--, group::r-x, group:50:rw-, mask::rwx,
    /// other::---`.
    fn named_acl() -> StdVec<AclEntry> {
        vec![
            AclEntry::short(ACL_USER_OBJ, 6),
            AclEntry { tag: ACL_USER, perm: 4, id: 1000 },
            AclEntry::short(ACL_GROUP_OBJ, 5),
            AclEntry { tag: ACL_GROUP, perm: 6, id: 50 },
            AclEntry::short(ACL_MASK, 7),
            AclEntry::short(ACL_OTHER, 0),
        ]
    }

    /// [`named_acl`] as `bch2_acl_to_xattr()` lays it out: `bch_acl_header`
    /// (`a_version` 1), then `bch_acl_entry_short` (tag, perm) or
    /// `bch_acl_entry` (tag, perm, id), little-endian.
    const NAMED_DISK: [u8; 36] = [
        1, 0, 0, 0, // a_version
        0x01, 0, 6, 0, // USER_OBJ rw-
        0x02, 0, 4, 0, 0xe8, 0x03, 0, 0, // USER 1000 r--
        0x04, 0, 5, 0, // GROUP_OBJ r-x
        0x08, 0, 6, 0, 50, 0, 0, 0, // GROUP 50 rw-
        0x10, 0, 7, 0, // MASK rwx
        0x20, 0, 0, 0, // OTHER ---
    ];

    fn get(t: &mut MemTrans, inum: u64, ty: AclType) -> Result<Option<StdVec<AclEntry>>, Errno> {
        let mut out = crate::platform::Vec::new();
        Ok(acl_get(t, &sv(), inum, ty, &mut out)?.then(|| out.to_vec()))
    }

    /// The xattr keys (value bytes) of `inum`.
    fn xattr_keys(t: &MemTrans, inum: u64) -> StdVec<(Bpos, StdVec<u8>)> {
        t.keys_of(BtreeId::Xattrs, inum).into_iter().filter(|(k, _)| k.key_type == KeyType::Xattr as u8).map(|(k, v)| (k.p, v)).collect()
    }

    #[test]
    fn encode_is_c_layout_and_decodes_back() {
        let mut v = crate::platform::Vec::new();
        acl_to_disk(&named_acl(), &mut v).unwrap();
        assert_eq!(&v[..], &NAMED_DISK[..]);
        let mut back = crate::platform::Vec::new();
        acl_from_disk(&NAMED_DISK, &mut back).unwrap();
        assert_eq!(&back[..], &named_acl()[..]);
        assert_eq!(acl_disk_size(&named_acl()), Ok(36));
        // A header alone: no ACL (C's NULL).
        acl_from_disk(&[1, 0, 0, 0], &mut back).unwrap();
        assert!(back.is_empty());
        // An unknown tag is refused on encode too.
        assert_eq!(acl_to_disk(&[AclEntry::short(0x40, 7)], &mut v), Err(Errno::EINVAL));
    }

    #[test]
    fn invalid_values_are_rejected_not_panicked_on() {
        let mut out = crate::platform::Vec::new();
        let bad: [&[u8]; 6] = [
            &[],                              // no header
            &[1, 0, 0],                       // short header
            &[2, 0, 0, 0, 1, 0, 6, 0],        // version 2
            &[1, 0, 0, 0, 0x40, 0, 6, 0],     // unknown tag
            &[1, 0, 0, 0, 2, 0, 6, 0, 1, 0],  // long entry cut
            &[1, 0, 0, 0, 1, 0, 6],           // short entry cut
        ];
        for b in bad {
            assert_eq!(acl_from_disk(b, &mut out), Err(Errno::EINVAL), "{b:?}");
        }
        // Every single-byte corruption of a valid value either decodes
        // or fails with EINVAL.
        for i in 0..NAMED_DISK.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = NAMED_DISK;
                b[i] ^= x;
                match acl_from_disk(&b, &mut out) {
                    Ok(()) | Err(Errno::EINVAL) => {}
                    Err(e) => panic!("byte {i}: {e:?}"),
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_values_never_panic(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = crate::platform::Vec::new();
            let r = acl_from_disk(&v, &mut out);
            prop_assert!(r.is_ok() || r == Err(Errno::EINVAL));
            if r.is_ok() {
                // What decodes encodes back to the same bytes.
                let mut again = crate::platform::Vec::new();
                acl_to_disk(&out, &mut again).unwrap();
                prop_assert_eq!(&again[..], &v[..]);
            }
        }
    }

    #[test]
    fn set_get_remove_in_the_xattrs_btree() {
        let mut t = MemTrans::new(4096);
        t.restart_permille = 30;
        let s = sv();
        let f = mkfile(&mut t, ROOT, "f");
        assert_eq!(get(&mut t, f, AclType::Access), Ok(None));
        let (u, stored) = set_acl(&mut t, &s, f, AclType::Access, Some(&named_acl()), false).unwrap();
        assert!(stored);
        // posix_acl_update_mode(): the mode's bits are the ACL's (group =
        // the mask).
        assert_eq!(u.mode, 0o100670);
        assert_eq!(attrs(&t, f).mode, 0o100670);
        assert_eq!(get(&mut t, f, AclType::Access), Ok(Some(named_acl())));
        assert_eq!(get(&mut t, f, AclType::Default), Ok(None));
        // The key: x_type 1, empty name, the value above, at the hash of
        // (1, "") with the file's seed.
        let keys = xattr_keys(&t, f);
        assert_eq!(keys.len(), 1);
        let (p, v) = &keys[0];
        assert_eq!(&v[..4], &[XATTR_INDEX_POSIX_ACL_ACCESS, 0, 36, 0]);
        assert_eq!(&v[4..40], &NAMED_DISK[..]);
        let info = crate::fs_common::inode_write::hash_info(&u).unwrap();
        assert_eq!(p.offset, info.xattr_hash(XATTR_INDEX_POSIX_ACL_ACCESS, b""));
        // Listed only when the mount has ACLs on.
        let mut l = crate::platform::Vec::new();
        xattr_list(&mut t, &s, f, true, &mut l).unwrap();
        assert_eq!(&l[..], b"system.posix_acl_access\0");
        xattr_list(&mut t, &s, f, false, &mut l).unwrap();
        assert!(l.is_empty());
        // A default ACL on a file: EACCES; removing none is fine.
        assert_eq!(set_acl(&mut t, &s, f, AclType::Default, Some(&named_acl()), false).unwrap_err(), EACCES);
        set_acl(&mut t, &s, f, AclType::Default, None, false).unwrap();
        // Removal.
        set_acl(&mut t, &s, f, AclType::Access, None, false).unwrap();
        assert_eq!(get(&mut t, f, AclType::Access), Ok(None));
        assert!(xattr_keys(&t, f).is_empty());
        // Invalid ACLs are refused (no mask with named entries).
        let mut no_mask = named_acl();
        no_mask.remove(4);
        assert_eq!(set_acl(&mut t, &s, f, AclType::Access, Some(&no_mask), false).unwrap_err(), Errno::EINVAL);
    }

    #[test]
    fn an_acl_equivalent_to_a_mode_sets_the_mode_and_removes_the_xattr() {
        let mut t = MemTrans::new(4096);
        let s = sv();
        let f = mkfile(&mut t, ROOT, "f");
        set_acl(&mut t, &s, f, AclType::Access, Some(&named_acl()), false).unwrap();
        assert_eq!(xattr_keys(&t, f).len(), 1);
        let plain = [AclEntry::short(ACL_USER_OBJ, 7), AclEntry::short(ACL_GROUP_OBJ, 5), AclEntry::short(ACL_OTHER, 4)];
        let (u, stored) = set_acl(&mut t, &s, f, AclType::Access, Some(&plain), false).unwrap();
        assert!(!stored);
        assert_eq!(u.mode, 0o100754);
        assert!(xattr_keys(&t, f).is_empty());
        // S_ISGID goes for a caller outside the group without CAP_FSETID.
        let d = mkdir(&mut t, ROOT, "d");
        let mut a = BumpAlloc::new(&t);
        setattr(&mut t, &mut a, &s, d, &SetAttr { mode: Some(0o2775), ..Default::default() }).unwrap();
        let (u, _) = set_acl(&mut t, &s, d, AclType::Access, Some(&plain), true).unwrap();
        assert_eq!(u.mode, 0o40754);
    }

    #[test]
    fn chmod_updates_the_mask_or_the_group_entry() {
        let mut t = MemTrans::new(4096);
        t.restart_permille = 30;
        let s = sv();
        let f = mkfile(&mut t, ROOT, "f");
        set_acl(&mut t, &s, f, AclType::Access, Some(&named_acl()), false).unwrap();
        let mut a = BumpAlloc::new(&t);
        setattr(&mut t, &mut a, &s, f, &SetAttr { mode: Some(0o751), ..Default::default() }).unwrap();
        let mut want = named_acl();
        want[0].perm = 7; // owner
        want[4].perm = 5; // mask, not the owning group
        want[5].perm = 1; // other
        assert_eq!(get(&mut t, f, AclType::Access), Ok(Some(want)));
        assert_eq!(attrs(&t, f).mode, 0o100751);
        // Without a mask the owning group's entry follows.
        let g = mkfile(&mut t, ROOT, "g");
        let plain_plus = [AclEntry::short(ACL_USER_OBJ, 7), AclEntry::short(ACL_GROUP_OBJ, 5), AclEntry::short(ACL_OTHER, 4)];
        // Stored by hand: set_acl would fold it into the mode.
        commit_do(&mut t, |t| {
            let u = crate::fs_common::inode_write::inode_peek(t, SNAP, g)?;
            set_acl_trans(t, &s, &u, Some(&plain_plus), AclType::Access)
        })
        .unwrap();
        setattr(&mut t, &mut a, &s, g, &SetAttr { mode: Some(0o604), ..Default::default() }).unwrap();
        let want = vec![AclEntry::short(ACL_USER_OBJ, 6), AclEntry::short(ACL_GROUP_OBJ, 0), AclEntry::short(ACL_OTHER, 4)];
        assert_eq!(get(&mut t, g, AclType::Access), Ok(Some(want)));
        // A file without an ACL: chmod writes no xattr.
        let h = mkfile(&mut t, ROOT, "h");
        setattr(&mut t, &mut a, &s, h, &SetAttr { mode: Some(0o600), ..Default::default() }).unwrap();
        assert!(xattr_keys(&t, h).is_empty());
    }

    #[test]
    fn created_files_and_directories_inherit_the_default_acl() {
        let mut t = MemTrans::new(4096);
        t.restart_permille = 30;
        let s = sv();
        let d = mkdir(&mut t, ROOT, "d");
        // default: user::rwx, user:1000:rwx, group::r-x, mask::rwx, other::r-x
        let dflt = vec![
            AclEntry::short(ACL_USER_OBJ, 7),
            AclEntry { tag: ACL_USER, perm: 7, id: 1000 },
            AclEntry::short(ACL_GROUP_OBJ, 5),
            AclEntry::short(ACL_MASK, 7),
            AclEntry::short(ACL_OTHER, 5),
        ];
        set_acl(&mut t, &s, d, AclType::Default, Some(&dflt), false).unwrap();
        assert_eq!(get(&mut t, d, AclType::Default), Ok(Some(dflt.clone())));
        assert_eq!(get(&mut t, d, AclType::Access), Ok(None));

        // A file, mode 0666 asked: posix_acl_create() with the directory's
        // default ACL (the umask is ignored).
        let parent = get(&mut t, d, AclType::Default).unwrap();
        let mut mode = 0o100666;
        let acls = acl_create(parent.as_deref(), &mut mode, 0o022).unwrap();
        assert_eq!(mode, 0o100664);
        assert!(acls.default.is_none());
        let f = create_acl(&mut t, &s, d, b"f", &NewInode { mode, uid: 0, gid: 0, rdev: 0 }, &acls).unwrap().inum;
        let want_f = vec![
            AclEntry::short(ACL_USER_OBJ, 6),
            AclEntry { tag: ACL_USER, perm: 7, id: 1000 },
            AclEntry::short(ACL_GROUP_OBJ, 5),
            AclEntry::short(ACL_MASK, 6),
            AclEntry::short(ACL_OTHER, 4),
        ];
        assert_eq!(get(&mut t, f, AclType::Access), Ok(Some(want_f)));
        assert_eq!(get(&mut t, f, AclType::Default), Ok(None));
        assert_eq!(attrs(&t, f).mode, 0o100664);

        // A directory, 0777: the access ACL and the default again.
        let mut mode = 0o40777;
        let acls = acl_create(parent.as_deref(), &mut mode, 0o022).unwrap();
        assert_eq!(mode, 0o40775);
        let sd = create_acl(&mut t, &s, d, b"sd", &NewInode { mode, uid: 0, gid: 0, rdev: 0 }, &acls).unwrap().inum;
        assert_eq!(get(&mut t, sd, AclType::Default), Ok(Some(dflt.clone())));
        let mut want_sd = dflt.clone();
        want_sd[4].perm = 5;
        assert_eq!(get(&mut t, sd, AclType::Access), Ok(Some(want_sd)));
        let mut l = crate::platform::Vec::new();
        xattr_list(&mut t, &s, sd, true, &mut l).unwrap();
        let mut names: StdVec<&[u8]> = l.split(|&b| b == 0).filter(|n| !n.is_empty()).collect();
        names.sort();
        assert_eq!(names, vec![&b"system.posix_acl_access"[..], b"system.posix_acl_default"]);

        // No default ACL: the umask, and no ACLs.
        let mut mode = 0o100666;
        let acls = acl_create(None, &mut mode, 0o022).unwrap();
        assert_eq!(mode, 0o100644);
        assert!(acls.access.is_none() && acls.default.is_none());
        // A default ACL that says no more than the mode: no access ACL.
        let plain = [AclEntry::short(ACL_USER_OBJ, 7), AclEntry::short(ACL_GROUP_OBJ, 5), AclEntry::short(ACL_OTHER, 0)];
        let mut mode = 0o100666;
        let acls = acl_create(Some(&plain), &mut mode, 0o022).unwrap();
        assert_eq!(mode, 0o100640);
        assert!(acls.access.is_none());
        // Symlinks get nothing.
        let mut mode = 0o120777;
        let acls = acl_create(Some(&dflt), &mut mode, 0o022).unwrap();
        assert_eq!(mode, 0o120777);
        assert!(acls.access.is_none() && acls.default.is_none());
    }

    #[test]
    fn a_corrupted_acl_on_disk_is_an_error_not_a_panic() {
        let mut t = MemTrans::new(4096);
        let s = sv();
        let f = mkfile(&mut t, ROOT, "f");
        set_acl(&mut t, &s, f, AclType::Access, Some(&named_acl()), false).unwrap();
        // Flip the version byte of the stored value (after the 4-byte
        // xattr header), as a bad disk would.
        let (p, mut v) = xattr_keys(&t, f).remove(0);
        v[4] ^= 0x02;
        let k = new_key(KeyType::Xattr, p, &v).unwrap();
        t.put_committed(BtreeId::Xattrs, k);
        assert_eq!(get(&mut t, f, AclType::Access), Err(Errno::EINVAL));
        // chmod reads it too: the error, and nothing written.
        let mut a = BumpAlloc::new(&t);
        assert_eq!(setattr(&mut t, &mut a, &s, f, &SetAttr { mode: Some(0o600), ..Default::default() }).unwrap_err(), Errno::EINVAL);
        assert_eq!(attrs(&t, f).mode, 0o100670);
    }
}
