//! An arena's rows in a file mapped into memory instead of on the heap: the kernel's page
//! cache holds them and, under memory pressure, gives their memory back and reads them
//! again from the file when they are next touched. An index that traverses on codes keeps
//! its full rows (for rescoring) this way: its resident heap is the codes and the links.
//!
//! The file is scratch space, written anew each time an index maps its rows: a snapshot
//! holds the rows themselves, so nothing reads the file after a restart. Its blocks are
//! allocated when the mapping grows (`posix_fallocate`), so a full disk is an error then,
//! not a `SIGBUS` when a row is first written.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

/// A growable file mapping of plain values (`f32` or `u8`: every bit pattern is valid).
pub(crate) struct MappedBuffer {
    file: File,
    map: MmapMut,
    path: PathBuf,
}

impl MappedBuffer {
    /// A new mapping of `bytes` bytes (at least one page) over `path`, created or
    /// truncated.
    pub fn create(path: &Path, bytes: usize) -> io::Result<MappedBuffer> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let map = map_file(&file, bytes)?;
        Ok(MappedBuffer {
            file,
            map,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Grow to `bytes` bytes (no-op if already as large); the content is kept (it is the
    /// file's). Every borrow of the old mapping has ended: this takes `&mut self`.
    pub fn grow(&mut self, bytes: usize) -> io::Result<()> {
        if bytes <= self.map.len() {
            return Ok(());
        }
        self.map = map_file(&self.file, bytes)?;
        Ok(())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// Size `file` to `bytes` (rounded up to whole pages, at least one), with its blocks
/// allocated, and map all of it.
fn map_file(file: &File, bytes: usize) -> io::Result<MmapMut> {
    const PAGE: usize = 4096;
    let len = bytes.max(1).div_ceil(PAGE) * PAGE;
    file.set_len(len as u64)?;
    allocate_blocks(file, len)?;
    // SAFETY: the mapping is sound as long as no one else truncates or rewrites the file
    // while it is mapped. The file is the index's own scratch file in a data directory
    // that one process holds locked (the engine's `lock_directory`), created (truncated)
    // by this index, and only ever grown by it; its blocks are allocated above, so writes
    // through the mapping cannot fault on a full disk.
    unsafe { MmapMut::map_mut(file) }
}

#[cfg(target_os = "linux")]
fn allocate_blocks(file: &File, len: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fallocate reads no memory of ours; the descriptor is open for writing
    // for the duration of the call (borrowed from `file`).
    let err = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match err {
        0 => Ok(()),
        // Filesystems without fallocate (tmpfs has it; some FUSE layers do not): the
        // sparse file stands, as on other systems.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate_blocks(_file: &File, _len: usize) -> io::Result<()> {
    Ok(())
}
