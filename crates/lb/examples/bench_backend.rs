//! A deliberately minimal, fast HTTP/1.1 backend for `bench/lb.sh` (no web server is
//! installed on these machines, and the backend must be faster than the proxies it is
//! measured through). Not a real HTTP server: it reads a request head, answers, repeats.
//!
//! - `GET /` and `GET /readyz`: `ok`
//! - `GET /bulk`: 64 MiB of zeros
//! - a `Connection: close` request gets a `Connection: close` answer and the connection
//!   is closed (so `wrk -H 'Connection: close'` measures new connections).
//!
//! Usage: `bench_backend ADDR:PORT`

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BULK: usize = 64 * 1024 * 1024;
static CHUNK: [u8; 1 << 20] = [0u8; 1 << 20];

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19001".into())
        .parse()
        .expect("usage: bench_backend ADDR:PORT");
    let l = TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(serve(s));
    }
}

async fn serve(mut s: TcpStream) {
    let mut buf = vec![0u8; 4096];
    let mut have = 0usize;
    loop {
        let end = loop {
            if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if have == buf.len() {
                return;
            }
            match s.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let close = head.contains("connection: close");
        let bulk = head.starts_with("get /bulk");
        let conn = if close { "close" } else { "keep-alive" };
        let ok = if bulk {
            let h =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {BULK}\r\nconnection: {conn}\r\n\r\n");
            let mut r = s.write_all(h.as_bytes()).await;
            let mut left = BULK;
            while r.is_ok() && left > 0 {
                let n = left.min(CHUNK.len());
                r = s.write_all(&CHUNK[..n]).await;
                left -= n;
            }
            r
        } else {
            let h =
                format!("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: {conn}\r\n\r\nok\n");
            s.write_all(h.as_bytes()).await
        };
        if ok.is_err() || close {
            return;
        }
        buf.copy_within(end..have, 0);
        have -= end;
    }
}
