//! `spadework bench --quick` runs every workload on the CPU backend and a Vulkan adapter and
//! writes a JSON report with adapter info and one row per workload.
mod common;
use std::process::Command;

#[test]
fn quick_bench_writes_a_complete_report() {
    let json = common::scratch("bench_cli").join("bench.json");
    let backend = if common::gpu().is_some() {
        "all"
    } else {
        "cpu"
    };
    let out = Command::new(env!("CARGO_BIN_EXE_spadework"))
        .args([
            "bench",
            "--quick",
            "--runs",
            "1",
            "--adapter",
            "vulkan",
            "--backend",
            backend,
            "--json",
        ])
        .arg(&json)
        .arg("--plot")
        .arg(json.with_extension("png"))
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("SPADE ade20k-layout 64²") && stdout.contains("GFLOP/s"),
        "{stdout}"
    );
    let chart = image::open(json.with_extension("png")).unwrap().to_rgb8();
    assert!(chart.width() > 600 && chart.height() > 100);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let devices = doc["devices"].as_array().unwrap();
    assert_eq!(devices.len(), if backend == "all" { 2 } else { 1 });
    for d in devices {
        let rows = d["rows"].as_array().unwrap();
        // A GPU also runs the peak, the 5 conv rows and the generator with f16 weights.
        let gpu = d["backend"] == "gpu";
        let (peaks, ops, gens) = if gpu { (8, 18, 2) } else { (1, 13, 1) };
        let texts = gens; // the text encoder, with f16 weights too on a GPU
        assert_eq!(
            rows.len(),
            peaks + ops + gens + texts,
            "{peaks} peak rows + {ops} ops + {gens} generator rows + {texts} text encoder rows"
        );
        assert!(
            rows.iter()
                .any(|r| r["workload"] == "CLIP-layout text encoder 77 tok 4×256"),
            "no text encoder row"
        );
        for r in rows {
            // f16-weight rows report their error against f32 weights: there is rounding, and
            // the end-to-end outputs stay within 2/255: one 8-bit level of the generator's image
            // (in [-1, 1]); measured 2.4e-3 on the text encoder's hidden state (values ~±3).
            let name = r["workload"].as_str().unwrap();
            let err = r["max_err_vs_f32"].as_f64();
            if name.ends_with(" f16w") {
                let err = err.unwrap_or_else(|| panic!("no error reported: {r}"));
                assert!(err > 0.0, "{r}");
                if r["kind"] == "e2e" {
                    assert!(err < 2.0 / 255.0, "{r}");
                }
            } else {
                assert!(err.is_none(), "{r}");
            }
            // Device memory is each workload's own: what it holds before its timed runs, and at
            // most that plus a working set the pool keeps near the two largest buffers.
            if d["backend"] == "gpu" {
                let (peak, resident, largest2) = (
                    r["peak_device_mib"].as_f64().unwrap(),
                    r["resident_device_mib"].as_f64().unwrap(),
                    r["largest2_device_mib"].as_f64().unwrap(),
                );
                assert!(resident > 0.0 && peak >= resident, "{r}");
                if r["kind"] == "e2e" {
                    assert!(peak - resident <= 2.0 * largest2, "{r}");
                }
            }
            assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["gflops"].as_f64().is_some_and(|g| g > 0.0), "{r}");
            // Dense-equivalent counts one-hot convs dense: never below the executed rate, and
            // well above it for the gather (151 classes → 1 tap).
            let (g, dense) = (
                r["gflops"].as_f64().unwrap(),
                r["dense_equiv_gflops"].as_f64().unwrap(),
            );
            if r["workload"]
                .as_str()
                .unwrap()
                .starts_with("one-hot gather")
            {
                assert!(dense > 100.0 * g, "{r}");
            } else {
                assert!(dense >= g, "{r}");
            }
            // Every rate is compared with the device's own peak, measured in the same run.
            let pct = r["pct_of_peak"].as_f64().unwrap();
            assert!(pct > 0.0 && pct.is_finite(), "{r}");
        }
        let best_peak = rows
            .iter()
            .filter(|r| r["kind"] == "peak")
            .map(|r| r["pct_of_peak"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!(
            (best_peak - 100.0).abs() < 1e-9,
            "the best peak row is 100 %"
        );
        if d["backend"] == "gpu" {
            assert!(
                d["info"]["limits"]["max_storage_buffer_binding_size"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
        }
    }
}
