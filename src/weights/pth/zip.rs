//! The zip serialization (torch >= 1.6): one top-level folder holding `data.pkl`, a STORED
//! record per storage under `data/`, and `byteorder`.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use anyhow::{Result, anyhow, bail};

use super::views::{collect, flatten, materialize, output_budget};
use super::vm::{Objects, PidMode, unpickle};
use super::{RawTensor, show};

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

pub(super) fn load_zip(bytes: &[u8], objects: Objects) -> Result<Vec<(String, RawTensor)>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| anyhow!("not a valid zip archive: {e}"))?;

    let prefix = find_prefix(&archive)?;
    let pkl_name = format!("{prefix}/data.pkl");
    let pkl = read_entry(&mut archive, &pkl_name, bytes.len())?;
    let byteorder_name = format!("{prefix}/byteorder");
    let big_endian = if archive.index_for_name(&byteorder_name).is_some() {
        let order = read_entry(&mut archive, &byteorder_name, bytes.len())?;
        match String::from_utf8_lossy(&order).trim() {
            "little" => false,
            "big" => true,
            other => bail!("{byteorder_name}: unknown byte order '{}'", show(other)),
        }
    } else {
        false
    };
    load_zip_pickle(
        &mut archive,
        &prefix,
        &pkl,
        big_endian,
        bytes.len(),
        objects,
    )
}

