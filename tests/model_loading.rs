//! Loading errors that tell the user what is wrong, and `quantize` producing a loadable AWQ checkpoint.

use qwen3_agent::model::awq::AwqLinear;
use qwen3_agent::model::quantize::{QuantizeOptions, quantize_dir};
use qwen3_agent::model::weights::Weights;
use qwen3_agent::model::{Precision, load_dir, npy};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3-agent-load-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_fixture(name: &str, to: &Path) {
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn load_error(dir: &Path) -> String {
    format!(
        "{:#}",
        load_dir(dir, Precision::Exact, None, |_, _| {}).expect_err("loading should fail")
    )
}

#[test]
fn missing_config_names_the_file() {
    let dir = scratch("missing");
    assert!(load_error(&dir).contains("config.json"));
}

#[test]
fn missing_weights_say_what_is_expected() {
    let dir = scratch("noweights");
    std::fs::copy(
        fixture("awq-yarn").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    assert!(load_error(&dir).contains("model.safetensors"));
}

#[test]
fn truncated_safetensors_is_reported() {
    let dir = scratch("truncated");
    copy_fixture("awq-yarn", &dir);
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(&dir);
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn unknown_quant_method_is_rejected() {
    let dir = scratch("gptq");
    copy_fixture("awq-yarn", &dir);
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"awq\"", "\"gptq\"");
    std::fs::write(&path, text).unwrap();
    let err = load_error(&dir);
    assert!(err.contains("\"gptq\" is not supported"), "{err}");
}

#[test]
fn wrong_shapes_name_the_tensor() {
    let dir = scratch("shape");
    copy_fixture("awq-yarn", &dir);
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"intermediate_size\": 128", "\"intermediate_size\": 256");
    std::fs::write(&path, text).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("mlp.gate_proj") && err.contains("expected"),
        "{err}"
    );
}

#[test]
fn quantize_reports_the_bytes_it_has_made() {
    let out = scratch("quantize-progress");
    let reports = std::cell::RefCell::new(Vec::new());
    let record = |done, total| reports.borrow_mut().push((done, total));
    quantize_dir(&fixture("dense-bf16"), &out, &options(false), &record).unwrap();
    let written = Weights::open(&out).unwrap();
    let bytes = |name: &str| {
        let shape = written.shape(name).unwrap().to_vec();
        let tensor = written.get(name, &shape).unwrap();
        (shape.iter().product::<usize>() * tensor.dtype.bitsize() / 8) as u64
    };
    let total: u64 = written.names().iter().map(|n| bytes(n)).sum();
    let reports = reports.into_inner();
    assert_eq!(
        reports.len(),
        written.names().len(),
        "one report per tensor"
    );
    assert!(reports.windows(2).all(|w| w[0].0 < w[1].0), "{reports:?}");
    assert!(reports.iter().all(|&(_, t)| t == total), "{reports:?}");
    assert_eq!(reports.last(), Some(&(total, total)));
}

#[test]
fn quantized_dense_checkpoint_loads_and_reconstructs_each_weight() {
    let out = scratch("quantized");
    quantize_dir(&fixture("dense-bf16"), &out, &options(false), &|_, _| {}).unwrap();
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains("\"quant_method\": \"awq\"") && config.contains("round-to-nearest"));
    let model = load_dir(&out, Precision::Fast, None, |_, _| {}).unwrap();
    let mut cache = model.new_cache(4);
    assert!(
        model
            .forward(&[1, 2, 3, 4], &mut cache, false)
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    );

    let (dense, quantized) = (
        Weights::open(&fixture("dense-bf16")).unwrap(),
        Weights::open(&out).unwrap(),
    );
    let (inf, outf, group) = (64, 96, 32);
    let prefix = "model.layers.1.mlp.gate_proj";
    let original = dense
        .get(&format!("{prefix}.weight"), &[outf, inf])
        .unwrap()
        .to_f32()
        .unwrap();
    let linear = AwqLinear::new(
        inf,
        outf,
        group,
        quantized
            .get(&format!("{prefix}.qweight"), &[inf, outf / 8])
            .unwrap()
            .mapped_u32()
            .unwrap(),
        quantized
            .get(&format!("{prefix}.qzeros"), &[inf / group, outf / 8])
            .unwrap()
            .mapped_u32()
            .unwrap(),
        quantized
            .get(&format!("{prefix}.scales"), &[inf / group, outf])
            .unwrap()
            .mapped_f16()
            .unwrap(),
    );
    let scales = quantized
        .get(&format!("{prefix}.scales"), &[inf / group, outf])
        .unwrap()
        .to_f32()
        .unwrap();
    let restored = linear.dequantize();
    for k in 0..inf {
        for n in 0..outf {
            let step = scales[(k / group) * outf + n];
            let err = (restored[k * outf + n] - original[n * inf + k]).abs();
            assert!(
                err <= 0.52 * step,
                "k {k} n {n}: error {err} is more than half a step {step} (plus f16 rounding of the scale)"
            );
        }
    }
}

fn options(embeddings: bool) -> QuantizeOptions {
    QuantizeOptions {
        group_size: 32,
        max_shard_bytes: 1 << 30,
        embeddings,
    }
}

fn last_logits(dir: &Path, precision: Precision) -> Vec<f32> {
    let model = load_dir(dir, precision, None, |_, _| {}).unwrap();
    let mut cache = model.new_cache(8);
    model
        .forward(&[5, 17, 3, 250, 9], &mut cache, false)
        .unwrap()
}

