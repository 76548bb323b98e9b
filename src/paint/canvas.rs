//! The painting itself: a label map of exact class ids, the tools that edit it (brush, line,
//! flood fill, eyedropper) and a bounded undo history. Plain Rust, no window: the paint tool's UI
//! only translates pointer input into these calls, and the tests drive them directly.
//!
//! Labels stay exact ids: the brush has hard edges (a pixel is in the stroke or not), so a saved
//! map holds only ids the user picked.
use anyhow::{Result, bail};

/// A label map of `w × h` class ids (the ids the map PNG holds, e.g. ADE20K ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pub ids: Vec<u32>,
}

impl Canvas {
    pub fn new(w: usize, h: usize, fill: u32) -> Canvas {
        Canvas {
            w,
            h,
            ids: vec![fill; w * h],
        }
    }

    pub fn from_ids(w: usize, h: usize, ids: Vec<u32>) -> Result<Canvas> {
        if w == 0 || h == 0 {
            bail!("a map must be at least 1x1 (got {w}x{h})");
        }
        if ids.len() != w * h {
            bail!("{} ids for a {w}x{h} map", ids.len());
        }
        Ok(Canvas { w, h, ids })
    }

    pub fn get(&self, x: i64, y: i64) -> Option<u32> {
        self.inside(x, y)
            .then(|| self.ids[y as usize * self.w + x as usize])
    }

    fn inside(&self, x: i64, y: i64) -> bool {
        x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h
    }
}

/// A pixel rectangle [x0, x1) × [y0, y1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Rect {
    fn union(a: Option<Rect>, b: Rect) -> Rect {
        match a {
            None => b,
            Some(a) => Rect {
                x0: a.x0.min(b.x0),
                y0: a.y0.min(b.y0),
                x1: a.x1.max(b.x1),
                y1: a.y1.max(b.y1),
            },
        }
    }
    fn area(&self) -> usize {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }
}

/// Run-length coded ids of one rectangle, where [`KEEP`] marks pixels the step leaves alone
/// (label maps are mostly runs and strokes touch few pixels of their box, so 100 undo steps
/// cost kilobytes to a few megabytes).
#[derive(Clone, Debug)]
struct Rle(Vec<(u32, u32)>);

/// Not a label id (ids are < 2^16): "this pixel is not part of the step".
const KEEP: u32 = u32::MAX;

impl Rle {
    fn push(runs: &mut Vec<(u32, u32)>, v: u32) {
        match runs.last_mut() {
            Some((id, n)) if *id == v => *n += 1,
            _ => runs.push((v, 1)),
        }
    }

    /// Every pixel of the rectangle.
    fn encode(c: &Canvas, r: Rect) -> Rle {
        let mut runs = Vec::new();
        for y in r.y0..r.y1 {
            for &v in &c.ids[y * c.w + r.x0..y * c.w + r.x1] {
                Self::push(&mut runs, v);
            }
        }
        Rle(runs)
    }

    /// The pixels of `c` where `mask` is not KEEP (KEEP elsewhere).
    fn encode_masked(c: &Canvas, r: Rect, mask: &Rle) -> Rle {
        let mut runs = Vec::new();
        mask.for_each(r, |x, y, m| {
            Self::push(&mut runs, if m == KEEP { KEEP } else { c.ids[y * c.w + x] })
        });
        Rle(runs)
    }

    /// `before` where it differs from `after`, KEEP elsewhere.
    fn encode_diff(before: &Canvas, after: &Canvas, r: Rect) -> Rle {
        let mut runs = Vec::new();
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                let (b, a) = (before.ids[y * before.w + x], after.ids[y * after.w + x]);
                Self::push(&mut runs, if a == b { KEEP } else { b });
            }
        }
        Rle(runs)
    }

    fn for_each(&self, r: Rect, mut f: impl FnMut(usize, usize, u32)) {
        let rw = r.x1 - r.x0;
        let mut i = 0usize;
        for &(v, n) in &self.0 {
            for _ in 0..n {
                f(r.x0 + i % rw, r.y0 + i / rw, v);
                i += 1;
            }
        }
        debug_assert_eq!(i, r.area());
    }

    fn decode_into(&self, c: &mut Canvas, r: Rect) {
        let w = c.w;
        self.for_each(r, |x, y, v| {
            if v != KEEP {
                c.ids[y * w + x] = v;
            }
        });
    }

    fn bytes(&self) -> usize {
        self.0.len() * 8
    }
}

