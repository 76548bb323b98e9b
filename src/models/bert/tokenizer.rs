//! BERT's WordPiece tokenizer as transformers' `BertTokenizerFast` runs it (`tokenizer.json`:
//! BertNormalizer lower-casing, BertPreTokenizer, WordPiece with `##` continuations), with
//! `[CLS]` … `[SEP]` and padding to a fixed length applied here, whatever the file sets.
use crate::models::hf_tokenizer as hf;
use anyhow::{Context, Result, bail};

pub struct WordPieceTokenizer {
    inner: tokenizers::Tokenizer,
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
    /// Where it came from, for messages.
    pub source: String,
}

/// A sentence's tokens at a fixed length.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoding {
    /// `[CLS]`, the text, `[SEP]`, then `[PAD]` up to the requested length.
    pub ids: Vec<u32>,
    /// True for `[CLS]`, the text and `[SEP]`; false for padding.
    pub mask: Vec<bool>,
    /// The text's length in tokens (with `[CLS]` and `[SEP]`) before truncation.
    pub untruncated: usize,
}

impl Encoding {
    pub fn truncated(&self) -> bool {
        self.untruncated > self.ids.len()
    }
}

impl WordPieceTokenizer {
    /// A `tokenizer.json` (Hugging Face tokenizers format), plain or gzipped.
    pub fn from_bytes(raw: &[u8], source: &str) -> Result<WordPieceTokenizer> {
        let inner = hf::parse_bare(&hf::text_of(raw, source)?, source)?;
        let id = |t: &str| hf::token_id(&inner, t, source);
        Ok(WordPieceTokenizer {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            source: source.to_string(),
            inner,
        })
    }

    pub fn from_file(path: &std::path::Path) -> Result<WordPieceTokenizer> {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(&raw, &path.display().to_string())
    }

    /// The word pieces of `text` without special tokens.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        hf::encode_raw(&self.inner, text, &self.source)
    }

    /// `[CLS]` + `text` + `[SEP]` in exactly `len` tokens: truncated (keeping `[SEP]`) or padded,
    /// as `tokenizer(text, padding="max_length", truncation=True, max_length=len)`.
    pub fn encode(&self, text: &str, len: usize) -> Result<Encoding> {
        if len < 2 {
            bail!("a BERT encoding needs room for [CLS] and [SEP], got a length of {len}");
        }
        let body = self.encode_raw(text)?;
        let untruncated = body.len() + 2;
        let mut ids = Vec::with_capacity(len);
        ids.push(self.cls);
        ids.extend(body.iter().take(len - 2));
        ids.push(self.sep);
        let real = ids.len();
        ids.resize(len, self.pad);
        let mask = (0..len).map(|i| i < real).collect();
        Ok(Encoding {
            ids,
            mask,
            untruncated,
        })
    }
}
