//! The CLIP tokenizer (byte-level BPE), as Stable Diffusion pipelines tokenize prompts: NFC,
//! whitespace runs → one space, lower case; CLIP's pre-tokenizer regex (contractions, letter runs,
//! single digits, punctuation runs); byte-level units; BPE with `</w>` marking word ends;
//! `<|startoftext|>` … `<|endoftext|>`; 77 tokens, truncated (keeping the end token) and padded
//! with the folder's pad token (`<|endoftext|>` for SD 1.x, `!` for SD 2.x).
//!
//! Read from a diffusers folder's `tokenizer/` (`tokenizer.json`, or `vocab.json` + `merges.txt`
//! with `special_tokens_map.json` / `tokenizer_config.json` for the pad token), or built from
//! OpenAI's merges file (`bpe_simple_vocab_16e6.txt.gz`, shipped in `assets/clip/`) with the
//! vocabulary derived from it as OpenAI's tokenizer does. The `tokenizers` crate runs it.
use crate::models::hf_tokenizer as hf;
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

/// The tokens a CLIP text encoder takes.
pub const MAX_TOKENS: usize = 77;
pub const BOS: &str = "<|startoftext|>";
pub const EOS: &str = "<|endoftext|>";
/// Tokens of every released CLIP text encoder: 512 byte units, 48,894 merges, BOS and EOS.
pub const CLIP_VOCAB: usize = 49408;

/// CLIP's pre-tokenizer pattern (OpenAI `SimpleTokenizer.pat`, with the special tokens kept whole).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A prompt's token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Tokens {
    /// Exactly [`MAX_TOKENS`] ids: BOS, the prompt, EOS, then padding.
    pub ids: Vec<u32>,
    /// The prompt's length in tokens (BOS and EOS included) before truncation.
    pub untruncated: usize,
}

impl Tokens {
    /// Whether the prompt lost tokens to the 77-token limit.
    pub fn truncated(&self) -> bool {
        self.untruncated > MAX_TOKENS
    }
}

pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    /// Where it came from, for messages.
    pub source: String,
}

impl ClipTokenizer {
    /// A diffusers folder's `tokenizer/`: `tokenizer.json` if present, else `vocab.json` +
    /// `merges.txt`; the pad token from `special_tokens_map.json` or `tokenizer_config.json`
    /// (`<|endoftext|>` when neither names one).
    pub fn from_folder(dir: &Path) -> Result<ClipTokenizer> {
        let pad = pad_token(dir)?;
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_tokenizer_json(&json, &pad);
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if vocab.exists() && merges.exists() {
            return Self::from_vocab_merges(&vocab, &merges, &pad);
        }
        bail!(
            "{}: not a CLIP tokenizer folder (expected tokenizer.json, or vocab.json and merges.txt)",
            dir.display()
        )
    }

