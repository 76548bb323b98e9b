//! Files in and out: label/instance map PNGs ([`map_png`]), output and style images ([`image`]),
//! numpy arrays ([`npy`]); atomic writes and per-user directories. Knows no model.
pub mod image;
pub mod map_png;
pub mod npy;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
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