#[test]
fn packed_tied_embeddings_track_the_f16_embedding_in_both_precisions() {
    let tied = scratch("tied");
    copy_fixture("dense-bf16", &tied);
    let config = tied.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"tie_word_embeddings\": false",
        "\"tie_word_embeddings\": true",
    );
    std::fs::write(&config, text).unwrap();
    let (plain, packed) = (scratch("tied-plain"), scratch("tied-packed"));
    quantize_dir(&tied, &plain, &options(false), &|_, _| {}).unwrap();
    quantize_dir(&tied, &packed, &options(true), &|_, _| {}).unwrap();
    assert!(
        std::fs::read_to_string(packed.join("config.json"))
            .unwrap()
            .contains("\"quantized_embeddings\": true")
    );
    assert!(
        !Weights::open(&packed)
            .unwrap()
            .contains("model.embed_tokens.weight")
    );

    let reference = last_logits(&plain, Precision::Exact);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for precision in [Precision::Exact, Precision::Fast] {
        let logits = last_logits(&packed, precision);
        let diff: Vec<f32> = logits.iter().zip(&reference).map(|(a, b)| a - b).collect();
        let rel = norm(&diff) / norm(&reference);
        // 4-bit embeddings on a 64-wide random model: the error of one more quantized matrix, no more.
        assert!(rel < 0.25, "{precision:?}: relative logits error {rel}");
    }

    let untied = scratch("untied-packed");
    let err =
        quantize_dir(&fixture("dense-bf16"), &untied, &options(true), &|_, _| {}).unwrap_err();
    assert!(
        format!("{err:#}").contains("tie_word_embeddings"),
        "{err:#}"
    );
}

#[test]
fn hub_ids_resolve_through_the_cache_and_fail_clearly_offline() {
    let home = scratch("hfhome");
    let snapshot = home.join("hub/models--test--tiny/snapshots/abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    copy_fixture("awq-yarn", &snapshot);
    std::fs::create_dir_all(home.join("hub/models--test--tiny/refs")).unwrap();
    std::fs::write(home.join("hub/models--test--tiny/refs/main"), "abc").unwrap();
    let logits = |id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
            .args([
                "logits",
                "--model",
                id,
                "--ids",
                "1,2",
                "--out",
                home.join("out.npy").to_str().unwrap(),
            ])
            .env("HF_HOME", &home)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let ok = logits("test/tiny");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = logits("test/absent");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HF_HUB_OFFLINE"));
}

#[test]
fn loading_reports_each_layer_then_the_embedding_and_head() {
    use qwen3_agent::model::{Device, LoadOptions, load_decoder};
    let options = LoadOptions {
        device: Device::Cpu,
        precision: Precision::Fast,
        rope_scaling: None,
        context_length: Some(16),
        kv_cache: Default::default(),
    };
    let mut reports = Vec::new();
    let decoder = load_decoder(&fixture("awq-untied-gqa"), &options, |done, total| {
        reports.push((done, total))
    })
    .unwrap();
    let steps = decoder.config().num_hidden_layers + 1;
    assert_eq!(reports, (1..=steps).map(|i| (i, steps)).collect::<Vec<_>>());
}

/// The device choice: `auto` and `cpu` run here; `cuda` without a GPU (or without the feature) is an error
/// that says what to do, not a panic.
#[test]
fn device_choice_runs_on_the_cpu_and_explains_a_missing_gpu() {
    let out = scratch("device");
    std::fs::create_dir_all(&out).unwrap();
    let logits = |device: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
            .args(["logits", "--device", device, "--ids", "1,2,3", "--model"])
            .arg(fixture("awq-yarn"))
            .arg("--out")
            .arg(out.join(format!("{device}.npy")))
            .output()
            .unwrap()
    };
    let read = |device: &str| npy::read_f32(&out.join(format!("{device}.npy"))).unwrap();
    for device in ["auto", "cpu"] {
        let run = logits(device);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    if !qwen3_agent::model::load::cuda_available() {
        assert_eq!(read("auto"), read("cpu"), "auto must fall back to the CPU");
        let cuda = logits("cuda");
        assert!(!cuda.status.success());
        let stderr = String::from_utf8_lossy(&cuda.stderr);
        assert!(
            stderr.contains("built without CUDA") || stderr.contains("libcuda.so.1"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The bytes a decoded token reads (bench's CPU roofline) are the checkpoint's tensors as stored,
/// except the embedding (one row per token) and the norms (held as f32), in both precisions: the
/// int8 engine's repacked 4-bit weights take as many bytes as the checkpoint's qweight, and its
/// 32-byte header per 8 columns and group holds their 16 bytes of scales and 4 of zeros plus 12 of
/// padding (1.5 bytes per scale value).
#[test]
fn decode_bytes_per_token_counts_every_weight_read() {
    let dir = fixture("awq-untied-gqa");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let expected: usize = metadata
        .tensors()
        .iter()
        .filter(|(name, _)| !name.contains("embed_tokens"))
        .map(|(name, info)| {
            let stored = info.data_offsets.1 - info.data_offsets.0;
            let values: usize = info.shape.iter().product();
            if name.ends_with("norm.weight") {
                values * 4
            } else {
                stored
            }
        })
        .sum();
    let padding: usize = metadata
        .tensors()
        .iter()
        .filter(|(name, _)| !name.contains("embed_tokens") && name.ends_with(".scales"))
        .map(|(_, info)| info.shape.iter().product::<usize>() * 3 / 2)
        .sum();
    for (precision, expected) in [
        (Precision::Fast, expected + padding),
        (Precision::Exact, expected),
    ] {
        let model = load_dir(&dir, precision, None, |_, _| {}).unwrap();
        assert_eq!(model.decode_bytes_per_token(), expected, "{precision:?}");
    }
}