/// One undo step: the content a rectangle had before the edit (after an undo: the content it
/// had before the undo), and the canvas size it belongs to (opening a map of another size is
/// undoable too).
#[derive(Clone, Debug)]
struct Step {
    size: (usize, usize),
    rect: Rect,
    content: Rle,
    label: &'static str,
}

impl Step {
    fn bytes(&self) -> usize {
        self.content.bytes() + std::mem::size_of::<Step>()
    }

    /// Puts this step's content on the canvas and returns the step that reverses it.
    fn swap(self, c: &mut Canvas) -> Step {
        if self.size != (c.w, c.h) {
            let full = Rect {
                x0: 0,
                y0: 0,
                x1: c.w,
                y1: c.h,
            };
            let back = Step {
                size: (c.w, c.h),
                rect: full,
                content: Rle::encode(c, full),
                label: self.label,
            };
            *c = Canvas::new(self.size.0, self.size.1, 0);
            self.content.decode_into(c, self.rect);
            back
        } else {
            let back = Step {
                size: self.size,
                rect: self.rect,
                content: Rle::encode_masked(c, self.rect, &self.content),
                label: self.label,
            };
            self.content.decode_into(c, self.rect);
            back
        }
    }
}

/// Undo/redo stacks with a memory bound: at most `max_steps` steps and `max_bytes` of stored
/// content; the oldest steps go first (the newest step is always kept).
pub struct History {
    undo: Vec<Step>,
    redo: Vec<Step>,
    pub max_steps: usize,
    pub max_bytes: usize,
}

impl Default for History {
    fn default() -> Self {
        History {
            undo: Vec::new(),
            redo: Vec::new(),
            max_steps: 500,
            max_bytes: 256 << 20,
        }
    }
}

impl History {
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }
    pub fn redo_len(&self) -> usize {
        self.redo.len()
    }
    pub fn bytes(&self) -> usize {
        self.undo.iter().chain(&self.redo).map(Step::bytes).sum()
    }

    fn push(&mut self, s: Step) {
        self.redo.clear();
        self.undo.push(s);
        while self.undo.len() > self.max_steps
            || (self.undo.len() > 1 && self.bytes() > self.max_bytes)
        {
            self.undo.remove(0);
        }
    }
}

/// The painting tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    Brush,
    Line,
    Fill,
    Eyedropper,
    Eraser,
}

impl Tool {
    pub const ALL: [Tool; 5] = [
        Tool::Brush,
        Tool::Line,
        Tool::Fill,
        Tool::Eyedropper,
        Tool::Eraser,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Tool::Brush => "Brush",
            Tool::Line => "Line",
            Tool::Fill => "Fill",
            Tool::Eyedropper => "Eyedropper",
            Tool::Eraser => "Eraser",
        }
    }
    pub fn key(self) -> char {
        match self {
            Tool::Brush => 'B',
            Tool::Line => 'L',
            Tool::Fill => 'F',
            Tool::Eyedropper => 'I',
            Tool::Eraser => 'E',
        }
    }
}

/// A canvas with its history. Edits happen between [`Editor::begin`] and [`Editor::end`]; one
/// begin/end pair (a whole brush stroke, a line, a fill) is one undo step.
pub struct Editor {
    canvas: Canvas,
    pub history: History,
    /// Bumped on every change of the canvas (edits, undo, redo, open): the render and autosave
    /// triggers compare it.
    revision: u64,
    open: Option<(Canvas, Option<Rect>, &'static str)>,
}

impl Editor {
    pub fn new(canvas: Canvas) -> Editor {
        Editor {
            canvas,
            history: History::default(),
            revision: 0,
            open: None,
        }
    }

    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }
    pub fn revision(&self) -> u64 {
        self.revision
    }
    pub fn in_operation(&self) -> bool {
        self.open.is_some()
    }

