//! The paint window: class palette, tools, the map canvas and the generated image side by side
//! (or overlaid), live re-rendering on a worker thread, autosave, shortcuts with a help overlay.
//! All editing goes through [`Editor`]; this file only maps input to it and draws.
use super::autosave::{Autosave, AutosaveMeta};
use super::canvas::{Canvas, Editor, Tool};
use super::files::{self, Palette};
use super::replay::Script;
use super::replay_driver::{ReplayDriver, ReplayTarget, ScreenLayout};
use super::worker::{Event as WorkerEvent, ModelRenderer, Renderer, Request, Style, Worker};
use crate::backend::{BackendChoice, Device};
use crate::models::SpadeConfig;
use crate::pipelines::spade::SpadePipeline;
use crate::weights::WeightStore;
use anyhow::{Context, Result};
use eframe::egui::{self, Color32, Key, Pos2, Rect, Sense, Vec2};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct PaintOptions {
    /// The model file and its label for messages.
    pub store: WeightStore,
    pub map: Option<PathBuf>,
    pub backend: BackendChoice,
    pub adapter: Option<String>,
    /// How a GPU stores the model's weights.
    pub gpu_weights: crate::backend::WeightStorage,
    pub autosave_dir: PathBuf,
    pub replay: Option<PathBuf>,
    pub seed: Option<u64>,
    /// Size of a new painting (default: the model's map size, at least 256 on the long side).
    pub size: Option<(usize, usize)>,
}

