//! Errors about configuration read one way in every role: a key of a file is named
//! `file:line:col: key.path:` also when the error is found after loading (an address in use at
//! start-up, a clash with a flag), a flag by its name; and an unknown keyword is refused in the
//! same words from a file and from a flag.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::util::{netforge, refused, spawn_listening, with_timeout, write_conf, Proc};

const T: Duration = Duration::from_secs(90);
/// A `serve` holding a free loopback port: the address another process then cannot bind.
fn holder() -> (Proc, SocketAddr) {
    let mut c: Command = netforge();
    c.args(["serve", "--interval", "0", "--threads", "1", "--listen", "127.0.0.1:0"]);
    spawn_listening(c)
}

// ---- errors found after loading name the key's line and column --------------------------------

#[test]
fn proxy_bind_failure_names_the_line_and_column_of_the_listener_in_use() {
    with_timeout(T, || {
        let (first, addr) = holder();
        let a = addr.to_string();
        // The second listener is the one in use: its index, line and column are named.
        let conf = write_conf(
            "lb.toml",
            &format!(
                "# two listeners\n[admin]\naddress = \"\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n[[listener]]\nname = \"second\"\naddress   =   \"{a}\"\n[[backend]]\naddress = \"127.0.0.1:1\"\n"
            ),
        );
        let line = refused(&["proxy", "--conf", &conf, "--threads", "1"]);
        assert!(
            line.starts_with(&format!("netforge: {conf}:9:15: listener[1].address: {a} is already in use")),
            "{line}"
        );
        assert!(line.contains(&format!("pid {}", first.child.id())), "the holder is named: {line}");
        // The same address from the quick-start flag: the flag is named.
        let line = refused(&["proxy", "--laddr", &a, "--admin", "", "--threads", "1", "127.0.0.1:1"]);
        assert!(line.starts_with(&format!("netforge: --laddr: {a} is already in use")), "{line}");
    });
}

#[test]
fn proxy_admin_flag_equal_to_a_file_listener_names_that_listener_where_written() {
    with_timeout(T, || {
        // Refused by the check before any bind: fixed ports are safe here.
        let conf = write_conf(
            "lb.toml",
            "[[listener]]\naddress = \"127.0.0.1:4561\"\n\n[[listener]]\n  address = \"127.0.0.1:4562\"\n[[backend]]\naddress = \"127.0.0.1:1\"\n",
        );
        let line = refused(&["proxy", "--conf", &conf, "--admin", "127.0.0.1:4562"]);
        let want =
            format!("netforge: {conf}:5:13: listener[1].address: 127.0.0.1:4562 is also the admin address (--admin)");
        assert!(line.starts_with(&want), "{line}");
    });
}

#[test]
fn bp_server_bind_failure_names_the_line_and_column_of_listen_or_the_flag() {
    with_timeout(T, || {
        let (first, addr) = holder();
        let a = addr.to_string();
        let conf =
            write_conf("bp-server.toml", &format!("# the lab server\nread_size = \"1KiB\"\nlisten  = \"{a}\"\n"));
        let line = refused(&["bp", "server", "--threads", "1", "--conf", &conf]);
        assert!(line.starts_with(&format!("netforge: {conf}:3:11: listen: {a} is already in use")), "{line}");
        assert!(line.contains(&format!("pid {}", first.child.id())), "{line}");
        // --listen over the file's key: the flag is what is named.
        let other = write_conf("bp-server.toml", "listen = \"127.0.0.1:0\"\n");
        let line = refused(&["bp", "server", "--threads", "1", "--conf", &other, "--listen", &a]);
        assert!(line.starts_with(&format!("netforge: --listen: {a} is already in use")), "{line}");
    });
}

#[test]
fn any_bind_failure_of_a_file_key_names_its_line_and_column() {
    with_timeout(T, || {
        // 192.0.2.1 (TEST-NET-1) is no address of this host: bind fails with EADDRNOTAVAIL
        // before anything is sent.
        let backend = "[[backend]]\naddress = \"127.0.0.1:1\"\n";
        let conf = write_conf(
            "lb.toml",
            &format!("[admin]\naddress = \"\"\n[[listener]]\naddress = \"192.0.2.1:0\"\n{backend}"),
        );
        let line = refused(&["proxy", "--conf", &conf, "--threads", "1"]);
        assert!(line.starts_with(&format!("netforge: {conf}:4:11: listener[0].address: bind 192.0.2.1:0: ")), "{line}");
        let conf = write_conf(
            "lb.toml",
            &format!("[admin]\naddress = \"192.0.2.1:0\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n{backend}"),
        );
        let line = refused(&["proxy", "--conf", &conf, "--threads", "1"]);
        let want = format!("netforge: {conf}:2:11: admin.address (the /metrics endpoint): bind 192.0.2.1:0: ");
        assert!(line.starts_with(&want), "{line}");
        // --admin over the file's key: the flag.
        let line = refused(&["proxy", "--conf", &conf, "--threads", "1", "--admin", "192.0.2.1:1"]);
        assert!(line.starts_with("netforge: --admin (the /metrics endpoint): bind 192.0.2.1:1: "), "{line}");
        let conf = write_conf("bp-server.toml", "\n\nlisten = \"192.0.2.1:0\"\n");
        let line = refused(&["bp", "server", "--threads", "1", "--conf", &conf]);
        assert!(line.starts_with(&format!("netforge: {conf}:3:10: listen: bind 192.0.2.1:0: ")), "{line}");
    });
}

