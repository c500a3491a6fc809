//! A local HTTP server that speaks the OpenAI streaming format: one scripted response per connection,
//! request bodies recorded.

use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct FakeServer {
    /// The base URL, ending in `/v1`.
    pub url: String,
    /// The JSON bodies received, in order.
    pub bodies: Arc<Mutex<Vec<Json>>>,
}

/// Reads one HTTP request from `stream`; returns its JSON body and the stream for the answer.
pub fn read_request(stream: TcpStream) -> (Json, TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut request = vec![0u8; length];
    reader.read_exact(&mut request).unwrap();
    (
        serde_json::from_slice(&request).unwrap(),
        reader.into_inner(),
    )
}

/// Answers the i-th connection with `responses[i]` (status, body): 200 as an event stream, others as JSON.
pub fn serve(responses: Vec<(u16, String)>) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let recorded = bodies.clone();
    std::thread::spawn(move || {
        for (status, body) in responses {
            let (stream, _) = listener.accept().unwrap();
            let (request, mut stream) = read_request(stream);
            recorded.lock().unwrap().push(request);
            let kind = if status == 200 {
                "text/event-stream"
            } else {
                "application/json"
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body.as_bytes()).unwrap();
        }
    });
    FakeServer { url, bodies }
}

/// An event stream of these chunks, then `[DONE]`.
pub fn sse(chunks: &[Json]) -> String {
    chunks
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect::<String>()
        + "data: [DONE]\n\n"
}

/// A chunk whose only choice carries `delta`.
pub fn delta(d: Json) -> Json {
    json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]})
}

/// The chunk that ends the choice with `reason`.
pub fn finish(reason: &str) -> Json {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}
