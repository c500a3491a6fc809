//! The AWQ matmul kernels (SIMD and portable, every row-block size and column tail) against the
//! dequantized weights, and RTN quantization into the format.

use qwen3_agent::model::awq::{AwqLinear, pack_word, unpack_word};
use qwen3_agent::model::awq_int8::Int8AwqLinear;
use qwen3_agent::model::checkpoint::{LazyTensor, le_bytes, write_safetensors};
use qwen3_agent::model::quantize::quantize_rtn;
use qwen3_agent::model::weights::Weights;
use qwen3_agent::rng::Rng;
use safetensors::Dtype;

fn random_linear(dir: &std::path::Path, inf: usize, outf: usize, group: usize) -> Weights {
    let mut rng = Rng::seeded(inf as u64 * 31 + outf as u64);
    let w: Vec<f32> = (0..inf * outf).map(|_| rng.normal() * 0.1).collect();
    let (qweight, qzeros, scales) = quantize_rtn(&w, outf, inf, group);
    let tensor = |name: &str, dtype, shape: Vec<usize>, bytes: Vec<u8>| LazyTensor {
        name: name.into(),
        dtype,
        shape,
        make: Box::new(move || bytes.clone()),
    };
    write_safetensors(
        dir,
        vec![
            tensor(
                "l.qweight",
                Dtype::I32,
                vec![inf, outf / 8],
                le_bytes(&qweight),
            ),
            tensor(
                "l.qzeros",
                Dtype::I32,
                vec![inf / group, outf / 8],
                le_bytes(&qzeros),
            ),
            tensor(
                "l.scales",
                Dtype::F16,
                vec![inf / group, outf],
                le_bytes(&scales),
            ),
        ],
        1 << 30,
        &|_, _| {},
    )
    .unwrap();
    Weights::open(dir).unwrap()
}

fn load(weights: &Weights, inf: usize, outf: usize, group: usize) -> AwqLinear {
    AwqLinear::new(
        inf,
        outf,
        group,
        weights
            .get("l.qweight", &[inf, outf / 8])
            .unwrap()
            .mapped_u32()
            .unwrap(),
        weights
            .get("l.qzeros", &[inf / group, outf / 8])
            .unwrap()
            .mapped_u32()
            .unwrap(),
        weights
            .get("l.scales", &[inf / group, outf])
            .unwrap()
            .mapped_f16()
            .unwrap(),
    )
}

