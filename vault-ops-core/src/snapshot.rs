//! Raft snapshot archives, checked as their bytes go by: the tar/gzip/SHA-256 verifier that
//! [`Raft`](crate::api::raft::Raft) runs on every snapshot it saves or restores and that
//! [`backup`](crate::backup) runs on every backup file. No network IO; files and readers are
//! read in chunks, never held in memory.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;

use flate2::write::GzDecoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};

/// Size of the chunks read from a local snapshot when uploading or verifying it.
pub(crate) const CHUNK: usize = 64 * 1024;

/// What a checked snapshot contains.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Size of the archive in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive, lower-case hex.
    pub sha256: String,
    /// The raft index the snapshot was taken at (from `meta.json`).
    pub index: u64,
    /// The raft term (from `meta.json`).
    pub term: u64,
    /// The entries of the tar archive, in order.
    pub files: Vec<String>,
}

/// Checks that the file at `path` is a complete raft snapshot archive (see
/// [`SnapshotVerifier`]), reading it in chunks. A file that is not is an
/// [`Error::InvalidInput`] naming the path and what is wrong.
pub async fn verify_snapshot_file(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    let path = path.as_ref();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    verify_snapshot_reader(file).await.map_err(|e| match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{}: {m}", path.display())),
        Error::Io { context, source } => Error::Io {
            context: format!("{context} {}", path.display()),
            source,
        },
        other => other,
    })
}

/// Checks that what `reader` yields is a complete raft snapshot archive (see
/// [`SnapshotVerifier`]). A stream that is not is an [`Error::InvalidInput`].
pub async fn verify_snapshot_reader<R: AsyncRead + Unpin>(mut reader: R) -> Result<SnapshotInfo> {
    let mut verifier = SnapshotVerifier::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| Error::io("reading the snapshot", e))?;
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n]);
    }
    verifier
        .finish()
        .map_err(|m| Error::InvalidInput(format!("not a complete raft snapshot archive: {m}")))
}

/// Checks a raft snapshot as its bytes go by, without keeping it: gunzips it (the gzip
/// trailer's CRC and length must match, so a cut-off download fails), walks the tar headers
/// (checksums included), requires `meta.json`, `state.bin` and `SHA256SUMS`, checks the
/// SHA-256 of every entry listed in `SHA256SUMS`, and reads the raft index and term from
/// `meta.json`. Also hashes the whole archive.
///
/// What it keeps is bounded whatever it is fed: an archive with an entry name twice, more
/// than 64 entries, or a `meta.json` or `SHA256SUMS` over 64 KiB is refused (a raft snapshot
/// has four entries, the two text files a few hundred bytes), and nothing more is
/// decompressed once the archive is known to be bad.
pub struct SnapshotVerifier {
    gz: GzDecoder<TarWalker>,
    archive_sha: Sha256,
    bytes: u64,
    error: Option<String>,
}

