//! Every role that holds many descriptors grows its descriptor table to its connection count
//! before its threads start (see `sys::reserve_fd_table`): `FDSize` in /proc/PID/status covers
//! the count while the role has opened almost nothing yet. Without it the table doubles as
//! descriptors open, each doubling a stall of the opening thread in a threaded process. (The
//! bp client grows it too, but opens all its connections at once at start, so no moment shows
//! its table ahead of its descriptors.)

use std::process::Command;
use std::time::Duration;

use crate::util::{netforge, proxy_conf, refusing_addr, spawn_listening, spawn_proxy, with_timeout, write_temp, Proc};

const T: Duration = Duration::from_secs(60);

/// `FDSize` and the open descriptors of `pid`.
fn table(pid: u32) -> (u64, usize) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let size = text.lines().find_map(|l| l.strip_prefix("FDSize:")).and_then(|v| v.trim().parse().ok()).unwrap();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (size, open)
}

/// The table of `p` covers `want` while fewer than `want / 10` descriptors are open.
fn covers(what: &str, p: &Proc, want: u64) {
    let (size, open) = table(p.child.id());
    assert!(size >= want, "{what}: descriptor table of {size} slots for {want}");
    assert!((open as u64) < want / 10, "{what}: {open} descriptors open: the count proves nothing");
}

#[test]
fn serve_grows_its_table_to_max_conns_at_start() {
    with_timeout(T, || {
        let mut cmd = netforge();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--max-conns", "3000", "-i", "0"]);
        let (p, _) = spawn_listening(cmd);
        covers("serve --max-conns 3000", &p, 3000);
    });
}

#[test]
fn proxy_grows_its_table_to_both_sides_of_max_connections() {
    with_timeout(T, || {
        let (_held, backend) = refusing_addr();
        let conf = write_temp("lb.toml", &proxy_conf(&[backend], "max_connections = 1500", "enabled = false"));
        let mut cmd = netforge();
        cmd.arg("proxy").arg("--conf").arg(&conf);
        let (p, _, _) = spawn_proxy(cmd);
        covers("proxy max_connections 1500", &p, 3000);
    });
}

#[test]
fn goon_grows_its_table_to_its_connections_before_dialing() {
    with_timeout(T, || {
        let (_held, target) = refusing_addr();
        // One dial a second: by its first status line goon has opened one or two sockets.
        let mut cmd: Command = netforge();
        cmd.args(["goon", "127.0.0.1", &target.port().to_string(), "-c", "4000", "--rate", "1", "-y", "-i", "100ms"]);
        let p = Proc::spawn(cmd);
        let line = p.wait_line(Duration::from_secs(20), |l| l.starts_with("Total: "));
        assert!(line.starts_with("Total: 4000,"), "first status line: {line}");
        covers("goon -c 4000", &p, 4000);
    });
}

#[test]
fn bp_server_grows_its_table_to_max_connections_at_start() {
    with_timeout(T, || {
        let mut cmd = netforge();
        cmd.args(["bp", "server", "--listen", "127.0.0.1:0", "--max-connections", "3000"]);
        let (p, _) = spawn_listening(cmd);
        covers("bp server --max-connections 3000", &p, 3000);
    });
}