#[test]
fn kernels_match_dequantized_matmul_for_all_row_blocks_and_tails() {
    // 8·(16+8+2) columns: a full strip, a full 8-word block, and a 2-word tail for the portable path.
    for (inf, outf, group) in [(256, 8 * 26, 128), (64, 8 * 3, 32), (128, 8 * 16, 64)] {
        let dir = tempdir(&format!("awq-{inf}-{outf}"));
        let weights = random_linear(&dir, inf, outf, group);
        let linear = load(&weights, inf, outf, group);
        let w = linear.dequantize();
        for m in 1..=9 {
            let mut rng = Rng::seeded(m as u64);
            let x: Vec<f32> = (0..m * inf).map(|_| rng.normal()).collect();
            let mut y = vec![0f32; m * outf];
            linear.forward(&x, m, &mut y);
            for t in 0..m {
                for n in 0..outf {
                    let want: f32 = (0..inf).map(|k| x[t * inf + k] * w[k * outf + n]).sum();
                    let got = y[t * outf + n];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "in {inf} out {outf} m {m} row {t} col {n}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn int8_activation_path_tracks_the_exact_matmul() {
    // Group 8 has a single (odd) chunk per group; 24 has three; 128 is the real size.
    for (inf, outf, group) in [(256, 8 * 26, 128), (64, 8 * 3, 8), (96, 8 * 5, 24)] {
        let dir = tempdir(&format!("int8-{inf}-{outf}-{group}"));
        let weights = random_linear(&dir, inf, outf, group);
        let exact = load(&weights, inf, outf, group);
        let fast = Int8AwqLinear::from_awq(load(&weights, inf, outf, group));
        for m in 1..=9 {
            let mut rng = Rng::seeded(100 + m as u64);
            let x: Vec<f32> = (0..m * inf).map(|_| rng.normal()).collect();
            let (mut want, mut got) = (vec![0f32; m * outf], vec![0f32; m * outf]);
            exact.forward(&x, m, &mut want);
            fast.forward(&x, m, &mut got);
            for t in 0..m {
                let row = t * outf..(t + 1) * outf;
                let err: f32 = got[row.clone()]
                    .iter()
                    .zip(&want[row.clone()])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>()
                    .sqrt();
                let norm: f32 = want[row].iter().map(|b| b * b).sum::<f32>().sqrt();
                assert!(
                    err / norm < 1e-2,
                    "in {inf} out {outf} group {group} m {m} row {t}: relative error {}",
                    err / norm
                );
            }
        }
    }
}

#[test]
fn column_lookup_matches_the_dequantized_matrix() {
    let (inf, outf, group) = (64, 48, 32);
    let dir = tempdir("column");
    let linear = load(&random_linear(&dir, inf, outf, group), inf, outf, group);
    let w = linear.dequantize();
    let mut column = vec![0f32; inf];
    for n in 0..outf {
        linear.column_into(n, &mut column);
        let expected: Vec<f32> = (0..inf).map(|k| w[k * outf + n]).collect();
        assert_eq!(column, expected, "column {n}");
    }
}

#[test]
fn rtn_quantization_reconstructs_within_half_a_step() {
    let (inf, outf, group) = (128, 16, 32);
    let mut rng = Rng::seeded(5);
    let w: Vec<f32> = (0..inf * outf).map(|_| rng.normal()).collect();
    let (qweight, qzeros, scales) = quantize_rtn(&w, outf, inf, group);
    for n in 0..outf {
        for k in 0..inf {
            let g = k / group;
            let q = unpack_word(qweight[k * outf / 8 + n / 8])[n % 8] as f32;
            let z = unpack_word(qzeros[g * outf / 8 + n / 8])[n % 8] as f32;
            let s = scales[g * outf + n].to_f32();
            assert!(
                ((q - z) * s - w[n * inf + k]).abs() <= 0.5 * s + 1e-3 * s.max(1.0),
                "k {k} n {n}"
            );
        }
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3-agent-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn int8_lm_head_tracks_the_f16_matrix() {
    use qwen3_agent::model::dense::DenseMatrix;
    use qwen3_agent::model::int8_matrix::Int8Matrix;
    let (rows, cols) = (300, 256);
    let mut rng = Rng::seeded(9);
    let w: Vec<half::f16> = (0..rows * cols)
        .map(|_| half::f16::from_f32(rng.normal() * 0.05))
        .collect();
    let dir = tempdir("lm-head");
    let bytes = le_bytes(&w);
    write_safetensors(
        &dir,
        vec![LazyTensor {
            name: "w".into(),
            dtype: Dtype::F16,
            shape: vec![rows, cols],
            make: Box::new(move || bytes.clone()),
        }],
        1 << 30,
        &|_, _| {},
    )
    .unwrap();
    let weights = Weights::open(&dir).unwrap();
    let tensor = weights.get("w", &[rows, cols]).unwrap();
    let dense = DenseMatrix::from_tensor(&tensor, rows, cols).unwrap();
    let int8 = Int8Matrix::from_f16_tensor(&tensor, rows, cols)
        .unwrap()
        .expect("f16 with cols % 128 == 0");
    // 1..=9 rows: every row-block size of the kernel (1–4) and blocks after the first; 300 outputs are
    // not a whole number of tasks.
    for m in 1..=9 {
        let x: Vec<f32> = (0..m * cols).map(|_| rng.normal()).collect();
        let (mut want, mut got) = (vec![0f32; m * rows], vec![0f32; m * rows]);
        dense.matmul(&x, m, &mut want);
        int8.matmul(&x, m, &mut got);
        let err: f32 = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        let norm: f32 = want.iter().map(|b| b * b).sum::<f32>().sqrt();
        assert!(err / norm < 1e-2, "m {m}: relative error {}", err / norm);
    }
}

/// The kernels read and write through raw pointers within m × in and m × out values: a slice of
/// another length must stop at an assert (in release builds too, where `debug_assert` is off) with
/// a message that names it, never reach them.
mod wrong_lengths {
    use super::*;
    use qwen3_agent::model::dense::DenseMatrix;
    use qwen3_agent::model::int8_matrix::Int8Matrix;

    const SHAPE: (usize, usize, usize) = (64, 24, 32);

    fn linear(name: &str) -> AwqLinear {
        let (inf, outf, group) = SHAPE;
        load(
            &random_linear(&tempdir(name), inf, outf, group),
            inf,
            outf,
            group,
        )
    }

    #[test]
    #[should_panic(
        expected = "AwqLinear::forward: y holds 47 values, not m × out_features = 2 × 24"
    )]
    fn awq_forward_short_output() {
        linear("short-y").forward(&[0.0; 128], 2, &mut [0.0; 47]);
    }

    #[test]
    #[should_panic(
        expected = "AwqLinear::forward: x holds 63 values, not m × in_features = 1 × 64"
    )]
    fn awq_forward_short_input() {
        linear("short-x").forward(&[0.0; 63], 1, &mut [0.0; 24]);
    }

    #[test]
    #[should_panic(
        expected = "Int8AwqLinear::forward: y holds 23 values, not m × out_features = 1 × 24"
    )]
    fn int8_awq_forward_short_output() {
        Int8AwqLinear::from_awq(linear("int8-short-y")).forward(&[0.0; 64], 1, &mut [0.0; 23]);
    }

    #[test]
    #[should_panic(
        expected = "Int8AwqLinear::forward: x holds 128 values, not m × in_features = 3 × 64"
    )]
    fn int8_awq_forward_rows_miscounted() {
        Int8AwqLinear::from_awq(linear("int8-rows")).forward(&[0.0; 128], 3, &mut [0.0; 72]);
    }

    #[test]
    #[should_panic(
        expected = "AwqLinear::new: qweight holds 192 values, a 96×24 layer with group size 32 needs 288"
    )]
    fn awq_tensors_of_another_shape() {
        let (inf, outf, group) = SHAPE;
        let weights = random_linear(&tempdir("new-shape"), inf, outf, group);
        let tensor = |name, shape: &[usize]| weights.get(name, shape).unwrap();
        AwqLinear::new(
            96,
            outf,
            group,
            tensor("l.qweight", &[inf, outf / 8]).mapped_u32().unwrap(),
            tensor("l.qzeros", &[inf / group, outf / 8])
                .mapped_u32()
                .unwrap(),
            tensor("l.scales", &[inf / group, outf])
                .mapped_f16()
                .unwrap(),
        );
    }

    fn f16_matrix(name: &str, rows: usize, cols: usize) -> Weights {
        let bytes = le_bytes(&vec![half::f16::from_f32(0.5); rows * cols]);
        let dir = tempdir(name);
        let tensor = LazyTensor {
            name: "w".into(),
            dtype: Dtype::F16,
            shape: vec![rows, cols],
            make: Box::new(move || bytes.clone()),
        };
        write_safetensors(&dir, vec![tensor], 1 << 30, &|_, _| {}).unwrap();
        Weights::open(&dir).unwrap()
    }

    #[test]
    #[should_panic(
        expected = "Int8Matrix::matmul: y holds 15 values, not m × out_features = 1 × 16"
    )]
    fn int8_matrix_short_output() {
        let weights = f16_matrix("int8-matrix", 16, 128);
        let tensor = weights.get("w", &[16, 128]).unwrap();
        let matrix = Int8Matrix::from_f16_tensor(&tensor, 16, 128)
            .unwrap()
            .unwrap();
        matrix.matmul(&[0.0; 128], 1, &mut [0.0; 15]);
    }

    #[test]
    #[should_panic(
        expected = "DenseMatrix::matmul: x holds 100 values, not m × in_features = 1 × 128"
    )]
    fn dense_matrix_short_input() {
        let weights = f16_matrix("dense-matrix", 16, 128);
        let tensor = weights.get("w", &[16, 128]).unwrap();
        let matrix = DenseMatrix::from_tensor(&tensor, 16, 128).unwrap();
        matrix.matmul(&[0.0; 100], 1, &mut [0.0; 16]);
    }
}

