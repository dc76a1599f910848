//! The harness works end to end, in seconds: `relay-bench run --mode smoke` measures the
//! per-packet cost of every path at a tiny repeat and writes JSON, markdown and PNG. Checks
//! the files and their fields, never a timing (performance is not asserted in tests).
use std::{path::Path, process::Command};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_relay-bench"))
}

#[test]
fn smoke_run_writes_json_markdown_and_png_with_every_path() {
    let out = std::env::temp_dir().join(format!("relay-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let st = Command::new(bin())
        .args(["run", "--mode", "smoke", "--out"])
        .arg(&out)
        .status()
        .expect("relay-bench runs");
    assert!(st.success(), "relay-bench run --mode smoke failed: {st}");

    let files: Vec<_> = std::fs::read_dir(&out)
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .collect();
    let with_ext = |ext: &str| {
        files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap_or_else(|| panic!("no .{ext} in {files:?}"))
            .clone()
    };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(with_ext("json")).expect("json"))
            .expect("valid JSON");
    let paths = json["per_packet"].as_array().expect("per_packet array");
    // The small table (the fixture legs, its size follows the paths measured) and 1000 legs.
    let small = paths
        .iter()
        .filter_map(|p| p["legs"].as_u64())
        .min()
        .expect("a table size");
    assert!(small < 1000, "no small table: {small}");
    for legs in [small, 1000] {
        for path in [
            "baseline",
            "forward_redirect",
            "forward_tx",
            "pass",
            "baseline_1",
            "reflector",
            "stun",
            "turn_strip_1",
            "turn_add_1",
            "turn_renumber",
        ] {
            let p = paths
                .iter()
                .find(|p| p["legs"] == legs && p["path"] == path)
                .unwrap_or_else(|| panic!("no {path} at {legs} legs"));
            assert!(p["ns"].as_f64().expect("ns") > 0.0, "{path}: {p}");
            assert!(
                p["ratio_to_baseline"].as_f64().expect("ratio") > 0.0,
                "{path}: {p}"
            );
        }
    }
    let mem = &json["memory"];
    assert_eq!(mem["max_entries"], 4093);
    assert!(mem["bytes_per_leg"].as_f64().expect("bytes per leg") > 0.0);
    assert!(
        json["machine"]["kernel"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );

    let md = std::fs::read_to_string(with_ext("md")).expect("markdown");
    assert!(md.contains("| legs | path | ns/packet (median) |"), "{md}");
    assert!(md.contains("bytes per leg"), "{md}");
    let png = std::fs::read(with_ext("png")).expect("png");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a PNG chart"
    );
    let _ = std::fs::remove_dir_all(&out);
}