    /// A `tokenizer.json` (Hugging Face tokenizers format), padded with `pad`.
    pub fn from_tokenizer_json(path: &Path, pad: &str) -> Result<ClipTokenizer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json_text(&text, pad, &path.display().to_string())
    }

    /// `vocab.json` (token → id) and `merges.txt` (a `#version` line, then one merge per line).
    pub fn from_vocab_merges(vocab: &Path, merges: &Path, pad: &str) -> Result<ClipTokenizer> {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(vocab)
                .with_context(|| format!("cannot read {}", vocab.display()))?,
        )
        .with_context(|| format!("{}: expected a JSON object of token ids", vocab.display()))?;
        let m = std::fs::read_to_string(merges)
            .with_context(|| format!("cannot read {}", merges.display()))?;
        let pairs = m
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| merge_pair(l, merges))
            .collect::<Result<Vec<_>>>()?;
        let json = tokenizer_json(serde_json::Value::Object(v), &pairs);
        Self::from_json_text(&json, pad, &vocab.display().to_string())
    }

    /// OpenAI's merges file (`bpe_simple_vocab_16e6.txt`, gzipped or not): the first 48,894
    /// merges after its header line; the vocabulary is the 256 byte units, the same with `</w>`,
    /// one token per merge, then BOS and EOS (49,408 ids).
    pub fn from_openai_bpe(path: &Path, pad: &str) -> Result<ClipTokenizer> {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_openai_bytes(&raw, CLIP_VOCAB, pad, &path.display().to_string())
    }

    /// CLIP's tokenizer from the OpenAI merges compiled into the binary
    /// (`assets/clip/bpe_simple_vocab_16e6.txt.gz`, from open-clip-torch, MIT), for a text
    /// encoder with `vocab_size` tokens: 49,408 for every released CLIP; a smaller vocabulary
    /// keeps the first `vocab_size − 514` merges (then BOS and EOS), as tiny test models do.
    pub fn bundled(vocab_size: usize, pad: &str) -> Result<ClipTokenizer> {
        static BPE: &[u8] = include_bytes!("../../../assets/clip/bpe_simple_vocab_16e6.txt.gz");
        Self::from_openai_bytes(BPE, vocab_size, pad, "the bundled CLIP merges")
    }

    fn from_openai_bytes(
        raw: &[u8],
        vocab_size: usize,
        pad: &str,
        source: &str,
    ) -> Result<ClipTokenizer> {
        let text = hf::text_of(raw, source)?;
        const FIXED: usize = 512 + 2;
        if !(FIXED..=CLIP_VOCAB).contains(&vocab_size) {
            bail!(
                "a CLIP vocabulary of {vocab_size} tokens: the OpenAI merges give {FIXED} to \
                 {CLIP_VOCAB} (512 byte units, the merges, BOS and EOS)"
            );
        }
        let merges = vocab_size - FIXED;
        let path = Path::new(source);
        let pairs: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(merges)
            .map(|l| merge_pair(l, path))
            .collect::<Result<_>>()?;
        if pairs.len() != merges {
            bail!(
                "{source}: {} merges, the vocabulary needs {merges}",
                pairs.len()
            );
        }
        let units = byte_units();
        let mut vocab: Vec<String> = units.iter().map(|c| c.to_string()).collect();
        vocab.extend(units.iter().map(|c| format!("{c}</w>")));
        vocab.extend(pairs.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push(BOS.into());
        vocab.push(EOS.into());
        let map: serde_json::Map<String, serde_json::Value> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, serde_json::Value::from(i)))
            .collect();
        let json = tokenizer_json(serde_json::Value::Object(map), &pairs);
        Self::from_json_text(&json, pad, source)
    }

    fn from_json_text(text: &str, pad: &str, source: &str) -> Result<ClipTokenizer> {
        // BOS/EOS, truncation and padding are applied by `encode`, whatever the file sets.
        let mut inner = hf::parse_bare(text, source)?;
        // transformers registers the pad token as a special token: SD 2.x's `!` then always
        // stands alone ("wow!!!" is `wow` + three `!`), never merged into a punctuation run.
        if pad != BOS && pad != EOS {
            inner.add_special_tokens(&[tokenizers::AddedToken::from(pad.to_string(), true)]);
        }
        let id = |t: &str| hf::token_id(&inner, t, source);
        Ok(ClipTokenizer {
            bos: id(BOS)?,
            eos: id(EOS)?,
            pad: id(pad)?,
            source: source.to_string(),
            inner,
        })
    }

    /// The ids of `text` without BOS/EOS, truncation or padding.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        hf::encode_raw(&self.inner, text, &self.source)
    }

    /// BOS + `text` + EOS, truncated to [`MAX_TOKENS`] (the end token kept) and padded.
    pub fn encode(&self, text: &str) -> Result<Tokens> {
        let body = self.encode_raw(text)?;
        let untruncated = body.len() + 2;
        let mut ids = Vec::with_capacity(MAX_TOKENS);
        ids.push(self.bos);
        ids.extend(body.iter().take(MAX_TOKENS - 2));
        ids.push(self.eos);
        ids.resize(MAX_TOKENS, self.pad);
        Ok(Tokens { ids, untruncated })
    }
}

/// One merges-file line, `a b`, as the pair it merges (`file` names it in errors).
fn merge_pair(line: &str, file: &Path) -> Result<(String, String)> {
    line.split_once(' ')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| anyhow!("{}: merge line '{line}' is not 'a b'", file.display()))
}

/// OpenAI's `bytes_to_unicode`: each byte as a printable character (printable Latin-1 bytes as
/// themselves, the others as U+0100 onwards), in the order the vocabulary lists them.
fn byte_units() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut units: Vec<char> = (0..256u32)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32)
        .collect();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable(b) {
            units.push(char::from_u32(256 + n).expect("U+0100.. are chars"));
            n += 1;
        }
    }
    units
}

/// The pad token a tokenizer folder names (`special_tokens_map.json`, else
/// `tokenizer_config.json`; a string or `{"content": …}`), else `<|endoftext|>`.
fn pad_token(dir: &Path) -> Result<String> {
    for f in ["special_tokens_map.json", "tokenizer_config.json"] {
        let p = dir.join(f);
        if !p.exists() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{}: not JSON", p.display()))?;
        match &v["pad_token"] {
            serde_json::Value::String(s) => return Ok(s.clone()),
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::String(s)) = o.get("content") {
                    return Ok(s.clone());
                }
            }
            _ => {}
        }
    }
    Ok(EOS.into())
}

/// A CLIP `tokenizer.json` for `vocab` and `merges`: the pipeline transformers' CLIPTokenizer
/// writes (normalizer, pre-tokenizer, BPE model, byte-level decoder); BOS/EOS, truncation and
/// padding are applied by [`ClipTokenizer::encode`].
fn tokenizer_json(vocab: serde_json::Value, merges: &[(String, String)]) -> String {
    let merges: Vec<[&str; 2]> = merges
        .iter()
        .map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    let special = |id: &serde_json::Value, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let (bos, eos) = (vocab[BOS].clone(), vocab[EOS].clone());
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(&bos, BOS), special(&eos, EOS)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_PATTERN}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": EOS, "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges},
    })
    .to_string()
}