/// Opens the window and runs until it is closed (or the replay ends). A replay failure is an
/// error.
pub fn run(opts: PaintOptions) -> Result<()> {
    let cfg: SpadeConfig = crate::pipelines::spade::SpadePipeline::config_of(&opts.store)?;
    let replay = opts.replay.as_ref().map(|p| Script::load(p)).transpose()?;
    let outcome: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let outcome_app = outcome.clone();
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("spadework paint")
            .with_inner_size([1280.0, 760.0]),
        ..Default::default()
    };
    eframe::run_native(
        "spadework paint",
        native,
        Box::new(move |cc| {
            let app = PaintApp::new(cc, cfg, opts, replay, outcome_app)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the paint window failed: {e}"))?;
    match outcome.lock().unwrap().take() {
        Some(err) => anyhow::bail!("replay failed: {err}"),
        None => Ok(()),
    }
}

/// Where the canvas is on screen: map pixel (x, y) is at `origin + (x, y) * scale`.
#[derive(Clone, Copy)]
struct View {
    origin: Pos2,
    scale: f32,
    rect: Rect,
}

impl View {
    fn to_map(&self, p: Pos2) -> (f32, f32) {
        (
            (p.x - self.origin.x) / self.scale,
            (p.y - self.origin.y) / self.scale,
        )
    }
    fn to_screen(&self, x: f32, y: f32) -> Pos2 {
        Pos2::new(
            self.origin.x + x * self.scale,
            self.origin.y + y * self.scale,
        )
    }
}

struct Preview {
    tex: egui::TextureHandle,
    rgb: Vec<u8>,
    w: usize,
    h: usize,
}

struct PaintApp {
    cfg: SpadeConfig,
    model_name: String,
    palette: Palette,
    editor: Editor,
    tool: Tool,
    class: u32,
    eraser: u32,
    radius: f32,
    search: String,
    // Stroke state.
    painting: bool,
    last: Option<(f32, f32)>,
    line_start: Option<(f32, f32)>,
    // View: zoom 1 = fit; pan in screen points.
    zoom: f32,
    pan: Vec2,
    overlay: bool,
    overlay_alpha: f32,
    view: View,
    preview_rect: Option<Rect>,
    // Rendering.
    worker: Worker,
    /// The render device, once the worker has loaded the model.
    device_label: String,
    seq: u64,
    requested_rev: Option<u64>,
    requested_style: Option<Style>,
    shown_seq: u64,
    shown_rev: Option<u64>,
    seq_rev: BTreeMap<u64, u64>,
    render_ms: Option<f64>,
    render_error: Option<String>,
    dropped: u64,
    preview: Option<Preview>,
    map_tex: Option<(egui::TextureHandle, u64)>,
    seed: u64,
    style: Style,
    style_path: String,
    // Files.
    file_path: String,
    autosave: Autosave,
    saved_rev: Option<u64>,
    autosave_error: Option<(String, Instant)>,
    opened_from: Option<String>,
    unknown: (u64, BTreeMap<u32, usize>),
    message: String,
    show_help: bool,
    // Replay.
    replay: Option<ReplayDriver>,
    class_rects: BTreeMap<u32, Rect>,
}

fn default_canvas(cfg: &SpadeConfig, palette: &Palette, size: Option<(usize, usize)>) -> Canvas {
    let (w, h) = size.unwrap_or_else(|| {
        let (mh, mw) = cfg.map_size();
        let k = 256_usize.div_ceil(mh.max(mw));
        (mw * k.max(1), mh * k.max(1))
    });
    let first = palette.classes.first().map(|c| c.id).unwrap_or(0);
    let mut c = Canvas::new(w, h, first);
    if let (Some(sky), Some(grass)) = (palette.lookup("sky"), palette.lookup("grass")) {
        for y in 0..h {
            let id = if y < h * 11 / 20 { sky.id } else { grass.id };
            c.ids[y * w..(y + 1) * w].fill(id);
        }
    }
    c
}

impl PaintApp {
    fn new(
        cc: &eframe::CreationContext,
        cfg: SpadeConfig,
        opts: PaintOptions,
        script: Option<Script>,
        outcome: Arc<Mutex<Option<String>>>,
    ) -> Result<PaintApp> {
        let palette = Palette::for_model(&cfg);
        let autosave = Autosave::new(&opts.autosave_dir);
        let mut message = String::new();
        let mut seed = opts.seed.unwrap_or(0);
        let mut opened_from = None;
        let canvas = if let Some(p) = &opts.map {
            let (c, rep) = files::open_map(p, &palette)?;
            if let Ok(Some((old, _))) = autosave.restore()
                && old != c
                && let Ok(Some(b)) = autosave.backup()
            {
                message = format!(
                    "the previous autosaved painting was kept as {}",
                    b.display()
                );
            }
            if !rep.unknown_colors.is_empty() {
                message = format!(
                    "{}: {} colour(s) are not in the palette; marked as unknown",
                    p.display(),
                    rep.unknown_colors.len()
                );
            }
            opened_from = Some(p.display().to_string());
            c
        } else {
            match autosave.restore() {
                Ok(Some((c, meta))) => {
                    message = format!(
                        "restored your painting from {}",
                        autosave.map_path().display()
                    );
                    if opts.seed.is_none() {
                        seed = meta.seed;
                    }
                    opened_from = meta.opened_from;
                    c
                }
                Ok(None) => default_canvas(&cfg, &palette, opts.size),
                Err(e) => {
                    // Keep the damaged file for the user; start a new painting beside it.
                    let kept = autosave.backup().ok().flatten();
                    message = format!(
                        "could not restore the autosave ({e:#}){}",
                        kept.map(|k| format!("; the file was kept as {}", k.display()))
                            .unwrap_or_default()
                    );
                    default_canvas(&cfg, &palette, opts.size)
                }
            }
        };
        let ctx = cc.egui_ctx.clone();
        let store = opts.store;
        let (backend, adapter) = (opts.backend, opts.adapter.clone());
        let gpu_weights = opts.gpu_weights;
        let field_seed = seed;
        let worker = Worker::spawn(
            move || {
                let device = Device::select(backend, adapter.as_deref())?;
                let model = SpadePipeline::from_store(&store, &device, gpu_weights)?;
                Ok(Box::new(ModelRenderer::new(model, field_seed)) as Box<dyn Renderer>)
            },
            Box::new(move || ctx.request_repaint()),
        );
        let sky = palette.lookup("sky").map(|c| c.id);
        let class = sky.or(palette.classes.first().map(|c| c.id)).unwrap_or(0);
        let eraser = palette
            .lookup("grass")
            .or(palette.classes.first())
            .map(|c| c.id)
            .unwrap_or(0);
        let model_name = cfg_label(&cfg);
        Ok(PaintApp {
            palette,
            model_name,
            editor: Editor::new(canvas),
            tool: Tool::Brush,
            class,
            eraser,
            radius: 6.0,
            search: String::new(),
            painting: false,
            last: None,
            line_start: None,
            zoom: 1.0,
            pan: Vec2::ZERO,
            overlay: false,
            overlay_alpha: 0.5,
            view: View {
                origin: Pos2::ZERO,
                scale: 1.0,
                rect: Rect::NOTHING,
            },
            preview_rect: None,
            worker,
            device_label: String::new(),
            seq: 0,
            requested_rev: None,
            requested_style: None,
            shown_seq: 0,
            shown_rev: None,
            seq_rev: BTreeMap::new(),
            render_ms: None,
            render_error: None,
            dropped: 0,
            preview: None,
            map_tex: None,
            seed,
            style: Style::Seed(seed),
            style_path: String::new(),
            file_path: "painting.png".into(),
            autosave,
            saved_rev: None,
            autosave_error: None,
            opened_from,
            unknown: (u64::MAX, BTreeMap::new()),
            message,
            show_help: false,
            replay: script.map(|s| ReplayDriver::new(s, outcome)),
            class_rects: BTreeMap::new(),
            cfg,
        })
    }

    fn class_name(&self, id: u32) -> String {
        self.palette
            .find(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| format!("unknown id {id}"))
    }

    // ---------------------------------------------------------------- rendering

    fn poll_worker(&mut self, ctx: &egui::Context) {
        for ev in self.worker.poll() {
            match ev {
                WorkerEvent::Ready(label) => self.device_label = label,
                WorkerEvent::LoadFailed(e) => {
                    self.device_label = "no model loaded".into();
                    self.render_error = Some(format!("model: {e}"));
                }
                WorkerEvent::Done(r) => {
                    if r.seq < self.shown_seq {
                        continue;
                    }
                    self.shown_seq = r.seq;
                    self.shown_rev = self.seq_rev.get(&r.seq).copied();
                    self.render_ms = Some(r.ms);
                    self.render_error = None;
                    let img = egui::ColorImage::from_rgb([r.w, r.h], &r.rgb);
                    match &mut self.preview {
                        Some(p) if (p.w, p.h) == (r.w, r.h) => {
                            p.tex.set(img, egui::TextureOptions::LINEAR);
                            p.rgb = r.rgb;
                        }
                        _ => {
                            self.preview = Some(Preview {
                                tex: ctx.load_texture("preview", img, egui::TextureOptions::LINEAR),
                                rgb: r.rgb,
                                w: r.w,
                                h: r.h,
                            })
                        }
                    }
                }
                WorkerEvent::Failed { seq, error } => {
                    if seq >= self.shown_seq {
                        self.shown_seq = seq;
                        self.shown_rev = self.seq_rev.get(&seq).copied();
                        self.render_error = Some(error);
                    }
                }
                WorkerEvent::Dropped { .. } => self.dropped += 1,
            }
        }
    }

    /// Sends a render request when the painting or the style changed (not mid-stroke).
    fn request_render(&mut self) {
        let rev = self.editor.revision();
        if self.editor.in_operation() || self.painting {
            return;
        }
        if self.requested_rev == Some(rev) && self.requested_style.as_ref() == Some(&self.style) {
            return;
        }
        self.seq += 1;
        self.seq_rev.insert(self.seq, rev);
        while self.seq_rev.len() > 64 {
            let k = *self.seq_rev.keys().next().unwrap();
            self.seq_rev.remove(&k);
        }
        self.requested_rev = Some(rev);
        self.requested_style = Some(self.style.clone());
        let unknown_as = (!self.unknown.1.is_empty()).then_some(self.eraser);
        self.worker.request(Request {
            seq: self.seq,
            canvas: Arc::new(self.editor.canvas().clone()),
            style: self.style.clone(),
            unknown_as,
        });
    }

    fn up_to_date(&self) -> bool {
        self.shown_seq == self.seq && self.seq > 0 && !self.editor.in_operation()
    }

    // ---------------------------------------------------------------- files

    fn autosave_now(&mut self) {
        let rev = self.editor.revision();
        if self.saved_rev == Some(rev) || self.editor.in_operation() {
            return;
        }
        if let Some((_, t)) = &self.autosave_error
            && t.elapsed().as_secs_f32() < 5.0
        {
            return;
        }
        let meta = AutosaveMeta {
            seed: self.seed,
            model: self.model_name.clone(),
            opened_from: self.opened_from.clone(),
            saved_unix: 0,
        };
        match self.autosave.save(self.editor.canvas(), &meta) {
            Ok(()) => {
                self.saved_rev = Some(rev);
                self.autosave_error = None;
            }
            Err(e) => self.autosave_error = Some((format!("{e:#}"), Instant::now())),
        }
    }

    fn open_map(&mut self, path: &str) {
        match files::open_map(std::path::Path::new(path), &self.palette) {
            Ok((c, rep)) => {
                self.editor.replace(c, "open");
                self.opened_from = Some(path.to_string());
                self.message = if rep.unknown_colors.is_empty() {
                    format!("opened {path} (undo returns to the previous painting)")
                } else {
                    format!(
                        "opened {path}: {} colour(s) not in the palette are marked as unknown",
                        rep.unknown_colors.len()
                    )
                };
            }
            Err(e) => self.message = format!("cannot open: {e:#}"),
        }
    }

    fn save_map(&mut self, path: &str, ids: bool) -> Result<()> {
        let p = std::path::Path::new(path);
        if ids {
            files::save_ids_png(p, self.editor.canvas())?;
        } else {
            files::save_palette_png(p, self.editor.canvas(), &self.palette)?;
        }
        self.message = format!("saved the map to {path}");
        Ok(())
    }

    fn save_image(&mut self, path: &str) -> Result<()> {
        let p = self
            .preview
            .as_ref()
            .context("no generated image yet (the first render is still running)")?;
        crate::io::image::save_rgb_png(std::path::Path::new(path), &p.rgb, p.h, p.w)?;
        self.message = format!("saved the image to {path}");
        Ok(())
    }

    fn report<T>(&mut self, r: Result<T>) {
        if let Err(e) = r {
            self.message = format!("error: {e:#}");
        }
    }

    // ---------------------------------------------------------------- input

    fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let cmd = egui::Modifiers::COMMAND;
        let cmd_shift = egui::Modifiers::COMMAND | egui::Modifiers::SHIFT;
        let mut undo = false;
        let mut redo = false;
        let mut save = false;
        ctx.input_mut(|i| {
            redo |= i.consume_key(cmd_shift, Key::Z) || i.consume_key(cmd, Key::Y);
            undo |= i.consume_key(cmd, Key::Z);
            save |= i.consume_key(cmd, Key::S);
        });
        if undo {
            self.message = match self.editor.undo() {
                Some(l) => format!("undid {l}"),
                None => "nothing to undo".into(),
            };
        }
        if redo {
            self.message = match self.editor.redo() {
                Some(l) => format!("redid {l}"),
                None => "nothing to redo".into(),
            };
        }
        if save {
            let p = self.file_path.clone();
            let r = self.save_map(&p, false);
            self.report(r);
        }
        let pressed = |k: Key| ctx.input(|i| i.key_pressed(k) && i.modifiers.is_none());
        for t in Tool::ALL {
            if let Some(k) = Key::from_name(&t.key().to_string())
                && pressed(k)
            {
                self.tool = t;
            }
        }
        if pressed(Key::OpenBracket) {
            self.radius = (self.radius / 1.25).max(0.5);
        }
        if pressed(Key::CloseBracket) {
            self.radius = (self.radius * 1.25).min(256.0);
        }
        if pressed(Key::N) {
            self.new_style();
        }
        if pressed(Key::O) {
            self.overlay = !self.overlay;
        }
        if pressed(Key::Plus) || pressed(Key::Equals) {
            self.zoom = (self.zoom * 1.25).min(64.0);
        }
        if pressed(Key::Minus) {
            self.zoom = (self.zoom / 1.25).max(0.1);
        }
        if pressed(Key::Num0) {
            self.zoom = 1.0;
            self.pan = Vec2::ZERO;
        }
        if pressed(Key::F1) || pressed(Key::H) || ctx.input(|i| i.key_pressed(Key::Questionmark)) {
            self.show_help = !self.show_help;
        }
        if pressed(Key::Escape) {
            self.show_help = false;
        }
    }

    fn new_style(&mut self) {
        self.seed = self.seed.wrapping_add(1);
        self.style = Style::Seed(self.seed);
    }

    /// The canvas: pointer input → tools; draws the map (and, overlaid, the image).
    fn canvas_ui(
        &mut self,
        ui: &mut egui::Ui,
        area: Rect,
        show_map: bool,
        show_image: bool,
        interactive: bool,
    ) {
        let (cw, ch) = (self.editor.canvas().w as f32, self.editor.canvas().h as f32);
        let fit = (area.width() / cw).min(area.height() / ch);
        let scale = fit * self.zoom;
        let size = Vec2::new(cw * scale, ch * scale);
        let origin = area.center() - size / 2.0 + self.pan;
        let rect = Rect::from_min_size(origin, size);
        let painter = ui.painter_at(area);
        painter.rect_filled(area, 0.0, Color32::from_gray(30));
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        if show_image && let Some(p) = &self.preview {
            painter.image(p.tex.id(), rect, uv, Color32::WHITE);
        }
        if show_map && let Some((tex, _)) = &self.map_tex {
            let a = if show_image {
                (self.overlay_alpha * 255.0) as u8
            } else {
                255
            };
            painter.image(tex.id(), rect, uv, Color32::from_white_alpha(a));
        }
        if !interactive {
            return;
        }
        self.view = View {
            origin,
            scale,
            rect: area,
        };
        let id = ui.scope_id().with("canvas");
        let resp = ui.interact(area, id, Sense::click_and_drag());
        // Zoom with the wheel around the cursor; pan with the middle or right button.
        if let Some(hover) = resp.hover_pos() {
            let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = zoom * (scroll / 400.0).exp();
            if (factor - 1.0).abs() > 1e-4 {
                let new_zoom = (self.zoom * factor).clamp(0.1, 64.0);
                let f = new_zoom / self.zoom;
                // Keep the map point under the cursor fixed.
                self.pan = (hover - area.center()) * (1.0 - f) + self.pan * f;
                self.zoom = new_zoom;
            }
        }
        if resp.dragged_by(egui::PointerButton::Middle)
            || resp.dragged_by(egui::PointerButton::Secondary)
        {
            self.pan += resp.drag_delta();
        }
        let pos = resp.interact_pointer_pos().or(resp.hover_pos());
        let primary_down = ui.input(|i| i.pointer.primary_down());
        let down_on = resp.is_pointer_button_down_on() && primary_down;
        let color = self
            .palette
            .find(self.class)
            .map(|c| c.color)
            .unwrap_or([255, 0, 255]);
        match self.tool {
            Tool::Brush | Tool::Eraser => {
                let id = if self.tool == Tool::Eraser {
                    self.eraser
                } else {
                    self.class
                };
                if down_on && let Some(p) = pos {
                    let m = self.view.to_map(p);
                    if !self.painting {
                        self.editor.begin(if self.tool == Tool::Eraser {
                            "eraser"
                        } else {
                            "brush stroke"
                        });
                        self.painting = true;
                        self.editor.stroke(m, m, self.radius, id);
                    } else if let Some(l) = self.last {
                        self.editor.stroke(l, m, self.radius, id);
                    }
                    self.last = Some(m);
                } else if self.painting && !primary_down {
                    self.painting = false;
                    self.last = None;
                    self.editor.end();
                }
            }
            Tool::Line => {
                if down_on && let Some(p) = pos {
                    let m = self.view.to_map(p);
                    if self.line_start.is_none() {
                        self.line_start = Some(m);
                    }
                    self.last = Some(m);
                } else if !primary_down && let (Some(a), Some(b)) = (self.line_start, self.last) {
                    self.editor.begin("line");
                    self.editor.stroke(a, b, self.radius, self.class);
                    self.editor.end();
                    self.line_start = None;
                    self.last = None;
                }
                if let (Some(a), Some(b)) = (self.line_start, self.last) {
                    painter.line_segment(
                        [self.view.to_screen(a.0, a.1), self.view.to_screen(b.0, b.1)],
                        egui::Stroke::new(
                            (2.0 * self.radius * scale).max(1.0),
                            Color32::from_rgb(color[0], color[1], color[2]),
                        ),
                    );
                }
            }
            Tool::Fill => {
                if resp.clicked()
                    && let Some(p) = pos
                {
                    let m = self.view.to_map(p);
                    self.editor.begin("fill");
                    let n = self
                        .editor
                        .fill(m.0.floor() as i64, m.1.floor() as i64, self.class);
                    self.editor.end();
                    self.message =
                        format!("filled {n} pixels with {}", self.class_name(self.class));
                }
            }
            Tool::Eyedropper => {
                if resp.clicked()
                    && let Some(p) = pos
                {
                    let m = self.view.to_map(p);
                    if let Some(id) = self.editor.pick(m.0.floor() as i64, m.1.floor() as i64) {
                        if self.palette.find(id).is_some() {
                            self.class = id;
                            self.tool = Tool::Brush;
                            self.message = format!("picked {}", self.class_name(id));
                        } else {
                            self.message = format!("id {id} is not a class of this model");
                        }
                    }
                }
            }
        }
        // Brush outline under the cursor.
        if let Some(h) = resp.hover_pos()
            && matches!(self.tool, Tool::Brush | Tool::Eraser | Tool::Line)
        {
            painter.circle_stroke(
                h,
                self.radius * scale,
                egui::Stroke::new(1.0, Color32::WHITE),
            );
        }
    }

    fn side_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Classes");
        ui.add(egui::TextEdit::singleline(&mut self.search).hint_text("search classes"));
        self.class_rects.clear();
        let matches = self.palette.search(&self.search);
        egui::ScrollArea::vertical()
            .max_height(ui.available_height() * 0.45)
            .show(ui, |ui| {
                for i in matches {
                    let c = self.palette.classes[i].clone();
                    let sel = c.id == self.class;
                    let r = ui
                        .horizontal(|ui| {
                            let (sw, _) =
                                ui.allocate_exact_size(Vec2::new(18.0, 18.0), Sense::hover());
                            ui.painter().rect_filled(
                                sw,
                                3.0,
                                Color32::from_rgb(c.color[0], c.color[1], c.color[2]),
                            );
                            ui.selectable_label(sel, format!("{} ({})", c.name, c.id))
                        })
                        .inner;
                    self.class_rects.insert(c.id, r.rect);
                    if r.clicked() {
                        self.class = c.id;
                        if matches!(self.tool, Tool::Eyedropper | Tool::Eraser) {
                            self.tool = Tool::Brush;
                        }
                    }
                }
            });
        ui.separator();
        ui.heading("Tools");
        ui.horizontal_wrapped(|ui| {
            for t in Tool::ALL {
                ui.selectable_value(&mut self.tool, t, format!("{} ({})", t.name(), t.key()));
            }
        });
        ui.add(
            egui::Slider::new(&mut self.radius, 0.5..=64.0)
                .logarithmic(true)
                .text("brush radius (px)"),
        );
        let eraser_name = self.class_name(self.eraser);
        egui::ComboBox::from_label("eraser paints")
            .selected_text(eraser_name)
            .show_ui(ui, |ui| {
                for c in &self.palette.classes {
                    ui.selectable_value(&mut self.eraser, c.id, &c.name);
                }
            });
        ui.horizontal(|ui| {
            if ui.button("Undo").clicked() {
                self.editor.undo();
            }
            if ui.button("Redo").clicked() {
                self.editor.redo();
            }
            ui.label(format!("{} steps", self.editor.history.undo_len()));
        });
        ui.separator();
        ui.heading("Style");
        if self.cfg.use_vae {
            ui.horizontal(|ui| {
                let mut s = self.seed;
                if ui
                    .add(egui::DragValue::new(&mut s).prefix("seed "))
                    .changed()
                {
                    self.seed = s;
                    self.style = Style::Seed(s);
                }
                if ui.button("New style (N)").clicked() {
                    self.new_style();
                }
            });
            if self.cfg.has_encoder {
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut self.style_path)
                            .hint_text("style image path")
                            .desired_width(150.0),
                    );
                    if ui.button("Use").clicked() && !self.style_path.is_empty() {
                        self.style = Style::Image(PathBuf::from(self.style_path.trim()));
                    }
                });
            }
        } else {
            ui.label("this model has no style input");
        }
        ui.checkbox(&mut self.overlay, "overlay map on image (O)");
        if self.overlay {
            ui.add(egui::Slider::new(&mut self.overlay_alpha, 0.0..=1.0).text("map opacity"));
        }
        ui.separator();
        ui.heading("Files");
        ui.add(egui::TextEdit::singleline(&mut self.file_path).desired_width(220.0));
        ui.horizontal_wrapped(|ui| {
            let p = self.file_path.clone();
            if ui.button("Open map").clicked() {
                self.open_map(&p);
            }
            if ui
                .button("Save map")
                .on_hover_text("palette PNG in the model's colours (Ctrl+S)")
                .clicked()
            {
                let r = self.save_map(&p, false);
                self.report(r);
            }
            if ui
                .button("Save ids")
                .on_hover_text("grayscale label-id PNG")
                .clicked()
            {
                let r = self.save_map(&p, true);
                self.report(r);
            }
            if ui.button("Save image").clicked() {
                let r = self.save_image(&p);
                self.report(r);
            }
        });
        ui.label(format!("autosave: {}", self.autosave.map_path().display()));
        if ui.button("Shortcuts (F1)").clicked() {
            self.show_help = true;
        }
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let label = self.device_label.clone();
            ui.label(format!(
                "{} · {}",
                self.model_name,
                if label.is_empty() {
                    "loading…".into()
                } else {
                    label
                }
            ));
            ui.separator();
            if !self.up_to_date() && self.render_error.is_none() {
                ui.spinner();
                ui.label("rendering…");
            } else if let Some(ms) = self.render_ms {
                ui.label(format!("rendered in {ms:.0} ms"));
            }
            if let Some(e) = &self.render_error {
                ui.colored_label(
                    Color32::from_rgb(255, 90, 90),
                    format!("render failed: {e} (your painting is safe and still editable)"),
                );
            }
            ui.separator();
            if let Some(h) = ui.ctx().pointer_hover_pos()
                && self.view.rect.contains(h)
            {
                let (x, y) = self.view.to_map(h);
                if let Some(id) = self.editor.pick(x.floor() as i64, y.floor() as i64) {
                    ui.label(format!(
                        "({}, {}) {}",
                        x.floor(),
                        y.floor(),
                        self.class_name(id)
                    ));
                }
            }
        });
        if !self.unknown.1.is_empty() {
            let list: Vec<String> = self
                .unknown
                .1
                .iter()
                .take(6)
                .map(|(id, n)| format!("{id} ({n} px)"))
                .collect();
            ui.colored_label(
                Color32::from_rgb(255, 170, 60),
                format!(
                    "ids unknown to this model: {} — shown checkered, rendered as {}",
                    list.join(", "),
                    self.class_name(self.eraser)
                ),
            );
        }
        if let Some((e, _)) = &self.autosave_error {
            ui.colored_label(
                Color32::from_rgb(255, 90, 90),
                format!("autosave failed: {e}"),
            );
        }
        if !self.message.is_empty() {
            ui.label(&self.message);
        }
    }

    fn help_window(&mut self, ctx: &egui::Context) {
        let mut open = self.show_help;
        egui::Window::new("Shortcuts")
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                egui::Grid::new("keys").striped(true).show(ui, |ui| {
                    for (k, what) in [
                        (
                            "B / L / F / I / E",
                            "brush / line / fill / eyedropper / eraser",
                        ),
                        ("[ and ]", "smaller / larger brush"),
                        ("Ctrl+Z", "undo"),
                        ("Ctrl+Shift+Z, Ctrl+Y", "redo"),
                        ("Ctrl+S", "save the map (palette PNG) to the path in Files"),
                        ("N", "new random style (VAE models)"),
                        ("O", "overlay the map on the image"),
                        ("wheel, + / -, 0", "zoom around the cursor, reset the view"),
                        ("middle or right drag", "pan"),
                        ("F1 or H", "this help; Esc closes it"),
                    ] {
                        ui.monospace(k);
                        ui.label(what);
                        ui.end_row();
                    }
                });
                ui.label(
                    "The painting is autosaved after every change and restored on the next start.",
                );
            });
        self.show_help = open && self.show_help;
    }
}

