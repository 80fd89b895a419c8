//! `netforge serve` end to end.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::util::{serve, with_timeout};

const T: Duration = Duration::from_secs(30);

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn echo_is_byte_exact_and_honours_half_close() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"]);
        let mut s = client(addr);
        let mut rng = fastrand::Rng::with_seed(1);
        let data: Vec<u8> = (0..1_000_000).map(|_| rng.u8(..)).collect();
        let mut w = s.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echo must be byte-exact");
    });
}

/// Small messages each read short, so the echo stops reading at each without a WouldBlock: the
/// next message, and the FIN right behind the last one, must still be seen.
#[test]
fn echo_answers_each_small_message_and_the_fin_behind_the_last() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"]);
        let mut s = client(addr);
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 5];
        for i in 0..200u32 {
            let msg = format!("{:04}\n", i % 10_000);
            s.write_all(msg.as_bytes()).unwrap();
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, msg.as_bytes(), "round trip {i}");
        }
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye", "the last bytes come back, then the server's FIN");
    });
}

/// Urgent data stops a read at its mark with bytes behind it: the echo must read on past it
/// (the urgent byte itself is out of band and not echoed).
#[test]
fn echo_reads_past_urgent_data() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "echo", "--interval", "0"]);
        let got = crate::util::urgent_round_trip(addr, b"abc", b"d", b"efg", 6);
        assert_eq!(got, b"abcefg", "the bytes behind the urgent mark come back too");
    });
}

#[test]
fn sigterm_prints_totals() {
    with_timeout(T, || {
        let (srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "discard", "--interval", "0"]);
        for _ in 0..3 {
            let mut c = client(addr);
            c.write_all(&[7u8; 1000]).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            // The server closes after EOF: read_to_end returns once it has.
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap();
        }
        srv.signal(15);
        let (status, out, _) = srv.finish(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0));
        assert!(out.contains("accepted 3,") && out.contains("bytes in 3000,"), "{out}");
    });
}

/// The final `peak active` counts a connection that opened and closed between two of the
/// reactors' 100 ms reports (the peak is the shared limit's exact count, not a sampled one).
#[test]
fn peak_active_counts_a_connection_shorter_than_a_report_interval() {
    with_timeout(T, || {
        let (srv, addr) = serve(&["--listen", "127.0.0.1:0", "--mode", "discard", "--interval", "0"]);
        let mut c = client(addr);
        c.write_all(b"x").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        // The server closes after EOF: read_to_end returns once it has.
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        srv.signal(15);
        let (status, out, _) = srv.finish(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0));
        assert!(out.contains("accepted 1, peak active 1, closed 1,"), "{out}");
    });
}

#[test]
fn max_conns_stops_accepting_and_resumes() {
    with_timeout(T, || {
        let (_srv, addr) = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "echo",
            "--threads",
            "1",
            "--max-conns",
            "2",
            "--interval",
            "0",
        ]);
        let mut a = client(addr);
        let mut b = client(addr);
        for s in [&mut a, &mut b] {
            s.write_all(b"x").unwrap();
            let mut one = [0u8; 1];
            s.read_exact(&mut one).unwrap();
        }
        // Third connection completes the handshake in the kernel backlog but is not served.
        let mut c = client(addr);
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        c.write_all(b"y").unwrap();
        let mut one = [0u8; 1];
        assert!(c.read_exact(&mut one).is_err(), "served beyond --max-conns");
        // Free a slot (below 90% of 2 means 1 left): the third is accepted and echoed.
        drop(a);
        drop(b);
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"y");
    });
}

