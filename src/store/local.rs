//! Local files: the source of `export-fetcher index`, and a folder that stands in for the output
//! bucket (`--out DIR`).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{ObjectSource, PartUpload, PartWriter, Pending};
use crate::manifest::sanitize_part_name;

/// A local file read by ranges.
pub struct LocalFile {
    path: PathBuf,
    size: u64,
}

impl LocalFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        let meta = fs::metadata(path)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(LocalFile {
            path: path.to_path_buf(),
            size: meta.len(),
        })
    }
}

impl ObjectSource for LocalFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_range(&self, start: u64, end: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(start))?;
        Ok(Box::new(f.take(end.saturating_sub(start))))
    }
}

/// A folder used as a bucket: the object `key` is the file `DIR/key`, with the key sanitised so
/// that nothing is ever written outside `DIR`.
pub struct LocalDir {
    root: PathBuf,
    label: String,
}

impl LocalDir {
    pub fn new(root: &Path) -> Self {
        LocalDir {
            root: root.to_path_buf(),
            label: root.display().to_string(),
        }
    }

    fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        let rel = sanitize_part_name(key).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("empty key {key:?}"))
        })?;
        Ok(self.root.join(rel))
    }
}

impl PartWriter for LocalDir {
    fn bucket(&self) -> &str {
        &self.label
    }

    fn create(&self, key: &str) -> io::Result<Box<dyn PartUpload + '_>> {
        let path = self.path_of(key)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".partial-{}", std::process::id()));
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp)?;
        Ok(Box::new(LocalUpload {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            path,
        }))
    }

    fn put(&self, key: &str, body: &[u8]) -> io::Result<()> {
        let mut upload = self.create(key)?;
        upload.write_all(body)?;
        upload.finish()?.wait()
    }
}

struct LocalUpload {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
}

impl Write for LocalUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .as_mut()
            .expect("LocalUpload used after finish")
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl PartUpload for LocalUpload {
    fn finish(mut self: Box<Self>) -> io::Result<Pending> {
        let file = self.file.take().expect("finish called once");
        // Renamed into place only when complete; not fsynced: `--out` is a local working copy,
        // and forcing a gigabyte to disk would triple the time of `index`.
        let file = file.into_inner().map_err(|e| e.into_error())?;
        drop(file);
        fs::rename(&self.tmp, &self.path)?;
        Ok(Pending::done())
    }

    fn abort(mut self: Box<Self>) {
        self.file.take();
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_file_passes_the_source_conformance_test() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obj");
        let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, &content).unwrap();
        super::super::conformance::object_source(&LocalFile::open(&path).unwrap(), &content);
    }

    #[test]
    fn local_dir_never_writes_outside_its_root_and_aborts_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let w = LocalDir::new(&root);
        w.put("../../escape.txt", b"x").unwrap();
        assert!(root.join("escape.txt").exists());
        assert!(!dir.path().join("escape.txt").exists());
        let mut up = w.create("a/b.txt").unwrap();
        up.write_all(b"half").unwrap();
        up.abort();
        let leftovers: Vec<_> = fs::read_dir(root.join("a")).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