fn cfg_label(cfg: &SpadeConfig) -> String {
    let (h, w) = cfg.output_size().unwrap_or((0, 0));
    format!(
        "SPADE {}x{} · {} classes",
        w,
        h,
        Palette::for_model(cfg).classes.len()
    )
}

impl ReplayTarget for PaintApp {
    fn screen_pos(&self, x: f32, y: f32) -> Pos2 {
        self.view.to_screen(x, y)
    }
    fn palette_entry(&self, name: &str) -> Option<Rect> {
        self.palette
            .lookup(name)
            .and_then(|c| self.class_rects.get(&c.id))
            .copied()
    }
    fn preview_is_current(&self) -> bool {
        self.up_to_date()
    }
    fn screen_layout(&self) -> ScreenLayout {
        ScreenLayout {
            canvas: self.view.rect,
            preview: self.preview_rect,
            shown_seq: self.shown_seq,
        }
    }
    fn save_palette_map(&mut self, path: &str) -> Result<()> {
        self.save_map(path, false)
    }
    fn save_generated_image(&mut self, path: &str) -> Result<()> {
        self.save_image(path)
    }
}

impl eframe::App for PaintApp {
    fn raw_input_hook(&mut self, _ctx: &egui::Context, raw: &mut egui::RawInput) {
        if let Some(mut rp) = self.replay.take() {
            rp.inject(raw, self);
            self.replay = Some(rp);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.poll_worker(&ctx);
        self.shortcuts(&ctx);
        // Unknown ids, recomputed when the painting changes.
        if self.unknown.0 != self.editor.revision() {
            self.unknown = (
                self.editor.revision(),
                self.palette.unknown_ids(self.editor.canvas()),
            );
        }
        // The map texture follows the painting.
        let rev = self.editor.revision();
        let (w, h) = (self.editor.canvas().w, self.editor.canvas().h);
        if self.map_tex.as_ref().is_none_or(|(_, r)| *r != rev) {
            let rgba: Vec<u8> = self.palette.colorize(self.editor.canvas()).concat();
            let img = egui::ColorImage::from_rgba_unmultiplied([w, h], &rgba);
            match &mut self.map_tex {
                Some((t, r)) => {
                    t.set(img, egui::TextureOptions::NEAREST);
                    *r = rev;
                }
                None => {
                    self.map_tex = Some((
                        ctx.load_texture("map", img, egui::TextureOptions::NEAREST),
                        rev,
                    ))
                }
            }
        }
        egui::Panel::left("side")
            .default_size(270.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("side_scroll")
                    .show(ui, |ui| self.side_panel(ui))
            });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            let area = ui.available_rect_before_wrap();
            if self.overlay {
                self.preview_rect = Some(area);
                self.canvas_ui(ui, area, true, true, true);
            } else {
                let half = area.width() / 2.0 - 4.0;
                let left = Rect::from_min_size(area.min, Vec2::new(half, area.height()));
                let right = Rect::from_min_size(
                    Pos2::new(area.max.x - half, area.min.y),
                    Vec2::new(half, area.height()),
                );
                self.preview_rect = Some(right);
                self.canvas_ui(ui, left, true, false, true);
                // The image at the same zoom/pan, read-only.
                let view = self.view;
                self.canvas_ui(ui, right, false, true, false);
                self.view = view;
            }
        });
        if self.show_help {
            self.help_window(&ctx);
        }
        self.request_render();
        self.autosave_now();
        if let Some(mut rp) = self.replay.take() {
            rp.act(&ctx, self);
            self.replay = Some(rp);
        }
    }

    fn on_exit(&mut self) {
        self.editor.end();
        self.autosave_now();
    }
}
