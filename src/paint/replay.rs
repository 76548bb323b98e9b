//! `spadework paint --replay script.json`: drives the real window with synthetic input events
//! (pointer moves, button presses, keys), injected into egui's raw input exactly where winit's
//! events arrive, so the replay goes through the same hit-testing and shortcut code as a person.
//! Map coordinates in the script are converted to window coordinates with the layout of the
//! previous frame.
//!
//! ```json
//! {"steps": [
//!   {"op": "wait_render"},
//!   {"op": "screenshot", "path": "before.png"},
//!   {"op": "click_class", "name": "sky"},
//!   {"op": "key", "key": "B"},
//!   {"op": "drag", "points": [[10, 10], [120, 10], [120, 60]]},
//!   {"op": "key", "key": "Z", "ctrl": true},
//!   {"op": "wait_render"},
//!   {"op": "save_map", "path": "out.png"},
//!   {"op": "quit"}
//! ]}
//! ```
use anyhow::{Context, Result};
use eframe::egui;
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Wait until the preview shows the current painting (or its render failed).
    WaitRender,
    /// Save a screenshot of the window (PNG) and, beside it, `<path>.json` with the layout.
    Screenshot {
        path: PathBuf,
    },
    /// Press and release a key (egui key name: "B", "Z", "OpenBracket", "F1", ...).
    Key {
        key: String,
        #[serde(default)]
        ctrl: bool,
        #[serde(default)]
        shift: bool,
    },
    /// Click the palette entry of a class (by name or id).
    ClickClass {
        name: String,
    },
    /// Press the primary button at the first point, move through the others, release.
    Drag {
        points: Vec<[f32; 2]>,
    },
    /// A primary click at a map position.
    Click {
        at: [f32; 2],
    },
    /// Let `n` frames pass.
    Frames {
        n: u32,
    },
    SaveMap {
        path: PathBuf,
    },
    SaveImage {
        path: PathBuf,
    },
    Quit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub steps: Vec<Step>,
    /// Seconds any single wait may take before the replay fails.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn default_timeout() -> f64 {
    300.0
}

impl Script {
    pub fn load(path: &Path) -> Result<Script> {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read replay script {}", path.display()))?;
        serde_json::from_str(&s).with_context(|| format!("{}: bad replay script", path.display()))
    }
}

/// A step expanded into input, one batch of events per frame.
pub enum Pending {
    Events(Vec<egui::Event>),
}

/// The replay's progress.
pub struct Replay {
    pub steps: VecDeque<Step>,
    pub frames: VecDeque<Pending>,
    pub timeout_s: f64,
    /// What the replay is waiting for and since when.
    pub waiting: Option<(Step, std::time::Instant)>,
    pub done: usize,
    /// Whether the waiting step already asked for its result (a screenshot).
    pub asked: bool,
}

impl Replay {
    pub fn new(script: Script) -> Replay {
        Replay {
            steps: script.steps.into(),
            frames: VecDeque::new(),
            timeout_s: script.timeout_s,
            waiting: None,
            done: 0,
            asked: false,
        }
    }
}

pub fn key_event(key: egui::Key, pressed: bool, modifiers: egui::Modifiers) -> egui::Event {
    egui::Event::Key {
        key,
        physical_key: Some(key),
        pressed,
        repeat: false,
        modifiers,
    }
}

pub fn button_event(pos: egui::Pos2, pressed: bool) -> egui::Event {
    egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    }
}
