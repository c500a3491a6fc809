//! The CPU decode matmuls in isolation, on a real checkpoint's shapes (a `synth --preset qwen3-8b`
//! directory): the read bandwidth of the pool, every layer's AWQ linears run once as a decode step runs
//! them, the largest linear (gate_proj, cycled over all layers so it streams from DRAM, not L3) at
//! m = 1, 2, 4, 8 rows, and the int8 lm_head. Each line gives time per call and the weight bytes streamed
//! per second, so a kernel change is judged against the machine's bandwidth in the same run.
//!
//! Usage: cargo run --release --example cpu_kernels -- [MODEL_DIR] [THREADS] [REPEATS]
//! (defaults /tmp/q8b, 2, 5; the best of REPEATS sweeps counts, the median is printed beside it).

use qwen3_agent::model::Qwen3Config;
use qwen3_agent::model::awq::AwqLinear;
use qwen3_agent::model::awq_int8::Int8AwqLinear;
use qwen3_agent::model::bandwidth::read_bytes_per_s;
use qwen3_agent::model::int8_matrix::Int8Matrix;
use qwen3_agent::model::weights::Weights;
use std::path::PathBuf;
use std::time::Instant;

const LINEARS: [(&str, Dim, Dim); 7] = [
    ("self_attn.q_proj", Dim::Hidden, Dim::Heads),
    ("self_attn.k_proj", Dim::Hidden, Dim::KvHeads),
    ("self_attn.v_proj", Dim::Hidden, Dim::KvHeads),
    ("self_attn.o_proj", Dim::Heads, Dim::Hidden),
    ("mlp.gate_proj", Dim::Hidden, Dim::Inter),
    ("mlp.up_proj", Dim::Hidden, Dim::Inter),
    ("mlp.down_proj", Dim::Inter, Dim::Hidden),
];

#[derive(Clone, Copy)]
enum Dim {
    Hidden,
    Heads,
    KvHeads,
    Inter,
}

impl Dim {
    fn of(self, c: &Qwen3Config) -> usize {
        match self {
            Dim::Hidden => c.hidden_size,
            Dim::Heads => c.num_attention_heads * c.head_dim(),
            Dim::KvHeads => c.num_key_value_heads * c.head_dim(),
            Dim::Inter => c.intermediate_size,
        }
    }
}

fn load(weights: &Weights, prefix: &str, inf: usize, outf: usize, group: usize) -> Int8AwqLinear {
    let groups = inf / group;
    let tensor = |name: &str, shape: &[usize]| weights.get(&format!("{prefix}.{name}"), shape);
    Int8AwqLinear::from_awq(AwqLinear::new(
        inf,
        outf,
        group,
        tensor("qweight", &[inf, outf / 8])
            .unwrap()
            .mapped_u32()
            .unwrap(),
        tensor("qzeros", &[groups, outf / 8])
            .unwrap()
            .mapped_u32()
            .unwrap(),
        tensor("scales", &[groups, outf])
            .unwrap()
            .mapped_f16()
            .unwrap(),
    ))
}

/// Best and median seconds of `repeats` runs of `f`.
fn time(repeats: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut runs: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[0], runs[repeats / 2])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/q8b".into()));
    let threads: usize = args.next().map_or(2, |a| a.parse().expect("THREADS"));
    let repeats: usize = args.next().map_or(5, |a| a.parse().expect("REPEATS"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let config = Qwen3Config::load(&dir).unwrap();
    let group = config.awq().unwrap().expect("an AWQ checkpoint").group_size;
    let weights = Weights::open(&dir).unwrap();
    let layers: Vec<Vec<Int8AwqLinear>> = pool.install(|| {
        (0..config.num_hidden_layers)
            .map(|i| {
                LINEARS
                    .iter()
                    .map(|(name, inf, outf)| {
                        let prefix = format!("model.layers.{i}.{name}");
                        load(&weights, &prefix, inf.of(&config), outf.of(&config), group)
                    })
                    .collect()
            })
            .collect()
    });
    let head = pool.install(|| {
        let (vocab, h) = (config.vocab_size, config.hidden_size);
        Int8Matrix::from_f16_tensor(
            &weights.get("lm_head.weight", &[vocab, h]).unwrap(),
            vocab,
            h,
        )
        .unwrap()
        .expect("an f16 lm_head")
    });
    pool.install(|| {
        let bandwidth = read_bytes_per_s();
        println!(
            "read bandwidth: {:.1} GB/s ({threads} threads)",
            bandwidth / 1e9
        );
        let report = |label: &str, calls: usize, bytes: usize, (best, median): (f64, f64)| {
            println!(
                "{label}: {:.3} ms per call (median {:.3}), {:.1} GB/s = {:.0}% of the probe",
                best * 1e3 / calls as f64,
                median * 1e3 / calls as f64,
                bytes as f64 / best / 1e9,
                100.0 * bytes as f64 / best / bandwidth
            );
        };
        let input = |len: usize, m: usize| -> Vec<f32> {
            (0..len * m)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        // One decode step's linears in order, with no attention in between.
        let step_bytes: usize = layers.iter().flatten().map(|l| l.bytes()).sum();
        let mut buffers: Vec<(Vec<f32>, Vec<f32>)> = layers[0]
            .iter()
            .map(|l| (input(l.in_features, 1), vec![0f32; l.out_features]))
            .collect();
        let calls = layers.len() * LINEARS.len();
        let sweep = time(repeats, || {
            for layer in &layers {
                for (l, (x, y)) in layer.iter().zip(buffers.iter_mut()) {
                    l.forward(x, 1, y);
                }
            }
        });
        report(
            &format!("all {calls} linears of a step, m = 1"),
            calls,
            step_bytes,
            sweep,
        );
        let gate = 4;
        let (inf, outf) = (layers[0][gate].in_features, layers[0][gate].out_features);
        let one = sweep_gate(&layers, gate, inf, outf, 1, repeats, &input);
        for m in [1, 2, 4, 8] {
            let t = if m == 1 {
                one
            } else {
                sweep_gate(&layers, gate, inf, outf, m, repeats, &input)
            };
            let bytes: usize = layers.iter().map(|l| l[gate].bytes()).sum();
            report(
                &format!(
                    "{} {inf}→{outf}, m = {m} ({:.2}× m = 1)",
                    LINEARS[gate].0,
                    t.0 / one.0
                ),
                layers.len(),
                bytes,
                t,
            );
        }
        let x = input(config.hidden_size, 1);
        let mut y = vec![0f32; config.vocab_size];
        let t = time(repeats, || head.matmul(&x, 1, &mut y));
        report("lm_head int8, m = 1", 1, head.bytes(), t);
    });
}

/// Runs one layer's linear `which` over every layer in turn with m rows (so it streams from DRAM).
fn sweep_gate(
    layers: &[Vec<Int8AwqLinear>],
    which: usize,
    inf: usize,
    outf: usize,
    m: usize,
    repeats: usize,
    input: &dyn Fn(usize, usize) -> Vec<f32>,
) -> (f64, f64) {
    let x = input(inf, m);
    let mut y = vec![0f32; outf * m];
    time(repeats, || {
        for layer in layers {
            layer[which].forward(&x, m, &mut y);
        }
    })
}