/// All records live in one top-level folder with an arbitrary name (the file
/// stem, or `archive`): find the one holding `data.pkl`.
fn find_prefix(archive: &Archive<'_>) -> Result<String> {
    let mut candidates = Vec::new();
    for name in archive.file_names() {
        let name = name.map_err(|e| anyhow!("bad zip entry name: {e}"))?;
        if let Some(prefix) = name.strip_suffix("/data.pkl")
            && !prefix.is_empty()
            && !prefix.contains('/')
        {
            candidates.push(prefix.to_owned());
        }
    }
    match candidates.as_slice() {
        [p] => Ok(p.clone()),
        [] => bail!("zip archive without a <name>/data.pkl record: not a torch.save checkpoint"),
        _ => bail!(
            "zip archive with several */data.pkl records ({})",
            candidates
                .iter()
                .map(|c| show(c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs `<prefix>/data.pkl` and reads the storages it references.
fn load_zip_pickle(
    archive: &mut Archive<'_>,
    prefix: &str,
    pkl: &[u8],
    big_endian: bool,
    file_len: usize,
    objects: Objects,
) -> Result<Vec<(String, RawTensor)>> {
    let pkl_name = format!("{prefix}/data.pkl");
    let parsed =
        unpickle(pkl, 0, PidMode::Zip, objects).map_err(|e| anyhow!("{pkl_name}: {e:#}"))?;
    let specs = flatten(&parsed, pkl.len()).map_err(|e| anyhow!("{pkl_name}: {e:#}"))?;

    // Read each storage once, for all the tensors that view it.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for (i, (_, spec)) in specs.iter().enumerate() {
        let g = *group_of
            .entry(spec.storage.key.as_str())
            .or_insert_with(|| {
                groups.push((spec.storage.key.as_str(), Vec::new()));
                groups.len() - 1
            });
        if let Some((_, members)) = groups.get_mut(g) {
            members.push(i);
        }
    }
    let mut budget = output_budget(file_len);
    // Storages are STORED records, so together they cannot exceed the file:
    // this bounds the work on archives whose records overlap.
    let mut read_budget = file_len;
    let mut tensors: Vec<Option<RawTensor>> = vec![None; specs.len()];
    for (key, members) in &groups {
        let entry = format!("{prefix}/data/{key}");
        let data = read_entry(archive, &entry, read_budget)?;
        read_budget = read_budget.saturating_sub(data.len());
        for &i in members {
            let Some((name, spec)) = specs.get(i) else {
                continue;
            };
            let declared = spec
                .storage
                .numel
                .checked_mul(spec.storage.dtype.size() as u64)
                .ok_or_else(|| anyhow!("storage '{}' size overflows", show(key)))?;
            if declared != data.len() as u64 {
                bail!(
                    "{entry} has {} bytes but tensor '{}' declares {} {} elements",
                    data.len(),
                    show(name),
                    spec.storage.numel,
                    spec.storage.dtype.name()
                );
            }
            let mut t = materialize(spec, &data, &mut budget)
                .map_err(|e| anyhow!("tensor '{}': {e:#}", show(name)))?;
            if big_endian {
                for c in t.data.chunks_exact_mut(t.dtype.size()) {
                    c.reverse();
                }
            }
            if let Some(slot) = tensors.get_mut(i) {
                *slot = Some(t);
            }
        }
    }
    collect(specs, tensors)
}

/// Reads one STORED entry, refusing entries larger than `limit` bytes (the
/// archive size, or what is left of it).
fn read_entry(archive: &mut Archive<'_>, name: &str, limit: usize) -> Result<Vec<u8>> {
    let mut f = archive
        .by_name(name)
        .map_err(|e| anyhow!("cannot open archive record {name}: {e}"))?;
    if f.compression() != zip::CompressionMethod::Stored {
        bail!(
            "archive record {name} is compressed ({:?}); torch.save writes uncompressed records",
            f.compression()
        );
    }
    let size = f.size();
    if size > limit as u64 {
        bail!("archive record {name} claims {size} bytes, more than the archive can hold");
    }
    let mut buf = Vec::with_capacity(size as usize);
    f.by_ref()
        .take(size)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow!("cannot read archive record {name}: {e}"))?;
    if buf.len() as u64 != size {
        bail!(
            "archive record {name} is truncated ({} of {size} bytes)",
            buf.len()
        );
    }
    // Reading to the end lets the zip reader verify the CRC.
    let mut rest = Vec::new();
    f.read_to_end(&mut rest)
        .map_err(|e| anyhow!("cannot read archive record {name}: {e}"))?;
    if !rest.is_empty() {
        bail!("archive record {name} is longer than its declared size");
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Rng, fixture, fuzz_iters, mutate};
    use super::*;

    fn open_zip(bytes: &[u8]) -> (Archive<'_>, String, Vec<u8>) {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let prefix = find_prefix(&archive).unwrap();
        let pkl = read_entry(&mut archive, &format!("{prefix}/data.pkl"), bytes.len()).unwrap();
        (archive, prefix, pkl)
    }

    #[test]
    fn random_byte_flips_in_zip_data_pkl_never_panic() {
        // Flips inside a zip fail its CRC check; fuzz the pickle behind it directly.
        let mut rng = Rng(42);
        for file in ["sd_zip.pth", "sd_zip_p4.pth", "nested_zip.pth"] {
            let bytes = fixture(file);
            let (mut archive, prefix, pkl) = open_zip(&bytes);
            assert!(
                load_zip_pickle(
                    &mut archive,
                    &prefix,
                    &pkl,
                    false,
                    bytes.len(),
                    Objects::Refuse
                )
                .is_ok()
            );
            for _ in 0..fuzz_iters() {
                let mut p = pkl.clone();
                mutate(&mut rng, &mut p);
                for objects in [Objects::Refuse, Objects::Inert] {
                    let _ = load_zip_pickle(&mut archive, &prefix, &p, false, bytes.len(), objects);
                }
            }
            for len in 0..pkl.len() {
                assert!(
                    load_zip_pickle(
                        &mut archive,
                        &prefix,
                        &pkl[..len],
                        false,
                        bytes.len(),
                        Objects::Refuse
                    )
                    .is_err()
                );
            }
        }
    }

    #[test]
    fn big_endian_zip_records_are_swapped() {
        let bytes = fixture("sd_zip.pth");
        let (mut archive, prefix, pkl) = open_zip(&bytes);
        let le = load_zip_pickle(
            &mut archive,
            &prefix,
            &pkl,
            false,
            bytes.len(),
            Objects::Refuse,
        )
        .unwrap();
        let be = load_zip_pickle(
            &mut archive,
            &prefix,
            &pkl,
            true,
            bytes.len(),
            Objects::Refuse,
        )
        .unwrap();
        for ((_, a), (_, b)) in le.iter().zip(&be) {
            let es = a.dtype.size();
            for (x, y) in a.data.chunks(es).zip(b.data.chunks(es)) {
                let mut y = y.to_vec();
                y.reverse();
                assert_eq!(x, &y[..]);
            }
        }
    }
}
