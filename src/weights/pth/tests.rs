//! Tests of the whole reader through [`load_pth`] and [`load_pth_bytes`]: the fixture files of
//! `tools/make_pth_fixtures.py`, hand-made legacy files, malicious pickles, truncation and random
//! byte flips; and the helpers the other modules' tests share.
use super::legacy::LEGACY_MAGIC;
use super::*;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth")
}

pub(super) fn fixture(name: &str) -> Vec<u8> {
    let p = fixture_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
}

const GOOD: [&str; 6] = [
    "sd_zip.pth",
    "sd_zip_p4.pth",
    "sd_legacy.pth",
    "nested_zip.pth",
    "nested_legacy.pth",
    "legacy_views.pth",
];
const ALL: [&str; 8] = [
    "sd_zip.pth",
    "sd_zip_p4.pth",
    "sd_legacy.pth",
    "nested_zip.pth",
    "nested_legacy.pth",
    "legacy_views.pth",
    "malicious.pkl",
    "malicious_zip.pth",
];

fn dtype_by_name(s: &str) -> DType {
    DType::ALL
        .into_iter()
        .find(|d| d.name() == s)
        .unwrap_or_else(|| panic!("dtype {s}"))
}

/// Integer value of element `i` of an integer/bool tensor.
fn int_at(t: &RawTensor, i: usize) -> i64 {
    let es = t.dtype.size();
    let c = &t.data[i * es..(i + 1) * es];
    match t.dtype {
        DType::I64 => i64::from_le_bytes(c.try_into().unwrap()),
        DType::I32 => i64::from(i32::from_le_bytes(c.try_into().unwrap())),
        DType::I16 => i64::from(i16::from_le_bytes(c.try_into().unwrap())),
        DType::I8 => i64::from(c[0] as i8),
        DType::U8 | DType::Bool => i64::from(c[0]),
        _ => panic!("not an integer dtype"),
    }
}

#[test]
fn good_files_match_expected_json() {
    let expected: serde_json::Value =
        serde_json::from_slice(&fixture("expected.json")).expect("expected.json");
    for file in GOOD {
        let path = fixture_dir().join(file);
        let got = load_pth(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let want = expected[file]
            .as_array()
            .unwrap_or_else(|| panic!("{file} in expected.json"));
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let want_names: Vec<&str> = want.iter().map(|w| w["name"].as_str().unwrap()).collect();
        assert_eq!(got_names, want_names, "{file}: tensor names/order");
        for ((name, t), w) in got.iter().zip(want) {
            let ctx = format!("{file}: {name}");
            assert_eq!(
                t.dtype,
                dtype_by_name(w["dtype"].as_str().unwrap()),
                "{ctx}"
            );
            let shape: Vec<usize> = w["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape, "{ctx}");
            let values = w["values"].as_array().unwrap();
            assert_eq!(t.numel(), values.len(), "{ctx}");
            assert_eq!(t.data.len(), t.numel() * t.dtype.size(), "{ctx}");
            let f = t.to_f32().unwrap();
            assert_eq!(f.len(), values.len(), "{ctx}");
            for (i, v) in values.iter().enumerate() {
                match t.dtype {
                    DType::F32 | DType::F16 | DType::BF16 => {
                        assert_eq!(f[i], v.as_f64().unwrap() as f32, "{ctx}[{i}]")
                    }
                    DType::F64 => {
                        let got = f64::from_le_bytes(t.data[i * 8..i * 8 + 8].try_into().unwrap());
                        let want = v.as_f64().unwrap();
                        assert!(
                            (got - want).abs() <= want.abs() * 1e-15,
                            "{ctx}[{i}]: {got} vs {want}"
                        );
                    }
                    _ => {
                        assert_eq!(int_at(t, i), v.as_i64().unwrap(), "{ctx}[{i}]");
                        assert_eq!(f[i], v.as_i64().unwrap() as f32, "{ctx}[{i}]");
                    }
                }
            }
        }
    }
}

#[test]
fn state_dict_details() {
    let sd = load_pth(&fixture_dir().join("sd_legacy.pth")).unwrap();
    let get = |n: &str| &sd.iter().find(|(k, _)| k == n).unwrap().1;
    let nbt = get("1.num_batches_tracked");
    assert_eq!(
        (nbt.dtype, nbt.shape.len(), nbt.numel()),
        (DType::I64, 0, 1)
    );
    assert_eq!(nbt.to_f32().unwrap(), vec![7.0]);
    let t = get("transposed");
    assert_eq!(t.shape, vec![4, 3]);
    assert_eq!(&t.to_f32().unwrap()[..4], &[0.0, 4.0, 8.0, 1.0]);
    assert_eq!(get("slice").to_f32().unwrap(), vec![5.0, 6.0, 7.0, 8.0]);
    assert_eq!(get("column").to_f32().unwrap(), vec![1.0, 5.0, 9.0]);
    assert_eq!(get("empty").shape, vec![0, 3]);
    assert!(get("empty").data.is_empty());
    // Both serializations agree byte for byte.
    let zip = load_pth(&fixture_dir().join("sd_zip.pth")).unwrap();
    assert_eq!(zip.len(), sd.len());
    for ((n1, t1), (n2, t2)) in zip.iter().zip(&sd) {
        assert_eq!(n1, n2);
        assert_eq!(
            (t1.dtype, &t1.shape, &t1.data),
            (t2.dtype, &t2.shape, &t2.data),
            "{n1}"
        );
    }
}

#[test]
fn nested_dicts_are_flattened_and_scalars_skipped() {
    let got = load_pth(&fixture_dir().join("nested_zip.pth")).unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "state_dict.layer.weight",
            "state_dict.layer.bias",
            "state_dict.steps"
        ]
    );
}

