//! The loop on the scripted backend calling real tools: our mcp-time server and the code interpreter
//! (wasm Python), over several rounds, with the exact tool results fed back through the template.

mod common;

use common::run_json;

#[test]
fn a_scripted_agent_uses_a_real_mcp_server_and_the_sandbox_across_rounds() {
    let root = env!("CARGO_MANIFEST_DIR");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_qwen3-agent"));
    let dir = std::env::temp_dir().join(format!("qwen3-agent-real-tools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = [
        "<think>\nI need the time first.\n</think>\n\n<tool_call>\n{\"name\": \"convert_time\", \"arguments\": {\"source_timezone\": \"Asia/Kathmandu\", \"time\": \"09:30\", \"target_timezone\": \"UTC\"}}\n</tool_call>",
        "<think>\nNow compute with the offset.\n</think>\n\n<tool_call>\n{\"name\": \"code_interpreter\", \"arguments\": {\"code\": \"offset = 5.75\\nprint(offset * 60)\"}}\n</tool_call>",
        "<think>\nState must persist.\n</think>\n\n<tool_call>\n{\"name\": \"code_interpreter\", \"arguments\": {\"code\": \"offset * 2\"}}\n</tool_call>",
        "<think>\nAnswer.\n</think>\n\nKathmandu is 345 minutes ahead of UTC.",
    ];
    let agent = format!(
        "name: real-tools\nmodel:\n  backend: scripted\n  path: {root}/tests/fixtures/qwen3-tokenizer\n  script: {}\n\
         tools:\n  code_interpreter: {{timeout: 20}}\nmcpServers:\n  time:\n    command: {}\n",
        serde_json::to_string(&script).unwrap(),
        bin.with_file_name("mcp-time").display()
    );
    std::fs::write(dir.join("agent.yaml"), agent).unwrap();
    std::fs::write(
        dir.join("task.yaml"),
        "agent: agent.yaml\nprompt: How many minutes ahead of UTC is Kathmandu?\nexpect:\n  tools_called: [convert_time, code_interpreter]\n  contains: [\"345\"]\n",
    )
    .unwrap();
    let transcript = dir.join("transcript.jsonl");
    let result = run_json(&dir, "task.yaml", &transcript);
    let tools: Vec<&str> = result["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    // The time server's own result, whole: 09:30 in Kathmandu (UTC+5:45) is 03:45 UTC.
    let converted: serde_json::Value = serde_json::from_str(tools[0]).unwrap();
    assert_eq!(converted["time_difference"], "-5.75h", "{converted}");
    assert_eq!(converted["source"]["timezone"], "Asia/Kathmandu");
    assert_eq!(converted["target"]["timezone"], "UTC");
    let at = |side: &str| converted[side]["datetime"].as_str().unwrap()[11..19].to_string();
    assert_eq!(
        (at("source"), at("target")),
        ("09:30:00".into(), "03:45:00".into())
    );
    assert_eq!(&tools[1..], ["345.0", "11.5"]);
    // The second prompt holds the first result exactly as the template wraps it.
    let log: Vec<serde_json::Value> = std::fs::read_to_string(&transcript)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let prompts: Vec<&str> = log
        .iter()
        .filter(|l| l["event"] == "model_call")
        .map(|l| l["prompt"].as_str().unwrap())
        .collect();
    assert!(
        prompts[2].ends_with(&format!(
            "<|im_start|>user\n<tool_response>\n{}\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\nNow compute with the offset.\n</think>\n\n\
             <tool_call>\n{{\"name\": \"code_interpreter\", \"arguments\": {{\"code\": \"offset = 5.75\\nprint(offset * 60)\"}}}}\n</tool_call><|im_end|>\n\
             <|im_start|>user\n<tool_response>\n345.0\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
            tools[0]
        )),
        "{}",
        prompts[2]
    );
    assert_eq!(result["content"], "Kathmandu is 345 minutes ahead of UTC.");
    assert_eq!(result["rounds"], 4);
}