#[test]
fn out_of_descriptors_pauses_accepting_then_recovers() {
    with_timeout(T, || {
        // 40 descriptors (soft and hard: netforge raises soft to hard): a few go to epoll, wakers, stdio and the listener; the rest run out.
        // The default --max-conns would fit the limit: ask for more than it allows.
        let script = format!(
            "ulimit -n 40 && exec {} serve --listen 127.0.0.1:0 --mode echo --threads 1 --interval 0 --max-conns 1000",
            crate::util::BIN
        );
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(&script).env("RUST_LOG", "warn");
        let srv = crate::util::Proc::spawn(cmd);
        let first = srv.line(Duration::from_secs(10));
        let addr: std::net::SocketAddr =
            first.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
        // Hold more connections than the server can accept (the kernel completes the
        // handshakes; the server's accept hits EMFILE).
        let held: Vec<TcpStream> = (0..60).map(|_| client(addr)).collect();
        // The server says so (rate-limited warning) instead of spinning or exiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let line = srv.stderr.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
            match line {
                Ok(l) if l.contains("pausing the listener") => break,
                Ok(_) => {}
                Err(_) => panic!("no accept pause reported"),
            }
        }
        drop(held);
        // Once descriptors are free again, a new connection is served.
        let mut c = client(addr);
        c.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        drop(c);
        srv.signal(15);
        let (status, out, _) = srv.finish(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{out}");
        let pauses: u64 = out
            .split("accept pauses ")
            .last()
            .and_then(|t| t.trim().split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(pauses > 0, "{out}");
    });
}

/// Echo borrows a ring only while bytes wait for the peer: clients that send 4 MiB without
/// reading make every connection park bytes in a pooled ring (and stop being read), and once
/// they have read everything back the rings are in the pool again while the connections stay
/// open. Every byte comes back in order.
#[test]
fn echo_rings_are_borrowed_only_while_bytes_wait() {
    with_timeout(Duration::from_secs(90), || {
        const N: usize = 8;
        const BYTES: usize = 4 << 20;
        let args = ["--listen", "127.0.0.1:0", "--mode", "echo", "--threads", "1", "--interval", "200ms"];
        let (srv, addr) = serve(&[&args[..], &["--sndbuf", "4KiB"]].concat());
        let data: std::sync::Arc<Vec<u8>> = {
            let mut rng = fastrand::Rng::with_seed(3);
            std::sync::Arc::new((0..BYTES).map(|_| rng.u8(..)).collect())
        };
        let clients: Vec<TcpStream> = (0..N).map(|_| client(addr)).collect();
        let writers: Vec<_> = clients
            .iter()
            .map(|c| {
                let mut w = c.try_clone().unwrap();
                let data = data.clone();
                std::thread::spawn(move || w.write_all(&data).unwrap())
            })
            .collect();
        // Nobody reads: each connection ends up with a full ring and its reading stopped.
        let parked = format!("echo rings in use {N},");
        srv.wait_line(Duration::from_secs(30), |l| l.contains(&parked));
        for (i, mut c) in clients.iter().enumerate() {
            let mut back = vec![0u8; BYTES];
            c.read_exact(&mut back).unwrap_or_else(|e| panic!("client {i}: {e}"));
            assert!(back == *data, "client {i}: echo must be byte-exact");
        }
        for w in writers {
            w.join().unwrap();
        }
        // All echoed, all still open: no ring is out.
        let want_active = format!("serve: active {N},");
        let line = srv
            .wait_line(Duration::from_secs(10), |l| l.starts_with(&want_active) && l.contains("echo rings in use 0,"));
        assert!(line.contains(&format!("accepted {N},")), "{line}");
        drop(clients);
        srv.signal(15);
        let (status, out, _) = srv.finish(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{out}");
        assert!(out.contains("exhausted 0"), "{out}");
    });
}

/// The shortest `-i` (1 ms) keeps up and stops on SIGTERM; a shorter one is refused (a
/// nanosecond one spun the coordinator, which then never saw the signal).
#[test]
fn the_shortest_interval_runs_and_stops_and_a_shorter_one_is_refused() {
    with_timeout(T, || {
        // serve prints a line when its counts changed: one per connection here.
        let (srv, addr) = serve(&["--listen", "127.0.0.1:0", "-i", "1ms", "--threads", "1"]);
        for i in 1..=3 {
            let _c = client(addr);
            srv.wait_line(Duration::from_secs(10), |l| l.contains(&format!(" accepted {i},")));
        }
        srv.signal(15);
        let (status, _, err) = srv.finish(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{err}");
        // goon prints one every interval: a 300 ms hold gives a few hundred, and it ends.
        let (code, out, err) = crate::util::run(&["goon", "-c", "3", "-y", "-i", "1ms", "--hold", "300ms"], T);
        assert_eq!(code, 0, "{err}");
        let lines = out.lines().filter(|l| l.starts_with("Total: 3,")).count();
        assert!(lines > 10, "{lines} status lines:\n{out}");
        for (role, bad) in [("serve", "1ns"), ("serve", "999us"), ("goon", "50ns")] {
            let (code, _, err) = crate::util::run(&[role, "-i", bad], Duration::from_secs(10));
            assert_eq!(code, 1, "{role} -i {bad}: {err}");
            assert!(
                err.contains("is out of range: whole seconds 0..=31536000 or a duration, 0 or 1ms..=8760h0m0s"),
                "{err}"
            );
        }
    });
}
