//! Image inputs: docker-archive tarballs (gzip, zstd or plain, told apart by magic bytes) and
//! streamLayeredImage scripts (run, their stdout read as the tar). Each is read as one
//! sequential pass over the tar entries; nothing is ever written to disk here.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use anyhow::Result;
use tar::{Archive, Entries};

use crate::error;

/// How bytes reach alba from an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// An uncompressed tar file.
    Tar,
    /// A gzip-compressed tar file.
    Gzip,
    /// A zstd-compressed tar file.
    Zstd,
    /// An executable that writes the tar to stdout (dockerTools.streamLayeredImage).
    Script,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Tar => "uncompressed",
            Format::Gzip => "gzip-compressed",
            Format::Zstd => "zstd-compressed",
            Format::Script => "streamed",
        })
    }
}

/// The visitor of a pass: called for every regular file with its normalized name
/// (no leading `./`), its size and its content.
pub(crate) type Visit<'a> = dyn FnMut(&str, u64, &mut dyn Read) -> Result<()> + 'a;

/// An input file, its format known.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// The path as the user gave it.
    pub path: PathBuf,
    /// What it holds.
    pub format: Format,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Input {
    /// Checks that `path` is a file and tells its format from its first bytes.
    pub(crate) fn open(path: &Path) -> Result<Input> {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| error::input(format!("cannot read the image {shown}: {e}")))?;
        if meta.is_dir() {
            crate::bail_input!(
                "the image {shown} is a folder: expected a docker-archive tarball \
                 (dockerTools.buildImage/buildLayeredImage) or a dockerTools.streamLayeredImage script"
            );
        }
        let mut head = Vec::with_capacity(512);
        File::open(path)
            .and_then(|f| f.take(512).read_to_end(&mut head))
            .map_err(|e| error::input(format!("cannot read the image {shown}: {e}")))?;
        let format = detect(&head, &meta).ok_or_else(|| {
            error::input(format!(
                "the image {shown} is neither a docker archive (tar, gzip or zstd) nor an \
                 executable streamLayeredImage script"
            ))
        })?;
        Ok(Input {
            path: path.to_path_buf(),
            format,
        })
    }

    /// A key naming this exact content, for the archive index cache: `None` when the content
    /// could change unseen — a script outside /nix/store may print anything on each run, while
    /// a store path never changes. A file's identity changes with its size or mtime.
    pub(crate) fn identity(&self) -> Option<String> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let canonical = std::fs::canonicalize(&self.path).ok()?;
        if self.format == Format::Script && !canonical.starts_with("/nix/store/") {
            return None;
        }
        let meta = std::fs::metadata(&canonical).ok()?;
        let mut key = crate::digest::Hasher::new();
        key.update(canonical.as_os_str().as_bytes());
        let stat = [
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
        ];
        for field in stat {
            key.update(field.to_le_bytes());
        }
        Some(key.hex())
    }

    /// The input error for an archive that cannot be read.
    pub(crate) fn corrupt(&self, error: impl fmt::Display) -> anyhow::Error {
        let what = match self.format {
            Format::Script => format!("the output of the image script {}", self.path.display()),
            format => format!("the {format} docker archive {}", self.path.display()),
        };
        error::input(format!("{what} is truncated or corrupt: {error}"))
    }

    /// One pass over the input's tar entries, to the end.
    pub(crate) fn walk(&self, visit: &mut Visit<'_>) -> Result<()> {
        let file = || {
            let file = File::open(&self.path).map_err(|e| self.corrupt(e))?;
            Ok::<_, anyhow::Error>(CountedFile::new(file, &self.path))
        };
        match self.format {
            Format::Tar => self.walk_seekable(BufReader::new(file()?), visit),
            Format::Gzip => self.walk_stream(
                flate2::read::MultiGzDecoder::new(BufReader::new(file()?)),
                visit,
            ),
            Format::Zstd => {
                let decoder =
                    zstd::stream::read::Decoder::new(file()?).map_err(|e| self.corrupt(e))?;
                self.walk_stream(decoder, visit)
            }
            Format::Script => self.walk_script(visit),
        }
    }

    /// A plain tar file: layers not wanted are skipped by seeking, not read.
    fn walk_seekable(&self, reader: BufReader<CountedFile>, visit: &mut Visit<'_>) -> Result<()> {
        let length = reader
            .get_ref()
            .file
            .metadata()
            .map_err(|e| self.corrupt(e))?
            .len();
        let mut archive = Archive::new(reader);
        let entries = archive.entries_with_seek().map_err(|e| self.corrupt(e))?;
        self.visit_entries(entries, Some(length), visit)
    }

    /// A compressed or piped tar: read to the very end, so that a truncated or corrupt
    /// compressed stream is noticed even after the tar's end marker (gzip's CRC trailer).
    fn walk_stream(&self, reader: impl Read, visit: &mut Visit<'_>) -> Result<()> {
        let mut archive = Archive::new(reader);
        let entries = archive.entries().map_err(|e| self.corrupt(e))?;
        self.visit_entries(entries, None, visit)?;
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| self.corrupt(e))?;
        Ok(())
    }

    fn visit_entries<R: Read>(
        &self,
        entries: Entries<'_, R>,
        length: Option<u64>,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        for entry in entries {
            let mut entry = entry.map_err(|e| self.corrupt(e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            let size = entry.size();
            // Seeking past the end of a file is no error: check the data is really there.
            if length.is_some_and(|len| entry.raw_file_position().saturating_add(size) > len) {
                return Err(self.corrupt(format!("{name} ends after the end of the file")));
            }
            visit(&name, size, &mut entry)?;
        }
        Ok(())
    }

    /// Runs the script and reads its stdout; a failing script is reported with its stderr.
    fn walk_script(&self, visit: &mut Visit<'_>) -> Result<()> {
        let shown = self.path.display();
        let mut child = Command::new(&self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| error::input(format!("cannot run the image script {shown}: {e}")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            anyhow::bail!("the image script {shown} has no output pipes");
        };
        // stderr is drained on its own thread so a chatty script never blocks on it.
        let tail = thread::spawn(move || stderr_tail(stderr));
        let mut stdout = BufReader::with_capacity(256 * 1024, stdout);
        let walked = self.walk_piped(&mut stdout);
        let walked = walked.and_then(|reader| self.walk_stream(reader, visit));
        if walked.is_err() {
            // Let the script run to its end: if it failed, its own error is the real cause.
            let _ = io::copy(&mut stdout, &mut io::sink());
        }
        drop(stdout);
        let status = child.wait()?;
        let tail = tail.join().unwrap_or_default();
        if !status.success() {
            crate::bail_input!("the image script {shown} failed ({status}): {tail}");
        }
        walked
    }

    /// The script's output, decompressed if it starts with a gzip or zstd magic.
    fn walk_piped<'r>(
        &self,
        stdout: &'r mut BufReader<std::process::ChildStdout>,
    ) -> Result<Box<dyn Read + 'r>> {
        let mut head = Vec::with_capacity(4);
        stdout
            .by_ref()
            .take(4)
            .read_to_end(&mut head)
            .map_err(|e| self.corrupt(e))?;
        let whole = io::Cursor::new(head.clone()).chain(stdout);
        Ok(if head.starts_with(GZIP_MAGIC) {
            Box::new(flate2::read::MultiGzDecoder::new(whole))
        } else if head.starts_with(ZSTD_MAGIC) {
            Box::new(zstd::stream::read::Decoder::new(whole).map_err(|e| self.corrupt(e))?)
        } else {
            Box::new(whole)
        })
    }
}

