//! Fetching one page the way the reference server does: robots.txt first, every redirect hop
//! checked (address and robots.txt), errors worded like the reference's, HTML simplified to markdown.

use std::net::IpAddr;

pub struct Settings {
    pub user_agent: String,
    pub check_robots: bool,
    pub allow_private_ips: bool,
    pub max_response_bytes: usize,
}

pub struct Fetcher {
    client: reqwest::Client,
    settings: Settings,
}

const MAX_REDIRECTS: usize = 10;

impl Fetcher {
    pub fn new(settings: Settings, proxy: Option<&str>) -> anyhow::Result<Self> {
        // Redirects are followed by hand so each hop is checked before it is requested.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30));
        if let Some(proxy) = proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy.replacen(
                "socks://",
                "socks5://",
                1,
            ))?);
        }
        Ok(Fetcher {
            client: builder.build()?,
            settings,
        })
    }

    /// (content for the model, prefix) or the error text the model reads.
    pub async fn fetch(&self, url: &str, raw: bool) -> Result<(String, String), String> {
        if self.settings.check_robots {
            self.check_robots(url).await?;
        }
        let mut current = url.to_string();
        let mut hops = 0;
        let response = loop {
            self.check_address(&current).await?;
            let response = self
                .client
                .get(&current)
                .header("User-Agent", &self.settings.user_agent)
                .send()
                .await
                .map_err(|e| format!("Failed to fetch {url}: {e}"))?;
            if !response.status().is_redirection() {
                break response;
            }
            let Some(next) = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
            else {
                break response;
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(format!(
                    "Failed to fetch {url}: more than {MAX_REDIRECTS} redirects"
                ));
            }
            current = reqwest::Url::parse(&current)
                .and_then(|base| base.join(next))
                .map_err(|e| e.to_string())?
                .into();
            if self.settings.check_robots {
                self.check_robots(&current).await?;
            }
        };
        let status = response.status().as_u16();
        if status >= 400 {
            return Err(format!("Failed to fetch {url} - status code {status}"));
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = self
            .read_capped(response)
            .await
            .map_err(|e| format!("Failed to fetch {url}: {e}"))?;
        let is_html = body.chars().take(100).collect::<String>().contains("<html")
            || content_type.contains("text/html")
            || content_type.is_empty();
        if is_html && !raw {
            return Ok((markdown_of(&body, &current), String::new()));
        }
        Ok((
            body,
            format!(
                "Content type {content_type} cannot be simplified to markdown, but here is the raw content:\n"
            ),
        ))
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> reqwest::Result<String> {
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = self.settings.max_response_bytes.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() >= room {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Refuses hosts that resolve to non-public addresses (unless allowed); names that do not
    /// resolve are left to the request itself, as the reference does.
    async fn check_address(&self, url: &str) -> Result<(), String> {
        if self.settings.allow_private_ips {
            return Ok(());
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        let Some(host) = parsed.host_str() else {
            return Ok(());
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(addresses) = tokio::net::lookup_host((host, port)).await else {
            return Ok(());
        };
        for address in addresses {
            if !is_public(address.ip()) {
                return Err(format!(
                    "Refused to fetch {url}: {host} resolves to {}, which is not a public address. Start the server \
                     with --allow-private-ips to allow private, loopback and link-local addresses.",
                    address.ip()
                ));
            }
        }
        Ok(())
    }

    async fn check_robots(&self, url: &str) -> Result<(), String> {
        let mut robots_url = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        robots_url.set_path("/robots.txt");
        robots_url.set_query(None);
        robots_url.set_fragment(None);
        self.check_address(robots_url.as_str()).await?;
        let response = self
            .client
            .get(robots_url.clone())
            .header("User-Agent", &self.settings.user_agent)
            .send()
            .await
            .map_err(|_| {
                format!("Failed to fetch robots.txt {robots_url} due to a connection issue")
            })?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(format!(
                "When fetching robots.txt ({robots_url}), received status {status} so assuming that autonomous fetching \
                 is not allowed, the user can try manually fetching by using the fetch prompt"
            ));
        }
        if (400..500).contains(&status) {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let rules: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let allowed = texting_robots::Robot::new(&self.settings.user_agent, rules.as_bytes())
            .map(|robot| robot.allowed(url))
            .unwrap_or(true);
        if allowed {
            return Ok(());
        }
        Err(format!(
            "The sites robots.txt ({robots_url}), specifies that autonomous fetching of this page is not allowed, \
             <useragent>{}</useragent>\n<url>{url}</url><robots>\n{text}\n</robots>\nThe assistant must let the user \
             know that it failed to view the page. The assistant may provide further guidance based on the above \
             information.\nThe assistant can tell the user that they can try manually fetching the page by using the \
             fetch prompt within their UI.",
            self.settings.user_agent
        ))
    }
}

/// Readability's main content as markdown (ATX headings), or the reference's failure note.
fn markdown_of(html: &str, url: &str) -> String {
    let failed = "<error>Page failed to be simplified from HTML</error>".to_string();
    let Ok(mut readability) = dom_smoothie::Readability::new(html, Some(url), None) else {
        return failed;
    };
    let Ok(article) = readability.parse() else {
        return failed;
    };
    match htmd::convert(&article.content) {
        Ok(markdown) if !markdown.trim().is_empty() => markdown,
        _ => failed,
    }
}

/// Globally routable unicast, as the reference judges it (IPv4-mapped addresses by their IPv4).
fn is_public(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 192 && b == 88 && c == 99)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0xdb8
                || first == 0x2002
                || first == 0x64 && v6.segments()[1] == 0xff9b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn html_becomes_markdown_of_the_main_content() {
        let html = "<html><head><title>T</title></head><body><nav><a href='/'>Home</a> | <a href='/x'>X</a></nav>\
            <main><h1>Otter Facts</h1><p>Sea otters hold hands while they sleep so they do not drift apart at night.</p>\
            <p>They have the densest fur of any animal, up to a million hairs per square inch of skin.</p></main>\
            <footer>Copyright</footer></body></html>";
        let md = markdown_of(html, "http://example.com/");
        assert!(
            md.contains("Sea otters hold hands") && md.contains("densest fur"),
            "{md}"
        );
        assert!(!md.contains("Copyright"), "{md}");
    }
}
