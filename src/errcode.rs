// SPDX-License-Identifier: GPL-2.0
//! Error codes shared by the core and both homes.
//!
//! The core never panics on bad input: it returns an [`Errno`] (the same
//! small set of Linux error numbers the C implementation returns to the VFS,
//! see `fs/bcachefs/errcode.h`) together with a message that names what is
//! wrong.  The kernel glue hands the number to the VFS as `-errno`; the host
//! tool prints the message.

use core::fmt;

/// A positive Linux error number (`EINVAL` is 22, not -22).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such file or directory: a name or inode that does not exist.
    pub const ENOENT: Errno = Errno(2);
    /// I/O error: a read failed or data failed its checksum.
    pub const EIO: Errno = Errno(5);
    /// No such device or address (`SEEK_DATA`/`SEEK_HOLE` past the data).
    pub const ENXIO: Errno = Errno(6);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Device or resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// Try again.
    pub const EAGAIN: Errno = Errno(11);
    /// File exists: create of a name that is already there.
    pub const EEXIST: Errno = Errno(17);
    /// Cross-device link or rename (across subvolumes).
    pub const EXDEV: Errno = Errno(18);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(20);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(21);
    /// Invalid argument: not a bcachefs volume, bad mount option.
    pub const EINVAL: Errno = Errno(22);
    /// File too large.
    pub const EFBIG: Errno = Errno(27);
    /// No space left on device: the allocator found no bucket, or a
    /// disk reservation could not be had.
    pub const ENOSPC: Errno = Errno(28);
    /// Too many links.
    pub const EMLINK: Errno = Errno(31);
    /// Result out of range (an xattr value larger than the buffer).
    pub const ERANGE: Errno = Errno(34);
    /// Read-only filesystem.
    pub const EROFS: Errno = Errno(30);
    /// File name too long: a name longer than any directory entry can be.
    pub const ENAMETOOLONG: Errno = Errno(36);
    /// Directory not empty.
    pub const ENOTEMPTY: Errno = Errno(39);
    /// No data available (an xattr that does not exist).
    pub const ENODATA: Errno = Errno(61);
    /// Operation not supported (a feature we do not implement yet).
    pub const EOPNOTSUPP: Errno = Errno(95);
    /// Structure needs cleaning: on-disk metadata is inconsistent.
    pub const EUCLEAN: Errno = Errno(117);

    /// The conventional name (`"EINVAL"`), or `"E?"` for numbers we never
    /// produce ourselves.
    pub fn name(self) -> &'static str {
        match self {
            Errno::ENOENT => "ENOENT",
            Errno::EIO => "EIO",
            Errno::ENOMEM => "ENOMEM",
            Errno::EBUSY => "EBUSY",
            Errno::EAGAIN => "EAGAIN",
            Errno::EEXIST => "EEXIST",
            Errno::EXDEV => "EXDEV",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::EFBIG => "EFBIG",
            Errno::ENOSPC => "ENOSPC",
            Errno::EMLINK => "EMLINK",
            Errno::ERANGE => "ERANGE",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::ENODATA => "ENODATA",
            Errno::EROFS => "EROFS",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EUCLEAN => "EUCLEAN",
            Errno::ENXIO => "ENXIO",
            Errno::EPERM => "EPERM",
            _ => "E?",
        }
    }

    /// The value the kernel returns for this error: `-errno`.
    pub fn to_kernel(self) -> i32 {
        -self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Allocation failure, from either home's allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

impl From<AllocError> for Errno {
    fn from(_: AllocError) -> Errno {
        Errno::ENOMEM
    }
}

/// Why a btree transaction must start over (`BCH_ERR_transaction_restart_*`
/// in `errcode.h`).  A restart is never an error to the caller of a
/// `commit_do`/`lockrestart_do` loop: the loop drops the transaction's
/// locks and runs the closure again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// A lock taken earlier could not be taken again after it was dropped
    /// (`transaction_restart_relock`).
    Relock,
    /// A read or intent lock could not be upgraded
    /// (`transaction_restart_upgrade`).
    Upgrade,
    /// Waiting for this lock could deadlock with another transaction
    /// (`transaction_restart_would_deadlock`).
    WouldDeadlock,
    /// The node this path pointed at was split, merged or freed
    /// (`transaction_restart_btree_node_split`,
    /// `transaction_restart_btree_node_reused`).
    NodeChanged,
    /// The journal had no room without blocking while locks were held
    /// (`transaction_restart_journal_res_get`).
    JournalResGet,
    /// The commit needed more memory than the transaction had
    /// (`transaction_restart_mem_realloced`).
    MemRealloced,
    /// The transaction was restarted on purpose (tests, fault injection:
    /// `transaction_restart_fault_inject`).
    FaultInject,
}

impl Restart {
    /// C's name for this restart, as `bch2_err_str()` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Restart::Relock => "transaction_restart_relock",
            Restart::Upgrade => "transaction_restart_upgrade",
            Restart::WouldDeadlock => "transaction_restart_would_deadlock",
            Restart::NodeChanged => "transaction_restart_btree_node_split",
            Restart::JournalResGet => "transaction_restart_journal_res_get",
            Restart::MemRealloced => "transaction_restart_mem_realloced",
            Restart::FaultInject => "transaction_restart_fault_inject",
        }
    }
}

/// The error of a btree transaction step: an errno for the caller, or a
/// restart for the retry loop (`bch2_err_matches(ret,
/// BCH_ERR_transaction_restart)` in C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BchError {
    /// A real error, returned to the caller (and to the VFS as `-errno`).
    Errno(Errno),
    /// The transaction must start over; never leaves the retry loop.
    Restart(Restart),
}

impl BchError {
    /// Whether this is a transaction restart.
    pub fn is_restart(self) -> bool {
        matches!(self, BchError::Restart(_))
    }

    /// The errno for a caller outside any retry loop; a restart that
    /// escaped one is a bug, reported as `EINTR` (4) as C's
    /// `bch2_err_class()` maps it.
    pub fn errno(self) -> Errno {
        match self {
            BchError::Errno(e) => e,
            BchError::Restart(_) => Errno(4),
        }
    }
}

impl From<Errno> for BchError {
    fn from(e: Errno) -> BchError {
        BchError::Errno(e)
    }
}

impl From<AllocError> for BchError {
    fn from(_: AllocError) -> BchError {
        BchError::Errno(Errno::ENOMEM)
    }
}

impl fmt::Display for BchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BchError::Errno(e) => write!(f, "{e}"),
            BchError::Restart(r) => f.write_str(r.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_values_are_negative_errnos() {
        assert_eq!(Errno::EINVAL.to_kernel(), -22);
        assert_eq!(Errno::EUCLEAN.to_kernel(), -117);
        assert_eq!(Errno::ENOENT.to_kernel(), -2);
        assert_eq!(Errno::ENAMETOOLONG.to_kernel(), -36);
        assert_eq!(Errno::ENAMETOOLONG.name(), "ENAMETOOLONG");
        assert_eq!(std::format!("{:?}", Errno::EIO), "EIO(5)");
        assert_eq!(Errno::from(AllocError), Errno::ENOMEM);
        assert_eq!(Errno::ENOSPC.name(), "ENOSPC");
    }

    #[test]
    fn restarts_are_their_own_class() {
        let r = BchError::Restart(Restart::Relock);
        assert!(r.is_restart());
        assert!(!BchError::from(Errno::EIO).is_restart());
        assert_eq!(std::format!("{r}"), "transaction_restart_relock");
        assert_eq!(BchError::from(AllocError).errno(), Errno::ENOMEM);
    }
}
