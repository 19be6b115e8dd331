//! The CLI's side of the agent API: where it finds the gateway, and one request at a time.

use anyhow::{Context, Result};

pub use super::listen::Endpoint;

/// Where the CLI finds the gateway unless `--api` says: its Unix socket, when exactly one
/// gateway on this machine has one in `/run/hutong/` (the usual case: file permissions are
/// its access control), else the TCP default on loopback.
pub fn local_default() -> Endpoint {
    let sockets: Vec<_> = std::fs::read_dir("/run/hutong")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sock"))
        .collect();
    match &sockets[..] {
        [one] => Endpoint::Unix(one.clone()),
        _ => Endpoint::Tcp(super::DEFAULT_ADDR.parse().expect("a socket address")),
    }
}

/// One request to the API at `api`: the HTTP status and the JSON answer, whatever the
/// status (the API's 4xx bodies say why).
fn call(api: &Endpoint, method: &str, path: &str, body: Option<String>) -> Result<(u16, serde_json::Value)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let asked = rt.block_on(async {
        let exchange = async {
            match api {
                Endpoint::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a).await?;
                    super::listen::request(s, method, path, body).await
                }
                Endpoint::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p).await?;
                    super::listen::request(s, method, path, body).await
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), exchange)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in 60 s")))
    });
    let (status, bytes) = asked.with_context(|| {
        format!("no gateway answers at {api}{path} (is `hutong gateway run` running? --api names another)")
    })?;
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, v))
}

/// `GET /v1/status` of the gateway at `api`, as JSON.
pub fn status(api: &Endpoint) -> Result<serde_json::Value> {
    match call(api, "GET", "/v1/status", None)? {
        (200, v) if !v.is_null() => Ok(v),
        (code, v) => anyhow::bail!("{api}/v1/status answered {code}: {v}"),
    }
}

/// `GET /v1/config` of the gateway at `api`: the running config and its version.
pub fn config(api: &Endpoint) -> Result<(dataplane::Config, u64)> {
    let (code, v) = call(api, "GET", "/v1/config", None)?;
    if code != 200 {
        anyhow::bail!("{api}/v1/config answered {code}: {v}");
    }
    let config =
        serde_json::from_value(v["config"].clone()).with_context(|| format!("{api}/v1/config: no config"))?;
    Ok((config, v["config_version"].as_u64().unwrap_or(0)))
}

/// A POST to the API (`body`: JSON, or none): the HTTP status and the JSON answer, whatever
/// the status.
pub fn post(api: &Endpoint, path: &str, body: Option<String>) -> Result<(u16, serde_json::Value)> {
    call(api, "POST", path, body)
}

/// `GET /v1/sessions` with these query parameters (`name=value` pairs): the HTTP status and
/// the JSON answer.
pub fn sessions(api: &Endpoint, params: &[(&str, String)]) -> Result<(u16, serde_json::Value)> {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    call(api, "GET", &format!("/v1/sessions?{}", query.join("&")), None)
}

/// A status for people: one fact a line.
pub fn describe(s: &serde_json::Value) -> String {
    let field = |k: &str| match &s[k] {
        serde_json::Value::String(v) => v.clone(),
        serde_json::Value::Null => "?".into(),
        v => v.to_string(),
    };
    let ports: Vec<String> = s["ports"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect())
        .unwrap_or_default();
    format!(
        "gateway {} (hutong {}), engine {}, up {} s\nports: {}\nconfig version {} (digest {})\n",
        field("gateway"),
        field("version"),
        field("engine"),
        field("uptime_seconds"),
        ports.join(", "),
        field("config_version"),
        field("config_digest"),
    )
}
