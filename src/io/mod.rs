//! Files in and out: label/instance map PNGs ([`map_png`]), output and style images ([`image`]),
//! numpy arrays ([`npy`]); atomic writes and per-user directories. Knows no model.
pub mod image;
pub mod map_png;
pub mod npy;

use anyhow::{Context, Result};

/// `eprintln!` for messages to the user (progress, notes, warnings): a closed or full stderr
/// loses the message instead of panicking.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that `path` holds either its old contents or all of `bytes`,
/// never a part:
///
/// - a regular file (or nothing yet) is replaced through a temporary file in the same directory,
///   created with `create_new` under an unpredictable name (a file or symlink planted there is
///   never written through), synced, given the old file's permissions (a new file gets the
///   umask's), and renamed over `path`; the temporary file is removed on any failure;
/// - a symlink is followed: its target is replaced and the link stays;
/// - anything else that exists (a device such as /dev/null, a FIFO) is written in place, never
///   replaced by a regular file; a directory is refused.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => anyhow::bail!("cannot write {}: it is a directory", path.display()),
        Ok(m) if !m.is_file() => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            return f
                .write_all(bytes)
                .with_context(|| format!("cannot write {}", path.display()));
        }
        // A symlink to a regular file: replace the target, keep the link.
        Ok(_) => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        Err(_) => path.to_path_buf(),
    };
    let old_permissions = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let (tmp, mut f) = create_temp(dir.unwrap_or(Path::new(".")), &name)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let result = (|| -> Result<()> {
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        if let Some(p) = old_permissions {
            std::fs::set_permissions(&tmp, p)
                .with_context(|| format!("cannot set the permissions of {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, &target).with_context(|| format!("cannot write {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A new file `.<name>.<random>.tmp` in `dir`, created exclusively (never an existing file or
/// a symlink's target).
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::hash::{BuildHasher, Hasher};
    let mut last = None;
    for attempt in 0..16u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", h.finish()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary file name left")))
}

/// Refuses to run when an output would overwrite an input or another output: `inputs` and
/// `outputs` are `(flag, path)` pairs (a flag not given is `None`), compared by file identity
/// (the same file under another name or through a link counts) and, for outputs that do not
/// exist yet, by their resolved path. The error names both flags and the path.
pub fn check_outputs(
    inputs: &[(&str, Option<&Path>)],
    outputs: &[(&str, Option<&Path>)],
) -> Result<()> {
    let given = |v: &[(&str, Option<&Path>)]| -> Vec<(String, PathBuf, Option<FileId>)> {
        v.iter()
            .filter_map(|&(flag, p)| p.map(|p| (flag.to_string(), p.to_path_buf(), FileId::of(p))))
            .collect()
    };
    let (inputs, outputs) = (given(inputs), given(outputs));
    for (i, (oflag, out, out_id)) in outputs.iter().enumerate() {
        // Every input, and each earlier output (each pair of outputs once).
        let others = inputs
            .iter()
            .map(|x| ("input", x))
            .chain(outputs[..i].iter().map(|x| ("output", x)));
        for (what, (flag, other, id)) in others {
            let same = match (out_id, id) {
                (Some(a), Some(b)) => a == b,
                _ => resolved(out) == resolved(other),
            };
            if same {
                anyhow::bail!(
                    "{oflag} {} is also the {what} {flag}: refusing to overwrite it (choose \
                     another output path)",
                    out.display()
                );
            }
        }
    }
    Ok(())
}

/// A file's identity (device and inode on Unix; the canonical path elsewhere).
#[derive(Debug, PartialEq, Eq)]
struct FileId(u64, u64, PathBuf);

impl FileId {
    fn of(p: &Path) -> Option<FileId> {
        let m = std::fs::metadata(p).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let _ = &m;
            Some(FileId(m.dev(), m.ino(), PathBuf::new()))
        }
        #[cfg(not(unix))]
        {
            let _ = m;
            Some(FileId(0, 0, std::fs::canonicalize(p).ok()?))
        }
    }
}

/// `p` with its parent directory resolved (for paths that do not exist yet).
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (std::fs::canonicalize(parent), p.file_name()) {
        (Ok(d), Some(n)) => d.join(n),
        _ => p.to_path_buf(),
    }
}

/// The kinds of per-user directory spadework writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserDir {
    /// Work to keep (the painter's autosave).
    State,
    /// Results that can be recomputed (conv autotune).
    Cache,
}

/// `<platform dir>/spadework`: %LOCALAPPDATA% on Windows; ~/Library/Application Support or
/// ~/Library/Caches on macOS; $XDG_STATE_HOME (~/.local/state) or $XDG_CACHE_HOME (~/.cache)
/// elsewhere; the temp dir when none is known.
pub fn user_dir(kind: UserDir) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let base = if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        home.map(|h| {
            h.join(match kind {
                UserDir::State => "Library/Application Support",
                UserDir::Cache => "Library/Caches",
            })
        })
    } else {
        let (var, rel) = match kind {
            UserDir::State => ("XDG_STATE_HOME", ".local/state"),
            UserDir::Cache => ("XDG_CACHE_HOME", ".cache"),
        };
        std::env::var_os(var)
            .map(PathBuf::from)
            .or(home.map(|h| h.join(rel)))
    };
    base.unwrap_or_else(std::env::temp_dir).join("spadework")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spadework-io-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_writes_keep_links_permissions_and_devices() {
        let d = dir("atomic");
        let out = d.join("a.png");
        write_atomic(&out, b"one").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{PermissionsExt, symlink};
            // The old file's permissions survive.
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
            write_atomic(&out, b"two").unwrap();
            let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640);
            // A symlink stays a symlink; its target gets the bytes.
            let link = d.join("link.png");
            symlink(&out, &link).unwrap();
            write_atomic(&link, b"three").unwrap();
            assert!(
                std::fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(std::fs::read(&out).unwrap(), b"three");
            // A device is written in place, not replaced.
            write_atomic(Path::new("/dev/null"), b"four").unwrap();
            assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        }
        // A directory is refused, and no temporary file is left.
        let e = write_atomic(&d, b"x").unwrap_err();
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn outputs_may_not_overwrite_inputs_or_each_other() {
        let d = dir("outputs");
        let map = d.join("map.png");
        std::fs::write(&map, b"m").unwrap();
        let e = check_outputs(&[("--map", Some(&map))], &[("-o", Some(&map))]).unwrap_err();
        assert!(format!("{e}").contains("is also the input --map"), "{e}");
        // The same file by another name.
        let other = d.join(".").join("map.png");
        assert!(check_outputs(&[("--map", Some(&map))], &[("-o", Some(&other))]).is_err());
        #[cfg(unix)]
        {
            let hard = d.join("hard.png");
            std::fs::hard_link(&map, &hard).unwrap();
            assert!(check_outputs(&[("--map", Some(&map))], &[("-o", Some(&hard))]).is_err());
        }
        // Two outputs that do not exist yet, one path.
        let out = d.join("out.png");
        let same = d.join("./out.png");
        let e = check_outputs(&[], &[("-o", Some(&out)), ("--raw", Some(&same))]).unwrap_err();
        assert!(format!("{e}").contains("is also the output"), "{e}");
        let raw = d.join("raw.npy");
        check_outputs(
            &[("--map", Some(&map))],
            &[("-o", Some(&out)), ("--raw", Some(&raw))],
        )
        .unwrap();
    }
}
