//! A minimal HTTP server that stands for an extranet service: it answers every request with the
//! address it saw the client as, and remembers those addresses, which is the evidence of
//! translation the demo prints and the tests assert on.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::Netns;

pub struct HttpServer {
    seen: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Bound on one request's header (it is read and ignored past the first line).
const MAX_REQUEST: usize = 8192;

impl HttpServer {
    /// Listens on `addr` inside `ns`, as the extranet server.
    pub fn start(ns: &Netns, addr: SocketAddr) -> std::io::Result<HttpServer> {
        Self::start_as(ns, addr, "the extranet server")
    }

    /// The same, greeting as `who` ("hello from {who}; you are {client}").
    pub fn start_as(ns: &Netns, addr: SocketAddr, who: &str) -> std::io::Result<HttpServer> {
        let who = who.to_string();
        let listener = ns.run(|| TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        seen2.lock().unwrap().push(peer.ip());
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; MAX_REQUEST];
                        let mut got = 0;
                        while got < buf.len() {
                            match conn.read(&mut buf[got..]) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got += n,
                            }
                            if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        let body = format!("hello from {who}; you are {}\n", peer.ip());
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(HttpServer { seen, stop, thread: Some(thread) })
    }

    /// Client addresses of every connection accepted so far.
    pub fn seen(&self) -> Vec<IpAddr> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