fn assert_refused(file: &str, needles: &[&str]) {
    let err = load_pth_bytes(&fixture(file), file).expect_err(file);
    let msg = format!("{err:#}");
    assert!(msg.starts_with(file), "{msg}");
    assert!(msg.contains("refusing pickle global"), "{msg}");
    assert!(needles.iter().any(|n| msg.contains(n)), "{msg}");
}

#[test]
fn malicious_pickles_are_refused() {
    assert_refused(
        "malicious.pkl",
        &["'posix.system'", "'os.system'", "'nt.system'"],
    );
    assert_refused(
        "malicious_zip.pth",
        &["'posix.system'", "'os.system'", "'nt.system'"],
    );
    let err = format!(
        "{:#}",
        load_pth_bytes(&fixture("malicious.pkl"), "evil.pkl").unwrap_err()
    );
    assert!(err.contains("at byte 2:"), "{err}");
    let err = format!(
        "{:#}",
        load_pth_bytes(&fixture("malicious_zip.pth"), "evil.pth").unwrap_err()
    );
    assert!(err.contains("archive/data.pkl"), "{err}");
}

/// Runs a hand-written pickle through the legacy entry point.
fn run(pickle: &[u8]) -> String {
    match load_pth_bytes(pickle, "t.pth") {
        Ok(v) => panic!("unexpectedly loaded {} tensors", v.len()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn dangerous_globals_and_opcodes_are_refused() {
    // GLOBAL (protocol 0-3 style)
    let e = run(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
    assert!(
        e.contains("refusing pickle global 'os.system' at byte 2"),
        "{e}"
    );
    assert!(e.contains("allowed: collections.OrderedDict"), "{e}");
    // STACK_GLOBAL (protocol 4)
    let e = run(b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.");
    assert!(
        e.contains("refusing pickle global 'builtins.eval' at byte"),
        "{e}"
    );
    let e = run(b"\x80\x02ctorch.nn.modules.module\nModule\n)\x81.");
    assert!(e.contains("'torch.nn.modules.module.Module'"), "{e}");
    let e = run(b"\x80\x02ctorch\nComplexFloatStorage\n.");
    assert!(
        e.contains("unsupported tensor storage type 'torch.ComplexFloatStorage'"),
        "{e}"
    );
    // Opcodes outside the whitelist.
    let e = run(b"\x80\x02ccollections\nOrderedDict\n)\x81.");
    assert!(
        e.contains("refusing pickle opcode NEWOBJ (0x81) at byte 28"),
        "{e}"
    );
    let e = run(b"(ios\nsystem\n.");
    assert!(
        e.contains("refusing pickle opcode INST (0x69) at byte 1"),
        "{e}"
    );
    let e = run(b"\x80\x02\x82\x01.");
    assert!(e.contains("EXT1 (0x82) at byte 2"), "{e}");
    let e = run(b"\x80\x02\xff");
    assert!(e.contains("unknown pickle opcode 0xff at byte 2"), "{e}");
    let e = run(b"\x80\x02Pfoo\n.");
    assert!(e.contains("PERSID (0x50)"), "{e}");
    let e = run(b"\x80\x09.");
    assert!(e.contains("unsupported pickle protocol 9"), "{e}");
    // A whitelisted class may not be "called" in unexpected ways.
    let e = run(b"\x80\x02ctorch\nFloatStorage\n)R.");
    assert!(e.contains("refusing to call torch.FloatStorage"), "{e}");
    let e = run(b"\x80\x02ccollections\nOrderedDict\nK\x01\x85R.");
    assert!(
        e.contains("unexpected arguments for collections.OrderedDict"),
        "{e}"
    );
    // BUILD on something that is not a dict.
    let e = run(b"\x80\x02]}b.");
    assert!(e.contains("refusing BUILD on a list"), "{e}");
    // Storages outside of a persistent id context.
    let e = run(b"\x80\x02)Q.");
    assert!(e.contains("persistent id"), "{e}");
}

#[test]
fn not_a_checkpoint() {
    assert!(run(b"").contains("empty"));
    let e = run(b"\x80\x02K\x05.");
    assert!(e.contains("magic number"), "{e}");
    let e = run(b"hello world");
    assert!(e.starts_with("t.pth: "), "{e}");
    let mut tar = vec![0u8; 1024];
    tar[257..262].copy_from_slice(b"ustar");
    assert!(run(&tar).contains("tar archive"));
    let e = run(b"PK\x03\x04garbage");
    assert!(e.contains("zip"), "{e}");
}

/// Builds a legacy file around `main` (the main pickle, protocol 2) with
/// the given storage keys and raw storage payloads.
pub(super) fn legacy_file(main: &[u8], keys: &[&str], payloads: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(b"\x80\x02\x8a\x0a");
    f.extend_from_slice(&LEGACY_MAGIC);
    f.extend_from_slice(b".\x80\x02M\xe9\x03.\x80\x02}.");
    f.extend_from_slice(main);
    f.extend_from_slice(b"\x80\x02(");
    for k in keys {
        f.push(b'X');
        f.extend_from_slice(&(k.len() as u32).to_le_bytes());
        f.extend_from_slice(k.as_bytes());
    }
    f.extend_from_slice(b"l.");
    for p in payloads {
        f.extend_from_slice(p);
    }
    f
}

pub(super) fn storage_bytes(count: i64, elems: &[f32]) -> Vec<u8> {
    let mut v = count.to_le_bytes().to_vec();
    for e in elems {
        v.extend_from_slice(&e.to_le_bytes());
    }
    v
}

/// Main pickle: {"t": _rebuild_tensor_v2(<storage "k", 4 floats>, offset, size, stride, False, OrderedDict())}
fn one_tensor_pickle(offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}X\x01\x00\x00\x00tctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
    p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00kX\x03\x00\x00\x00cpuK\x04Ntq\x00Q");
    p.push(b'K');
    p.push(offset);
    p.push(b'(');
    for &s in size {
        p.extend_from_slice(&[b'K', s]);
    }
    p.extend_from_slice(b"t(");
    for &s in stride {
        p.extend_from_slice(&[b'K', s]);
    }
    p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRs.");
    p
}

#[test]
fn handmade_legacy_views() {
    let data = storage_bytes(4, &[1.0, 2.0, 3.0, 4.0]);
    // 2x2 transposed view.
    let f = legacy_file(&one_tensor_pickle(0, &[2, 2], &[1, 2]), &["k"], &[&data]);
    let t = load_pth_bytes(&f, "x").unwrap();
    assert_eq!(t[0].1.to_f32().unwrap(), vec![1.0, 3.0, 2.0, 4.0]);
    // Broadcast (stride 0) view, small enough to be allowed.
    let f = legacy_file(&one_tensor_pickle(3, &[2, 3], &[0, 0]), &["k"], &[&data]);
    let t = load_pth_bytes(&f, "x").unwrap();
    assert_eq!(t[0].1.to_f32().unwrap(), vec![4.0; 6]);
    // Out of bounds views.
    for (offset, size, stride) in [
        (1u8, &[4u8][..], &[1u8][..]),
        (0, &[2, 2], &[3, 1]),
        (4, &[1], &[1]),
    ] {
        let f = legacy_file(&one_tensor_pickle(offset, size, stride), &["k"], &[&data]);
        let e = format!("{:#}", load_pth_bytes(&f, "x").unwrap_err());
        assert!(e.contains("reads element"), "{e}");
    }
    // Empty tensors may sit anywhere.
    let f = legacy_file(&one_tensor_pickle(200, &[0, 5], &[5, 1]), &["k"], &[&data]);
    assert_eq!(load_pth_bytes(&f, "x").unwrap()[0].1.numel(), 0);
    // Size mismatch between the persistent id and the file.
    let f = legacy_file(
        &one_tensor_pickle(0, &[4], &[1]),
        &["k"],
        &[&storage_bytes(3, &[1.0, 2.0, 3.0])],
    );
    assert!(format!("{:#}", load_pth_bytes(&f, "x").unwrap_err()).contains("declared"));
    // Unknown storage key in the key list.
    let f = legacy_file(&one_tensor_pickle(0, &[4], &[1]), &["zz"], &[&data]);
    assert!(load_pth_bytes(&f, "x").is_err());
}

#[test]
fn cycles_and_deep_nesting_are_errors_not_crashes() {
    // d = {}; d["a"] = d  (cyclic)
    let e = run_main(b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.");
    assert!(e.contains("nested more than"), "{e}");
    // 100000 nested lists built with a constant stack via the memo.
    let mut p = b"\x80\x02}X\x01\x00\x00\x00a]q\x000".to_vec();
    for _ in 0..100_000 {
        p.extend_from_slice(b"]h\x00aq\x000");
    }
    p.extend_from_slice(b"h\x00s.");
    let e = run_main(&p);
    assert!(e.contains("nested more than"), "{e}");
    // Exponential sharing: each level's list holds the previous one twice.
    let mut p = b"\x80\x02}X\x01\x00\x00\x00a]q\x000".to_vec();
    for _ in 0..60 {
        p.extend_from_slice(b"(h\x00h\x00lq\x000");
    }
    p.extend_from_slice(b"h\x00s.");
    let e = run_main(&p);
    assert!(e.contains("too large"), "{e}");
}

/// Runs `main` as the main pickle of a legacy file with no storages.
fn run_main(main: &[u8]) -> String {
    let f = legacy_file(main, &[], &[]);
    format!("{:#}", load_pth_bytes(&f, "x").unwrap_err())
}

#[test]
fn python_dict_semantics_and_scalars() {
    // {"a": 1, "b": None, "a": 2.5, "c": "s", 7: b"x"} -> no tensors, no error.
    let f = legacy_file(
        b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bNX\x01\x00\x00\x00aG@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00cX\x01\x00\x00\x00sK\x07C\x01xu.",
        &[],
        &[],
    );
    assert!(load_pth_bytes(&f, "x").unwrap().is_empty());
    // A top-level list is not a state dict.
    let e = run_main(b"\x80\x02].");
    assert!(e.contains("expected a dict"), "{e}");
}

#[test]
fn truncated_files_are_errors() {
    for file in ALL {
        let bytes = fixture(file);
        for len in 0..bytes.len() {
            let r = load_pth_bytes(&bytes[..len], file);
            assert!(r.is_err(), "{file} cut at {len} loaded");
        }
    }
}

/// Tiny deterministic PRNG (xorshift64*).
pub(super) struct Rng(pub(super) u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub(super) fn mutate(rng: &mut Rng, bytes: &mut [u8]) {
    for _ in 0..1 + rng.below(4) {
        let i = rng.below(bytes.len());
        bytes[i] = match rng.below(4) {
            0 => bytes[i] ^ (1 << rng.below(8)),
            1 => 0,
            2 => 0xff,
            _ => rng.next() as u8,
        };
    }
}

/// Mutations per file; raise with `PTH_FUZZ_ITERS=100000 cargo test random_byte`.
pub(super) fn fuzz_iters() -> usize {
    std::env::var("PTH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn random_byte_flips_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for file in ALL {
        let bytes = fixture(file);
        for _ in 0..fuzz_iters() {
            let mut b = bytes.clone();
            mutate(&mut rng, &mut b);
            let _ = load_pth_bytes(&b, file);
            let _ = load_any(&b, Objects::Inert);
        }
    }
}

/// A PyTorch Lightning checkpoint (tests/fixtures/sd/single_file/sd2.ckpt: callbacks pickled
/// as class instances, numpy scalars) is refused as a state dict and read under
/// [`Objects::Inert`], its tensors intact; code execution stays refused.
#[test]
fn training_checkpoints_keep_foreign_objects_inert() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sd/single_file/sd2.ckpt");
    let bytes = std::fs::read(&path).unwrap();
    let e = format!("{:#}", load_any(&bytes, Objects::Refuse).unwrap_err());
    assert!(
        e.contains("'pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint'"),
        "{e}"
    );
    let tensors = load_any(&bytes, Objects::Inert).unwrap();
    assert!(tensors.len() > 300, "{}", tensors.len());
    assert!(tensors.iter().all(|(n, _)| n.starts_with("state_dict.")));
    let (_, t) = tensors
        .iter()
        .find(|(n, _)| n == "state_dict.cond_stage_model.model.token_embedding.weight")
        .unwrap();
    assert_eq!(
        (t.dtype, t.shape.as_slice()),
        (DType::F16, &[1014usize, 64][..])
    );

    for file in ["malicious.pkl", "malicious_zip.pth"] {
        let e = format!(
            "{:#}",
            load_any(&fixture(file), Objects::Inert).unwrap_err()
        );
        assert!(
            e.contains("refusing pickle global") && e.contains(".system'"),
            "{e}"
        );
    }
    let inert = |p: &[u8]| {
        vm::unpickle(p, 0, vm::PidMode::Zip, Objects::Inert)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    let e = inert(b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.").unwrap_err();
    assert!(
        e.contains("'builtins.eval'") && e.contains("would run code"),
        "{e}"
    );
    let e = inert(b"\x80\x02cposix\nsystem\n.").unwrap_err();
    assert!(e.contains("would run code"), "{e}");
    // An instance is never called.
    let e = inert(b"\x80\x02cfoo\nBar\n)\x81)R.").unwrap_err();
    assert!(
        e.contains("REDUCE on an instance of foo.Bar (kept inert)"),
        "{e}"
    );
    // A set, a dict subclass with items and BUILD state: accepted, contents dropped.
    inert(b"\x80\x04\x8f(K\x01\x90cfoo\nD\n)\x81K\x01K\x02s}b0.").unwrap();
    // Without Inert the same class is refused.
    let e = vm::unpickle(
        b"\x80\x02cfoo\nBar\n)\x81.",
        0,
        vm::PidMode::Zip,
        Objects::Refuse,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(format!("{e}").contains("'foo.Bar'"), "{e}");
}

/// Peak resident memory of this process (VmHWM), in bytes, where /proc tells it.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// One memoised 4 MiB string used as the key of 1,000 dicts is held once (it would take
/// 4 GiB as 1,000 copies).
#[test]
fn memo_reuse_does_not_amplify_memory() {
    const LEN: usize = 4 << 20;
    let mut p = b"\x80\x02X".to_vec();
    p.extend_from_slice(&(LEN as u32).to_le_bytes());
    p.extend(std::iter::repeat_n(b'a', LEN));
    p.extend_from_slice(b"q\x000(");
    for _ in 0..1000 {
        p.extend_from_slice(b"}h\x00K\x01s");
    }
    p.extend_from_slice(b"l.");
    let before = peak_rss();
    let out = vm::unpickle(&p, 0, vm::PidMode::Zip, Objects::Refuse).unwrap();
    assert_eq!(out.objs.len(), 1002);
    if let (Some(a), Some(b)) = (before, peak_rss()) {
        let grew = b.saturating_sub(a);
        assert!(grew < 1 << 30, "peak RSS grew by {} MiB", grew >> 20);
    }
}
