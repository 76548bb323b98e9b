//! Plays a replay [`Script`] in the paint window. Before each frame, [`ReplayDriver::inject`]
//! turns the next input step (key, click, drag, idle frames) into synthetic events in egui's raw
//! input; after the frame's UI, [`ReplayDriver::act`] runs the steps that wait for or act on the
//! window (a finished render, a screenshot with its layout, saving the map or the image,
//! quitting). The window closes when the script ends or a step fails; the failure is left in the
//! outcome shared with the caller.
use super::replay::{Replay, Script, Step};
use anyhow::Result;
use eframe::egui::{self, Key, Pos2, Rect};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the canvas and the preview are on screen, and which render the preview shows.
pub(super) struct ScreenLayout {
    pub(super) canvas: Rect,
    pub(super) preview: Option<Rect>,
    pub(super) shown_seq: u64,
}

/// What the driver needs of the window.
pub(super) trait ReplayTarget {
    /// Screen position of the map position (x, y), with the layout of the previous frame.
    fn screen_pos(&self, x: f32, y: f32) -> Pos2;
    /// The on-screen rectangle of a class's palette entry (class by name or id), if shown.
    fn palette_entry(&self, name: &str) -> Option<Rect>;
    /// Whether the preview shows the current painting (or its render failed).
    fn preview_is_current(&self) -> bool;
    fn screen_layout(&self) -> ScreenLayout;
    /// Saves the map as a palette PNG.
    fn save_palette_map(&mut self, path: &str) -> Result<()>;
    /// Saves the generated image as a PNG.
    fn save_generated_image(&mut self, path: &str) -> Result<()>;
}

pub(super) struct ReplayDriver {
    replay: Replay,
    /// The failure of the replay, if any (the window then closes).
    outcome: Arc<Mutex<Option<String>>>,
    /// The result of a requested screenshot, once egui has delivered and saved it.
    screenshot_done: Arc<Mutex<Option<Result<(), String>>>>,
}

impl ReplayDriver {
    pub(super) fn new(script: Script, outcome: Arc<Mutex<Option<String>>>) -> ReplayDriver {
        ReplayDriver {
            replay: Replay::new(script),
            outcome,
            screenshot_done: Arc::new(Mutex::new(None)),
        }
    }

    /// Adds this frame's synthetic input to `raw` (called before egui sees the frame's input).
    pub(super) fn inject(&mut self, raw: &mut egui::RawInput, app: &impl ReplayTarget) {
        let rp = &mut self.replay;
        if rp.frames.is_empty()
            && rp.waiting.is_none()
            && let Some(step) = rp.steps.pop_front()
        {
            rp.done += 1;
            let at = |p: &[f32; 2]| app.screen_pos(p[0] + 0.5, p[1] + 0.5);
            match &step {
                Step::Key { key, ctrl, shift } => match Key::from_name(key) {
                    Some(k) => {
                        let mut m = egui::Modifiers::NONE;
                        if *ctrl {
                            m |= egui::Modifiers::COMMAND;
                        }
                        if *shift {
                            m |= egui::Modifiers::SHIFT;
                        }
                        rp.key(k, m);
                    }
                    None => {
                        *self.outcome.lock().unwrap() = Some(format!("unknown key name '{key}'"))
                    }
                },
                Step::ClickClass { name } => match app.palette_entry(name) {
                    Some(r) => rp.drag(&[r.center()]),
                    None => {
                        *self.outcome.lock().unwrap() =
                            Some(format!("no palette entry '{name}' on screen"))
                    }
                },
                Step::Drag { points } => rp.drag(&points.iter().map(at).collect::<Vec<_>>()),
                Step::Click { at: p } => rp.drag(&[at(p)]),
                Step::Frames { n } => rp.idle(*n),
                _ => rp.waiting = Some((step.clone(), Instant::now())),
            }
        }
        if let Some(evs) = rp.frames.pop_front() {
            raw.events.extend(evs);
        }
    }

    /// Steps that act on the app or wait (called from `ui`, after input was handled).
    pub(super) fn act(&mut self, ctx: &egui::Context, app: &mut impl ReplayTarget) {
        ctx.request_repaint();
        self.step(ctx, app);
        if self.outcome.lock().unwrap().is_some() {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    fn step(&mut self, ctx: &egui::Context, app: &mut impl ReplayTarget) {
        let fail = |msg: String| *self.outcome.lock().unwrap() = Some(msg);
        let rp = &mut self.replay;
        let Some((step, since)) = rp.waiting.clone() else {
            if rp.steps.is_empty() && rp.frames.is_empty() {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            return;
        };
        if since.elapsed().as_secs_f64() > rp.timeout_s {
            fail(format!("step {} ({step:?}) timed out", rp.done));
            return;
        }
        let finished = match &step {
            Step::WaitRender => app.preview_is_current(),
            Step::Screenshot { path } => {
                let result = self.screenshot_done.lock().unwrap().take();
                match result {
                    Some(r) => {
                        if let Err(e) = r {
                            fail(e);
                        }
                        true
                    }
                    None if !rp.asked => {
                        rp.asked = true;
                        let slot = self.screenshot_done.clone();
                        let path = path.clone();
                        let rect = |r: Rect| [r.min.x, r.min.y, r.max.x, r.max.y];
                        let shown = app.screen_layout();
                        let layout = serde_json::json!({
                            "canvas": rect(shown.canvas),
                            "preview": shown.preview.map(rect),
                            "pixels_per_point": ctx.pixels_per_point(),
                            "shown_seq": shown.shown_seq,
                        });
                        ctx.request_screenshot(move |img| {
                            let r = save_screenshot(&path, &img, &layout);
                            *slot.lock().unwrap() = Some(r.map_err(|e| format!("{e:#}")));
                        });
                        false
                    }
                    None => false,
                }
            }
            Step::SaveMap { path } => {
                if let Err(e) = app.save_palette_map(&path.display().to_string()) {
                    fail(format!("{e:#}"));
                }
                true
            }
            Step::SaveImage { path } => {
                if let Err(e) = app.save_generated_image(&path.display().to_string()) {
                    fail(format!("{e:#}"));
                }
                true
            }
            Step::Quit => {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                true
            }
            _ => true,
        };
        if finished {
            rp.waiting = None;
            rp.asked = false;
            crate::note!("replay: step {} done ({step:?})", rp.done);
        }
    }
}

fn save_screenshot(
    path: &std::path::Path,
    img: &egui::ColorImage,
    layout: &serde_json::Value,
) -> Result<()> {
    let [w, h] = img.size;
    let rgb: Vec<u8> = img
        .pixels
        .iter()
        .flat_map(|c| [c.r(), c.g(), c.b()])
        .collect();
    crate::io::image::save_rgb_png(path, &rgb, h, w)?;
    let mut layout = layout.clone();
    layout["size"] = serde_json::json!([w, h]);
    std::fs::write(
        path.with_extension("json"),
        serde_json::to_string_pretty(&layout)?,
    )?;
    Ok(())
}
