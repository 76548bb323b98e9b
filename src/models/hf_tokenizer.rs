//! What the CLIP and BERT tokenizers share: reading a Hugging Face `tokenizer.json` (plain or
//! gzipped) into a `tokenizers::Tokenizer` stripped of its padding, truncation and
//! post-processor (each model applies its own special tokens and length), looking up tokens, and
//! encoding without special tokens.
use anyhow::{Context, Result, anyhow};
use std::io::Read;

/// `raw` as text: gunzipped when it starts with the gzip magic, else UTF-8.
pub fn text_of(raw: &[u8], source: &str) -> Result<String> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_string(&mut s)
            .with_context(|| format!("{source}: not a readable gzip file"))?;
        Ok(s)
    } else {
        String::from_utf8(raw.to_vec()).with_context(|| format!("{source}: not UTF-8"))
    }
}

/// A `tokenizer.json`'s text as a tokenizer without padding, truncation or post-processor.
pub fn parse_bare(text: &str, source: &str) -> Result<tokenizers::Tokenizer> {
    let mut inner: tokenizers::Tokenizer = text
        .parse()
        .map_err(|e| anyhow!("{source}: not a tokenizer.json: {e}"))?;
    inner.with_padding(None);
    inner
        .with_truncation(None)
        .map_err(|e| anyhow!("{source}: {e}"))?;
    inner.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
    Ok(inner)
}

/// The id of `token`, or an error naming it.
pub fn token_id(inner: &tokenizers::Tokenizer, token: &str, source: &str) -> Result<u32> {
    inner
        .token_to_id(token)
        .ok_or_else(|| anyhow!("{source}: the vocabulary has no '{token}' token"))
}

/// The ids of `text` without special tokens, truncation or padding.
pub fn encode_raw(inner: &tokenizers::Tokenizer, text: &str, source: &str) -> Result<Vec<u32>> {
    let enc = inner
        .encode(text, false)
        .map_err(|e| anyhow!("{source}: cannot tokenize {text:?}: {e}"))?;
    Ok(enc.get_ids().to_vec())
}
