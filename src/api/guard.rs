//! What the agent API refuses before any handler runs, until operators have certificates
//! (issue 19): the API has no authentication, so it must not be reachable, or drivable, by
//! anyone but a local administrator.
//!
//! - It listens on loopback only, unless `--api-insecure-listen-anywhere` says otherwise.
//! - A request must name a loopback host (`Host`). A web page that rebinds its own DNS name to
//!   127.0.0.1 still sends that name, so it is refused.
//! - A request from a web page (`Origin`) must come from a loopback origin too.
//! - A body must be `application/json`: a browser sends a form or `text/plain` cross-site
//!   without asking, never JSON.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Method, StatusCode, header};

/// The flag that lets the API listen beyond loopback, named for what it gives away.
pub const ANYWHERE_FLAG: &str = "--api-insecure-listen-anywhere";

/// Why `addr` may not be listened on, unless `anywhere`.
pub fn listen_problem(addr: SocketAddr, anywhere: bool) -> Option<String> {
    (!addr.ip().is_loopback() && !anywhere).then(|| {
        format!(
            "agent API: {addr} is not a loopback address, and the API has no authentication yet: \
             anyone who reaches {addr} could reconfigure this gateway. Listen on 127.0.0.1, or \
             pass {ANYWHERE_FLAG} knowing that"
        )
    })
}

/// The status and reason a request is refused with, if it is.
pub fn refusal(method: &Method, headers: &HeaderMap, anywhere: bool) -> Option<(StatusCode, String)> {
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{FFFD}"));
    if !anywhere {
        let host = text(header::HOST).unwrap_or("");
        if !loopback_host(host) {
            return Some((
                StatusCode::FORBIDDEN,
                format!("Host {host:?} is not a loopback name; the agent API answers local requests only"),
            ));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !loopback_host(host) {
            return Some((StatusCode::FORBIDDEN, format!("requests from web pages ({origin}) are refused")));
        }
    }
    let has_body = text(header::CONTENT_LENGTH).is_some_and(|l| l.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if *method == Method::POST && has_body {
        let json = text(header::CONTENT_TYPE).is_some_and(|t| {
            t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a body must be sent as content-type: application/json".into(),
            ));
        }
    }
    None
}

/// `127.0.0.1`, `127.0.0.1:9180`, `[::1]:9180`, `localhost:9180`.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or("", |(ip, _)| ip)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_is_listened_on_unless_said_loudly() {
        assert_eq!(listen_problem("127.0.0.1:9180".parse().unwrap(), false), None);
        assert_eq!(listen_problem("[::1]:9180".parse().unwrap(), false), None);
        let why = listen_problem("0.0.0.0:9180".parse().unwrap(), false).unwrap();
        assert!(why.contains(ANYWHERE_FLAG) && why.contains("no authentication"), "{why}");
        assert_eq!(listen_problem("0.0.0.0:9180".parse().unwrap(), true), None);
    }

    #[test]
    fn what_a_local_client_sends_passes() {
        for (method, h) in [
            (Method::GET, headers(&[("host", "127.0.0.1:9180")])),
            (Method::GET, headers(&[("host", "localhost:9180")])),
            (Method::GET, headers(&[("host", "[::1]:9180")])),
            (
                Method::POST,
                headers(&[
                    ("host", "127.0.0.1:9180"),
                    ("content-type", "application/json"),
                    ("content-length", "90"),
                ]),
            ),
            (Method::POST, headers(&[("host", "127.0.0.1:9180")])), // rollback: no body
            (Method::POST, headers(&[("host", "127.0.0.1"), ("origin", "http://127.0.0.1:9180")])),
        ] {
            assert_eq!(refusal(&method, &h, false), None, "{h:?}");
        }
    }

    #[test]
    fn what_a_web_page_or_a_remote_host_sends_is_refused() {
        let cases = [
            (Method::GET, headers(&[("host", "evil.example:9180")]), StatusCode::FORBIDDEN),
            (Method::GET, headers(&[("host", "198.19.0.1:9180")]), StatusCode::FORBIDDEN),
            (Method::GET, headers(&[]), StatusCode::FORBIDDEN),
            (
                Method::POST,
                headers(&[("host", "127.0.0.1:9180"), ("origin", "http://evil.example")]),
                StatusCode::FORBIDDEN,
            ),
            (Method::POST, headers(&[("host", "127.0.0.1:9180"), ("origin", "null")]), StatusCode::FORBIDDEN),
            (
                Method::POST,
                headers(&[
                    ("host", "127.0.0.1:9180"),
                    ("content-type", "text/plain"),
                    ("content-length", "9"),
                ]),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                Method::POST,
                headers(&[("host", "127.0.0.1:9180"), ("content-length", "9")]),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ];
        for (method, h, status) in cases {
            assert_eq!(refusal(&method, &h, false).map(|r| r.0), Some(status), "{h:?}");
        }
        // Listening anywhere (said loudly) lifts the Host rule, not the others.
        assert_eq!(refusal(&Method::GET, &headers(&[("host", "198.19.0.1:9180")]), true), None);
        let from_page = headers(&[("host", "198.19.0.1:9180"), ("origin", "http://evil.example")]);
        assert!(refusal(&Method::GET, &from_page, true).is_some());
    }
}
