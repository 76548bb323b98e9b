//! Autosave: the painting is written (label-id PNG + a small JSON) after every change, and the
//! next `spadework paint` without `--map` restores it. Opening another map never overwrites an
//! autosave silently: the old one is moved to a timestamped backup first (the last 20 are kept).
use super::canvas::Canvas;
use super::files::save_ids_png;
use crate::io::map_png::{self, Pixels};
use crate::io::{UserDir, user_dir, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const KEEP_BACKUPS: usize = 20;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AutosaveMeta {
    /// The style seed in use.
    pub seed: u64,
    /// Which model the painting was made with (its source).
    pub model: String,
    /// Where the map was opened from, if anywhere.
    #[serde(default)]
    pub opened_from: Option<String>,
    pub saved_unix: u64,
}

pub struct Autosave {
    pub dir: PathBuf,
}

impl Autosave {
    /// `$SPADEWORK_AUTOSAVE_DIR`, else the platform's per-user state directory.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("SPADEWORK_AUTOSAVE_DIR") {
            return PathBuf::from(d);
        }
        user_dir(UserDir::State)
    }

    pub fn new(dir: impl Into<PathBuf>) -> Autosave {
        Autosave { dir: dir.into() }
    }

    pub fn map_path(&self) -> PathBuf {
        self.dir.join("painting.png")
    }
    fn meta_path(&self) -> PathBuf {
        self.dir.join("painting.json")
    }

    pub fn save(&self, canvas: &Canvas, meta: &AutosaveMeta) -> Result<()> {
        let mut meta = meta.clone();
        meta.saved_unix = now_unix();
        save_ids_png(&self.map_path(), canvas)
            .with_context(|| format!("autosave to {}", self.dir.display()))?;
        write_atomic(
            &self.meta_path(),
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )
    }

    /// The autosaved painting, if there is one. A damaged autosave is an error (naming the
    /// file), never silently replaced.
    pub fn restore(&self) -> Result<Option<(Canvas, AutosaveMeta)>> {
        let p = self.map_path();
        if !p.exists() {
            return Ok(None);
        }
        let img = map_png::read_map_png(&p)?;
        let Pixels::Ids(ids) = img.pixels else {
            anyhow::bail!("{}: not a label-id PNG", p.display());
        };
        let canvas = Canvas::from_ids(img.width, img.height, ids)?;
        let meta = std::fs::read_to_string(self.meta_path())
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        Ok(Some((canvas, meta)))
    }

    /// Moves the current autosave (if any) to `painting-<unix time>.png` and keeps the newest
    /// backups. Returns the backup's path.
    pub fn backup(&self) -> Result<Option<PathBuf>> {
        let p = self.map_path();
        if !p.exists() {
            return Ok(None);
        }
        let mut dst = self.dir.join(format!("painting-{}.png", now_unix()));
        let mut k = 1;
        while dst.exists() {
            dst = self.dir.join(format!("painting-{}-{k}.png", now_unix()));
            k += 1;
        }
        std::fs::rename(&p, &dst).with_context(|| format!("cannot move {}", p.display()))?;
        let mut old: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_backup(p))
            .collect();
        old.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        while old.len() > KEEP_BACKUPS {
            let _ = std::fs::remove_file(old.remove(0));
        }
        Ok(Some(dst))
    }
}

fn is_backup(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("painting-") && n.ends_with(".png"))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_restore_and_backup() {
        let dir = std::env::temp_dir().join(format!("spadework-autosave-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Autosave::new(&dir);
        assert!(a.restore().unwrap().is_none());
        let c = Canvas::from_ids(3, 2, vec![3, 5, 5, 10, 3, 300]).unwrap();
        let meta = AutosaveMeta {
            seed: 7,
            model: "demo".into(),
            opened_from: None,
            saved_unix: 0,
        };
        a.save(&c, &meta).unwrap();
        let (back, m) = a.restore().unwrap().unwrap();
        assert_eq!(back, c);
        assert_eq!((m.seed, m.model.as_str()), (7, "demo"));
        let b = a.backup().unwrap().unwrap();
        assert!(b.exists() && !a.map_path().exists());
        assert!(a.restore().unwrap().is_none());
        assert_eq!(
            crate::paint::files::open_map(
                &b,
                &crate::paint::files::Palette {
                    classes: vec![],
                    generated: true
                }
            )
            .unwrap()
            .0,
            c
        );
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
        // A damaged autosave is an error, not silently dropped.
        std::fs::write(a.map_path(), b"not a png").unwrap();
        let e = a.restore().unwrap_err();
        assert!(format!("{e:#}").contains("painting.png"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
