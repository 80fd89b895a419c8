//! `netforge bp` against peers that misbehave or speak something else: every WebSocket close is
//! answered whatever precedes it, a client that cannot measure says why and exits 1, and a run
//! that ends with data still queued leaves no connection behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{netforge, run, spawn_listening, with_timeout, ws_upgrade, Proc};

const T: Duration = Duration::from_secs(60);

fn bp_server(args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = netforge();
    cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--threads", "2"]).args(args);
    spawn_listening(cmd)
}

/// Opens `path` on the lab server as a WebSocket; returns the stream after the 101 head.
fn upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    ws_upgrade(addr, path)
}

/// One frame with `opcode` and `payload`, masked when `mask` (client to server).
fn frame(opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut h = vec![0x80 | opcode];
    let m = if mask { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        h.push(m | len as u8);
    } else if len < 65536 {
        h.push(m | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(m | 127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if mask {
        let key = [1u8, 2, 3, 4];
        h.extend_from_slice(&key);
        h.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        h.extend_from_slice(payload);
    }
    h
}

/// `n` small frames then a Close 1000, all in one buffer (one write, so the peer gets them in
/// as few reads as the kernel makes it).
fn frames_then_close(n: usize, opcode: u8, mask: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(frame(opcode, format!("{{\"frame\":{i}}}").as_bytes(), mask));
    }
    out.extend(frame(0x8, &1000u16.to_be_bytes(), mask));
    out
}

/// Reads frames until a Close arrives; returns its code. Panics on EOF, error or deadline.
fn read_until_close(s: &mut TcpStream, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Parse whole frames out of `buf`.
        loop {
            if buf.len() < 2 {
                break;
            }
            let opcode = buf[0] & 0x0f;
            let masked = buf[1] & 0x80 != 0;
            let (len, mut off) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            let key = if masked {
                if buf.len() < off + 4 {
                    break;
                }
                off += 4;
                Some([buf[off - 4], buf[off - 3], buf[off - 2], buf[off - 1]])
            } else {
                None
            };
            if buf.len() < off + len {
                break;
            }
            if opcode == 0x8 {
                let mut p = buf[off..off + len].to_vec();
                if let Some(k) = key {
                    p.iter_mut().enumerate().for_each(|(i, b)| *b ^= k[i % 4]);
                }
                return if p.len() >= 2 { u16::from_be_bytes([p[0], p[1]]) } else { 1005 };
            }
            buf.drain(..off + len);
        }
        assert!(Instant::now() < deadline, "no Close frame within {within:?}");
        match s.read(&mut chunk) {
            Ok(0) => panic!("the peer closed without a Close frame"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn stop(srv: Proc) -> String {
    srv.signal(15);
    let (status, out, err) = srv.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "server exit\n{out}\n{err}");
    out
}

/// Many frames and a Close in one write to `path`: the server answers the Close.
fn close_after_many_frames_is_answered(path: &'static str) {
    with_timeout(T, move || {
        let (srv, addr) = bp_server(&["--protocol", "websocket", "--read-delay", "0"]);
        let mut s = upgrade(addr, path);
        // Text frames of ~15 bytes: 2,000 of them are about 40 KiB, many reads' worth of frames
        // already in the server's buffer when the Close is parsed.
        s.write_all(&frames_then_close(2000, 0x1, true)).unwrap();
        assert_eq!(read_until_close(&mut s, Duration::from_secs(10)), 1000);
        stop(srv);
    });
}

#[test]
fn samples_close_after_many_frames_is_answered() {
    close_after_many_frames_is_answered("/samples");
}

#[test]
fn ws_close_after_many_frames_is_answered() {
    close_after_many_frames_is_answered("/ws");
}

/// A minimal WebSocket server in the test: accepts one connection, answers the upgrade, and
/// hands the stream to `then`.
fn ws_test_server(then: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read_exact(&mut b).is_err() {
                return;
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no key in {text}"))
            .to_string();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        s.write_all(resp.as_bytes()).unwrap();
        then(s);
    });
    addr
}

#[test]
fn client_answers_a_close_after_many_frames() {
    with_timeout(T, || {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let addr = ws_test_server(move |mut s| {
            s.write_all(&frames_then_close(2000, 0x1, false)).unwrap();
            let _ = tx.send(read_until_close(&mut s, Duration::from_secs(10)));
        });
        let server = addr.to_string();
        let mut cmd = netforge();
        cmd.args(["bp", "client", "--protocol", "websocket", "--server", &server, "--duration", "5s"]);
        let p = Proc::spawn(cmd);
        let code = rx.recv_timeout(Duration::from_secs(20)).expect("the client did not answer the Close");
        assert_eq!(code, 1000);
        let (_, out, err) = p.finish(Duration::from_secs(20));
        assert!(err.contains("closed by the server") && !err.contains("ByUs"), "{out}\n{err}");
    });
}

#[test]
fn client_closing_an_oversized_frame_says_it_closed() {
    with_timeout(T, || {
        let addr = ws_test_server(move |mut s| {
            // One binary frame of 1 MiB announced: over the client's 64 KiB incoming limit.
            let mut h = vec![0x82, 127];
            h.extend_from_slice(&(1u64 << 20).to_be_bytes());
            s.write_all(&h).unwrap();
            // Keep the socket until the client's Close 1009 arrives (or the deadline).
            let _ = read_until_close(&mut s, Duration::from_secs(10));
        });
        let server = addr.to_string();
        let (code, out, err) = run(
            &["bp", "client", "--protocol", "websocket", "--server", &server, "--duration", "2s"],
            Duration::from_secs(20),
        );
        assert!(err.contains("closed by this client") && err.contains("1009"), "{out}\n{err}");
        assert!(!err.contains("closed by the server") && !err.contains("ByUs"), "{out}\n{err}");
        // Closed before the first sample: nothing measured.
        assert_eq!(code, 1, "{out}\n{err}");
    });
}

#[test]
fn tcp_client_against_a_websocket_server_names_the_protocol() {
    with_timeout(T, || {
        let (srv, addr) = bp_server(&["--protocol", "websocket"]);
        let server = addr.to_string();
        let (code, out, err) = run(&["bp", "client", "--server", &server, "--duration", "2s"], Duration::from_secs(20));
        assert_eq!(code, 1, "{out}\n{err}");
        assert!(err.contains("use --protocol websocket"), "{err}");
        assert!(!out.contains("backpressure reached the client"), "{out}");
        stop(srv);
    });
}

#[test]
fn websocket_client_against_a_tcp_server_names_the_protocol() {
    with_timeout(T, || {
        let (srv, addr) = bp_server(&["--protocol", "tcp"]);
        let server = addr.to_string();
        let (code, out, err) = run(
            &["bp", "client", "--protocol", "websocket", "--server", &server, "--duration", "1s"],
            Duration::from_secs(20),
        );
        assert_eq!(code, 1, "{out}\n{err}");
        assert!(err.contains("no answer") && err.contains("use --protocol tcp"), "{err}");
        assert!(!out.contains("backpressure reached the client"), "{out}");
        stop(srv);
    });
}

#[test]
fn client_against_a_server_that_resets_exits_1() {
    with_timeout(T, || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().take(4).flatten() {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                drop(s);
            }
        });
        let server = addr.to_string();
        for protocol in ["tcp", "websocket"] {
            let (code, out, err) = run(
                &["bp", "client", "--protocol", protocol, "--server", &server, "--duration", "2s"],
                Duration::from_secs(20),
            );
            assert_eq!(code, 1, "{protocol}: {out}\n{err}");
            assert!(err.contains("reset") || err.contains("ended the connection"), "{protocol}: {err}");
            assert!(!out.contains("backpressure reached the client"), "{protocol}: {out}");
        }
    });
}

