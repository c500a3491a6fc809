//! Every agent and task file we ship parses and resolves (paths, tools, servers), so users copying
//! them start from valid files.

use qwen3_agent::config;
use std::path::Path;

fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_agents_and_tasks_load() {
    let agents = yaml_files("agents");
    assert!(agents.len() >= 7, "{agents:?}");
    for file in agents {
        let agent =
            config::load_agent(&file).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        config::mcp_servers(&agent).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
    }
    for file in yaml_files("agents/tasks") {
        config::load_task(&file).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
    }
    let coder =
        config::load_agent(&Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/coder.yaml"))
            .unwrap();
    let inputs = &coder.agent.tools.code_interpreter.as_ref().unwrap().inputs;
    assert!(
        inputs[0].join("sample.csv").is_file(),
        "inputs resolve against the agent file: {inputs:?}"
    );
}