// Hand-written: the gzip and tar state buffers archive bytes (the barrier-encrypted store),
// which would flood the output; no secret is shown.
impl fmt::Debug for SnapshotVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotVerifier")
            .field("bytes", &self.bytes)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Default for SnapshotVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotVerifier {
    /// A verifier that has seen nothing yet.
    pub fn new() -> Self {
        SnapshotVerifier {
            gz: GzDecoder::new(TarWalker::default()),
            archive_sha: Sha256::new(),
            bytes: 0,
            error: None,
        }
    }

    /// Feeds the next chunk of the archive.
    pub fn update(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.archive_sha.update(chunk);
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.gz.write_all(chunk) {
            self.error = Some(match e.kind() {
                std::io::ErrorKind::WriteZero => "data after the end of the gzip stream".into(),
                _ => e.to_string(),
            });
        }
        // Once the tar walk failed, decompressing the rest is wasted work.
        if let Some(e) = &self.gz.get_ref().error {
            self.error = Some(e.clone());
        }
    }

    /// The number of bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Finishes the check: what the archive holds, or why it is not a complete snapshot.
    pub fn finish(mut self) -> std::result::Result<SnapshotInfo, String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.bytes == 0 {
            return Err("it is empty".into());
        }
        if let Err(e) = self.gz.try_finish() {
            return Err(match e.kind() {
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::UnexpectedEof => {
                    format!("the gzip stream is cut short or corrupt ({e})")
                }
                _ => e.to_string(),
            });
        }
        let sha256 = hex(&self.archive_sha.finalize());
        let walker = self.gz.get_ref();
        let (index, term) = walker.finish()?;
        Ok(SnapshotInfo {
            bytes: self.bytes,
            sha256,
            index,
            term,
            files: walker.files_seen.clone(),
        })
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Entries whose content the walker keeps (small text files).
const KEPT: [&str; 2] = ["meta.json", "SHA256SUMS"];
/// The largest such entry accepted: a snapshot's `meta.json` is a few hundred bytes, its
/// `SHA256SUMS` a few lines. A larger one is refused, so what is kept stays below 128 KiB.
const KEPT_MAX: u64 = 64 * 1024;
/// The most tar entries (headers) accepted: a raft snapshot has four. Every regular entry's
/// name and hash are kept, so this bounds them.
const MAX_ENTRIES: usize = 64;
const BLOCK: usize = 512;

/// Walks a tar stream written to it: headers, entry data (hashed), padding, end blocks.
#[derive(Default)]
struct TarWalker {
    header: Vec<u8>,
    /// The entry being read: name, bytes left, padding left after it.
    current: Option<Entry>,
    padding: u64,
    zero_blocks: u32,
    ended: bool,
    entries: Vec<(String, String)>,
    kept: BTreeMap<String, Vec<u8>>,
    /// The names of the regular entries, in order (at most [`MAX_ENTRIES`], no duplicates).
    files_seen: Vec<String>,
    /// Every header walked, regular entries or not.
    headers_seen: usize,
    error: Option<String>,
}

struct Entry {
    name: String,
    left: u64,
    sha: Option<Sha256>,
    keep: bool,
}

impl TarWalker {
    fn header_block(&mut self) -> std::result::Result<(), String> {
        let h = std::mem::take(&mut self.header);
        if h.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks >= 2 {
                self.ended = true;
            }
            return Ok(());
        }
        if self.zero_blocks > 0 {
            return Err("a tar header after an end-of-archive block".into());
        }
        let stored = parse_octal(&h[148..156]).ok_or("a tar header with an unreadable checksum")?;
        let computed: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != computed {
            return Err("a tar header whose checksum does not match (not a tar archive?)".into());
        }
        let size = parse_octal(&h[124..136]).ok_or("a tar header with an unreadable size")?;
        let mut name = cstr(&h[0..100]);
        if &h[257..262] == b"ustar" {
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        self.headers_seen += 1;
        if self.headers_seen > MAX_ENTRIES {
            return Err(format!(
                "the archive has more than {MAX_ENTRIES} entries (a raft snapshot has 4)"
            ));
        }
        let typeflag = h[156];
        let regular = typeflag == b'0' || typeflag == 0;
        let name = name.trim_start_matches("./").to_string();
        if regular {
            // Which copy would Vault use? Refused rather than guessed (and never kept twice).
            if self.files_seen.contains(&name) {
                return Err(format!("the archive holds {name} more than once"));
            }
            self.files_seen.push(name.clone());
        }
        let keep = regular && KEPT.contains(&name.as_str());
        if keep && size > KEPT_MAX {
            return Err(format!(
                "its {name} is {size} bytes, larger than the {KEPT_MAX} bytes a raft snapshot's \
                 {name} can be"
            ));
        }
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.current = Some(Entry {
            name,
            left: size,
            sha: regular.then(Sha256::new),
            keep,
        });
        if size == 0 {
            self.end_entry();
        }
        Ok(())
    }

    fn end_entry(&mut self) {
        if let Some(entry) = self.current.take() {
            if let Some(sha) = entry.sha {
                self.entries.push((entry.name, hex(&sha.finalize())));
            }
        }
    }

    fn feed(&mut self, mut buf: &[u8]) -> std::result::Result<(), String> {
        while !buf.is_empty() {
            if self.ended {
                // Trailing zero padding up to the record size is allowed; nothing else.
                if buf.iter().any(|&b| b != 0) {
                    return Err("data after the end of the tar archive".into());
                }
                return Ok(());
            }
            if let Some(entry) = self.current.as_mut() {
                let n = usize::try_from(entry.left)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let (data, rest) = buf.split_at(n);
                if let Some(sha) = entry.sha.as_mut() {
                    sha.update(data);
                }
                if entry.keep {
                    self.kept
                        .entry(entry.name.clone())
                        .or_default()
                        .extend_from_slice(data);
                }
                entry.left -= n as u64;
                buf = rest;
                if entry.left == 0 {
                    self.end_entry();
                }
                continue;
            }
            if self.padding > 0 {
                let n = usize::try_from(self.padding)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                self.padding -= n as u64;
                buf = &buf[n..];
                continue;
            }
            let n = (BLOCK - self.header.len()).min(buf.len());
            self.header.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.header.len() == BLOCK {
                self.header_block()?;
            }
        }
        Ok(())
    }

    /// Checks the walked archive; returns `(index, term)` from `meta.json`.
    fn finish(&self) -> std::result::Result<(u64, u64), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.current.is_some() || self.padding > 0 || !self.header.is_empty() {
            return Err("the tar archive ends in the middle of an entry".into());
        }
        for required in ["meta.json", "state.bin", "SHA256SUMS"] {
            if !self.files_seen.iter().any(|f| f == required) {
                return Err(format!(
                    "it has no {required} (entries: {})",
                    self.files_seen.join(", ")
                ));
            }
        }
        let sums = self
            .kept
            .get("SHA256SUMS")
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let mut checked = 0;
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_whitespace();
            let (Some(sum), Some(file)) = (parts.next(), parts.next()) else {
                return Err("SHA256SUMS has a malformed line".into());
            };
            let file = file.trim_start_matches('*');
            match self.entries.iter().find(|(name, _)| name == file) {
                Some((_, actual)) if actual.eq_ignore_ascii_case(sum) => checked += 1,
                Some(_) => return Err(format!("the SHA-256 of {file} does not match SHA256SUMS")),
                None => {
                    return Err(format!(
                        "SHA256SUMS lists {file}, which is not in the archive"
                    ))
                }
            }
        }
        for required in ["meta.json", "state.bin"] {
            if !sums
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(required))
            {
                return Err(format!("SHA256SUMS does not list {required}"));
            }
        }
        if checked == 0 {
            return Err("SHA256SUMS is empty".into());
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Meta {
            #[serde(default)]
            index: u64,
            #[serde(default)]
            term: u64,
        }
        let meta: Meta = self
            .kept
            .get("meta.json")
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or("meta.json is not the JSON of a raft snapshot")?;
        Ok((meta.index, meta.term))
    }
}

