//! The committed demo model through the real loop (our own mcp-time and mcp-fetch, the sandbox): the README's demo tasks, the held-out
//! evaluation (a regression guard; the model card reports the measured numbers), and the tool
//! schemas it was trained on matching what the demo agent renders.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn qwen3_agent(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .current_dir(ROOT)
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        out.status.success(),
    )
}

/// agents/demo.yaml with the local time zone pinned to UTC (as scripts/demo/tools.json renders it).
fn demo_agent_in_utc() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3-agent-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(Path::new(ROOT).join("agents/demo.yaml")).unwrap();
    let text = text
        .replace(
            "path: ../models/qwen3-agent-demo",
            &format!("path: {ROOT}/models/qwen3-agent-demo"),
        )
        .replace(
            "command: mcp-time",
            &format!(
                "command: {}\n    args: [--local-timezone=UTC]",
                bin_dir().join("mcp-time").display()
            ),
        );
    let path = dir.join("demo.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn demo_tasks_run_from_a_fresh_checkout() {
    for task in ["agents/tasks/demo-time.yaml", "agents/tasks/demo-code.yaml"] {
        let (stdout, stderr, ok) = qwen3_agent(&["run", task]);
        assert!(ok, "{task} failed:\n{stdout}\n{stderr}");
    }
}

#[test]
fn the_demo_agent_renders_exactly_the_tools_the_model_was_trained_on() {
    let agent = demo_agent_in_utc();
    let (stdout, stderr, ok) = qwen3_agent(&["tools", agent.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let rendered: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let trained: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("scripts/demo/tools.json")).unwrap(),
    )
    .unwrap();
    // Compared as text: key order is part of the prompt the model reads.
    assert_eq!(
        serde_json::to_string(&rendered).unwrap(),
        serde_json::to_string(&trained).unwrap()
    );
}

/// `eval` of the held-out cases with `extra` flags: the summary and each case's verdict.
fn evaluate(extra: &[&str]) -> (serde_json::Value, Vec<serde_json::Value>) {
    let report = std::env::temp_dir().join(format!(
        "qwen3-agent-demo-report-{}-{}.json",
        std::process::id(),
        extra.join("")
    ));
    // Measured 0.92–0.93 / 0.92–0.93 over four sampling seeds on this machine (see
    // models/qwen3-agent-demo/README.md); the floors are issue 8's acceptance targets.
    let mut args = vec![
        "eval",
        "agents/demo.yaml",
        "tests/fixtures/demo/eval_cases.jsonl",
        "--report",
        report.to_str().unwrap(),
        "--min-tool-accuracy",
        "0.9",
        "--min-answer-accuracy",
        "0.85",
    ];
    args.extend(extra);
    let (stdout, stderr, ok) = qwen3_agent(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["cases"], 100);
    assert_eq!(
        summary["failed_runs"], 0,
        "every case's run ended without an error"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (summary, report["cases"].as_array().unwrap().clone())
}

#[test]
fn held_out_evaluation_stays_at_its_measured_level_sequential_and_parallel() {
    let (sequential, one_by_one) = evaluate(&[]);
    // Four agents at once on one batched model: the same ids, so the same verdicts.
    let (parallel, batched) = evaluate(&["--parallel", "4"]);
    assert_eq!(parallel["parallel"], 4);
    for (alone, together) in one_by_one.iter().zip(&batched) {
        assert_eq!(alone["prompt"], together["prompt"]);
        assert_eq!(
            alone["calls"][0], together["calls"][0],
            "{}",
            alone["prompt"]
        );
        assert_eq!(alone["right_call"], together["right_call"]);
        // The current time differs between the two runs, and so may what follows it.
        let task = alone["task"].as_str().unwrap();
        if !matches!(task, "task_time_now" | "task_time_two") {
            assert_eq!(alone["answer"], together["answer"], "{}", alone["prompt"]);
            assert_eq!(alone["answer_has_result"], together["answer_has_result"]);
        }
    }
    eprintln!(
        "eval wall clock: sequential {:.1} s, --parallel 4 {:.1} s",
        sequential["wall_seconds"], parallel["wall_seconds"]
    );
}

/// The copy-heavy prompts of BENCHMARKS.md's speculation section (echo requests, answers quoting a
/// fetched page), as `generate --messages` reads them.
fn copy_prompts() -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join("tests/fixtures/demo/copy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "copy prompts missing in {}",
        dir.display()
    );
    files
}

