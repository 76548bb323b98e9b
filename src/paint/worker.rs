//! Rendering off the UI thread. The UI sends numbered requests; the worker always takes the
//! newest one waiting (older queued requests are skipped), and a render that finishes after a
//! newer request arrived is dropped instead of shown. Errors and panics come back as events, so a
//! failed render never takes the painting with it.
use super::canvas::Canvas;
use crate::io::map_png::{MapImage, Pixels};
use crate::models::spade::input as labels;
use crate::pipelines::spade::{SpadePipeline, ZSource};
use anyhow::{Result, bail};
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::Instant;

/// Where the VAE's z comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Style {
    Seed(u64),
    /// A style image, encoded by the model's style encoder (z = mu, as `render --style`).
    Image(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Request {
    pub seq: u64,
    pub canvas: Arc<Canvas>,
    pub style: Style,
    /// The id unknown labels are rendered as (they stay in the painting).
    pub unknown_as: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Rendered {
    pub seq: u64,
    pub rgb: Vec<u8>,
    pub w: usize,
    pub h: usize,
    pub ms: f64,
}

#[derive(Debug)]
pub enum Event {
    /// The model is loaded; the string names the device ([`Renderer::describe`]).
    Ready(String),
    /// Loading the model failed; every later request fails with this message.
    LoadFailed(String),
    Done(Rendered),
    Failed {
        seq: u64,
        error: String,
    },
    /// A finished render that a newer request made stale.
    Dropped {
        seq: u64,
    },
}

/// Anything that turns a painting into an RGB8 image.
pub trait Renderer {
    fn render(&mut self, req: &Request) -> Result<(Vec<u8>, usize, usize)>;
    /// What it runs on, for the status bar.
    fn describe(&self) -> String {
        String::new()
    }
}

pub struct Worker {
    tx: Option<Sender<Request>>,
    rx: Receiver<Event>,
    latest: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread; `make` builds the renderer on that thread (GPU contexts and
    /// models stay on it), `notify` is called after every event (e.g. to wake the UI).
    pub fn spawn<F>(make: F, notify: Box<dyn Fn() + Send>) -> Worker
    where
        F: FnOnce() -> Result<Box<dyn Renderer>> + Send + 'static,
    {
        let (tx, rx_req) = channel::<Request>();
        let (tx_ev, rx) = channel::<Event>();
        let latest = Arc::new(AtomicU64::new(0));
        let latest_w = latest.clone();
        let handle = std::thread::Builder::new()
            .name("spadework-render".into())
            .spawn(move || {
                let send = |e: Event| {
                    let _ = tx_ev.send(e);
                    notify();
                };
                let mut renderer = match catch_unwind(AssertUnwindSafe(make)) {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        let msg = format!("{e:#}");
                        send(Event::LoadFailed(msg.clone()));
                        while let Ok(req) = rx_req.recv() {
                            send(Event::Failed {
                                seq: req.seq,
                                error: msg.clone(),
                            });
                        }
                        return;
                    }
                    Err(p) => {
                        send(Event::LoadFailed(panic_text(&*p)));
                        return;
                    }
                };
                send(Event::Ready(renderer.describe()));
                while let Ok(mut req) = rx_req.recv() {
                    // Latest wins: skip everything but the newest queued request.
                    loop {
                        match rx_req.try_recv() {
                            Ok(newer) => req = newer,
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => return,
                        }
                    }
                    let t = Instant::now();
                    let res = catch_unwind(AssertUnwindSafe(|| renderer.render(&req)));
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    if latest_w.load(Ordering::SeqCst) > req.seq {
                        send(Event::Dropped { seq: req.seq });
                        continue;
                    }
                    send(match res {
                        Ok(Ok((rgb, w, h))) => Event::Done(Rendered {
                            seq: req.seq,
                            rgb,
                            w,
                            h,
                            ms,
                        }),
                        Ok(Err(e)) => Event::Failed {
                            seq: req.seq,
                            error: format!("{e:#}"),
                        },
                        Err(p) => Event::Failed {
                            seq: req.seq,
                            error: format!("the renderer crashed: {}", panic_text(&*p)),
                        },
                    });
                }
            })
            .expect("spawning the render thread");
        Worker {
            tx: Some(tx),
            rx,
            latest,
            handle: Some(handle),
        }
    }

    /// Queues a request; it supersedes every earlier one.
    pub fn request(&self, req: Request) {
        self.latest.fetch_max(req.seq, Ordering::SeqCst);
        if let Some(tx) = &self.tx {
            let _ = tx.send(req);
        }
    }

    /// Events that arrived since the last call.
    pub fn poll(&self) -> Vec<Event> {
        self.rx.try_iter().collect()
    }

    /// Blocks for the next event (tests, replay).
    pub fn wait(&self, timeout: std::time::Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tx.take();
        // The thread ends after its current render; don't block the UI on it.
        self.handle.take();
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The SPADE model as a [`Renderer`]: the painting goes through the same `prepare` as
/// `spadework render` (so the preview equals what the CLI renders from the saved map).
pub struct ModelRenderer {
    pub model: SpadePipeline,
    known: HashSet<u32>,
    style_cache: Option<(PathBuf, Vec<f32>)>,
    /// The texture field's seed (texture-field models): fixed for the painting, so a new style
    /// changes z only and reuses the cached γ/β, and the grain stays put while one paints.
    field_seed: u64,
}

impl ModelRenderer {
    pub fn new(model: SpadePipeline, field_seed: u64) -> ModelRenderer {
        // Strokes change a small part of the map and styles change z only: keep γ/β.
        model.generator.set_gamma_beta_cache(true);
        let known = super::files::Palette::for_model(&model.cfg)
            .classes
            .iter()
            .map(|c| c.id)
            .collect();
        ModelRenderer {
            model,
            known,
            style_cache: None,
            field_seed,
        }
    }
}

impl Renderer for ModelRenderer {
    fn describe(&self) -> String {
        self.model.device.describe()
    }

    fn render(&mut self, req: &Request) -> Result<(Vec<u8>, usize, usize)> {
        let c = &req.canvas;
        let ids: Vec<u32> = match req.unknown_as {
            Some(f) => c
                .ids
                .iter()
                .map(|&v| if self.known.contains(&v) { v } else { f })
                .collect(),
            None => c.ids.clone(),
        };
        let map = MapImage {
            width: c.w,
            height: c.h,
            pixels: Pixels::Ids(ids),
        };
        let prepared = labels::prepare(&self.model.cfg, &map, "the painting", None, None)?;
        let z = if !self.model.cfg.use_vae {
            None
        } else {
            Some(match &req.style {
                Style::Seed(s) => ZSource::Seed(*s),
                Style::Image(p) => {
                    if self.style_cache.as_ref().is_none_or(|(q, _)| q != p) {
                        let (mu, _) = self.model.encode_style(p)?;
                        self.style_cache = Some((p.clone(), mu));
                    }
                    ZSource::Given(self.style_cache.as_ref().unwrap().1.clone())
                }
            })
        };
        if !self.model.cfg.use_vae && matches!(req.style, Style::Image(_)) {
            bail!("this model has no style input (not a VAE generator)");
        }
        let (out, (h, w)) = self
            .model
            .render_seeded(&prepared, z.as_ref(), self.field_seed)?;
        Ok((crate::io::image::to_rgb8(&out, h, w), w, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A renderer that takes `delay` and paints the request's generation number.
    struct Slow {
        delay: Duration,
        fail_on: u64,
    }
    impl Renderer for Slow {
        fn render(&mut self, req: &Request) -> Result<(Vec<u8>, usize, usize)> {
            std::thread::sleep(self.delay);
            if req.seq == self.fail_on {
                bail!("device lost (simulated)");
            }
            if req.seq == self.fail_on + 1 {
                panic!("simulated crash");
            }
            Ok((vec![req.seq as u8; 3], 1, 1))
        }
    }

    fn req(seq: u64) -> Request {
        Request {
            seq,
            canvas: Arc::new(Canvas::new(1, 1, 0)),
            style: Style::Seed(0),
            unknown_as: None,
        }
    }

    fn next(w: &Worker) -> Event {
        w.wait(Duration::from_secs(10)).expect("an event")
    }

    #[test]
    fn latest_request_wins_and_stale_renders_are_dropped() {
        let w = Worker::spawn(
            || {
                Ok(Box::new(Slow {
                    delay: Duration::from_millis(150),
                    fail_on: 1000,
                }) as Box<dyn Renderer>)
            },
            Box::new(|| {}),
        );
        assert!(matches!(next(&w), Event::Ready(_)));
        w.request(req(1));
        std::thread::sleep(Duration::from_millis(30)); // 1 is rendering now
        for g in 2..=5 {
            w.request(req(g));
        }
        // 1 finishes after newer requests came in: dropped. 2-4 are skipped; 5 is shown.
        assert!(matches!(next(&w), Event::Dropped { seq: 1 }));
        match next(&w) {
            Event::Done(r) => assert_eq!((r.seq, r.rgb[0]), (5, 5)),
            e => panic!("{e:?}"),
        }
        assert!(w.wait(Duration::from_millis(400)).is_none(), "nothing else");
    }

    #[test]
    fn errors_and_panics_come_back_as_events_and_the_worker_lives_on() {
        let w = Worker::spawn(
            || {
                Ok(Box::new(Slow {
                    delay: Duration::from_millis(1),
                    fail_on: 2,
                }) as Box<dyn Renderer>)
            },
            Box::new(|| {}),
        );
        assert!(matches!(next(&w), Event::Ready(_)));
        for g in 2..=4 {
            w.request(req(g));
            let e = next(&w);
            match (g, e) {
                (2, Event::Failed { error, .. }) => assert!(error.contains("device lost")),
                (3, Event::Failed { error, .. }) => assert!(error.contains("crashed")),
                (4, Event::Done(r)) => assert_eq!(r.seq, 4),
                (g, e) => panic!("seq {g}: {e:?}"),
            }
        }
    }

    #[test]
    fn a_model_that_fails_to_load_fails_every_request_with_its_reason() {
        let w = Worker::spawn(
            || bail!("weights.safetensors: missing tensor fc.weight"),
            Box::new(|| {}),
        );
        assert!(matches!(next(&w), Event::LoadFailed(m) if m.contains("fc.weight")));
        w.request(req(1));
        assert!(matches!(next(&w), Event::Failed { seq: 1, error } if error.contains("fc.weight")));
    }
}
