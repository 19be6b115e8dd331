//! How the agent API takes connections: on TCP (loopback by default) and on a Unix socket, with
//! every resource a client can hold bounded, so no client, however many connections it opens or
//! however slowly it talks, can take the gateway's descriptors or the API away for long:
//!
//! - at most [`MAX_CONNECTIONS`] connections at once on each listener (so whoever fills the TCP
//!   ones cannot lock root out of the 0600 socket); one more is accepted and closed at once, and
//!   counted;
//! - a request's head must arrive within [`HEADER_READ_TIMEOUT`], and an idle keep-alive
//!   connection is closed after the same time;
//! - a request's body must arrive within [`BODY_READ_TIMEOUT`] (see `api::bind`);
//! - an `accept` that fails (no descriptor left) is retried after a pause, never fatal.
//!
//! The gateway also raises its soft descriptor limit to the hard one at start
//! ([`raise_descriptor_limit`]): AF_XDP sockets, BPF maps and links all take descriptors.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::Semaphore,
};

/// Connections served at once, per listener.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send a request's head, and how long a connection may sit idle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send a request's body (8 MiB at most).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where an API listens, or where a client finds it: `HOST:PORT`, or the path of a Unix socket
/// (anything with a `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Endpoint, String> {
        if s.contains('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s.strip_prefix("unix:").unwrap_or(s))));
        }
        s.parse().map(Endpoint::Tcp).map_err(|_| format!("{s:?} is neither HOST:PORT nor a socket path"))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The Unix socket beside a PID file: `/run/hutong/<gateway>.sock` by default. The PID file's
/// lock makes its owner the only one who may replace it.
pub fn socket_beside(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("sock")
}

/// What the listeners have refused, for the metrics.
#[derive(Default)]
pub struct ListenCounters {
    /// Connections closed at once because [`MAX_CONNECTIONS`] were open.
    pub over_limit: AtomicU64,
    /// `accept` failures (no descriptor left, mostly).
    pub accept_errors: AtomicU64,
}

/// A listener of either kind.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// Binds a TCP address.
    pub async fn tcp(addr: std::net::SocketAddr) -> Result<Listener> {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("agent API: cannot listen on {addr} (choose another with --api)"))?;
        Ok(Listener::Tcp(l))
    }

    /// Binds a Unix socket at `path`, root's alone (0600): file permissions are its access
    /// control. A socket left there by a gateway that was killed is replaced; the caller holds
    /// the PID file's lock, so no running gateway owns it. Anything else at that path is refused.
    pub fn unix(path: &Path) -> Result<Listener> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                anyhow::bail!("agent API: {} exists and is not a socket; not replacing it", path.display());
            }
            std::fs::remove_file(path).with_context(|| format!("removing the stale {}", path.display()))?;
        }
        // Created 0600 from the start: the umask decides the mode bind(2) gives the file.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = tokio::net::UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let l = bound.with_context(|| format!("agent API: cannot listen on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(crate::files::PRIVATE))?;
        Ok(Listener::Unix(l))
    }

    /// Serves `app` here until the future is dropped, within the bounds above; `slots` are this
    /// listener's.
    pub async fn serve(self, app: axum::Router, slots: Arc<Semaphore>, counters: Arc<ListenCounters>) {
        loop {
            let accepted = match &self {
                Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
                Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
            };
            let conn = match accepted {
                Ok(c) => c,
                Err(e) => {
                    if counters.accept_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("agent API: accept failed ({e}); retrying (counted from now on)");
                    }
                    // EMFILE and the like: the pending connection stays queued; wait for a
                    // descriptor to come free rather than spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                counters.over_limit.fetch_add(1, Ordering::Relaxed);
                drop(conn);
                continue;
            };
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                let _ = match conn {
                    Conn::Tcp(s) => http.serve_connection(TokioIo::new(s), service).await,
                    Conn::Unix(s) => http.serve_connection(TokioIo::new(s), service).await,
                };
            });
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Raises the soft limit on open files to the hard limit, and says what it is.
pub fn raise_descriptor_limit() -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// Reads a whole response from a stream the caller connected: the CLI's side, over TCP or the
/// Unix socket alike. `Host: localhost` passes the API's guard on either.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, bytes::Bytes)> {
    use http_body_util::{BodyExt, Full};
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", "localhost");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))?;
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_addresses_or_socket_paths() {
        assert_eq!("127.0.0.1:9180".parse(), Ok(Endpoint::Tcp("127.0.0.1:9180".parse().unwrap())));
        assert_eq!("/run/hutong/gw.sock".parse(), Ok(Endpoint::Unix("/run/hutong/gw.sock".into())));
        assert_eq!("unix:./gw.sock".parse(), Ok(Endpoint::Unix("./gw.sock".into())));
        assert!("localhost".parse::<Endpoint>().is_err());
        assert_eq!(socket_beside(Path::new("/run/hutong/gw-1.pid")), Path::new("/run/hutong/gw-1.sock"));
    }

    /// Connections beyond the limit are closed at once and counted; the ones within it are
    /// served; a connection that sends nothing is closed after the head timeout.
    #[tokio::test]
    async fn connections_are_bounded_and_idle_ones_closed() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = Listener::unix(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let counters = Arc::new(ListenCounters::default());
        let server = tokio::spawn(listener.serve(app, Arc::new(Semaphore::new(2)), counters.clone()));
        let mut idle = Vec::new();
        for _ in 0..2 {
            idle.push(tokio::net::UnixStream::connect(&path).await.unwrap());
        }
        // Both slots are taken (the server has accepted both once a third is turned away).
        let mut third = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), third.read_to_end(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0))), "the connection over the limit is closed at once: {n:?}");
        assert_eq!(counters.over_limit.load(Ordering::Relaxed), 1);
        // The idle ones are closed after the head timeout, and the API answers again.
        let started = std::time::Instant::now();
        for mut s in idle {
            let mut b = Vec::new();
            let n = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, s.read_to_end(&mut b)).await;
            assert!(n.is_ok(), "an idle connection is closed, not left open");
        }
        assert!(started.elapsed() < HEADER_READ_TIMEOUT * 3);
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (status, body) = request(stream, "GET", "/", None).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"ok"[..]));
        server.abort();
    }
}
