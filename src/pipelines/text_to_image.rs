//! The built-in text-to-image stack, no download: a sentence → the frozen MiniLM encoder → the
//! layout cascade (a 128² segmentation map in ADE20K ids, [`super::layout_diffusion`]) → the
//! built-in SPADE landscape model renders it. The layout is a map like any other: `render` and
//! `paint --map` open it.
use super::layout_diffusion::{LayoutCascade, LayoutParams};
use super::spade::{SpadePipeline, ZSource};
use crate::backend::{Device, WeightStorage};
use crate::io::map_png::{MapImage, Pixels};
use crate::models::bert::SentenceEncoder;
use crate::models::spade::input;
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct TextToImage {
    pub encoder: SentenceEncoder,
    pub cascade: LayoutCascade,
    pub spade: SpadePipeline,
}

/// Wall-clock time per stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    pub text: Duration,
    pub layout: Duration,
    pub render: Duration,
}

pub struct TextToImageOutput {
    /// The layout, `size`² ADE20K ids, row-major.
    pub labels: Vec<u32>,
    pub size: usize,
    /// The rendered image `[3, h, w]` in [-1, 1] (before quantisation).
    pub image: Vec<f32>,
    pub image_size: (usize, usize),
    pub times: StageTimes,
    /// Whether the prompt lost tokens to the encoder's length.
    pub truncated: bool,
}

impl TextToImage {
    /// MiniLM, the layout cascade and the landscape model, all compiled into the binary.
    pub fn builtin(device: &Device, storage: WeightStorage) -> Result<TextToImage> {
        Self::builtin_parts(device, storage, None)
    }

    /// The built-in stack with the layout cascade from `layout_model` (a tools/train_layout.py
    /// export folder) when given.
    pub fn builtin_parts(
        device: &Device,
        storage: WeightStorage,
        layout_model: Option<&Path>,
    ) -> Result<TextToImage> {
        let store = super::spade::load_store(None)?;
        let cascade = match layout_model {
            Some(dir) => LayoutCascade::from_folder(dir, device)?,
            None => LayoutCascade::builtin(device)?,
        };
        Ok(TextToImage {
            encoder: SentenceEncoder::builtin(device)?,
            cascade,
            spade: SpadePipeline::from_store(&store, device, storage)?,
        })
    }

    /// The UNet steps a run makes (for a progress bar).
    pub fn unet_steps(&self, p: &LayoutParams) -> usize {
        p.steps * if p.base_only { 1 } else { 2 }
    }

    /// `prompt` → layout → image, from `seed` (the layout's noise and the style z).
    pub fn generate(
        &self,
        prompt: &str,
        p: &LayoutParams,
        seed: u64,
        progress: &mut dyn FnMut(),
    ) -> Result<TextToImageOutput> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let len = self.cascade.meta.tokens;
        let text = self.encoder.encode(prompt, len)?;
        let empty = self.encoder.encode("", len)?;
        let text_c = self.cascade.text_cond(&text.tokens, &text.pooled)?;
        let empty_c = self.cascade.text_cond(&empty.tokens, &empty.pooled)?;
        times.text = t.elapsed();

        let t = Instant::now();
        let noise = self.cascade.noise(seed)?;
        let layout = self
            .cascade
            .generate(&text_c, &empty_c, p, &noise, progress)?;
        times.layout = t.elapsed();

        let t = Instant::now();
        let map = MapImage {
            width: layout.size,
            height: layout.size,
            pixels: Pixels::Ids(layout.labels.clone()),
        };
        let prepared = input::prepare(&self.spade.cfg, &map, "the generated layout", None, None)?;
        let (image, image_size) = self.spade.render(&prepared, Some(&ZSource::Seed(seed)))?;
        times.render = t.elapsed();
        Ok(TextToImageOutput {
            labels: layout.labels,
            size: layout.size,
            image,
            image_size,
            times,
            truncated: text.truncated,
        })
    }
}