/// An archive file whose reads are counted, so that tests can assert how much of an archive
/// a load reads (a layer the target holds is seeked over in an uncompressed tar, a compressed
/// one is decompressed once).
struct CountedFile {
    file: File,
    #[cfg(test)]
    path: PathBuf,
    #[cfg(test)]
    read: u64,
}

impl CountedFile {
    fn new(file: File, _path: &Path) -> CountedFile {
        CountedFile {
            file,
            #[cfg(test)]
            path: _path.to_path_buf(),
            #[cfg(test)]
            read: 0,
        }
    }
}

impl Read for CountedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        #[cfg(test)]
        {
            self.read += n as u64;
        }
        Ok(n)
    }
}

impl Seek for CountedFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

#[cfg(test)]
impl Drop for CountedFile {
    fn drop(&mut self) {
        let mut reads = READS.lock().unwrap_or_else(|e| e.into_inner());
        let reads = reads.get_or_insert_default();
        *reads.entry(self.path.clone()).or_default() += self.read;
    }
}

/// How many bytes the passes read from each archive, by the path given (tests only).
#[cfg(test)]
static READS: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, u64>>> =
    std::sync::Mutex::new(None);

/// The bytes the passes read from the archive at `path` so far, forgotten: the next call
/// counts from zero.
#[cfg(test)]
pub(crate) fn bytes_read(path: &Path) -> u64 {
    let mut reads = READS.lock().unwrap_or_else(|e| e.into_inner());
    reads.get_or_insert_default().remove(path).unwrap_or(0)
}

