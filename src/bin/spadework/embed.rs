//! `spadework embed`: sentence embeddings from the built-in MiniLM encoder (the text-to-image
//! stack's frozen text encoder) or a sentence-transformers folder.
use crate::device_args::DeviceArgs;
use anyhow::{Result, bail};
use spadework::models::bert::SentenceEncoder;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Sentences to embed (one embedding per sentence).
    #[arg(required = true)]
    pub text: Vec<String>,
    /// A sentence-transformers folder (config.json, model.safetensors, tokenizer.json) instead
    /// of the built-in all-MiniLM-L6-v2.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Tokens per sentence: longer texts are truncated, shorter ones padded.
    #[arg(long, default_value_t = 128)]
    pub len: usize,
    /// Print JSON (ids, pooled embedding; with --tokens the per-token states) instead of one
    /// line of numbers per sentence.
    #[arg(long)]
    pub json: bool,
    /// With --json, include the last hidden state of every token.
    #[arg(long)]
    pub tokens: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn embed(a: EmbedArgs) -> Result<()> {
    let device = a.device.select()?;
    let enc = match &a.weights {
        Some(dir) => SentenceEncoder::from_folder(dir, &device)?,
        None => SentenceEncoder::builtin(&device)?,
    };
    let max = enc.model.cfg.max_position_embeddings;
    if a.len < 2 || a.len > max {
        bail!(
            "--len {} is outside 2..={max} (the encoder's positions)",
            a.len
        );
    }
    let mut out = Vec::new();
    let mut lines = String::new();
    for t in &a.text {
        let e = enc.encode(t, a.len)?;
        if e.truncated {
            spadework::note!(
                "note: {t:?} is longer than {} tokens and was truncated",
                a.len
            );
        }
        if a.json {
            let mut o = serde_json::json!({
                "text": t,
                "ids": enc.tokenizer.encode(t, a.len)?.ids,
                "pooled": e.pooled,
            });
            if a.tokens {
                let w = enc.model.cfg.hidden_size;
                let rows: Vec<Vec<f32>> =
                    e.tokens.to_vec()?.chunks(w).map(|r| r.to_vec()).collect();
                o["tokens"] = serde_json::json!(rows);
            }
            out.push(o);
        } else {
            let nums: Vec<String> = e.pooled.iter().map(|v| format!("{v:.7}")).collect();
            lines += &nums.join(" ");
            lines.push('\n');
        }
    }
    if a.json {
        lines = serde_json::to_string(&out)? + "\n";
    }
    std::io::stdout()
        .write_all(lines.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write to stdout: {e}"))
}
