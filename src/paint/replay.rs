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

/// The replay's progress.
pub struct Replay {
    pub steps: VecDeque<Step>,
    /// Input still to inject, one batch of events per frame.
    pub frames: VecDeque<Vec<egui::Event>>,
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

impl Replay {
    fn frame(&mut self, events: Vec<egui::Event>) {
        self.frames.push_back(events);
    }

    /// Key down, then key up on the next frame.
    pub fn key(&mut self, key: egui::Key, modifiers: egui::Modifiers) {
        for pressed in [true, false] {
            self.frame(vec![egui::Event::Key {
                key,
                physical_key: Some(key),
                pressed,
                repeat: false,
                modifiers,
            }]);
        }
    }

    /// Move to the first point, press, move through the rest in steps of ≤ 6 points (one event
    /// per frame, as a hand would), release at the last.
    pub fn drag(&mut self, points: &[egui::Pos2]) {
        let Some((&p0, rest)) = points.split_first() else {
            return;
        };
        self.frame(vec![egui::Event::PointerMoved(p0)]);
        self.frame(vec![button(p0, true)]);
        let mut prev = p0;
        for &b in rest {
            let n = ((b - prev).length() / 6.0).ceil().max(1.0) as usize;
            for k in 1..=n {
                let q = prev + (b - prev) * (k as f32 / n as f32);
                self.frame(vec![egui::Event::PointerMoved(q)]);
            }
            prev = b;
        }
        self.frame(vec![button(prev, false)]);
    }

    /// Let `n` frames pass without input.
    pub fn idle(&mut self, n: u32) {
        for _ in 0..n {
            self.frame(vec![]);
        }
    }
}

fn button(pos: egui::Pos2, pressed: bool) -> egui::Event {
    egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    }
}