/// Tells the format from the first bytes: magic numbers, never the file name.
fn detect(head: &[u8], meta: &std::fs::Metadata) -> Option<Format> {
    use std::os::unix::fs::PermissionsExt;
    if head.starts_with(GZIP_MAGIC) {
        Some(Format::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Some(Format::Zstd)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(Format::Tar)
    } else if head.starts_with(b"#!") || meta.permissions().mode() & 0o111 != 0 {
        Some(Format::Script)
    } else {
        None
    }
}

/// `./a/b` → `a/b`, as `tar -C dir -c .` (buildImage) writes names.
pub(crate) fn normalize(name: &str) -> String {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    name.trim_start_matches('/').to_string()
}

/// The last lines of a script's stderr, for error messages.
fn stderr_tail(mut stderr: impl Read) -> String {
    const KEEP: usize = 2048;
    let mut tail = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stderr.read(&mut chunk) {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * KEEP {
            tail.drain(..tail.len() - KEEP);
        }
    }
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.trim().lines().collect();
    match lines.len() {
        0 => "no output on stderr".to_string(),
        n => lines[n.saturating_sub(8)..].join("\n"),
    }
}

impl Input {
    /// For an uncompressed archive: the names of the entries inside each layer tar in
    /// `wanted` (outer entry names), reading tar headers only and seeking over file data,
    /// as `visit(layer, inner name)`. `None` for other formats (they cannot seek).
    pub(crate) fn inner_names(
        &self,
        wanted: &std::collections::HashSet<&str>,
        visit: &mut dyn FnMut(&str, &str),
    ) -> Option<Result<()>> {
        (self.format == Format::Tar).then(|| self.inner_names_seeking(wanted, visit))
    }

    fn inner_names_seeking(
        &self,
        wanted: &std::collections::HashSet<&str>,
        visit: &mut dyn FnMut(&str, &str),
    ) -> Result<()> {
        let open = || {
            let file = File::open(&self.path).map_err(|e| self.corrupt(e))?;
            Ok::<_, anyhow::Error>(CountedFile::new(file, &self.path))
        };
        let mut layers = Vec::new();
        let mut archive = Archive::new(BufReader::new(open()?));
        for entry in archive.entries_with_seek().map_err(|e| self.corrupt(e))? {
            let entry = entry.map_err(|e| self.corrupt(e))?;
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            if entry.header().entry_type().is_file() && wanted.contains(name.as_str()) {
                layers.push((name, entry.raw_file_position(), entry.size()));
            }
        }
        for (name, start, len) in layers {
            let mut file = open()?;
            file.seek(io::SeekFrom::Start(start))
                .map_err(|e| self.corrupt(e))?;
            let window = Window {
                file,
                start,
                len,
                pos: 0,
            };
            let mut inner = Archive::new(BufReader::with_capacity(4096, window));
            // A layer that is no tar names no store paths; the image is still published
            // (its digests are checked elsewhere), so this only warns.
            let entries = inner.entries_with_seek().and_then(|entries| {
                for entry in entries {
                    visit(&name, &String::from_utf8_lossy(&entry?.path_bytes()));
                }
                Ok(())
            });
            if let Err(e) = entries {
                tracing::warn!(
                    "cannot list the files of the layer {name} of {}: {e}",
                    self.path.display()
                );
            }
        }
        Ok(())
    }
}

/// A byte range of an archive file (one layer entry), readable and seekable on its own.
struct Window {
    file: CountedFile,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.len - self.pos).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        let n = self.file.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Window {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let target = match pos {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        let target = target
            .filter(|&t| t <= self.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of the layer"))?;
        self.file.seek(io::SeekFrom::Start(self.start + target))?;
        self.pos = target;
        Ok(target)
    }
}
