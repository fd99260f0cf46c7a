//! Index files: written compressed or not and read back the same, files of the earlier
//! writers (zstd applied to `to_bytes` outside the core) still read, and damaged files,
//! failed writes and bad levels as errors that leave no file behind.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::encode::{self, Capture};
use super::persist;
use super::tests::{build, data};
use super::*;

/// A fresh folder under the system's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "llmkg-core-files-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An index with removed nodes, free slots and quantized rows: every part of the format.
pub(super) fn varied_index() -> (Hnsw, Vec<u64>) {
    let (index, _, ids) = build(600, 12, Metric::Cosine, Precision::Q8, true);
    index.remove(&ids[..100]);
    index.compact();
    index.remove(&ids[100..110]);
    index
        .set_precision(&ids[200..260], Precision::Q4, None)
        .unwrap();
    index
        .set_precision(&ids[260..300], Precision::Binary, None)
        .unwrap();
    (index, ids)
}

fn same_answers(a: &Hnsw, b: &Hnsw) {
    assert_eq!(a.len(), b.len());
    for q in data(20, a.dim(), 5).chunks(a.dim()) {
        assert_eq!(
            a.search(q, SearchOptions::new(10), None).unwrap(),
            b.search(q, SearchOptions::new(10), None).unwrap()
        );
    }
}

#[test]
fn files_compressed_or_not_read_back_the_same_index() {
    let (index, _) = varied_index();
    let dir = TempDir::new();
    let bytes = index.to_bytes();
    assert_eq!(
        Capture::take(&index.graph.read(), false).len(),
        bytes.len() as u64
    );
    for level in [None, Some(1), Some(3), Some(19)] {
        let path = dir.join(&format!("index-{level:?}"));
        let size = index.save(&path, level).unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let on_disk = std::fs::read(&path).unwrap();
        match level {
            None => assert_eq!(on_disk, bytes),
            Some(_) => {
                assert!(persist::is_zstd(&on_disk), "level {level:?}");
                assert!(on_disk.len() < bytes.len(), "level {level:?}");
                // The frame declares the index's size.
                let declared = zstd::zstd_safe::get_frame_content_size(&on_disk).unwrap();
                assert_eq!(declared, Some(bytes.len() as u64));
            }
        }
        let loaded = Hnsw::load(&path).unwrap();
        same_answers(&index, &loaded);
        assert_eq!(loaded.to_bytes(), bytes, "level {level:?}");
        assert_eq!(Hnsw::from_bytes(&on_disk).unwrap().to_bytes(), bytes);
    }
    // Only the files named: no temporary file is left behind.
    assert_eq!(dir.names().len(), 4, "{:?}", dir.names());
}

#[test]
fn an_empty_index_round_trips() {
    let index = Hnsw::new(Params::new(4)).unwrap();
    let dir = TempDir::new();
    let path = dir.join("empty");
    index.save(&path, Some(3)).unwrap();
    let loaded = Hnsw::load(&path).unwrap();
    assert!(loaded.is_empty());
    assert_eq!(loaded.to_bytes(), index.to_bytes());
}

#[test]
fn files_compressed_outside_the_core_still_load() {
    // What the engine wrote before the core compressed its own snapshots: `to_bytes`
    // through Python's zstandard, which declares the size (`compress`) or not (a stream).
    let (index, _) = varied_index();
    let bytes = index.to_bytes();
    let dir = TempDir::new();
    let one_shot = zstd::bulk::compress(&bytes, 3).unwrap();
    let mut streamed = zstd::Encoder::new(Vec::new(), 3).unwrap();
    streamed.write_all(&bytes).unwrap();
    let streamed = streamed.finish().unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
        None
    );
    for (name, file) in [("one-shot", one_shot), ("streamed", streamed)] {
        let path = dir.join(name);
        std::fs::write(&path, &file).unwrap();
        assert_eq!(Hnsw::load(&path).unwrap().to_bytes(), bytes, "{name}");
        assert_eq!(Hnsw::from_bytes(&file).unwrap().to_bytes(), bytes, "{name}");
    }
}

fn corrupt(path: &Path) -> bool {
    matches!(Hnsw::load(path), Err(Error::Corrupt(_)))
}

#[test]
fn damaged_compressed_files_are_errors() {
    let (index, _) = varied_index();
    let dir = TempDir::new();
    let good = dir.join("good");
    index.save(&good, Some(3)).unwrap();
    let file = std::fs::read(&good).unwrap();
    let bad = dir.join("bad");
    for cut in [
        0,
        3,
        4,
        10,
        30,
        file.len() / 2,
        file.len() - 5,
        file.len() - 1,
    ] {
        std::fs::write(&bad, &file[..cut]).unwrap();
        assert!(corrupt(&bad), "cut at {cut}");
        assert!(
            matches!(Hnsw::from_bytes(&file[..cut]), Err(Error::Corrupt(_))),
            "cut at {cut}"
        );
    }
    for pos in [
        5,
        20,
        file.len() / 3,
        file.len() / 2,
        file.len() - 6,
        file.len() - 2,
    ] {
        let mut flipped = file.clone();
        flipped[pos] ^= 0x40;
        std::fs::write(&bad, &flipped).unwrap();
        assert!(corrupt(&bad), "flip at {pos}");
    }
    // Bytes after the frame, and a frame of something else.
    let mut trailing = file.clone();
    trailing.extend_from_slice(b"junk");
    std::fs::write(&bad, &trailing).unwrap();
    assert!(corrupt(&bad));
    std::fs::write(&bad, zstd::bulk::compress(b"not an index", 3).unwrap()).unwrap();
    assert!(corrupt(&bad));
}

/// Takes `room` bytes, then fails as a full disk does.
struct FullDisk {
    room: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_disk_is_an_error_naming_the_cause() {
    let (index, _) = varied_index();
    let g = index.graph.read();
    let cap = Capture::take(&g, false);
    for level in [None, Some(3)] {
        let size = encode::write_into(&cap, || &*g, Vec::new(), level)
            .unwrap()
            .len();
        for room in [0, 100, size / 2, size - 1] {
            let err = encode::write_into(&cap, || &*g, FullDisk { room }, level)
                .err()
                .unwrap_or_else(|| panic!("wrote {room} bytes at level {level:?}"));
            assert_eq!(
                err.raw_os_error(),
                Some(28),
                "{room} bytes, level {level:?}"
            );
        }
    }
}

#[test]
fn a_failed_save_leaves_no_file_behind() {
    let (index, _) = varied_index();
    let dir = TempDir::new();
    // The rename cannot replace a folder that holds a file.
    let target = dir.join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), b"x").unwrap();
    assert!(matches!(index.save(&target, Some(3)), Err(Error::Io(_))));
    assert_eq!(dir.names(), ["taken"]);
    // A file cannot be created in a folder that does not exist: the error names it.
    let nowhere = dir.join("missing").join("index");
    match index.write_file(&nowhere, Some(3)) {
        Err(Error::File { path, source }) => {
            assert_eq!(path, nowhere);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_bad_level_is_refused_before_any_file_is_made() {
    let (index, ..) = build(50, 4, Metric::L2, Precision::Full, true);
    let dir = TempDir::new();
    for level in [23, 1000, i32::MIN] {
        let path = dir.join("index");
        assert!(matches!(
            index.write_file(&path, Some(level)),
            Err(Error::InvalidArgument(m)) if m.contains("level")
        ));
        assert!(matches!(
            index.save(&path, Some(level)),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(dir.names().is_empty(), "{:?}", dir.names());
}