    /// Starts an undoable operation (a stroke, a line, a fill). An operation left open is
    /// committed first.
    pub fn begin(&mut self, label: &'static str) {
        self.end();
        self.open = Some((self.canvas.clone(), None, label));
    }

    /// Commits the open operation; returns whether it changed anything.
    pub fn end(&mut self) -> bool {
        let Some((before, dirty, label)) = self.open.take() else {
            return false;
        };
        let Some(r) = dirty else { return false };
        // Shrink the dirty box to the pixels that really changed.
        let changed =
            |x: usize, y: usize| before.ids[y * before.w + x] != self.canvas.ids[y * before.w + x];
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                if changed(x, y) {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
        }
        if x0 == usize::MAX {
            return false;
        }
        let rect = Rect { x0, y0, x1, y1 };
        self.history.push(Step {
            size: (before.w, before.h),
            rect,
            content: Rle::encode_diff(&before, &self.canvas, rect),
            label,
        });
        true
    }

    fn touch(&mut self, r: Rect) {
        self.revision += 1;
        if let Some((_, dirty, _)) = &mut self.open {
            *dirty = Some(Rect::union(*dirty, r));
        }
    }

    /// Paints the capsule of radius `radius` around the segment p0–p1 (map pixel coordinates,
    /// pixel centres at +0.5) with `id`: a pixel is painted when its centre is within the
    /// radius. A radius below 0.5 still paints the pixels the segment passes through.
    pub fn stroke(&mut self, p0: (f32, f32), p1: (f32, f32), radius: f32, id: u32) {
        let r = radius.max(0.5);
        let c = &mut self.canvas;
        let xmin = ((p0.0.min(p1.0) - r).floor().max(0.0)) as usize;
        let ymin = ((p0.1.min(p1.1) - r).floor().max(0.0)) as usize;
        let xmax = ((p0.0.max(p1.0) + r).ceil().max(0.0) as usize).min(c.w);
        let ymax = ((p0.1.max(p1.1) + r).ceil().max(0.0) as usize).min(c.h);
        if xmin >= xmax || ymin >= ymax {
            return;
        }
        let (dx, dy) = (p1.0 - p0.0, p1.1 - p0.1);
        let len2 = dx * dx + dy * dy;
        let mut any = false;
        for y in ymin..ymax {
            for x in xmin..xmax {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let t = if len2 > 0.0 {
                    (((px - p0.0) * dx + (py - p0.1) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (p0.0 + t * dx - px, p0.1 + t * dy - py);
                // Chebyshev test for thin strokes so a 1-px line has no gaps; Euclidean otherwise.
                let inside = if radius < 1.0 {
                    qx.abs() <= 0.5 && qy.abs() <= 0.5
                } else {
                    qx * qx + qy * qy <= r * r
                };
                if inside {
                    c.ids[y * c.w + x] = id;
                    any = true;
                }
            }
        }
        if any {
            self.touch(Rect {
                x0: xmin,
                y0: ymin,
                x1: xmax,
                y1: ymax,
            });
        }
    }

    /// Flood-fills the 4-connected region of equal ids around (x, y) with `id`; returns the
    /// number of pixels changed.
    pub fn fill(&mut self, x: i64, y: i64, id: u32) -> usize {
        let c = &mut self.canvas;
        let Some(target) = c.get(x, y) else { return 0 };
        if target == id {
            return 0;
        }
        let (w, h) = (c.w, c.h);
        let mut stack = vec![(x as usize, y as usize)];
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        let mut n = 0;
        // Scanline fill: paint a whole run, then queue the runs above and below.
        while let Some((sx, sy)) = stack.pop() {
            if c.ids[sy * w + sx] != target {
                continue;
            }
            let mut l = sx;
            while l > 0 && c.ids[sy * w + l - 1] == target {
                l -= 1;
            }
            let mut r = sx;
            while r + 1 < w && c.ids[sy * w + r + 1] == target {
                r += 1;
            }
            for xx in l..=r {
                c.ids[sy * w + xx] = id;
            }
            n += r - l + 1;
            x0 = x0.min(l);
            x1 = x1.max(r + 1);
            y0 = y0.min(sy);
            y1 = y1.max(sy + 1);
            for ny in [sy.wrapping_sub(1), sy + 1] {
                if ny >= h {
                    continue;
                }
                let mut xx = l;
                while xx <= r {
                    if c.ids[ny * w + xx] == target {
                        stack.push((xx, ny));
                        while xx <= r && c.ids[ny * w + xx] == target {
                            xx += 1;
                        }
                    } else {
                        xx += 1;
                    }
                }
            }
        }
        if n > 0 {
            self.touch(Rect { x0, y0, x1, y1 });
        }
        n
    }

    /// The id under (x, y), if inside the map.
    pub fn pick(&self, x: i64, y: i64) -> Option<u32> {
        self.canvas.get(x, y)
    }

    /// Replaces the whole canvas (opening a map); undoable.
    pub fn replace(&mut self, canvas: Canvas, label: &'static str) {
        self.end();
        let old = std::mem::replace(&mut self.canvas, canvas);
        let full = Rect {
            x0: 0,
            y0: 0,
            x1: old.w,
            y1: old.h,
        };
        if old != self.canvas {
            self.history.push(Step {
                size: (old.w, old.h),
                rect: full,
                content: Rle::encode(&old, full),
                label,
            });
            self.revision += 1;
        }
    }

    /// Undoes the last step; returns its label, or None when there is nothing to undo.
    pub fn undo(&mut self) -> Option<&'static str> {
        self.end();
        let s = self.history.undo.pop()?;
        let label = s.label;
        let back = s.swap(&mut self.canvas);
        self.history.redo.push(back);
        self.revision += 1;
        Some(label)
    }

    pub fn redo(&mut self) -> Option<&'static str> {
        self.end();
        let s = self.history.redo.pop()?;
        let label = s.label;
        let back = s.swap(&mut self.canvas);
        self.history.undo.push(back);
        self.revision += 1;
        Some(label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed(w: usize, h: usize) -> Editor {
        Editor::new(Canvas::new(w, h, 3))
    }

    #[test]
    fn a_stroke_paints_a_hard_edged_capsule_and_nothing_else() {
        let mut e = ed(40, 30);
        e.begin("brush");
        e.stroke((10.0, 10.0), (30.0, 10.0), 3.0, 5);
        assert!(e.end());
        let c = e.canvas();
        for y in 0..30 {
            for x in 0..40 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let cx = px.clamp(10.0, 30.0);
                let inside = (px - cx).powi(2) + (py - 10.0).powi(2) <= 9.0;
                assert_eq!(c.ids[y * 40 + x], if inside { 5 } else { 3 }, "({x},{y})");
            }
        }
        // Only the two ids exist: hard edges.
        assert!(c.ids.iter().all(|&v| v == 3 || v == 5));
    }

    #[test]
    fn thin_diagonal_lines_have_no_gaps() {
        let mut e = ed(50, 50);
        e.begin("line");
        e.stroke((0.5, 0.5), (49.5, 37.5), 0.0, 7);
        e.end();
        // Every column is touched, and the painted pixels of consecutive columns connect.
        let c = e.canvas();
        let mut prev: Option<Vec<usize>> = None;
        for x in 0..50 {
            let ys: Vec<usize> = (0..50).filter(|&y| c.ids[y * 50 + x] == 7).collect();
            assert!(!ys.is_empty(), "column {x} empty");
            if let Some(p) = &prev {
                assert!(ys.iter().any(|y| p.iter().any(|q| y.abs_diff(*q) <= 1)));
            }
            prev = Some(ys);
        }
    }

    #[test]
    fn strokes_clip_at_the_border() {
        let mut e = ed(8, 8);
        e.begin("brush");
        e.stroke((-20.0, -20.0), (-10.0, -3.0), 2.0, 9);
        assert!(!e.end(), "a stroke outside the map changes nothing");
        e.begin("brush");
        e.stroke((-1.0, 4.0), (100.0, 4.0), 1.0, 9);
        assert!(e.end());
        assert!((0..8).all(|x| e.canvas().ids[4 * 8 + x] == 9));
    }

    #[test]
    fn fill_is_four_connected_and_exact() {
        // A ring of 1 inside a field of 0: filling outside must not leak into the ring's inside.
        let w = 9;
        let mut ids = vec![0u32; w * w];
        for i in 2..7 {
            for j in [2, 6] {
                ids[i * w + j] = 1;
                ids[j * w + i] = 1;
            }
        }
        // A diagonal gap does not connect 4-neighbourhoods.
        ids[2 * w + 2] = 0;
        let mut e = Editor::new(Canvas::from_ids(w, w, ids.clone()).unwrap());
        e.begin("fill");
        let n = e.fill(0, 0, 4);
        assert!(e.end());
        let c = e.canvas();
        assert_eq!(c.ids[4 * w + 4], 0, "inside of the ring untouched");
        assert_eq!(c.ids[0], 4);
        assert_eq!(n, ids.iter().filter(|&&v| v == 0).count() - 9);
        assert_eq!(e.fill(0, 0, 4), 0, "filling with the same id is a no-op");
        assert_eq!(e.fill(-1, 0, 4), 0);
    }

    #[test]
    fn undo_redo_restore_exact_states_including_size_changes() {
        let mut e = ed(16, 12);
        let mut states = vec![e.canvas().clone()];
        for k in 0..6u32 {
            e.begin("brush");
            e.stroke((k as f32 * 2.0, 1.0), (15.0 - k as f32, 11.0), 1.5, 10 + k);
            e.end();
            states.push(e.canvas().clone());
        }
        e.begin("fill");
        e.fill(0, 11, 99);
        e.end();
        states.push(e.canvas().clone());
        e.replace(Canvas::new(5, 7, 1), "open");
        states.push(e.canvas().clone());
        let n = states.len();
        for i in (0..n - 1).rev() {
            assert!(e.undo().is_some());
            assert_eq!(e.canvas(), &states[i], "undo to state {i}");
        }
        assert!(e.undo().is_none());
        for (i, state) in states.iter().enumerate().skip(1) {
            assert!(e.redo().is_some());
            assert_eq!(e.canvas(), state, "redo to state {i}");
        }
        assert!(e.redo().is_none());
        // A new edit after an undo drops the redo branch.
        e.undo();
        e.begin("brush");
        e.stroke((1.0, 1.0), (2.0, 2.0), 1.0, 42);
        e.end();
        assert_eq!(e.history.redo_len(), 0);
    }

    #[test]
    fn history_keeps_at_least_100_steps_within_its_memory_bound() {
        let mut e = ed(256, 256);
        e.history.max_bytes = 1 << 20;
        for k in 0..150u32 {
            e.begin("fill");
            e.fill(0, 0, k % 2 + 100);
            e.end();
            e.begin("brush");
            e.stroke((k as f32, 0.0), (255.0 - k as f32, 255.0), 4.0, k % 7);
            e.end();
        }
        assert!(e.history.undo_len() >= 100, "{}", e.history.undo_len());
        assert!(e.history.bytes() <= 1 << 20);
        // A tight bound evicts the oldest steps but keeps the newest.
        e.history.max_bytes = 2000;
        e.begin("brush");
        e.stroke((3.0, 3.0), (200.0, 100.0), 9.0, 1);
        e.end();
        assert!(e.history.undo_len() == 1 || e.history.bytes() <= 2000);
        assert!(e.history.undo_len() >= 1);
        let before_undo = e.canvas().clone();
        e.undo();
        assert_ne!(e.canvas(), &before_undo);
    }

    #[test]
    fn revision_counts_changes_only() {
        let mut e = ed(4, 4);
        let r0 = e.revision();
        e.begin("fill");
        e.fill(0, 0, 3);
        e.end();
        assert_eq!(e.revision(), r0, "no-op fill");
        e.begin("fill");
        e.fill(0, 0, 8);
        e.end();
        assert!(e.revision() > r0);
        assert_eq!(e.pick(2, 2), Some(8));
        assert_eq!(e.pick(4, 0), None);
    }
}