/// `generate --json` on a messages file: the ids and the timings.
fn generate_ids(
    messages: &Path,
    speculation: &str,
    sampling: &[&str],
) -> (Vec<u64>, serde_json::Value) {
    let model = Path::new(ROOT).join("models/qwen3-agent-demo");
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--messages",
        messages.to_str().unwrap(),
        "--device",
        "cpu",
        "--speculation",
        speculation,
        "--json",
    ];
    args.extend(sampling);
    let (stdout, stderr, ok) = qwen3_agent(&args);
    assert!(ok, "{stderr}");
    let out: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let ids = out["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap())
        .collect();
    (ids, out["timings"].clone())
}

#[test]
fn speculation_gives_the_ids_of_sequential_decoding_greedy_and_seeded() {
    let samplings: [&[&str]; 2] = [
        &["--temperature", "0"],
        &[
            "--temperature",
            "0.6",
            "--top-k",
            "20",
            "--top-p",
            "0.95",
            "--seed",
            "7",
        ],
    ];
    for sampling in samplings {
        let mut accepted = 0;
        for prompt in copy_prompts() {
            let (plain, _) = generate_ids(&prompt, "off", sampling);
            let (speculative, timings) = generate_ids(&prompt, "prompt_lookup", sampling);
            assert_eq!(speculative, plain, "{} {sampling:?}", prompt.display());
            assert_eq!(timings["decode_tokens"].as_u64(), Some(plain.len() as u64));
            accepted += timings["accepted_tokens"].as_u64().unwrap();
        }
        // Drafts were accepted, so the equality covers tokens taken from verify passes.
        assert!(accepted > 10, "{sampling:?}: {accepted} accepted");
    }
}

/// `run --json` on task files: its JSON (an object for one run, an array for several).
fn run_json(tasks: &[&Path], extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", "--json"];
    args.extend(tasks.iter().map(|t| t.to_str().unwrap()));
    args.extend(extra);
    let (stdout, stderr, ok) = qwen3_agent(&args);
    assert!(ok, "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn several_tasks_and_a_prompts_list_answer_as_each_does_alone_greedy() {
    let agent = demo_agent_in_utc();
    let dir = agent.parent().unwrap();
    let prompts = [
        "Convert 09:30 from Paris to New York.",
        "What is 37 * 48?",
        "Convert 18:00 from Tokyo to London.",
    ];
    let task = |name: &str, input: &str| {
        let path = dir.join(name);
        let text = format!(
            "agent: {}\ngenerate: {{temperature: 0}}\n{input}\n",
            agent.display()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let alone: Vec<serde_json::Value> = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let file = task(&format!("alone-{i}.yaml"), &format!("prompt: {prompt:?}"));
            run_json(&[&file], &[])
        })
        .collect();
    let listed = task(
        "listed.yaml",
        &format!("prompts: [{:?}, {:?}]", prompts[0], prompts[1]),
    );
    let single = task("single.yaml", &format!("prompt: {:?}", prompts[2]));
    // Three agents at once on one batched model: the same ids, so the same conversations.
    let together = run_json(&[&listed, &single], &["--parallel", "3"]);
    let together = together.as_array().unwrap();
    assert_eq!(together.len(), 3);
    let labels = [
        format!("{}#1", listed.display()),
        format!("{}#2", listed.display()),
        single.display().to_string(),
    ];
    for ((alone, together), label) in alone.iter().zip(together).zip(labels) {
        assert_eq!(together["label"], label.as_str());
        assert_eq!(alone["stop_reason"], "answer", "{alone}");
        assert_eq!(alone["messages"], together["messages"], "{label}");
        assert_eq!(alone["content"], together["content"], "{label}");
    }
    assert!(
        together[1]["content"].as_str().unwrap().contains("1776"),
        "{}",
        together[1]
    );
}