impl std::io::Write for TarWalker {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_none() {
            if let Err(e) = self.feed(buf) {
                self.error = Some(e);
            }
        }
        // Keep accepting (so gzip keeps checking its trailer); the error is reported at the end.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    // GNU base-256 for large sizes: high bit set on the first byte.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = cstr(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal tar.gz with the given entries, built by hand (ustar headers).
    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, data) in entries {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000600");
            h[108..115].copy_from_slice(b"0000000");
            h[116..123].copy_from_slice(b"0000000");
            let size = format!("{:011o}", data.len());
            h[124..135].copy_from_slice(size.as_bytes());
            h[136..147].copy_from_slice(b"00000000000");
            h[156] = b'0';
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            tar.extend_from_slice(&h);
            tar.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            tar.resize(tar.len() + pad, 0);
        }
        tar.extend([0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    fn good_snapshot() -> Vec<u8> {
        let meta = br#"{"Version":1,"ID":"bolt-snapshot","Index":29,"Term":3,"Size":5}"#;
        let state = b"state";
        let sums = format!("{}  meta.json\n{}  state.bin\n", sha(meta), sha(state));
        tar_gz(&[
            ("meta.json", meta),
            ("state.bin", state),
            ("SHA256SUMS", sums.as_bytes()),
            ("SHA256SUMS.sealed", b"sealed"),
        ])
    }

    fn check(data: &[u8], chunk: usize) -> std::result::Result<SnapshotInfo, String> {
        let mut v = SnapshotVerifier::new();
        for c in data.chunks(chunk.max(1)) {
            v.update(c);
        }
        v.finish()
    }

    #[test]
    fn accepts_a_complete_snapshot_in_any_chunking() {
        let data = good_snapshot();
        for chunk in [1, 7, 511, 512, 513, 4096, data.len()] {
            let info = check(&data, chunk).unwrap();
            assert_eq!(info.index, 29);
            assert_eq!(info.term, 3);
            assert_eq!(info.bytes, data.len() as u64);
            assert_eq!(info.sha256, sha(&data));
            assert_eq!(
                info.files,
                vec!["meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"]
            );
        }
    }

    #[test]
    fn refuses_truncated_corrupt_and_incomplete_archives() {
        let data = good_snapshot();
        for cut in [0, 5, 10, data.len() / 2, data.len() - 8, data.len() - 1] {
            let e = check(&data[..cut], 100).unwrap_err();
            assert!(!e.is_empty(), "cut at {cut}");
        }
        assert!(check(b"garbage that is not gzip at all", 8)
            .unwrap_err()
            .contains("gzip"));
        let mut trailing = data.clone();
        trailing.extend_from_slice(b"xx");
        assert!(check(&trailing, 64).is_err());

        // Missing state.bin.
        let meta = br#"{"Index":1,"Term":1}"#;
        let sums = format!("{}  meta.json\n", sha(meta));
        let e = check(
            &tar_gz(&[("meta.json", meta), ("SHA256SUMS", sums.as_bytes())]),
            64,
        )
        .unwrap_err();
        assert!(e.contains("state.bin"), "{e}");

        // A state.bin whose hash does not match.
        let sums = format!("{}  meta.json\n{}  state.bin\n", sha(meta), sha(b"other"));
        let e = check(
            &tar_gz(&[
                ("meta.json", meta),
                ("state.bin", b"state"),
                ("SHA256SUMS", sums.as_bytes()),
            ]),
            64,
        )
        .unwrap_err();
        assert!(e.contains("does not match"), "{e}");

        // A gzip of something that is not tar.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[7u8; 2000]).unwrap();
        let e = check(&gz.finish().unwrap(), 64).unwrap_err();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn keeps_little_whatever_the_archive_holds() {
        let good = good_snapshot();
        assert!(check(&good, 4096).is_ok());
        let meta = br#"{"Index":1,"Term":1}"#;
        let sums = format!("{}  meta.json\n{}  state.bin\n", sha(meta), sha(b"s"));
        let base = [
            ("meta.json", &meta[..]),
            ("state.bin", &b"s"[..]),
            ("SHA256SUMS", sums.as_bytes()),
        ];

        // Any entry twice, also after a complete snapshot: refused, naming it.
        for dup in ["meta.json", "state.bin", "SHA256SUMS", "other"] {
            let mut entries = base.to_vec();
            entries.push((dup, b"x"));
            entries.push((dup, b"y"));
            let e = check(&tar_gz(&entries), 512).unwrap_err();
            assert!(e.contains(dup) && e.contains("more than once"), "{e}");
        }

        // meta.json or SHA256SUMS over the cap: refused before any of it is kept.
        let big = vec![b' '; KEPT_MAX as usize + 1];
        for name in ["meta.json", "SHA256SUMS"] {
            let entries: Vec<(&str, &[u8])> = base
                .iter()
                .map(|&(n, d)| if n == name { (n, &big[..]) } else { (n, d) })
                .collect();
            let e = check(&tar_gz(&entries), 4096).unwrap_err();
            assert!(e.contains(name) && e.contains("larger than"), "{e}");
        }
        // At the cap it is read (and then found not to be JSON).
        let at_cap = vec![b' '; KEPT_MAX as usize];
        let e = check(
            &tar_gz(&[("state.bin", b"s"), ("meta.json", &at_cap[..])]),
            4096,
        )
        .unwrap_err();
        assert!(!e.contains("larger than"), "{e}");

        // More entries than a snapshot could have.
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("f{i}")).collect();
        let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let e = check(&tar_gz(&many), 4096).unwrap_err();
        assert!(e.contains("more than 64 entries"), "{e}");
        let names: Vec<String> = (0..MAX_ENTRIES - 3).map(|i| format!("f{i}")).collect();
        let mut entries = base.to_vec();
        entries.extend(names.iter().map(|n| (n.as_str(), &b"x"[..])));
        assert_eq!(
            check(&tar_gz(&entries), 4096).unwrap().files.len(),
            MAX_ENTRIES
        );
    }
}
