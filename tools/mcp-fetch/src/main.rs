//! `mcp-fetch`: an MCP stdio server with the reference `mcp-server-fetch`'s `fetch` tool (same name,
//! arguments, defaults, paging and `<error>` notes): fetches a URL, turns HTML into markdown after a
//! readability pass, honours robots.txt unless told not to, refuses private and loopback addresses
//! unless allowed, caps the response size and follows redirects (each hop checked).

mod page;

use clap::Parser;
use page::{Fetcher, Settings};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};

const DESCRIPTION: &str = "Fetches a URL from the internet and optionally extracts its contents as markdown.\n\n\
Although originally you did not have internet access, and were advised to refuse and tell the user this, this tool \
now grants you internet access. Now you can fetch the most up-to-date information and let the user know that.";

/// MCP fetch server: web pages as markdown, paged.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The User-Agent sent with every request.
    #[arg(long)]
    user_agent: Option<String>,
    /// Fetch pages even where robots.txt disallows it.
    #[arg(long)]
    ignore_robots_txt: bool,
    /// Send every request through this proxy (HTTP_PROXY and friends are honoured otherwise).
    #[arg(long)]
    proxy_url: Option<String>,
    /// Allow private, loopback and link-local addresses (refused by default).
    #[arg(long)]
    allow_private_ips: bool,
    /// Largest response body read, in bytes; longer bodies are cut there.
    #[arg(long, default_value_t = 10 << 20)]
    max_response_bytes: usize,
}

struct FetchServer {
    fetcher: Fetcher,
}

fn schema() -> Map<String, Value> {
    let value = json!({
        "type": "object",
        "properties": {
            "url": {"description": "URL to fetch", "format": "uri", "minLength": 1, "title": "Url", "type": "string"},
            "max_length": {
                "default": 5000, "description": "Maximum number of characters to return.", "maximum": 999999,
                "minimum": 1, "title": "Max Length", "type": "integer"
            },
            "start_index": {
                "default": 0,
                "description": "On return output starting at this character index, useful if a previous fetch was truncated and more context is required.",
                "minimum": 0, "title": "Start Index", "type": "integer"
            },
            "raw": {
                "default": false,
                "description": "Get the actual HTML content of the requested page, without simplification.",
                "title": "Raw", "type": "boolean"
            }
        },
        "required": ["url"],
        "title": "fetchArguments"
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("the schema is an object"),
    }
}

/// The arguments, checked as strictly as the reference (an integer given as "10" is an error).
struct FetchArgs {
    url: String,
    max_length: usize,
    start_index: usize,
    raw: bool,
}

fn parse_args(args: &Map<String, Value>) -> Result<FetchArgs, String> {
    let url = match args.get("url") {
        Some(Value::String(s)) if reqwest::Url::parse(s).is_ok() => s.clone(),
        Some(Value::String(s)) => return Err(format!("url: {s:?} is not a valid URL")),
        Some(_) => return Err("url: Input should be a valid URL string".into()),
        None => return Err("url: Field required".into()),
    };
    let integer = |key: &str, default: u64, min: u64, max: u64| -> Result<usize, String> {
        match args.get(key) {
            None => Ok(default as usize),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(v as usize),
                _ => Err(format!(
                    "{key}: Input should be an integer between {min} and {max}"
                )),
            },
            Some(_) => Err(format!("{key}: Input should be a valid integer")),
        }
    };
    let raw = match args.get("raw") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("raw: Input should be a valid boolean".into()),
    };
    Ok(FetchArgs {
        url,
        max_length: integer("max_length", 5000, 1, 999_999)?,
        start_index: integer("start_index", 0, 0, u64::MAX)?,
        raw,
    })
}

/// The reference's paging: characters [start, start + max_length), with a note saying where to go on.
fn page_of(content: &str, start_index: usize, max_length: usize) -> String {
    let total = content.chars().count();
    if start_index >= total {
        return "<error>No more content available.</error>".into();
    }
    let piece: String = content.chars().skip(start_index).take(max_length).collect();
    let taken = piece.chars().count();
    let remaining = total - (start_index + taken);
    if taken == max_length && remaining > 0 {
        let next = start_index + taken;
        format!(
            "{piece}\n\n<error>Content truncated. Call the fetch tool with a start_index of {next} to get more content.</error>"
        )
    } else {
        piece
    }
}

impl ServerHandler for FetchServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-fetch", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tool = Tool::new("fetch", DESCRIPTION, schema());
        tool.annotations = Some(
            ToolAnnotations::default()
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(true),
        );
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "fetch" {
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {}", request.name),
                None,
            ));
        }
        let args = request.arguments.unwrap_or_default();
        let outcome = match parse_args(&args) {
            Ok(a) => self
                .fetcher
                .fetch(&a.url, a.raw)
                .await
                .map(|(content, prefix)| {
                    format!(
                        "{prefix}Contents of {}:\n{}",
                        a.url,
                        page_of(&content, a.start_index, a.max_length)
                    )
                }),
            Err(e) => Err(e),
        };
        Ok(match outcome {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                "Error executing tool fetch: {e}"
            ))]),
        }
        .into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings {
        user_agent: args.user_agent.unwrap_or_else(|| {
            "ModelContextProtocol/1.0 (Autonomous; +https://github.com/modelcontextprotocol/servers)".into()
        }),
        check_robots: !args.ignore_robots_txt,
        allow_private_ips: args.allow_private_ips,
        max_response_bytes: args.max_response_bytes,
    };
    let fetcher = Fetcher::new(settings, args.proxy_url.as_deref())?;
    FetchServer { fetcher }
        .serve(rmcp::transport::stdio())
        .await?
        .waiting()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_matches_the_reference() {
        assert_eq!(page_of("abcdef", 0, 10), "abcdef");
        assert_eq!(
            page_of("abcdef", 0, 4),
            "abcd\n\n<error>Content truncated. Call the fetch tool with a start_index of 4 to get more content.</error>"
        );
        assert_eq!(page_of("abcdef", 4, 4), "ef");
        assert_eq!(
            page_of("abcdef", 6, 4),
            "<error>No more content available.</error>"
        );
        assert_eq!(
            page_of("héllo wörld", 1, 4)
                .chars()
                .take(4)
                .collect::<String>(),
            "éllo",
            "characters, not bytes"
        );
    }

    #[test]
    fn arguments_are_strict() {
        let args = |v: Value| parse_args(v.as_object().unwrap());
        assert!(args(json!({"url": "http://example.com/"})).is_ok());
        assert!(args(json!({"url": "http://example.com/", "max_length": "10"})).is_err());
        assert!(args(json!({"url": "http://example.com/", "max_length": 0})).is_err());
        assert!(args(json!({"url": "http://example.com/", "raw": "yes"})).is_err());
        assert!(args(json!({"url": "not a url"})).is_err());
    }
}