/// Text frames the server sends on `s` during `d` (reads until the deadline).
fn text_frames_for(s: &mut TcpStream, d: Duration) -> Vec<String> {
    let deadline = Instant::now() + d;
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (mut buf, mut chunk, mut out) = (Vec::new(), vec![0u8; 64 * 1024], Vec::new());
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => panic!("the server closed the dashboard stream"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
        // Server frames are unmasked.
        while buf.len() >= 2 {
            let (len, off) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < off + len {
                break;
            }
            if buf[0] & 0x0f == 0x1 {
                out.push(String::from_utf8_lossy(&buf[off..off + len]).into_owned());
            }
            buf.drain(..off + len);
        }
    }
    out
}

#[test]
fn idle_connections_are_not_sampled_every_tick() {
    with_timeout(T, || {
        const N: usize = 20;
        // Ticks of 50 ms: 50 samples per connection in 2.5 s if every tick probed everything.
        let (srv, addr) = bp_server(&["--protocol", "websocket", "--sample-interval", "50ms"]);
        let mut dash = upgrade(addr, "/samples");
        let _payload: Vec<TcpStream> = (0..N).map(|_| upgrade(addr, "/ws")).collect();
        let frames = text_frames_for(&mut dash, Duration::from_millis(2500));
        let mut per: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for f in &frames {
            let v: serde_json::Value = serde_json::from_str(f).unwrap_or_else(|e| panic!("{e}: {f}"));
            *per.entry(v["conn"].as_u64().unwrap()).or_default() += 1;
        }
        // Each idle connection: its first sample, and at most one idle sweep (every 3 s) within
        // the window; nothing else, since nothing happened on it.
        assert_eq!(per.len(), N, "every connection is sampled once at least: {per:?}");
        assert!(per.values().all(|&n| n <= 2), "idle connections were sampled again and again: {per:?}");
        stop(srv);
    });
}

/// How the slow test server saw its connection end.
#[derive(Debug, PartialEq)]
enum End {
    Reset,
    Eof,
}

#[test]
fn client_ending_with_data_queued_resets_instead_of_leaving_it_behind() {
    with_timeout(T, || {
        // A slow reader with a small receive buffer: 1 KiB every 20 ms.
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.set_recv_buffer_size(8 * 1024).unwrap();
        l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        l.listen(16).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let l: TcpListener = l.into();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut buf = [0u8; 1024];
            // Bounded: at 50 KiB/s, 3,000 reads are a minute, longer than the test waits.
            for _ in 0..3000 {
                match s.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.send(End::Eof);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        let _ = tx.send(End::Reset);
                        return;
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(e) => panic!("read: {e}"),
                }
                std::thread::sleep(Duration::from_millis(20)); // the slow reader's pace
            }
        });
        let server = addr.to_string();
        let (code, out, err) = run(&["bp", "client", "--server", &server, "--duration", "1s"], Duration::from_secs(20));
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("connections reset at the end: 1"), "{out}");
        // The client has exited. Its megabytes of queued payload are gone with the reset; the
        // server drains only its own small receive buffer, then sees the reset.
        let end = rx.recv_timeout(Duration::from_secs(15)).expect("the server still sees the connection 15 s later");
        assert_eq!(end, End::Reset);
    });
}
