//! OAuth 2.1 for Streamable HTTP servers, through rmcp's `auth` support: `login` discovers the
//! server's protected-resource and authorization-server metadata, registers this client dynamically,
//! and runs the authorization-code flow with PKCE, its redirect caught by a loopback listener; the
//! tokens are kept per server URL in the user's config dir (`qwen3-agent/mcp-oauth/`, files 0600),
//! sent with every request of later runs and refreshed when they expire. Tokens are never printed,
//! logged or put in a transcript: only rmcp and the token file see them.

use anyhow::{Context, Result, bail};
use rmcp::transport::auth::{
    AuthClient, AuthError, AuthorizationManager, AuthorizationRequest, CredentialStore, OAuthState,
    StoredCredentials,
};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

/// How long `login` waits for the browser to come back to the loopback listener.
const LOGIN_WAIT: Duration = Duration::from_secs(300);

/// The page the browser is shown once the redirect reached us.
const DONE_PAGE: &str = "<!doctype html><title>qwen3-agent</title><p>Signed in: you can close this \
                         tab and go back to the terminal.</p>";

/// The file a server's tokens are kept in: one per URL, named by its hash (a URL may hold anything).
pub fn token_file(url: &str) -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context(
            "neither XDG_CONFIG_HOME nor HOME is set, so there is no config dir for OAuth tokens",
        )?)
        .join(".config"),
    };
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Ok(base
        .join("qwen3-agent")
        .join("mcp-oauth")
        .join(format!("{name}.json")))
}

/// The tokens of one server, in their file (created 0600, in a 0700 directory, replaced whole).
struct TokenFile(PathBuf);

#[async_trait::async_trait]
impl CredentialStore for TokenFile {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        match std::fs::read(&self.0) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                AuthError::CredentialStoreError(format!(
                    "{} is not a token file ({e}); `qwen3-agent mcp logout` removes it",
                    self.0.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_error(&self.0, e)),
        }
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let bytes = serde_json::to_vec(&credentials)
            .map_err(|e| AuthError::CredentialStoreError(e.to_string()))?;
        write_private(&self.0, &bytes).map_err(|e| store_error(&self.0, e))
    }

    async fn clear(&self) -> Result<(), AuthError> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(store_error(&self.0, e)),
            _ => Ok(()),
        }
    }
}

fn store_error(path: &std::path::Path, e: std::io::Error) -> AuthError {
    AuthError::CredentialStoreError(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` readable by its owner only: a fresh 0600 file renamed over the old one,
/// in a directory made 0700.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().expect("token files are in a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let fresh = path.with_extension(format!("json.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&fresh)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&fresh, path)
}

/// An HTTP client that sends the stored token of `url`'s server (refreshed when it expires), or
/// `None` when no one logged in to it.
pub(super) async fn authorized_client(url: &str) -> Result<Option<AuthClient<reqwest::Client>>> {
    let store = TokenFile(token_file(url)?);
    if store.load().await?.is_none() {
        return Ok(None);
    }
    let mut manager = AuthorizationManager::new(url)
        .await
        .context("reading the server's OAuth metadata")?;
    manager.set_credential_store(store);
    if !manager
        .initialize_from_store()
        .await
        .context("reading the saved OAuth tokens")?
    {
        return Ok(None);
    }
    Ok(Some(AuthClient::new(reqwest::Client::new(), manager)))
}

/// Signs in to the server at `url`: `show_url` is given the authorization URL for the person to open
/// (the browser's redirect to a loopback listener brings the code back); the tokens are saved for
/// later runs. Waits for the redirect at most `LOGIN_WAIT`.
pub fn login(url: &str, show_url: &dyn Fn(&str)) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .context("opening a loopback port for the sign-in's redirect")?;
    let redirect = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr()?.port()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the sign-in's runtime")?;
    let path = token_file(url)?;
    runtime.block_on(async {
        let mut manager = AuthorizationManager::new(url)
            .await
            .with_context(|| format!("reaching {url}"))?;
        manager.set_credential_store(TokenFile(path));
        let mut state = OAuthState::Unauthorized(manager);
        let request = AuthorizationRequest::new(&redirect).with_client_name("qwen3-agent");
        state.start_authorization(request).await.with_context(|| {
            format!(
                "discovering how to sign in to {url} (its protected-resource and authorization-server \
                 metadata) and registering this client"
            )
        })?;
        show_url(&state.get_authorization_url().await?);
        let callback = tokio::task::spawn_blocking(move || wait_for_redirect(&listener, &redirect))
            .await
            .context("the sign-in's listener failed")??;
        state
            .handle_callback_url(&callback)
            .await
            .context("exchanging the authorization code for tokens")?;
        Ok(())
    })
}

/// Forgets the tokens of `url`'s server; whether there were any.
pub fn logout(url: &str) -> Result<bool> {
    let path = token_file(url)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The first request to the loopback listener's `/callback`, as the full redirect URL; the browser
/// is shown a page saying it can be closed. Other requests (a favicon) get 404 and are skipped.
fn wait_for_redirect(listener: &TcpListener, redirect: &str) -> Result<String> {
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + LOGIN_WAIT;
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    bail!(
                        "no sign-in came back within {} s; run the login again",
                        LOGIN_WAIT.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e).context("accepting the sign-in's redirect"),
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut line = String::new();
        // One request line; a redirect's URL is short.
        BufReader::new((&stream).take(16 << 10)).read_line(&mut line)?;
        let target = line.split_whitespace().nth(1).unwrap_or_default();
        if !target.starts_with("/callback?") {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            continue;
        }
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{DONE_PAGE}",
            DONE_PAGE.len()
        );
        let base = redirect.trim_end_matches("/callback");
        return Ok(format!("{base}{target}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_files_are_private_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("qwen3-agent-oauth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("mcp-oauth").join("x.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_url_has_its_own_file_under_the_config_dir() {
        let a = token_file("https://a.example/mcp").unwrap();
        let b = token_file("https://b.example/mcp").unwrap();
        assert_ne!(a, b);
        assert!(a.ends_with(a.file_name().unwrap()));
        assert!(
            a.parent().unwrap().ends_with("qwen3-agent/mcp-oauth"),
            "{a:?}"
        );
    }
}