/// A layer packed by a transcription of AutoAWQ's own writer (`WQLinear_GEMM.from_linear`, see
/// scripts/autoawq_pack_fixture.py), not by our `pack_word`: our unpacking must give back its ints,
/// our packing its words, and the layer's weights must be (q − z) · s of those ints.
#[test]
fn a_layer_packed_by_autoawq_unpacks_to_its_ints() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/autoawq-pack");
    let weights = Weights::open(&dir).unwrap();
    let (inf, outf, group) = (128, 64, 32);
    let ints = |name: &str, rows: usize| -> Vec<u8> {
        let tensor = weights.get(name, &[rows, outf]).unwrap();
        let values = tensor.mapped_u32().unwrap();
        assert!(values.iter().all(|&v| v < 16), "{name} holds 4-bit ints");
        values.iter().map(|&v| v as u8).collect()
    };
    let (q, z) = (
        ints("expected.intweight", inf),
        ints("expected.zeros", inf / group),
    );
    let words = outf / 8;
    for (name, rows, expected) in [("l.qweight", inf, &q), ("l.qzeros", inf / group, &z)] {
        let packed = weights
            .get(name, &[rows, words])
            .unwrap()
            .mapped_u32()
            .unwrap();
        for (i, &word) in packed.iter().enumerate() {
            let logical: [u8; 8] = std::array::from_fn(|j| expected[i * 8 + j]);
            assert_eq!(unpack_word(word), logical, "{name} word {i}");
            assert_eq!(pack_word(logical), word, "{name} word {i}");
        }
    }
    let scales = weights.get("l.scales", &[inf / group, outf]).unwrap();
    let scales = scales.mapped_f16().unwrap();
    let w = load(&weights, inf, outf, group).dequantize();
    for k in 0..inf {
        for n in 0..outf {
            let g = k / group;
            let want =
                (q[k * outf + n] as f32 - z[g * outf + n] as f32) * scales[g * outf + n].to_f32();
            assert_eq!(w[k * outf + n], want, "W[{k}][{n}]");
        }
    }
}