#[test]
fn bp_client_unresolvable_server_names_the_key_or_the_flag() {
    with_timeout(T, || {
        let conf = write_conf("bp-client.toml", "duration = \"1s\"\nserver = \"no-such-host.invalid:8080\"\n");
        let line = refused(&["bp", "client", "--conf", &conf]);
        let want = format!("netforge: {conf}:2:10: server: cannot resolve host \"no-such-host.invalid\"");
        assert!(line.starts_with(&want), "{line}");
        let line = refused(&["bp", "client", "--server", "no-such-host.invalid:1"]);
        assert!(line.starts_with("netforge: --server: cannot resolve host \"no-such-host.invalid\""), "{line}");
    });
}

// ---- one wording for an unknown keyword --------------------------------------------------------

/// The reason of an unknown-keyword error line: from `unknown` to the end of the list.
fn reason(line: &str) -> &str {
    let start = line.find("unknown ").unwrap_or_else(|| panic!("no `unknown` in {line:?}"));
    let end = start + line[start..].find(')').unwrap_or_else(|| panic!("no list in {line:?}"));
    &line[start..=end]
}

#[test]
fn an_unknown_keyword_reads_the_same_in_a_file_and_from_a_flag() {
    with_timeout(T, || {
        let listener = "[[listener]]\naddress = \"127.0.0.1:0\"\n";
        // proxy: `balance` in a file and --lb.
        let conf = write_conf(
            "lb.toml",
            &format!("balance = \"fastest\"\n{listener}[[backend]]\naddress = \"127.0.0.1:1\"\n"),
        );
        let file = refused(&["proxy", "--conf", &conf, "--print-config"]);
        let want = "unknown balance algorithm \"fastest\" (expected one of random, p2c, round_robin or least_conn)";
        assert_eq!(file, format!("netforge: {conf}:1:11: balance: {want}"));
        let flag = refused(&["proxy", "--lb", "fastest", "--print-config", "127.0.0.1:1"]);
        assert!(flag.starts_with(&format!("netforge: --lb: {want}")), "{flag}");
        assert_eq!(reason(&file), reason(&flag));
        // A group's balance, the splice mode and a backend's state: the same words, never
        // serde's `unknown variant`.
        let files = [
            (
                format!("{listener}[[backend]]\naddress = \"127.0.0.1:1\"\ngroup = \"web\"\n[groups.web]\nbalance = \"x\"\n"),
                "7:11: groups.web.balance: unknown balance algorithm \"x\" (expected one of random, p2c, round_robin or least_conn)",
            ),
            (
                format!("splice = \"sometimes\"\n{listener}[[backend]]\naddress = \"127.0.0.1:1\"\n"),
                "1:10: splice: unknown splice mode \"sometimes\" (expected one of auto, on or off)",
            ),
            (
                format!("{listener}[[backend]]\naddress = \"127.0.0.1:1\"\nstate = \"sleepy\"\n"),
                "5:9: backend[0].state: unknown backend state \"sleepy\"",
            ),
        ];
        for (text, want) in &files {
            let conf = write_conf("lb.toml", text);
            let line = refused(&["proxy", "--conf", &conf, "--print-config"]);
            assert!(line.starts_with(&format!("netforge: {conf}:{want}")), "{line}");
            assert!(!line.contains("variant"), "{line}");
        }
        // bp server and client: `protocol` in a file and --protocol.
        for role in ["server", "client"] {
            let conf = write_conf("bp.toml", "\nprotocol = \"udp\"\n");
            let file = refused(&["bp", role, "--conf", &conf, "--print-config"]);
            let want = "unknown protocol \"udp\" (expected tcp or websocket)";
            assert_eq!(file, format!("netforge: {conf}:2:12: protocol: {want}"));
            let flag = refused(&["bp", role, "--protocol", "udp", "--print-config"]);
            assert!(flag.contains(&format!("'--protocol <PROTOCOL>': {want}")), "{flag}");
            assert_eq!(reason(&file), reason(&flag));
        }
        // serve --mode (no file): the same words, with the list clap used to drop.
        let flag = refused(&["serve", "--mode", "mirror"]);
        assert!(
            flag.contains(
                "'--mode <MODE>': unknown mode \"mirror\" (expected one of hold, echo, discard, ws or ws_discard)"
            ),
            "{flag}"
        );
    });
}
