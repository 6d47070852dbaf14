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
    /// No such file or directory: a name or inode that does not exist.
    pub const ENOENT: Errno = Errno(2);
    /// I/O error: a read failed or data failed its checksum.
    pub const EIO: Errno = Errno(5);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Device or resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// Invalid argument: not a bcachefs volume, bad mount option.
    pub const EINVAL: Errno = Errno(22);
    /// Read-only filesystem.
    pub const EROFS: Errno = Errno(30);
    /// File name too long: a name longer than any directory entry can be.
    pub const ENAMETOOLONG: Errno = Errno(36);
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
            Errno::EINVAL => "EINVAL",
            Errno::EROFS => "EROFS",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EUCLEAN => "EUCLEAN",
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
    }
}
