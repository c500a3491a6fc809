//! `mcp-time`: an MCP stdio server with `get_current_time` and `convert_time`, schema-compatible with
//! the reference `mcp-server-time` (same tool names, argument names, schemas, output text,
//! `structuredContent` and error texts), so default agents need neither Python nor `uvx`.
//! Time zones come from the IANA database bundled into the binary (jiff), never from the host.

mod time;

use clap::Parser;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use time::ToolFailure;

/// MCP time server: current time and conversions between IANA time zones.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The zone the tool descriptions offer as the default (detected from the system when left out).
    #[arg(long)]
    local_timezone: Option<String>,
}

struct TimeServer {
    local_timezone: String,
}

impl TimeServer {
    fn tools(&self) -> Vec<Tool> {
        let local = &self.local_timezone;
        let zone = |prefix: &str, example: &str, which: &str| {
            format!(
                "{prefix}IANA timezone name (e.g., {example}). Use '{local}' as local timezone if no {which}timezone \
                 provided by the user."
            )
        };
        let read_only = ToolAnnotations::default()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false);
        let get = json!({
            "type": "object",
            "properties": {
                "timezone": {
                    "description": zone("", "'America/New_York', 'Europe/London'", ""),
                    "title": "Timezone", "type": "string"
                }
            },
            "required": ["timezone"], "title": "get_current_timeArguments"
        });
        let convert = json!({
            "type": "object",
            "properties": {
                "source_timezone": {
                    "description": zone("Source ", "'America/New_York', 'Europe/London'", "source "),
                    "title": "Source Timezone", "type": "string"
                },
                "time": {"description": "Time to convert in 24-hour format (HH:MM)", "title": "Time", "type": "string"},
                "target_timezone": {
                    "description": zone("Target ", "'Asia/Tokyo', 'America/San_Francisco'", "target "),
                    "title": "Target Timezone", "type": "string"
                }
            },
            "required": ["source_timezone", "time", "target_timezone"], "title": "convert_timeArguments"
        });
        let mut get_tool = Tool::new(
            GET_CURRENT_TIME,
            "Get current time in a specific timezone",
            object(get),
        );
        get_tool.output_schema = Some(Arc::new(object(time_result_schema())));
        get_tool.annotations = Some(read_only.clone());
        let mut convert_tool = Tool::new(
            CONVERT_TIME,
            "Convert time between timezones",
            object(convert),
        );
        convert_tool.output_schema = Some(Arc::new(object(conversion_schema())));
        convert_tool.annotations = Some(read_only);
        vec![get_tool, convert_tool]
    }

    fn call(&self, name: &str, args: &Map<String, Value>) -> Result<Value, ToolFailure> {
        let text = |key: &str| -> Result<String, ToolFailure> {
            match args.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::String(_)) | None => {
                    Err(ToolFailure(format!("Missing required argument: {key}")))
                }
                Some(other) => Err(ToolFailure(format!(
                    "Input should be a valid string for {key}, got {other}"
                ))),
            }
        };
        match name {
            GET_CURRENT_TIME => time::current_time(&text("timezone")?),
            CONVERT_TIME => time::convert_time(
                &text("source_timezone")?,
                &text("time")?,
                &text("target_timezone")?,
            ),
            _ => unreachable!("unknown tools are rejected before dispatch"),
        }
    }
}

/// The reference server's tool names.
const GET_CURRENT_TIME: &str = "get_current_time";
const CONVERT_TIME: &str = "convert_time";

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("schemas are JSON objects"),
    }
}

fn time_result_properties() -> Value {
    json!({
        "timezone": {"title": "Timezone", "type": "string"},
        "datetime": {"title": "Datetime", "type": "string"},
        "day_of_week": {"title": "Day Of Week", "type": "string"},
        "is_dst": {"title": "Is Dst", "type": "boolean"}
    })
}

fn time_result_schema() -> Value {
    json!({
        "properties": time_result_properties(),
        "required": ["timezone", "datetime", "day_of_week", "is_dst"], "type": "object", "title": "TimeResult"
    })
}

fn conversion_schema() -> Value {
    json!({
        "properties": {
            "source": {"$ref": "#/$defs/TimeResult"},
            "target": {"$ref": "#/$defs/TimeResult"},
            "time_difference": {"title": "Time Difference", "type": "string"}
        },
        "required": ["source", "target", "time_difference"], "type": "object",
        "$defs": {"TimeResult": {
            "properties": time_result_properties(),
            "required": ["timezone", "datetime", "day_of_week", "is_dst"], "title": "TimeResult", "type": "object"
        }},
        "title": "TimeConversionResult"
    })
}

impl ServerHandler for TimeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-time", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        if ![GET_CURRENT_TIME, CONVERT_TIME].contains(&name.as_str()) {
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {name}"),
                None,
            ));
        }
        let args = request.arguments.unwrap_or_default();
        Ok(match self.call(&name, &args) {
            Ok(value) => {
                let text = serde_json::to_string_pretty(&value).expect("JSON values serialize");
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(value);
                result
            }
            Err(ToolFailure(message)) => CallToolResult::error(vec![ContentBlock::text(format!(
                "Error executing tool {name}: {message}"
            ))]),
        }
        .into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let local_timezone = match args.local_timezone {
        Some(name) => {
            time::zone(&name).map_err(|ToolFailure(e)| anyhow::anyhow!("--local-timezone: {e}"))?;
            name
        }
        None => time::system_zone_name(),
    };
    let service = TimeServer { local_timezone }
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}
