//! A hostile "GitLab" on loopback: raw TCP that answers every connection the way a test says, however badly (never,
//! with a reset, a byte a second, a flood, plain HTTP to a TLS client), and notes what it was sent and how much it
//! wrote. And a TLS server for the fake GitLab with a certificate of the test's choosing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pki::Pki;

/// How a hostile server treats each connection.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Reads the request and never answers; the connection stays open until the client gives up.
    Silent,
    /// Reads the request, then resets the connection (`SO_LINGER` 0: an RST, not a FIN).
    Reset,
    /// Reads the request, writes these bytes and closes.
    Answer(Vec<u8>),
    /// Reads the request, writes `head` at once, then `bytes` one at a time, `every` apart: a slow loris.
    Trickle { head: Vec<u8>, bytes: Vec<u8>, every: Duration },
    /// Reads the request, writes `head` (the status line and headers, without the last empty line) with a
    /// `Content-Length` of `length`, then a body of that length: `start`, then `filler` over and over, for as long as
    /// the client reads.
    Flood { head: String, start: String, filler: Vec<u8>, length: u64 },
    /// Reads what comes first (a TLS client's hello) and answers in plain HTTP: `https://` to an HTTP port.
    PlainToTls,
}

/// A running hostile server.
#[derive(Clone)]
pub struct Hostile {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
}

impl Hostile {
    /// Serves on 127.0.0.1, on a free port, from a thread of its own, until the test process ends.
    pub fn start(fault: Fault) -> Hostile {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let url = super::in_background({
            let (requests, written, connections) = (requests.clone(), written.clone(), connections.clone());
            move || async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds loopback");
                let addr = listener.local_addr().expect("an address");
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        connections.fetch_add(1, Ordering::Relaxed);
                        let (fault, requests, written) = (fault.clone(), requests.clone(), written.clone());
                        tokio::spawn(async move { serve(stream, fault, requests, written).await });
                    }
                });
                format!("http://{addr}")
            }
        });
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
        Hostile { url, port, requests, written, connections }
    }

    /// Every request read in full so far, head and body, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many bytes it has managed to write, over all connections.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

async fn serve(mut stream: TcpStream, fault: Fault, requests: Arc<Mutex<Vec<String>>>, written: Arc<AtomicU64>) {
    if let Fault::PlainToTls = fault {
        let mut hello = [0u8; 4096];
        let _ = stream.read(&mut hello).await;
        let answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request";
        if stream.write_all(answer).await.is_ok() {
            written.fetch_add(answer.len() as u64, Ordering::Relaxed);
        }
        return;
    }
    let Some(request) = read_request(&mut stream).await else { return };
    requests.lock().unwrap_or_else(|p| p.into_inner()).push(request);
    match fault {
        Fault::Silent => {
            // Until the client hangs up.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        }
        Fault::Reset => {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Fault::Answer(bytes) => {
            if stream.write_all(&bytes).await.is_ok() {
                written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            let _ = stream.shutdown().await;
        }
        Fault::Trickle { head, bytes, every } => {
            if stream.write_all(&head).await.is_err() {
                return;
            }
            written.fetch_add(head.len() as u64, Ordering::Relaxed);
            for byte in bytes {
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        }
        Fault::Flood { head, start, filler, length } => {
            let head = format!("{head}Content-Length: {length}\r\nConnection: close\r\n\r\n{start}");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            written.fetch_add(head.len() as u64, Ordering::Relaxed);
            let mut left = length.saturating_sub(start.len() as u64);
            while left > 0 {
                let part = &filler[..filler.len().min(left as usize)];
                if stream.write_all(part).await.is_err() {
                    return;
                }
                written.fetch_add(part.len() as u64, Ordering::Relaxed);
                left -= part.len() as u64;
            }
            let _ = stream.shutdown().await;
        }
        Fault::PlainToTls => {}
    }
}

/// Reads one HTTP/1.1 request: the head, and the body its Content-Length announces.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if bytes.len() > 1 << 20 {
            return None;
        }
        let n = stream.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = stream.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&buffer[..n]);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Raw HTTP/1.1 answer bytes: status line, `Content-Type`, `Content-Length` and `Connection: close`, and the body.
pub fn http_answer(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A port on 127.0.0.1 that nothing listens on: bound, then closed.
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("an address").port()
}

/// A listener whose queue of connections is full and never accepted: a new connection's SYN goes unanswered and
/// connecting hangs, as to a host that drops packets. It lasts as long as the value.
pub struct Blackhole {
    pub port: u16,
    _listener: tokio::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

/// Needs a tokio runtime.
pub fn blackhole() -> Blackhole {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.bind("127.0.0.1:0".parse().expect("an address")).expect("binds loopback");
    let listener = socket.listen(1).expect("listens");
    let addr = listener.local_addr().expect("an address");
    let mut queued = Vec::new();
    for _ in 0..64 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => return Blackhole { port: addr.port(), _listener: listener, _queued: queued },
        }
    }
    panic!("the listener's queue never filled: connecting to it would not hang");
}

/// Serves `router` over TLS on 127.0.0.1 with the certificate and key of `pki`; returns the port. For any client
/// that refuses the certificate the handshake simply ends.
pub async fn serve_tls(router: axum::Router, pki: &Pki) -> u16 {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pki.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the certificate parses");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.key.as_bytes()).expect("the key parses");
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds loopback");
    let port = listener.local_addr().expect("an address").port();
    let service = hyper_util::service::TowerToHyperService::new(router);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, service) = (acceptor.clone(), service.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    port
}

/// A private CA and a certificate it signed for `name` only: served to a client that asks for `localhost`, it is a
/// certificate for the wrong host.
pub fn pki_for(name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("a server key");
    let cert = CertificateParams::new(vec![name.to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("a server certificate");
    Pki { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() }
}
